"""The export a backend loads: the folder the user passed (checked), or the source's checkpoints exported
once into the cache.

    folder = export_for(source, "onnx")   # source.export_dir checked, else <cache>/exports/<key>/onnx-fp32/

The cache key is made from the checkpoint files' sha256 (or the fixture seed), the audio mode, the
format and precision, and the environment (package version, a digest of the models/ and export/
code, torch, numpy and the exporters' versions), so finding a cached export needs no torch; torch
is imported only to export one. An entry is checked (every file's size and sha256) before reuse;
a damaged one is exported again.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..cache import build_entry, cache_folder, check_entry, environment, key_of, sha256_file
from ..errors import ParityError
from ..export import ExportUnfinished, export_folder_name, export_models, get_format
from ..export.manifest import MANIFEST_NAME, read_manifest
from .base import ModelSource

FIXTURE_WEIGHTS = "fixture seed 0"


def export_for(source: ModelSource, fmt: str) -> Path:
    """The `fmt` export folder to load for `source`: its own export folder, checked, else the cached export."""
    if source.export_dir is None:
        return cached_export(source, fmt)
    manifest = read_manifest(source.export_dir)
    if manifest.get("format") != fmt:
        raise ParityError(f"{source.export_dir}: holds a {manifest.get('format')!r} export, not {fmt}; pass a {fmt}-<precision> folder")
    modes = {a.get("preprocessing", {}).get("audio_mode") for a in manifest["artifacts"]} - {None}
    if modes and modes != {source.mode}:
        raise ParityError(f"{source.export_dir}: U-Net exported for audio mode {modes.pop()!r}, not {source.mode!r}; export it again for {source.mode!r}")
    return Path(source.export_dir)


def cached_export(source: ModelSource, fmt: str) -> Path:
    """`<cache>/exports/<key>/<fmt>-<precision>/` for `source`'s checkpoints, exported now when missing or damaged."""
    parts = export_parts(source, fmt)
    entry = cache_folder("exports") / key_of(parts)
    folder = entry / export_folder_name(fmt, source.precision)
    if check_entry(entry) is None and (folder / MANIFEST_NAME).is_file():
        return folder
    from .torch import source_models

    unet, encoder, _ = source_models(source)

    def make(tmp: Path) -> None:
        try:
            export_models(fmt, unet, encoder, tmp, source.precision, check_inputs=source.check_inputs)
        except ExportUnfinished as exc:  # what could be made here (TensorRT-ready ONNX) is kept beside the entry
            kept = entry.with_name(entry.name + ".unbuilt")
            shutil.rmtree(kept, ignore_errors=True)
            tmp.rename(kept)
            raise exc.moved_to(kept / exc.folder.name) from None

    build_entry(entry, "exports", f"{fmt} {source.precision} export of {_weights_label(source)}", parts, make)
    return folder


def export_key(source: ModelSource, fmt: str) -> str:
    """The cache key of `source`'s `fmt` export."""
    return key_of(export_parts(source, fmt))


def export_parts(source: ModelSource, fmt: str) -> dict[str, Any]:
    """What decides an export's bytes: the weights (sha256 of the checkpoint files), audio mode, format, precision,
    and the environment (package version, models/ and export/ code, torch, numpy and the format's exporters)."""
    return {
        "inputs": {
            "unet": sha256_file(source.unet) if source.unet is not None else FIXTURE_WEIGHTS,
            "audio_encoder": sha256_file(source.audio_encoder) if source.audio_encoder is not None else FIXTURE_WEIGHTS,
            "mode": source.mode,
            "format": fmt,
            "precision": source.precision,
        },
        "environment": environment(("models", "export"), ("torch", "numpy", *get_format(fmt).libraries)),
    }


def _weights_label(source: ModelSource) -> str:
    names = [p.name for p in (source.unet, source.audio_encoder) if p is not None]
    return " + ".join(names) if names else FIXTURE_WEIGHTS
