"""The Core ML backend: says why it cannot run off macOS; on a Mac, predicts like PyTorch."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from synctalk_parity.backends import create_backend
from synctalk_parity.backends.base import ModelSource
from synctalk_parity.backends.coreml import CoreMLBackend
from synctalk_parity.errors import ParityError

on_mac = pytest.mark.skipif(sys.platform != "darwin", reason="Core ML prediction needs macOS")


@pytest.mark.skipif(sys.platform == "darwin", reason="Linux/Windows message")
def test_available_explains_macos_only():
    pytest.importorskip("coremltools")
    reason = CoreMLBackend.available()
    assert reason.startswith("Core ML prediction needs macOS")
    assert "--backend coreml-emulated" in reason and "\n" not in reason
    with pytest.raises(ParityError, match="not available: Core ML prediction needs macOS"):
        create_backend("coreml", ModelSource()).load()


def test_available_without_coremltools(monkeypatch):
    monkeypatch.setitem(sys.modules, "coremltools", None)  # makes `import coremltools` fail
    assert "pip install coremltools" in CoreMLBackend.available()


@pytest.fixture(scope="module")
def coreml_backend(golden_source, tmp_path_factory):
    from synctalk_parity.export import export_models
    from synctalk_parity.models import load_audio_encoder, load_unet

    from ..golden_files import golden_check_inputs

    models = load_unet(golden_source.unet), load_audio_encoder(golden_source.audio_encoder)
    folder = export_models("coreml", *models, tmp_path_factory.mktemp("coreml"), "fp32", check_inputs=golden_check_inputs)
    with create_backend("coreml", ModelSource(export_dir=folder), compute_units="cpu_only") as backend:
        yield backend


@on_mac
def test_predicts_like_torch(coreml_backend, golden_source, golden_batch):
    with create_backend("torch", golden_source, device="cpu") as reference:
        image, audio, mel = golden_batch["unet_input"], golden_batch["audio_window"], golden_batch["mel_windows"]
        mouth_diff = np.abs(coreml_backend.generate(image, audio) - reference.generate(image, audio)).max()
        feature_diff = np.abs(coreml_backend.encode_audio(mel) - reference.encode_audio(mel)).max()
    assert mouth_diff < 1e-3 and feature_diff < 1e-3, (mouth_diff, feature_diff)


@on_mac
def test_splits_batches_over_the_package_range(coreml_backend, golden_batch):
    mel = np.concatenate([golden_batch["mel_windows"]] * 9)  # 72 > max batch 64
    features = coreml_backend.encode_audio(mel)
    assert features.shape == (72, 512)
    assert np.allclose(features[:8], features[64:72], atol=1e-5)
    assert coreml_backend.describe()["compute_units"] == "cpu_only"
