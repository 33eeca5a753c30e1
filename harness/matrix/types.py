"""The result types of `parity matrix`: one record per cell (avatar x backend x precision x device), what changed
since a previous matrix, where each cell ran, and the matrix's verdict.

Light (no numpy, no torch), so the command layer and the reports can name them. `matrix.json` holds a
`MatrixResult`, each cell's folder a `cell.json` holding its `CellResult`; both are written and read by the verdict's
result codec (`harness/verdict/result.py`: fields by name, the `JSON_DERIVED` properties beside them, non-finite
numbers as "Infinity"/"-Infinity"/"NaN"), and their JSON Schemas are generated from these types
(`python -m synctalk_parity.harness.matrix.result` prints matrix.json's).

A cell's `status`:
- "passed" / "failed": it ran, and every stage is (or is not) within its gate;
- "not run": it cannot run where the matrix ran (no macOS for Core ML, no GPU for CUDA or TensorRT, no node of a Ray
  cluster with what it needs, or the run was interrupted first): never a pass; `reason` says why;
- "lost": the worker running it died twice (a crash, the OOM killer, a node gone): not a verdict on the port;
- "error": the cell could not be judged (its export or reference could not be made, an internal error): it fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Literal

from ..verdict.types import Spread

MATRIX_SCHEMA_NAME: Final = "synctalk-parity/matrix"
CELL_SCHEMA_NAME: Final = "synctalk-parity/matrix-cell"
MATRIX_SCHEMA_VERSION: Final = 1

CellStatus = Literal["passed", "failed", "not run", "lost", "error"]
RAN: Final = ("passed", "failed")


@dataclass
class StageFigures:
    """One stage of a cell's comparison, in brief (the whole of it is in the cell's run/result.json)."""

    stage: str
    status: Literal["compared", "missing", "not provided"]
    passed: bool
    max_abs: float | None = None
    mean_abs: float | None = None
    p99: float | None = None
    identical: float | None = None
    psnr: float | None = None
    ssim: float | None = None
    cosine: float | None = None
    failure: str | None = None
    tolerance: dict[str, float] = field(default_factory=dict)


@dataclass
class GateUse:
    """The stage that came closest to its gate (or went furthest past it): which figure, how much of the gate it used
    (1 is the limit; see `harness/matrix/figures.py` for each figure's share)."""

    stage: str
    metric: str  # max_abs, mean_abs, identical, psnr, ssim, cosine
    value: float
    limit: float
    use: float


@dataclass
class Speed:
    """The networks alone, measured as `parity bench` measures its "model" rows: U-Net batches plus the encoder's
    share per frame, as the pipeline runs the backend, `repeats` timed passes of `frames` frames after a warm-up."""

    fps: Spread  # frames/s over the repeats: median, min, max
    repeats: int
    frames: int
    batch: int
    streams: int | None = None  # U-Net calls in flight at once
    cpus: int = 0  # CPUs the measuring process could use
    alone: bool = True  # measured while no other cell of this machine worked
    default_session_fps: Spread | None = None  # onnxruntime: the same export on plain ORT sessions (bench's yardstick)
    run_fps: float | None = None  # the cell's own run: frames/s of its frame phase (one pass, beside other cells)
    load_average: float | None = None  # the machine's 1-minute load when measured


@dataclass
class Requirement:
    """What a cell asks of a worker: CPUs, GPUs and custom resources (`macos`, `tensorrt`), as Ray's task options."""

    cpus: float = 1.0
    gpus: float = 0.0
    resources: dict[str, float] = field(default_factory=dict)

    def text(self) -> str:
        parts = [f"{self.cpus:g} CPU"] + ([f"{self.gpus:g} GPU"] if self.gpus else [])
        return ", ".join(parts + [f"{value:g} {name}" for name, value in sorted(self.resources.items())])


@dataclass
class NodeInfo:
    """Where a cell (or an attempt) ran: the host and process, and on Ray the node's id, address and resources."""

    hostname: str
    pid: int
    node_id: str | None = None
    address: str | None = None
    resources: dict[str, float] = field(default_factory=dict)


@dataclass
class Attempt:
    """An attempt that did not finish: where it ran and why it ended (the worker died, the node went away)."""

    error: str
    node: NodeInfo | None = None


@dataclass
class CellResult:
    """One cell: what it ran, where, its verdict against its avatar's reference, its speed, and its files."""

    JSON_DERIVED: ClassVar[dict[str, Any]] = {"ran": bool, "verdict": str}

    id: str  # "<avatar>/<column label>/<precision>", e.g. "demo/onnxruntime-cpu/fp16"
    avatar: str
    column: str  # "<column label>/<precision>"
    backend: str
    precision: str
    status: CellStatus
    provider: str | None = None
    device: str | None = None
    models: str | None = None  # an export folder given in the matrix file (else the avatar's checkpoints are exported)
    reason: str | None = None  # why not run, lost or an error
    key: str = ""  # the inputs' key (checkpoints, clip, backend, precision, device, frames, gates, settings)
    environment: dict[str, Any] = field(default_factory=dict)  # where it ran: versions, code digest, CPU, GPU
    requires: Requirement = field(default_factory=Requirement)
    node: NodeInfo | None = None
    attempts: list[Attempt] = field(default_factory=list)  # attempts that died before this outcome
    reused: bool = False  # taken from an earlier matrix in the same folder (same key, same environment)
    folder: str | None = None  # the cell's folder, relative to the matrix's
    report: str | None = None  # the cell's full report (report.html), relative to the matrix's folder
    gate: str = ""  # the gate it was judged by
    stages: list[StageFigures] = field(default_factory=list)
    first_divergent_stage: str | None = None
    coverage: str | None = None
    failures: list[str] = field(default_factory=list)
    diagnoses: list[str] = field(default_factory=list)
    worst: GateUse | None = None
    speed: Speed | None = None
    accuracy_repeats: int = 1
    noise: dict[str, dict[str, float]] = field(default_factory=dict)  # stage -> metric -> spread over the accuracy repeats
    seconds: dict[str, float] = field(default_factory=dict)  # run, speed, total (in the worker)
    notes: list[str] = field(default_factory=list)  # what else a reader should know (speed not measured, and why)
    schema: Literal["synctalk-parity/matrix-cell"] = CELL_SCHEMA_NAME
    schema_version: Literal[1] = MATRIX_SCHEMA_VERSION

    @property
    def ran(self) -> bool:
        return self.status in RAN

    @property
    def verdict(self) -> str:
        """PASS, FAIL, NOT RUN, LOST or ERROR."""
        return {"passed": "PASS", "failed": "FAIL"}.get(self.status, self.status.upper())

    def stage(self, name: str) -> StageFigures | None:
        return next((stage for stage in self.stages if stage.stage == name), None)


# ----- against a previous matrix -------------------------------------------------------------------


@dataclass
class Drift:
    """One figure of one stage that moved beyond its noise band since the baseline."""

    JSON_DERIVED: ClassVar[dict[str, Any]] = {"regression": bool}

    stage: str
    metric: str
    baseline: float
    now: float
    band: float  # how far it may move either way and still be noise
    worse: bool
    allowed: str | None = None  # the matrix file's reason, when it allows this change

    @property
    def regression(self) -> bool:
        return self.worse and self.allowed is None


@dataclass
class SpeedChange:
    """Model-only frames/s now against the baseline's: the median ratio with its range over the repeats."""

    JSON_DERIVED: ClassVar[dict[str, Any]] = {"regression": bool}

    baseline: Spread
    now: Spread
    ratio: Spread  # now / baseline: median / median, and min / max .. max / min
    floor: float  # a slowdown below this share is never flagged (noise the repeats do not show)
    slower: bool  # every repeat now is slower than every baseline repeat, and the median by more than the floor
    faster: bool
    allowed: str | None = None

    @property
    def regression(self) -> bool:
        return self.slower and self.allowed is None


@dataclass
class StageChange:
    """A stage whose verdict changed: "pass", "fail", "missing", "not provided" or "absent" (not in that run)."""

    stage: str
    before: str
    after: str
    allowed: str | None = None

    @property
    def newly_failing(self) -> bool:
        return self.before == "pass" and self.after in ("fail", "missing")


@dataclass
class CellChange:
    """One cell present in both matrices: its status then and now, stage verdicts that changed, figures that drifted
    beyond their bands, its speed, and the environment changes that can explain them."""

    JSON_DERIVED: ClassVar[dict[str, Any]] = {"regression": bool}

    cell: str
    before: CellStatus
    after: CellStatus
    stages: list[StageChange] = field(default_factory=list)
    drifts: list[Drift] = field(default_factory=list)
    speed: SpeedChange | None = None
    environment: list[str] = field(default_factory=list)  # "onnxruntime 1.22.0 -> 1.23.1", "gpu ... -> ..."
    compared: bool = True  # False: one side did not run, so no figures were compared

    @property
    def regression(self) -> bool:
        """A figure worse beyond its band, a slowdown beyond the spread, or a stage that newly fails (unless allowed)."""
        return (any(drift.regression for drift in self.drifts) or (self.speed is not None and self.speed.regression)
                or any(change.newly_failing and change.allowed is None for change in self.stages)
                or (self.before == "passed" and self.after in ("failed", "error")))

    @property
    def changed(self) -> bool:
        return bool(self.stages or self.drifts or (self.speed and (self.speed.slower or self.speed.faster)) or self.before != self.after)


@dataclass
class Bands:
    """The noise bands a figure may move within and still be noise (`harness/matrix/baseline.py`; docs/matrix.md)."""

    relative: float = 0.25  # errors (max/mean |diff|, p99) and 1 - similarity (identical, SSIM, cosine): this share of the baseline's
    gate_share: float = 0.05  # errors: at least this share of the stage's gate (its max_abs / max_mean_abs tolerance)
    image_levels: float = 1.0  # uint8 stages: max |diff| and p99 may move by this many levels
    psnr_db: float = 0.5  # PSNR: dB
    similarity_floor: float = 1e-4  # identical, SSIM, cosine: at least this much
    speed_floor: float = 0.10  # speed: a slowdown smaller than this share is never a regression


@dataclass
class BaselineComparison:
    """This matrix against a previous one (`--baseline`)."""

    JSON_DERIVED: ClassVar[dict[str, Any]] = {"regressions": list[str]}

    baseline: str  # its folder
    baseline_name: str
    baseline_created: str
    bands: Bands
    added: list[str] = field(default_factory=list)  # cells only in this matrix
    removed: list[str] = field(default_factory=list)  # cells only in the baseline
    cells: list[CellChange] = field(default_factory=list)

    @property
    def regressions(self) -> list[str]:
        return [change.cell for change in self.cells if change.regression]

    def change(self, cell: str) -> CellChange | None:
        return next((change for change in self.cells if change.cell == cell), None)


# ----- the matrix ----------------------------------------------------------------------------------


@dataclass
class AvatarInfo:
    """One avatar: its clip and checkpoints as the summaries name them."""

    name: str
    demo: bool
    dataset: str
    audio: str
    unet: str
    audio_encoder: str


@dataclass
class Allowance:
    """A change the matrix file allows, with its reason: cells matching `cell` (a glob), optionally one stage and one
    metric ("fps" for speed)."""

    cell: str
    reason: str
    stage: str | None = None
    metric: str | None = None


@dataclass
class ExecutorInfo:
    """How the cells ran: locally (worker processes) or on Ray (the cluster's nodes), and what moved between machines."""

    kind: Literal["local", "ray"]
    workers: int  # local: worker processes; ray: alive nodes
    address: str | None = None
    nodes: list[NodeInfo] = field(default_factory=list)
    shipped_mb: dict[str, float] = field(default_factory=dict)  # ray: inputs, references, results (MB moved through the object store)
    note: str = ""


@dataclass
class MatrixResult:
    """`parity matrix`: every cell, the comparison with a previous matrix, and the verdict (`failures`)."""

    JSON_DERIVED: ClassVar[dict[str, Any]] = {"passed": bool, "failures": list[str], "counts": dict[str, int]}

    name: str
    matrix_file: str
    created: str
    complete: bool  # False: interrupted (or still running); the finished cells are in it
    avatars: list[AvatarInfo]
    columns: list[str]
    cells: list[CellResult]
    executor: ExecutorInfo
    required: list[str] = field(default_factory=list)  # cells that must have run (--require, `require`)
    allow: list[Allowance] = field(default_factory=list)
    baseline: BaselineComparison | None = None
    wall_s: float = 0.0  # the whole matrix
    environment: dict[str, Any] = field(default_factory=dict)  # the machine that ran `parity matrix`
    schema: Literal["synctalk-parity/matrix"] = MATRIX_SCHEMA_NAME
    schema_version: Literal[1] = MATRIX_SCHEMA_VERSION

    def cell(self, cell_id: str) -> CellResult | None:
        return next((cell for cell in self.cells if cell.id == cell_id), None)

    @property
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(("passed", "failed", "not run", "lost", "error"), 0)
        for cell in self.cells:
            counts[cell.status] += 1
        return counts

    @property
    def failures(self) -> list[str]:
        """Why the gate fails, one line each: cells that fail or could not be judged, regressions since the baseline,
        required cells that did not run, an incomplete matrix, a matrix where nothing ran."""
        lines = []
        for cell in self.cells:
            if cell.status == "failed":
                lines.append(f"{cell.id}: FAIL, first divergent stage {cell.first_divergent_stage or '-'}"
                             + (f" ({cell.failures[0]})" if cell.failures else ""))
            elif cell.status == "error":
                lines.append(f"{cell.id}: error: {cell.reason}")
        if self.baseline is not None:
            for change in self.baseline.cells:
                if change.regression:
                    lines.append(f"{change.cell}: regression since the baseline: {regression_text(change)}")
        for cell_id in self.required:
            required = self.cell(cell_id)
            if required is None or not required.ran:
                lines.append(f"{cell_id}: required, but "
                             + ("not in the matrix" if required is None else f"{required.status}: {required.reason or ''}"))
        if not self.complete:
            lines.append("the matrix is incomplete (interrupted): cells that did not finish were not judged")
        if not any(cell.ran for cell in self.cells):
            lines.append("no cell ran: nothing was judged")
        return lines

    @property
    def passed(self) -> bool:
        return not self.failures


def regression_text(change: CellChange) -> str:
    """What regressed in one cell, in one line."""
    parts = [f"{s.stage} {s.before} -> {s.after}" for s in change.stages if s.newly_failing and s.allowed is None]
    if change.before == "passed" and change.after in ("failed", "error"):
        parts.insert(0, f"{change.before} -> {change.after}")
    parts += [f"{d.stage} {d.metric} {number(d.baseline)} -> {number(d.now)} (band {number(d.band)})" for d in change.drifts if d.regression]
    if change.speed is not None and change.speed.regression:
        ratio = change.speed.ratio
        parts.append(f"speed x{ratio.median:.2f} ({ratio.min:.2f}..{ratio.max:.2f}) of the baseline's frames/s")
    return "; ".join(parts)


def number(value: float | None) -> str:
    """A figure in 3 significant digits (1.23e-05, 0.0083, 71.2)."""
    if value is None:
        return "-"
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.3g}"
    return f"{value:.2e}"
