"""`parity run`: the pipeline on a backend, its frames, video and dump, and the comparison with the reference."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .view import FrameProgress, console


def register(app: typer.Typer) -> None:
    app.command(name="run")(run)



def run(
    backend: Annotated[str | None, typer.Option(help="Runtime to run the networks on (torch, onnxruntime, coreml, coreml-emulated, tensorrt; `parity doctor` shows which work here). Default: the best available, onnxruntime, else torch.")] = None,
    dataset: Annotated[Path | None, typer.Option(help="SyncTalk dataset folder (full_body_img/, landmarks/) or a video with landmarks/ beside it. Omit with --audio for the built-in demo.")] = None,
    audio: Annotated[Path | None, typer.Option(help="Speech to lip-sync: WAV (any rate, any channels) or anything ffmpeg decodes.")] = None,
    models: Annotated[Path | None, typer.Option(help="Export folder written by `parity export` (onnx, coreml, tensorrt backends).")] = None,
    unet: Annotated[Path | None, typer.Option(help="U-Net checkpoint (original unet_328 state dict). Default: the demo weights.")] = None,
    audio_encoder: Annotated[Path | None, typer.Option("--audio-encoder", help="audio_visual_encoder.pth. Default: the demo weights.")] = None,
    frames: Annotated[int | None, typer.Option(help="Write only the first N output frames.")] = None,
    start_frame: Annotated[int, typer.Option("--start-frame", help="First template frame of the dataset to use.")] = 0,
    batch: Annotated[int | None, typer.Option(help="U-Net batch size (default: the backend's choice, 1 for ONNX Runtime on CPU, else 4).")] = None,
    out: Annotated[Path, typer.Option(help="Output folder: frames/*.png, video.mp4, dump/, result.json, summary.md.")] = Path("parity-out"),
    dump: Annotated[str, typer.Option(help="Stages to dump: all, none, or comma-separated stage names.")] = "all",
    dump_every: Annotated[int, typer.Option("--dump-every", help="Dump heavy stages (images, U-Net tensors) every K-th frame; light stages every frame.")] = 10,
    compare: Annotated[bool, typer.Option("--compare/--no-compare", help="Compare the dump with the (cached) PyTorch reference.")] = True,
    reference_exact: Annotated[bool, typer.Option("--reference-exact", help="Run the reference's U-Net in plain eager PyTorch (NCHW). Default: the same module frozen channels-last, within 3.2e-6 of eager on the golden frames and 2x faster; result.json's reference.execution says which ran.")] = False,
    gate: Annotated[Path | None, typer.Option(help="Gate file (TOML) with per-stage tolerances. Default: built-in per precision.")] = None,
    precision: Annotated[str | None, typer.Option(help="fp32 or fp16: the default gate (and, from checkpoints, what the backend runs). Default: the precision of the --models export (its manifest), else fp32.", show_default=False)] = None,
    provider: Annotated[str | None, typer.Option(help="ONNX Runtime execution provider: cpu, cuda, tensorrt or coreml (checked after loading: a provider that fails to load is an error, not a silent CPU run). Default: cpu.", show_default=False)] = None,
    device: Annotated[str | None, typer.Option(help="torch device: cpu, cuda or cuda:N. Default: cpu.", show_default=False)] = None,
    streams: Annotated[int | None, typer.Option(help="ONNX Runtime: U-Net calls run at once, each on its own thread. Default on the CPU provider: the count `parity bench --calibrate-streams` measured fastest on this machine, else one per CPU (at most 4), each on its share of the CPUs; 1: one call at a time on every core.", show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace --out even when it holds files a run does not write (a run folder is always replaced, once the new run is complete).")] = False,
    report: Annotated[str | None, typer.Option(help="Also write reports into --out: md,html,json,junit (or all).")] = None,
    save_frames: Annotated[bool, typer.Option("--save-frames/--no-save-frames", help="Write every output frame as lossless PNG into frames/ (the video and the dump are written either way).")] = True,
) -> None:
    """Run the pipeline: audio + avatar -> frames, video, stage dump, and a comparison with the reference.

    No arguments: the built-in demo. Exit 0 when every gate passes, 1 when one fails, 2 on bad input.
    """
    from ..errors import GateFailure
    from ..harness.pipeline.run import RunRequest, check_request
    from ..harness.pipeline.run import run as run_pipeline

    formats = None
    if report is not None:
        from ..reports import parse_formats

        formats = parse_formats(report)
    request = RunRequest(out, backend, dataset, audio, unet, audio_encoder, frames, start_frame, models=models, batch=batch,
                         dump=dump, dump_every=dump_every, compare=compare, gate=gate, precision=precision,
                         save_frames=save_frames, provider=provider, device=device, streams=streams, overwrite=overwrite,
                         reference_exact=reference_exact)
    check_request(request)
    if request.is_demo:
        console.print("Built-in demo: avatar from scikit-image's astronaut, synthetic speech, demo weights (listening test weights: the mouth follows the speech; not a SyncTalk model).")
        if formats is None and compare:  # the demo shows its result: the HTML report, unless asked for others
            formats = ["html"]
    with FrameProgress() as progress, FrameProgress("reference (torch)") as reference_progress:
        result = run_pipeline(request, progress=progress.update, reference_progress=reference_progress.update,
                              progress_note=lambda text: console.print(f"[dim]{text}[/]", highlight=False, soft_wrap=True))
    console.print(
        f"[green]wrote[/] {result.frames_written} frames ({result.frames_written} of {result.frames_available}) "
        f"{'to ' + str(result.out / 'frames') + ', ' if save_frames else ''}video {result.out / result.video}, summary {result.out / 'summary.md'} "
        f"— {result.fps:.2f} frames/s on {result.backend}",
        highlight=False,
    )
    if backend is None:
        console.print(f"backend: {result.backend}, the best available here (--backend to choose)", highlight=False)
    _print_run_details(result)
    if formats:
        from ..reports import write_reports

        written = write_reports([result.out], formats, result.out)
        console.print(f"reports: {', '.join(str(p) for p in written)}", highlight=False, soft_wrap=True)
        html = next((p for p in written if p.suffix == ".html"), None)
        if html is not None:
            console.print(f"[bold]open the report:[/] {html.resolve().as_uri()}", highlight=False, soft_wrap=True)
    if result.comparison is not None and not result.comparison:
        raise GateFailure(
            f"gate failed: first divergent stage {result.comparison.first_divergent_stage}; see {result.out / 'summary.md'}"
        )


def _print_run_details(result) -> None:
    """The comparison table, then speed and per-step time."""
    from rich.table import Table

    from .view import print_table

    if result.comparison is not None:
        from .view import comparison_lines, comparison_table

        if result.reference_note:
            console.print(f"[yellow]note:[/] {result.reference_note}", highlight=False, soft_wrap=True)
        run = result.reference_run
        how = "" if run is None else f" ({run.execution}: {run.description})"
        if result.reference_cached:
            console.print(f"reference: cached result{how} from {result.reference}", highlight=False, soft_wrap=True)
        else:
            frames = "" if run is None else f", heavy stages of {run.frames_computed} frames computed now, {run.frames_cached} cached"
            console.print(f"reference: computed{how}{frames}, cached in {result.reference}", highlight=False, soft_wrap=True)
        print_table(console, comparison_table(result.comparison))
        for line in comparison_lines(result.comparison, result.gate_reason):
            console.print(line, highlight=False, soft_wrap=True)
    else:
        console.print("comparison: skipped (--no-compare)")
    if result.lip_sync is not None:
        console.print(result.lip_sync.summary(), highlight=False, soft_wrap=True)
    from ..backends.calibration import MEASURED_BY, NOT_USED

    streams = int(result.describe.get("streams") or 1)
    at_once = f", {streams} U-Net calls at once" if streams > 1 else ""
    calibrated = ""
    source = str(result.describe.get("streams_source", ""))
    if NOT_USED in source:  # this machine's calibration is damaged: the rule ran, and the user should know why
        console.print(f"streams: {source}", highlight=False, soft_wrap=True)
    if source.startswith(MEASURED_BY):
        calibrated = f" ({'that many' if streams > 1 else 'one call at a time'}: the count `parity bench --calibrate-streams` measured fastest here)"
    console.print(f"speed: {result.fps:.2f} frames/s end to end, batch {result.batch}{at_once} on {result.backend}{calibrated}", highlight=False,
                  soft_wrap=True)
    timing = Table()
    timing.add_column("step")
    timing.add_column("seconds", justify="right")
    for name, seconds in result.seconds.items():
        timing.add_row(name, f"{seconds:.2f}")
    print_table(console, timing)


