"""What the matrix tests share: a matrix file written for a test, and an ONNX export changed on purpose (one
that a cell must fail, or one whose U-Net error grows by a chosen amount)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np


def write_matrix_file(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def onnx_export(unet: Path, audio_encoder: Path, precision: str) -> Path:
    """The export a matrix cell makes of these checkpoints (`export_for`, in the session's cache)."""
    from synctalk_parity.backends import ModelSource
    from synctalk_parity.backends.exports import export_for
    from synctalk_parity.harness.inputs import demo_check_inputs

    return export_for(ModelSource.from_paths(unet, audio_encoder, precision=precision, check_inputs=demo_check_inputs), "onnx")


def offset_unet_output(export: Path, out: Path, offset: float, box: tuple[int, int, int, int] | None = None) -> Path:
    """A copy of `export` whose U-Net adds `offset` to its output (inside `box` = y0, y1, x0, x1 only, when given),
    with the manifest's checksum updated: a port that changed its network, as a cell sees it."""
    import onnx
    from onnx import helper, numpy_helper

    from synctalk_parity.export.manifest import sha256_artifact

    shutil.copytree(export, out)
    path = out / "unet.onnx"
    model = onnx.load(str(path))
    graph = model.graph
    output = graph.output[0]
    dtype = onnx.helper.tensor_dtype_to_np_dtype(output.type.tensor_type.elem_type)
    values = np.zeros((1, 3, 320, 320), dtype=dtype)
    if box is None:
        values[...] = offset
    else:
        y0, y1, x0, x1 = box
        values[..., y0:y1, x0:x1] = offset
    producer = next(node for node in graph.node if output.name in node.output)
    inner = output.name + "_before_offset"
    producer.output[list(producer.output).index(output.name)] = inner
    graph.initializer.append(numpy_helper.from_array(values, "parity_test_offset"))
    graph.node.append(helper.make_node("Add", [inner, "parity_test_offset"], [output.name], name="parity_test_offset_add"))
    onnx.save(model, str(path))
    manifest = json.loads((out / "manifest.json").read_text())
    for artifact in manifest["artifacts"]:
        if artifact["file"] == "unet.onnx":
            artifact["sha256"] = sha256_artifact(path)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out
