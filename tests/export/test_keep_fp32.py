"""--keep-fp32: layer names as users write them, and the ONNX fp16 export that keeps exactly those layers fp32."""

from __future__ import annotations

import onnx
import pytest

from synctalk_parity.errors import ParityError
from synctalk_parity.export import export_models
from synctalk_parity.export.keep_fp32 import parse_keep_fp32
from synctalk_parity.export.onnx import export_network, to_onnx
from synctalk_parity.export.onnx_layers import graph_of, keep_units, resolve_layers
from synctalk_parity.models.specs import spec_for

from ..golden_files import golden_check_inputs

pytestmark = pytest.mark.networks  # the full-size networks' fidelity: `make test` runs it, `make test-fast` does not


def test_names_go_to_the_network_whose_modules_they_name(tmp_path):
    assert parse_keep_fp32("audio_encoder.0, up3.conv,audio_encoder.11") == {"audio_encoder": ["audio_encoder.0", "audio_encoder.11"], "unet": ["up3.conv"]}
    assert parse_keep_fp32("none") == {"unet": [], "audio_encoder": []}
    listed = tmp_path / "keep.txt"
    listed.write_text("# kept\naudio_encoder.1\n\ninc\n")
    assert parse_keep_fp32(str(listed)) == {"audio_encoder": ["audio_encoder.1"], "unet": ["inc"]}


@pytest.mark.parametrize("text, message", [
    ('{"keep_fp32": ["a"]}', r'expected \{"keep_fp32"'),
    ('{"keep_fp32": {"decoder": ["a"]}}', "unknown network 'decoder'"),
    ("{not json", "not valid JSON"),
])
def test_a_bad_keep_file_is_one_line_naming_it(tmp_path, text, message):
    path = tmp_path / "keep_fp32.json"
    path.write_text(text)
    with pytest.raises(ParityError, match=message):
        parse_keep_fp32(str(path))
    with pytest.raises(ParityError, match="no such file"):
        parse_keep_fp32(str(tmp_path / "missing.json"))


def test_module_paths_stand_for_every_layer_inside(golden_models):
    encoder = golden_models[1]
    graph = graph_of(encoder, to_onnx(encoder, spec_for(encoder), "fp32")[0])
    block = resolve_layers(graph, ["audio_encoder.1"])
    assert [layer.name for layer in block] == ["audio_encoder.1.conv_block.0", "audio_encoder.1:Add", "audio_encoder.1.act"]
    assert [layer.name for layer in resolve_layers(graph, ["audio_encoder.1.act"])] == ["audio_encoder.1.act"]
    with pytest.raises(ValueError, match="no layer 'audio_encoder.1.relu'.*did you mean"):
        resolve_layers(graph, ["audio_encoder.1.relu"])
    units = dict(keep_units(graph))
    assert list(units)[:3] == ["audio_encoder.0", "audio_encoder.1", "audio_encoder.2"] and "AudioEncoder:Squeeze" in units


def test_the_fp16_export_keeps_the_named_layers_and_records_them(golden_models, tmp_path):
    record = export_network(golden_models[1], tmp_path, "fp16", ["audio_encoder.0", "audio_encoder.1", "audio_encoder.2"], golden_check_inputs())
    assert record.extra["keep_fp32"] == ["audio_encoder.0", "audio_encoder.1", "audio_encoder.2"]
    model = onnx.load(tmp_path / "audio_encoder.onnx")
    types = {t.name: t.data_type for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Conv":
            kept = node.name.startswith(("/audio_encoder/audio_encoder.0/", "/audio_encoder/audio_encoder.1/", "/audio_encoder/audio_encoder.2/"))
            assert types[node.input[1]] == (onnx.TensorProto.FLOAT if kept else onnx.TensorProto.FLOAT16), node.name
    assert record.check["passed"]


def test_keep_fp32_errors_are_one_line(golden_models, tmp_path):
    with pytest.raises(ParityError, match=r"--keep-fp32 for audio_encoder: no layer 'audio_encoder.O'.*did you mean"):
        export_network(golden_models[1], tmp_path, "fp16", ["audio_encoder.O"])
    with pytest.raises(ParityError, match="fp16 exports only"):
        export_models("onnx", *golden_models, tmp_path, "fp32", {"audio_encoder": ["audio_encoder.0"]})
    with pytest.raises(ParityError, match="implemented for the onnx export"):
        export_models("coreml", *golden_models, tmp_path, "fp16", {"audio_encoder": ["audio_encoder.0"]})
    assert not any(tmp_path.iterdir())  # nothing left behind
    # nothing kept: the whole encoder in fp16 misses its gate, and the export says so with the figures
    with pytest.raises(ParityError, match=r"audio_encoder ONNX export \(fp16\) differs from PyTorch by max \|diff\| .*over the tolerance 0.01"):
        export_models("onnx", *golden_models, tmp_path, "fp16", {"audio_encoder": []}, check_inputs=golden_check_inputs)


def test_without_a_keep_set_the_fp16_audio_encoder_stays_fp32_whole(golden_models, tmp_path):
    from synctalk_parity.export import onnx as onnx_export

    record = onnx_export.fp16_audio_encoder(golden_models[1], tmp_path, None, golden_check_inputs())
    assert record.extra["precision"] == "fp32" and record.check["passed"]
    assert record.extra["precision_note"] == onnx_export.FP32_AUDIO_ENCODER_NOTE
