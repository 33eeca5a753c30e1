"""Shared exports of the golden fixture weights: made once per cache by `export_models` (the U-Net takes ~15 s to
ONNX, ~20 s to Core ML), the same folders the backend tests load (`golden_export` in tests/conftest.py)."""

from __future__ import annotations

import pytest

from synctalk_parity.models import load_audio_encoder, load_unet

from ..golden_files import golden_weights


@pytest.fixture(scope="session")
def golden_models():
    weights = golden_weights()
    if weights is None:
        pytest.skip("golden folder absent (set SYNCTALK_PARITY_GOLDEN or place it at <repo>/../shared/golden)")
    unet_path, encoder_path = weights
    return load_unet(unet_path), load_audio_encoder(encoder_path)


@pytest.fixture(scope="session")
def onnx_fp32_dir(golden_export):
    return golden_export("onnx", "fp32")


@pytest.fixture(scope="session")
def onnx_fp16_dir(golden_export):
    return golden_export("onnx", "fp16")


@pytest.fixture(scope="session")
def golden_coreml(golden_export):
    """`golden_coreml(precision)`: the golden networks exported to Core ML once per cache (~20 s each)."""
    return lambda precision: golden_export("coreml", precision)
