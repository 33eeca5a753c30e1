"""The verdict's result types: what a comparison found stage by stage, what a run, a benchmark and a port's judgement
produced. `result.json` holds exactly these objects (`result.py` writes and reads them; its JSON Schema is generated
from them), and the reports render them.

Everything that makes or reads a verdict imports these: the comparison fills `StageResult`s into a `Comparison`
(under a `Gate`), the diagnoses return `Diagnosis` objects, `parity run` returns a `RunResult`, `parity bench` a
`BenchResult`, `parity compare` of a port's own output a `PortVerdict`. Plain dataclasses: this module imports
nothing heavy (no numpy), so the command layer and the reports can name them. A property listed in a class's
`JSON_DERIVED` ({JSON key: its type, or (attribute, type)}) is written to result.json beside the fields (for readers
of the file) and recomputed on reading.

PSNR's convention, everywhere: at most `PSNR_IDENTICAL` dB, which identical data gets exactly (`metrics.py`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from msgspec import Meta

PSNR_IDENTICAL = 100.0  # dB: PSNR of identical data, and PSNR's cap (README, Metrics)

Count = Annotated[int, Meta(ge=0)]
Share = Annotated[float, Meta(description="a share, 0..1")]


# ----- the gate a comparison applies ------------------------------------------------------------


@dataclass(frozen=True)
class Tolerance:
    """Limits for one stage; None means not checked."""

    max_abs: float | None = None
    max_mean_abs: float | None = None
    min_identical: float | None = None
    min_psnr: float | None = None
    min_ssim: float | None = None
    min_cosine: float | None = None

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


@dataclass(frozen=True)
class Gate:
    """Per-stage tolerances; `file` is the gate file they came from (None: built-in defaults). Loaded by `gates.py`."""

    precision: str
    stages: dict[str, Tolerance] = field(default_factory=dict)
    file: str | None = None
    provides: tuple[str, ...] | None = None  # stages the candidate must provide; None: every stage the reference has
    lossy_ok: bool = False  # frames re-encoded lossily (JPEG, video) are judged by region PSNR (`regions`) instead
    regions: dict[str, float] = field(default_factory=dict)  # with lossy_ok: minimum PSNR (dB) per frame region

    def tolerance(self, stage: str) -> Tolerance:
        return self.stages.get(stage, Tolerance())

    def required(self, stage: str) -> bool:
        return self.provides is None or stage in self.provides

    def as_dict(self) -> dict[str, Any]:
        """The gate in brief: precision, file, what the candidate must provide, and the lossy judgement when on."""
        document: dict[str, Any] = {"precision": self.precision, "file": self.file,
                                    "provides": None if self.provides is None else list(self.provides)}
        if self.lossy_ok:
            document.update(lossy_ok=True, regions=dict(self.regions))
        return document


# ----- the comparison ----------------------------------------------------------------------------


@dataclass
class WorstElement:
    """Where a stage's largest |diff| is: the frame (None for clip stages), the element's index, both values."""

    frame: int | None
    index: list[int]
    reference: float
    candidate: float


@dataclass
class PerFrame:
    """A per-frame stage's figures frame by frame (same order as `frames`)."""

    frames: list[int] = field(default_factory=list)
    psnr: list[float | None] = field(default_factory=list)  # None where PSNR does not apply (not an image)
    max_abs: list[float] = field(default_factory=list)
    ssim: list[float | None] | None = None  # images only; None for a large frame between the sampled ones


@dataclass
class StageResult:
    """One stage of a comparison: its metrics and whether it passed its gate (`failure` says why not)."""

    stage: str
    per: Literal["clip", "frame"]
    frames_compared: Count
    max_abs: float | None = None
    mean_abs: float | None = None
    p99: float | None = None
    identical: Share | None = None
    psnr: float | None = None  # dB, at most PSNR_IDENTICAL
    ssim: float | None = None
    cosine: float | None = None
    nan: Count = 0
    inf: Count = 0
    passed: bool = True
    failure: str | None = None
    worst: WorstElement | None = None
    tolerance: dict[str, float] = field(default_factory=dict)
    per_frame: PerFrame | None = None
    status: Literal["compared", "missing", "not provided"] = "compared"  # missing: required, absent (fails); not provided: the gate allows it
    frames_expected: Count | None = None  # per-frame stages: frames the reference dumped
    frames_missing: Count = 0  # of those, absent from the candidate (any fails the stage)
    ssim_crop: float | None = None  # frame.output: SSIM over each frame's crop box (the mean over frames)

    @property
    def skipped(self) -> bool:
        return self.status == "not provided"


