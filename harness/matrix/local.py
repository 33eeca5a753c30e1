"""The local executor: the cells in worker processes on this machine, as many at once as its CPUs and memory allow.

Each worker is a process of its own (spawned, so a crash or the OOM killer takes one cell, not the matrix), pinned
to its share of the CPUs: the runtimes size their thread pools and ONNX Runtime its streams by the CPUs a process
may use, so the streams of the cells in flight add up to the machine's CPUs instead of multiplying. Workers stay up
between cells (imports and runtimes load once). Each avatar's reference is computed once, in a worker, before its
cells; a cell writes its folder under `out/cells/` atomically (`atomic.building`), so a worker that dies leaves
nothing that looks finished. A cell whose worker died is run again once in a fresh worker, then reported "lost".

`concurrent.futures.ProcessPoolExecutor` would do the pooling, but when one of its workers dies it fails every task
in flight ("broken pool") without saying whose worker died: a cell that crashes its worker would take the cells
beside it down with it. Here each worker has its own pipe, so a death is charged to the cell it was running.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from ...atomic import remove_abandoned
from .cell import AvatarInputs, CellJob, CellReport, Settings
from .types import Attempt, CellResult, NodeInfo

CELL_MEMORY_MB = 2500  # peak resident memory of one cell's worker (measured 1.8-2.4 GB: torch, a runtime, the dumps)
MAX_ATTEMPTS = 2  # a cell whose worker dies is run once more, then reported lost
STOP_GRACE_S = 5.0

Progress = Callable[[str, str, str], None]  # (event, cell id or avatar, detail)


@dataclass
class _Worker:
    slot: int
    cpus: set[int]
    process: Any
    conn: Connection
    task: tuple | None = None  # what it is running: ("reference", avatar) or ("cell", job, attempts)
    started: float = 0.0


@dataclass
class _Pending:
    job: CellJob
    attempts: list[Attempt] = field(default_factory=list)


@dataclass
class _State:
    """One run's bookkeeping: the references made, being made or failed, and the cells still to start."""

    avatars: dict[str, AvatarInputs]
    settings: Settings
    cells_dir: Path
    waiting: list[_Pending]
    needed: list[str]  # avatars whose cells run
    references: dict[str, str | None] = field(default_factory=dict)  # avatar -> its reference dump (None while made)
    failed_references: dict[str, tuple[str, str]] = field(default_factory=dict)  # avatar -> (cell status, why)
    reference_deaths: dict[str, int] = field(default_factory=dict)


def default_jobs(tasks: int) -> int:
    """Cells at once: one per CPU, no more than memory holds (`CELL_MEMORY_MB` each), no more than there are cells."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cpus, int(available_memory_mb() // CELL_MEMORY_MB) or 1, tasks))


def available_memory_mb() -> float:
    """Memory available to new processes (MemAvailable on Linux)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")) / 2**20 if hasattr(os, "sysconf") else 8192.0


