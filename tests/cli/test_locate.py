"""`parity locate`: exit codes, the verdict line, the files it writes, and the keep-set `parity export` takes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from synctalk_parity.cli import app

ENV = {"COLUMNS": "160"}


pytestmark = pytest.mark.networks  # the full-size networks' fidelity: `make test` runs it, `make test-fast` does not


def _invoke(*args: str):
    return CliRunner().invoke(app, ["locate", *args], env=ENV)


@pytest.fixture(scope="module")
def golden_clip(golden, sanders):
    """The golden weights and the clip the golden windows come from."""
    return {"unet": golden / "weights" / "unet_328_ave.pth", "encoder": golden / "weights" / "audio_visual_encoder.pth",
            "dataset": sanders, "audio": golden / "talk_hb_10s.wav"}


def test_a_clean_fp32_conversion_passes_and_writes_its_result(golden_clip, tmp_path):
    result = _invoke("--network", "audio_encoder", "--audio-encoder", str(golden_clip["encoder"]), "--dataset", str(golden_clip["dataset"]),
                     "--audio", str(golden_clip["audio"]), "--frames", "8", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "PASS audio_encoder (onnxruntime, fp32, 8 samples): no layer adds more than its tolerance" in result.output
    document = json.loads((tmp_path / "locate.json").read_text())
    assert document["passed"] and document["first_introducing"] is None and len(document["layers"]) == 34
    page = (tmp_path / "locate.html").read_text()
    assert "<svg" in page and "audio_encoder.12.conv_block.0" in page


def test_the_whole_fp16_encoder_fails_and_gets_a_verified_keep_set_that_export_takes(golden_clip, tmp_path):
    out = tmp_path / "locate"
    result = _invoke("--network", "audio_encoder", "--precision", "fp16", "--keep-fp32", "none", "--audio-encoder", str(golden_clip["encoder"]),
                     "--dataset", str(golden_clip["dataset"]), "--audio", str(golden_clip["audio"]), "--frames", "32", "--out", str(out))
    assert result.exit_code == 1, result.output
    assert "no layer adds more than its tolerance" in result.output and "responsible: audio_encoder.0" in result.output
    keep = json.loads((out / "keep_fp32.json").read_text())
    assert keep["keep_fp32"]["audio_encoder"][0] == "audio_encoder.0"
    document = json.loads((out / "locate.json").read_text())
    assert document["advice"]["passed"] and document["advice"]["verification"]["passed"]
    assert f"--keep-fp32 {out / 'keep_fp32.json'}" in result.output.replace("\n", "")


@pytest.mark.parametrize("args, message", [
    (["--network", "decoder"], "--network 'decoder': use unet or audio_encoder"),
    (["--keep-fp32", "audio_encoder.0"], "--keep-fp32 applies to an fp16 conversion"),
    (["--dataset", "somewhere"], "pass both --dataset and --audio"),
    (["--frames", "0"], "--frames must be at least 1"),
])
def test_usage_errors_are_one_line_and_exit_2(args, message):
    result = _invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_a_tensorrt_export_is_refused_in_one_line(tmp_path):
    folder = tmp_path / "tensorrt-fp16"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"schema_version": 1, "format": "tensorrt", "precision": "fp16", "artifacts": []}))
    result = _invoke("--network", "unet", "--models", str(folder))
    assert result.exit_code == 2, result.output
    assert "TensorRT engines are not located: TensorRT does not run here" in result.output