@dataclass(frozen=True)
class Diagnosis:
    """A known port mistake whose signature was seen: its name, the stage it shows in, what to fix."""

    name: str
    stage: str | None
    message: str


@dataclass
class WorstFrame:
    """The output frame with the lowest PSNR, and the two PNGs that show it."""

    index: int
    reference_png: Path
    candidate_png: Path


@dataclass
class Comparison:
    """A candidate dump against a reference dump. Truthy when every gate passes (and the frame counts agree)."""

    JSON_DERIVED: ClassVar[dict[str, Any]] = {"passed": bool, "first_divergent_stage": str | None, "coverage": str}

    reference: Path
    candidate: Path
    gate: Gate
    stages: list[StageResult]
    frame_count: dict[str, int]  # {"reference", "candidate"}: output frames each makes
    problems: list[str] = field(default_factory=list)  # failures of the whole comparison, not of one stage
    diagnoses: list[Diagnosis] = field(default_factory=list)
    worst_frame: WorstFrame | None = None
    not_compared: dict[str, list[str]] = field(default_factory=dict)  # {"reference_only", "candidate_only"}: stage names
    frames: dict[str, int] = field(default_factory=dict)  # {"compared", "expected"}: distinct frames over per-frame stages

    @property
    def passed(self) -> bool:
        """Every required stage was compared and passed, and nothing about the whole comparison failed."""
        compared = [stage for stage in self.stages if stage.status == "compared"]
        return bool(compared) and not self.problems and all(stage.passed for stage in self.stages)

    @property
    def coverage(self) -> str:
        """"13 of 13 stages, 249 of 249 frames compared" (+ what the gate let the candidate leave out)."""
        required = [s for s in self.stages if not s.skipped]
        compared = [s for s in required if s.status == "compared"]
        text = f"{len(compared)} of {len(required)} stages"
        if self.frames.get("expected"):
            text += f", {self.frames.get('compared', 0)} of {self.frames['expected']} frames"
        text += " compared"
        skipped = [s.stage for s in self.stages if s.skipped]
        if skipped:
            text += f"; not provided (the gate allows it): {', '.join(skipped)}"
        return text

    def __bool__(self) -> bool:
        return self.passed

    @property
    def first_divergent_stage(self) -> str | None:
        """The earliest compared stage that fails its gate (a missing stage is a coverage failure, not a divergence)."""
        return next((stage.stage for stage in self.stages if stage.status == "compared" and not stage.passed), None)

    @property
    def missing_stages(self) -> list[str]:
        return [stage.stage for stage in self.stages if stage.status == "missing"]

    def stage(self, name: str) -> StageResult | None:
        return next((stage for stage in self.stages if stage.stage == name), None)

    @property
    def failures(self) -> list[str]:
        return self.problems + [stage.failure for stage in self.stages if stage.failure]


# ----- a run ------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """What `parity run` produced: where, from what, how fast, and (unless --no-compare) the comparison."""

    out: Path
    backend: str
    demo: bool
    dataset: str
    audio: str
    weights: dict[str, str]
    frames_written: int
    frames_available: int
    template_count: int
    frame_size: tuple[int, int]
    batch: int
    precision: str
    seconds: dict[str, float] = field(default_factory=dict)
    video: str = "video.mp4"
    describe: dict[str, str] = field(default_factory=dict)
    dump: str | None = "dump"
    comparison: Comparison | None = None
    reference: Path | None = None
    reference_cached: bool = False
    reference_note: str | None = None  # why the cached reference was made again (damaged, other environment)
    reference_run: ReferenceRun | None = None  # how the reference was made (execution, frames computed now)
    gate_reason: str = ""  # why the gate has its precision: the export's manifest, --precision, a gate file
    lip_sync: LipSync | None = None  # every frame's mouth motion against the reference's (or the audio's)

    @property
    def fps(self) -> float:
        return self.frames_written / self.seconds["frames"] if self.seconds.get("frames") else 0.0

    @property
    def passed(self) -> bool:
        return self.comparison is None or bool(self.comparison)


