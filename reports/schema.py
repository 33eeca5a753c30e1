"""What a run folder's `result.json` holds, and what `report.json` holds: their JSON Schemas, a checker, and
the read-only view of a run that the report writers render.

`result.json` is written into a run folder by `parity run`, `parity compare` and `parity bench`:

    {"schema": "synctalk-parity/result", "schema_version": 1,
     "command": "run" | "compare" | "bench", "created": ISO-8601 time,
     "backend":    {"name", "precision", "describe": {...}} | null,
     "inputs":     {"dataset", "audio", "weights": {...}, "frames", "demo"} | null,
     "comparison": {"reference", "candidate", "passed", "first_divergent_stage",
                    "gate": {"precision", "file"}, "stages": [stage metrics, in contract order],
                    "diagnoses": [{"name", "stage", "message"}],
                    "worst_frame": {"index", "reference_png", "candidate_png"} | null} | null,
     "timing":     {"frames", "fps", "seconds": {stage or phase: seconds}} | null,
     "bench":      {"machine", "rows": [{"backend", "batch", "mode", "fps_median", "fps_min", "fps_max",
                                         "repeats", "unet_gflops", "peak_rss_mb", "ratio_to_reference",
                                         "ratio_to_model", "whole_run_fps", "first_frame_s", "load_average"}],
                    "memory": [{"backend", "batch", "frames", "peak_rss_mb"}], "memory_growth_mb": {backend: MB}} | null}

Stage metrics: `stage`, `per` (clip | frame), `frames_compared`, `max_abs`, `mean_abs`, `p99`, `identical`
(share 0..1), `psnr` (dB), `ssim`, `cosine`, `nan`, `inf`, `passed`, `failure` (text or null), `worst`
({frame, index, reference, candidate}), `tolerance` ({...}), `per_frame` ({frames, psnr, max_abs}).
A metric that does not apply is null; a non-finite metric (the PSNR of identical images) may be written as
a JSON number extension (`Infinity`) or as one of the strings "Infinity", "-Infinity", "NaN".
Paths are relative to the run folder when inside it. Unknown keys are allowed (newer writers may add some).

`report.json` (written by `parity report`) combines runs:
`{"schema": "synctalk-parity/report", "schema_version": 1, "created": ISO-8601, "runs": [result.json + "run_dir"]}`.

The schemas below are standard JSON Schema (draft 2020-12). `validate` checks the subset they use (type,
enum, const, properties, required, additionalProperties, items, minimum, anyOf, allOf, local $ref), so no
extra package is needed.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ParityError

RESULT_SCHEMA_NAME = "synctalk-parity/result"
REPORT_SCHEMA_NAME = "synctalk-parity/report"
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
        "backend": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/backend"}]},
        "inputs": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/inputs"}]},
        "comparison": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/comparison"}]},
        "timing": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/timing"}]},
        "bench": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/bench"}]},
    },
    "$defs": {
        "metric": {
            "description": "a measured value; null where it does not apply; non-finite as Infinity/NaN or their names",
            "anyOf": [{"type": ["number", "null"]}, {"enum": list(NON_FINITE)}],
        },
        "backend": {
            "type": "object",
            "required": ["name", "precision"],
            "properties": {
                "name": {"type": "string"},
                "precision": {"type": "string"},
                "describe": {"type": ["object", "null"]},
            },
        },
        "inputs": {
            "type": "object",
            "properties": {
                "dataset": _NULLABLE_STRING,
                "audio": _NULLABLE_STRING,
                "weights": {"type": ["object", "null"]},
                "frames": _NULLABLE_INTEGER,
                "demo": {"type": ["boolean", "null"]},
            },
        },
        "comparison": {
            "type": "object",
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
                "worst_frame": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/worst_frame"}]},
                "problems": {"type": "array", "items": {"type": "string"},
                             "description": "failures of the whole comparison, not of one stage (e.g. frame counts differ)"},
                "frame_count": {"type": "object", "additionalProperties": {"type": "integer"}},
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
                "passed": {"type": "boolean"},
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
            "type": "object",
            "required": ["index", "reference_png", "candidate_png"],
            "properties": {
                "index": {"type": "integer"},
                "reference_png": {"type": "string"},
                "candidate_png": {"type": "string"},
            },
        },
        "timing": {
            "type": "object",
            "required": ["fps"],
            "properties": {
                "frames": _NULLABLE_INTEGER,
                "fps": {"type": "number"},
                "seconds": {"type": "object", "additionalProperties": {"type": "number"}},
            },
        },
        "bench": {
            "type": "object",
            "required": ["rows"],
            "properties": {
                "machine": _NULLABLE_STRING,
                "rows": {"type": "array", "items": {"$ref": "#/$defs/bench_row"}},
                "memory": {"type": "array", "items": {"$ref": "#/$defs/memory_row"},
                           "description": "peak resident memory by video length, to show it stays flat"},
                "memory_growth_mb": {"type": "object", "additionalProperties": _NULLABLE_NUMBER},
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
                "mode": {"enum": ["model", "end-to-end", "end-to-end-video", "reference", None]},
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
            },
        },
    },
}

REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://synctalk-parity/schemas/report-1.json",
    "title": "synctalk-parity combined report (report.json)",
    "type": "object",
    "required": ["schema", "schema_version", "runs"],
    "properties": {
        "schema": {"const": REPORT_SCHEMA_NAME},
        "schema_version": {"const": SCHEMA_VERSION},
        "created": {"type": "string"},
        "runs": {
            "type": "array",
            "items": {
                "allOf": [
                    {"$ref": "#/$defs/result"},
                    {"type": "object", "required": ["run_dir"], "properties": {"run_dir": {"type": "string"}}},
                ]
            },
        },
    },
    "$defs": {"result": {k: v for k, v in RESULT_SCHEMA.items() if not k.startswith("$")}, **RESULT_SCHEMA["$defs"]},
}


def validate(instance: Any, schema: dict[str, Any]) -> list[str]:
    """Every place `instance` breaks `schema`, as "path: problem" lines; empty when it conforms."""
    problems: list[str] = []
    _check(instance, schema, schema, "$", problems)
    return problems


@dataclass(frozen=True)
class Run:
    """One run folder and its validated result.json, with the accessors the report writers share."""

    run_dir: Path
    result: dict[str, Any]
    label: str  # unique among the runs of one report: the backend, plus the precision or a number if needed

    @property
    def backend(self) -> str:
        return (self.result.get("backend") or {}).get("name") or _bench_backends(self.result) or "no backend"

    @property
    def precision(self) -> str:
        return (self.result.get("backend") or {}).get("precision") or "-"

    @property
    def comparison(self) -> dict[str, Any] | None:
        return self.result.get("comparison")

    @property
    def verdict(self) -> str:
        """PASS, FAIL, or NOT COMPARED (a run without a comparison, e.g. a benchmark)."""
        if self.comparison is None:
            return "NOT COMPARED"
        return "PASS" if self.comparison.get("passed") else "FAIL"

    @property
    def stages(self) -> list[dict[str, Any]]:
        return list((self.comparison or {}).get("stages") or [])

    @property
    def diagnoses(self) -> list[dict[str, Any]]:
        return list((self.comparison or {}).get("diagnoses") or [])

    @property
    def first_divergent_stage(self) -> str | None:
        return (self.comparison or {}).get("first_divergent_stage")

    @property
    def failed_stages(self) -> list[tuple[str, str]]:
        """(stage, failure text) for every stage that failed its gate, in contract order."""
        return [(stage["stage"], failure_text(stage)) for stage in self.stages if not stage.get("passed")]

    @property
    def problems(self) -> list[str]:
        """Failures of the comparison as a whole (frame counts differ, ...), not of one stage."""
        return list((self.comparison or {}).get("problems") or [])

    @property
    def failures(self) -> list[tuple[str, str]]:
        """("comparison", problem) for each whole-comparison problem, then (stage, failure text) per failed stage."""
        return [("comparison", problem) for problem in self.problems] + self.failed_stages

    @property
    def not_compared(self) -> str | None:
        """"reference only: audio.pcm; candidate only: ..." for stages in one dump only; None when all were compared."""
        found = (self.comparison or {}).get("not_compared") or {}
        parts = [f"{side.replace('_', ' ')}: {', '.join(stages)}" for side, stages in found.items() if stages]
        return "; ".join(parts) or None

    @property
    def timing(self) -> dict[str, Any] | None:
        return self.result.get("timing")

    @property
    def bench(self) -> dict[str, Any] | None:
        return self.result.get("bench")

    def path(self, relative: str) -> Path:
        """A path written in result.json, resolved against the run folder."""
        return self.run_dir / relative


def load_runs(run_dirs: list[Path]) -> list[Run]:
    """Read and validate result.json of each run folder; labels are made unique across them."""
    if not run_dirs:
        raise ParityError("no run folder given: pass one or more folders written by `parity run`, `compare` or `bench`")
    folders = [Path(run_dir).parent if Path(run_dir).is_file() else Path(run_dir) for run_dir in run_dirs]  # result.json itself
    results = [(folder, read_result(Path(given))) for folder, given in zip(folders, run_dirs)]
    labels = _unique_labels(results)
    return [Run(run_dir, result, label) for (run_dir, result), label in zip(results, labels)]


def read_result(run_dir: Path) -> dict[str, Any]:
    """The result.json of a run folder, checked against RESULT_SCHEMA; ParityError naming the file otherwise."""
    path = run_dir / "result.json" if run_dir.is_dir() or not run_dir.name.endswith(".json") else run_dir
    if not path.is_file():
        where = "does not exist" if not run_dir.exists() else "has no result.json"
        raise ParityError(f"{run_dir} {where}: pass a folder written by `parity run`, `parity compare` or `parity bench`")
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ParityError(f"{path} is not valid JSON ({exc}): re-run the command that wrote it") from None
    if not isinstance(result, dict) or result.get("schema") != RESULT_SCHEMA_NAME:
        found = result.get("schema") if isinstance(result, dict) else type(result).__name__
        raise ParityError(f"{path} is not a parity result (schema {found!r}, expected {RESULT_SCHEMA_NAME!r})")
    version = result.get("schema_version")
    if version != SCHEMA_VERSION:
        hint = "upgrade synctalk-parity" if isinstance(version, int) and version > SCHEMA_VERSION else "re-run the command that wrote it"
        raise ParityError(f"{path} has schema_version {version!r}; this version reads {SCHEMA_VERSION}: {hint}")
    problems = validate(result, RESULT_SCHEMA)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ParityError(f"{path} does not follow the result.json schema: {problems[0]}{more}")
    return result


def number(value: Any) -> float | None:
    """A metric as a float (non-finite names become inf/nan); None where it does not apply."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}.get(value)
    return float(value)


