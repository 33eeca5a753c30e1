"""`parity matrix`: every avatar x backend x precision x device of a matrix file in one run and one report, gated
against the reference and, with --baseline, against the last release; locally or on Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

SHOWN_FAILURES = 8


def register(app: typer.Typer) -> None:
    app.command(name="matrix")(matrix_command)


def matrix_command(
    matrix: Annotated[Path, typer.Argument(help="The matrix file (TOML): avatars, backends with providers/devices, precisions, frames, gates, speed repeats; see docs/matrix.md.", show_default=False)],
    out: Annotated[Path, typer.Option(help="Output folder: matrix.json, report.html, report.md, report.junit.xml, cells/. A rerun into the same folder reuses the cells whose inputs and environment did not change.")] = Path("parity-matrix"),
    baseline: Annotated[Path | None, typer.Option(help="A previous matrix's --out folder: every cell is compared with the same cell there (figures beyond their noise bands, stage verdicts, speed, cells added or removed); a regression fails the gate unless the matrix file allows it.", show_default=False)] = None,
    require: Annotated[list[str] | None, typer.Option(metavar="CELL", help="A cell id (avatar/backend-label/precision) that must have run; repeat for several. A required cell that did not run fails the gate.", show_default=False)] = None,
    ray: Annotated[str | None, typer.Option(help="Run the cells as Ray tasks on a cluster: auto (the cluster started on this machine) or its ADDRESS (host:port). Needs `pip install synctalk-parity\\[ray]`.", show_default=False)] = None,
    jobs: Annotated[int | None, typer.Option(help="Locally: cells at once. Default: as many as the CPUs and memory allow.", show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Empty --out first when it holds files a matrix does not write.")] = False,
) -> None:
    """Run a release matrix: each cell's verdict, speed and change since the baseline, in one grid report.

    Exit 0 when every cell that ran passes, nothing regressed since the baseline and every required cell ran; 1 otherwise;
    2 on a bad matrix file; 130 interrupted (the report is written, marked incomplete).
    """
    import sys

    from rich.console import Console

    from ..errors import GateFailure
    from ..harness.matrix.run import MatrixRequest, run_matrix

    shown = Console(file=sys.stdout, highlight=False, soft_wrap=True)  # bound now: Ray's output is kept off the terminal
    from ..reports.matrix import write_cell_report

    request = MatrixRequest(matrix, out, baseline, tuple(require or ()), ray, jobs, overwrite, cell_report=write_cell_report)
    result = run_matrix(request, progress=lambda event, what, detail: _progress(shown, event, what, detail))
    written = _reports(result, out, shown)
    _print_summary(shown, result)
    shown.print(f"reports: {', '.join(str(path) for path in written)}")
    shown.print(f"[bold]open the report:[/] {(out / 'report.html').resolve().as_uri()}")
    if not result.complete:
        raise KeyboardInterrupt
    if not result.passed:
        failures = result.failures
        more = f" (and {len(failures) - SHOWN_FAILURES} more)" if len(failures) > SHOWN_FAILURES else ""
        raise GateFailure("matrix gate failed:\n  " + "\n  ".join(failures[:SHOWN_FAILURES]) + more + f"\nsee {out / 'report.md'}")


def _progress(shown, event: str, what: str, detail: str) -> None:
    text = {
        "avatar": f"avatar {what}: {detail}",
        "reference": f"reference of {what}: {detail}",
        "reference-done": f"reference of {what}: ready",
        "reference-failed": f"[red]reference of {what} failed:[/] {detail}",
        "reference-died": f"[yellow]reference of {what}: {detail}; computing it again[/]",
        "skip": f"[dim]{what}: not run: {detail}[/]",
        "reused": f"[dim]{what}: reused (same inputs and environment)[/]",
        "start": f"{what}: started ({detail})",
        "done": f"{what}: {detail}",
        "died": f"[yellow]{what}: {detail}[/]",
        "ray": f"ray: {detail}",
    }.get(event, f"{what}: {detail}")
    shown.print(text)


def _reports(result, out: Path, shown) -> list[Path]:
    """The matrix's reports (each cell's own report.html was rendered where the cell ran)."""
    from ..reports.matrix import write_matrix_reports

    return write_matrix_reports(result, out)


def _print_summary(shown, result) -> None:
    """One row per cell (the grid is in report.html and report.md: a terminal holds a few of its columns only)."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from ..reports.matrix import change_lines, change_text, headline, speed_text, worst_text
    from .view import print_table

    table = Table(title="release matrix", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("cell", overflow="fold")
    table.add_column("verdict", no_wrap=True)
    table.add_column("worst stage (share of its gate) / why not", overflow="fold")
    table.add_column("frames/s", justify="right")
    if result.baseline is not None:
        table.add_column("since the baseline", overflow="fold")
    for cell in result.cells:
        verdict = cell.verdict + (" (reused)" if cell.reused else "")
        row = [escape(cell.id), _colored(verdict), escape(worst_text(cell) if cell.ran else cell.reason or ""), speed_text(cell)]
        if result.baseline is not None:
            row.append(escape(change_text(result, cell)))
        table.add_row(*row)
    print_table(shown, table)
    changes = change_lines(result)
    if result.baseline is not None:
        shown.print(f"since {escape(result.baseline.baseline_name)}: " + ("nothing changed beyond its noise band" if not changes else ""))
        for line in changes:
            shown.print(("[red]" if line.startswith("REGRESSION") else "") + f"  {escape(line)}" + ("[/]" if line.startswith("REGRESSION") else ""))
    shown.print(f"[bold]{'[green]' if result.passed else '[red]'}{escape(headline(result))}[/][/]")


def _colored(verdict: str) -> str:
    from rich.markup import escape

    color = "green" if verdict.startswith("PASS") else "red" if verdict.startswith(("FAIL", "ERROR")) else "yellow" if verdict.startswith("LOST") else "dim"
    return f"[{color}]{escape(verdict)}[/]"
