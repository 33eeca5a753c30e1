"""The one on-disk cache: where it lives, how it is laid out, and how its keys are made.

    <root>/                      $SYNCTALK_PARITY_CACHE, else ~/.cache/synctalk-parity
      demo/                      the built-in demo's inputs
      reference/<key>/           reference dumps (`harness/reference_cache.py`)
      exports/<key>/<fmt>-<p>/   exports of checkpoints, made on the fly by the backends (`backends/exports.py`)

A key is the first 24 hex digits of the sha256 of a JSON object holding everything that decides an
entry's bytes (`key_of`). Files are hashed with `sha256_file`, which needs no torch.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

CACHE_ENV = "SYNCTALK_PARITY_CACHE"
KINDS = ("demo", "reference", "exports")
KEY_DIGITS = 24


def cache_root() -> Path:
    """`$SYNCTALK_PARITY_CACHE`, else `~/.cache/synctalk-parity`."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "synctalk-parity")


def cache_folder(kind: str) -> Path:
    """The folder of one kind of entry (`demo`, `reference`, `exports`) under the cache root."""
    if kind not in KINDS:
        raise ValueError(f"unknown cache kind {kind!r}; one of {', '.join(KINDS)}")
    return cache_root() / kind


def key_of(parts: dict[str, Any]) -> str:
    """The cache key of an entry decided by `parts` (JSON-serialisable; key order does not matter)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:KEY_DIGITS]


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
