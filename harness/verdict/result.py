"""`result.json`: the one document a verdict leaves in a run folder, its JSON Schema, its one writer and reader.

`parity run`, `parity compare` and `parity bench` all write it with `write_result`; the reports read it
with `read_result` (checked against `RESULT_SCHEMA` with jsonschema)::

    {"schema": "synctalk-parity/result", "schema_version": 1,
     "command": "run" | "compare" | "bench", "created": ISO-8601 time,
     "backend":    {"name", "precision", "describe": {...}} | null,
     "inputs":     {"dataset", "audio", "weights": {...}, "frames", "demo"} | null,
     "comparison": {"reference", "candidate", "passed", "first_divergent_stage",
                    "gate": {"precision", "file"}, "stages": [stage results, in contract order],
                    "diagnoses": [{"name", "stage", "message"}],
                    "worst_frame": {"index", "reference_png", "candidate_png"} | null} | null,
     "timing":     {"frames", "fps", "seconds": {stage or phase: seconds}} | null,
     "bench":      {"machine", "rows": [...], "memory": [...], "memory_growth_mb": {backend: MB},
                    "port": {"command", "pairs", "port", "ours", "ratio", "failure", "verdict"} (bench --port)} | null,
     "port":       (parity compare of a port's own output) {"kind", "candidate", "alignment": {"summary", "base",
                    "offset", "missing", "extra", "mapping", ...}, "regions": {"psnr": {mouth, crop_rest, outside},
                    "frames", "per_frame"}, "lossy": {...}, "audio_track": {...}, "simulation": {"findings", ...}}}

Stage results: `stage`, `per` (clip | frame), `frames_compared`, `max_abs`, `mean_abs`, `p99`, `identical`
(share 0..1), `psnr` (dB), `ssim`, `cosine`, `nan`, `inf`, `passed`, `failure` (text or null), `worst`
({frame, index, reference, candidate}), `tolerance` ({...}), `per_frame` ({frames, psnr, max_abs}).
A metric that does not apply is null; a non-finite metric may be written as a JSON number extension
(`Infinity`) or as one of the strings "Infinity", "-Infinity", "NaN". Paths are relative to the run
folder when inside it. Unknown keys are allowed (newer writers may add some).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ...atomic import write_text_atomically
from ...errors import ParityError
from .types import Comparison
from .validate import schema_problems

RESULT_FILE = "result.json"
RESULT_SCHEMA_NAME = "synctalk-parity/result"
SCHEMA_VERSION = 1
NON_FINITE = ("Infinity", "-Infinity", "NaN")

_NULLABLE_STRING = {"type": ["string", "null"]}
_NULLABLE_INTEGER = {"type": ["integer", "null"], "minimum": 0}
_NULLABLE_NUMBER = {"type": ["number", "null"]}

RESULT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://synctalk-parity/schemas/result-1.json",
    "title": "synctalk-parity run result (result.json)",
    "type": "object",
    "required": ["schema", "schema_version", "command"],
    "properties": {
        "schema": {"const": RESULT_SCHEMA_NAME},
        "schema_version": {"const": SCHEMA_VERSION},
        "command": {"enum": ["run", "compare", "bench"]},
        "created": {"type": "string", "description": "ISO-8601 time the run finished"},
        "backend": {"$ref": "#/$defs/backend"},
        "inputs": {"$ref": "#/$defs/inputs"},
        "comparison": {"$ref": "#/$defs/comparison"},
        "timing": {"$ref": "#/$defs/timing"},
        "bench": {"$ref": "#/$defs/bench"},
    },
    "$defs": {
        "metric": {
            "description": "a measured value; null where it does not apply; non-finite as Infinity/NaN or their names",
            "anyOf": [{"type": ["number", "null"]}, {"enum": list(NON_FINITE)}],
        },
        "backend": {
            "type": ["object", "null"],
            "required": ["name", "precision"],
            "properties": {
                "name": {"type": "string"},
                "precision": {"type": "string"},
                "describe": {"type": ["object", "null"]},
            },
        },
        "inputs": {
            "type": ["object", "null"],
            "properties": {
                "dataset": _NULLABLE_STRING,
                "audio": _NULLABLE_STRING,
                "weights": {"type": ["object", "null"]},
                "frames": _NULLABLE_INTEGER,
                "demo": {"type": ["boolean", "null"]},
            },
        },
        "comparison": {
            "type": ["object", "null"],
            "required": ["passed", "stages"],
            "properties": {
                "reference": _NULLABLE_STRING,
                "candidate": _NULLABLE_STRING,
                "passed": {"type": "boolean"},
                "first_divergent_stage": _NULLABLE_STRING,
                "gate": {
                    "type": ["object", "null"],
                    "properties": {"precision": _NULLABLE_STRING, "file": _NULLABLE_STRING},
                },
                "stages": {"type": "array", "items": {"$ref": "#/$defs/stage_metrics"}},
                "diagnoses": {"type": "array", "items": {"$ref": "#/$defs/diagnosis"}},
                "worst_frame": {"$ref": "#/$defs/worst_frame"},
                "problems": {"type": "array", "items": {"type": "string"},
                             "description": "failures of the whole comparison, not of one stage (e.g. frame counts differ)"},
                "frame_count": {"type": "object", "additionalProperties": {"type": "integer"}},
                "coverage": {"type": "string", "description": "what was compared: '13 of 13 stages, 249 of 249 frames compared'"},
                "frames": {"type": "object", "additionalProperties": {"type": "integer"},
                           "description": "distinct output frames over the required per-frame stages: expected, compared"},
                "not_compared": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}},
                                 "description": "stages present in one dump only: reference_only, candidate_only"},
            },
        },
        "stage_metrics": {
            "type": "object",
            "required": ["stage", "passed"],
            "properties": {
                "stage": {"type": "string"},
                "per": {"enum": ["clip", "frame"]},
                "frames_compared": _NULLABLE_INTEGER,
                "max_abs": {"$ref": "#/$defs/metric"},
                "mean_abs": {"$ref": "#/$defs/metric"},
                "p99": {"$ref": "#/$defs/metric"},
                "identical": {"$ref": "#/$defs/metric"},
                "psnr": {"$ref": "#/$defs/metric"},
                "ssim": {"$ref": "#/$defs/metric"},
                "cosine": {"$ref": "#/$defs/metric"},
                "nan": _NULLABLE_INTEGER,
                "inf": _NULLABLE_INTEGER,
                "passed": {"type": "boolean", "description": "false when the stage fails its gate; a 'not provided' stage neither passes nor fails"},
                "status": {"enum": ["compared", "missing", "not provided"]},
                "frames_expected": _NULLABLE_INTEGER,
                "frames_missing": _NULLABLE_INTEGER,
                "ssim_crop": {"$ref": "#/$defs/metric"},
                "failure": _NULLABLE_STRING,
                "worst": {"type": ["object", "null"]},
                "tolerance": {"type": ["object", "null"]},
                "per_frame": {
                    "type": ["object", "null"],
                    "properties": {
                        "frames": {"type": "array", "items": {"type": "integer"}},
                        "psnr": {"type": "array", "items": {"$ref": "#/$defs/metric"}},
                        "max_abs": {"type": "array", "items": {"$ref": "#/$defs/metric"}},
                    },
                },
            },
        },
        "diagnosis": {
            "type": "object",
            "required": ["name", "message"],
            "properties": {"name": {"type": "string"}, "stage": _NULLABLE_STRING, "message": {"type": "string"}},
        },
        "worst_frame": {
            "type": ["object", "null"],
            "required": ["index", "reference_png", "candidate_png"],
            "properties": {
                "index": {"type": "integer"},
                "reference_png": {"type": "string"},
                "candidate_png": {"type": "string"},
            },
        },
        "timing": {
            "type": ["object", "null"],
            "required": ["fps"],
            "properties": {
                "frames": _NULLABLE_INTEGER,
                "fps": {"type": "number"},
                "seconds": {"type": "object", "additionalProperties": {"type": "number"}},
            },
        },
        "bench": {
            "type": ["object", "null"],
            "required": ["rows"],
            "properties": {
                "machine": _NULLABLE_STRING,
                "rows": {"type": "array", "items": {"$ref": "#/$defs/bench_row"}},
                "memory": {"type": "array", "items": {"$ref": "#/$defs/memory_row"},
                           "description": "peak resident memory by video length, to show it stays flat"},
                "memory_growth_mb": {"type": "object", "additionalProperties": _NULLABLE_NUMBER},
                "port": {"type": ["object", "null"],
                         "description": "parity bench --port: the port's command beside ours, pairs of whole-process runs "
                                        "(wall_s, cpu_s, peak_rss_mb, first_frame_s), port/ours ratios, failure, verdict"},
            },
        },
        "memory_row": {
            "type": "object",
            "required": ["backend", "frames", "peak_rss_mb"],
            "properties": {"backend": {"type": "string"}, "batch": _NULLABLE_INTEGER, "frames": {"type": "integer"},
                           "peak_rss_mb": {"type": "number"}},
        },
        "bench_row": {
            "type": "object",
            "required": ["backend", "fps_median"],
            "properties": {
                "backend": {"type": "string"},
                "batch": _NULLABLE_INTEGER,
                "mode": {"enum": ["model", "model-default-session", "end-to-end", "end-to-end-video", "reference", None]},
                "fps_median": {"type": "number"},
                "fps_min": _NULLABLE_NUMBER,
                "fps_max": _NULLABLE_NUMBER,
                "repeats": _NULLABLE_INTEGER,
                "unet_gflops": _NULLABLE_NUMBER,
                "peak_rss_mb": _NULLABLE_NUMBER,
                "ratio_to_reference": _NULLABLE_NUMBER,
                "load_average": _NULLABLE_NUMBER,
                "ratio_to_model": _NULLABLE_NUMBER,
                "whole_run_fps": _NULLABLE_NUMBER,
                "first_frame_s": _NULLABLE_NUMBER,
                "device": {"enum": ["cpu", "gpu"], "description": "where the networks ran; peak_share is of that device's fp32 peak"},
                "ratio_to_default_session": _NULLABLE_NUMBER,
                "streams": _NULLABLE_INTEGER,
            },
        },
    },
}


def write_result(folder: Path, command: str, *, backend: dict[str, Any] | None = None, inputs: dict[str, Any] | None = None,
                 comparison: Comparison | None = None, timing: dict[str, Any] | None = None,
                 bench: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> Path:
    """Write `folder/result.json` (atomically) for `command`; paths in the comparison relative to `folder`."""
    document = {
        "schema": RESULT_SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "command": command,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "backend": backend,
        "inputs": inputs,
        "comparison": None if comparison is None else comparison_document(comparison, folder),
        "timing": timing,
        "bench": bench,
        **(extra or {}),
    }
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RESULT_FILE
    write_text_atomically(path, json.dumps(plain(document), indent=2) + "\n")
    return path


def comparison_document(comparison: Comparison, relative_to: Path | None = None) -> dict[str, Any]:
    """The `comparison` object of result.json; paths relative to `relative_to` when inside it."""
    where = Path(relative_to) if relative_to is not None else None
    worst = None
    if comparison.worst_frame:
        worst = {
            "index": comparison.worst_frame["index"],
            "reference_png": _relative(comparison.worst_frame["reference_png"], where),
            "candidate_png": _relative(comparison.worst_frame["candidate_png"], where),
        }
    return {
        "reference": _relative(comparison.reference, where),
        "candidate": _relative(comparison.candidate, where),
        "passed": comparison.passed,
        "first_divergent_stage": comparison.first_divergent_stage,
        "gate": comparison.gate.as_dict(),
        "frame_count": dict(comparison.frame_count),
        "problems": list(comparison.problems),
        "stages": [plain(asdict(stage)) for stage in comparison.stages],
        "diagnoses": [{"name": d.name, "stage": d.stage, "message": d.message} for d in comparison.diagnoses],
        "worst_frame": worst,
        "not_compared": {k: list(v) for k, v in comparison.not_compared.items()},
        "coverage": comparison.coverage,
        "frames": dict(comparison.frames),
    }


def read_result(run_dir: Path) -> dict[str, Any]:
    """The result.json of a run folder (or the file itself), checked against RESULT_SCHEMA; ParityError naming the file otherwise."""
    run_dir = Path(run_dir)
    path = run_dir / RESULT_FILE if run_dir.is_dir() or not run_dir.name.endswith(".json") else run_dir
    if not path.is_file():
        where = "does not exist" if not run_dir.exists() else f"has no {RESULT_FILE}"
        raise ParityError(f"{run_dir} {where}: pass a folder written by `parity run`, `parity compare` or `parity bench`")
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ParityError(f"{path} is not valid JSON ({exc}): re-run the command that wrote it") from None
    if not isinstance(result, dict) or result.get("schema") != RESULT_SCHEMA_NAME:
        found = result.get("schema") if isinstance(result, dict) else type(result).__name__
        raise ParityError(f"{path} is not a parity result (schema {found!r}, expected {RESULT_SCHEMA_NAME!r})")
    version = result.get("schema_version")
    if version != SCHEMA_VERSION:
        hint = "upgrade synctalk-parity" if isinstance(version, int) and version > SCHEMA_VERSION else "re-run the command that wrote it"
        raise ParityError(f"{path} has schema_version {version!r}; this version reads {SCHEMA_VERSION}: {hint}")
    problems = schema_problems(result, RESULT_SCHEMA)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ParityError(f"{path} does not follow the result.json schema: {problems[0]}{more}")
    return result


def plain(value: Any) -> Any:
    """numpy scalars and paths to plain Python, NaN/Inf floats to None: result.json stays strict JSON."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalar
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def _relative(path: str | Path, where: Path | None) -> str:
    path = Path(path)
    if where is not None:
        try:
            return str(path.resolve().relative_to(where.resolve()))
        except ValueError:
            pass
    return str(path)
