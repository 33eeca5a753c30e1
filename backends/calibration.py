"""The U-Net stream count this machine measured fastest, kept in the cache for the ONNX Runtime backend's default.

`parity bench --calibrate-streams` runs `parity run --no-compare` with each candidate count of U-Net calls at once
(`stream_candidates`), alternated, and keeps the count whose median steady frames/s is highest. Where such a
measurement exists for this machine, the ONNX Runtime backend on the CPU takes its count when neither `--streams`
nor `--threads` is given; elsewhere it keeps its rule (one call per CPU, at most 4).

    <cache>/calibration/<key>/streams.json + entry.json

The key is this machine as far as the measurement depends on it: the CPU model, the CPUs this process may run on,
the widest vector extension, and the onnxruntime version; a measurement made elsewhere (another VM size, a narrower
affinity mask, another onnxruntime) is not found. Unlike the other entries' keys it holds no package version or code
digest: the count is a property of the machine and the runtime, and a new release of this package should not forget
it. The U-Net's cost is the same for any weights of the 328 architecture; which networks were measured is recorded
(`networks`). A new measurement replaces the old one; a damaged entry, or one holding what no calibration writes, is
not used (the backend's `streams_source` says why). While one calibration measures, another on the same cache is
refused (`measuring`): each would time the other.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cache import build_entry, cache_folder, check_entry, cpu_isa, cpu_model, key_of, library_versions
from ..errors import ParityError

FILE = "streams.json"
SCHEMA = "synctalk-parity/streams-calibration"
MAX_CANDIDATE = 8  # each call in flight holds ~210 MB of activations at batch 1
MEASURED_BY = "measured by parity bench --calibrate-streams"  # how `describe` begins (the backend's streams_source)
NOT_USED = "is not used"  # in the backend's streams_source when this machine's calibration is damaged or foreign
ORT_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-silicon")  # the first installed is the one imported


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity mask, which containers and taskset narrow), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def machine_parts() -> dict[str, Any]:
    """What a calibration depends on, and so its key: CPU model, CPUs available, vector extension, onnxruntime."""
    versions = library_versions(ORT_DISTRIBUTIONS)
    runtime = next((f"{name} {version}" for name, version in versions.items() if version != "not installed"), "not installed")
    return {"cpu_model": cpu_model(), "cpus": cpu_count(), "cpu_isa": cpu_isa(), "machine": platform.machine(), "onnxruntime": runtime}


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
    networks: str  # the checkpoints or export folder measured
    measured_at: float  # seconds since the epoch
    path: Path

    @property
    def medians(self) -> dict[int, float]:
        return {count: statistics.median(values) for count, values in self.fps.items()}

    @property
    def within_noise(self) -> bool:
        """Whether another count's readings reach the kept count's slowest: the ranges overlap, so the choice rests on
        medians that more repeats could reorder."""
        kept = min(self.fps[self.streams])
        return any(max(values) >= kept for count, values in self.fps.items() if count != self.streams)

    def describe(self) -> str:
        day = time.strftime("%Y-%m-%d", time.localtime(self.measured_at))
        figures = ", ".join(f"{count}: {fps:.2f}" for count, fps in sorted(self.medians.items()))
        return f"{MEASURED_BY} on {day} (frames/s {figures}; {self.path})"


def calibration_folder(parts: dict[str, Any] | None = None) -> Path:
    return cache_folder("calibration") / key_of(parts or machine_parts())


def save_calibration(fps: dict[int, list[float]], frames: int, dataset: str, networks: str = "",
                     parts: dict[str, Any] | None = None) -> Calibration:
    """Keep the count with the highest median frames/s for this machine (`parts`: another machine's, for tests),
    replacing an earlier measurement; returns what was written."""
    if not fps or any(not values for values in fps.values()):
        raise ValueError("a calibration needs at least one reading of every candidate")
    parts = parts or machine_parts()
    medians = {count: statistics.median(values) for count, values in fps.items()}
    streams = max(sorted(medians), key=lambda count: medians[count])
    measured_at = time.time()
    document = {"schema": SCHEMA, "streams": streams, "fps": {str(c): v for c, v in sorted(fps.items())}, "frames": frames,
                "dataset": dataset, "networks": networks, "measured_at": measured_at, "machine": parts}
    final = calibration_folder(parts)
    build_entry(final, "calibration", f"ONNX Runtime U-Net calls at once: {streams} ({parts['cpus']} CPUs, {parts['cpu_model']})", parts,
                lambda folder: (folder / FILE).write_text(json.dumps(document, indent=1) + "\n"), replace=True)
    return Calibration(streams, {count: list(values) for count, values in fps.items()}, frames, dataset, networks, measured_at, final)


@contextlib.contextmanager
def measuring() -> Iterator[None]:
    """Held while a calibration measures: a second one on the same cache is refused in one line."""
    folder = cache_folder("calibration")
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / ".measuring.lock"
    with open(lock, "a+") as handle:
        try:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # not on a POSIX system: nothing to lock with
            pass
        except OSError:
            raise ParityError(f"another `parity bench --calibrate-streams` is measuring with this cache ({lock} is locked): "
                              "wait for it to finish; two at once would time each other") from None
        yield


def read_calibration(folder: Path) -> Calibration | str | None:
    """The calibration in `folder`; None where there is none; a few words where it is damaged or holds what no
    calibration writes."""
    if not folder.is_dir():
        return None
    try:
        problem = check_entry(folder)
        if problem is not None:
            raise ValueError(f"damaged: {problem}")
        document = json.loads((folder / FILE).read_text())
        if document.get("schema") != SCHEMA:
            raise ValueError(f"not a streams calibration (schema {document.get('schema')!r})")
        fps = {int(count): [float(v) for v in values] for count, values in document["fps"].items()}
        streams = int(document["streams"])
        if not fps or any(not values for values in fps.values()) or any(not 1 <= count <= MAX_CANDIDATE for count in fps):
            raise ValueError(f"its readings are not those of counts 1 to {MAX_CANDIDATE}")
        if streams not in fps:
            raise ValueError(f"it keeps {streams} U-Net calls at once, a count it did not measure")
        return Calibration(streams, fps, int(document["frames"]), str(document["dataset"]), str(document.get("networks", "")),
                           float(document["measured_at"]), folder)
    except Exception as exc:  # whatever a damaged or foreign file raises: the backend keeps its rule and says why
        return f"the calibration in {folder} {NOT_USED}, {' '.join(str(exc).split()) or type(exc).__name__}"


def calibrated_streams() -> Calibration | str | None:
    """This machine's calibration (`machine_parts`), None where there is none, or why it cannot be used."""
    return read_calibration(calibration_folder())
