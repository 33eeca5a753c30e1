"""What the export-time checks feed both networks: real inputs the caller gives, else the spec's example inputs.

    check = CheckInputs("demo", images, unet_audio, mel_windows)   # at least 4 of each (batches 1 and 4)
    export_models("onnx", unet, encoder, out, "fp32", check_inputs=lambda encoder: check)
    source, arrays = inputs_for(spec, check)                      # ("demo", [images, audio]) for the U-Net

The export knows no dataset or audio file: the caller makes real inputs (the command layer and the harness give
the built-in demo's, `harness.inputs.demo_check_inputs`; tests give the golden clip's). Without them a check
runs on `spec.example_inputs` (uniform in each input's range), and the manifest says "example".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from torch import nn

from ..errors import ParityError
from ..models.specs import ExportSpec

CHECK_BATCHES = (1, 4)
EXAMPLE = "example"


@dataclass(frozen=True)
class CheckInputs:
    """Real inputs of both networks: U-Net images `(N, 6, 320, 320)` and audio `(N, 32, 16, 16)` (ave), mel windows
    `(M, 1, 80, 16)`; `source` names where they came from ("demo", "golden", ...) in the manifest."""

    source: str
    unet_image: np.ndarray
    unet_audio: np.ndarray
    mel_windows: np.ndarray


# given the audio encoder being exported (the U-Net's audio windows are its features), the check inputs
CheckInputsMaker = Callable[[nn.Module], CheckInputs]


def inputs_for(spec: ExportSpec, given: CheckInputs | None, batch: int = max(CHECK_BATCHES)) -> tuple[str, list[np.ndarray]]:
    """(source, `batch` rows of each input of `spec`): the given inputs where they fit the spec, else its example inputs."""
    if given is not None:
        arrays = [given.unet_image, given.unet_audio] if spec.name == "unet" else [given.mel_windows]
        shapes_fit = all(tuple(a.shape[1:]) == tuple(i.shape) for a, i in zip(arrays, spec.inputs))
        if shapes_fit:  # a U-Net of another audio branch takes other audio shapes: its example inputs then
            if any(len(a) < batch for a in arrays):
                raise ParityError(f"check inputs from {given.source}: {min(len(a) for a in arrays)} rows for {spec.name}, the check needs {batch}")
            return given.source, [np.ascontiguousarray(a[:batch], dtype=np.float32) for a in arrays]
    return EXAMPLE, [t.numpy() for t in spec.example_inputs(batch=batch)]
