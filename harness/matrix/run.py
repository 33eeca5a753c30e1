"""`parity matrix` as a library call: read the matrix file, resolve its avatars, run every cell where it can run
(locally, or on Ray), reuse the finished cells of an earlier matrix in the same folder, compare with a baseline, and
write `matrix.json` (updated as cells finish; `complete` once all have).

    result = run_matrix(MatrixRequest(Path("release.toml"), Path("out"), baseline=Path("last-release")))
    result.passed, result.failures

The output folder::

    matrix.json                    the MatrixResult (rewritten as cells finish: complete=false until the end)
    cells/<avatar>__<column>__<precision>/
        cell.json                  the cell's CellResult
        run/                       its `parity run` folder: dump/, video.mp4, result.json, summary.md (report.html: the CLI)

A cell's folder appears whole or not at all (each is built in a temporary folder and renamed). Ctrl-C stops the
workers, marks the cells that did not finish "not run" and leaves matrix.json with complete=false.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from ...atomic import interrupt_handled
from ...errors import ParityError
from .baseline import compare_matrices
from .cell import CELL_FILE, RUN_FOLDER, AvatarInputs, CellJob, Settings, cell_environment, cell_key, resolve_avatar
from .result import read_cell, read_matrix, write_matrix
from .spec import MatrixSpec, load_matrix
from .types import AvatarInfo, CellResult, ExecutorInfo, MatrixResult

CELLS = "cells"
RAY_LOG = "ray-driver.log"  # --ray: what Ray itself printed on the driver
MATRIX_OUTPUTS = frozenset({"matrix.json", "report.html", "report.md", "report.junit.xml", CELLS, RAY_LOG})

Progress = Callable[[str, str, str], None]  # (event, cell id or avatar, detail)
MTIME_SLACK_S = 1.0  # a file written just after a time.time() can carry a time up to a few ms before it (the kernel's coarse clock)


@dataclass
class MatrixRequest:
    matrix: Path
    out: Path
    baseline: Path | None = None  # a previous matrix's --out folder
    require: tuple[str, ...] = ()  # cell ids that must have run
    ray: str | None = None  # "auto" or a cluster's address: the cells are Ray tasks
    jobs: int | None = None  # local: cells at once (None: as the CPUs and memory allow)
    overwrite: bool = False
    cell_report: Callable[[Path], object] | None = None  # renders a finished cell's report where it ran (a module-level function)


def run_matrix(request: MatrixRequest, progress: Progress | None = None) -> MatrixResult:
    """Run the matrix; returns its result (also in `out/matrix.json`). Interrupted (Ctrl-C): the result is incomplete."""
    say = progress or (lambda event, what, detail: None)
    started, began = time.perf_counter(), time.time()
    spec = load_matrix(request.matrix, request.require)
    baseline = read_matrix(request.baseline) if request.baseline is not None else None
    out = Path(request.out)
    check_matrix_out(out, request.overwrite)
    executor = _executor(request, say)
    settings = Settings(spec.frames, spec.dump_every, spec.accuracy_repeats, spec.speed)
    avatars = {}
    for avatar in spec.avatars:
        say("avatar", avatar.name, "resolving its inputs" + (" (the built-in demo)" if avatar.demo else ""))
        avatars[avatar.name] = resolve_avatar(avatar.name, avatar.dataset, avatar.audio, avatar.unet, avatar.audio_encoder, avatar.start_frame)
    previous = previous_cells(out)
    jobs = [CellJob(cell, avatars[cell.avatar.name], settings, cell_key(cell, avatars[cell.avatar.name], settings), previous.get(cell.id))
            for cell in spec.cells]
    result = MatrixResult(spec.name, str(spec.path), _now(), False, [_avatar_info(avatars[a.name]) for a in spec.avatars], spec.columns, [],
                          ExecutorInfo(executor.kind, 0), required=list(spec.required), allow=list(spec.allow))
    done: dict[str, CellResult] = {}
    to_run: list[CellJob] = []
    (out / CELLS).mkdir(parents=True, exist_ok=True)
    try:
        ready, to_run = executor.triage(jobs)
        for cell in ready:
            done[cell.id] = _placed(cell)
            say("reused" if cell.reused else "skip", cell.id, cell.reason or "same inputs and environment: reused")
        _write_progress(result, spec, done, out, executor)
        for cell in executor.run(avatars, settings, to_run, out / CELLS):
            done[cell.id] = _placed(cell)
            _write_progress(result, spec, done, out, executor)
    except KeyboardInterrupt:
        interrupt_handled()  # the report below is written on purpose, marked incomplete; the command exits 130 after it
        executor.close()
        done.update(finished_unreported(out, to_run, done, began))
        result.cells = _in_order(spec, done, "interrupted before it finished")
        result.wall_s = time.perf_counter() - started
        _describe(result, executor)
        write_matrix(result, out)
        return result
    finally:
        executor.disconnect()
    result.cells = _in_order(spec, done, "not run")
    result.complete = True
    if baseline is not None:
        assert request.baseline is not None
        result.baseline = compare_matrices(result, baseline, request.baseline, spec.bands, spec.allow)
    result.wall_s = time.perf_counter() - started
    result.environment = cell_environment(spec.cells[0]) if spec.cells and executor.kind == "local" else {}
    _describe(result, executor)
    _remove_stale_cells(out, result)
    write_matrix(result, out)
    return result


def check_matrix_out(out: Path, overwrite: bool = False) -> None:
    """`out` may be new, empty, or an earlier matrix's folder; anything else only with `overwrite` (then emptied)."""
    if out.exists() and not out.is_dir():
        raise ParityError(f"--out {out}: is a file; pass a folder")
    if not out.is_dir():
        return
    foreign = sorted(p.name for p in out.iterdir() if p.name not in MATRIX_OUTPUTS and not (p.name.startswith(".") and p.name.endswith(".partial")))
    if foreign and not overwrite:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise ParityError(f"--out {out}: holds files a matrix does not write ({shown}); choose another folder, or pass --overwrite to empty it")
    if foreign:
        shutil.rmtree(out)


