"""`parity doctor`: what can run here — backends, export formats, library versions, CPU, GPU, ffmpeg.

Always exits 0: it reports, it does not judge.
"""

from __future__ import annotations

import typer
from rich.table import Table

from .view import console, print_table


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor_command)


def doctor_command() -> None:
    """Show which backends and export formats work here, and the versions, CPU, GPU and ffmpeg in use."""
    from ..harness.doctor import probe

    report = probe()
    backends = _table("backends", "backend", "status", "what it is")
    for backend in report.backends:
        status = "[green]available[/green]" if backend.reason is None else f"[yellow]{backend.reason}[/yellow]"
        backends.add_row(backend.name, status, backend.description)
    formats = _table("export formats", "format", "exporter libraries", "precisions", "runs on")
    for fmt in report.formats:
        status = "[green]all importable[/green]" if not fmt.missing else f"[yellow]missing: {', '.join(fmt.missing)}[/yellow]"
        formats.add_row(fmt.name, status, ", ".join(fmt.precisions), fmt.runs_on)
    libraries = _table("libraries", "library", "version")
    for name, version in report.libraries.items():
        libraries.add_row(name, version or "[dim]not installed[/dim]")
    machine = _table("machine", "what", "found")
    for what, found in report.machine.items():
        machine.add_row(what, found)
    executable, version = report.ffmpeg
    machine.add_row("ffmpeg", version)
    print_table(console, backends, formats, libraries, machine)
    console.print(f"ffmpeg in use: {executable}", highlight=False, soft_wrap=True)  # whole, to copy: a table would fold it


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    return table