class LocalExecutor:
    """Runs cells in `jobs` pinned worker processes (None: `default_jobs`)."""

    kind = "local"

    def __init__(self, jobs: int | None = None, progress: Progress | None = None, cell_report: CellReport | None = None):
        self.jobs = jobs
        self.progress = progress or (lambda event, what, detail: None)
        self.cell_report = cell_report  # renders a finished cell's report in its worker (a picklable module-level function)
        self.workers: list[_Worker] = []
        self.gpus = 0

    def describe(self) -> dict[str, Any]:
        workers = self.jobs or 0
        return {"workers": workers,
                "note": f"{workers} worker processes, each pinned to {self._share()} of {self._cpu_count()} CPUs; speed measured "
                        "with the machine to itself"}

    def triage(self, jobs: list[CellJob]) -> tuple[list[CellResult], list[CellJob]]:
        """Cells this machine cannot run ("not run", with why) and cells an earlier matrix finished here with the same key
        and environment (reused), apart from the cells to run."""
        from .cell import cell_environment, not_run, reuse, runs_here

        ready, to_run = [], []
        for job in jobs:
            reason = runs_here(job.cell)
            reused = None if reason or job.previous is None else reuse(job, cell_environment(job.cell))
            if reason:
                ready.append(not_run(job, reason))
            elif reused is not None:
                ready.append(reused)
            else:
                to_run.append(job)
        return ready, to_run

    def disconnect(self) -> None:
        """Nothing to leave: the workers are stopped when `run` ends."""

    def run(self, avatars: dict[str, AvatarInputs], settings: Settings, jobs: list[CellJob], cells_dir: Path) -> Iterator[CellResult]:
        """Run every job (each avatar's reference first), yielding each cell's result as it finishes."""
        if not jobs:
            return
        self.jobs = self.jobs or default_jobs(len(jobs))
        self.gpus = _gpu_count() if any(job.cell.on_gpu for job in jobs) else 0
        state = _State(avatars, settings, cells_dir, [_Pending(job) for job in jobs], list(dict.fromkeys(job.avatar.name for job in jobs)))
        try:
            for slot in range(self.jobs):
                self.workers.append(self._start(slot))
            while state.waiting or any(worker.task for worker in self.workers):
                for worker in self.workers:
                    if worker.task is None:
                        self._assign(worker, state)
                yield from self._collect(state)
                for pending in [p for p in state.waiting if p.job.avatar.name in state.failed_references]:
                    state.waiting.remove(pending)
                    status, reason = state.failed_references[pending.job.avatar.name]
                    yield _failed(pending, status, f"the reference of avatar {pending.job.avatar.name} could not be made: {reason}")
        finally:
            self.close()
            for job in jobs:
                remove_abandoned(cells_dir / job.cell.slug)

    def close(self) -> None:
        """Stop every worker: an idle one ends when its pipe closes, one with a cell in flight is terminated (the cell
        is abandoned; its temporary folder is removed by the caller)."""
        for worker in self.workers:
            if worker.task is None:
                worker.conn.close()
            elif worker.process.is_alive():
                worker.process.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for worker in self.workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            with contextlib.suppress(OSError):
                worker.conn.close()
        self.workers = []

    # ----- scheduling ---------------------------------------------------------------------------------

    def _assign(self, worker: _Worker, state: _State) -> None:
        """Give an idle worker the next reference to make, else the next cell whose reference is ready (and a GPU free)."""
        for name in state.needed:
            if name not in state.references and name not in state.failed_references:
                state.references[name] = None
                self._send(worker, ("reference", name), ("reference", state.avatars[name], state.settings))
                self.progress("reference", name, f"computing the reference (worker {worker.process.pid})")
                return
        gpus_busy = sum(1 for w in self.workers if w.task and w.task[0] == "cell" and w.task[1].job.cell.on_gpu)
        for pending in state.waiting:
            reference = state.references.get(pending.job.avatar.name)
            if reference is None or (pending.job.cell.on_gpu and gpus_busy >= max(1, self.gpus)):
                continue
            state.waiting.remove(pending)
            self._send(worker, ("cell", pending), ("cell", pending.job, str(state.cells_dir / pending.job.cell.slug), reference))
            again = f", attempt {len(pending.attempts) + 1}" if pending.attempts else ""
            self.progress("start", pending.job.cell.id, f"worker {worker.process.pid}{again}")
            return

    def _collect(self, state: _State) -> Iterator[CellResult]:
        """Wait for a worker to answer or die; handle what came."""
        busy = [w for w in self.workers if w.task is not None]
        if not busy:
            return
        ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
        for worker in busy:
            message = None
            if worker.conn in ready:
                try:
                    message = worker.conn.recv()
                except (EOFError, OSError):
                    message = None
            task = worker.task
            assert task is not None
            if message is not None:
                worker.task = None
                if task[0] == "reference":
                    kind, value = message
                    if kind == "ok":
                        state.references[task[1]] = value
                    else:
                        state.failed_references[task[1]] = ("error", value)
                    self.progress("reference-done" if kind == "ok" else "reference-failed", task[1], value)
                else:
                    result: CellResult = message
                    result.attempts = task[1].attempts + result.attempts
                    self.progress("done", result.id, result.status)
                    yield result
            elif worker.process.sentinel in ready or worker.conn in ready:
                worker.process.join()
                reason = _death(worker.process.exitcode)
                worker.task = None
                self.workers[self.workers.index(worker)] = self._start(worker.slot)
                if task[0] == "reference":
                    name = task[1]
                    state.reference_deaths[name] = state.reference_deaths.get(name, 0) + 1
                    state.references.pop(name, None)
                    if state.reference_deaths[name] >= MAX_ATTEMPTS:
                        state.failed_references[name] = ("lost", f"{reason} (attempt {MAX_ATTEMPTS} of {MAX_ATTEMPTS})")
                    self.progress("reference-died", name, reason)
                    continue
                pending: _Pending = task[1]
                pending.attempts.append(Attempt(reason, NodeInfo(os.uname().nodename, worker.process.pid or 0)))
                self.progress("died", pending.job.cell.id, reason)
                if len(pending.attempts) >= MAX_ATTEMPTS:
                    yield _failed(pending, "lost", f"{reason} (attempt {len(pending.attempts)} of {MAX_ATTEMPTS})")
                else:
                    state.waiting.insert(0, pending)

    def _send(self, worker: _Worker, task: tuple, message: tuple) -> None:
        worker.task, worker.started = task, time.monotonic()
        worker.conn.send(message)

    def _start(self, slot: int) -> _Worker:
        share = self._share()
        cpus = sorted(_allowed_cpus())
        mine = set(cpus[(slot * share) % len(cpus): (slot * share) % len(cpus) + share]) or set(cpus)
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(target=worker_main, args=(theirs, mine, self.cell_report), name=f"parity-matrix-worker-{slot}", daemon=True)
        process.start()
        theirs.close()
        return _Worker(slot, mine, process, ours)

    def _share(self) -> int:
        return max(1, len(_allowed_cpus()) // max(1, self.jobs or 1))

    @staticmethod
    def _cpu_count() -> int:
        return len(_allowed_cpus())


def worker_main(conn: Connection, cpus: set[int], cell_report: CellReport | None = None) -> None:
    """A worker process: pinned to `cpus`, it runs the tasks it is sent until its pipe closes. Ctrl-C is the driver's
    to handle (it stops the workers)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from .cell import set_process_cpus

    if hasattr(os, "sched_setaffinity"):
        set_process_cpus(cpus)
    import torch

    torch.set_num_threads(len(cpus))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] == "reference":
            conn.send(make_reference(message[1], message[2]))
        else:
            _, job, folder, reference = message
            conn.send(run_cell_into(job, Path(folder), Path(reference), cell_report=cell_report))


def make_reference(avatar: AvatarInputs, settings: Settings) -> tuple[str, str]:
    """("ok", the reference dump's folder) of `avatar` for `settings`, computed once and cached; ("error", why) otherwise."""
    from ...errors import ParityError
    from ..pipeline.reference_cache import ReferenceInputs, every_kth, reference_dump
    from ..verdict.dump import parse_stage_selection
    from .cell import machine_lock

    inputs = ReferenceInputs(avatar.dataset, avatar.audio, avatar.unet, avatar.audio_encoder, settings.frames, avatar.start_frame,
                             parse_stage_selection("all"), every_kth(settings.frames, settings.dump_every))
    try:
        with machine_lock(shared=True):
            return "ok", str(reference_dump(inputs).dump)
    except ParityError as exc:
        return "error", str(exc)


def run_cell_into(job: CellJob, final: Path, reference: Path, node: NodeInfo | None = None, cell_report: CellReport | None = None) -> CellResult:
    """`run_cell` into a fresh temporary folder that replaces `final` once the cell's result (and its report) is written."""
    from ...atomic import building
    from .cell import run_cell_and_report

    with building(final) as folder:
        return run_cell_and_report(job, folder, reference, node, cell_report)


def _failed(pending: _Pending, status: str, reason: str) -> CellResult:
    cell = pending.job.cell
    return CellResult(cell.id, cell.avatar.name, cell.column, cell.backend, cell.precision, status,  # type: ignore[arg-type]
                      provider=cell.provider, device=cell.device, models=None if cell.models is None else str(cell.models), reason=reason,
                      key=pending.job.key, requires=cell.requires, attempts=list(pending.attempts))


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"the worker process died ({name})"
    return f"the worker process exited with code {exitcode}"


def _allowed_cpus() -> set[int]:
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
