"""`parity compare`: compare a candidate dump (or a run folder's dump/) with a reference dump.

Prints the stage table and verdict, writes result.json (command "compare") and exits 0 when every
gate passes, 1 when one fails, 2 on a usage or input error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import GateFailure
from .view import comparison_lines, comparison_table, console, print_table


def register(app: typer.Typer) -> None:
    app.command(name="compare")(compare)


def compare(
    candidate: Annotated[Path, typer.Argument(help="Candidate dump folder, or a run folder holding dump/ and result.json.")],
    reference: Annotated[Path | None, typer.Option(help="Reference dump. Default: the one named in the run folder's result.json.")] = None,
    gate: Annotated[Path | None, typer.Option(help="Gate file (TOML) with per-stage tolerances.")] = None,
    precision: Annotated[str | None, typer.Option(help="fp32 or fp16 default tolerances. Default: the candidate's precision.")] = None,
    out: Annotated[Path | None, typer.Option(help="Where result.json goes. Default: the run folder, or the dump's parent.")] = None,
) -> None:
    """Compare a candidate's stage dump with the reference's, stage by stage."""
    from ..harness.verdict.judge import judge

    comparison, result_path = judge(candidate, reference, gate, precision, out)
    print_table(console, comparison_table(comparison))
    for line in comparison_lines(comparison):
        console.print(line, highlight=False, soft_wrap=True)
    console.print(f"wrote {result_path}", highlight=False, soft_wrap=True)
    if not comparison:
        raise typer.Exit(GateFailure.exit_code)
