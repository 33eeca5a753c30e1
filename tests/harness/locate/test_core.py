"""parity locate's measurement: seeded faults inside exported networks are located at the right PyTorch module, a clean
export locates nothing, and the names are module paths."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from synctalk_parity.export.onnx import to_onnx
from synctalk_parity.harness.locate.core import LAYER_TOLERANCE, locate_onnx
from synctalk_parity.harness.locate.run import read_result, write_result
from synctalk_parity.harness.verdict.result import json_text
from synctalk_parity.models.specs import spec_for

pytestmark = pytest.mark.networks  # the full-size networks' fidelity: `make test` runs it, `make test-fast` does not


def test_a_clean_fp32_export_locates_nothing(networks, windows):
    encoder = networks[1]
    model, _ = to_onnx(encoder, spec_for(encoder), "fp32")
    result = locate_onnx(encoder, "audio_encoder.onnx", windows, "fp32", onnx_model=model, batch=16)
    assert result.passed and result.first_introducing is None
    assert len(result.layers) == sum(node.op_type not in ("Constant", "Cast") for node in model.graph.node) == 34
    assert [layer.name for layer in result.layers[:5]] == [
        "audio_encoder.0.conv_block.0", "audio_encoder.0.act", "audio_encoder.1.conv_block.0", "audio_encoder.1:Add", "audio_encoder.1.act"]
    assert result.layers[0].reference == "output of audio_encoder.0.conv_block.1 (BatchNorm2d)"  # BatchNorm folded into the conv
    assert result.layers[-1].name == "AudioEncoder:Squeeze" and result.layers[-1].reference == "the network output"
    assert max(layer.introduced_rel for layer in result.layers) < LAYER_TOLERANCE["fp32"] / 10
    assert min(layer.propagated_cosine for layer in result.layers) > 0.999999
    assert result.output_max_abs < 1e-4 and result.instrumented_output_diff < 1e-4


def test_one_perturbed_conv_in_the_onnx_file_is_located_at_its_module(networks, unet_fp32, frame, tmp_path):
    unet = networks[0]
    target = "/up3/conv/double_conv/double_conv.0/conv/conv.3/Conv"
    model = onnx.ModelProto()
    model.CopyFrom(unet_fp32)
    node = next(n for n in model.graph.node if n.name == target)
    weight = next(t for t in model.graph.initializer if t.name == node.input[1])
    values = numpy_helper.to_array(weight).copy()
    values.flat[::7] *= 1.05  # 5% on one weight in seven of one depthwise conv
    weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    path = tmp_path / "unet.onnx"
    onnx.save(model, path)

    result = locate_onnx(unet, path, frame, "fp32")
    first = result.first_introducing
    assert first is not None and first.name == "up3.conv.double_conv.0.conv.3", first
    assert first.introduced_rel > 100 * LAYER_TOLERANCE["fp32"]
    before = [layer for layer in result.layers if layer.index < first.index]
    after = [layer for layer in result.layers if layer.index > first.index]
    assert all(not layer.over for layer in before)
    # downstream layers inherit the error (large propagated) without introducing it
    assert max(layer.propagated_rel for layer in after) > LAYER_TOLERANCE["fp32"]
    assert not any(layer.over for layer in after)  # run on PyTorch's inputs, none of them adds error
    assert not result


def test_the_unet_layers_are_named_by_module_paths_with_calls(networks, unet_fp32, frame):
    result = locate_onnx(networks[0], "unet.onnx", frame, "fp32", onnx_model=unet_fp32)
    names = [layer.name for layer in result.layers]
    assert sum(layer.op == "Conv" for layer in result.layers) == 93
    assert "audio_model.relu" in names and "audio_model.relu#2" in names  # one ReLU module called twice
    assert {"up3:Concat", "Model:Concat", "Model:Sigmoid", "up3.up", "down1.maxpool_conv.0.double_conv.1:Add"} <= set(names)
    assert result.passed, [(layer.name, layer.introduced_rel) for layer in result.worst_introducing(3)]


def test_a_layer_forced_to_overflow_in_fp16_is_located(fragile_encoder, windows, tmp_path):
    model, _ = to_onnx(fragile_encoder, spec_for(fragile_encoder), "fp16")
    result = locate_onnx(fragile_encoder, "audio_encoder.onnx", windows, "fp16", onnx_model=model, batch=16)
    first = result.first_introducing
    assert first is not None and first.name == "audio_encoder.11.conv_block.0"
    assert first.nonfinite > 0 and first.introduced_rel == np.inf
    assert not result.output_passed
    # locate.json holds exactly this result: written by one process, read back the same (non-finite errors by name)
    path = write_result(result, tmp_path)
    document = json.loads(path.read_text())
    assert document["first_introducing"] == first.name and document["passed"] is False
    assert document["layers"][first.index]["introduced_rel"] == "Infinity" and document["layers"][first.index]["over"] is True
    read = read_result(path)
    assert json_text(read) == json_text(result) and type(read) is type(result) and read.first_introducing.name == first.name
