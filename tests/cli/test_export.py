"""`parity export`: the artifact table, "did you mean", precision errors, and `all` going on past a failed format."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from synctalk_parity.cli import app
from synctalk_parity.cli import export as export_cmd
from synctalk_parity.errors import ParityError
from synctalk_parity.export import FORMATS

ENV = {"COLUMNS": "120"}


def _invoke(*args: str):
    return CliRunner().invoke(app, ["export", *args], env=ENV)


@pytest.mark.slow
def test_onnx_export_with_the_demo_weights_by_default(tmp_path):
    result = _invoke("--format", "onnx", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "no --unet given: exporting the demo weights" in result.output
    assert "unet.onnx" in result.output and "audio_encoder.onnx" in result.output
    assert result.output.count("pass") == 2
    manifest = json.loads((tmp_path / "onnx-fp32" / "manifest.json").read_text())
    assert manifest["artifacts"][0]["sha256"][:12] in result.output


def test_mistyped_format_says_did_you_mean():
    result = _invoke("--format", "onxx")
    assert result.exit_code == 2
    assert "did you mean 'onnx'" in result.output


def test_unsupported_precision_names_the_supported_ones():
    result = _invoke("--format", "onnx", "--precision", "int8")
    assert result.exit_code == 2
    assert "supports precision fp32, fp16, not 'int8'" in result.output


def test_missing_checkpoint_is_one_line(tmp_path):
    result = _invoke("--unet", str(tmp_path / "nope.pth"))
    assert result.exit_code == 2
    assert "checkpoint not found" in result.output and "Traceback" not in result.output


def test_all_goes_on_past_a_failed_format_and_exits_1(tmp_path, monkeypatch):
    def fake_export_models(fmt, unet, audio_encoder, out, precision, check_inputs=None):
        assert check_inputs is not None  # the command gives the checks real inputs (the demo's)
        if fmt == "coreml":
            raise ParityError("Core ML export needs coremltools: pip install coremltools")
        if fmt == "tensorrt":
            raise ModuleNotFoundError("No module named 'tensorrt'")
        folder = out / f"{fmt}-{precision}"
        folder.mkdir(parents=True)
        record = {"network": "unet", "file": "unet.onnx", "sha256": "ab" * 32,
                  "check": {"max_abs_diff": 3e-5, "max_abs_diff_by_batch": {"1": 3e-5, "4": 3e-5}, "tolerance": 1e-4, "passed": True}}
        (folder / "manifest.json").write_text(json.dumps({"schema_version": 1, "format": fmt, "precision": precision, "artifacts": [record]}))
        return folder

    monkeypatch.setattr(export_cmd, "export_models", fake_export_models)
    result = _invoke("--format", "all", "--out", str(tmp_path))
    assert result.exit_code == 1
    assert "abababababab" in result.output and "pass" in result.output
    assert "coreml: Core ML export needs coremltools" in result.output
    assert "tensorrt: exporter not available here: No module named 'tensorrt'" in result.output
    assert f"2 of {len(FORMATS)} format(s) failed: coreml, tensorrt" in result.output


def test_keep_fp32_reaches_the_onnx_export_and_is_refused_where_it_does_not_apply(tmp_path, monkeypatch):
    received = {}

    def fake_export_models(fmt, unet, audio_encoder, out, precision, keep_fp32=None, check_inputs=None):
        received.update(fmt=fmt, precision=precision, keep_fp32=keep_fp32)
        raise ParityError("stop here")

    monkeypatch.setattr(export_cmd, "export_models", fake_export_models)
    result = _invoke("--format", "onnx", "--precision", "fp16", "--keep-fp32", "audio_encoder.0,audio_encoder.1", "--out", str(tmp_path))
    assert result.exit_code == 2 and "stop here" in result.output
    assert received == {"fmt": "onnx", "precision": "fp16", "keep_fp32": {"audio_encoder": ["audio_encoder.0", "audio_encoder.1"]}}
    result = _invoke("--format", "onnx", "--keep-fp32", "audio_encoder.0", "--out", str(tmp_path))
    assert result.exit_code == 2 and "--keep-fp32 applies to fp16 exports: add --precision fp16" in result.output
    result = _invoke("--format", "coreml", "--precision", "fp16", "--keep-fp32", "audio_encoder.0", "--out", str(tmp_path))
    assert result.exit_code == 2 and "--keep-fp32 is implemented for the onnx export, not coreml" in result.output
