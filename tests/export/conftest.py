"""Shared ONNX exports of the golden fixture weights (exported once per session: the U-Net takes ~15 s)."""

from __future__ import annotations

import pytest

from synctalk_parity.export import export_models
from synctalk_parity.models import load_audio_encoder, load_unet

from ..golden_files import golden_check_inputs, golden_weights


@pytest.fixture(scope="session")
def golden_models():
    weights = golden_weights()
    if weights is None:
        pytest.skip("golden folder absent (set SYNCTALK_PARITY_GOLDEN or place it at <repo>/../shared/golden)")
    unet_path, encoder_path = weights
    return load_unet(unet_path), load_audio_encoder(encoder_path)


@pytest.fixture(scope="session")
def onnx_fp32_dir(golden_models, tmp_path_factory):
    return export_models("onnx", *golden_models, tmp_path_factory.mktemp("exports"), "fp32", check_inputs=golden_check_inputs)


@pytest.fixture(scope="session")
def onnx_fp16_dir(golden_models, tmp_path_factory):
    return export_models("onnx", *golden_models, tmp_path_factory.mktemp("exports"), "fp16", check_inputs=golden_check_inputs)


@pytest.fixture(scope="session")
def golden_coreml(golden_models, tmp_path_factory):
    """`golden_coreml(precision)`: the golden networks exported to Core ML once per session (~20 s each)."""
    folders = {}

    def export(precision: str):
        if precision not in folders:
            folders[precision] = export_models("coreml", *golden_models, tmp_path_factory.mktemp("coreml"), precision, check_inputs=golden_check_inputs)
        return folders[precision]

    return export
