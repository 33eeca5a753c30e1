"""`result.json`: the one document a verdict leaves in a run folder, its one writer and reader, and the JSON codec of
every result type (`types.py`), whose JSON Schema is generated from those types.

`parity run`, `parity compare` and `parity bench` write it with `write_result`; the reports read it with
`read_result`, which checks it against `result_schema()` (jsonschema) and returns a `ResultDocument`: the same objects
that were written (`ResultDocument == read_result(folder)`). The document::

    {"schema": "synctalk-parity/result", "schema_version": 2, "command": "run" | "compare" | "bench",
     "created": ISO-8601 time, "backend": Backend | null, "inputs": Inputs | null, "comparison": Comparison | null,
     "timing": Timing | null, "bench": BenchResult | null, "port": PortVerdict | null, "lip_sync": LipSync | null,
     "reference": ReferenceRun | null}

Each object is its dataclass's fields by name (nested objects likewise), plus the properties its class lists in
`JSON_DERIVED` (a comparison's `passed`, `first_divergent_stage`, `coverage`), which a reader recomputes and checks.
Paths in a comparison are relative to the run folder when inside it. **Non-finite numbers** are written as the
strings "Infinity", "-Infinity" and "NaN" (strict JSON; null means "does not apply"); the reader accepts only those
(not JSON's `Infinity`/`NaN` extension tokens). Unknown keys are ignored (newer writers may add some).

Schema version 2 (version 1 was hand-written): the gate holds its tolerances, `worst` and `per_frame` and the
bench and port sections are typed objects, and non-finite numbers have one encoding. Regenerate the schema with
`python -m synctalk_parity.harness.verdict.result` (it prints it); it is never edited by hand.

The serialization layer is msgspec (`msgspec.convert` builds the typed objects, `msgspec.json.schema` the schema),
chosen by import time: ~16 ms against pydantic's ~144 ms, and 0.1 s for this schema against 1.1 s (docs/metrics.md).
"""

from __future__ import annotations

import functools
import json
import math
import typing
from dataclasses import dataclass, fields, is_dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

from ...atomic import write_text_atomically
from ...errors import ParityError
from .types import Backend, BenchResult, Comparison, Inputs, LipSync, PortVerdict, ReferenceRun, Timing, WorstFrame
from .validate import schema_problems

RESULT_FILE = "result.json"
RESULT_SCHEMA_NAME: Final = "synctalk-parity/result"
SCHEMA_VERSION: Final = 2
NON_FINITE: dict[str, float] = {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}
T = TypeVar("T")


@dataclass(kw_only=True)
class ResultDocument:
    """result.json: what one command found (see the module docstring)."""

    schema: Literal["synctalk-parity/result"] = RESULT_SCHEMA_NAME
    schema_version: Literal[2] = SCHEMA_VERSION
    command: Literal["run", "compare", "bench"]
    created: str = ""  # ISO-8601 time the command finished
    backend: Backend | None = None
    inputs: Inputs | None = None
    comparison: Comparison | None = None
    timing: Timing | None = None
    bench: BenchResult | None = None
    port: PortVerdict | None = None
    lip_sync: LipSync | None = None  # the mouth's motion against the reference's (or the audio's), from the output frames
    reference: ReferenceRun | None = None  # how the reference was made (a comparison with a computed reference)


# ----- the codec ---------------------------------------------------------------------------------


