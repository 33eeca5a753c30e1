"""Core ML export: conversion, I/O, and that the saved packages carry exactly the PyTorch weights.

Core ML cannot predict on Linux, so the weights are read back from the package's blob file and
compared with the PyTorch layers (BatchNorm folded); corrupted or foreign weights must be caught.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

ct = pytest.importorskip("coremltools", reason="Core ML export needs coremltools: pip install coremltools")

from synctalk_parity.errors import ParityError  # noqa: E402
from synctalk_parity.export import coreml  # noqa: E402
from synctalk_parity.models import fixture_audio_encoder, fixture_unet  # noqa: E402
from synctalk_parity.models.specs import audio_encoder_spec, unet_spec  # noqa: E402

CONVS = {"unet": 93, "audio_encoder": 13}
FIRST_CONV = {"unet": "inc.inconv.0.conv.0", "audio_encoder": "audio_encoder.0.conv_block.0"}


pytestmark = pytest.mark.networks  # the full-size networks' fidelity: `make test` runs it, `make test-fast` does not


@pytest.fixture(scope="module", params=["fp32", pytest.param("fp16", marks=pytest.mark.slow)])
def coreml_dir(request, golden_coreml):
    """Both golden networks exported through `export_models` (runs the export-time checks)."""
    return golden_coreml(request.param)


@pytest.fixture(scope="module")
def manifest(coreml_dir):
    return json.loads((coreml_dir / "manifest.json").read_text())


def _records(manifest):
    return {r["network"]: r for r in manifest["artifacts"]}


def test_export_writes_checked_packages(coreml_dir, manifest):
    records = _records(manifest)
    assert set(records) == {"unet", "audio_encoder"}
    assert manifest["versions"]["coremltools"] != "not installed"
    for network, record in records.items():
        assert (coreml_dir / f"{network}.mlpackage" / "Manifest.json").is_file()
        check = record["check"]
        assert check["passed"] and check["io_passed"] and check["weights_passed"]
        assert check["weight_layers_checked"] == CONVS[network]
        assert check["weight_tensors_checked"] == 2 * CONVS[network]
        if sys.platform != "darwin":
            assert check["prediction"] == "skipped: Core ML prediction needs macOS"
        assert record["extra"]["batch"].startswith("dynamic 1..")
        assert record["inputs"][0]["shape"][0] == "B"
        print(f"{manifest['precision']} {network}: worst weight error {check['weight_worst_rel_error']:.3g} ({check['weight_worst_tensor']})")
    expected_unet = "FLOAT16" if manifest["precision"] == "fp16" else "FLOAT32"
    assert records["unet"]["extra"]["compute_precision"] == expected_unet
    assert records["audio_encoder"]["extra"]["compute_precision"] == "FLOAT32"  # kept fp32, see KEPT_FP32
    if manifest["precision"] == "fp16":
        assert "kept FLOAT32" in records["audio_encoder"]["extra"]["note"]


@pytest.mark.parametrize("network", ["unet", "audio_encoder"])
def test_io_names_shapes_and_float32(coreml_dir, network):
    spec = unet_spec() if network == "unet" else audio_encoder_spec()
    package = coreml_dir / f"{network}.mlpackage"
    assert coreml.check_io(package, spec) == []
    description = ct.models.MLModel(str(package), skip_model_load=True).get_spec().description
    float32 = ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
    assert [f.name for f in description.input] == spec.input_names
    assert [f.name for f in description.output] == spec.output_names
    assert all(f.type.multiArrayType.dataType == float32 for f in [*description.input, *description.output])
    batch = description.input[0].type.multiArrayType.shapeRange.sizeRanges[0]
    assert (batch.lowerBound, batch.upperBound) == (1, spec.max_batch)


def test_unet_weights_equal_pytorch(coreml_dir, manifest, golden_models):
    precision = manifest["precision"]
    result = coreml.verify_coreml_weights(coreml_dir / "unet.mlpackage", golden_models[0], precision)
    assert result, result.mismatches
    assert result.tensors_checked == 2 * CONVS["unet"]
    assert result.worst_rel_error < (1e-3 if precision == "fp16" else 1e-5)
    if precision == "fp16":  # the constants really are fp16
        weights = coreml.program_conv_weights(coreml_dir / "unet.mlpackage")
        assert all(w.dtype == np.float16 for _, w, _ in weights)


def test_audio_encoder_fp16_weights_equal_pytorch(golden_models, tmp_path):
    """The audio encoder ships fp32 in fp16 exports; its fp16 conversion still carries the right weights."""
    encoder = golden_models[1]
    path = tmp_path / "audio_encoder.mlpackage"
    coreml.convert(encoder, audio_encoder_spec(), "fp16").save(str(path))
    result = coreml.verify_coreml_weights(path, encoder, "fp16")
    assert result, result.mismatches
    assert result.tensors_checked == 26 and 0 < result.worst_rel_error < 1e-3


@pytest.mark.parametrize("network", ["unet", "audio_encoder"])
def test_one_corrupted_weight_is_caught_and_named(coreml_dir, manifest, golden_models, network, tmp_path):
    model = golden_models[0] if network == "unet" else golden_models[1]
    corrupted = _corrupt_first_conv_weight(coreml_dir / f"{network}.mlpackage", tmp_path)
    precision = "fp32" if network in coreml.KEPT_FP32 else manifest["precision"]
    result = coreml.verify_coreml_weights(corrupted, model, precision)
    assert not result
    assert result.mismatch_count >= 1
    assert result.mismatches[0].startswith(f"{FIRST_CONV[network]}.weight: 1 of ")


@pytest.mark.slow
def test_weights_of_another_seed_fail(golden_models, tmp_path):
    path = tmp_path / "unet.mlpackage"
    coreml.convert(fixture_unet(seed=1), unet_spec(), "fp32").save(str(path))
    result = coreml.verify_coreml_weights(path, golden_models[0], "fp32")
    assert not result
    assert result.mismatch_count >= CONVS["unet"]
    assert result.tensors_checked == 0


def test_export_refuses_a_package_with_foreign_weights(golden_models, tmp_path, monkeypatch):
    """`export_network` raises when the converted package does not carry the model's weights."""
    real_convert = coreml.convert
    monkeypatch.setattr(coreml, "convert", lambda model, spec, precision: real_convert(fixture_audio_encoder(seed=7), spec, precision))
    with pytest.raises(ParityError, match=r"audio_encoder \(fp32\) failed its check: audio_encoder\.0\.conv_block\.0"):
        coreml.export_network(golden_models[1], tmp_path, "fp32")


