"""`parity weights`: listening test weights for a dataset and a speech clip (the mouth follows the speech)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .view import console


def register(app: typer.Typer) -> None:
    app.command(name="weights")(weights)


def weights(
    dataset: Annotated[Path, typer.Option(help="SyncTalk dataset folder (full_body_img/, landmarks/ with SyncTalk's 110 points) or a video with landmarks/ beside it.")],
    audio: Annotated[Path, typer.Option(help="Speech the mouth's opening is calibrated on: WAV (any rate, any channels) or anything ffmpeg decodes.")],
    out: Annotated[Path, typer.Option(help="Folder to write unet_328_ave.pth, audio_visual_encoder.pth and weights.json into (replaced whole).")],
) -> None:
    """Make test weights whose mouth opens and closes with the speech, for any dataset: weights for tests and demos,
    not a SyncTalk model. Audio-path mistakes (mel spectrogram, feature windows, shifts) then show in the frames.

    Made once per dataset and speech (about a minute on 2 cores) and cached; written as original-layout checkpoints.
    """
    from ..reference.listening_weights import LISTENING_WEIGHTS_LABEL, write_listening_weights

    written = write_listening_weights(dataset, audio, out, note=lambda text: console.print(f"[dim]{text}[/]", highlight=False, soft_wrap=True))
    how = f"made in {written.seconds:.0f} s" if written.made else "from the cache"
    console.print(f"[green]wrote[/] {written.unet} and {written.audio_encoder} ({how}): {LISTENING_WEIGHTS_LABEL}", highlight=False, soft_wrap=True)
    locator = written.about.get("mouth_locator", {})
    if locator:
        console.print(f"mouth locator: fit on {locator.get('templates')} templates, its openings overlap the lips' by {locator.get('overlap', 0):.2f} "
                      "(intersection over union)", highlight=False, soft_wrap=True)
    console.print(f"use them: parity run --dataset {dataset} --audio {audio} --unet {written.unet} --audio-encoder {written.audio_encoder}",
                  highlight=False, soft_wrap=True)
