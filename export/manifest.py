"""The manifest written beside every export: what the artifacts are, how to feed them, how they were checked.

One `manifest.json` per export folder (`<out>/<format>-<precision>/`), one record per network:
sha256 of the file (of every file, for a directory artifact such as `.mlpackage`), input/output
names, shapes (`"B"` marks a dynamic batch dimension), dtypes, precision, preprocessing
constants (channel order, scaling), exporter and library versions, and the export-time check.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..atomic import write_text_atomically
from ..cache import library_versions
from ..errors import ParityError

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1


@dataclass
class ArtifactRecord:
    """One exported network in an export folder."""

    network: str  # "unet" or "audio_encoder"
    file: str  # name inside the export folder: "unet.onnx", "unet.mlpackage", ...
    inputs: list[dict]  # {"name", "shape": [..., "B" for dynamic batch], "dtype"}
    outputs: list[dict]
    check: dict  # export-time check: {"method", "max_abs_diff", "tolerance", "passed", ...}
    preprocessing: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    sha256: str = ""


def write_manifest(
    out_dir: Path, fmt: str, precision: str, records: list[ArtifactRecord], libraries: tuple[str, ...] = ()
) -> Path:
    """Hash the artifacts and write `out_dir/manifest.json` atomically; return its path."""
    for record in records:
        record.sha256 = sha256_artifact(out_dir / record.file)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "format": fmt,
        "precision": precision,
        "artifacts": [asdict(r) for r in records],
        "versions": library_versions(("synctalk-parity", "torch", "numpy", *libraries)),
        "platform": f"{platform.system()} {platform.machine()} Python {platform.python_version()}",
    }
    path = out_dir / MANIFEST_NAME
    write_text_atomically(path, json.dumps(manifest, indent=2) + "\n")
    return path


def read_manifest(export_dir: Path) -> dict:
    """The manifest of an export folder, or a `ParityError` naming what is wrong."""
    path = Path(export_dir) / MANIFEST_NAME
    if not path.is_file():
        raise ParityError(f"{export_dir}: no {MANIFEST_NAME}; pass a folder written by `parity export`")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ParityError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise ParityError(f"{path}: manifest schema {manifest.get('schema_version')!r}, expected {SCHEMA_VERSION}")
    return manifest


def find_export(path: Path, fmt: str | None) -> tuple[Path, str | None]:
    """The export folder `path` names: `path` itself when it holds a manifest, else its one subfolder holding an
    export of `fmt` (the folder `parity export --out` wrote). Returns the folder and a note saying which was taken
    (None when `path` was the export itself); a ParityError lists the subfolders and which fit otherwise."""
    path = Path(path)
    if (path / MANIFEST_NAME).is_file():
        return path, None
    if not path.is_dir():
        raise ParityError(f"{path}: not found; pass a folder written by `parity export` (or the --out folder it wrote into)")
    found = {}
    for child in sorted(p for p in path.iterdir() if (p / MANIFEST_NAME).is_file()):
        try:
            found[child] = read_manifest(child).get("format")
        except ParityError:
            continue
    fitting = [child for child, kind in found.items() if fmt is None or kind == fmt]
    if len(fitting) == 1:
        return fitting[0], f"{path} holds exports; using {fitting[0].name}/ ({found[fitting[0]]})"
    if not found:
        raise ParityError(f"{path}: no {MANIFEST_NAME}, and no subfolder holds one; pass a folder written by `parity export`")
    listed = ", ".join(f"{child.name} ({kind}{', fits' if child in fitting else ''})" for child, kind in found.items())
    wanted = f" {fmt}" if fmt else ""
    why = "several fit" if fitting else f"none is a{wanted} export"
    raise ParityError(f"{path}: holds exports {listed}; {why}: pass one of them, e.g. --models {path / (fitting or list(found))[0].name}")


def artifact_path(export_dir: Path, network: str, verify: bool = True) -> Path:
    """The file of `network` in an export folder, checked against its recorded sha256."""
    manifest = read_manifest(export_dir)
    for record in manifest["artifacts"]:
        if record["network"] == network:
            path = Path(export_dir) / record["file"]
            if not path.exists():
                raise ParityError(f"{path}: listed in {MANIFEST_NAME} but missing; re-run `parity export`")
            if verify and sha256_artifact(path) != record["sha256"]:
                raise ParityError(f"{path}: sha256 differs from {MANIFEST_NAME}; the artifact changed after export")
            return path
    raise ParityError(f"{export_dir}: {MANIFEST_NAME} has no {network!r} artifact")


def sha256_artifact(path: Path) -> str:
    """sha256 of a file, or of a directory's files (relative names and contents, sorted)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
