"""The golden fixture networks, their golden inputs, and in-memory ONNX conversions of them (made once per session)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from synctalk_parity.export.onnx import to_onnx
from synctalk_parity.harness.locate.core import Samples
from synctalk_parity.models import load_audio_encoder, load_unet
from synctalk_parity.models.specs import spec_for

from ...golden_files import golden_inputs, golden_weights


@pytest.fixture(scope="session")
def networks():
    weights = golden_weights()
    if weights is None:
        pytest.skip("golden folder absent (set SYNCTALK_PARITY_GOLDEN or place it at <repo>/../shared/golden)")
    return load_unet(weights[0]).eval(), load_audio_encoder(weights[1]).eval()


@pytest.fixture(scope="session")
def windows() -> Samples:
    """16 real mel windows (the golden clip's first)."""
    return Samples([np.array(golden_inputs()["mel_windows"][:16])], "golden")


@pytest.fixture(scope="session")
def frame() -> Samples:
    """One real U-Net input (the golden subset's first frame)."""
    inputs = golden_inputs()
    return Samples([np.array(inputs["unet_input"][:1]), np.array(inputs["audio_window"][:1])], "golden")


@pytest.fixture(scope="session")
def unet_fp32(networks):
    unet = networks[0]
    return to_onnx(unet, spec_for(unet), "fp32")[0]


@pytest.fixture(scope="session")
def fragile_encoder(networks):
    """The golden audio encoder made fp16-fragile without changing what it computes in fp32: block 11's BatchNorm
    scaled up 3e4x (its ReLU output, up to ~4.4, then overflows fp16's 65504) and block 12's conv weights scaled
    down as much (ReLU is positively homogeneous, and neither block has a residual)."""
    encoder = copy.deepcopy(networks[1])
    scale = 3e4
    with torch.no_grad():
        bn = encoder.audio_encoder[11].conv_block[1]
        bn.weight *= scale
        bn.bias *= scale
        encoder.audio_encoder[12].conv_block[0].weight /= scale
    return encoder.eval()