def metric_text(value: Any, kind: str = "float") -> str:
    """A metric for a table cell: "-" where it does not apply, "inf" for identical images' PSNR."""
    x = number(value)
    if x is None:
        return "-"
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if kind == "percent":
        return f"{x * 100:.2f}%" if 0 < x < 1 else f"{x * 100:.0f}%"
    if kind == "db":  # writers cap PSNR at 100 dB for identical data
        return f"{x:.2f}" if x < 100 else f"{x:.0f}"
    if kind == "ratio":  # SSIM, cosine: near 1 the digits that matter are the last ones
        if x == 1:
            return "1"
        if x < 0.9999:
            return f"{x:.4f}"
        text = f"{x:.8f}".rstrip("0")
        return f"1-{1 - x:.0e}" if text.endswith(".") else text  # closer to 1 than 8 digits show
    if kind == "int":
        return str(int(x))
    if x == 0:
        return "0"
    return f"{x:.3g}" if abs(x) < 1e-3 or abs(x) >= 1e4 else f"{x:.4g}"


def is_numeric_column(values: list[str]) -> bool:
    """True when every cell of a table column is a number (maybe with %, x, a range or a count) or a placeholder."""
    numbers = [value for value in values if value not in ("-", "clip")]
    return bool(numbers) and all(_NUMBER.match(value) for value in numbers)


