"""One cell, where it runs: the pipeline on its backend judged against its avatar's reference (`parity run`), then
its speed (`parity bench`'s model rows), recorded as a `CellResult` in the cell's folder.

    avatar = resolve_avatar(spec.avatars[0])                  # on the machine that holds the inputs
    job = CellJob(cell, avatar, settings, key=cell_key(cell, avatar, settings))
    result = run_cell(job, folder, reference_dump)            # writes folder/run/ and folder/cell.json

Everything here runs in a worker (a local worker process, or a Ray task): `run_cell` never raises for a problem of
the cell itself; it returns the cell's status ("passed", "failed", "not run", "error") with the reason. The caller
publishes the folder (atomically) and handles workers that die.

Speed is measured with the machine to itself: a cell's accuracy work holds a shared lock, its speed passes an
exclusive one (`speed_alone`), widened to every CPU of the machine, so no other cell of any matrix on this machine
computes meanwhile, and figures of a 2-CPU worker slot do not pass for the machine's.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import shutil
import socket
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ...cache import REFERENCE_LIBRARIES, cpu_model, environment, key_of, sha256_file
from ...errors import ParityError
from ...models.threads import torch_threads
from ..verdict.result import json_text
from ..verdict.types import Spread
from .figures import FIGURES, stage_figures, worst_stage
from .spec import CellSpec, SpeedSpec
from .types import CellResult, NodeInfo, Speed, StageFigures

CELL_FILE = "cell.json"
RUN_FOLDER = "run"
CellReport = Callable[[Path], object]  # renders a cell's report from its run folder (the CLI passes reports' renderer)
ERROR_LOG = "parity-error.log"
LOCK_FILE = "synctalk-parity-matrix.lock"
CODE = ("models", "reference", "export", "backends", "harness")  # the package folders whose code decides a cell's figures
LIBRARIES = (*REFERENCE_LIBRARIES, "onnx", "onnxruntime", "onnxruntime-gpu", "onnxsim", "onnxconverter-common", "coremltools", "tensorrt",
             "scikit-image")


@dataclass(frozen=True)
class AvatarInputs:
    """An avatar's inputs resolved to files (the demo's made, the demo weights fit), and the key of their contents."""

    name: str
    demo: bool
    dataset: Path
    audio: Path
    unet: Path
    audio_encoder: Path
    start_frame: int
    labels: dict[str, str]
    fingerprint: str  # key_of the contents: dataset files, audio, checkpoints, start frame


@dataclass(frozen=True)
class Settings:
    """What every cell of a matrix shares."""

    frames: int
    dump_every: int
    accuracy_repeats: int
    speed: SpeedSpec


@dataclass(frozen=True)
class CellJob:
    """Everything a worker needs to run one cell."""

    cell: CellSpec
    avatar: AvatarInputs
    settings: Settings
    key: str
    previous: CellResult | None = field(default=None, compare=False)  # an earlier result of the same key, for reuse


def resolve_avatar(name: str, dataset: Path | None, audio: Path | None, unet: Path | None, audio_encoder: Path | None,
                   start_frame: int = 0) -> AvatarInputs:
    """The avatar's files: those given, else the built-in demo's clip and the demo weights (made once, cached)."""
    from ..inputs import resolve_inputs
    from ..pipeline.reference_cache import dataset_fingerprint

    inputs = resolve_inputs(dataset, audio, unet, audio_encoder)
    assert inputs.dataset is not None and inputs.audio is not None and inputs.unet is not None and inputs.audio_encoder is not None
    fingerprint = key_of({"dataset": dataset_fingerprint(inputs.dataset), "audio": sha256_file(inputs.audio),
                          "unet": sha256_file(inputs.unet), "audio_encoder": sha256_file(inputs.audio_encoder), "start_frame": start_frame})
    return AvatarInputs(name, inputs.demo, inputs.dataset, inputs.audio, inputs.unet, inputs.audio_encoder, start_frame,
                        dict(inputs.labels), fingerprint)


def cell_key(cell: CellSpec, avatar: AvatarInputs, settings: Settings) -> str:
    """The key of everything that decides a cell's result besides the environment it runs in."""
    models = None
    if cell.models is not None:
        from ...export.manifest import read_manifest

        manifest = read_manifest(cell.models)
        models = [manifest.get("format"), manifest.get("precision"), sorted(a.get("sha256", "") for a in manifest["artifacts"])]
    return key_of({
        "avatar": avatar.fingerprint, "backend": cell.backend, "provider": cell.provider, "device": cell.device, "precision": cell.precision,
        "models": models, "gate": None if cell.gate is None else sha256_file(cell.gate), "batch": cell.batch,
        "frames": settings.frames, "dump_every": settings.dump_every, "accuracy_repeats": settings.accuracy_repeats,
        "speed": [settings.speed.frames, settings.speed.repeats],
    })


