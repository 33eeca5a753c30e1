"""This matrix against the last release's: per cell, stage verdicts that changed, figures that moved beyond their
noise band, speed beyond the spread of its repeats, cells added or removed, and the environment changes beside them.

Noise bands (defaults in `types.Bands`; a matrix file's [bands] table overrides them; docs/matrix.md):

- errors (max |diff|, mean |diff|, p99): the larger of `relative` x the baseline's value, `gate_share` x the stage's
  gate (its `max_abs`, or `max_mean_abs` for the mean), and for uint8 stages `image_levels` levels (max, p99);
- similarities in 0..1 (identical share, SSIM, cosine): the distance from identical, 1 - value, is an error as
  above (`relative` of the baseline's distance), at least `similarity_floor`;
- PSNR: `psnr_db` dB;
- and never less than the spread measured for that figure over a cell's accuracy repeats (either side's), so a
  runtime that is not deterministic widens its own bands. CPU runtimes are: repeated runs give identical figures.
A figure that got worse beyond its band is a regression, unless an [[allow]] entry of the matrix file covers it; one
that got better is reported, never failed. Non-finite figures drift when they differ at all.

Speed: the model-only frames/s (median, min, max over the repeats). A slowdown is a regression when every repeat now
is slower than every repeat of the baseline (the ranges do not overlap) and the median ratio is below 1 -
`speed_floor` (the repeats of one run do not show a shared machine's slower hour).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..verdict.types import Spread
from .spec import allowance_for
from .types import Allowance, Bands, BaselineComparison, CellChange, CellResult, Drift, MatrixResult, Speed, SpeedChange, StageChange, StageFigures

ERROR_FIGURES = ("max_abs", "mean_abs", "p99")
UNIT_FIGURES = ("identical", "ssim", "cosine")
IMAGE_STAGES = ("frame.crop_328", "frame.mouth", "frame.pasted_region", "frame.output")  # uint8 levels
IMAGE_MEAN_FLOOR = 0.01  # uint8 stages: mean |diff| may move by this share of `image_levels`


def compare_matrices(now: MatrixResult, baseline: MatrixResult, baseline_dir: Path, bands: Bands, allow: list[Allowance]) -> BaselineComparison:
    """`now` against `baseline` (read from `baseline_dir`), under `bands` and the matrix file's allowances."""
    before = {cell.id: cell for cell in baseline.cells}
    after = {cell.id: cell for cell in now.cells}
    comparison = BaselineComparison(str(baseline_dir), baseline.name, baseline.created, bands,
                                    added=[cell_id for cell_id in after if cell_id not in before],
                                    removed=[cell_id for cell_id in before if cell_id not in after])
    for cell_id, cell in after.items():
        if cell_id in before:
            comparison.cells.append(compare_cells(before[cell_id], cell, bands, allow))
    return comparison


def compare_cells(before: CellResult, after: CellResult, bands: Bands, allow: list[Allowance]) -> CellChange:
    """One cell then and now: its stages' verdicts and figures, its speed, and what changed in its environment."""
    change = CellChange(after.id, before.status, after.status, environment=environment_changes(before.environment, after.environment))
    if not (before.ran and after.ran):
        change.compared = False
        return change
    for name in dict.fromkeys([s.stage for s in before.stages] + [s.stage for s in after.stages]):
        old, new = before.stage(name), after.stage(name)
        verdicts = (_verdict(old), _verdict(new))
        if verdicts[0] != verdicts[1]:
            change.stages.append(StageChange(name, *verdicts, allowed=allowance_for(allow, after.id, name, None)))
        if old is not None and new is not None and old.status == new.status == "compared":
            change.drifts += stage_drifts(old, new, bands, _noise(before, after, name), lambda metric, stage=name: allowance_for(allow, after.id, stage, metric))
    if before.speed is not None and after.speed is not None:
        change.speed = speed_change(before.speed, after.speed, bands.speed_floor, allowance_for(allow, after.id, None, "fps"))
        change.environment += _speed_conditions(before.speed, after.speed)
    return change


