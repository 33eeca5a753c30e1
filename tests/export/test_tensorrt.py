"""TensorRT export: without TensorRT or a GPU it fails in one line after leaving TensorRT-ready ONNX and build commands.

The path up to the missing runtime is tested here; building and checking engines runs only where
TensorRT and a CUDA GPU are present (skipped elsewhere, with the reason).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import types

import onnx
import pytest
import torch

import synctalk_parity.export as export_package
from synctalk_parity.errors import ParityError
from synctalk_parity.export import ExportUnfinished, export_models
from synctalk_parity.export import tensorrt as trt_export
from synctalk_parity.export.manifest import read_manifest, sha256_artifact
from synctalk_parity.models import fixture_audio_encoder, fixture_unet
from synctalk_parity.models.specs import audio_encoder_spec, unet_spec

MISSING = trt_export.missing_runtime()
needs_tensorrt = pytest.mark.skipif(MISSING is not None, reason=f"needs TensorRT and a CUDA GPU: {MISSING}")
needs_no_tensorrt = pytest.mark.skipif(MISSING is None, reason="TensorRT and a GPU are present: the export builds engines")

UNET_SHAPES = "--minShapes=image:1x6x320x320,audio:1x32x16x16 --optShapes=image:16x6x320x320,audio:16x32x16x16 --maxShapes=image:16x6x320x320,audio:16x32x16x16"
ENCODER_SHAPES = "--minShapes=mel_window:1x1x80x16 --optShapes=mel_window:64x1x80x16 --maxShapes=mel_window:64x1x80x16"


@pytest.fixture(scope="module")
def unbuilt_export(tmp_path_factory):
    """An fp16 TensorRT export of the fixture weights on a machine without TensorRT or a GPU: (out, error). Plumbing:
    the small U-Net (width 8; SyncTalk's names and input/output shapes), exported in seconds."""
    if MISSING is None:
        pytest.skip("TensorRT and a GPU are present: the export builds engines instead")
    out = tmp_path_factory.mktemp("exports")
    with pytest.raises(ExportUnfinished) as caught:
        export_models("tensorrt", fixture_unet(width=8), fixture_audio_encoder(), out, "fp16")
    return out, caught.value


@needs_no_tensorrt
def test_failure_is_one_line_naming_what_is_missing_and_where_the_build_files_are(unbuilt_export):
    out, error = unbuilt_export
    message = str(error)
    assert isinstance(error, ParityError) and "\n" not in message
    assert message.startswith(MISSING)
    if "TensorRT" in MISSING:
        assert "TensorRT is not installed (pip install tensorrt" in message
    if not torch.cuda.is_available():
        assert "no CUDA GPU" in message
    assert f"were written to {out / 'tensorrt-fp16.unbuilt'}: run build_engines.sh there" in message
    assert error.folder == out / "tensorrt-fp16.unbuilt"


@needs_no_tensorrt
def test_no_finished_or_partial_folder_is_left(unbuilt_export):
    out, _ = unbuilt_export
    assert sorted(p.name for p in out.iterdir()) == ["tensorrt-fp16.unbuilt"]
    folder = out / "tensorrt-fp16.unbuilt"
    assert sorted(p.name for p in folder.iterdir()) == ["BUILD.md", "audio_encoder.onnx", "build_engines.sh", "manifest.json", "unet.onnx"]


@needs_no_tensorrt
@pytest.mark.parametrize("network, spec", [("unet", unet_spec()), ("audio_encoder", audio_encoder_spec())])
def test_unbuilt_folder_holds_valid_fp32_onnx_with_a_dynamic_batch(unbuilt_export, network, spec):
    model = onnx.load(unbuilt_export[0] / "tensorrt-fp16.unbuilt" / f"{network}.onnx")
    onnx.checker.check_model(model, full_check=True)
    assert {op.version for op in model.opset_import if op.domain in ("", "ai.onnx")} == {17}
    assert [v.name for v in model.graph.input] == spec.input_names
    assert [v.name for v in model.graph.output] == spec.output_names
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        assert not dims[0].HasField("dim_value") and dims[0].dim_param, f"{value.name}: batch is not dynamic"
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert not any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer), "TensorRT is given fp32 ONNX"


@needs_no_tensorrt
def test_unbuilt_manifest_describes_the_onnx_and_says_engines_are_not_built(unbuilt_export):
    folder = unbuilt_export[0] / "tensorrt-fp16.unbuilt"
    manifest = read_manifest(folder)
    assert manifest["format"] == "tensorrt" and manifest["engines"] == "not built"
    assert [a["file"] for a in manifest["artifacts"]] == ["unet.onnx", "audio_encoder.onnx"]
    for record in manifest["artifacts"]:
        assert record["sha256"] == sha256_artifact(folder / record["file"])
        assert not record["file"].endswith(".engine")


