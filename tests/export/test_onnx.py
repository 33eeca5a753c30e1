"""ONNX export: opset 17, dynamic batch, a manifest that matches the files, parity with PyTorch on golden inputs."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from synctalk_parity.errors import ParityError
from synctalk_parity.export import export_models
from synctalk_parity.export import onnx as onnx_export
from synctalk_parity.export.manifest import read_manifest, sha256_artifact
from synctalk_parity.models.specs import ExportSpec

from ..golden_files import golden_check_inputs, golden_inputs

pytestmark = pytest.mark.networks  # the full-size networks' fidelity: `make test` runs it, `make test-fast` does not


@pytest.mark.parametrize("precision, tolerance", [("fp32", 1e-4), ("fp16", 1e-2)])
def test_export_check_is_recorded_and_within_tolerance(request, precision, tolerance):
    folder = request.getfixturevalue(f"onnx_{precision}_dir")
    manifest = read_manifest(folder)
    assert manifest["format"] == "onnx" and manifest["precision"] == precision
    for record in manifest["artifacts"]:
        check = record["check"]
        print(f"{precision} {record['network']}: max|diff| by batch {check['max_abs_diff_by_batch']}")
        assert check["inputs"] == "golden"
        assert set(check["max_abs_diff_by_batch"]) == {"1", "4"}
        assert check["passed"] and check["max_abs_diff"] <= check["tolerance"] <= tolerance
        assert record["extra"]["simplified"] is True, record["extra"]


def test_fp16_export_converts_the_unet_and_keeps_the_audio_encoder_fp32(onnx_fp16_dir):
    records = {r["network"]: r for r in read_manifest(onnx_fp16_dir)["artifacts"]}
    assert records["unet"]["extra"]["precision"] == "fp16"
    assert records["audio_encoder"]["extra"]["precision"] == "fp32"
    assert records["audio_encoder"]["extra"]["precision_note"] == onnx_export.FP32_AUDIO_ENCODER_NOTE
    unet = onnx.load(onnx_fp16_dir / "unet.onnx")
    weight_types = {init.data_type for init in unet.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in weight_types
    assert unet.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # fp32 I/O kept


def test_the_advised_keep_set_makes_the_fp16_audio_encoder_pass_at_batch_1_and_4(golden_models, tmp_path):
    record = onnx_export.fp16_audio_encoder(golden_models[1], tmp_path, onnx_export.ADVISED_KEEP_FP32["audio_encoder"], golden_check_inputs())
    assert record.extra["precision"] == "fp16" and record.extra["keep_fp32"] == ["audio_encoder.0", "audio_encoder.1"]
    print(f"advised keep-set: max|diff| by batch {record.check['max_abs_diff_by_batch']}")
    assert record.check["passed"] and set(record.check["max_abs_diff_by_batch"]) == {"1", "4"}
    model = onnx.load(tmp_path / "audio_encoder.onnx")
    weights = {init.name: init.data_type for init in model.graph.initializer}
    convs = {node.name: node.input[1] for node in model.graph.node if node.op_type == "Conv"}
    kept = {name for name in convs if name in record.extra["keep_fp32_nodes"]}
    assert kept == {"/audio_encoder/audio_encoder.0/conv_block/conv_block.0/Conv", "/audio_encoder/audio_encoder.1/conv_block/conv_block.0/Conv"}
    assert {weights[convs[name]] for name in kept} == {onnx.TensorProto.FLOAT}
    assert {weights[convs[name]] for name in set(convs) - kept} == {onnx.TensorProto.FLOAT16}
    # the kept first layer reads the fp32 input itself: no fp32 -> fp16 -> fp32 round trip is left
    first = next(node for node in model.graph.node if node.op_type == "Conv")
    assert first.input[0] == "mel_window" or next(n for n in model.graph.node if first.input[0] in n.output).op_type == "Identity"


@pytest.mark.parametrize("network", ["unet", "audio_encoder"])
def test_opset_17_and_dynamic_batch(onnx_fp32_dir, network):
    model = onnx.load(onnx_fp32_dir / f"{network}.onnx")
    assert {op.version for op in model.opset_import if op.domain in ("", "ai.onnx")} == {17}
    for value in [*model.graph.input, *model.graph.output]:
        batch = value.type.tensor_type.shape.dim[0]
        assert not batch.HasField("dim_value") and batch.dim_param == "B", value.name


def test_manifest_sha256_and_io_match_the_files(onnx_fp32_dir):
    manifest = read_manifest(onnx_fp32_dir)
    names = {r["network"]: r for r in manifest["artifacts"]}
    assert set(names) == {"unet", "audio_encoder"}
    for record in names.values():
        assert record["sha256"] == sha256_artifact(onnx_fp32_dir / record["file"])
    assert [i["name"] for i in names["unet"]["inputs"]] == ["image", "audio"]
    assert names["unet"]["inputs"][0]["shape"] == ["B", 6, 320, 320]
    assert [o["name"] for o in names["audio_encoder"]["outputs"]] == ["audio_feature"]


@pytest.mark.parametrize("batch", [1, 4])
def test_onnxruntime_matches_pytorch_on_golden_inputs(onnx_fp32_dir, golden_models, batch):
    unet, encoder = golden_models
    inputs = golden_inputs()
    image, audio, mel = (inputs[k][:batch].copy() for k in ("unet_input", "audio_window", "mel_windows"))
    sessions = {n: ort.InferenceSession(str(onnx_fp32_dir / f"{n}.onnx"), providers=["CPUExecutionProvider"]) for n in ("unet", "audio_encoder")}
    with torch.inference_mode():
        mouth_torch = unet(torch.from_numpy(image), torch.from_numpy(audio)).numpy()
        feature_torch = encoder(torch.from_numpy(mel)).numpy()
    mouth = sessions["unet"].run(None, {"image": image, "audio": audio})[0]
    feature = sessions["audio_encoder"].run(None, {"mel_window": mel})[0]
    unet_diff, encoder_diff = np.abs(mouth - mouth_torch).max(), np.abs(feature - feature_torch).max()
    print(f"batch {batch}: U-Net max|diff| {unet_diff:.3g}, audio encoder max|diff| {encoder_diff:.3g}")
    assert unet_diff < 1e-4 and encoder_diff < 1e-4


def test_failed_check_leaves_no_artifact(golden_models, tmp_path, monkeypatch):
    # The audio encoder is exported first, so the forced failure costs no U-Net export.
    monkeypatch.setattr(ExportSpec, "tolerance", lambda self, precision: 0.0)
    with pytest.raises(ParityError, match=r"audio_encoder ONNX export \(fp32\).*over the tolerance 0"):
        export_models("onnx", *golden_models, tmp_path, "fp32")
    assert list(tmp_path.iterdir()) == []


def test_check_inputs_fall_back_to_example_inputs():
    from synctalk_parity.export.check_inputs import inputs_for
    from synctalk_parity.models.specs import audio_encoder_spec

    source, inputs = inputs_for(audio_encoder_spec(), None)
    assert source == "example" and inputs[0].shape == (4, 1, 80, 16)


def test_a_parent_folder_with_one_fitting_export_is_accepted(tmp_path):
    """`parity export --out exports` writes exports/onnx-fp32/: `--models exports` takes it, and says so;
    with several that fit, or none, the error lists what is there."""
    import json

    from synctalk_parity.export.manifest import MANIFEST_NAME, SCHEMA_VERSION, find_export

    def manifest_only_export(name: str, fmt: str) -> None:  # a manifest is all find_export reads
        (tmp_path / name).mkdir()
        (tmp_path / name / MANIFEST_NAME).write_text(json.dumps({"schema_version": SCHEMA_VERSION, "format": fmt, "precision": "fp32", "artifacts": []}))

    manifest_only_export("onnx-fp32", "onnx")
    manifest_only_export("coreml-fp32", "coreml")
    folder, note = find_export(tmp_path, "onnx")
    assert folder == tmp_path / "onnx-fp32" and note == f"{tmp_path} holds exports; using onnx-fp32/ (onnx)"
    assert find_export(tmp_path / "onnx-fp32", "onnx") == (tmp_path / "onnx-fp32", None)
    manifest_only_export("onnx-fp16", "onnx")
    with pytest.raises(ParityError, match=r"holds exports coreml-fp32 \(coreml\), onnx-fp16 \(onnx, fits\), onnx-fp32 \(onnx, fits\); several fit"):
        find_export(tmp_path, "onnx")
    with pytest.raises(ParityError, match="none is a tensorrt export"):
        find_export(tmp_path, "tensorrt")
