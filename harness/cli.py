"""The `parity` command line: thin typer commands over the library; results rendered with rich.

User errors (`ParityError`) print one line and exit with their code (2 for bad input, 1 for a
failed gate); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .. import __version__
from ..errors import ParityError

console = Console()
err_console = Console(stderr=True)


def user_errors(command):
    """Turn a `ParityError` into one red line on stderr and its exit code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ParityError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper


class ParityTyper(typer.Typer):
    """A Typer whose every command turns a `ParityError` into one line and its exit code."""

    def command(self, *args, **kwargs):
        register = super().command(*args, **kwargs)
        return lambda callback: register(user_errors(callback))


app = ParityTyper(
    name="parity",
    help="SyncTalk_2D on every runtime, proven stage by stage against the PyTorch reference.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
def _version(value: bool) -> None:
    if value:
        console.print(f"synctalk-parity {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")] = None,
) -> None:
    """SyncTalk_2D on every runtime, proven stage by stage against the PyTorch reference."""


@app.command()
def run(
    backend: Annotated[Optional[str], typer.Option(help="Runtime to run the networks on (torch, onnxruntime, coreml, coreml-emulated, tensorrt; `parity doctor` shows which work here). Default: the best available, onnxruntime, else torch.")] = None,
    dataset: Annotated[Optional[Path], typer.Option(help="SyncTalk dataset folder (full_body_img/, landmarks/) or a video with landmarks/ beside it. Omit with --audio for the built-in demo.")] = None,
    audio: Annotated[Optional[Path], typer.Option(help="Speech to lip-sync: WAV (any rate, any channels) or anything ffmpeg decodes.")] = None,
    models: Annotated[Optional[Path], typer.Option(help="Export folder written by `parity export` (onnx, coreml, tensorrt backends).")] = None,
    unet: Annotated[Optional[Path], typer.Option(help="U-Net checkpoint (original unet_328 state dict). Default: fixture weights.")] = None,
    audio_encoder: Annotated[Optional[Path], typer.Option("--audio-encoder", help="audio_visual_encoder.pth. Default: fixture weights.")] = None,
    frames: Annotated[Optional[int], typer.Option(help="Write only the first N output frames.")] = None,
    start_frame: Annotated[int, typer.Option("--start-frame", help="First template frame of the dataset to use.")] = 0,
    batch: Annotated[Optional[int], typer.Option(help="U-Net batch size (default: the backend's choice, 1 for ONNX Runtime on CPU, else 4).")] = None,
    out: Annotated[Path, typer.Option(help="Output folder: frames/*.png, video.mp4, dump/, result.json, summary.md.")] = Path("parity-out"),
    dump: Annotated[str, typer.Option(help="Stages to dump: all, none, or comma-separated stage names.")] = "all",
    dump_every: Annotated[int, typer.Option("--dump-every", help="Dump heavy stages (images, U-Net tensors) every K-th frame; light stages every frame.")] = 10,
    compare: Annotated[bool, typer.Option("--compare/--no-compare", help="Compare the dump with the (cached) eager reference.")] = True,
    gate: Annotated[Optional[Path], typer.Option(help="Gate file (TOML) with per-stage tolerances. Default: built-in per precision.")] = None,
    precision: Annotated[str, typer.Option(help="fp32 or fp16: what the backend runs and which default gate applies.")] = "fp32",
    report: Annotated[Optional[str], typer.Option(help="Also write reports into --out: md,html,json,junit (or all).")] = None,
    save_frames: Annotated[bool, typer.Option("--save-frames/--no-save-frames", help="Write every output frame as lossless PNG into frames/ (the video and the dump are written either way).")] = True,
) -> None:
    """Run the pipeline: audio + avatar -> frames, video, stage dump, and a comparison with the reference.

    No arguments: the built-in demo. Exit 0 when every gate passes, 1 when one fails, 2 on bad input.
    """
    from ..errors import GateFailure
    from .run import RunRequest, check_request, run as run_pipeline

    formats = None
    if report is not None:
        from ..reports import parse_formats

        formats = parse_formats(report)
    request = RunRequest(out, backend, dataset, audio, unet, audio_encoder, frames, start_frame, models=models, batch=batch,
                         dump=dump, dump_every=dump_every, compare=compare, gate=gate, precision=precision,
                         save_frames=save_frames)
    check_request(request)
    if request.is_demo:
        console.print("Built-in demo: avatar from scikit-image's astronaut, synthetic speech, fixture weights.")
    with FrameProgress() as progress, FrameProgress("reference (eager torch)") as reference_progress:
        result = run_pipeline(request, progress=progress.update, reference_progress=reference_progress.update)
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
        console.print(f"reports: {', '.join(str(p) for p in written)}", highlight=False)
    if result.comparison is not None and not result.comparison:
        raise GateFailure(
            f"gate failed: first divergent stage {result.comparison.first_divergent_stage}; see {result.out / 'summary.md'}"
        )


def _print_run_details(result) -> None:
    """The comparison table, then speed and per-step time."""
    from rich.table import Table

    if result.comparison is not None:
        from .compare_view import comparison_lines, comparison_table, print_table

        if result.reference_cached:
            console.print(f"reference: cached result from {result.reference}", highlight=False)
        else:
            console.print(f"reference: computed with eager torch, cached in {result.reference}", highlight=False)
        print_table(console, comparison_table(result.comparison))
        for line in comparison_lines(result.comparison):
            console.print(line, highlight=False)
    else:
        console.print("comparison: skipped (--no-compare)")
    console.print(f"speed: {result.fps:.2f} frames/s end to end, batch {result.batch} on {result.backend}", highlight=False)
    timing = Table()
    timing.add_column("step")
    timing.add_column("seconds", justify="right")
    for name, seconds in result.seconds.items():
        timing.add_row(name, f"{seconds:.2f}")
    console.print(timing)


class FrameProgress:
    """A rich progress bar that appears with the first frame, so input errors print alone."""

    def __init__(self, description: str = "frames"):
        self.description = description
        self._bar: Progress | None = None
        self._task = None

    def update(self, done: int, total: int) -> None:
        if self._bar is None:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=total)
        self._bar.update(self._task, completed=done, total=total)

    def __enter__(self) -> "FrameProgress":
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()


def _register_optional_commands() -> None:
    """Commands that live in their own modules register themselves here."""
    import importlib

    for module in ("export_cmd", "doctor", "compare_cmd", "bench_cmd", "report_cmd", "bundle_cmd"):
        try:
            importlib.import_module(f"{__package__}.{module}").register(app)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{module}":
                raise


_register_optional_commands()


def main() -> None:
    app()
