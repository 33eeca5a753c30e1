"""The reference pipeline: `inference_328.py` (mode ave) composed from the stage functions.

PyTorch, fp32, one frame at a time: the yardstick every backend and port is measured against, written
for obviousness rather than speed. `execution` says how PyTorch runs the U-Net (`reference/execution.py`):
`exact`, plain eager (the default here), or `fast`, the same module frozen channels-last (within 3.2e-6 of
eager; what verdicts use unless told `--reference-exact`).

    reference = ReferencePipeline(unet, audio_encoder)
    clip = reference.audio_stages(load_audio(wav))
    for stages in reference.frames(dataset, clip):      # FrameStages, in output order
        ...

A `Variant` holds every knob of the stage functions (`Variant()` is the original). An output frame is made
in two halves around the network, `frame_inputs` and `finish_frame`, so that pipelines that batch, cache or
stream the network calls (the production pipeline, the simulation of port mistakes) compose the very same
stages as the reference.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ParityError
from . import audio, frames
from .audio import AudioFrontEnd, AudioWindow, FeatureRows
from .dataset import Dataset
from .execution import Network, checked_execution, emulated_runner, unet_runner
from .frames import Box, Finish, FrameGeometry, NetworkInput
from .stages import ClipStages, FrameStages

if TYPE_CHECKING:
    from ..models import AudioEncoder, Model

REFERENCE_VERSION = "1"  # bump when reference behaviour changes (keys cached reference results)


@dataclass(frozen=True)
class Variant:
    """One pipeline: every knob of the reference's stages, by stage group. `Variant()` is the original.

    Each group is a frozen dataclass of its stage functions' knobs (`reference/audio.py`, `reference/frames.py`);
    a knob is named by its group and field, e.g. `finish.canvas`.
    """

    front_end: AudioFrontEnd = field(default_factory=AudioFrontEnd)  # PCM to padded features
    audio_window: AudioWindow = field(default_factory=AudioWindow)  # features to a frame's U-Net audio input
    geometry: FrameGeometry = field(default_factory=FrameGeometry)  # template, crop box, the 328 crop
    network_input: NetworkInput = field(default_factory=NetworkInput)  # the U-Net image input
    network: Network = field(default_factory=Network)  # how the U-Net runs: its precision
    finish: Finish = field(default_factory=Finish)  # U-Net output to the output frame

    def knobs(self) -> dict[str, Any]:
        """Every knob as `group.field` -> value."""
        return {f"{group.name}.{knob.name}": getattr(getattr(self, group.name), knob.name)
                for group in fields(self) for knob in fields(getattr(self, group.name))}

    def differences(self) -> dict[str, Any]:
        """The knobs that differ from the original, as `group.field` -> value."""
        original = Variant().knobs()
        return {name: value for name, value in self.knobs().items() if value != original[name]}

    def with_knobs(self, changes: dict[str, Any]) -> Variant:
        """A copy with the knobs named `group.field` set."""
        groups: dict[str, dict[str, Any]] = {}
        for name, value in changes.items():
            group, _, knob = name.partition(".")
            groups.setdefault(group, {})[knob] = value
        return replace(self, **{group: replace(getattr(self, group), **values) for group, values in groups.items()})


@dataclass
class FrameInputs:
    """An output frame up to the network: what it is made from, and the U-Net's two inputs."""

    index: int
    template_index: int
    image: np.ndarray  # the template as the frame is made from it (`frames.template_image`)
    crop_box: Box
    crop_328: np.ndarray
    unet_input: np.ndarray
    unet_audio: np.ndarray


def frame_inputs(dataset: Dataset, features: np.ndarray | FeatureRows, index: int, template_index: int, image: np.ndarray,
                 variant: Variant = Variant()) -> FrameInputs:
    """Output frame `index`, made from template `template_index` (its `image`), up to the network (REFERENCE.md B.3-B.8)."""
    box = dataset.frame_box(template_index, variant.geometry, index)
    crop = frames.crop_328(image, box, variant.geometry)
    return FrameInputs(index, template_index, image, box, crop, frames.unet_input(crop, variant.network_input),
                       audio.unet_audio_window(features, index, variant.audio_window))


