"""The Ray executor (`parity matrix --ray auto|ADDRESS`): the cells as Ray tasks on a cluster's nodes, each task
asking for what its cell needs, so one matrix runs across a Linux CPU node, a GPU node and a Mac.

A cell's task asks for its `Requirement` (`CellSpec.requires`): CPUs; a GPU for CUDA and TensorRT cells, plus the
custom resource `tensorrt` where TensorRT is needed; the custom resource `macos` for Core ML prediction. A node
declares the custom ones when it starts (`ray start --resources '{"macos": 1}'`). A cell no alive node can hold is
"not run" before anything is submitted (Ray itself would keep such a task pending forever), and checked again while
the matrix runs (a node that leaves can strand a task).

What moves, through Ray's object store (each object travels to a node once, when a task there needs it):
- an avatar's inputs (dataset, audio, checkpoints: ~62 MB for the demo), put once by the driver; a node that holds
  the same files at the same paths (a cluster on one machine, a shared file system) uses them in place;
- an avatar's reference: computed once, by a task on any node with a free CPU, into that node's cache; its cache
  entry (~35 MB for 8 frames of the demo) is shipped to the nodes whose cells compare with it, which keep it in
  their own cache under the same key (a node whose cache holds it already fetches nothing);
- a cell's folder, back to the driver: its result.json, report.html (rendered on the node, where the dumps are),
  summary and video, ~1.5 MB; its dump (~35 MB) stays on the node.
Comparing where the reference is instead would move each cell's dump (35 MB per cell) rather than the reference
once per node; `matrix.json` records the MB that moved (`executor.shipped_mb`).

Faults: a task whose worker process or node dies is submitted again once, then the cell is "lost" with both
reasons; Ray's own retries are off (`max_retries=0`) so every attempt is recorded. A finished cell of an earlier
matrix in the same folder is reused when its key matches and the node the task lands on has the same environment.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import socket
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ...errors import ParityError
from .cell import RUN_FOLDER, AvatarInputs, CellJob, CellReport, Settings
from .types import Attempt, CellResult, NodeInfo, Requirement

MAX_ATTEMPTS = 2  # a task whose worker or node died is submitted once more
WAIT_S = 2.0  # how often the driver looks at the cluster while tasks run
RECHECK_S = 10.0  # how often pending cells are checked against the alive nodes
INPUTS_FOLDER = "synctalk-parity-ray-inputs"  # a node's unpacked avatar inputs, under its temporary folder
KEPT_ON_NODE = (f"{RUN_FOLDER}/dump",)  # a cell's parts that stay on its node
MB = 2**20

Progress = Callable[[str, str, str], None]


@dataclass
class _Flight:
    """A task in flight: a cell's or an avatar's reference's, with the attempts that died before."""

    kind: str  # "cell" or "reference"
    name: str  # cell id or avatar name
    job: CellJob | None = None
    attempts: list[Attempt] = field(default_factory=list)
    submitted: float = 0.0


