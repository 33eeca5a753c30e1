"""The eager PyTorch backend: golden checkpoints or fixture weights, batch-independent results."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synctalk_parity.backends import create_backend
from synctalk_parity.backends.base import ModelSource
from synctalk_parity.errors import ParityError


@pytest.fixture(scope="module")
def torch_backend(golden_source):
    with create_backend("torch", golden_source, device="cpu") as backend:
        yield backend


def test_describe_names_device_and_weights(torch_backend, golden_source):
    info = torch_backend.describe()
    assert info["backend"] == "torch" and info["device"] == "cpu" and info["precision"] == "fp32"
    assert info["unet_weights"].startswith(str(golden_source.unet))


def test_batch_8_equals_batch_1_per_item(torch_backend, golden_batch):
    image, audio, mel = golden_batch["unet_input"], golden_batch["audio_window"], golden_batch["mel_windows"]
    mouths = torch_backend.generate(image, audio)
    features = torch_backend.encode_audio(mel)
    single_mouths = np.concatenate([torch_backend.generate(image[i : i + 1], audio[i : i + 1]) for i in range(8)])
    single_features = np.concatenate([torch_backend.encode_audio(mel[i : i + 1]) for i in range(8)])
    mouth_diff, feature_diff = np.abs(mouths - single_mouths).max(), np.abs(features - single_features).max()
    print(f"torch batch 8 vs 1: U-Net max|diff| {mouth_diff:.3g}, audio encoder {feature_diff:.3g}")
    assert mouth_diff < 5e-5 and feature_diff < 5e-5  # oneDNN picks kernels by batch size


def test_fixture_weights_when_no_checkpoint():
    with create_backend("torch", ModelSource(), device="cpu") as backend:
        assert backend.describe()["unet_weights"].startswith("fixture")
        assert backend.encode_audio(np.zeros((2, 1, 80, 16), np.float32)).shape == (2, 512)


def test_default_device_is_cpu_even_with_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU "present": the default must not consult it
    with create_backend("torch", ModelSource()) as backend:
        info = backend.describe()
    assert info["device"] == "cpu"
    assert info["torch"] == torch.__version__ and info["numpy"] == np.__version__


def test_cuda_without_a_gpu_is_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same on a GPU machine
    with pytest.raises(ParityError, match="sees no CUDA GPU; use device='cpu'") as err:
        create_backend("torch", ModelSource(), device="cuda").load()
    assert "\n" not in str(err.value)


def test_unknown_device_is_refused():
    with pytest.raises(ParityError, match="choose from cpu, cuda, cuda:N"):
        create_backend("torch", ModelSource(), device="gpu").load()


def test_fp16_needs_cuda():
    with pytest.raises(ParityError, match="fp16 only on CUDA"):  # the default device is the CPU, GPU or not
        create_backend("torch", ModelSource(precision="fp16")).load()


def test_export_folder_alone_is_refused(tmp_path):
    with pytest.raises(ParityError, match="holds no PyTorch weights"):
        create_backend("torch", ModelSource(export_dir=tmp_path), device="cpu").load()
