"""The one on-disk cache: where it lives, how it is laid out, how its keys are made, and how entries are
written, checked and listed.

    <root>/                      $SYNCTALK_PARITY_CACHE, else ~/.cache/synctalk-parity
      demo/                      the built-in demo's inputs
      weights/<key>/             the demo weights (`reference/demo_weights.py`)
      audio/<key>/               mel spectrograms of audio files a run has seen (`harness/pipeline/audio_cache.py`)
      reference/<key>/           the reference of a clip (`harness/pipeline/reference_cache.py`): clip/ + entry.json,
                                 frames/<index>-<stages>/ and dumps/<selection>/, each an entry of its own
      exports/<key>/<fmt>-<p>/   exports of checkpoints, made on the fly by the backends (`backends/exports.py`)
      calibration/<key>/         the U-Net stream count `parity bench --calibrate-streams` measured fastest on a machine
                                 (`backends/calibration.py`; its key is the machine and onnxruntime, see there)

A key is the first 24 hex digits of the sha256 of a JSON object holding everything that can change an
entry's bytes (`key_of`): its inputs, and the environment (`environment()`: the package version, a
digest of the code that computes it, library versions, the oneDNN ISA cap and the CPU's instruction
set). Each entry records those parts, and the size and sha256 of every file, in `entry.json`;
`check_entry` verifies them before an entry is reused. Entries are built in a private temporary
folder and published with one rename (`publish`), so concurrent runs with the same key never see or
delete each other's half-written work.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .atomic import stop_if_interrupted

CACHE_ENV = "SYNCTALK_PARITY_CACHE"
KINDS = ("demo", "weights", "audio", "reference", "exports", "calibration")
KEY_DIGITS = 24
ENTRY_FILE = "entry.json"
ENTRY_SCHEMA = "synctalk-parity/cache-entry"
PACKAGE = Path(__file__).resolve().parent
# distributions whose versions can move a reference's numbers (the README's Fidelity section shows how)
REFERENCE_LIBRARIES = ("torch", "numpy", "scipy", "opencv-python-headless", "opencv-python", "librosa", "soundfile", "soxr")


def cache_root() -> Path:
    """`$SYNCTALK_PARITY_CACHE`, else `~/.cache/synctalk-parity`."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "synctalk-parity")


def cache_folder(kind: str) -> Path:
    """The folder of one kind of entry (`demo`, `weights`, `audio`, `reference`, `exports`, `calibration`) under the cache root."""
    if kind not in KINDS:
        raise ValueError(f"unknown cache kind {kind!r}; one of {', '.join(KINDS)}")
    return cache_root() / kind


