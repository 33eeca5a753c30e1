"""Reports from run folders: Markdown for pull requests, self-contained HTML, one JSON document, JUnit XML for CI.

Each writer reads the `result.json` of one or more run folders (see `reports.view`); several runs are shown
side by side (a summary table across runs, then one section per run).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import write_text_atomically
from ..errors import ParityError

if TYPE_CHECKING:
    from .view import Run

REPORT_FILES = {"md": "report.md", "html": "report.html", "json": "report.json", "junit": "report.junit.xml"}


def write_reports(run_dirs: list[Path], formats: list[str], out: Path) -> list[Path]:
    """Write the asked formats (md, html, json, junit) for these run folders into `out`; returns the paths written."""
    from .view import load_runs  # not at import: `parity --help` loads no result type

    formats = parse_formats(",".join(formats))
    runs = load_runs([Path(run_dir) for run_dir in run_dirs])
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ParityError(f"report folder {out} is a file: pass a folder with --out")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in formats:
        path = out / REPORT_FILES[name]
        write_text_atomically(path, _renderer(name)(runs, out))
        written.append(path)
    return written


def parse_formats(text: str) -> list[str]:
    """"md,html" -> ["md", "html"]; "all" -> every format; an unknown name is a ParityError with a "did you mean"."""
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    if not names:
        raise ParityError(f"no report format given: use one or more of {', '.join(REPORT_FILES)} (comma-separated) or all")
    if names == ["all"]:
        return list(REPORT_FILES)
    for name in names:
        if name not in REPORT_FILES:
            close = difflib.get_close_matches(name, [*REPORT_FILES, "markdown", "xml"], n=1, cutoff=0.5)
            hint = f"did you mean {_canonical(close[0])!r}? " if close else ""
            raise ParityError(f"unknown report format {name!r}: {hint}use {', '.join(REPORT_FILES)} or all")
    return list(dict.fromkeys(names))


def _canonical(name: str) -> str:
    return {"markdown": "md", "xml": "junit"}.get(name, name)


def _renderer(name: str) -> Callable[[list[Run], Path], str]:
    from . import html, json_report, junit, markdown

    return {
        "md": lambda runs, out: markdown.render(runs),
        "html": lambda runs, out: html.render(runs),
        "json": lambda runs, out: json_report.render(runs, out),
        "junit": lambda runs, out: junit.render(runs),
    }[name]
