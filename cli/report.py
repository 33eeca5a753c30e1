"""`parity report`: Markdown, HTML, JSON and JUnit reports from one or more run folders (their result.json).

A thin typer layer over `reports.write_reports`; several run folders are reported side by side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ..reports import REPORT_FILES, parse_formats, write_reports

DEFAULT_MULTI_RUN_OUT = Path("parity-report")


def register(app: typer.Typer) -> None:
    app.command("report")(report_command)


def report_command(
    run_dirs: Annotated[list[Path], typer.Argument(metavar="RUN_DIR", help="run folders written by `parity run`, `compare` or `bench` (each holds result.json)", show_default=False)],
    format_names: Annotated[str, typer.Option("--format", "-f", help=f"comma-separated: {', '.join(REPORT_FILES)} or all")] = "md,html,json,junit",
    out: Annotated[Path | None, typer.Option(help="folder for the reports; default: the run folder, or ./parity-report for several")] = None,
) -> None:
    """Write report.md, report.html (self-contained), report.json and report.junit.xml from run folders."""
    console = Console()
    written = write_reports(run_dirs, parse_formats(format_names), report_folder(run_dirs, out))
    for path in written:
        console.print(f"[green]wrote[/green] {path}", highlight=False, soft_wrap=True)


def report_folder(run_dirs: list[Path], out: Path | None) -> Path:
    """Where the reports go: `--out`, else the single run folder, else ./parity-report."""
    if out is not None:
        return out
    if len(run_dirs) > 1:
        return DEFAULT_MULTI_RUN_OUT
    return run_dirs[0].parent if run_dirs[0].suffix == ".json" else run_dirs[0]
