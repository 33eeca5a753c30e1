"""`parity compare`: judge a candidate against the reference — a dump, or what a port already writes.

A dump (or a run folder holding dump/) is compared with a reference dump. Anything else a port writes
(a folder of frames, a video, mouth crops, raw tensors) is judged against the reference made from the
same inputs (`--dataset --audio --unet --audio-encoder`, or the built-in demo's): aligned, compared per
stage and per frame region, and diagnosed by simulation. Writes result.json; exits 0 when every gate
passes, 1 when one fails, 2 on a usage or input error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import GateFailure, ParityError
from .view import comparison_lines, comparison_table, console, print_table


def register(app: typer.Typer) -> None:
    app.command(name="compare")(compare)


def compare(
    candidate: Annotated[Path, typer.Argument(help="What to judge: a dump folder, a run folder holding dump/, or a port's output: a folder of frames (PNG/JPEG/WebP, any numbering), a video (mp4/mov/webm), a folder of 320x320 mouth crops, or a folder of raw tensors (.npy, .bin).")],
    reference: Annotated[Path | None, typer.Option(help="Reference dump (for a dump candidate). Default: the one named in the run folder's result.json.")] = None,
    dataset: Annotated[Path | None, typer.Option(help="The dataset the port was given (for a port's frames or video; for a dump, the templates its lip sync is measured against). Omit with --audio: the built-in demo's.")] = None,
    audio: Annotated[Path | None, typer.Option(help="The audio the port was given.")] = None,
    unet: Annotated[Path | None, typer.Option(help="U-Net checkpoint the port's weights came from. Default: the demo weights.")] = None,
    audio_encoder: Annotated[Path | None, typer.Option("--audio-encoder", help="Audio encoder checkpoint. Default: the demo weights.")] = None,
    start_frame: Annotated[int, typer.Option("--start-frame", help="First template frame of the dataset the port used.")] = 0,
    shape: Annotated[list[str] | None, typer.Option(help="Shape of a raw .bin tensor stage, e.g. --shape frame.unet_output=3,320,320 (or a NAME.toml sidecar).", show_default=False)] = None,
    simulate: Annotated[bool, typer.Option("--simulate/--no-simulate", help="Diagnose a port's frames by simulation (the reference re-run with known port mistakes).")] = True,
    gate: Annotated[Path | None, typer.Option(help="Gate file (TOML): tolerances, provides, lossy_ok and \\[regions].")] = None,
    precision: Annotated[str | None, typer.Option(help="fp32 or fp16 default tolerances. Default: the candidate's precision.", show_default=False)] = None,
    out: Annotated[Path | None, typer.Option(help="Where result.json goes. Default: the run folder or the dump's parent; for a port's output, ./parity-port.", show_default=False)] = None,
    reference_exact: Annotated[bool, typer.Option("--reference-exact", help="A port's reference: its U-Net in plain eager PyTorch (NCHW). Default: the same module frozen channels-last (within 3.2e-6 of eager on the golden frames); result.json's reference.execution says which ran.")] = False,
) -> None:
    """Judge a candidate against the reference, stage by stage — a dump, or a port's frames, video or tensors."""
    from ..harness.ports.ingest import detect_kind

    if detect_kind(candidate) == "dump":
        from ..harness.verdict.judge import judge

        comparison, result_path = judge(candidate, reference, gate, precision, out, dataset, start_frame)
        _print_verdict(comparison, "")
        from ..harness.verdict.result import read_result

        sync = read_result(result_path).lip_sync
        if sync is not None:
            console.print(sync.summary(), highlight=False, soft_wrap=True)
        console.print(f"wrote {result_path}", highlight=False, soft_wrap=True)
        if not comparison:
            raise typer.Exit(GateFailure.exit_code)
        return
    if reference is not None:
        raise ParityError(f"{candidate}: not a dump, so it is judged against the reference made from --dataset/--audio, not --reference")
    from ..harness.ports.judge import PortRequest, judge_port

    request = PortRequest(candidate, dataset, audio, unet, audio_encoder, start_frame, out or Path("parity-port"), gate, precision,
                          _shapes(shape or []), simulate, reference_exact=reference_exact)
    result = judge_port(request, progress=lambda text: console.print(f"[dim]{text}...[/]", highlight=False, soft_wrap=True))
    _print_port(result)
    _print_verdict(result.comparison, "")
    console.print(f"wrote {result.result_path}", highlight=False, soft_wrap=True)
    if not result.comparison:
        raise typer.Exit(GateFailure.exit_code)


def _print_verdict(comparison, why: str) -> None:
    print_table(console, comparison_table(comparison))
    for line in comparison_lines(comparison, why):
        console.print(line, highlight=False, soft_wrap=True)


def _print_port(result) -> None:
    from rich.table import Table

    from ..harness.verdict.types import PSNR_IDENTICAL

    console.print(f"candidate: {result.kind}", highlight=False)
    if result.port is not None and result.port.differences:
        console.print("what this port does differently:", highlight=False)
        for difference in result.port.differences:
            share = f" [{difference.explains:.0%} of the error]" if difference.explains is not None else ""
            console.print(f"  - {difference.title}{share}: {difference.evidence}" + (f"; fix: {difference.fix}" if difference.fix else "")
                          + (f" (PORTING.md, {difference.porting_section})" if difference.porting_section else ""),
                          highlight=False, soft_wrap=True, markup=False)
    if result.port is not None and result.port.sources is not None:
        console.print(f"sources: {result.port.sources.text}", highlight=False, soft_wrap=True, markup=False)
    if result.alignment is not None:
        console.print(f"alignment: {result.alignment.summary()}", highlight=False, soft_wrap=True)
    if result.audio_track is not None:
        console.print(f"sound track: {result.audio_track.text}", highlight=False, soft_wrap=True)
    if result.regions is not None:
        psnr = result.regions.psnr
        table = Table(title="frame.output by region (PSNR over all frames)", title_justify="left")
        for column in ("mouth box", "rest of the crop box", "outside the crop box"):
            table.add_column(column, justify="right")
        table.add_row(*(("equal" if value is not None and value >= PSNR_IDENTICAL else "-" if value is None else f"{value:.2f} dB")
                        for value in (psnr.mouth, psnr.crop_rest, psnr.outside)))
        print_table(console, table)
    if result.lossy is not None:
        console.print(f"encoding: {result.lossy.text}", highlight=False, soft_wrap=True)
    port = result.port
    if port is not None and port.codec is not None:
        console.print(f"codec noise: {port.codec.text}", highlight=False, soft_wrap=True)
        if port.codec.colour:
            console.print(f"colour: {port.codec.colour}", highlight=False, soft_wrap=True)
    if result.lip_sync is not None:
        console.print(result.lip_sync.summary(), highlight=False, soft_wrap=True)
    if result.explanation is not None:
        console.print("simulation:", highlight=False)
        for line in result.explanation.summary().splitlines():
            console.print(f"  {line}", highlight=False, soft_wrap=True)


def _shapes(items: list[str]) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for item in items:
        stage, _, dims = item.partition("=")
        try:
            shapes[stage.strip()] = tuple(int(d) for d in dims.split(",") if d.strip())
        except ValueError:
            raise ParityError(f"--shape {item!r}: expected STAGE=D,D,D such as frame.unet_output=3,320,320") from None
        if not stage.strip() or not shapes[stage.strip()]:
            raise ParityError(f"--shape {item!r}: expected STAGE=D,D,D such as frame.unet_output=3,320,320")
    return shapes