@dataclass
class ReferenceRun:
    """result.json's `reference`: how the reference the candidate was compared with was made."""

    execution: str  # "fast" (the same module frozen channels-last) or "exact" (plain eager PyTorch: --reference-exact)
    description: str  # what the execution is, in words
    cached: bool  # nothing was computed now
    frames_computed: int = 0  # frames whose heavy stages were computed now
    frames_cached: int = 0  # frames whose heavy stages came from the cache
    seconds: float = 0.0  # getting it (computing or reading the cache)
    note: str | None = None  # why it was made again, or which frames were computed beside cached ones


@dataclass
class Backend:
    """result.json's `backend`: what made the candidate."""

    name: str
    precision: str
    describe: dict[str, Any] = field(default_factory=dict)  # provider or device, library versions, the producer of a dump
    gate_reason: str | None = None  # why the gate has its precision


@dataclass
class Inputs:
    """result.json's `inputs`: what the candidate was made from."""

    dataset: str | None = None
    audio: str | None = None
    weights: dict[str, str] | None = None
    frames: Count | None = None
    demo: bool | None = None


@dataclass
class Timing:
    """result.json's `timing`: frames/s of the frame phase and seconds per stage or phase."""

    fps: float
    frames: Count | None = None
    seconds: dict[str, float] = field(default_factory=dict)


# ----- a benchmark ------------------------------------------------------------------------------

BenchMode = Literal["model", "model-default-session", "end-to-end", "end-to-end-video", "reference"]


@dataclass
class BenchRow:
    """One measured configuration of `parity bench` (see `harness/bench/measure.py` for each figure)."""

    backend: str
    batch: int
    mode: BenchMode  # end-to-end-video: no PNG frames, no dump
    fps_median: float
    fps_min: float
    fps_max: float
    repeats: int
    unet_gflops: float | None = None
    peak_rss_mb: float | None = None
    ratio_to_reference: float | None = None
    load_average: float | None = None  # 1-minute load when measured: a busy machine reads slow
    ratio_to_model: float | None = None  # end-to-end rows: fps over the model-only fps (same backend, batch)
    whole_run_fps: float | None = None  # end-to-end rows: frames over the whole frame phase, start-up included
    first_frame_s: float | None = None  # end-to-end rows: frame phase start to the first frame written
    peak_share: float | None = None  # unet_gflops over the device's measured fp32 peak (sgemm_gflops or gpu_sgemm_gflops)
    process_wall_s: float | None = None  # end-to-end rows: the child's whole-process wall time (median)
    process_first_frame_s: float | None = None  # end-to-end rows: process start to frames/00000.png written (median)
    device: Literal["cpu", "gpu"] = "cpu"  # where the networks ran (whose peak `peak_share` is measured against)
    ratio_to_default_session: float | None = None  # end-to-end rows: fps over plain ONNX Runtime's model-only fps (onnxruntime)
    streams: int | None = None  # model rows: U-Net calls in flight at once


@dataclass
class MemoryRow:
    """Peak resident memory of one end-to-end run of `frames` frames (memory must stay flat in video length)."""

    backend: str
    batch: int
    frames: int
    peak_rss_mb: float


PROCESS_METRICS = ("wall_s", "cpu_s", "peak_rss_mb", "first_frame_s")


@dataclass
class ProcessRun:
    """One whole process measured from outside (`harness/bench/port.py`)."""

    returncode: int
    wall_s: float
    cpu_s: float  # user + sys
    user_s: float
    sys_s: float
    peak_rss_mb: float
    first_frame_s: float | None  # first frame file's mtime - spawn time; None: no frame file
    frame_files: int  # image files written
    launcher_mb: float | None = None  # the peak RSS a child inherits from its launcher (a floor of peak_rss_mb)
    error: str | None = None  # why it failed: its last line on stderr, or why it did not start


@dataclass
class Spread:
    """Median and range of one figure over repeats."""

    median: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Spread | None:
        import statistics  # not at import (~40 ms)

        present = [v for v in values if v is not None]
        return cls(statistics.median(present), min(present), max(present)) if present else None


@dataclass
class PortPair:
    """The port's run and ours, one after the other."""

    JSON_DERIVED: ClassVar[dict[str, Any]] = {"ratio": dict[str, float | None]}

    port: ProcessRun
    ours: ProcessRun

    def ratio_of(self, metric: str) -> float | None:
        """Port over ours for `metric`; None where either is missing or ours is 0."""
        port, ours = getattr(self.port, metric), getattr(self.ours, metric)
        return None if port is None or not ours else port / ours

    @property
    def ratio(self) -> dict[str, float | None]:
        return {metric: self.ratio_of(metric) for metric in PROCESS_METRICS}


