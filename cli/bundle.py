"""`parity bundle`: write the port bundle (models, pipeline.json, golden dump, PORTING.md) for Go/Swift ports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .view import console


def register(app: typer.Typer) -> None:
    app.command(name="bundle")(bundle)


def bundle(
    out: Annotated[Path, typer.Option(help="Bundle folder to write (replaced if it holds an earlier bundle).")],
    dataset: Annotated[Path | None, typer.Option(help="SyncTalk dataset folder. Omitted with --audio: the built-in demo.")] = None,
    audio: Annotated[Path | None, typer.Option(help="Audio file (WAV or anything ffmpeg decodes).")] = None,
    unet: Annotated[Path | None, typer.Option(help="U-Net checkpoint (.pth). Omitted: the demo weights.")] = None,
    audio_encoder: Annotated[Path | None, typer.Option(help="Audio encoder checkpoint (.pth). Omitted: the demo weights.")] = None,
    frames: Annotated[int | None, typer.Option(help="Output frames in the golden dump.  [default: 8]", show_default=False)] = None,
) -> None:
    """Write everything a Go or Swift port needs to prove itself: models, constants, a golden dump, a guide."""
    from ..harness.bundle.build import DEFAULT_FRAMES, BundleRequest, folder_size, write_bundle

    request = BundleRequest(out=out, dataset=dataset, audio=audio, unet=unet, audio_encoder=audio_encoder,
                            frames=DEFAULT_FRAMES if frames is None else frames)
    folder = write_bundle(request, progress=lambda step: console.print(f"[dim]{step}...[/]", highlight=False))
    console.print(f"wrote {folder}", highlight=False, soft_wrap=True)
    for item in sorted(folder.iterdir()):
        size = folder_size(item) if item.is_dir() else item.stat().st_size
        console.print(f"  {item.name + ('/' if item.is_dir() else ''):<22} {size / 1e6:8.2f} MB", highlight=False)
    console.print(f"  {'total':<22} {folder_size(folder) / 1e6:8.2f} MB", highlight=False)
