"""The JSON report: one document combining the runs' result.json, for dashboards and scripts.

`{"schema": "synctalk-parity/report", "schema_version": 1, "created": ISO-8601, "runs": [result.json + "run_dir"]}`
(schema: `reports.schema.REPORT_SCHEMA`). `run_dir` is relative to the report's folder, so paths inside each
result (relative to its run folder) still resolve. Non-finite numbers become "Infinity"/"-Infinity"/"NaN", so
the file is strict JSON.
"""

from __future__ import annotations

import json
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .schema import REPORT_SCHEMA_NAME, SCHEMA_VERSION, Run


def render(runs: list[Run], out: Path) -> str:
    """The report document as strict JSON text."""
    return json.dumps(report_document(runs, out), indent=2, allow_nan=False) + "\n"


def report_document(runs: list[Run], out: Path) -> dict[str, Any]:
    """The combined document: each run's result with its folder relative to `out`."""
    return {
        "schema": REPORT_SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "runs": [{**strict_json(run.result), "run_dir": _relative(run.run_dir, out)} for run in runs],
    }


def strict_json(value: Any) -> Any:
    """`value` with non-finite floats replaced by their names, which strict JSON can hold."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [strict_json(item) for item in value]
    return value


def _relative(run_dir: Path, out: Path) -> str:
    try:
        return Path(os.path.relpath(run_dir.resolve(), Path(out).resolve())).as_posix()
    except ValueError:  # another drive on Windows
        return run_dir.resolve().as_posix()
