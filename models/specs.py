"""Export specs, one per network: I/O names, shapes, dynamic batch axis, example inputs, tolerance.

Every exporter and backend reads names and shapes from here, so an ONNX file, a Core ML package,
a TensorRT engine and a Go or Swift port all agree on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .audio_encoder import FEATURE_SIZE, WINDOW_SHAPE
from .unet import AUDIO_INPUT_SHAPES, IMAGE_INPUT_SHAPE, OUTPUT_SHAPE


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]  # without the batch dimension
    dtype: str = "float32"
    description: str = ""

    def batched(self, batch: int) -> tuple[int, ...]:
        return (batch, *self.shape)


@dataclass(frozen=True)
class ExportSpec:
    """What an exported network looks like from the outside."""

    name: str  # artifact stem: "unet" or "audio_encoder"
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch: int = 16  # upper bound of batch profiles where a format needs one (TensorRT, Core ML)
    fp32_tolerance: float = 1e-4  # max |diff| vs eager PyTorch at export time
    fp16_tolerance: float = 1e-2
    preprocessing: dict = field(default_factory=dict)

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def example_inputs(self, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
        """Deterministic inputs in each input's natural range (images in [0, 1], mel in [-4, 4])."""
        rng = np.random.default_rng(seed)
        tensors = []
        for spec in self.inputs:
            low, high = (0.0, 1.0) if spec.name == "image" else (-4.0, 4.0) if spec.name == "mel_window" else (0.0, 6.0)
            data = rng.uniform(low, high, size=spec.batched(batch)).astype(np.float32)
            tensors.append(torch.from_numpy(data))
        return tuple(tensors)

    def tolerance(self, precision: str) -> float:
        return self.fp16_tolerance if precision == "fp16" else self.fp32_tolerance


IMAGE_PREPROCESSING = {
    "channel_order": "BGR",
    "layout": "NCHW",
    "scale": "uint8 / 255.0",
    "channels": "0-2 real crop[4:324, 4:324]; 3-5 the same with rows 5..309, cols 5..314 set to 0",
}


def unet_spec(mode: str = "ave") -> ExportSpec:
    return ExportSpec(
        name="unet",
        inputs=(
            TensorSpec("image", IMAGE_INPUT_SHAPE, description="real + masked crop, BGR, /255"),
            TensorSpec("audio", AUDIO_INPUT_SHAPES[mode], description="16 padded feature rows i-8..i+7"),
        ),
        outputs=(TensorSpec("mouth", OUTPUT_SHAPE, description="BGR in [0, 1] (sigmoid)"),),
        preprocessing={**IMAGE_PREPROCESSING, "audio_mode": mode},
    )


def audio_encoder_spec() -> ExportSpec:
    return ExportSpec(
        name="audio_encoder",
        inputs=(TensorSpec("mel_window", WINDOW_SHAPE, description="normalized log-mel, 80 bins x 16 frames"),),
        outputs=(TensorSpec("audio_feature", (FEATURE_SIZE,)),),
        max_batch=64,
        preprocessing={"mel": "see REFERENCE.md section A; values in [-4, 4]"},
    )


def spec_for(model: nn.Module) -> ExportSpec:
    """The export spec of a U-Net (`Model`) or `AudioEncoder` instance."""
    from .audio_encoder import AudioEncoder
    from .unet import Model

    if isinstance(model, Model):
        return unet_spec(model.mode)
    if isinstance(model, AudioEncoder):
        return audio_encoder_spec()
    raise TypeError(f"no export spec for {type(model).__name__}")