def cell_environment(cell: CellSpec) -> dict[str, Any]:
    """What of this machine decides the cell's figures: as the cache keys it (package version, code digest, library
    versions, oneDNN ISA cap, CPU instruction set), plus the system, the CPU model and count, and the GPU for GPU cells."""
    found = environment(CODE, LIBRARIES)
    found.update(system=f"{platform.system()} {platform.release()}", cpu=cpu_model(), cpus=os.cpu_count() or 1)
    if cell.on_gpu:
        found["gpu"] = gpu_name(cell.device)
    return found


def runs_here(cell: CellSpec) -> str | None:
    """None when this machine can run the cell, else why not (no macOS, no GPU, a runtime not installed)."""
    from ...backends import get_backend_class

    reason = get_backend_class(cell.backend).available()
    if reason:
        return reason
    if cell.backend == "onnxruntime" and cell.provider not in (None, "cpu"):
        import onnxruntime

        from ...backends.onnxruntime import PROVIDERS

        if PROVIDERS[cell.provider] not in onnxruntime.get_available_providers():
            where = "onnxruntime on macOS" if cell.provider == "coreml" else "onnxruntime-gpu on a machine with an NVIDIA GPU"
            return (f"onnxruntime has no {PROVIDERS[cell.provider]} here (available: {', '.join(onnxruntime.get_available_providers())}); "
                    f"it comes with {where}")
    if cell.backend == "torch" and (cell.device or "cpu").startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            return f"torch {torch.__version__} sees no CUDA GPU here"
    return None


def not_run(job: CellJob, reason: str) -> CellResult:
    """The result of a cell that cannot run (here, or anywhere the executor can send it)."""
    cell = job.cell
    return CellResult(cell.id, cell.avatar.name, cell.column, cell.backend, cell.precision, "not run", provider=cell.provider, device=cell.device,
                      models=None if cell.models is None else str(cell.models), reason=reason, key=job.key, requires=cell.requires)


def reuse(job: CellJob, environment_now: dict[str, Any]) -> CellResult | None:
    """The earlier result of this cell when its key and environment are this one's, marked reused; else None."""
    previous = job.previous
    if previous is None or not previous.ran or previous.key != job.key or previous.environment != environment_now:
        return None
    return replace(previous, reused=True)


# ----- running it -----------------------------------------------------------------------------------