def _corrupt_first_conv_weight(package: Path, tmp_path: Path) -> Path:
    """A copy of `package` whose first conv weight has one value changed, written through coremltools."""
    from coremltools.libmilstoragepython import _BlobStorageReader, _BlobStorageWriter

    work = tmp_path / "work.mlpackage"
    shutil.copytree(package, work)
    model = ct.models.MLModel(str(work), skip_model_load=True)
    spec = model.get_spec()
    function = spec.mlProgram.functions["main"]
    operations = function.block_specializations[function.opset].operations
    weight_name = next(op for op in operations if op.type == "conv").inputs["weight"].arguments[0].name
    const = next(op for op in operations if op.type == "const" and op.outputs[0].name == weight_name)
    blob = const.attributes["val"].blobFileValue
    weights_file = str(Path(model.weights_dir) / Path(blob.fileName).name)
    is_fp16 = const.outputs[0].type.tensorType.dataType == ct.proto.MIL_pb2.DataType.FLOAT16
    reader = _BlobStorageReader(weights_file)
    if is_fp16:
        values = np.frombuffer(reader.read_fp16_data(blob.offset).tobytes(), np.float16).copy()
    else:
        values = np.array(reader.read_float_data(blob.offset), dtype=np.float32)
    del reader
    index = int(np.argmax(np.abs(values)))
    values[index] = values[index] * 0.9  # a 10% change of the largest value
    writer = _BlobStorageWriter(weights_file, truncate_file=False)
    blob.offset = writer.write_fp16_data(values.view(np.uint16)) if is_fp16 else writer.write_float_data(values)
    del writer
    out = tmp_path / package.name
    ct.models.utils.save_spec(spec, str(out), weights_dir=model.weights_dir)
    return out