def light_stages(dataset: Dataset, features: np.ndarray | FeatureRows, index: int, template_index: int,
                 variant: Variant = Variant()) -> dict[str, np.ndarray]:
    """The per-frame stages that need neither the template's image nor the network (`frame.template_index`,
    `frame.crop_box`, `frame.unet_audio`): the same functions as `frame_inputs`, without decoding a JPEG."""
    return {
        "frame.template_index": np.asarray(template_index, dtype=np.int64),
        "frame.crop_box": np.asarray(dataset.frame_box(template_index, variant.geometry, index), dtype=np.int64),
        "frame.unet_audio": audio.unet_audio_window(features, index, variant.audio_window),
    }


def finish_frame(inputs: FrameInputs, unet_output: np.ndarray, variant: Variant = Variant()) -> FrameStages:
    """The frame's stages from the network's output on (REFERENCE.md B.10-B.12)."""
    mouth = frames.mouth_from_output(unet_output, variant.finish)
    region = frames.pasted_region(inputs.crop_328, mouth, inputs.crop_box, variant.finish)
    return FrameStages(
        index=inputs.index,
        template_index=inputs.template_index,
        crop_box=inputs.crop_box,
        crop_328=inputs.crop_328,
        unet_audio=inputs.unet_audio,
        unet_input=inputs.unet_input,
        unet_output=unet_output,
        mouth=mouth,
        pasted_region=region,
        output=frames.paste(inputs.image, region, inputs.crop_box, variant.finish),
        template=inputs.image,
    )


class ReferencePipeline:
    def __init__(self, unet: Model, audio_encoder: AudioEncoder, variant: Variant = Variant(), execution: str = "exact"):
        if unet.mode != "ave":
            raise ParityError(f"the reference pipeline implements audio mode 'ave'; this U-Net is {unet.mode!r}")
        self.unet = unet.eval()
        self.audio_encoder = audio_encoder.eval()
        self.variant = variant
        self.execution = checked_execution(execution)
        precision = variant.network.precision
        self._run_unet = unet_runner(self.unet, execution) if precision == "fp32" else emulated_runner(self.unet, precision)

    def audio_stages(self, pcm: np.ndarray, source: str = "audio", mel: np.ndarray | None = None) -> ClipStages:
        """PCM to mel, windows and padded features (REFERENCE.md section A); `mel`: the mel spectrogram this front end
        already computed for this PCM (a cached one: `harness/pipeline/audio_cache.py`), else computed now."""
        front_end = self.variant.front_end
        if mel is None:
            mel = audio.mel_spectrogram(pcm, front_end)
        windows = audio.mel_windows(mel, source)
        features = audio.pad_features(audio.encode_windows(self.encode_audio, windows), front_end)
        return ClipStages(pcm=pcm, mel=mel, windows=windows, features=features)

    def encode_audio(self, windows: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.audio_encoder(torch.from_numpy(windows)).numpy()

    def generate(self, image: np.ndarray, unet_audio: np.ndarray) -> np.ndarray:
        return self._run_unet(image[None], unet_audio[None])[0]

    def frames(self, dataset: Dataset, clip: ClipStages, count: int | None = None) -> Iterator[FrameStages]:
        """The stages of output frames 0..count-1 (all `N + 2` by default), one at a time."""
        total = clip.frame_count if count is None else min(count, clip.frame_count)
        for index, template_index in enumerate(dataset.schedule(total, self.variant.geometry)):
            yield self.frame(dataset, clip.features, index, template_index)

    def frame(self, dataset: Dataset, features: np.ndarray, index: int, template_index: int) -> FrameStages:
        """Output frame `index` from template `template_index` (REFERENCE.md section B)."""
        image = frames.template_image(dataset.templates[template_index].read_image(), self.variant.geometry)
        inputs = frame_inputs(dataset, features, index, template_index, image, self.variant)
        return finish_frame(inputs, self.generate(inputs.unet_input, inputs.unet_audio), self.variant)