@dataclass
class PortBenchVerdict:
    """The port's verdict in brief (the whole of it is in its own result.json, `result`)."""

    passed: bool
    kind: str
    first_divergent_stage: str | None
    coverage: str
    diagnoses: list[str]
    result: str


@dataclass
class PortBench:
    """`parity bench --port`: the port's command beside ours, pairs of whole-process runs, and the port's verdict."""

    JSON_DERIVED: ClassVar[dict[str, Any]] = {"port": dict[str, Spread | None], "ours": dict[str, Spread | None],
                                               "ratio": dict[str, Spread | None], "passed": bool}

    command: str
    port_argv: list[str]
    ours_argv: list[str]
    dataset: str
    audio: str
    frames: int | None
    pairs: list[PortPair] = field(default_factory=list)
    failure: str | None = None  # the port failed or wrote no frames: no verdict
    failed_run: ProcessRun | None = None  # the port's run that failed
    verdict: PortBenchVerdict | None = None

    def summary(self, side: str, metric: str) -> Spread | None:
        """Median, min and max of `metric` over the pairs for `side` ("port" or "ours")."""
        return Spread.of(getattr(getattr(pair, side), metric) for pair in self.pairs)

    @property
    def port(self) -> dict[str, Spread | None]:
        return {metric: self.summary("port", metric) for metric in PROCESS_METRICS}

    @property
    def ours(self) -> dict[str, Spread | None]:
        return {metric: self.summary("ours", metric) for metric in PROCESS_METRICS}

    @property
    def ratio(self) -> dict[str, Spread | None]:
        """Port over ours, pair by pair: median, min and max."""
        return {metric: Spread.of(pair.ratio_of(metric) for pair in self.pairs) for metric in PROCESS_METRICS}

    @property
    def passed(self) -> bool:
        return self.failure is None and self.verdict is not None and self.verdict.passed


@dataclass
class VerdictRow:
    """Time to the first verdict (`parity bench --verdict`): `parity run` as whole processes with the comparison, the
    reference cache empty (cold) and filled by that run (warm), beside the same run with `--no-compare`; alternated,
    seconds of each repeat."""

    backend: str
    batch: int
    frames: int
    run_s: list[float]  # --no-compare
    cold_s: list[float]  # the comparison, the reference computed now
    warm_s: list[float]  # the comparison, the reference cached
    execution: str = "fast"  # how the reference's U-Net ran


@dataclass
class BenchResult:
    """`parity bench`: the machine, its measured fp32 peaks, a row per measured configuration, memory by video length;
    for `--port`, the port beside ours."""

    JSON_DERIVED: ClassVar[dict[str, Any]] = {"memory_growth_mb": dict[str, float | None]}

    machine: str | None = None
    rows: list[BenchRow] = field(default_factory=list)
    memory: list[MemoryRow] = field(default_factory=list)
    sgemm_gflops: float | None = None  # the machine's fp32 matmul peak: the best of sgemm_readings
    sgemm_readings: list[float] = field(default_factory=list)  # at the start, before each model row, at the end
    sgemm: str | None = None  # how the peak was measured
    gpu: str | None = None  # the GPU's name, when a row ran on one
    gpu_sgemm_gflops: float | None = None  # its fp32 matmul peak (the best of a reading at the start and the end)
    gpu_sgemm: str | None = None
    port: PortBench | None = None
    verdict: list[VerdictRow] = field(default_factory=list)  # --verdict: time to the first verdict, cold and warm

    def growth_mb(self, backend: str) -> float | None:
        """Peak RSS of the longest run minus the shortest's, for `backend`."""
        rows = sorted((m for m in self.memory if m.backend == backend), key=lambda m: m.frames)
        return rows[-1].peak_rss_mb - rows[0].peak_rss_mb if len(rows) >= 2 else None

    @property
    def memory_growth_mb(self) -> dict[str, float | None]:
        """Per backend with memory rows, from the shortest run to the longest."""
        return {backend: self.growth_mb(backend) for backend in dict.fromkeys(m.backend for m in self.memory)}


# ----- a port judged from what it writes ---------------------------------------------------------