def key_of(parts: dict[str, Any]) -> str:
    """The cache key of an entry decided by `parts` (JSON-serialisable; key order does not matter)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:KEY_DIGITS]


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, in hex. Remembered for the process while the file keeps its size and mtime (a run
    hashes each checkpoint for the export key, the reference key and the summary: ~0.1 s per 50 MB each time)."""
    stat = os.stat(path)
    return _sha256_of(os.path.realpath(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=256)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ----- what else decides an entry's bytes ---------------------------------------------------------


def environment(code: tuple[str, ...], libraries: tuple[str, ...]) -> dict[str, Any]:
    """The environment part of a key: package version, a digest of the package folders `code` that compute
    the entry, the versions of `libraries`, the oneDNN ISA cap and the CPU's instruction set."""
    from . import __version__

    return {
        "synctalk-parity": __version__,
        "code": code_digest(code),
        "libraries": library_versions(libraries),
        "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "cpu_isa": cpu_isa(),
        "machine": platform.machine(),
    }


@lru_cache(maxsize=8)
def code_digest(folders: tuple[str, ...]) -> str:
    """sha256 (16 hex digits) of the package's own source files in `folders` (names and bytes)."""
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted((PACKAGE / folder).rglob("*.py")):
            digest.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def library_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed version of each distribution (without importing it); "not installed" where absent."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo's "model name", or on ARM its "Hardware" or "Model"), else the platform's
    processor string, else the machine name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Hardware", "Model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


@lru_cache(maxsize=1)
def cpu_isa() -> str:
    """The widest x86 vector extension the CPU reports (avx512f, avx2, ...), else the machine name."""
    try:
        flags = next(line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return platform.machine() or "unknown"
    for isa in ("amx_tile", "avx512f", "avx2", "avx", "sse4_2"):
        if isa in flags:
            return isa
    return platform.machine() or "unknown"


# ----- entries ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    kind: str
    key: str
    path: Path
    what: str
    size: int  # bytes
    created: float  # seconds since the epoch
    problem: str | None  # None: every recorded file present with its size and checksum


def write_entry(folder: Path, kind: str, what: str, parts: dict[str, Any]) -> None:
    """Record `parts` and the size and sha256 of every file under `folder` in `folder/entry.json`."""
    files = {p.relative_to(folder).as_posix(): [p.stat().st_size, sha256_file(p)]
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ENTRY_FILE}
    document = {"schema": ENTRY_SCHEMA, "kind": kind, "key": key_of(parts), "what": what, "created": time.time(),
                "parts": parts, "files": files}
    (folder / ENTRY_FILE).write_text(json.dumps(document, indent=1, sort_keys=True, default=str) + "\n")


def read_entry(folder: Path) -> dict[str, Any] | None:
    try:
        document = json.loads((folder / ENTRY_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return document if isinstance(document, dict) and document.get("schema") == ENTRY_SCHEMA else None


def check_entry(folder: Path, checksums: bool = True) -> str | None:
    """None when `folder` holds a complete entry (entry.json valid, every file present with its recorded size
    and, with `checksums`, sha256); else what is wrong, in a few words."""
    if not folder.is_dir():
        return "missing"
    document = read_entry(folder)
    if document is None:
        return f"no valid {ENTRY_FILE}"
    files = document.get("files")
    if not isinstance(files, dict) or not files:
        return f"{ENTRY_FILE} lists no files"
    for name, record in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        size, digest = record
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size:,} bytes, {size:,} when written"
        if checksums and sha256_file(path) != digest:
            return f"{name} changed since it was written (sha256 differs)"
    return None


def build_entry(final: Path, kind: str, what: str, parts: dict[str, Any], make: Callable[[Path], object],
                replace: bool = False) -> bool:
    """Make the entry `final`: `make(folder)` writes its files into a private temporary folder beside `final`,
    `entry.json` records them (`write_entry`), and the folder is published as `final` (`publish`, with `replace`:
    True when ours was used). On any error the temporary folder is removed (`make` may move it elsewhere first) and
    the error raised."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        make(tmp)
        write_entry(tmp, kind, what, parts)
        stop_if_interrupted()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return publish(tmp, final, replace)


def publish(tmp: Path, final: Path, replace: bool = False) -> bool:
    """Move the complete entry `tmp` to `final`. When another process published a valid `final` first, keep
    theirs and drop `tmp` (readers may be using it); a damaged `final` is replaced. With `replace` (an entry that a
    new measurement supersedes, not one made again from the same inputs) any `final` is replaced. True when ours was
    used."""
    for _ in range(8):
        try:
            tmp.rename(final)
            return True
        except OSError:
            if not final.exists():
                continue
        if not replace and check_entry(final, checksums=False) is None:
            shutil.rmtree(tmp, ignore_errors=True)
            return False
        aside = final.with_name(f".{final.name}.{os.getpid()}.{'old' if replace else 'damaged'}")
        with contextlib.suppress(OSError):
            final.rename(aside)
        shutil.rmtree(aside, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)
    raise OSError(f"{final}: could not be published (other processes kept writing it)")


def entries() -> list[Entry]:
    """Every entry in the cache (reference dumps, exports, demo inputs), newest first."""
    found = []
    for kind in KINDS:
        if kind == "demo":  # demo/, and the longer demo-<N>s/ clips `parity bench` makes
            paths = sorted(p for p in cache_root().glob("demo*") if p.is_dir()) if cache_root().is_dir() else []
        else:
            root = cache_folder(kind)
            paths = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []
        for path in paths:
            document = read_entry(path) or {}
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            created = float(document.get("created") or path.stat().st_mtime)
            what = document.get("what") or _describe(kind, path)
            problem = check_entry(path, checksums=kind == "calibration") if kind in ("reference", "calibration") else None
            found.append(Entry(kind, path.name, path, what, size, created, problem))
    return sorted(found, key=lambda entry: -entry.created)


def clear(older_than_s: float | None = None) -> list[Entry]:
    """Remove every entry (or those older than `older_than_s` seconds) and stale temporary folders; returns what went."""
    now = time.time()
    removed = [entry for entry in entries() if older_than_s is None or now - entry.created > older_than_s]
    for entry in removed:
        shutil.rmtree(entry.path, ignore_errors=True)
    for kind in KINDS:
        root = cache_folder(kind)
        for leftover in root.glob(".*.partial") if root.is_dir() else ():
            if older_than_s is None or now - leftover.stat().st_mtime > max(older_than_s, 3600):
                shutil.rmtree(leftover, ignore_errors=True)
    return removed


def _describe(kind: str, path: Path) -> str:
    if kind == "exports":
        return "exports " + ", ".join(sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if kind == "demo":
        return f"built-in demo inputs ({path.name})"
    if kind == "weights":
        return "demo weights"
    if kind == "audio":
        return "mel spectrogram"
    return kind
