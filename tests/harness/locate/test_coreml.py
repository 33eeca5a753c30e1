"""parity locate on Core ML programs (coreml-emulated): a clean fp32 program locates nothing; one conv's padding changed
inside a saved .mlpackage is located at that conv's PyTorch module."""

from __future__ import annotations

import pytest

from synctalk_parity.harness.locate.core import LAYER_TOLERANCE

ct = pytest.importorskip("coremltools")

from synctalk_parity.export.coreml import convert, import_coremltools  # noqa: E402
from synctalk_parity.harness.locate.coreml import locate_coreml  # noqa: E402
from synctalk_parity.models.specs import spec_for  # noqa: E402

pytestmark = pytest.mark.networks  # the full-size networks' fidelity: `make test` runs it, `make test-fast` does not


@pytest.fixture(scope="module")
def encoder_program(networks, tmp_path_factory):
    encoder = networks[1]
    path = tmp_path_factory.mktemp("coreml") / "audio_encoder.mlpackage"
    convert(encoder, spec_for(encoder), "fp32").save(str(path))
    return path


def test_a_clean_core_ml_program_locates_nothing(networks, encoder_program, windows):
    result = locate_coreml(networks[1], encoder_program, windows, "fp32", batch=16)
    assert result.passed, [(layer.name, layer.introduced_rel) for layer in result.worst_introducing(3)]
    assert result.backend == "coreml-emulated"
    names = [layer.name for layer in result.layers]
    assert names[:4] == ["audio_encoder.0.conv_block.0", "audio_encoder.0.act", "audio_encoder.1.conv_block.0", "audio_encoder.1:add"]
    assert result.layers[0].reference.startswith("output of audio_encoder.0.conv_block.1 (BatchNorm2d, folded into the conv")


def test_one_changed_op_attribute_in_a_core_ml_program_is_located(networks, encoder_program, windows, tmp_path):
    coremltools = import_coremltools()
    model = coremltools.models.MLModel(str(encoder_program), skip_model_load=True)
    spec = model.get_spec()
    function = spec.mlProgram.functions["main"]
    block = function.block_specializations[function.opset]
    conv = next(op for op in block.operations if op.type == "conv" and op.outputs[0].name.startswith("_native_batch_norm_legit_no_training_6"))
    pad_name = conv.inputs["pad"].arguments[0].name
    pad = next(op for op in block.operations if op.type == "const" and op.outputs[0].name == pad_name)
    values = pad.attributes["val"].immediateValue.tensor.ints.values
    assert list(values) == [1, 1, 1, 1]
    values[:] = [0, 2, 1, 1]  # the same output size, shifted one row: a plausible conversion mistake
    changed = tmp_path / "audio_encoder.mlpackage"
    coremltools.models.MLModel(spec, weights_dir=model.weights_dir, skip_model_load=True).save(str(changed))

    result = locate_coreml(networks[1], changed, windows, "fp32", batch=16)
    first = result.first_introducing
    assert first is not None and first.name == "audio_encoder.6.conv_block.0", first
    assert first.introduced_rel > 100 * LAYER_TOLERANCE["fp32"]
    assert all(not layer.over for layer in result.layers[: first.index])
    assert not result