def run_cell(job: CellJob, folder: Path, reference: Path | None, node: NodeInfo | None = None) -> CellResult:
    """Run `job` into `folder` (which exists and is empty): the run, the comparison with `reference` (a dump of the
    avatar's reference), the speed; `folder/cell.json` holds the result. Never raises for the cell's own problems."""
    from ...allocator import tune_allocator

    tune_allocator()  # as `parity run` has it, in whichever process (a local worker, a Ray node) runs the cell
    started = time.perf_counter()
    cell = job.cell
    result = CellResult(cell.id, cell.avatar.name, cell.column, cell.backend, cell.precision, "error", provider=cell.provider,
                        device=cell.device, models=None if cell.models is None else str(cell.models), key=job.key, requires=cell.requires,
                        node=node or this_node(), accuracy_repeats=job.settings.accuracy_repeats, folder=".")
    try:
        result.environment = cell_environment(cell)
        reason = runs_here(cell)
        if reason:
            result.status, result.reason = "not run", reason
        else:
            with machine_lock(shared=True):
                run, models = _judge(job, folder, reference, result)
            try:
                _measure_speed(job, run, models, result)
            except ParityError as exc:  # the verdict stands; the speed is missing, and says why
                result.notes.append(f"speed not measured: {exc}")
    except ParityError as exc:
        result.status, result.reason = "error", str(exc)
    except Exception as exc:  # a bug: the cell is an error with its traceback beside it, the matrix goes on
        (folder / ERROR_LOG).write_text(traceback.format_exc())
        result.status, result.reason = "error", f"internal error ({type(exc).__name__}: {exc}); traceback in {ERROR_LOG}"
    result.seconds["total"] = time.perf_counter() - started
    write_cell(result, folder)
    return result


def _judge(job: CellJob, folder: Path, reference: Path | None, result: CellResult):
    """The cell's run(s) and their comparison; the first run's folder is kept as `folder/run`."""
    from ..pipeline.run import RunRequest, run

    cell, avatar, settings = job.cell, job.avatar, job.settings
    models = cell.models
    if cell.backend == "coreml" and models is None:  # Core ML prediction loads an export folder: this machine's, of the checkpoints
        from ...backends import ModelSource
        from ...backends.exports import export_for
        from ..inputs import demo_check_inputs

        models = export_for(ModelSource.from_paths(avatar.unet, avatar.audio_encoder, precision=cell.precision, check_inputs=demo_check_inputs), "coreml")
    runs = []
    t = time.perf_counter()
    for repeat in range(settings.accuracy_repeats):
        out = folder / RUN_FOLDER if repeat == 0 else Path(tempfile.mkdtemp(prefix=".repeat-", dir=folder)) / RUN_FOLDER
        request = RunRequest(out, cell.backend, avatar.dataset, avatar.audio, avatar.unet, avatar.audio_encoder, settings.frames,
                             avatar.start_frame, models=models, batch=cell.batch, dump="all", dump_every=settings.dump_every, save_frames=False,
                             gate=cell.gate, precision=cell.precision, provider=cell.provider, device=cell.device, reference=reference)
        runs.append(run(request))
        if repeat:
            shutil.rmtree(out.parent, ignore_errors=True)
    result.seconds["run"] = time.perf_counter() - t
    first = runs[0]
    comparison = first.comparison
    assert comparison is not None  # compare=True
    result.status = "passed" if comparison.passed else "failed"
    result.gate = f"{comparison.gate.precision}" + (f", {Path(comparison.gate.file).name}" if comparison.gate.file else " (built-in)")
    result.stages = stage_figures(comparison)
    result.first_divergent_stage = comparison.first_divergent_stage
    result.coverage = comparison.coverage
    result.failures = list(comparison.failures)
    result.diagnoses = [f"{d.name} ({d.stage or 'all stages'}): {d.message}" for d in comparison.diagnoses]
    result.worst = worst_stage(result.stages)
    result.noise = accuracy_noise([stage_figures(r.comparison) for r in runs if r.comparison is not None])
    return first, models