@dataclass
class PortAlignment:
    """Which reference frame each of the port's frames is (`harness/ports/align.py`)."""

    summary: str
    base: int  # numbering base of the candidate's frames
    offset: int  # constant shift after the base
    candidate_frames: int
    reference_frames: int
    missing: list[int]  # reference indices no candidate frame maps to
    extra: list[int]  # candidate numbers beyond the reference's frames
    confidence: float  # 1 unambiguous, 0 a tie
    mapping: dict[int, int]  # candidate number -> reference index


@dataclass
class RegionFigures:
    """One figure per frame region (`harness/ports/regions.py`): the mouth box, the rest of the crop box, outside it."""

    mouth: float | None = None
    crop_rest: float | None = None
    outside: float | None = None


@dataclass
class RegionSeries:
    """One series per frame region, frame by frame."""

    mouth: list[float] = field(default_factory=list)
    crop_rest: list[float] = field(default_factory=list)
    outside: list[float] = field(default_factory=list)


@dataclass
class Regions:
    """PSNR by region: over every compared output frame (pooled squared errors), and frame by frame."""

    psnr: RegionFigures
    frames: list[int]
    per_frame: RegionSeries


@dataclass
class Lossy:
    """Whether the port's frames were re-encoded lossily as a whole, and how."""

    lossy: bool
    kind: str | None  # "jpeg", "video" or "unknown" when lossy
    estimated_quality: int | None
    outside_psnr: float  # dB outside the crop box
    text: str


@dataclass
class AudioTrack:
    """A video's sound track against the input audio."""

    present: bool
    text: str
    same_signal: bool | None = None
    correlation: float | None = None
    offset_ms: float | None = None  # > 0: the sound is late
    duration_s: float | None = None
    input_duration_s: float | None = None


@dataclass
class Finding:
    """A port mistake the simulation reproduced, and its evidence: `name` is the catalogued form
    (`mask_smaller_2`), `mistake` the registered mistake it is a form of (`harness/verdict/mistakes.py`: the id
    a stage signature names it by) and `fix` what the port should change."""

    name: str
    description: str
    evidence: str
    mistake: str | None = None  # None in results written before mistakes were registered
    fix: str | None = None
    status: str = "named"  # "named": specific evidence, the port's mistake; "partial": it improves the score, but not as it predicts
    explains: float | None = None  # share of the candidate's squared error (sampled frames) this finding removes


@dataclass
class Simulation:
    """What the simulation (`harness/ports/simulate.py`) explained of the port's frames."""

    findings: list[Finding]
    explained: bool
    summary: str
    sample: list[int]
    unexplained: list[str]
    seconds: float


@dataclass
class VideoStream:
    """A port's video as read."""

    fps: float
    frame_count: int
    size: list[int]
    codec: str | None
    audio_codec: str | None
    expected_fps: int
    fps_ok: bool


@dataclass
class WorstMouth:
    """The least-explained sampled frame's mouth box as PNGs (paths relative to the result's folder)."""

    index: int
    files: dict[str, str]  # reference, candidate, simulation, difference
    box_db: float
    note: str


@dataclass
class CodecNoise:
    """The reference encoded the way the port's output was (`harness/ports/codec.py`), against the reference: the
    noise floor per region, and the candidate on the same frames."""

    encoding: str  # what was read or estimated ("H.264 by x264 (crf=20.0, ...), yuv420p")
    colour: str | None  # a video's pixel format, colour range and matrix against the reference pipeline's
    estimated: str | None  # how the rate was estimated, when the stream does not say
    frames: list[int]
    floor: RegionFigures  # dB, the reference encoded alike
    candidate: RegionFigures  # dB, the candidate on the same frames
    tolerance_db: float
    consistent: bool
    text: str


@dataclass
class TemplateRun:
    """A run of output frames whose recovered template differs from the schedule's in one way."""

    first: int
    last: int
    kind: str  # "schedule", "offset", "reversed", "constant", "other"
    text: str


@dataclass
class Sources:
    """Which template each output frame was built on and which crop box its mouth was pasted into (`harness/ports/sources.py`)."""

    frames: list[int]  # reference indices
    templates: list[int]  # recovered template of each
    scheduled: list[int]  # the reference's schedule at those indices
    runs: list[TemplateRun]
    boxes_checked: int  # frames whose pasted box was registered: their own template's (the cheapest, ties kept) or another's (boxes.py)
    boxes_other: list[int]  # of those, frames pasted into another template's box
    text: str
    box_templates: list[int | None] = field(default_factory=list)  # the template whose crop box each frame was pasted into (None: not told apart)
    box_runs: list[TemplateRun] = field(default_factory=list)  # runs of frames pasted into other templates' boxes ("schedule", "offset", "constant", "other")


