"""Export the two networks to each format; one table of formats drives the CLI, file names and checks.

A format is one module here (`onnx`, `coreml`, `tensorrt`) exposing

    def export(unet, audio_encoder, out_dir: Path, precision: str, check: CheckInputs | None) -> list[ArtifactRecord]

which writes its artifacts into `out_dir` (a fresh temporary folder) and raises `ParityError` when
the export-time check (on `check`: real inputs the caller makes, see `check_inputs.py`) fails. `export_models` owns the folder: it writes into a temporary sibling,
adds `manifest.json`, and renames it into place only when everything passed. A format that can
do only the first part here (TensorRT without TensorRT or a GPU) raises `ExportUnfinished`; the
folder is then kept as `<format>-<precision>.unbuilt/`, a name no backend takes for a finished export.
"""

from __future__ import annotations

import difflib
import importlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import building
from ..errors import ParityError
from ..precision import PRECISIONS
from .manifest import ArtifactRecord, write_manifest

if TYPE_CHECKING:
    from .check_inputs import CheckInputsMaker


@dataclass(frozen=True)
class ExportFormat:
    name: str
    module: str  # module in this package
    suffix: str  # artifact suffix
    precisions: tuple[str, ...]
    libraries: tuple[str, ...]  # versions recorded in the manifest
    runs_on: str  # where the artifact runs


FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat("onnx", "onnx", ".onnx", PRECISIONS, ("onnx", "onnxruntime", "onnxsim"), "ONNX Runtime (CPU, CUDA, TensorRT, CoreML EPs), Go"),
        ExportFormat("coreml", "coreml", ".mlpackage", PRECISIONS, ("coremltools",), "macOS 13 / iOS 16 and later"),
        ExportFormat("tensorrt", "tensorrt", ".engine", PRECISIONS, ("tensorrt", "polygraphy", "onnx"), "NVIDIA GPU with TensorRT"),
    )
}


class ExportUnfinished(ParityError):
    """What could be written here was written; the rest needs another machine (`missing` says why)."""

    def __init__(self, missing: str, written: str, next_step: str, folder: Path):
        self.missing, self.written, self.next_step, self.folder = missing, written, next_step, Path(folder)
        super().__init__(f"{missing} — {written} were written to {folder}: {next_step}")

    def moved_to(self, folder: Path) -> ExportUnfinished:
        return type(self)(self.missing, self.written, self.next_step, folder)


def get_format(name: str) -> ExportFormat:
    """The format called `name`, or a `ParityError` with a "did you mean"."""
    if name in FORMATS:
        return FORMATS[name]
    close = difflib.get_close_matches(name, list(FORMATS), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ParityError(f"unknown export format {name!r}: choose from {', '.join(FORMATS)} or 'all'{hint}")


def check_precision(fmt: ExportFormat, precision: str) -> None:
    if precision not in fmt.precisions:
        raise ParityError(f"{fmt.name} export supports precision {', '.join(fmt.precisions)}, not {precision!r}")


def export_folder_name(fmt: str, precision: str) -> str:
    return f"{fmt}-{precision}"


def export_models(fmt_name: str, unet, audio_encoder, out: Path, precision: str = "fp32",
                  keep_fp32: dict[str, list[str]] | None = None, check_inputs: CheckInputsMaker | None = None) -> Path:
    """Export both networks to `out/<format>-<precision>/` atomically; return that folder. `keep_fp32`: per network
    ("unet", "audio_encoder"), the layers (PyTorch module paths) an fp16 ONNX export keeps in fp32. `check_inputs`
    makes the real inputs the export-time checks run on, given the audio encoder (without it: the specs' example
    inputs, and the manifest says "example")."""
    fmt = get_format(fmt_name)
    check_precision(fmt, precision)
    keep = {network: list(layers) for network, layers in (keep_fp32 or {}).items()}
    if any(keep.values()) and fmt.name != "onnx":
        raise ParityError(f"--keep-fp32 is implemented for the onnx export; {fmt.name} does not take it yet")
    module = importlib.import_module(f"{__name__}.{fmt.module}")
    final = Path(out) / export_folder_name(fmt.name, precision)
    with building(final) as tmp:
        try:
            arguments = {"keep_fp32": keep} if keep and fmt.name == "onnx" else {}
            check = check_inputs(audio_encoder) if check_inputs is not None else None
            records: list[ArtifactRecord] = module.export(unet, audio_encoder, tmp, precision, check=check, **arguments)
        except ExportUnfinished as exc:  # keep what was made (e.g. the TensorRT-ready ONNX) under another name
            kept = final.with_name(final.name + ".unbuilt")
            shutil.rmtree(kept, ignore_errors=True)
            tmp.rename(kept)
            raise exc.moved_to(kept) from None
        write_manifest(tmp, fmt.name, precision, records, fmt.libraries)
    return final