def to_json(value: Any) -> Any:
    """A result object as plain JSON values: dataclasses as objects of their fields (and JSON_DERIVED properties), paths
    as strings, numpy scalars as numbers, non-finite floats as "Infinity"/"-Infinity"/"NaN"."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if is_dataclass(value) and not isinstance(value, type):
        document = {f.name: to_json(getattr(value, f.name)) for f in fields(value)}
        for key, derived in getattr(type(value), "JSON_DERIVED", {}).items():
            document[key] = to_json(getattr(value, derived[0] if isinstance(derived, tuple) else key))
        return document
    if isinstance(value, dict):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_json(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # a numpy scalar
        return to_json(value.item())
    raise TypeError(f"cannot write a {type(value).__name__} to JSON")


def json_text(value: Any) -> str:
    """`value` (a result object or plain values) as strict JSON text, indented."""
    return json.dumps(to_json(value), indent=2, allow_nan=False) + "\n"


def from_json(document: Any, kind: type[T]) -> T:
    """The typed object of a JSON document already checked against `json_schema(kind)` (so the names of non-finite
    numbers stand only where a number may)."""
    import msgspec

    try:
        return msgspec.convert(document, kind, strict=False, str_keys=True, dec_hook=_decode)
    except msgspec.ValidationError as exc:
        raise ParityError(f"not a {kind.__name__}: {exc}") from None


def _decode(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError(kind)


def parse_json(text: str, where: Path | str) -> Any:
    """JSON text; JSON's extension tokens (bare Infinity, NaN) are refused: non-finite numbers are written by name."""

    def refuse(token: str) -> Any:
        raise ValueError(f"bare {token} (non-finite numbers are written as the strings {', '.join(NON_FINITE)})")

    try:
        return json.loads(text, parse_constant=refuse)
    except (ValueError, json.JSONDecodeError) as exc:
        raise ParityError(f"{where} is not valid JSON ({exc}): re-run the command that wrote it") from None


