"""`parity cache`: what the cache holds (reference dumps, exports, demo inputs, stream calibrations), and clearing it."""

from __future__ import annotations

import re
import time
from typing import Annotated

import typer
from rich.table import Table

from ..errors import ParityError
from .view import console, print_table

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def register(app: typer.Typer) -> None:
    app.command(name="cache")(cache)


def cache(
    clear: Annotated[bool, typer.Option("--clear", help="Remove entries: all of them, or with --older-than only the old ones.")] = False,
    older_than: Annotated[str | None, typer.Option("--older-than", help="With --clear: only entries older than this, e.g. 30d, 12h, 90m.", show_default=False)] = None,
) -> None:
    """List the cached reference dumps, exports, demo inputs and stream calibrations (key, what, size, age, state), or clear them."""
    from ..cache import cache_root, entries
    from ..cache import clear as clear_entries

    if older_than is not None and not clear:
        raise ParityError("--older-than applies to --clear; add --clear")
    if clear:
        removed = clear_entries(None if older_than is None else parse_duration(older_than))
        freed = sum(entry.size for entry in removed)
        console.print(f"removed {len(removed)} entr{'y' if len(removed) == 1 else 'ies'} ({freed / 1e6:.1f} MB) from {cache_root()}", highlight=False)
        return
    found = entries()
    table = Table(title=f"cache {cache_root()}", title_justify="left")
    for column in ("kind", "key", "what", "MB", "age", "state"):
        table.add_column(column, justify="right" if column in ("MB", "age") else "left", overflow="fold")
    now = time.time()
    for entry in found:
        state = "ok" if entry.problem is None else f"[red]damaged: {entry.problem}[/] (made again when next used)"
        table.add_row(entry.kind, entry.key, entry.what, f"{entry.size / 1e6:.1f}", _age(now - entry.created), state)
    print_table(console, table)
    console.print(f"{len(found)} entries, {sum(e.size for e in found) / 1e6:.1f} MB; `parity cache --clear [--older-than 30d]` removes them",
                  highlight=False)


def parse_duration(text: str) -> float:
    """"30d", "12h", "90m", "45s", "2w" (or plain seconds) to seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if match is None:
        raise ParityError(f"--older-than {text!r}: expected a number with a unit, like 30d, 12h or 90m")
    return float(match.group(1)) * UNITS[match.group(2) or "s"]


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"
