"""The Core ML program emulator: the converted programs compute what PyTorch computes, and broken ones do not.

Each op's attributes are checked on small programs built with coremltools' MIL builder; the two
networks' real programs are checked on golden inputs (fp32 within 1e-4, fp16 within the fp16 gate);
programs altered through the MIL APIs (upsample mode flipped, one weight changed) must fail.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

ct = pytest.importorskip("coremltools", reason="Core ML emulation reads .mlpackage files with coremltools")

from coremltools.converters.mil import Builder as mb  # noqa: E402

from synctalk_parity.errors import ParityError  # noqa: E402
from synctalk_parity.export.coreml import load_program  # noqa: E402
from synctalk_parity.export.coreml_emulate import OPS, ProgramEmulator, emulate  # noqa: E402

from ..golden_files import golden_inputs  # noqa: E402

FP32_TOLERANCE, FP16_TOLERANCE = 1e-4, 1e-2
FRAMES, WINDOWS = 2, 32


pytestmark = pytest.mark.networks  # the full-size networks' fidelity: `make test` runs it, `make test-fast` does not


@pytest.fixture(scope="module")
def coreml_fp32(golden_coreml):
    return golden_coreml("fp32")


@pytest.fixture(scope="module")
def coreml_fp16(golden_coreml):
    return golden_coreml("fp16")


@pytest.fixture(scope="module")
def expected(golden_models):
    """Golden inputs and eager PyTorch outputs on them."""
    golden = golden_inputs()
    image, audio, mel = (np.array(golden[k][:n]) for k, n in (("unet_input", FRAMES), ("audio_window", FRAMES), ("mel_windows", WINDOWS)))
    unet, encoder = golden_models
    with torch.no_grad():
        mouth = unet.eval()(torch.from_numpy(image), torch.from_numpy(audio)).numpy()
        features = encoder.eval()(torch.from_numpy(mel)).numpy()
    return {"image": image, "audio": audio, "mel_window": mel, "mouth": mouth, "audio_feature": features}


def _unet_diff(package, expected) -> float:
    got = emulate(package, {"image": expected["image"], "audio": expected["audio"]})["mouth"]
    return float(np.abs(got - expected["mouth"]).max())


def _encoder_diff(package, expected) -> float:
    got = emulate(package, {"mel_window": expected["mel_window"]})["audio_feature"]
    return float(np.abs(got - expected["audio_feature"]).max())


def test_fp32_programs_match_pytorch(coreml_fp32, expected):
    unet, encoder = _unet_diff(coreml_fp32 / "unet.mlpackage", expected), _encoder_diff(coreml_fp32 / "audio_encoder.mlpackage", expected)
    print(f"fp32 emulated vs PyTorch: U-Net max |diff| {unet:.3g}, audio encoder {encoder:.3g}")
    assert unet <= FP32_TOLERANCE and encoder <= FP32_TOLERANCE


@pytest.mark.slow  # a second conversion (~20 s), as the fp16 export tests
def test_fp16_program_within_the_fp16_gate_and_less_exact(coreml_fp16, coreml_fp32, expected):
    unet16 = ProgramEmulator(coreml_fp16 / "unet.mlpackage")
    assert "fp16" in unet16.precisions and "cast" in unet16.op_types
    fp16, fp32 = _unet_diff(coreml_fp16 / "unet.mlpackage", expected), _unet_diff(coreml_fp32 / "unet.mlpackage", expected)
    encoder = _encoder_diff(coreml_fp16 / "audio_encoder.mlpackage", expected)
    print(f"U-Net emulated vs PyTorch: fp16 {fp16:.3g}, fp32 {fp32:.3g}; fp16 export's audio encoder (kept fp32) {encoder:.3g}")
    assert fp32 < fp16 <= FP16_TOLERANCE
    assert ProgramEmulator(coreml_fp16 / "audio_encoder.mlpackage").precisions == ["fp32"]  # kept fp32, see its manifest
    assert encoder <= FP32_TOLERANCE


def test_flipped_upsample_mode_fails(coreml_fp32, expected, tmp_path):
    def flip(function):
        op = next(o for o in function.operations if o.op_type == "upsample_bilinear")
        with function:
            op.set_inputs(align_corners=mb.const(val=not bool(op.inputs["align_corners"].val), before_op=op))

    altered = _altered(coreml_fp32 / "unet.mlpackage", flip, tmp_path)
    diff = _unet_diff(altered, expected)
    print(f"align_corners flipped in the first upsample: max |diff| {diff:.3g}")
    assert diff > FP32_TOLERANCE


def test_one_altered_weight_fails(coreml_fp32, expected, tmp_path):
    def alter(function):
        op = next(o for o in function.operations if o.op_type == "conv")
        weight = np.array(op.inputs["weight"].val)
        index = np.unravel_index(np.argmax(np.abs(weight)), weight.shape)
        weight[index] *= 0.9
        with function:
            op.set_inputs(weight=mb.const(val=weight, before_op=op))

    altered = _altered(coreml_fp32 / "unet.mlpackage", alter, tmp_path)
    diff = _unet_diff(altered, expected)
    print(f"one weight of the first conv changed by 10%: max |diff| {diff:.3g}")
    assert diff > FP32_TOLERANCE


def test_unknown_op_is_a_clear_error(tmp_path):
    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 3))])
    def program(x):
        return mb.tanh(x=mb.relu(x=x))

    assert "tanh" not in OPS
    package = _save(program, tmp_path / "tanh.mlpackage")
    with pytest.raises(ParityError, match=r"does not implement op 'tanh'"):
        ProgramEmulator(package)


def test_conv_attributes(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 9, 11)).astype(np.float32)
    weight = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(6).astype(np.float32)
    cases = {
        "custom": dict(pad_type="custom", pad=[1, 2, 0, 3], strides=[2, 1], dilations=[1, 2]),
        "same": dict(pad_type="same", strides=[2, 3], dilations=[1, 1]),
        "same_lower": dict(pad_type="same_lower", strides=[2, 2], dilations=[2, 1]),
        "valid": dict(pad_type="valid", strides=[1, 2], dilations=[1, 1]),
    }
    for name, attrs in cases.items():
        @mb.program(input_specs=[mb.TensorSpec(shape=x.shape)])
        def program(x_in):
            return mb.conv(x=x_in, weight=weight, bias=bias, groups=2, **attrs)  # noqa: B023 (traced now, in this iteration)

        got = emulate(_save(program, tmp_path / f"{name}.mlpackage"), {"x_in": x})
        want = _torch_conv(x, weight, bias, attrs)
        assert np.abs(next(iter(got.values())) - want).max() < 1e-5, name


def test_upsample_concat_squeeze_and_cast(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 2, 3, 5)).astype(np.float32)
    x[0, 0, 0, 0] = 40.0  # 40 + 65504 overflows fp16

    @mb.program(input_specs=[mb.TensorSpec(shape=x.shape)], opset_version=ct.target.iOS16)
    def program(x_in):
        corners = mb.upsample_bilinear(x=x_in, scale_factor_height=2.0, scale_factor_width=3.0, align_corners=True)
        half = mb.upsample_bilinear(x=x_in, scale_factor_height=2.0, scale_factor_width=3.0, align_corners=False, half_pixel_centers=True)
        both = mb.concat(values=[corners, half], axis=1, interleave=True)
        small = mb.cast(x=mb.squeeze(x=mb.concat(values=[x_in, x_in], axis=-1), axes=[0]), dtype="fp16")
        return both, mb.cast(x=mb.add(x=small, y=np.float16(65504.0)), dtype="fp32")

    got = list(emulate(_save(program, tmp_path / "ops.mlpackage", ct.precision.FLOAT32), {"x_in": x}).values())
    t = torch.from_numpy(x)
    corners = F.interpolate(t, scale_factor=(2, 3), mode="bilinear", align_corners=True)
    half = F.interpolate(t, scale_factor=(2, 3), mode="bilinear", align_corners=False)
    interleaved = torch.stack([corners, half], dim=2).flatten(1, 2).numpy()  # channels c0, h0, c1, h1
    assert got[0].shape == (1, 4, 6, 15) and np.abs(got[0] - interleaved).max() < 1e-5
    small = np.concatenate([x, x], axis=-1)[0].astype(np.float16)
    with np.errstate(over="ignore"):
        want = (small.astype(np.float32) + np.float32(65504)).astype(np.float16)  # fp16 storage: rounding, overflow to inf
    assert got[1].shape == (2, 3, 10)
    assert np.array_equal(got[1], want.astype(np.float32))
    assert np.isinf(got[1][0, 0, 0]) and np.isinf(got[1][0, 0, 5]) and np.isfinite(got[1][1]).all()


def _torch_conv(x, weight, bias, attrs) -> np.ndarray:
    """The expected conv, padding computed here independently of the emulator (MIL's definitions)."""
    t = torch.from_numpy(x)
    strides, dilations = attrs["strides"], attrs["dilations"]
    if attrs["pad_type"] == "custom":
        top, bottom, left, right = attrs["pad"]
    elif attrs["pad_type"] == "valid":
        top = bottom = left = right = 0
    else:
        totals = [max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0) for n, k, s, d in zip(x.shape[2:], weight.shape[2:], strides, dilations)]
        lower = attrs["pad_type"] == "same_lower"
        (top, bottom), (left, right) = [((t_ + 1) // 2, t_ // 2) if lower else (t_ // 2, (t_ + 1) // 2) for t_ in totals]
    t = F.pad(t, [left, right, top, bottom])
    return F.conv2d(t, torch.from_numpy(weight), torch.from_numpy(bias), stride=strides, dilation=dilations, groups=2).numpy()


def _altered(package, change, tmp_path):
    """A copy of `package` with `change(main function)` applied through the MIL APIs, saved and reloaded."""
    program = load_program(package)
    change(program.functions["main"])
    return _save(program, tmp_path / f"altered-{package.name}")


def _save(program, path, precision=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # flexible-shape warning for the loaded program's symbolic batch
        model = ct.convert(
            program,
            convert_to="mlprogram",
            minimum_deployment_target=ct.target.iOS16,
            compute_precision=precision or ct.precision.FLOAT32,
            pass_pipeline=ct.PassPipeline.EMPTY,
        )
    model.save(str(path))
    return path
