"""The keep-fp32 search: a seeded fp16-fragile layer ends up in the keep-set; the real fp16 audio encoder gets a small
keep-set that passes its fp16 gate at batch 1 and 4 when exported."""

from __future__ import annotations

import json

import pytest

from synctalk_parity.export.keep_fp32 import parse_keep_fp32
from synctalk_parity.export.onnx import to_onnx
from synctalk_parity.harness.locate.advice import keep_fp32_search, write_keep_file
from synctalk_parity.harness.locate.core import Samples, locate_onnx
from synctalk_parity.models.specs import spec_for

from ...golden_files import golden_check_inputs, golden_inputs

pytestmark = pytest.mark.networks  # the full-size networks' fidelity: `make test` runs it, `make test-fast` does not


def test_the_keep_set_for_a_seeded_fp16_fragile_layer_contains_it(fragile_encoder, windows, tmp_path):
    model, _ = to_onnx(fragile_encoder, spec_for(fragile_encoder), "fp16")
    located = locate_onnx(fragile_encoder, "audio_encoder.onnx", windows, "fp16", onnx_model=model, batch=16)
    advice = keep_fp32_search(fragile_encoder, windows.arrays, located, verify=True, check=golden_check_inputs())
    assert advice.baseline_max_abs > 100 * advice.tolerance  # the whole network in fp16 overflows
    assert advice.passed and advice.max_abs <= advice.tolerance
    assert "audio_encoder.11" in advice.keep_fp32
    assert advice.verification["passed"] and set(advice.verification["max_abs_diff_by_batch"]) == {"1", "4"}
    keep = write_keep_file(tmp_path / "keep_fp32.json", advice, located)
    assert parse_keep_fp32(str(keep)) == {"audio_encoder": advice.keep_fp32}
    assert json.loads(keep.read_text())["baseline_max_abs"] is not None


@pytest.mark.slow
def test_the_fp16_audio_encoder_passes_at_batch_1_and_4_with_the_advised_keep_set(networks):
    encoder = networks[1]
    samples = Samples([golden_inputs()["mel_windows"]], "golden: all 247 windows")
    model, _ = to_onnx(encoder, spec_for(encoder), "fp16")  # the whole encoder fp16 (nothing kept)
    located = locate_onnx(encoder, "audio_encoder.onnx", samples, "fp16", onnx_model=model, batch=16)
    assert not located.output_passed and located.first_introducing is None  # accumulated rounding, no faulty layer
    advice = keep_fp32_search(encoder, samples.arrays, located, check=golden_check_inputs())
    print(advice)
    assert advice.passed and advice.baseline_max_abs > 1e-2
    assert len(advice.keep_fp32) <= 3
    assert advice.verification["passed"]
    assert max(advice.verification["max_abs_diff_by_batch"].values()) <= 1e-2
