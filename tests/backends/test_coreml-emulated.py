"""The coreml-emulated backend: the converted Core ML programs, executed op by op, through the backend interface.

It converts checkpoints itself into the export cache (keyed by the weights' sha256) or loads a
coreml export folder; its outputs match eager PyTorch and do not depend on the batch size.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("coremltools", reason="the coreml-emulated backend reads .mlpackage files with coremltools")

from synctalk_parity.backends import create_backend
from synctalk_parity.backends.base import ModelSource
from synctalk_parity.backends.coreml import LINUX_REASON
from synctalk_parity.backends.coreml_emulated import CoreMLEmulatedBackend
from synctalk_parity.backends.exports import cached_export
from synctalk_parity.errors import ParityError
from synctalk_parity.export.manifest import MANIFEST_NAME, SCHEMA_VERSION

pytestmark = pytest.mark.networks  # the full-size networks' fidelity: `make test` runs it, `make test-fast` does not


@pytest.fixture(scope="module")
def emulated(golden_source, onnx_cache):
    """The backend over the golden checkpoints: it converts them into the session's export cache."""
    with create_backend("coreml-emulated", golden_source) as backend:
        yield backend


def test_available_and_says_what_it_emulates():
    assert CoreMLEmulatedBackend.available() is None
    assert "--backend coreml-emulated" in LINUX_REASON
    note = create_backend("coreml-emulated").describe()["note"]
    assert "emulates" in note and "not Apple's Neural Engine or GPU kernels" in note


def test_matches_torch_and_batch_sizes_agree(emulated, golden_source, golden_batch):
    image, audio, mel = golden_batch["unet_input"][:4], golden_batch["audio_window"][:4], golden_batch["mel_windows"]
    batched = emulated.generate(image, audio)
    single = np.concatenate([emulated.generate(image[i : i + 1], audio[i : i + 1]) for i in range(4)])
    with create_backend("torch", golden_source, device="cpu") as reference:
        mouth_diff = float(np.abs(batched - reference.generate(image, audio)).max())
        feature_diff = float(np.abs(emulated.encode_audio(mel) - reference.encode_audio(mel)).max())
    print(f"coreml-emulated fp32 vs torch: U-Net {mouth_diff:.3g}, audio encoder {feature_diff:.3g}; batch 1 vs 4 {np.abs(batched - single).max():.3g}")
    assert np.abs(batched - single).max() < 1e-5
    assert mouth_diff < 1e-4 and feature_diff < 1e-4


def test_describe_names_the_program(emulated):
    info = emulated.describe()
    assert info["backend"] == "coreml-emulated" and info["precision"] == "fp32"
    assert "upsample_bilinear" in info["unet_ops"] and "squeeze" in info["audio_encoder_ops"]
    assert info["export_dir"].endswith("coreml-fp32")


def test_loads_an_export_folder_and_reuses_the_cache(emulated, golden_source, golden_batch):
    folder = cached_export(golden_source, "coreml")  # already converted by the fixture: no new conversion
    assert folder == emulated.export_dir
    written = (folder / MANIFEST_NAME).stat().st_mtime_ns
    mel = golden_batch["mel_windows"][:8]
    with create_backend("coreml-emulated", ModelSource(export_dir=folder)) as backend:
        assert np.array_equal(backend.encode_audio(mel), emulated.encode_audio(mel))
    assert (folder / MANIFEST_NAME).stat().st_mtime_ns == written


def test_refuses_an_export_of_another_format(tmp_path):
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"schema_version": SCHEMA_VERSION, "format": "onnx", "precision": "fp32", "artifacts": []}))
    with pytest.raises(ParityError, match="holds a 'onnx' export, not coreml"):
        create_backend("coreml-emulated", ModelSource(export_dir=tmp_path)).load()


@pytest.mark.slow
def test_parity_run_on_the_demo(tmp_path, onnx_cache, small_weight_args):  # plumbing: the small U-Net converts in seconds
    from synctalk_parity.cli import app

    result = CliRunner().invoke(
        app, ["run", "--backend", "coreml-emulated", "--frames", "2", "--no-compare", *small_weight_args, "--out", str(tmp_path / "run")],
        env={"COLUMNS": "120"}
    )
    assert result.exit_code == 0, result.output
    assert "coreml-emulated" in result.output
    assert (tmp_path / "run" / "result.json").is_file()