_NUMBER = re.compile(r"^[-+]?(\d[\d,]*(\.\d+)?([eE][-+]?\d+)?|inf|NaN)(%|x|\.\.[\d.]+|/\d+)?$")

STAGE_COLUMNS = ("stage", "frames", "max |diff|", "mean |diff|", "p99", "identical", "PSNR dB", "SSIM", "cosine", "NaN/Inf", "result")


def stage_row(stage: dict[str, Any]) -> list[str]:
    """The cells of one stage in the per-stage table (STAGE_COLUMNS), as text."""
    nan, inf = stage.get("nan"), stage.get("inf")
    return [
        stage["stage"],
        metric_text(stage.get("frames_compared"), "int") if stage.get("per") == "frame" else "clip",
        metric_text(stage.get("max_abs")),
        metric_text(stage.get("mean_abs")),
        metric_text(stage.get("p99")),
        metric_text(stage.get("identical"), "percent"),
        metric_text(stage.get("psnr"), "db"),
        metric_text(stage.get("ssim"), "ratio"),
        metric_text(stage.get("cosine"), "ratio"),
        "-" if nan is None and inf is None else f"{nan or 0}/{inf or 0}",
        "pass" if stage.get("passed") else "FAIL",
    ]


BENCH_COLUMNS = ("backend", "mode", "batch", "fps median", "fps min..max", "repeats", "x model", "x reference",
                 "whole-run fps", "first frame s", "U-Net GFLOP/s", "peak RSS MB")


