"""Real network inputs for `parity locate`: from a run's dump, or made from a dataset and audio (the demo's when
none is given) the way the reference pipeline makes them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn

from ...errors import ParityError
from ..inputs import eager_encoder, network_inputs
from .core import Samples

DEFAULT_UNET_FRAMES = 4


def samples_from_dump(dump_path: Path, network: str, limit: int | None) -> Samples:
    """The inputs of `network` a run dumped: `audio.windows` for the audio encoder; `frame.unet_input` with
    `frame.unet_audio` of the frames holding both for the U-Net (heavy stages are dumped every K-th frame)."""
    from ..verdict.dump import Dump

    folder = Path(dump_path)
    if not (folder / "manifest.json").is_file() and (folder / "dump" / "manifest.json").is_file():
        folder = folder / "dump"
    dump = Dump.open(folder)
    if network == "audio_encoder":
        if "audio.windows" not in dump.stage_names:
            raise ParityError(f"{folder}: the dump has no audio.windows stage; run with --dump all (or pass --dataset/--audio)")
        windows = dump.clip("audio.windows")[:limit]
        return Samples([np.asarray(windows, dtype=np.float32)], f"dump {folder}: {len(windows)} mel windows")
    missing = [s for s in ("frame.unet_input", "frame.unet_audio") if s not in dump.stage_names]
    if missing:
        raise ParityError(f"{folder}: the dump has no {' or '.join(missing)} stage; run with --dump all (or pass --dataset/--audio)")
    frames = sorted(set(dump.frames("frame.unet_input")) & set(dump.frames("frame.unet_audio")))
    frames = frames[:limit or DEFAULT_UNET_FRAMES]
    if not frames:
        raise ParityError(f"{folder}: no frame holds both frame.unet_input and frame.unet_audio")
    images = np.stack([dump.frame("frame.unet_input", i) for i in frames]).astype(np.float32)
    audio = np.stack([dump.frame("frame.unet_audio", i) for i in frames]).astype(np.float32)
    return Samples([images, audio], f"dump {folder}: frames {', '.join(map(str, frames))}")


def samples_from_clip(dataset: Path, audio: Path, network: str, encoder: nn.Module, limit: int | None,
                      label: str, start_frame: int = 0) -> Samples:
    """The inputs of `network` for a dataset and audio clip, made as the reference pipeline makes them (the U-Net's
    audio windows from `encoder`'s features in eager PyTorch)."""
    from ...reference import audio as audio_stages

    if network == "audio_encoder":
        windows = audio_stages.mel_windows(audio_stages.mel_spectrogram(audio_stages.load_audio(audio)), str(audio))[:limit]
        return Samples([windows], f"{label}: {len(windows)} mel windows")
    images, unet_audio, _ = network_inputs(dataset, audio, eager_encoder(encoder), limit or DEFAULT_UNET_FRAMES, start_frame)
    return Samples([images, unet_audio], f"{label}: frames 0..{len(images) - 1}")