class RayExecutor:
    """Runs cells as Ray tasks on the cluster at `address` ("auto": the one started on this machine)."""

    kind = "ray"

    def __init__(self, address: str, progress: Progress | None = None, cell_report: CellReport | None = None, log: Path | None = None):
        self.address = address
        self.log = log  # where the driver's stderr goes while it is on the cluster (Ray's own messages), else inherited
        self._stderr: int | None = None  # the driver's own fd 2 and streams while they point at the log
        self._streams: tuple[Any, Any] = (sys.stdout, sys.stderr)
        self._log_file: Any = None
        self.progress = progress or (lambda event, what, detail: None)
        self.cell_report = cell_report
        self.ray: Any = None
        self.nodes: list[dict[str, Any]] = []
        self.shipped = {"inputs": 0.0, "references": 0.0, "results": 0.0}
        self.in_flight: dict[Any, _Flight] = {}
        self.entries: dict[Any, Any] = {}  # a reference task's first return -> its second (the packed cache entry)
        self._connect()

    # ----- the executor interface (LocalExecutor's) -------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        nodes = [_node_info(node) for node in self.nodes]
        return {"workers": len(nodes), "address": self.address, "nodes": nodes, "shipped_mb": {k: round(v, 2) for k, v in self.shipped.items()},
                "note": "cells as Ray tasks scheduled by resources; each avatar's reference computed once and shipped to the nodes that "
                        "compare with it; speed measured with each machine to itself"}

    def triage(self, jobs: list[CellJob]) -> tuple[list[CellResult], list[CellJob]]:
        """Cells no alive node can hold are "not run"; the rest go to the cluster (reuse is decided on the node)."""
        from .cell import not_run

        self._refresh_nodes()
        ready, to_run = [], []
        for job in jobs:
            missing = self._unplaceable(job.cell.requires)
            if missing:
                ready.append(not_run(job, missing))
            else:
                to_run.append(job)
        return ready, to_run

    def run(self, avatars: dict[str, AvatarInputs], settings: Settings, jobs: list[CellJob], cells_dir: Path) -> Iterator[CellResult]:
        """Each avatar's reference, then its cells, as tasks; yields each cell's result as it is published in `cells_dir`."""
        ray = self.ray
        if not jobs:
            return
        packs = {}
        for name in dict.fromkeys(job.avatar.name for job in jobs):
            packs[name] = ray.put(pack_inputs(avatars[name]))  # moved only to nodes that lack the files (`local_inputs`)
        references: dict[str, tuple[str, Any]] = {}  # avatar -> (cache key, [ref of the packed entry])
        waiting = {name: [job for job in jobs if job.avatar.name == name] for name in packs}
        for name in packs:
            self._submit_reference(avatars[name], packs[name], settings, [])
        last_check = time.monotonic()
        while self.in_flight:
            done, _ = ray.wait(list(self.in_flight), num_returns=1, timeout=WAIT_S)
            for ref in done:
                flight = self.in_flight.pop(ref)
                if flight.kind == "reference":
                    outcome = self._reference_outcome(ref, flight)
                    if outcome is None:  # died: submitted again
                        self._submit_reference(avatars[flight.name], packs[flight.name], settings, flight.attempts)
                        continue
                    status, detail, key, entry = outcome
                    if status != "ok":
                        self.progress("reference-failed", flight.name, detail)
                        for job in waiting.pop(flight.name, []):
                            yield _result(job, status, f"the reference of avatar {flight.name} could not be made: {detail}", flight.attempts)
                        continue
                    references[flight.name] = (key, entry)
                    self.progress("reference-done", flight.name, detail)
                    for job in waiting.pop(flight.name, []):
                        self._submit_cell(job, packs[flight.name], references[flight.name], [])
                else:
                    assert flight.job is not None
                    result = self._cell_outcome(ref, flight, cells_dir)
                    if result is None:
                        self._submit_cell(flight.job, packs[flight.job.avatar.name], references[flight.job.avatar.name], flight.attempts)
                        continue
                    self.progress("done", result.id, result.status + (f" on {result.node.hostname}" if result.node else ""))
                    yield result
            if time.monotonic() - last_check > RECHECK_S:
                last_check = time.monotonic()
                yield from self._stranded()

    def close(self) -> None:
        """Cancel the tasks in flight (Ctrl-C): their cells did not finish."""
        for ref in list(self.in_flight):
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)
        self.in_flight.clear()

    def disconnect(self) -> None:
        """Leave the cluster (it keeps running: it is not this command's)."""
        if self.ray is not None and self.ray.is_initialized():
            self._refresh_nodes()
            self.ray.shutdown()
        if self._stderr is not None:
            sys.stdout, sys.stderr = self._streams
            os.dup2(self._stderr, 2)
            os.close(self._stderr)
            self._stderr = None
            self._log_file.close()

    # ----- submitting and collecting ----------------------------------------------------------------------

    def _connect(self) -> None:
        try:
            import ray
        except ImportError:
            raise ParityError("--ray needs Ray: pip install 'synctalk-parity[ray]' (or run without --ray: the cells run on this machine)") from None
        self.ray = ray
        if self.log is not None:
            # Ray's core writes to the driver's fd 2, and its error listener prints the raylets' messages ("A worker
            # died...") to sys.stdout: both go to the log while the driver is connected (a caller that shows progress
            # holds its own stream, bound before; the CLI's console is)
            self.log.parent.mkdir(parents=True, exist_ok=True)
            sys.stdout.flush()
            sys.stderr.flush()
            self._stderr = os.dup(2)
            self._streams = (sys.stdout, sys.stderr)
            self._log_file = open(self.log, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 (closed in disconnect)
            os.dup2(self._log_file.fileno(), 2)
            sys.stdout = sys.stderr = self._log_file
        try:
            ray.init(address=self.address, log_to_driver=False, logging_level=logging.ERROR, include_dashboard=False,
                     ignore_reinit_error=True)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self.disconnect()
            raise ParityError(f"--ray {self.address}: no Ray cluster to join ({first}); start one with `ray start --head` "
                              "(docs/matrix.md) or run without --ray") from None
        self._refresh_nodes()
        self.progress("ray", "cluster", f"{len(self.nodes)} nodes at {self.address}: "
                      + "; ".join(f"{n.get('NodeManagerHostname')} ({_resources_text(n.get('Resources', {}))})" for n in self.nodes))

    def _refresh_nodes(self) -> None:
        with contextlib.suppress(Exception):
            self.nodes = [node for node in self.ray.nodes() if node.get("Alive")]

    def _unplaceable(self, need: Requirement) -> str | None:
        """None when an alive node has every resource `need` names (its total), else why the cell cannot be placed."""
        asks = {"CPU": need.cpus, "GPU": need.gpus, **need.resources}
        for node in self.nodes:
            have = node.get("Resources", {})
            if all(have.get(name, 0.0) >= amount for name, amount in asks.items() if amount):
                return None
        shown = "; ".join(f"{n.get('NodeManagerHostname')}: {_resources_text(n.get('Resources', {}))}" for n in self.nodes) or "none alive"
        return f"no node of the Ray cluster at {self.address} has {need.text()} (nodes: {shown})"

    def _submit_reference(self, avatar: AvatarInputs, pack: Any, settings: Settings, attempts: list[Attempt]) -> None:
        task = self.ray.remote(reference_task).options(num_cpus=1, num_returns=2, max_retries=0)
        info, entry = task.remote(avatar, [pack], settings)
        self.in_flight[info] = _Flight("reference", avatar.name, attempts=attempts, submitted=time.monotonic())
        self.entries[info] = entry
        self.progress("reference", avatar.name, "computing the reference (a Ray task)" + (f", attempt {len(attempts) + 1}" if attempts else ""))

    def _submit_cell(self, job: CellJob, pack: Any, reference: tuple[str, Any], attempts: list[Attempt]) -> None:
        need = job.cell.requires
        task = self.ray.remote(cell_task).options(num_cpus=need.cpus, num_gpus=need.gpus, resources=dict(need.resources), max_retries=0)
        ref = task.remote(job, [pack], reference[0], [reference[1]], self.cell_report)
        self.in_flight[ref] = _Flight("cell", job.cell.id, job, attempts, time.monotonic())
        self.progress("start", job.cell.id, f"Ray task asking {need.text()}" + (f", attempt {len(attempts) + 1}" if attempts else ""))

    def _reference_outcome(self, ref: Any, flight: _Flight) -> tuple[str, str, str, Any] | None:
        """(status, detail, key, entry ref); None when the task died and goes again."""
        entry = self.entries.pop(ref)
        try:
            status, detail, key, node, fetched = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:  # a bug in the task
            return "error", f"internal error in the reference task: {_first_line(exc)}", "", entry
        except self.ray.exceptions.RayError as exc:
            flight.attempts.append(Attempt(_death(exc)))
            self.progress("reference-died", flight.name, _death(exc))
            if len(flight.attempts) >= MAX_ATTEMPTS:
                return "lost", "; ".join(a.error for a in flight.attempts), "", entry
            return None
        for kind, mb in fetched.items():
            self.shipped[kind] += mb
        return status, f"{detail} (on {node.hostname}, Ray node {(node.node_id or '')[:8]})", key, entry

    def _cell_outcome(self, ref: Any, flight: _Flight, cells_dir: Path) -> CellResult | None:
        """The cell's result with its folder published under `cells_dir`; None when the task died and goes again."""
        from ...atomic import building

        job = flight.job
        assert job is not None
        try:
            result, packed, fetched = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:
            return _result(job, "error", f"internal error in the cell's task: {_first_line(exc)}", flight.attempts)
        except self.ray.exceptions.RayError as exc:
            flight.attempts.append(Attempt(_death(exc)))
            self.progress("died", job.cell.id, _death(exc))
            if len(flight.attempts) >= MAX_ATTEMPTS:
                return _result(job, "lost", f"{_death(exc)} (attempt {len(flight.attempts)} of {MAX_ATTEMPTS})", flight.attempts)
            return None
        for kind, mb in fetched.items():
            self.shipped[kind] += mb
        result.attempts = flight.attempts + result.attempts
        if result.node is not None:
            result.node.resources = next((_node_info(n).resources for n in self.nodes if n.get("NodeID") == result.node.node_id), {})
        if packed is not None:
            self.shipped["results"] += len(packed) / MB
            with building(cells_dir / job.cell.slug) as folder:
                unpack(packed, folder)
        return result

    def _stranded(self) -> Iterator[CellResult]:
        """Cells in flight that no alive node can hold any more (their node left): lost, cancelled."""
        self._refresh_nodes()
        for ref, flight in list(self.in_flight.items()):
            if flight.kind != "cell" or flight.job is None:
                continue
            missing = self._unplaceable(flight.job.cell.requires)
            if missing:
                del self.in_flight[ref]
                with contextlib.suppress(Exception):
                    self.ray.cancel(ref, force=True)
                yield _result(flight.job, "lost", missing, flight.attempts)


# ----- the tasks (plain functions: Ray places them, nothing else) --------------------------------------------


def reference_task(avatar: AvatarInputs, pack: list[Any], settings: Settings
                   ) -> tuple[tuple[str, str, str, NodeInfo, dict[str, float]], bytes | None]:
    """On a node: the avatar's reference (in this node's cache), and its cache entry packed for the nodes that
    compare with it: ((status, detail, key, node, MB fetched by kind), packed entry or None)."""
    from .local import make_reference

    node = _this_node()
    fetched: dict[str, float] = {}
    local = local_inputs(avatar, pack, fetched)
    status, detail = make_reference(local, settings)
    if status != "ok":
        return (status, detail, "", node, fetched), None
    entry = Path(detail).parent
    return ("ok", f"{_mb(entry):.1f} MB", entry.name, node, fetched), pack_folder(entry)


def cell_task(job: CellJob, pack: list[Any], reference_key: str, reference: list[Any], cell_report: CellReport | None
              ) -> tuple[CellResult, bytes | None, dict[str, float]]:
    """On a node: the cell (or its reuse), with inputs and reference taken from this node's cache or fetched;
    returns (result, the packed cell folder or None when reused, MB fetched by kind)."""
    from .cell import cell_environment, not_run, reuse, run_cell_and_report, runs_here

    node = _this_node()
    reason = runs_here(job.cell)
    if reason:
        return replace(not_run(job, reason), node=node), None, {}
    reused = reuse(job, cell_environment(job.cell))
    if reused is not None:
        return reused, None, {}
    fetched: dict[str, float] = {}
    job = replace(job, avatar=local_inputs(job.avatar, pack, fetched))
    dump = local_reference(reference_key, reference, fetched)
    with tempfile.TemporaryDirectory(prefix="parity-cell-") as tmp:
        folder = Path(tmp) / job.cell.slug
        folder.mkdir()
        result = run_cell_and_report(job, folder, dump, node, cell_report)
        return result, pack_folder(folder, exclude=KEPT_ON_NODE), fetched


def local_inputs(avatar: AvatarInputs, pack: list[Any], fetched: dict[str, float]) -> AvatarInputs:
    """The avatar's files on this node: the driver's paths when they hold the same contents, else the shipped pack
    unpacked once per node (under the temporary folder, keyed by the contents' fingerprint)."""
    from .cell import resolve_avatar

    paths = (avatar.dataset, avatar.audio, avatar.unet, avatar.audio_encoder)
    if all(path.exists() for path in paths):
        with contextlib.suppress(ParityError, OSError):
            here = resolve_avatar(avatar.name, *paths, start_frame=avatar.start_frame)
            if here.fingerprint == avatar.fingerprint:
                return avatar
    folder = Path(tempfile.gettempdir()) / INPUTS_FOLDER / avatar.fingerprint
    if not (folder / "complete").is_file():
        import ray

        from ...atomic import building

        data = ray.get(pack[0])
        fetched["inputs"] = fetched.get("inputs", 0.0) + len(data) / MB
        with building(folder) as tmp:
            unpack(data, tmp)
            (tmp / "complete").write_text(avatar.fingerprint)
    return replace(avatar, dataset=folder / "dataset", audio=folder / "audio" / avatar.audio.name, unet=folder / "unet" / avatar.unet.name,
                   audio_encoder=folder / "audio_encoder" / avatar.audio_encoder.name)


def local_reference(key: str, reference: list[Any], fetched: dict[str, float]) -> Path:
    """The reference dump of cache key `key` in this node's cache: there already, or the shipped entry stored there."""
    import ray

    from ...cache import cache_folder, check_entry, publish

    folder = cache_folder("reference") / key
    if not (folder.exists() and check_entry(folder) is None):
        data = ray.get(reference[0])
        fetched["references"] = fetched.get("references", 0.0) + len(data) / MB
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", suffix=".partial", dir=folder.parent))
        try:
            unpack(data, tmp)  # the entry as the computing node's cache holds it: entry.json with its checksums, dump/
            problem = check_entry(tmp)
            if problem is not None:
                raise ParityError(f"the shipped reference {key} is damaged ({problem})")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        publish(tmp, folder)
    return folder / "dump"


# ----- packing ---------------------------------------------------------------------------------------------


def pack_inputs(avatar: AvatarInputs) -> bytes:
    """The avatar's files as one uncompressed tar: dataset/, audio/<name>, unet/<name>, audio_encoder/<name>."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(avatar.dataset, arcname="dataset")
        for name, path in (("audio", avatar.audio), ("unet", avatar.unet), ("audio_encoder", avatar.audio_encoder)):
            tar.add(path, arcname=f"{name}/{path.name}")
    return buffer.getvalue()


def pack_folder(folder: Path, exclude: tuple[str, ...] = ()) -> bytes:
    """`folder`'s contents as one uncompressed tar (npy and PNG do not compress much), without the `exclude` paths."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(folder, arcname=".", filter=lambda info: None if _excluded(info.name, exclude) else info)
    return buffer.getvalue()


def unpack(data: bytes, folder: Path) -> None:
    """Extract a tar made by `pack_folder`/`pack_inputs` into `folder` (the "data" filter: nothing outside it)."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        tar.extractall(folder, filter="data")


def _excluded(name: str, exclude: tuple[str, ...]) -> bool:
    name = os.path.normpath(name)
    return any(name == path or name.startswith(path + "/") for path in exclude)


# ----- small helpers -----------------------------------------------------------------------------------------


def _this_node() -> NodeInfo:
    import ray

    context = ray.get_runtime_context()
    return NodeInfo(socket.gethostname(), os.getpid(), context.get_node_id(), ray.util.get_node_ip_address())


def _node_info(node: dict[str, Any]) -> NodeInfo:
    return NodeInfo(str(node.get("NodeManagerHostname", "")), 0, node.get("NodeID"), node.get("NodeManagerAddress"),
                    {k: float(v) for k, v in node.get("Resources", {}).items() if not k.startswith("node:") and "memory" not in k})


def _resources_text(resources: dict[str, float]) -> str:
    shown = {k: v for k, v in resources.items() if not k.startswith("node:") and "memory" not in k}
    return ", ".join(f"{v:g} {k}" for k, v in sorted(shown.items())) or "nothing"


def _result(job: CellJob, status: str, reason: str, attempts: list[Attempt]) -> CellResult:
    cell = job.cell
    return CellResult(cell.id, cell.avatar.name, cell.column, cell.backend, cell.precision, status,  # type: ignore[arg-type]
                      provider=cell.provider, device=cell.device, models=None if cell.models is None else str(cell.models), reason=reason,
                      key=job.key, requires=cell.requires, attempts=list(attempts))


def _death(exc: BaseException) -> str:
    kind = type(exc).__name__
    what = {"WorkerCrashedError": "the Ray worker process died", "NodeDiedError": "the node died", "OwnerDiedError": "the task's owner died",
            "ObjectLostError": "its result was lost with its node", "LocalRayletDiedError": "the node's raylet died",
            "TaskUnschedulableError": "no node can run it any more", "OutOfMemoryError": "the node ran out of memory"}.get(kind, kind)
    return f"{what} ({_first_line(exc)})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _mb(folder: Path) -> float:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / MB
