"""The eager PyTorch backend: golden checkpoints or fixture weights, batch-independent results."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synctalk_parity.backends import create_backend
from synctalk_parity.backends.base import ModelSource
from synctalk_parity.errors import ParityError

pytestmark = pytest.mark.networks  # the full-size networks' fidelity: `make test` runs it, `make test-fast` does not


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


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch sees none here)")


@pytest.fixture(scope="module")
def demo_network_inputs():
    """Demo weights (trained-like: a face, so precision shows) with real demo inputs: U-Net inputs, their audio
    windows, and the demo clip's mel windows."""
    from synctalk_parity.cache import cache_folder
    from synctalk_parity.reference import audio as A
    from synctalk_parity.reference.demo import make_demo
    from synctalk_parity.reference.demo_weights import demo_inputs, demo_weights

    unet, encoder = demo_weights()
    images, unet_audio = demo_inputs()
    windows = A.mel_windows(A.mel_spectrogram(A.load_audio(make_demo(cache_folder("demo")).audio_path)))
    return ModelSource(unet=unet, audio_encoder=encoder), images, unet_audio, windows[:32]


@needs_cuda
@pytest.mark.slow
def test_cuda_fp32_is_ieee_fp32_within_the_fp32_gate(demo_network_inputs):
    """cuDNN runs fp32 convolutions in TF32 unless told not to; the backend must run what the fp32 gate judges."""
    source, images, unet_audio, windows = demo_network_inputs
    with create_backend("torch", source, device="cpu") as cpu:
        mouths, features = cpu.generate(images, unet_audio), cpu.encode_audio(windows)
    with create_backend("torch", source, device="cuda") as gpu:
        assert gpu.describe()["tf32"] == "off"
        gpu_mouths, gpu_features = gpu.generate(images, unet_audio), gpu.encode_audio(windows)
    mouth_diff, feature_diff = np.abs(gpu_mouths - mouths).max(), np.abs(gpu_features - features).max()
    print(f"torch CUDA fp32 vs CPU: U-Net max|diff| {mouth_diff:.3g}, audio encoder {feature_diff:.3g}")
    assert mouth_diff < 1e-4 and feature_diff < 1e-4  # the fp32 gate of the network outputs


@needs_cuda
@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="known miss, measured on an H200 (torch 2.11, cuDNN 9.19): the fp16 U-Net (BatchNorm folded) "
                   "is off by 0.0112 on these inputs (0.0139 unfolded), over the 1e-2 fp16 gate; a keep-fp32 set is not found yet")
def test_cuda_fp16_within_the_fp16_gate(demo_network_inputs):
    source, images, unet_audio, _ = demo_network_inputs
    with create_backend("torch", source, device="cpu") as cpu:
        mouths = cpu.generate(images, unet_audio)
    half = ModelSource(unet=source.unet, audio_encoder=source.audio_encoder, precision="fp16")
    with create_backend("torch", half, device="cuda") as gpu:
        gpu_mouths = gpu.generate(images, unet_audio)
    diff = np.abs(gpu_mouths - mouths).max()
    print(f"torch CUDA fp16 vs CPU fp32: U-Net max|diff| {diff:.3g}")
    assert np.isfinite(gpu_mouths).all() and diff < 1e-2  # the fp16 gate


def test_fold_batchnorm_keeps_the_networks_outputs(golden_source, golden_batch):
    """fp16 runs the networks with BatchNorm folded into the convs: in fp32 the folded networks equal the originals
    within the fp32 gate, and no BatchNorm is left."""
    from synctalk_parity.backends.torch import fold_batchnorm, source_models

    unet, encoder, _ = source_models(golden_source)
    image, audio, mel = (torch.from_numpy(golden_batch[k].copy()) for k in ("unet_input", "audio_window", "mel_windows"))
    folded_unet, folded_encoder = fold_batchnorm(unet), fold_batchnorm(encoder)
    for network in (folded_unet, folded_encoder):
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in network.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in unet.modules())  # a copy: the original keeps its BatchNorms
    with torch.inference_mode():
        mouth_diff = (folded_unet(image, audio) - unet(image, audio)).abs().max().item()
        feature_diff = (folded_encoder(mel) - encoder(mel)).abs().max().item()
    assert mouth_diff < 1e-4 and feature_diff < 1e-4
