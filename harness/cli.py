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

app = typer.Typer(
    name="parity",
    help="SyncTalk_2D on every runtime, proven stage by stage against the PyTorch reference.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
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
@user_errors
def run(
    backend: Annotated[str, typer.Option(help="Runtime to run the networks on.")] = "torch",
    dataset: Annotated[Optional[Path], typer.Option(help="SyncTalk dataset folder (full_body_img/, landmarks/) or a video with landmarks/ beside it. Omit with --audio for the built-in demo.")] = None,
    audio: Annotated[Optional[Path], typer.Option(help="Speech to lip-sync: WAV (any rate, any channels) or anything ffmpeg decodes.")] = None,
    unet: Annotated[Optional[Path], typer.Option(help="U-Net checkpoint (original unet_328 state dict). Default: fixture weights.")] = None,
    audio_encoder: Annotated[Optional[Path], typer.Option("--audio-encoder", help="audio_visual_encoder.pth. Default: fixture weights.")] = None,
    frames: Annotated[Optional[int], typer.Option(help="Write only the first N output frames.")] = None,
    start_frame: Annotated[int, typer.Option("--start-frame", help="First template frame of the dataset to use.")] = 0,
    out: Annotated[Path, typer.Option(help="Output folder: frames/*.png, video.mp4, summary.json/.md.")] = Path("parity-out"),
) -> None:
    """Run the pipeline: audio + avatar -> frames, video and summary. No arguments: the built-in demo."""
    from .run import RunRequest, run as run_pipeline

    request = RunRequest(out, backend, dataset, audio, unet, audio_encoder, frames, start_frame)
    if request.is_demo:
        console.print("Built-in demo: avatar from scikit-image's astronaut, synthetic speech, fixture weights.")
    with FrameProgress() as progress:
        result = run_pipeline(request, progress=progress.update)
    console.print(
        f"[green]wrote[/] {result.frames_written} frames ({result.frames_written} of {result.frames_available}) "
        f"to {result.out / 'frames'}, video {result.out / result.video}, summary {result.out / 'summary.md'} "
        f"— {result.fps:.2f} frames/s on {result.backend}",
        highlight=False,
    )


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

    for module in ("export_cmd", "doctor"):
        try:
            importlib.import_module(f"{__package__}.{module}").register(app)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{module}":
                raise


_register_optional_commands()


def main() -> None:
    app()
