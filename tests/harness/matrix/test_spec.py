"""The matrix file: expanded into cells with ids and resource requests, and every mistake one line naming the file
and the key, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from synctalk_parity.errors import ParityError
from synctalk_parity.harness.matrix.spec import load_matrix

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "matrix-demo.toml"


def _matrix(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "matrix.toml"
    path.write_text(text)
    return path


def test_the_example_expands_to_its_cells_with_what_each_asks_of_a_worker():
    spec = load_matrix(EXAMPLE)
    assert [cell.id for cell in spec.cells] == ["demo/onnxruntime-cpu/fp32", "demo/onnxruntime-cpu/fp16", "demo/torch-cpu/fp32",
                                                "demo/coreml-emulated/fp16", "demo/coreml/fp16"]
    assert spec.frames == 8 and spec.dump_every == 1
    assert spec.cell("demo/coreml/fp16").requires.resources == {"macos": 1.0}
    assert spec.cell("demo/coreml-emulated/fp16").requires.resources == {}  # executes the program anywhere
    assert spec.cell("demo/onnxruntime-cpu/fp32").requires.gpus == 0


def test_gpu_cells_ask_for_a_gpu_and_tensorrt_for_the_tensorrt_resource(tmp_path):
    spec = load_matrix(_matrix(tmp_path, """
[[avatar]]
name = "demo"
[[backend]]
backend = "onnxruntime"
providers = ["cpu", "cuda", "tensorrt"]
[[backend]]
backend = "torch"
devices = ["cuda:1"]
precisions = ["fp16"]
[[backend]]
backend = "tensorrt"
precisions = ["fp16"]
"""))
    requires = {cell.id: cell.requires for cell in spec.cells}
    assert requires["demo/onnxruntime-cuda/fp32"].gpus == 1 and requires["demo/onnxruntime-cuda/fp32"].resources == {}
    assert requires["demo/onnxruntime-tensorrt/fp32"].resources == {"tensorrt": 1.0}
    assert requires["demo/tensorrt/fp16"].gpus == 1 and requires["demo/tensorrt/fp16"].resources == {"tensorrt": 1.0}
    assert requires["demo/torch-cuda:1/fp16"].gpus == 1
    assert requires["demo/onnxruntime-cpu/fp32"].text() == "1 CPU"


@pytest.mark.parametrize(("text", "message"), [
    ("framez = 8\n[[avatar]]\nname='demo'\n[[backend]]\nbackend='torch'", "unknown key 'framez'; did you mean 'frames'?"),
    ("[[avatar]]\nname='demo'\n[[backend]]\nbackend='onnxrt'", "[[backend]] 1: backend 'onnxrt' is not one of"),
    ("[[avatar]]\nname='demo'\n[[backend]]\nbackend='torch'\nprecisions=['fp16']", "torch runs fp16 only on CUDA"),
    ("[[avatar]]\nname='demo'\n[[backend]]\nbackend='torch'\nprovider='cuda'", "providers choose ONNX Runtime's execution provider"),
    ("[[avatar]]\nname='demo'\n[[backend]]\nbackend='torch'\nprecisions=['fp8']", "precisions"),
    ("[[backend]]\nbackend='torch'", "no [[avatar]]"),
    ("[[avatar]]\nname='demo'", "no [[backend]]"),
    ("[[avatar]]\nname='demo'\n[[avatar]]\nname='demo'\n[[backend]]\nbackend='torch'", "two of the matrix's avatar names are 'demo'"),
    ("require=['demo/torch-cpu/fp16']\n[[avatar]]\nname='demo'\n[[backend]]\nbackend='torch'",
     "required cell 'demo/torch-cpu/fp16' is not in the matrix; did you mean 'demo/torch-cpu/fp32'?"),
    ("[[avatar]]\nname='demo'\n[[backend]]\nbackend='torch'\n[[allow]]\ncell='*/torch-cpu/fp32'", "reason is required"),
    ("[[avatar]]\nname='demo'\n[[backend]]\nbackend='torch'\n[[allow]]\ncell='*/onnx*'\nreason='x'", "matches no cell of this matrix"),
    ("[[avatar]]\nname='demo'\ndataset='nowhere'\naudio='nowhere.wav'\n[[backend]]\nbackend='torch'", "dataset: nowhere not found"),
    ("[[avatar]]\nname='demo'\n[[backend]]\nbackend='torch'\n[[cell]]\nid='demo/torch/fp32'", "did you mean 'demo/torch-cpu/fp32'?"),
    ("[[avatar]]\nname='demo'\n[[backend]]\nbackend='torch'\n[bands]\npsnr_db=-1", "bands.psnr_db must be a non-negative number"),
])
def test_a_mistake_is_one_line_naming_the_file_and_the_key(tmp_path, text, message):
    path = _matrix(tmp_path, text)
    with pytest.raises(ParityError) as caught:
        load_matrix(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value), str(caught.value)
    assert "\n" not in str(caught.value)


def test_require_from_the_command_line_must_name_a_cell(tmp_path):
    path = _matrix(tmp_path, "[[avatar]]\nname='demo'\n[[backend]]\nbackend='torch'")
    assert load_matrix(path, ["demo/torch-cpu/fp32"]).required == ["demo/torch-cpu/fp32"]
    with pytest.raises(ParityError, match="required cell 'demo/coreml/fp16' is not in the matrix"):
        load_matrix(path, ["demo/coreml/fp16"])


def test_a_cell_that_cannot_run_on_this_machine_says_why(tmp_path):
    import sys

    import torch

    from synctalk_parity.harness.matrix.cell import runs_here

    if torch.cuda.is_available() or sys.platform == "darwin":
        pytest.skip("this machine has a GPU or macOS: the cells below may run here")
    spec = load_matrix(_matrix(tmp_path, """
[[avatar]]
name = "demo"
[[backend]]
backend = "onnxruntime"
providers = ["cpu", "cuda", "coreml"]
[[backend]]
backend = "torch"
devices = ["cuda"]
[[backend]]
backend = "coreml"
"""))
    reasons = {cell.id: runs_here(cell) for cell in spec.cells}
    assert reasons["demo/onnxruntime-cpu/fp32"] is None
    assert "no CUDAExecutionProvider here" in reasons["demo/onnxruntime-cuda/fp32"] and "onnxruntime-gpu" in reasons["demo/onnxruntime-cuda/fp32"]
    assert "no CoreMLExecutionProvider here" in reasons["demo/onnxruntime-coreml/fp32"] and "macOS" in reasons["demo/onnxruntime-coreml/fp32"]
    assert "sees no CUDA GPU" in reasons["demo/torch-cuda/fp32"]
    assert "needs macOS" in reasons["demo/coreml/fp32"]