def previous_cells(out: Path) -> dict[str, CellResult]:
    """The finished cells an earlier matrix left in `out` (each folder's cell.json; damaged ones are skipped: they run again)."""
    found = {}
    for file in sorted((out / CELLS).glob(f"*/{CELL_FILE}")) if (out / CELLS).is_dir() else []:
        try:
            cell = read_cell(file)
        except ParityError:
            continue
        if cell.ran and (file.parent / RUN_FOLDER / "result.json").is_file():
            found[cell.id] = cell
    return found


def finished_unreported(out: Path, jobs: list[CellJob], done: dict[str, CellResult], since: float) -> dict[str, CellResult]:
    """Cells that finished as a Ctrl-C came: the worker had put the cell's folder in place (its cell.json written, the
    folder renamed from its temporary name), but its result never reached this process. Found on disk: a cell.json
    with the job's key, written since `since` (the matrix's start, a `time.time()`); an earlier matrix's folder of
    the same cell is older. File times come from the kernel's coarse clock, a few milliseconds behind `time.time()`:
    `MTIME_SLACK_S` allows for it."""
    found = {}
    for job in jobs:
        if job.cell.id in done:
            continue
        file = out / CELLS / job.cell.slug / CELL_FILE
        try:
            if file.stat().st_mtime < since - MTIME_SLACK_S:
                continue
            cell = read_cell(file)
        except (OSError, ParityError):
            continue
        if cell.id == job.cell.id and cell.key == job.key:
            found[cell.id] = _placed(cell)
    return found


def _executor(request: MatrixRequest, say: Progress):
    if request.ray is not None:
        from .ray_executor import RayExecutor

        return RayExecutor(request.ray, say, request.cell_report, Path(request.out) / RAY_LOG)
    from .local import LocalExecutor

    if request.jobs is not None and request.jobs < 1:
        raise ParityError(f"--jobs must be at least 1, got {request.jobs}")
    return LocalExecutor(request.jobs, say, request.cell_report)


def _placed(cell: CellResult) -> CellResult:
    """The cell with its folder and report named relative to the matrix's folder."""
    slug = cell.id.replace("/", "__")
    return replace(cell, folder=f"{CELLS}/{slug}" if cell.folder is not None else None,
                   report=f"{CELLS}/{slug}/{RUN_FOLDER}/report.html" if cell.ran else None)


def _in_order(spec: MatrixSpec, done: dict[str, CellResult], unfinished: str) -> list[CellResult]:
    """Every cell of the matrix in the file's order; those without a result are "not run" with `unfinished` as the reason."""
    cells = []
    for cell in spec.cells:
        if cell.id in done:
            cells.append(done[cell.id])
        else:
            cells.append(CellResult(cell.id, cell.avatar.name, cell.column, cell.backend, cell.precision, "not run", provider=cell.provider,
                                    device=cell.device, models=None if cell.models is None else str(cell.models), reason=unfinished,
                                    requires=cell.requires))
    return cells


def _write_progress(result: MatrixResult, spec: MatrixSpec, done: dict[str, CellResult], out: Path, executor) -> None:
    """matrix.json as it stands: the finished cells, the rest "not run" (still running), complete=false."""
    result.cells = _in_order(spec, done, "still running when matrix.json was written")
    _describe(result, executor)
    write_matrix(result, out)


def _describe(result: MatrixResult, executor) -> None:
    info = executor.describe()
    result.executor = ExecutorInfo(executor.kind, info.get("workers", 0), info.get("address"), info.get("nodes", []), info.get("shipped_mb", {}),
                                   info.get("note", ""))


def _remove_stale_cells(out: Path, result: MatrixResult) -> None:
    """Cell folders of an earlier matrix that this one does not name (a cell removed, or one that did not run now)."""
    keep = {Path(cell.folder).name for cell in result.cells if cell.folder}
    for folder in (out / CELLS).iterdir():
        if folder.is_dir() and folder.name not in keep and not folder.name.startswith("."):
            shutil.rmtree(folder, ignore_errors=True)


def _avatar_info(avatar: AvatarInputs) -> AvatarInfo:
    labels = avatar.labels
    return AvatarInfo(avatar.name, avatar.demo, labels.get("dataset", str(avatar.dataset)), labels.get("audio", str(avatar.audio)),
                      labels.get("unet", str(avatar.unet)), labels.get("audio_encoder", str(avatar.audio_encoder)))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


__all__ = ["MatrixRequest", "check_matrix_out", "previous_cells", "run_matrix"]
