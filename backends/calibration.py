"""The U-Net stream count this machine measured fastest, kept in the cache for the ONNX Runtime backend's default.

`parity bench --calibrate-streams` runs `parity run --no-compare` with each candidate count of U-Net calls at once
(`stream_candidates`), alternated, and keeps the count whose median steady frames/s is highest. Where such a
measurement exists for this machine, the ONNX Runtime backend on the CPU takes its count when neither `--streams`
nor `--threads` is given; elsewhere it keeps its rule (one call per CPU, at most 4).

    <cache>/calibration/<key>/streams.json + entry.json

The key is this machine as far as the measurement depends on it: the CPU model, the CPUs this process may run on,
the widest vector extension, and the onnxruntime version; a measurement made elsewhere (another VM size, a narrower
affinity mask, another onnxruntime) is not found. A damaged entry is not used (`describe` says why).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..cache import build_entry, cache_folder, check_entry, cpu_isa, key_of, library_versions

FILE = "streams.json"
SCHEMA = "synctalk-parity/streams-calibration"
MAX_CANDIDATE = 8  # each call in flight holds ~210 MB of activations at batch 1
MEASURED_BY = "measured by parity bench --calibrate-streams"  # how `describe` begins (the backend's streams_source)


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity mask, which containers and taskset narrow), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what the platform module says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_parts() -> dict[str, Any]:
    """What a calibration depends on, and so its key: CPU model, CPUs available, vector extension, onnxruntime."""
    return {"cpu_model": cpu_model(), "cpus": cpu_count(), "cpu_isa": cpu_isa(), "machine": platform.machine(),
            "onnxruntime": library_versions(("onnxruntime",))["onnxruntime"]}


def stream_candidates(cpus: int) -> list[int]:
    """The counts a calibration measures: 1, 2, 4, ... up to the CPUs, and the CPU count itself, at most 8."""
    counts = {1, min(cpus, MAX_CANDIDATE)}
    count = 2
    while count <= min(cpus, MAX_CANDIDATE):
        counts.add(count)
        count *= 2
    return sorted(counts)


@dataclass(frozen=True)
class Calibration:
    streams: int  # the count chosen: the highest median frames/s
    fps: dict[int, list[float]]  # steady frames/s of each candidate, one reading per repeat
    frames: int  # frames per run
    dataset: str
    measured_at: float  # seconds since the epoch
    path: Path

    @property
    def medians(self) -> dict[int, float]:
        return {count: statistics.median(values) for count, values in self.fps.items()}

    def describe(self) -> str:
        day = time.strftime("%Y-%m-%d", time.localtime(self.measured_at))
        figures = ", ".join(f"{count}: {fps:.2f}" for count, fps in sorted(self.medians.items()))
        return f"{MEASURED_BY} on {day} (frames/s {figures}; {self.path})"


def calibration_folder(parts: dict[str, Any] | None = None) -> Path:
    return cache_folder("calibration") / key_of(parts or machine_parts())


def save_calibration(fps: dict[int, list[float]], frames: int, dataset: str, parts: dict[str, Any] | None = None) -> Calibration:
    """Keep the count with the highest median frames/s for this machine (`parts`: another machine's, for tests),
    replacing an earlier measurement."""
    if not fps or any(not values for values in fps.values()):
        raise ValueError("a calibration needs at least one reading of every candidate")
    parts = parts or machine_parts()
    medians = {count: statistics.median(values) for count, values in fps.items()}
    streams = max(sorted(medians), key=lambda count: medians[count])
    document = {"schema": SCHEMA, "streams": streams, "fps": {str(c): v for c, v in sorted(fps.items())}, "frames": frames,
                "dataset": dataset, "measured_at": time.time(), "machine": parts}
    final = calibration_folder(parts)
    shutil.rmtree(final, ignore_errors=True)  # a new measurement replaces the old one
    build_entry(final, "calibration", f"ONNX Runtime U-Net calls at once: {streams} ({parts['cpus']} CPUs, {parts['cpu_model']})", parts,
                lambda folder: (folder / FILE).write_text(json.dumps(document, indent=1) + "\n"))
    calibration = read_calibration(final)
    assert isinstance(calibration, Calibration)
    return calibration


def read_calibration(folder: Path) -> Calibration | str | None:
    """The calibration in `folder`; None where there is none; a few words where it is damaged."""
    if not folder.is_dir():
        return None
    problem = check_entry(folder)
    if problem is not None:
        return f"the calibration in {folder} is damaged ({problem})"
    try:
        document = json.loads((folder / FILE).read_text())
        fps = {int(count): [float(v) for v in values] for count, values in document["fps"].items()}
        streams = int(document["streams"])
        if document.get("schema") != SCHEMA or streams < 1 or streams not in fps:
            raise ValueError("not a streams calibration")
        return Calibration(streams, fps, int(document["frames"]), str(document["dataset"]), float(document["measured_at"]), folder)
    except (OSError, KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
        return f"the calibration in {folder} is damaged ({exc})"


def calibrated_streams() -> Calibration | str | None:
    """This machine's calibration (`machine_parts`), None where there is none, or why it cannot be used."""
    return read_calibration(calibration_folder())
