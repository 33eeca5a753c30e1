"""`parity compare`: compare a candidate dump (or a run folder's dump/) with a reference dump.

Prints the stage table and verdict, writes result.json (command "compare") and exits 0 when every
gate passes, 1 when one fails, 2 on a usage or input error.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from ..errors import GateFailure, ParityError
from .compare import Comparison, compare_dumps
from .dump import MANIFEST, Dump
from .gates import load_gate

RESULT = "result.json"


def register(app: typer.Typer) -> None:
    app.command(name="compare")(compare)


def compare(
    candidate: Annotated[Path, typer.Argument(help="Candidate dump folder, or a run folder holding dump/ and result.json.")],
    reference: Annotated[Optional[Path], typer.Option(help="Reference dump. Default: the one named in the run folder's result.json.")] = None,
    gate: Annotated[Optional[Path], typer.Option(help="Gate file (TOML) with per-stage tolerances.")] = None,
    precision: Annotated[Optional[str], typer.Option(help="fp32 or fp16 default tolerances. Default: the candidate's precision.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Where result.json goes. Default: the run folder, or the dump's parent.")] = None,
) -> None:
    """Compare a candidate's stage dump with the reference's, stage by stage."""
    from .compare_view import comparison_lines, comparison_table, print_table

    console = Console()
    comparison, result_path = run_compare(candidate, reference, gate, precision, out)
    print_table(console, comparison_table(comparison))
    for line in comparison_lines(comparison):
        console.print(line, highlight=False, soft_wrap=True)
    console.print(f"wrote {result_path}", highlight=False, soft_wrap=True)
    if not comparison:
        raise typer.Exit(GateFailure.exit_code)


def run_compare(candidate: Path, reference: Path | None, gate: Path | None, precision: str | None, out: Path | None) -> tuple[Comparison, Path]:
    """Resolve the folders, compare, and write result.json; returns the comparison and its path."""
    run_dir, dump_dir = locate_candidate(candidate)
    previous = _read_result(run_dir / RESULT) if run_dir else {}
    if reference is None:
        named = ((previous or {}).get("comparison") or {}).get("reference")
        if not named:
            raise ParityError(f"{candidate}: no reference dump named in {RESULT}; pass --reference DUMP")
        reference = Path(named) if Path(named).is_absolute() else run_dir / named
    candidate_dump = Dump.open(dump_dir)
    reference_dump = Dump.open(reference)
    comparison = compare_dumps(reference_dump, candidate_dump, load_gate(gate, precision or candidate_dump.producer["precision"]))
    out = Path(out) if out is not None else (run_dir or dump_dir.parent)
    out.mkdir(parents=True, exist_ok=True)
    path = out / RESULT
    producer = candidate_dump.producer
    result = {
        "schema": "synctalk-parity/result",
        "schema_version": 1,
        "command": "compare",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "backend": previous.get("backend") or {"name": producer["backend"], "precision": producer["precision"], "describe": {"producer": producer}},
        "inputs": previous.get("inputs"),
        "comparison": comparison.to_dict(relative_to=out),
        "timing": previous.get("timing"),
        "bench": None,
    }
    path.write_text(json.dumps(result, indent=1) + "\n")
    return comparison, path


def locate_candidate(path: Path) -> tuple[Path | None, Path]:
    """(run folder or None, dump folder) for a dump folder or a run folder holding dump/."""
    if (path / MANIFEST).is_file():
        parent = path.parent
        return (parent if (parent / RESULT).is_file() and path.name == "dump" else None), path
    if (path / "dump" / MANIFEST).is_file():
        return path, path / "dump"
    if not path.exists():
        raise ParityError(f"{path}: not found; pass a dump folder (with {MANIFEST}) or a run folder holding dump/")
    raise ParityError(f"{path}: neither a dump ({MANIFEST}) nor a run folder with dump/{MANIFEST}")


def _read_result(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ParityError(f"{path}: not valid JSON ({exc})") from None
    return data if isinstance(data, dict) else {}
