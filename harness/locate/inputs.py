"""Real network inputs for `parity locate`: from a run's dump, or made from a dataset and audio (the demo's when
none is given) the way the reference pipeline makes them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn

from ...errors import ParityError
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
    import torch

    from ...reference import audio as audio_stages
    from ...reference import frames as frame_stages
    from ...reference.dataset import open_dataset

    pcm = audio_stages.load_audio(audio)
    windows = audio_stages.mel_windows(audio_stages.mel_spectrogram(pcm), str(audio))
    if network == "audio_encoder":
        windows = windows[:limit]
        return Samples([windows], f"{label}: {len(windows)} mel windows")
    with torch.inference_mode():
        features = audio_stages.pad_features(audio_stages.encode_windows(lambda w: encoder.eval()(torch.from_numpy(w)).numpy(), windows))
    clip = open_dataset(dataset, start_frame)
    count = min(limit or DEFAULT_UNET_FRAMES, len(features))
    images, unet_audio = [], []
    for index, template_index in enumerate(clip.schedule(count)):
        template = clip.templates[template_index]
        images.append(frame_stages.unet_input(frame_stages.crop_328(template.read_image(), template.box)))
        unet_audio.append(audio_stages.unet_audio_window(features, index))
    return Samples([np.stack(images).astype(np.float32), np.stack(unet_audio).astype(np.float32)], f"{label}: frames 0..{count - 1}")
