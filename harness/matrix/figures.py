"""A cell's comparison in brief: each stage's figures, and the stage that came closest to its gate.

How much of its gate a figure uses (1 is the limit, above 1 it fails):
- an error with a ceiling (max |diff| under `max_abs`, mean |diff| under `max_mean_abs`): value / limit;
- a similarity with a floor in 0..1 (identical share, SSIM, cosine): (1 - value) / (1 - limit), the share of the
  allowed distance from identical that is used;
- PSNR with a floor: (100 - value) / (100 - limit), 100 dB being what identical data gets.
A stage's use is its largest; the cell's worst stage is the compared stage with the largest use (a missing stage
counts as infinitely far). The grid shows it with its figure, so a pass at 95% of the gate reads differently from
a pass at 1%.
"""

from __future__ import annotations

import math

from ..verdict.types import PSNR_IDENTICAL, Comparison, StageResult
from .types import GateUse, StageFigures

# tolerance key -> (figure, kind): "ceiling" value / limit; "unit" (1 - value) / (1 - limit); "psnr"
USE_RULES = {
    "max_abs": ("max_abs", "ceiling"),
    "max_mean_abs": ("mean_abs", "ceiling"),
    "min_identical": ("identical", "unit"),
    "min_ssim": ("ssim", "unit"),
    "min_cosine": ("cosine", "unit"),
    "min_psnr": ("psnr", "psnr"),
}
FIGURES = ("max_abs", "mean_abs", "p99", "identical", "psnr", "ssim", "cosine")


def stage_figures(comparison: Comparison) -> list[StageFigures]:
    """Every stage of a comparison, in contract order, in brief."""
    return [StageFigures(stage.stage, stage.status, stage.passed, **{name: _finite_or_none(getattr(stage, name)) for name in FIGURES},
                         failure=stage.failure, tolerance=dict(stage.tolerance)) for stage in comparison.stages]


def gate_use(stage: StageResult | StageFigures) -> GateUse | None:
    """How much of its gate the stage's tightest figure uses (None: nothing gated, or not compared)."""
    if stage.status == "missing":
        return GateUse(stage.stage, "coverage", 0.0, 0.0, math.inf)
    if stage.status != "compared":
        return None
    uses = []
    for key, limit in stage.tolerance.items():
        if key not in USE_RULES:
            continue
        metric, kind = USE_RULES[key]
        value = getattr(stage, metric)
        if value is None:
            continue
        uses.append(GateUse(stage.stage, metric, float(value), float(limit), _use(float(value), float(limit), kind)))
    return max(uses, key=lambda use: use.use, default=None)


def worst_stage(stages: list[StageResult] | list[StageFigures]) -> GateUse | None:
    """The stage whose figure uses the most of its gate (the first of equals, in contract order)."""
    worst = None
    for stage in stages:
        use = gate_use(stage)
        if use is not None and (worst is None or use.use > worst.use):
            worst = use
    return worst


def _use(value: float, limit: float, kind: str) -> float:
    if math.isnan(value):
        return math.inf
    if kind == "ceiling":
        distance, allowed = value, limit
    elif kind == "unit":
        distance, allowed = 1.0 - value, 1.0 - limit
    else:
        distance, allowed = PSNR_IDENTICAL - value, PSNR_IDENTICAL - limit
    distance = max(0.0, distance)
    if allowed <= 0:
        return 0.0 if distance == 0 else math.inf
    return distance / allowed


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None else float(value)
