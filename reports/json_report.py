"""The JSON report: one document combining the runs' result.json, for dashboards and scripts.

`{"schema": "synctalk-parity/report", "schema_version": 2, "created": ISO-8601, "runs": [result.json + "run_dir"]}`
(`reports.view.ReportDocument`; its schema, `report_schema()`, is generated from it). `run_dir` is relative to the
report's folder, so paths inside each result (relative to its run folder) still resolve. Written by the same codec as
result.json: strict JSON, non-finite numbers as "Infinity"/"-Infinity"/"NaN".
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from ..harness.verdict.result import json_text
from .view import ReportDocument, Run, report_document


def render(runs: list[Run], out: Path) -> str:
    """The report document as strict JSON text."""
    return json_text(document(runs, out))


def document(runs: list[Run], out: Path) -> ReportDocument:
    """The combined document: each run's result with its folder relative to `out`."""
    return report_document(runs, [_relative(run.run_dir, out) for run in runs], datetime.now(UTC).isoformat(timespec="seconds"))


def _relative(run_dir: Path, out: Path) -> str:
    try:
        return Path(os.path.relpath(run_dir.resolve(), Path(out).resolve())).as_posix()
    except ValueError:  # another drive on Windows
        return run_dir.resolve().as_posix()