def json_schema(kind: type, schema_id: str, title: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of `kind`, generated from its dataclasses: each class a `$defs` entry, every
    number also allowed as the name of a non-finite number, JSON_DERIVED properties declared."""
    import msgspec

    classes = {cls.__name__: cls for cls in _dataclasses(kind)}
    derived = [(name, key, hint[1] if isinstance(hint, tuple) else hint) for name, cls in classes.items()
               for key, hint in getattr(cls, "JSON_DERIVED", {}).items()]
    (root, *derived_schemas), defs = msgspec.json.schema_components([kind, *(hint for _, _, hint in derived)], schema_hook=_schema_hook,
                                                                     ref_template="#/$defs/{name}")
    for (name, key, _), derived_schema in zip(derived, derived_schemas):
        defs[name].setdefault("properties", {})[key] = {**derived_schema, "readOnly": True, "description": "derived: recomputed by the reader"}
    top = defs.pop(kind.__name__) if root.get("$ref", "").endswith("/" + kind.__name__) else root
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": schema_id, **top, "title": title, "$defs": defs}
    schema["$defs"]["non_finite"] = {"enum": list(NON_FINITE), "description": "a non-finite number, by name"}
    return _numbers_or_names(schema)


def _schema_hook(kind: type) -> dict[str, Any]:
    if kind is Path:
        return {"type": "string", "description": "a path; relative to the result's folder when inside it"}
    raise NotImplementedError(kind)


def _numbers_or_names(node: Any) -> Any:
    """Every `number` (alone or with null) may also be a non-finite number's name."""
    if isinstance(node, list):
        return [_numbers_or_names(item) for item in node]
    if not isinstance(node, dict):
        return node
    options = node.get("anyOf")
    if options and sorted(json.dumps(o, sort_keys=True) for o in options) == ['{"type": "null"}', '{"type": "number"}']:
        rest = {key: value for key, value in node.items() if key != "anyOf"}
        return {"anyOf": [{"type": ["number", "null"]}, {"$ref": "#/$defs/non_finite"}], **rest}
    if node.get("type") == "number":
        rest = {key: value for key, value in node.items() if key != "type"}
        return {"anyOf": [{"type": "number"}, {"$ref": "#/$defs/non_finite"}], **rest}
    return {key: _numbers_or_names(value) for key, value in node.items()}


def _dataclasses(kind: Any, seen: set | None = None) -> set[type]:
    """Every dataclass reachable from the type `kind` through field types."""
    seen = set() if seen is None else seen
    for arg in typing.get_args(kind):
        _dataclasses(arg, seen)
    if isinstance(kind, type) and is_dataclass(kind) and kind not in seen:
        seen.add(kind)
        for hint in typing.get_type_hints(kind, include_extras=True).values():
            _dataclasses(hint, seen)
    elif typing.get_origin(kind) is typing.Annotated:
        _dataclasses(typing.get_args(kind)[0], seen)
    return seen


@functools.cache
def result_schema() -> dict[str, Any]:
    """result.json's JSON Schema, generated from `ResultDocument` on first use (~0.1 s: not at import)."""
    return json_schema(ResultDocument, "https://synctalk-parity/schemas/result-2.json", "synctalk-parity run result (result.json)")



# ----- result.json ----------------------------------------------------------------------------------


def result_document(folder: Path, command: Literal["run", "compare", "bench"], *, backend: Backend | None = None,
                    inputs: Inputs | None = None, comparison: Comparison | None = None, timing: Timing | None = None,
                    bench: BenchResult | None = None, port: PortVerdict | None = None, lip_sync: LipSync | None = None,
                    reference: ReferenceRun | None = None) -> ResultDocument:
    """The document `write_result` writes into `folder`: the comparison's paths relative to it when inside it."""
    return ResultDocument(command=command, created=datetime.now(UTC).isoformat(timespec="seconds"), backend=backend, inputs=inputs,
                          comparison=None if comparison is None else relative_comparison(comparison, folder),
                          timing=timing, bench=bench, port=port, lip_sync=lip_sync, reference=reference)


def write_result(folder: Path, command: Literal["run", "compare", "bench"], **sections: Any) -> Path:
    """Write `folder/result.json` (atomically) for `command`; `sections` as `result_document` takes them."""
    folder = Path(folder)
    return write_document(result_document(folder, command, **sections), folder)


def write_document(document: ResultDocument, folder: Path) -> Path:
    """`folder/result.json` holding `document` as it is."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RESULT_FILE
    write_text_atomically(path, json_text(document))
    return path


def relative_comparison(comparison: Comparison, folder: Path | None) -> Comparison:
    """A copy of `comparison` whose paths are relative to `folder` where inside it."""
    where = Path(folder) if folder is not None else None
    worst = comparison.worst_frame
    if worst is not None:
        worst = WorstFrame(worst.index, _relative(worst.reference_png, where), _relative(worst.candidate_png, where))
    return replace(comparison, reference=_relative(comparison.reference, where), candidate=_relative(comparison.candidate, where),
                   worst_frame=worst)


def read_result(run_dir: Path) -> ResultDocument:
    """The result.json of a run folder (or the file itself), checked against result_schema(); ParityError naming the file otherwise."""
    run_dir = Path(run_dir)
    path = run_dir / RESULT_FILE if run_dir.is_dir() or not run_dir.name.endswith(".json") else run_dir
    if not path.is_file():
        where = "does not exist" if not run_dir.exists() else f"has no {RESULT_FILE}"
        raise ParityError(f"{run_dir} {where}: pass a folder written by `parity run`, `parity compare` or `parity bench`")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ParityError(f"{path} is not valid JSON ({exc}): re-run the command that wrote it") from None
    return check_result(parse_json(text, path), path)


def check_result(result: Any, path: Path | str) -> ResultDocument:
    """A parsed result.json as its typed document: schema name, version, the schema itself, then what it says of its
    comparison's verdict must be what its stages say."""
    if not isinstance(result, dict) or result.get("schema") != RESULT_SCHEMA_NAME:
        found = result.get("schema") if isinstance(result, dict) else type(result).__name__
        raise ParityError(f"{path} is not a parity result (schema {found!r}, expected {RESULT_SCHEMA_NAME!r})")
    version = result.get("schema_version")
    if version != SCHEMA_VERSION:
        hint = "upgrade synctalk-parity" if isinstance(version, int) and version > SCHEMA_VERSION else "re-run the command that wrote it"
        raise ParityError(f"{path} has schema_version {version!r}; this version reads {SCHEMA_VERSION}: {hint}")
    problems = schema_problems(result, result_schema())
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ParityError(f"{path} does not follow the result.json schema: {problems[0]}{more}")
    try:
        document = from_json(result, ResultDocument)
    except ParityError as exc:
        raise ParityError(f"{path}: {exc}") from None
    written = (result.get("comparison") or {}).get("passed")
    if document.comparison is not None and written is not None and written != document.comparison.passed:
        raise ParityError(f"{path}: comparison.passed is {written}, but its stages say {document.comparison.passed}: the file was "
                          "edited or is damaged; re-run the command that wrote it")
    return document


def _relative(path: str | Path, where: Path | None) -> Path:
    path = Path(path)
    if where is not None:
        try:
            return path.resolve().relative_to(where.resolve())
        except ValueError:
            pass
    return path


if __name__ == "__main__":
    print(json.dumps(result_schema(), indent=2))