def _measure_speed(job: CellJob, run, models: Path | None, result: CellResult) -> None:
    """Model-only frames/s as `parity bench` measures it (the export the run loaded, else the same checkpoints in the
    same precision), with the machine to itself."""
    from ..bench.measure import BenchRequest, model_rows

    cell, avatar, speed = job.cell, job.avatar, job.settings.speed
    request = BenchRequest([cell.backend], [run.batch], frames=speed.frames, repeats=speed.repeats, dataset=avatar.dataset,
                           audio=avatar.audio, unet=avatar.unet, audio_encoder=avatar.audio_encoder,
                           models=models, provider=cell.provider, device=cell.device,
                           precision=cell.precision)
    t = time.perf_counter()
    with machine_lock(shared=False), all_cpus() as cpus:
        rows = model_rows(request, cell.backend, run.batch)
    result.seconds["speed"] = time.perf_counter() - t
    model = rows[0]
    plain = next((row for row in rows if row.mode == "model-default-session"), None)
    result.speed = Speed(Spread(model.fps_median, model.fps_min, model.fps_max), model.repeats, speed.frames, run.batch,
                         streams=model.streams, cpus=cpus, alone=True,
                         default_session_fps=None if plain is None else Spread(plain.fps_median, plain.fps_min, plain.fps_max),
                         run_fps=run.fps or None, load_average=model.load_average)


def accuracy_noise(repeats: list[list[StageFigures]]) -> dict[str, dict[str, float]]:
    """Per stage and figure, max - min over the accuracy repeats (empty with one run)."""
    if len(repeats) < 2:
        return {}
    noise: dict[str, dict[str, float]] = {}
    for stages in zip(*repeats):
        for metric in FIGURES:
            values = [getattr(stage, metric) for stage in stages if getattr(stage, metric) is not None]
            if len(values) == len(stages) and all(math.isfinite(v) for v in values):
                noise.setdefault(stages[0].stage, {})[metric] = max(values) - min(values)
    return noise


def write_cell(result: CellResult, folder: Path) -> Path:
    from ...atomic import write_text_atomically

    path = folder / CELL_FILE
    write_text_atomically(path, json_text(result))
    return path


# ----- the machine -----------------------------------------------------------------------------------

def run_cell_and_report(job: CellJob, folder: Path, reference: Path | None, node: NodeInfo | None = None,
                        cell_report: CellReport | None = None) -> CellResult:
    """`run_cell`, then the cell's own report page rendered from its run folder (by the caller's `cell_report`,
    so that harness/ does not import reports/); a page that fails is a note in the result, never a lost verdict."""
    result = run_cell(job, folder, reference, node)
    if result.ran and cell_report is not None:
        try:
            cell_report(folder / RUN_FOLDER)
        except Exception as exc:  # the verdict stands without its page
            result.notes.append(f"the cell's report could not be rendered: {type(exc).__name__}: {exc}")
            write_cell(result, folder)
    return result



def this_node() -> NodeInfo:
    return NodeInfo(socket.gethostname(), os.getpid())


@contextlib.contextmanager
def machine_lock(shared: bool) -> Iterator[None]:
    """A lock every matrix cell on this machine takes: shared while it computes, exclusive while it measures speed
    (a file lock in the temporary folder; no-op where flock does not exist)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: speed is measured beside whatever else runs
        yield
        return
    path = Path(tempfile.gettempdir()) / LOCK_FILE
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def all_cpus() -> Iterator[int]:
    """Every thread of this process may run on every CPU of the machine for the block (a local worker is pinned to its
    share of the CPUs), torch's pool as wide; the block gets the CPU count. Restored after."""
    if not hasattr(os, "sched_setaffinity"):
        yield os.cpu_count() or 1
        return
    narrow = os.sched_getaffinity(0)
    wide = set(range(os.cpu_count() or 1))
    set_process_cpus(wide)
    try:
        with torch_threads(len(wide)):
            yield len(wide)
    finally:
        set_process_cpus(narrow)


def set_process_cpus(cpus: set[int]) -> None:
    """Pin every thread of this process to `cpus` (threads made later inherit it from the thread that makes them)."""
    for tid in os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else [str(os.getpid())]:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(tid), cpus)


def gpu_name(device: str | None) -> str | None:
    """The CUDA GPU's name (torch), None without one."""
    import torch

    if not torch.cuda.is_available():
        return None
    index = int((device or "cuda").partition(":")[2] or 0)
    return torch.cuda.get_device_name(index)