def stage_drifts(old: StageFigures, new: StageFigures, bands: Bands, noise: dict[str, float], allowed=lambda metric: None) -> list[Drift]:
    """The figures of one stage that moved beyond their bands, worse or better."""
    drifts = []
    for metric in (*ERROR_FIGURES, *UNIT_FIGURES, "psnr"):
        was, now = getattr(old, metric), getattr(new, metric)
        if was is None or now is None:
            continue
        band = metric_band(old.stage, metric, was, old.tolerance, bands, noise.get(metric, 0.0))
        if not (math.isfinite(was) and math.isfinite(now)):
            if _same(was, now):
                continue
            worse = _worse(metric, was, now)
        elif abs(now - was) <= band:
            continue
        else:
            worse = _worse(metric, was, now)
        drifts.append(Drift(old.stage, metric, was, now, band, worse, allowed(metric) if worse else None))
    return drifts


def metric_band(stage: str, metric: str, baseline: float, tolerance: dict[str, float], bands: Bands, measured: float = 0.0) -> float:
    """How far `metric` of `stage` may move from `baseline` and still be noise (the module docstring)."""
    if not math.isfinite(baseline):
        return measured
    if metric in ERROR_FIGURES:
        band = bands.relative * abs(baseline)
        limit = tolerance.get("max_mean_abs", tolerance.get("max_abs")) if metric == "mean_abs" else tolerance.get("max_abs")
        if limit:
            band = max(band, bands.gate_share * limit)
        if stage in IMAGE_STAGES:
            band = max(band, bands.image_levels * (IMAGE_MEAN_FLOOR if metric == "mean_abs" else 1.0))
    elif metric in UNIT_FIGURES:
        band = max(bands.relative * abs(1.0 - baseline), bands.similarity_floor)
    else:  # psnr
        band = bands.psnr_db
    return max(band, measured)


def speed_change(before: Speed, after: Speed, floor: float, allowed: str | None = None) -> SpeedChange:
    """Frames/s now over the baseline's: median ratio, and the ratio's range over the repeats (min/max .. max/min)."""
    was, now = before.fps, after.fps
    ratio = Spread(_ratio(now.median, was.median), _ratio(now.min, was.max), _ratio(now.max, was.min))
    slower = now.max < was.min and ratio.median < 1.0 - floor
    faster = now.min > was.max and ratio.median > 1.0 + floor
    return SpeedChange(was, now, ratio, floor, slower, faster, allowed if slower else None)


def environment_changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What differs between two cells' environments, one line each: "onnxruntime 1.22.0 -> 1.23.1"."""
    lines = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if isinstance(old, dict) or isinstance(new, dict):
            lines += list(environment_changes(old or {}, new or {}))
        elif old != new:
            lines.append(f"{ENVIRONMENT_NAMES.get(name, name)} {old} -> {new}")
    return lines


ENVIRONMENT_NAMES = {"code": "synctalk-parity code digest", "cpu_isa": "CPU instruction set", "cpu": "CPU", "cpus": "CPUs", "gpu": "GPU",
                     "system": "system", "machine": "machine"}


def _speed_conditions(before: Speed, after: Speed) -> list[str]:
    lines = []
    if before.cpus != after.cpus:
        lines.append(f"speed measured with {before.cpus} -> {after.cpus} CPUs")
    if before.alone != after.alone:
        lines.append(f"speed measured {'alone' if before.alone else 'beside other cells'} -> {'alone' if after.alone else 'beside other cells'}")
    if before.frames != after.frames or before.batch != after.batch:
        lines.append(f"speed passes of {before.frames} frames at batch {before.batch} -> {after.frames} frames at batch {after.batch}")
    return lines


def _noise(before: CellResult, after: CellResult, stage: str) -> dict[str, float]:
    """Per metric, the larger spread either side measured over its accuracy repeats."""
    spreads: dict[str, float] = {}
    for cell in (before, after):
        for metric, spread in cell.noise.get(stage, {}).items():
            if math.isfinite(spread):
                spreads[metric] = max(spreads.get(metric, 0.0), spread)
    return spreads


def _verdict(stage: StageFigures | None) -> str:
    if stage is None:
        return "absent"
    if stage.status != "compared":
        return stage.status
    return "pass" if stage.passed else "fail"


def _worse(metric: str, was: float, now: float) -> bool:
    if math.isnan(now):
        return True
    if math.isnan(was):
        return False
    return now > was if metric in ERROR_FIGURES else now < was


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.inf
