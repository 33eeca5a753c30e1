"""The export a backend loads: the folder the user passed (checked), or the source's checkpoints exported
once into the cache.

    folder = export_for(source, "onnx")   # source.export_dir checked, else <cache>/exports/<key>/onnx-fp32/

The cache key is made from the checkpoint files' sha256 (or the fixture seed), the audio mode, the
format and precision, the package version and the versions of the exporting libraries, so finding a
cached export needs no torch; torch is imported only to export one.
"""

from __future__ import annotations

from pathlib import Path

from .. import __version__
from ..cache import cache_folder, key_of, sha256_file
from ..errors import ParityError
from ..export import export_folder_name, export_models, get_format
from ..export.manifest import MANIFEST_NAME, library_versions, read_manifest
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
    """`<cache>/exports/<key>/<fmt>-<precision>/` for `source`'s checkpoints, exported now when missing."""
    folder = cache_folder("exports") / export_key(source, fmt) / export_folder_name(fmt, source.precision)
    if not (folder / MANIFEST_NAME).is_file():
        from .torch import source_models

        unet, encoder, _ = source_models(source)
        export_models(fmt, unet, encoder, folder.parent, source.precision)
    return folder


def export_key(source: ModelSource, fmt: str) -> str:
    """The cache key of `source`'s `fmt` export: weights, mode, precision, package and exporter versions."""
    return key_of({
        "unet": sha256_file(source.unet) if source.unet is not None else FIXTURE_WEIGHTS,
        "audio_encoder": sha256_file(source.audio_encoder) if source.audio_encoder is not None else FIXTURE_WEIGHTS,
        "mode": source.mode,
        "format": fmt,
        "precision": source.precision,
        "synctalk-parity": __version__,
        "libraries": library_versions(("torch", "numpy", *get_format(fmt).libraries)),
    })