def bench_row(row: dict[str, Any]) -> list[str]:
    """The cells of one benchmark row (BENCH_COLUMNS), as text."""
    spread = "-" if row.get("fps_min") is None else f"{row['fps_min']:.2f}..{row.get('fps_max') or row['fps_min']:.2f}"
    return [
        row["backend"],
        row.get("mode") or "-",
        metric_text(row.get("batch"), "int"),
        f"{row['fps_median']:.2f}",
        spread,
        metric_text(row.get("repeats"), "int"),
        "-" if row.get("ratio_to_model") is None else f"{row['ratio_to_model']:.2f}x",
        "-" if row.get("ratio_to_reference") is None else f"{row['ratio_to_reference']:.2f}x",
        "-" if row.get("whole_run_fps") is None else f"{row['whole_run_fps']:.2f}",
        "-" if row.get("first_frame_s") is None else f"{row['first_frame_s']:.2f}",
        "-" if row.get("unet_gflops") is None else f"{row['unet_gflops']:.1f}",
        "-" if row.get("peak_rss_mb") is None else f"{row['peak_rss_mb']:.0f}",
    ]


MEMORY_COLUMNS = ("backend", "batch", "frames", "peak RSS MB")


def memory_rows(bench: dict[str, Any]) -> list[list[str]]:
    """The cells of the memory table (MEMORY_COLUMNS): peak RSS by video length."""
    return [[row["backend"], metric_text(row.get("batch"), "int"), str(row["frames"]), f"{row['peak_rss_mb']:.0f}"]
            for row in bench.get("memory") or []]


def memory_growth_text(bench: dict[str, Any]) -> str | None:
    """"onnxruntime +3 MB, torch +1 MB" from the shortest to the longest run; None when not measured."""
    growth = {name: value for name, value in (bench.get("memory_growth_mb") or {}).items() if value is not None}
    return ", ".join(f"{name} {value:+.0f} MB" for name, value in growth.items()) or None


