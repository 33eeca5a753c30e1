"""What the commands show: the consoles, a frame progress bar, every table (`print_table`: at most
`MAX_TABLE_WIDTH` columns), and a `Comparison` as a rich table of stage metrics plus a few lines of verdict
(used by `parity compare` and `parity run`)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

if TYPE_CHECKING:
    from rich.progress import Progress

    from ..harness.verdict.types import Comparison, StageResult

console = Console()
err_console = Console(stderr=True)

MAX_TABLE_WIDTH = 100  # every table fits a 100-column terminal, however wide the console says it is
FOLD_FLOOR = 20  # a folding column (a path, a module name) keeps this many characters a line
COLUMNS = ("stage", "frames", "max |diff|", "mean", "p99", "ident %", "PSNR", "SSIM/cos", "result")
COMPARISON_LEGEND = ("max |diff|, mean, p99: of |candidate - reference| (uint8 levels for images; NaN: the candidate "
                     "holds NaN, counted below); ident %: identical elements (pixels, for images); SSIM/cos: SSIM for "
                     "images, cosine for feature rows")


def comparison_table(comparison: Comparison) -> Table:
    """One row per compared stage, in contract order; 96 columns at most (the legend explains the short headers)."""
    table = Table(title=f"candidate vs reference (gate {comparison.gate.precision})", title_justify="left", box=box.SIMPLE_HEAD,
                  padding=0, show_edge=False, caption=COMPARISON_LEGEND, caption_justify="left", caption_style="dim")
    for name in COLUMNS:
        table.add_column(name, justify="left" if name in ("stage", "result") else "right", no_wrap=True)
    first = comparison.first_divergent_stage
    for stage in comparison.stages:
        if not stage.skipped:  # "not provided" stages are listed once, in the verdict's coverage line
            table.add_row(*_row(stage, stage.stage == first))
    return table


def print_table(console: Console, *tables: Table) -> None:
    """Print each table after a blank line (and one after the last), at most `MAX_TABLE_WIDTH` columns wide
    whatever width the console has (cells that may wrap wrap there), but never narrower than its cells that
    may not: on a narrower console (80 columns when output is not a terminal, as in CI logs) a wrapped line
    keeps every figure, a cut cell loses it."""
    width = console.width
    try:
        for table in tables:
            console.width = max(uncut_width(console, table), min(width, MAX_TABLE_WIDTH))  # print(width=...) cannot go past the console's own width
            console.line()
            console.print(table)
        console.line()
    finally:
        console.width = width


def uncut_width(console: Console, table: Table) -> int:
    """The narrowest width at which rich prints `table` without cutting a cell: every no-wrap column at its
    widest cell, every other column at its longest word, or where it folds at `FOLD_FLOOR` (its longest
    cell when shorter): rich narrows wrapping columns first, then cuts every column."""
    options = console.options.update_width(1000)
    natural = Measurement.get(console, options, table).maximum
    slack = 0
    for column in table.columns:
        if not column.no_wrap:
            cells = [Measurement.get(console, options, cell) for cell in (column.header, *column.cells)]
            widest = max(cell.maximum for cell in cells)
            floor = min(widest, FOLD_FLOOR) if column.overflow == "fold" else max(cell.minimum for cell in cells)
            slack += widest - floor
    return natural - slack


def comparison_lines(comparison: Comparison, gate_reason: str = "") -> list[str]:
    """The verdict: pass/fail, the first divergent stage, each failure and each diagnosis (rich markup)."""
    lines = []
    why = f" ({_escape(gate_reason)})" if gate_reason else ""
    coverage = _escape(comparison.coverage)
    if comparison.passed:
        lines.append(f"[green]PASS[/]: {coverage}; every one within the {comparison.gate.precision} gate{why}")
    else:
        first = comparison.first_divergent_stage
        missing = comparison.missing_stages
        cause = f"first divergent stage [bold]{first}[/]" if first else ""
        if missing:
            cause += ("; " if cause else "") + f"{len(missing)} required stage{'s' if len(missing) > 1 else ''} missing"
        lines.append(f"[red]FAIL[/]: {cause or 'see below'} ({coverage}; {comparison.gate.precision} gate{why})")
    lines.extend(f"  [red]x[/] {_escape(failure)}" for failure in comparison.failures)
    lines.extend(f"  [yellow]diagnosis[/] {d.name} ({d.stage}): {_escape(d.message)}" for d in comparison.diagnoses)
    return lines


def _row(stage: StageResult, first: bool) -> list[str]:
    if stage.status != "compared":
        result = "[red]MISSING[/]" if stage.status == "missing" else "[dim]not provided[/]"
        return [stage.stage, "clip" if stage.per == "clip" else f"0/{stage.frames_expected}", *[""] * 6, result]
    result = "[green]pass[/]" if stage.passed else ("[bold red]FAIL first[/]" if first else "[red]fail[/]")
    return [
        stage.stage,
        "clip" if stage.per == "clip" else (f"{stage.frames_compared}/{stage.frames_expected}" if stage.frames_missing else str(stage.frames_compared)),
        "NaN" if stage.nan else _number(stage.max_abs),  # |NaN - x| is NaN; the counts are in the failure line
        _number(stage.mean_abs),
        _number(stage.p99),
        "" if stage.identical is None else f"{stage.identical * 100:.3f}",
        _psnr(stage.psnr, stage.max_abs),
        _similarity(stage),
        result,
    ]


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return "0" if value == 0 else re.sub(r"e([+-])0(\d)", r"e\1\2", f"{value:.3g}")  # 1.84e-5, not 1.84e-05


def _similarity(stage: StageResult) -> str:
    """SSIM for images, cosine for feature rows: a stage has one or the other."""
    if stage.ssim is not None:
        return f"{stage.ssim:.4f}"
    return "" if stage.cosine is None else f"{stage.cosine:.5f}"


def _psnr(value: float | None, max_abs: float | None) -> str:
    """PSNR is capped at 100 dB: "equal" only when nothing differs, ">=100" when something does."""
    from ..harness.verdict.types import PSNR_IDENTICAL  # not at import: `parity --help` loads no result type

    if value is None:
        return ""
    if value >= PSNR_IDENTICAL:
        return "equal" if max_abs == 0 else ">=100"
    return f"{value:.2f}"


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


class FrameProgress:
    """A rich progress bar that appears with the first frame, so input errors print alone, and stops with
    the last, so bars that follow one another never overlap (rich before 14 allows one live display)."""

    def __init__(self, description: str = "frames"):
        self.description = description
        self._bar: Progress | None = None
        self._task: Any = None

    def update(self, done: int, total: int) -> None:
        if self._bar is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=total)
        self._bar.update(self._task, completed=done, total=total)
        if done >= total:  # one live display at a time: the next bar (the reference's) may start now
            self._bar.stop()

    def __enter__(self) -> FrameProgress:
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
