"""`matrix.json` and each cell's `cell.json`: their one writer and reader, and their JSON Schemas (generated from the
types in `types.py` by the verdict's codec, like result.json's).

    write_matrix(result, out)          # out/matrix.json, atomically
    read_matrix(out)                   # the MatrixResult, checked against matrix_schema()

Regenerate the schema with `python -m synctalk_parity.harness.matrix.result` (it prints it); it is never edited by hand.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, TypeVar

from ...atomic import write_text_atomically
from ...errors import ParityError
from ..verdict.result import from_json, json_schema, json_text, parse_json
from ..verdict.validate import validate
from .types import CELL_SCHEMA_NAME, MATRIX_SCHEMA_NAME, MATRIX_SCHEMA_VERSION, CellResult, MatrixResult

MATRIX_FILE = "matrix.json"
T = TypeVar("T")


@functools.cache
def matrix_schema() -> dict[str, Any]:
    """matrix.json's JSON Schema, generated from `MatrixResult`."""
    return json_schema(MatrixResult, f"https://synctalk-parity/schemas/matrix-{MATRIX_SCHEMA_VERSION}.json", "synctalk-parity release matrix (matrix.json)")


@functools.cache
def cell_schema() -> dict[str, Any]:
    """cell.json's JSON Schema, generated from `CellResult`."""
    return json_schema(CellResult, f"https://synctalk-parity/schemas/matrix-cell-{MATRIX_SCHEMA_VERSION}.json", "synctalk-parity matrix cell (cell.json)")


def write_matrix(result: MatrixResult, out: Path) -> Path:
    """`out/matrix.json` holding `result` (atomically: a reader never sees half of it)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / MATRIX_FILE
    write_text_atomically(path, json_text(result))
    return path


def read_matrix(path: Path) -> MatrixResult:
    """A matrix.json (or the folder holding it) as its `MatrixResult`, checked; ParityError naming the file otherwise."""
    path = Path(path)
    file = path / MATRIX_FILE if path.is_dir() else path
    if not file.is_file():
        raise ParityError(f"{path}: no {MATRIX_FILE} there; pass a folder written by `parity matrix --out`")
    return _read(file, MatrixResult, matrix_schema(), MATRIX_SCHEMA_NAME, "matrix.json")


def read_cell(path: Path) -> CellResult:
    """A cell.json as its `CellResult`, checked."""
    return _read(Path(path), CellResult, cell_schema(), CELL_SCHEMA_NAME, "cell.json")


def _read(file: Path, kind: type[T], schema: dict[str, Any], name: str, what: str) -> T:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ParityError(f"{file}: cannot read it ({exc}); run `parity matrix` again") from None
    document = parse_json(text, file)
    if not isinstance(document, dict) or document.get("schema") != name:
        found = document.get("schema") if isinstance(document, dict) else type(document).__name__
        raise ParityError(f"{file} is not a {what} (schema {found!r}, expected {name!r})")
    if document.get("schema_version") != MATRIX_SCHEMA_VERSION:
        raise ParityError(f"{file} has schema_version {document.get('schema_version')!r}; this version reads {MATRIX_SCHEMA_VERSION}: "
                          "run `parity matrix` again")
    validate(document, schema, file, what)
    return from_json(document, kind)


if __name__ == "__main__":
    print(json.dumps(matrix_schema(), indent=2))