def failure_text(stage: dict[str, Any]) -> str:
    """The failure message of a failed stage, verbatim; a generic line when the writer gave none."""
    return stage.get("failure") or f"{stage['stage']}: failed its tolerance {stage.get('tolerance') or {}}"


def summary_row(run: Run) -> list[str]:
    """One run in the cross-run summary (SUMMARY_COLUMNS)."""
    timing = run.timing or {}
    return [
        run.label,
        run.backend,
        run.precision,
        run.verdict,
        run.first_divergent_stage or "-",
        f"{len(run.failed_stages)}/{len(run.stages)}" if run.comparison is not None else "-",
        ", ".join(d["name"] for d in run.diagnoses) or "-",
        "-" if timing.get("fps") is None else f"{timing['fps']:.2f}",
    ]


SUMMARY_COLUMNS = ("run", "backend", "precision", "verdict", "first divergent stage", "failed stages", "diagnoses", "frames/s")


def _bench_backends(result: dict[str, Any]) -> str | None:
    rows = (result.get("bench") or {}).get("rows") or []
    names = list(dict.fromkeys(row["backend"] for row in rows))
    return ", ".join(names) or None


def _unique_labels(results: list[tuple[Path, dict[str, Any]]]) -> list[str]:
    def label(result: dict[str, Any], detail: bool) -> str:
        backend = result.get("backend") or {}
        name = backend.get("name") or result.get("command", "run")
        return f"{name}-{backend['precision']}" if detail and backend.get("precision") else name

    plain = [label(result, False) for _, result in results]
    labels = [label(result, plain.count(p) > 1) for (_, result), p in zip(results, plain)]
    seen: dict[str, int] = {}
    unique = []
    for text in labels:
        seen[text] = seen.get(text, 0) + 1
        unique.append(text if labels.count(text) == 1 else f"{text}-{seen[text]}")
    return unique


_JSON_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _check(value: Any, schema: dict[str, Any], root: dict[str, Any], where: str, problems: list[str]) -> None:
    if "$ref" in schema:
        _check(value, _resolve(schema["$ref"], root), root, where, problems)
    for part in schema.get("allOf", []):
        _check(value, part, root, where, problems)
    if "anyOf" in schema:
        options = [_problems(value, option, root, where) for option in schema["anyOf"]]
        if all(options):
            # report the form the value came closest to: not one it fails merely by type
            problems.extend(min(options, key=lambda found: (len(found) == 1 and found[0].startswith(f"{where}: expected"), len(found))))
            return
    if "const" in schema and value != schema["const"]:
        problems.append(f"{where}: expected {schema['const']!r}, got {value!r}")
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{where}: expected one of {schema['enum']}, got {value!r}")
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_JSON_TYPES[t](value) for t in types):
            problems.append(f"{where}: expected {' or '.join(types)}, got {type(value).__name__} {_short(value)}")
            return
    if "minimum" in schema and _JSON_TYPES["number"](value) and value < schema["minimum"]:
        problems.append(f"{where}: {value} is below the minimum {schema['minimum']}")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                problems.append(f"{where}: missing required key {key!r}")
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                _check(item, properties[key], root, f"{where}.{key}", problems)
            elif extra is False:
                problems.append(f"{where}: unexpected key {key!r}")
            elif isinstance(extra, dict):
                _check(item, extra, root, f"{where}.{key}", problems)
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            _check(item, schema["items"], root, f"{where}[{index}]", problems)


def _problems(value: Any, schema: dict[str, Any], root: dict[str, Any], where: str) -> list[str]:
    problems: list[str] = []
    _check(value, schema, root, where, problems)
    return problems


def _resolve(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    if not ref.startswith("#/"):
        raise ValueError(f"only local $ref is supported, got {ref!r}")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