@dataclass
class Difference:
    """One line of "what this port does differently": what, the evidence, how much of the error it explains, and the fix."""

    title: str
    evidence: str
    fix: str
    mistake: str | None = None
    explains: float | None = None  # share of the error (sampled frames)
    porting_section: str | None = None


@dataclass
class PortVerdict:
    """`parity compare` of a port's own output: what was read, how it aligned, PSNR by region, encoding, sound, simulation."""

    kind: str
    candidate: str
    alignment: PortAlignment | None = None
    regions: Regions | None = None
    lossy: Lossy | None = None
    audio_track: AudioTrack | None = None
    simulation: Simulation | None = None
    video: VideoStream | None = None
    worst_mouth: WorstMouth | None = None
    codec: CodecNoise | None = None
    sources: Sources | None = None
    differences: list[Difference] = field(default_factory=list)  # what this port does differently, most of the error first


# ----- lip sync from the frames --------------------------------------------------------------------


@dataclass
class SyncWindow:
    """One window of the clip: its first frame, length, and the offset and score found in it."""

    start: Count
    frames: Count
    offset_frames: int | None
    score: float | None


@dataclass
class LipSync:
    """result.json's `lip_sync`: how the candidate's mouth motion lines up with the reference's (or, without one, with
    the audio's loudness), measured from the output frames (`harness/verdict/lip_sync.py`). `offset_frames` k > 0: the
    mouth moves k frames after the reference's (late); < 0: early; None: not measured (`note` says why)."""

    JSON_DERIVED: ClassVar[dict[str, Any]] = {"offset_ms": float | None}

    against: Literal["reference", "audio"]
    frames: Count  # frames compared
    fps: float
    max_lag: Count  # lags searched either way, in frames
    offset_frames: int | None
    score: float | None  # at offset_frames: concordance with the reference's motion, or correlation with the audio's loudness
    score_at_zero: float | None  # the same at no offset
    windows: list[SyncWindow] = field(default_factory=list)
    candidate_motion: list[float] = field(default_factory=list)  # high-passed, per frame (the plot's lines)
    reference_motion: list[float] = field(default_factory=list)  # the reference's, or the audio's loudness
    note: str | None = None

    @property
    def offset_ms(self) -> float | None:
        return None if self.offset_frames is None else self.offset_frames * 1000.0 / self.fps

    @property
    def measured(self) -> bool:
        return self.offset_frames is not None and self.score is not None

    @property
    def window_scores(self) -> list[float]:
        """The scores of the windows that have one, in clip order (none: no window scored)."""
        return [w.score for w in self.windows if w.score is not None]

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        document = asdict(self)
        document["offset_ms"] = self.offset_ms
        return document

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> LipSync:
        values = {k: v for k, v in document.items() if k != "offset_ms"}
        values["windows"] = [SyncWindow(**w) for w in values.get("windows", [])]
        return cls(**values)

    def summary(self) -> str:
        if self.offset_frames is None or self.score is None:
            return f"lip sync against the {self.against}: not measured ({self.note})"
        if self.offset_frames == 0:
            when = "in step"
        else:
            when = "the mouth is late" if self.offset_frames > 0 else "the mouth is early"
        scores = self.window_scores
        spread = f", windows {min(scores):.2f}..{max(scores):.2f}" if len(scores) > 1 else ""
        at_zero = "" if self.score_at_zero is None else f"at no offset {self.score_at_zero:.2f}"
        inner = ", ".join(part for part in (at_zero, spread.lstrip(", ")) if part)
        return (f"lip sync against the {self.against}: offset {self.offset_frames:+d} frames ({self.offset_ms:+.0f} ms, {when}), "
                f"score {self.score:.2f}" + (f" ({inner})" if inner else "") + f" over {self.frames} frames")


def frame_runs(values: Iterable[int]) -> list[tuple[int, int]]:
    """Consecutive runs of frame indices as (first, last) pairs, in order: [0, 3, 4, 5] -> [(0, 0), (3, 5)]."""
    runs: list[list[int]] = []
    for value in sorted(values):
        if runs and value == runs[-1][1] + 1:
            runs[-1][1] = value
        else:
            runs.append([value, value])
    return [(a, b) for a, b in runs]
