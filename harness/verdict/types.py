"""The verdict's result types: what a comparison found, stage by stage, and what a run produced.

Everything that makes or reads a verdict imports these: the comparison fills `StageResult`s into a
`Comparison`, the diagnoses return `Diagnosis` objects, `parity run` returns a `RunResult`, and
`result.py` turns them into `result.json` (which the reports read). This module imports nothing
heavy, so the command layer can name these types without loading numpy or torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .gates import Gate

PSNR_IDENTICAL = 100.0  # dB written for identical data, so result.json stays plain JSON


@dataclass
class StageResult:
    """One stage of a comparison: its metrics and whether it passed its gate (`failure` says why not)."""

    stage: str
    per: str  # "clip" or "frame"
    frames_compared: int
    max_abs: float | None = None
    mean_abs: float | None = None
    p99: float | None = None
    identical: float | None = None
    psnr: float | None = None
    ssim: float | None = None
    cosine: float | None = None
    nan: int = 0
    inf: int = 0
    passed: bool = True
    failure: str | None = None
    worst: dict[str, Any] | None = None  # {frame, index, reference, candidate}
    tolerance: dict[str, float] = field(default_factory=dict)
    per_frame: dict[str, list[Any]] | None = None  # {frames, psnr, max_abs[, ssim]}
    status: str = "compared"  # "compared"; "missing": required but absent (fails); "not provided": absent, allowed by the gate
    frames_expected: int | None = None  # per-frame stages: frames the reference dumped
    frames_missing: int = 0  # of those, absent from the candidate (any fails the stage)
    ssim_crop: float | None = None  # frame.output: SSIM over each frame's crop box (the mean over frames)

    @property
    def skipped(self) -> bool:
        return self.status == "not provided"


@dataclass(frozen=True)
class Diagnosis:
    """A known port mistake whose signature was seen: its name, the stage it shows in, what to fix."""

    name: str
    stage: str
    message: str


@dataclass
class Comparison:
    """A candidate dump against a reference dump. Truthy when every gate passes (and the frame counts agree)."""

    reference: Path
    candidate: Path
    gate: Gate
    stages: list[StageResult]
    frame_count: dict[str, int]
    problems: list[str] = field(default_factory=list)
    diagnoses: list[Diagnosis] = field(default_factory=list)
    worst_frame: dict[str, Any] | None = None  # {index, reference_png, candidate_png}
    not_compared: dict[str, list[str]] = field(default_factory=dict)
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
    gate_reason: str = ""  # why the gate has its precision: the export's manifest, --precision, a gate file

    @property
    def fps(self) -> float:
        return self.frames_written / self.seconds["frames"] if self.seconds.get("frames") else 0.0

    @property
    def passed(self) -> bool:
        return self.comparison is None or bool(self.comparison)


def frame_runs(values: Iterable[int]) -> list[tuple[int, int]]:
    """Consecutive runs of frame indices as (first, last) pairs, in order: [0, 3, 4, 5] -> [(0, 0), (3, 5)]."""
    runs: list[list[int]] = []
    for value in sorted(values):
        if runs and value == runs[-1][1] + 1:
            runs[-1][1] = value
        else:
            runs.append([value, value])
    return [(a, b) for a, b in runs]
