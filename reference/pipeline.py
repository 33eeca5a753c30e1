"""The reference pipeline: `inference_328.py` (mode ave) composed from the stage functions.

Eager PyTorch, fp32, one frame at a time: the yardstick every backend and port is measured
against, written for obviousness rather than speed.

    reference = ReferencePipeline(unet, audio_encoder)
    clip = reference.audio_stages(load_audio(wav))
    for stages in reference.frames(dataset, clip):      # FrameStages, in output order
        ...
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ..errors import ParityError
from ..models import AudioEncoder, Model
from . import audio, frames
from .dataset import Dataset
from .stages import ClipStages, FrameStages

REFERENCE_VERSION = "1"  # bump when reference behaviour changes (keys cached reference results)


class ReferencePipeline:
    def __init__(self, unet: Model, audio_encoder: AudioEncoder, pad_mode: str = audio.DEFAULT_PAD_MODE):
        if unet.mode != "ave":
            raise ParityError(f"the reference pipeline implements audio mode 'ave'; this U-Net is {unet.mode!r}")
        self.unet = unet.eval()
        self.audio_encoder = audio_encoder.eval()
        self.pad_mode = pad_mode

    def audio_stages(self, pcm: np.ndarray, source: str = "audio") -> ClipStages:
        """PCM to mel, windows and padded features (REFERENCE.md section A)."""
        mel = audio.mel_spectrogram(pcm, self.pad_mode)
        windows = audio.mel_windows(mel, source)
        features = audio.pad_features(audio.encode_windows(self.encode_audio, windows))
        return ClipStages(pcm=pcm, mel=mel, windows=windows, features=features)

    def encode_audio(self, windows: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.audio_encoder(torch.from_numpy(windows)).numpy()

    def generate(self, image: np.ndarray, unet_audio: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.unet(torch.from_numpy(image[None]), torch.from_numpy(unet_audio[None]))[0].numpy()

    def frames(self, dataset: Dataset, clip: ClipStages, count: int | None = None) -> Iterator[FrameStages]:
        """The stages of output frames 0..count-1 (all `N + 2` by default), one at a time."""
        total = clip.frame_count if count is None else min(count, clip.frame_count)
        for index, template_index in enumerate(dataset.schedule(total)):
            yield self.frame(dataset, clip.features, index, template_index)

    def frame(self, dataset: Dataset, features: np.ndarray, index: int, template_index: int) -> FrameStages:
        """Output frame `index` from template `template_index` (REFERENCE.md section B)."""
        template = dataset.templates[template_index]
        image = template.read_image()
        box = template.box
        crop = frames.crop_328(image, box)
        unet_input = frames.unet_input(crop)
        unet_audio = audio.unet_audio_window(features, index)
        unet_output = self.generate(unet_input, unet_audio)
        mouth = frames.mouth_from_output(unet_output)
        region = frames.pasted_region(crop, mouth, box)
        return FrameStages(
            index=index,
            template_index=template_index,
            crop_box=box,
            crop_328=crop,
            unet_audio=unet_audio,
            unet_input=unet_input,
            unet_output=unet_output,
            mouth=mouth,
            pasted_region=region,
            output=frames.paste(image, region, box),
        )