@needs_no_tensorrt
def test_build_script_runs_the_exact_trtexec_commands(unbuilt_export, tmp_path):
    folder = unbuilt_export[0] / "tensorrt-fp16.unbuilt"
    script = folder / "build_engines.sh"
    assert script.stat().st_mode & stat.S_IXUSR
    fake = tmp_path / "bin" / "trtexec"  # records its arguments and working folder, one call a line
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$(pwd) $*" >> {tmp_path / "calls.txt"}\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["sh", str(script)], cwd=tmp_path, env=env, check=True)
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    assert calls == [
        f"{folder} --onnx=unet.onnx --saveEngine=unet.engine {UNET_SHAPES} --fp16",
        f"{folder} --onnx=audio_encoder.onnx --saveEngine=audio_encoder.engine {ENCODER_SHAPES} --fp16",
    ]
    notes = (folder / "BUILD.md").read_text()
    assert all(call.split(" ", 1)[1] in notes for call in calls)
    assert "polygraphy convert unet.onnx --convert-to trt -o unet.engine" in notes


def test_build_commands_use_the_spec_names_shapes_and_fp16_only_for_fp16(tmp_path):
    assert trt_export.trtexec_command(unet_spec(), "fp32") == f"trtexec --onnx=unet.onnx --saveEngine=unet.engine {UNET_SHAPES}"
    assert trt_export.trtexec_command(audio_encoder_spec(), "fp16").endswith(f"{ENCODER_SHAPES} --fp16")
    hubert = trt_export.trtexec_command(unet_spec("hubert"), "fp32")
    assert f"audio:1x{'x'.join(map(str, unet_spec('hubert').inputs[1].shape))}" in hubert
    assert trt_export.polygraphy_command(audio_encoder_spec(), "fp32") == (
        "polygraphy convert audio_encoder.onnx --convert-to trt -o audio_encoder.engine "
        "--trt-min-shapes 'mel_window:[1,1,80,16]' --trt-opt-shapes 'mel_window:[64,1,80,16]' "
        "--trt-max-shapes 'mel_window:[64,1,80,16]'"
    )
    trt_export.write_build_files(tmp_path, [unet_spec(), audio_encoder_spec()], "fp32")
    for text in ((tmp_path / "build_engines.sh").read_text(), (tmp_path / "BUILD.md").read_text()):
        assert "trtexec --onnx=unet.onnx" in text and "--fp16" not in text


@pytest.mark.parametrize(
    "has_tensorrt, has_gpu, expected",
    [
        (False, True, ["TensorRT is not installed (pip install tensorrt"]),
        (True, False, ["no CUDA GPU"]),
        (False, False, ["TensorRT is not installed", "no CUDA GPU"]),
        (True, True, None),
    ],
)
def test_missing_runtime_names_exactly_what_is_missing(monkeypatch, has_tensorrt, has_gpu, expected):
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt") if has_tensorrt else None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: has_gpu)
    reason = trt_export.missing_runtime()
    if expected is None:
        assert reason is None
    else:
        assert "\n" not in reason and all(part in reason for part in expected)
        assert ("TensorRT" in reason) != has_tensorrt and ("GPU" in reason.replace("NVIDIA GPU and CUDA 12", "")) != has_gpu


def test_export_called_directly_names_its_own_folder(monkeypatch, tmp_path):
    """Without export_models the files stay where they were written, and the message says so."""
    monkeypatch.setattr(trt_export, "missing_runtime", lambda: "TensorRT is not installed (pip install tensorrt)")
    fake_onnx = types.SimpleNamespace(export=lambda unet, encoder, out_dir, precision, check=None: _fake_onnx_records(out_dir, precision))
    monkeypatch.setattr(export_package, "onnx", fake_onnx, raising=False)  # what `from . import onnx` finds
    with pytest.raises(ExportUnfinished, match=f"written to {tmp_path}: run build_engines.sh there"):
        trt_export.export(fixture_unet(), fixture_audio_encoder(), tmp_path, "fp32")
    assert (tmp_path / "build_engines.sh").is_file() and read_manifest(tmp_path)["engines"] == "not built"


def _fake_onnx_records(out_dir, precision):
    from synctalk_parity.export.manifest import ArtifactRecord

    assert precision == "fp32"  # TensorRT always gets the fp32 ONNX
    records = []
    for name in ("unet", "audio_encoder"):
        (out_dir / f"{name}.onnx").write_bytes(b"onnx")
        records.append(ArtifactRecord(name, f"{name}.onnx", [], [], {"passed": True}))
    return records


@needs_tensorrt
@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engines_are_built_and_match_pytorch(tmp_path, precision):
    folder = export_models("tensorrt", fixture_unet(), fixture_audio_encoder(), tmp_path, precision)
    assert folder.name == f"tensorrt-{precision}"
    manifest = read_manifest(folder)
    assert [a["file"] for a in manifest["artifacts"]] == ["unet.engine", "audio_encoder.engine"]
    for record in manifest["artifacts"]:
        assert record["check"]["passed"] and record["check"]["max_abs_diff"] <= record["check"]["tolerance"]
