"""Gates: built-in tolerances per precision, TOML overrides, and clear errors for mistyped files."""

from __future__ import annotations

import pytest

from synctalk_parity.errors import ParityError
from synctalk_parity.harness.verdict.gates import ONE_LEVEL, Tolerance, default_gate, load_gate
from synctalk_parity.reference.stages import STAGE_NAMES


def test_defaults_follow_the_issue():
    fp32, fp16 = load_gate(None), load_gate(None, "fp16")
    assert set(fp32.stages) == set(STAGE_NAMES)
    assert fp32.tolerance("frame.unet_output").max_abs == 1e-4 and fp16.tolerance("frame.unet_output").max_abs == 1e-2
    assert fp32.tolerance("audio.features").max_abs == 1e-4 and fp16.tolerance("audio.features").max_abs == 1e-2
    assert fp32.tolerance("frame.output") == Tolerance(min_identical=0.999, min_psnr=50.0)
    assert fp16.tolerance("frame.output") == Tolerance(min_psnr=40.0)
    assert fp16.tolerance("frame.crop_328") == fp32.tolerance("frame.crop_328")  # before any network: not loosened
    assert fp32.tolerance("frame.crop_box").max_abs == 0 and fp32.tolerance("frame.template_index").max_abs == 0
    assert fp32.tolerance("frame.unet_input").max_abs == ONE_LEVEL
    assert fp16.tolerance("frame.unet_audio") == fp16.tolerance("audio.features")
    assert fp32.as_dict() == {"precision": "fp32", "file": None, "provides": None}


def test_file_overrides_keep_other_keys(tmp_path):
    path = tmp_path / "gate.toml"
    path.write_text('precision = "fp16"\n[stages."frame.unet_output"]\nmax_abs = 2e-2\n[stages."frame.output"]\nmin_identical = 0.99\nmin_psnr = 38\n')
    gate = load_gate(path, "fp32")
    assert gate.precision == "fp16" and gate.file == str(path)
    assert gate.tolerance("frame.unet_output").max_abs == 2e-2
    assert gate.tolerance("frame.output") == Tolerance(min_identical=0.99, min_psnr=38.0)
    assert gate.tolerance("frame.mouth") == default_gate("fp16").tolerance("frame.mouth")
    path.write_text('[stages."frame.mouth"]\nmin_ssim = 0.98\n')
    gate = load_gate(path, "fp32")
    assert gate.precision == "fp32" and gate.tolerance("frame.mouth") == Tolerance(min_identical=0.999, min_psnr=50.0, min_ssim=0.98)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[stages."frame.outptu"]\nmin_psnr = 40\n', "unknown stage 'frame.outptu'; did you mean 'frame.output'"),
        ('[stages."frame.output"]\nmin_psnrr = 40\n', "stages.frame.output: unknown key 'min_psnrr'; did you mean 'min_psnr'"),
        ('precison = "fp16"\n', "unknown key 'precison'; did you mean 'precision'"),
        ('precision = "int8"\n', "unknown precision 'int8'"),
        ('[stages."frame.output"]\nmin_identical = 99.9\n', "min_identical is a share between 0 and 1"),
        ('[stages."frame.output"]\nmin_psnr = "high"\n', "must be a non-negative number"),
        ("[stages\n", "not a valid TOML gate file"),
    ],
)
def test_mistakes_in_the_file_are_named(tmp_path, text, message):
    path = tmp_path / "gate.toml"
    path.write_text(text)
    with pytest.raises(ParityError, match=message) as error:
        load_gate(path)
    assert str(path) in str(error.value)


def test_missing_file_and_precision_argument():
    with pytest.raises(ParityError, match="gate file not found"):
        load_gate("/nonexistent/gate.toml")
    with pytest.raises(ParityError, match="--precision: unknown precision 'fp8'"):
        load_gate(None, "fp8")
