"""Comparison gates: how close each stage of a candidate must be to the reference, per precision.

Built-in defaults (overridable per stage in a TOML gate file):

| stage | fp32 | fp16 |
|---|---|---|
| `audio.pcm`, `audio.mel`, `audio.windows` | max abs 1e-5 | same (no network runs yet) |
| `audio.features`, `frame.unet_output` | max abs 1e-4 | max abs 1e-2 |
| `frame.unet_audio` | follows `audio.features` (rows of it) | follows `audio.features` |
| `frame.template_index`, `frame.crop_box` | equal (max abs 0) | equal |
| `frame.crop_328` | >= 99.9 % identical pixels, PSNR >= 50 dB | same: made before any network runs |
| `frame.unet_input` | max abs 1/255 + 1e-6 (one crop level) | same |
| `frame.mouth`, `frame.pasted_region`, `frame.output` | >= 99.9 % identical pixels, PSNR >= 50 dB | PSNR >= 40 dB |

The crop and the U-Net input come before any network, so fp16 does not loosen them: a difference
there is a port mistake, not precision. Coverage is part of the gate: by default the candidate must hold every stage the reference dump
holds, every frame of each, and make as many frames; a missing stage or frame fails, named. A gate
file may say instead which stages the candidate provides (a port that writes only its frames and
features): those are required, the others are reported as "not provided" (skipped, never passed).

A gate file::

    precision = "fp16"            # picks the built-in defaults (else the precision asked for)
    provides = ["audio.features", "frame.output"]   # optional: what the candidate must hold
    [stages."frame.unet_output"]
    max_abs = 2e-2
    [stages."frame.output"]
    min_identical = 0.99
    min_psnr = 38

Keys: `max_abs`, `max_mean_abs`, `min_identical` (share 0..1), `min_psnr` (dB), `min_ssim`,
`min_cosine`. A key set in the file replaces the default; other keys of the stage keep theirs.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import fields, replace
from pathlib import Path

from ...errors import ParityError
from ...precision import checked_precision
from ...reference.stages import STAGE_NAMES
from .types import Gate, Tolerance

__all__ = ["Gate", "Tolerance", "default_gate", "load_gate"]

ONE_LEVEL = 1 / 255 + 1e-6


TOLERANCE_KEYS = tuple(f.name for f in fields(Tolerance))
GATE_KEYS = ("precision", "provides", "lossy_ok", "regions", "stages")
REGION_NAMES = ("mouth", "crop_rest", "outside")
LOSSY_REGIONS = {"mouth": 35.0, "crop_rest": 35.0, "outside": 35.0}  # default region floors with lossy_ok


def load_gate(path: str | os.PathLike | None = None, precision: str | None = "fp32") -> Gate:
    """The gate for `precision` (None: fp32), with a TOML file's overrides; the file's `precision` wins."""
    precision = precision or "fp32"
    if path is None:
        return default_gate(precision)
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ParityError(f"{path}: gate file not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ParityError(f"{path}: not a valid TOML gate file ({exc})") from None
    for key in data:
        if key not in GATE_KEYS:
            raise ParityError(f"{path}: unknown key {key!r}{_did_you_mean(key, GATE_KEYS)}")
    gate = default_gate(data.get("precision", precision), where=str(path))
    stages = data.get("stages", {})
    if not isinstance(stages, dict):
        raise ParityError(f"{path}: 'stages' must be tables like [stages.\"frame.output\"]")
    merged = dict(gate.stages)
    for stage, overrides in stages.items():
        if stage not in STAGE_NAMES:
            raise ParityError(f"{path}: unknown stage {stage!r}{_did_you_mean(stage, STAGE_NAMES)}")
        if not isinstance(overrides, dict):
            raise ParityError(f"{path}: stages.{stage} must be a table of tolerances ({', '.join(TOLERANCE_KEYS)})")
        merged[stage] = replace(merged.get(stage, Tolerance()), **_checked_overrides(overrides, stage, path))
    lossy_ok = data.get("lossy_ok", False)
    if not isinstance(lossy_ok, bool):
        raise ParityError(f"{path}: 'lossy_ok' must be true or false, got {lossy_ok!r}")
    regions = _checked_regions(data.get("regions"), path)
    if regions and not lossy_ok:
        raise ParityError(f"{path}: [regions] thresholds apply to lossy frames; add lossy_ok = true")
    return Gate(gate.precision, merged, str(path), _checked_provides(data.get("provides"), path), lossy_ok,
                {**LOSSY_REGIONS, **regions} if lossy_ok else {})


def default_gate(precision: str = "fp32", where: str = "--precision") -> Gate:
    """The built-in tolerances for fp32 or fp16 (table in the module docstring)."""
    checked_precision(precision, where)
    network = 1e-4 if precision == "fp32" else 1e-2
    exact = Tolerance(max_abs=0.0)
    audio = Tolerance(max_abs=1e-5)
    image_fp32 = Tolerance(min_identical=0.999, min_psnr=50.0)
    image = image_fp32 if precision == "fp32" else Tolerance(min_psnr=40.0)
    stages = {
        "audio.pcm": audio,
        "audio.mel": audio,
        "audio.windows": audio,
        "audio.features": Tolerance(max_abs=network),
        "frame.template_index": exact,
        "frame.crop_box": exact,
        "frame.crop_328": image_fp32,
        "frame.unet_audio": Tolerance(max_abs=network),
        "frame.unet_input": Tolerance(max_abs=ONE_LEVEL),
        "frame.unet_output": Tolerance(max_abs=network),
        "frame.mouth": image,
        "frame.pasted_region": image,
        "frame.output": image,
    }
    return Gate(precision, stages, None)


def _checked_regions(value, path: Path) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ParityError(f"{path}: 'regions' must be a table like [regions] mouth = 35")
    checked = {}
    for name, floor in value.items():
        if name not in REGION_NAMES:
            raise ParityError(f"{path}: regions: unknown region {name!r}{_did_you_mean(name, REGION_NAMES)}")
        if isinstance(floor, bool) or not isinstance(floor, (int, float)) or floor < 0:
            raise ParityError(f"{path}: regions.{name} must be a PSNR in dB (a non-negative number), got {floor!r}")
        checked[name] = float(floor)
    return checked


def _checked_provides(value, path: Path) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(name, str) for name in value):
        raise ParityError(f"{path}: 'provides' must be a non-empty list of stage names, like [\"frame.output\", \"audio.features\"]")
    for name in value:
        if name not in STAGE_NAMES:
            raise ParityError(f"{path}: provides: unknown stage {name!r}{_did_you_mean(name, STAGE_NAMES)}")
    return tuple(name for name in STAGE_NAMES if name in value)


def _checked_overrides(overrides: dict, stage: str, path: Path) -> dict[str, float]:
    checked = {}
    for key, value in overrides.items():
        if key not in TOLERANCE_KEYS:
            raise ParityError(f"{path}: stages.{stage}: unknown key {key!r}{_did_you_mean(key, TOLERANCE_KEYS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ParityError(f"{path}: stages.{stage}.{key} must be a non-negative number, got {value!r}")
        if key in ("min_identical", "min_ssim", "min_cosine") and value > 1:
            raise ParityError(f"{path}: stages.{stage}.{key} is a share between 0 and 1, got {value!r}")
        checked[key] = float(value)
    return checked


def _did_you_mean(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; expected one of {', '.join(choices)}"
