"""`parity export`: export both networks to ONNX, Core ML or TensorRT and show what was written and how it checked.

A thin typer layer over `export.export_models`; the table is rendered with rich.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..errors import ParityError
from ..export import FORMATS, check_precision, export_models, get_format
from ..export.manifest import read_manifest
from ..harness.inputs import demo_check_inputs, resolve_inputs
from .view import print_table


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)


def export_command(
    format_name: Annotated[str, typer.Option("--format", "-f", help=f"{' | '.join(FORMATS)} | all")] = "onnx",
    precision: Annotated[str, typer.Option(help="fp32 | fp16")] = "fp32",
    unet: Annotated[Path | None, typer.Option("--unet", help="U-Net checkpoint (.pth); the demo weights when omitted")] = None,
    audio_encoder: Annotated[Path | None, typer.Option("--audio-encoder", help="audio encoder checkpoint (audio_visual_encoder.pth)")] = None,
    mode: Annotated[str, typer.Option(help="U-Net audio branch: ave | hubert | wenet")] = "ave",
    out: Annotated[Path, typer.Option(help="folder that receives <format>-<precision>/")] = Path("exports"),
    keep_fp32: Annotated[str | None, typer.Option("--keep-fp32", help="fp16 ONNX: layers to keep fp32 — PyTorch module paths (audio_encoder.0,audio_encoder.1), a keep_fp32.json written by `parity locate`, or none. Default: none in the U-Net, and the audio encoder fp32 whole.", show_default=False)] = None,
) -> None:
    """Export the U-Net and the audio encoder, each checked against eager PyTorch at export time."""
    console, errors = Console(), Console(stderr=True)
    try:
        formats = list(FORMATS) if format_name == "all" else [get_format(format_name).name]
        if format_name != "all":
            check_precision(FORMATS[formats[0]], precision)
        keep = _keep_fp32(keep_fp32, precision, formats)
        unet_model, encoder_model, notes = _load_models(unet, audio_encoder, mode)
    except ParityError as exc:
        errors.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    for note in notes:
        console.print(f"[yellow]{note}[/yellow]", highlight=False)

    table = _artifact_table()
    failed: list[str] = []
    check_inputs = functools.lru_cache(maxsize=1)(demo_check_inputs)  # made once for every format
    for name in formats:
        try:
            check_precision(FORMATS[name], precision)
            keep_option = {"keep_fp32": keep} if keep is not None and name == "onnx" else {}
            # checked on the demo's real inputs (the U-Net's audio windows from this audio encoder)
            folder = export_models(name, unet_model, encoder_model, out, precision, check_inputs=check_inputs, **keep_option)
        except (ParityError, ImportError) as exc:
            message = _one_line(exc)
            failed.append(name)
            table.add_row(name, "-", "-", "-", "-", "[red]failed[/red]")
            errors.print(f"[red]{name}:[/red] {message}", highlight=False, soft_wrap=True)
            if format_name != "all":
                print_table(console, table)
                raise typer.Exit(getattr(exc, "exit_code", 1)) from None
            continue
        _add_rows(table, name, folder)
    print_table(console, table)
    console.print(f"in {out}", highlight=False, soft_wrap=True)
    if failed:
        errors.print(f"[red]{len(failed)} of {len(formats)} format(s) failed:[/red] {', '.join(failed)}", highlight=False)
        raise typer.Exit(1)


def _keep_fp32(value: str | None, precision: str, formats: list[str]) -> dict[str, list[str]] | None:
    if value is None:
        return None
    from ..export.keep_fp32 import parse_keep_fp32

    if precision != "fp16":
        raise ParityError("--keep-fp32 applies to fp16 exports: add --precision fp16")
    if "onnx" not in formats:
        raise ParityError(f"--keep-fp32 is implemented for the onnx export, not {', '.join(formats)}")
    return parse_keep_fp32(value)


def _load_models(unet: Path | None, audio_encoder: Path | None, mode: str):
    from ..models import AUDIO_MODES, load_models

    if mode not in AUDIO_MODES:
        raise ParityError(f"unknown U-Net audio mode {mode!r}: use one of {', '.join(AUDIO_MODES)}")
    # weights not given: the demo weights (fit for the ave branch; other branches: fixture weights); no clip is read
    inputs = resolve_inputs(unet=unet, audio_encoder=audio_encoder, clip=False, mode=mode)
    unet_model, encoder_model, labels = load_models(inputs.unet, inputs.audio_encoder, mode)
    used = {"unet": inputs.unet, "audio_encoder": inputs.audio_encoder}
    notes = [f"no --{flag} given: exporting {inputs.labels[key] if used[key] is not None else labels[key]}"
             for flag, key, path in (("unet", "unet", unet), ("audio-encoder", "audio_encoder", audio_encoder)) if path is None]
    return unet_model, encoder_model, notes


def _artifact_table() -> Table:
    table = Table(title="exported artifacts")
    for column in ("format", "file", "sha256", "max |diff| (by batch)", "tolerance", "check"):
        table.add_column(column, overflow="fold", no_wrap=column == "file")  # a file name stays whole
    return table


def _add_rows(table: Table, fmt: str, folder: Path) -> None:
    for record in read_manifest(folder)["artifacts"]:
        check = record.get("check", {})
        by_batch = check.get("max_abs_diff_by_batch")
        diff = check.get("max_abs_diff")
        shown = ", ".join(f"{b}: {_figure(d)}" for b, d in by_batch.items()) if by_batch else ("-" if diff is None else _figure(diff))
        tolerance = check.get("tolerance")
        table.add_row(
            fmt,
            str(Path(folder.name) / record["file"]),  # relative to --out, printed once under the table: no path folds mid-name
            record["sha256"][:12],
            shown,
            "-" if tolerance is None else f"{tolerance:g}",
            "[green]pass[/green]" if check.get("passed") else "[red]fail[/red]",
        )


def _figure(value: float) -> str:
    """Two significant digits, exponent without its leading zero: 6.3e-6, not 6.3e-06."""
    return re.sub(r"e([+-])0(\d)", r"e\1\2", f"{value:.2g}")


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, ImportError):
        return f"exporter not available here: {exc}"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

