"""TensorRT backend: says what is missing here, refuses folders without engines, splits batches over the profile maximum.

Running engines needs TensorRT and a CUDA GPU; those tests skip elsewhere with the reason.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from synctalk_parity.backends import create_backend
from synctalk_parity.backends.base import ModelSource
from synctalk_parity.backends.tensorrt import TensorRTBackend, engine_paths
from synctalk_parity.errors import ParityError
from synctalk_parity.export import tensorrt as trt_export
from synctalk_parity.export.manifest import ArtifactRecord, write_manifest

MISSING = trt_export.missing_runtime()
needs_tensorrt = pytest.mark.skipif(MISSING is not None, reason=f"needs TensorRT and a CUDA GPU: {MISSING}")


def test_available_names_what_is_missing():
    assert TensorRTBackend.available() == MISSING
    if MISSING is not None:
        assert "\n" not in MISSING and ("TensorRT" in MISSING or "GPU" in MISSING)


@pytest.mark.skipif(MISSING is None, reason="TensorRT and a GPU are present")
def test_load_fails_in_one_line_without_the_runtime(tmp_path):
    with pytest.raises(ParityError, match=re.escape(f"backend 'tensorrt' is not available: {MISSING}")):
        create_backend("tensorrt", ModelSource(export_dir=tmp_path)).load()


def test_an_unbuilt_folder_without_engines_says_to_run_the_build_script(tmp_path):
    _unbuilt_folder(tmp_path)
    with pytest.raises(ParityError, match="no engines yet; run build_engines.sh there"):
        engine_paths(tmp_path)


def test_engines_built_by_the_script_in_an_unbuilt_folder_are_found(tmp_path):
    _unbuilt_folder(tmp_path)
    for network in ("unet", "audio_encoder"):
        (tmp_path / f"{network}.engine").write_bytes(b"engine")
    assert engine_paths(tmp_path) == {n: tmp_path / f"{n}.engine" for n in ("unet", "audio_encoder")}


def test_an_export_of_another_format_is_refused(tmp_path):
    (tmp_path / "unet.onnx").write_bytes(b"onnx")
    write_manifest(tmp_path, "onnx", "fp32", [ArtifactRecord("unet", "unet.onnx", [], [], {})])
    with pytest.raises(ParityError, match="a onnx export, not tensorrt"):
        engine_paths(tmp_path)


def test_batches_over_the_profile_maximum_are_split():
    runner = object.__new__(trt_export.EngineRunner)  # no engine: the splitting only
    runner.inputs, runner.outputs, runner.max_batch = ["mel_window"], ["audio_feature"], 4
    sizes = []

    def run_chunk(feeds):
        sizes.append(len(feeds["mel_window"]))
        return {"audio_feature": feeds["mel_window"].reshape(len(feeds["mel_window"]), -1)[:, :2] * 2}

    runner._run_chunk = run_chunk
    windows = np.arange(10 * 1280, dtype=np.float32).reshape(10, 1, 80, 16)
    out = runner.run({"mel_window": windows})["audio_feature"]
    assert sizes == [4, 4, 2]
    np.testing.assert_array_equal(out, windows.reshape(10, -1)[:, :2] * 2)


@needs_tensorrt
@pytest.mark.slow
def test_engines_match_the_torch_backend(tmp_path):
    from synctalk_parity.export import export_models
    from synctalk_parity.models import fixture_audio_encoder, fixture_unet
    from synctalk_parity.models.specs import audio_encoder_spec, unet_spec

    folder = export_models("tensorrt", fixture_unet(), fixture_audio_encoder(), tmp_path, "fp32")
    (windows,) = audio_encoder_spec().example_inputs(batch=70)  # over the profile maximum of 64
    image, audio = unet_spec().example_inputs(batch=3)
    with create_backend("tensorrt", ModelSource(export_dir=folder)) as trt, create_backend("torch") as torch_backend:
        np.testing.assert_allclose(trt.encode_audio(windows.numpy()), torch_backend.encode_audio(windows.numpy()), atol=1e-3)
        np.testing.assert_allclose(trt.generate(image.numpy(), audio.numpy()), torch_backend.generate(image.numpy(), audio.numpy()), atol=1e-4)


def _unbuilt_folder(folder):
    records = []
    for network in ("unet", "audio_encoder"):
        (folder / f"{network}.onnx").write_bytes(b"onnx")
        records.append(ArtifactRecord(network, f"{network}.onnx", [], [], {}))
    write_manifest(folder, "tensorrt", "fp16", records)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "engines": "not built"}))
