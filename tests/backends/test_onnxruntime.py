"""The ONNX Runtime backend: agrees with eager PyTorch through the interface, caches its exports, checks providers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from synctalk_parity.backends import create_backend
from synctalk_parity.backends.base import ModelSource
from synctalk_parity.backends.onnxruntime import check_session_providers, create_session
from synctalk_parity.errors import ParityError

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")


pytestmark = pytest.mark.networks  # the full-size networks' fidelity: `make test` runs it, `make test-fast` does not


@pytest.fixture(scope="module")
def ort_backend(golden_onnx_dir):
    with create_backend("onnxruntime", ModelSource(export_dir=golden_onnx_dir), provider="cpu") as backend:
        yield backend


def test_describe_reports_the_provider_used(ort_backend):
    info = ort_backend.describe()
    assert info["provider"] == "CPUExecutionProvider" and info["precision"] == "fp32"


def test_describe_records_provider_asked_and_used_and_versions(ort_backend, golden_onnx_dir):
    import onnxruntime as ort

    info = ort_backend.describe()
    assert info["backend"] == "onnxruntime"
    assert info["provider_requested"] == info["provider"] == "CPUExecutionProvider"
    assert info["providers"] == "CPUExecutionProvider"  # the session's whole list: nothing else registered
    assert info["onnxruntime"] == ort.__version__ and info["numpy"] == np.__version__
    assert info["export_dir"] == str(golden_onnx_dir)


def test_provider_check_refuses_a_silent_cpu_fallback():
    with pytest.raises(ParityError, match=r"asked for CUDAExecutionProvider but the unet session runs on CPUExecutionProvider .*--provider cpu") as err:
        check_session_providers("CUDAExecutionProvider", ["CPUExecutionProvider"], "unet")
    assert "\n" not in str(err.value) and "CUDA/cuDNN" in str(err.value)
    with pytest.raises(ParityError, match="asked for TensorrtExecutionProvider but the audio_encoder session runs on CUDAExecutionProvider"):
        check_session_providers("TensorrtExecutionProvider", ["CUDAExecutionProvider", "CPUExecutionProvider"], "audio_encoder")
    with pytest.raises(ParityError, match="runs on no execution provider"):
        check_session_providers("CPUExecutionProvider", [], "unet")


def test_provider_check_accepts_the_provider_asked_for():
    check_session_providers("CUDAExecutionProvider", ["CUDAExecutionProvider", "CPUExecutionProvider"], "unet")
    check_session_providers("CPUExecutionProvider", ["CPUExecutionProvider"], "audio_encoder")


def test_agrees_with_torch_on_golden_inputs(ort_backend, golden_source, golden_batch):
    image, audio, mel = golden_batch["unet_input"], golden_batch["audio_window"], golden_batch["mel_windows"]
    with create_backend("torch", golden_source, device="cpu") as torch_backend:
        mouths_torch, features_torch = torch_backend.generate(image, audio), torch_backend.encode_audio(mel)
    mouth_diff = np.abs(ort_backend.generate(image, audio) - mouths_torch).max()
    feature_diff = np.abs(ort_backend.encode_audio(mel) - features_torch).max()
    print(f"onnxruntime vs torch (batch 8): U-Net max|diff| {mouth_diff:.3g}, audio encoder {feature_diff:.3g}")
    assert mouth_diff < 1e-4 and feature_diff < 1e-4


def test_batch_8_equals_batch_1_per_item(ort_backend, golden_batch):
    image, audio, mel = golden_batch["unet_input"], golden_batch["audio_window"], golden_batch["mel_windows"]
    mouths = ort_backend.generate(image, audio)
    single = np.concatenate([ort_backend.generate(image[i : i + 1], audio[i : i + 1]) for i in range(8)])
    features = ort_backend.encode_audio(mel)
    single_features = np.concatenate([ort_backend.encode_audio(mel[i : i + 1]) for i in range(8)])
    mouth_diff, feature_diff = np.abs(mouths - single).max(), np.abs(features - single_features).max()
    print(f"onnxruntime batch 8 vs 1: U-Net max|diff| {mouth_diff:.3g}, audio encoder {feature_diff:.3g}")
    assert mouth_diff < 1e-5 and feature_diff < 1e-5


def test_checkpoints_reuse_the_cached_export(golden_source, golden_onnx_dir, onnx_cache):
    """A backend given checkpoints runs the export the cache holds for them (golden_onnx_dir made sure there is one)."""
    cached = sorted((onnx_cache / "exports").iterdir())  # other backends' tests may share this cache
    with create_backend("onnxruntime", golden_source) as backend:
        used = Path(backend.describe()["export_dir"])
    assert used.parent in cached  # an entry that was there before
    if golden_onnx_dir.is_relative_to(onnx_cache):  # else a command checked the session's entry on the example inputs first
        assert used == golden_onnx_dir  # (golden_export then made the golden-checked one in a cache of its own)
    assert sorted((onnx_cache / "exports").iterdir()) == cached  # nothing exported again


def test_off_the_cpu_a_node_the_provider_cannot_run_fails_the_load(golden_onnx_dir):
    """Real ORT, no GPU needed: AzureExecutionProvider (in the stock CPU wheel) runs no graph node, so every node
    would fall back to the CPU; with the fallback disabled the session must not be created."""
    import onnxruntime as ort

    from synctalk_parity.export.manifest import artifact_path

    if "AzureExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime build has no AzureExecutionProvider to stand for a provider that runs no node")
    with pytest.raises(ParityError, match="audio_encoder network .* does not load on AzureExecutionProvider: .*fallback to CPU EP") as err:
        create_session(artifact_path(golden_onnx_dir, "audio_encoder"), "audio_encoder", "AzureExecutionProvider")
    assert "\n" not in str(err.value) and "--provider cpu" in str(err.value)


def test_missing_provider_names_the_available_ones(golden_onnx_dir):
    import onnxruntime as ort

    missing = next((p for p, full in [("tensorrt", "TensorrtExecutionProvider"), ("coreml", "CoreMLExecutionProvider"), ("cuda", "CUDAExecutionProvider")] if full not in ort.get_available_providers()), None)
    if missing is None:
        pytest.skip("every execution provider is available here")
    with pytest.raises(ParityError, match="available: .*CPUExecutionProvider") as err:
        create_backend("onnxruntime", ModelSource(export_dir=golden_onnx_dir), provider=missing).load()
    assert "\n" not in str(err.value)


def test_unknown_provider_is_refused(golden_onnx_dir):
    with pytest.raises(ParityError, match="choose from cpu, cuda, tensorrt, coreml"):
        create_backend("onnxruntime", ModelSource(export_dir=golden_onnx_dir), provider="gpu").load()


def test_changed_artifact_is_refused(golden_onnx_dir, tmp_path):
    import shutil

    copy = tmp_path / "onnx-fp32"
    shutil.copytree(golden_onnx_dir, copy)
    with open(copy / "audio_encoder.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ParityError, match="sha256 differs"):
        create_backend("onnxruntime", ModelSource(export_dir=copy)).load()


# ----- streams: concurrent U-Net calls on the CPU (the default, with and without a calibration: test_calibration.py) ---


@pytest.mark.parametrize(("options", "streams"), [({"streams": "1"}, 1), ({"streams": "3"}, 3), ({"threads": "2"}, 1)])
def test_streams_follow_the_options(golden_onnx_dir, options, streams):
    """`streams` asked for is what runs; `threads` alone keeps one call at a time on that many intra-op threads."""
    from synctalk_parity.backends.onnxruntime import cpu_count

    with create_backend("onnxruntime", ModelSource(export_dir=golden_onnx_dir), **options) as backend:
        assert backend.streams() == streams and backend.describe()["streams"] == str(streams)
        threads = backend.sessions["unet"].get_session_options().intra_op_num_threads
        # each stream on its share of the CPUs; one stream: the threads asked for, else ORT's default (0)
        assert threads == (max(1, cpu_count() // streams) if streams > 1 else int(options.get("threads", 0)))


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_bad_streams_are_refused_in_one_line(golden_onnx_dir, value):
    with pytest.raises(ParityError, match="--streams must be a whole number of at least 1") as err:
        create_backend("onnxruntime", ModelSource(export_dir=golden_onnx_dir), streams=value).load()
    assert "\n" not in str(err.value)


def test_concurrent_calls_on_one_session_give_each_caller_its_own_frames(golden_onnx_dir, golden_batch):
    """Two threads calling the single-threaded U-Net session at once get the results of their own inputs, equal to
    one call at a time on the default pool (bit for bit: the per-element sums do not depend on the thread count)."""
    from concurrent.futures import ThreadPoolExecutor

    image, audio = golden_batch["unet_input"], golden_batch["audio_window"]
    with create_backend("onnxruntime", ModelSource(export_dir=golden_onnx_dir), streams="1") as backend:
        expected = [backend.generate(image[i : i + 1], audio[i : i + 1]) for i in range(8)]
    with create_backend("onnxruntime", ModelSource(export_dir=golden_onnx_dir), streams="2") as backend, ThreadPoolExecutor(2) as pool:
        got = list(pool.map(lambda i: backend.generate(image[i : i + 1], audio[i : i + 1]), range(8)))
    for i in range(8):
        assert np.array_equal(got[i], expected[i]), f"item {i}"
