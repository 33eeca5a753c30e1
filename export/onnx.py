"""ONNX export of the U-Net and the audio encoder: opset 17, dynamic batch, simplified, checked.

Each network goes through the TorchScript exporter (opset 17), `onnx.checker` (full check),
onnxsim (batch kept dynamic), optionally fp16 conversion (fp32 inputs and outputs kept), and an
export-time check: ONNX Runtime on the CPU against eager PyTorch on the real inputs the caller gives
(`check_inputs.CheckInputs`; the built-in demo's from the command layer) at batch 1 and 4. A check over the spec's tolerance raises `ParityError`.
An fp16 export may keep named layers in fp32 (`keep_fp32`: PyTorch module paths, as `parity locate` names
them; see `export.onnx_layers.resolve_layers`). Without a keep-set for it, the audio encoder of an fp16 export stays
fp32 whole (see FP32_AUDIO_ENCODER_NOTE).
"""

from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ParityError
from ..models.specs import ExportSpec, spec_for
from .check_inputs import CHECK_BATCHES, CheckInputs, inputs_for
from .manifest import ArtifactRecord

OPSET = 17
BATCH_DIM = "B"


# The whole fp16 audio encoder misses the 1e-2 tolerance (max |diff| 1.0e-2 at batch 1, 1.35e-2 at batch 4 on the
# golden windows). `parity locate` shows no layer at fault: every layer adds its fp16 rounding (<= 4.2e-4 of its
# range), the first one also the rounding of the mel input. Its keep-fp32 search on the golden clip finds
# ADVISED_KEEP_FP32 (the first two blocks: the input then never passes through fp16): 5.4e-3 / 6.9e-3 at batch 1 / 4,
# 9.4e-3 over the clip's 247 windows, but 1.28e-2 on the demo's 97 windows and 1.31e-2 on the 1119 windows of the
# dataset's full talk_hb.wav. Searched on those 1119 windows it finds the first four blocks (8.5e-3 there, 7.2e-3 on
# the golden clip), which still miss on the demo's (1.07e-2). No set holds on every clip measured, so none is the
# default: without --keep-fp32 the encoder stays fp32 whole.
ADVISED_KEEP_FP32 = {"audio_encoder": ("audio_encoder.0", "audio_encoder.1")}
FP32_AUDIO_ENCODER_NOTE = ("audio encoder kept fp32 in fp16 exports: in fp16 its features differ by ~1.3e-2 (> 1e-2) on real clips, "
                           "and no keep-fp32 set found by parity locate holds on every clip measured; it is <2% of the compute")


def export(unet: nn.Module, audio_encoder: nn.Module, out_dir: Path, precision: str,
           keep_fp32: dict[str, list[str]] | None = None, check: CheckInputs | None = None) -> list[ArtifactRecord]:
    """Write `unet.onnx` and `audio_encoder.onnx` into `out_dir`; one record for each, checked on `check` (else the
    specs' example inputs). `keep_fp32`: per network, layers an fp16 export keeps fp32 (default: none for the U-Net;
    the audio encoder fp32 whole)."""
    out_dir = Path(out_dir)
    if precision != "fp16":
        if keep_fp32 and any(keep_fp32.values()):
            raise ParityError("--keep-fp32 applies to fp16 exports only (add --precision fp16)")
        encoder = export_network(audio_encoder, out_dir, precision, check=check)  # the cheap one first: fail fast
        return [export_network(unet, out_dir, precision, check=check), encoder]
    chosen = {network: tuple(layers) for network, layers in (keep_fp32 or {}).items()}
    encoder = fp16_audio_encoder(audio_encoder, out_dir, chosen.get("audio_encoder"), check)  # the cheap one first: fail fast
    return [export_network(unet, out_dir, precision, chosen.get("unet", ()), check), encoder]


def fp16_audio_encoder(audio_encoder: nn.Module, out_dir: Path, keep_fp32: tuple[str, ...] | None,
                       check: CheckInputs | None = None) -> ArtifactRecord:
    """The audio encoder of an fp16 export: with the layers `keep_fp32` names kept fp32 (a `ParityError` when it misses
    the gate), or, without a keep-set, fp32 whole with a note saying why (FP32_AUDIO_ENCODER_NOTE)."""
    if keep_fp32 is not None:
        return export_network(audio_encoder, out_dir, "fp16", keep_fp32, check)
    encoder = export_network(audio_encoder, out_dir, "fp32", check=check)
    encoder.extra["precision_note"] = FP32_AUDIO_ENCODER_NOTE
    return encoder


def export_network(model: nn.Module, out_dir: Path, precision: str, keep_fp32: tuple[str, ...] | list[str] = (),
                   check: CheckInputs | None = None) -> ArtifactRecord:
    """Export one network to `out_dir/<spec.name>.onnx`, check it against eager PyTorch on `check`, describe it."""
    spec = spec_for(model)
    model = _cpu_fp32_copy(model)
    onnx_model, extra = to_onnx(model, spec, precision, keep_fp32, torch_model=model)
    path = out_dir / f"{spec.name}.onnx"
    path.write_bytes(onnx_model.SerializeToString())
    check_record = check_against_torch(model, spec, path, precision, check)
    return ArtifactRecord(
        network=spec.name,
        file=path.name,
        inputs=[_io_entry(t) for t in spec.inputs],
        outputs=[_io_entry(t) for t in spec.outputs],
        check=check_record,
        preprocessing=spec.preprocessing,
        extra={"opset": OPSET, "exporter": "torch.onnx (TorchScript)", "precision": precision, **extra},
    )


def to_onnx(model: nn.Module, spec: ExportSpec, precision: str = "fp32", keep_fp32: tuple[str, ...] | list[str] = (),
            torch_model: nn.Module | None = None):
    """The checked, simplified ONNX model of `model` (fp32 or fp16 inside, fp32 I/O) and notes on how. An fp16 model
    keeps the layers `keep_fp32` names (PyTorch module paths) in fp32."""
    import onnx

    buffer = io.BytesIO()
    names = spec.input_names + spec.output_names
    with torch.inference_mode(), warnings.catch_warnings():
        # benign, and known: the U-Net's pad-to-match branch (`if diff_y or diff_x`) is never taken at 320 x 320,
        # which the tracer reports as a TracerWarning; the TorchScript exporter itself is deprecated in favour of
        # torch.export, which this export does not use (coremltools does)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="The feature will be removed", category=DeprecationWarning)
        torch.onnx.export(
            model,
            spec.example_inputs(batch=2),
            buffer,  # type: ignore[arg-type]  # torch.onnx.export writes to any binary file object
            dynamo=False,
            opset_version=OPSET,
            input_names=spec.input_names,
            output_names=spec.output_names,
            dynamic_axes={name: {0: BATCH_DIM} for name in names},
        )
    onnx_model = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(onnx_model, full_check=True)
    onnx_model, extra = _simplify(onnx_model)
    if precision == "fp16":
        kept = keep_layers(torch_model or model, onnx_model, keep_fp32) if keep_fp32 else []
        onnx_model = to_fp16(onnx_model, [node for layer in kept for node in layer.nodes])
        extra["fp16"] = "onnxconverter_common.float16, keep_io_types=True"
        if keep_fp32:
            extra["keep_fp32"] = list(keep_fp32)
            extra["keep_fp32_nodes"] = [layer.node for layer in kept]
    onnx.checker.check_model(onnx_model, full_check=True)
    _require_dynamic_batch(onnx_model, spec)
    return onnx_model, extra


def check_against_torch(model: nn.Module, spec: ExportSpec, path: Path, precision: str, given: CheckInputs | None = None) -> dict:
    """Max |diff| of ONNX Runtime (CPU) vs eager PyTorch per batch size, on `given` (else the spec's example inputs);
    `ParityError` over tolerance."""
    import onnxruntime as ort

    source, inputs = inputs_for(spec, given)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    by_batch = {}
    for batch in CHECK_BATCHES:
        feed = [np.array(x[:batch], dtype=np.float32) for x in inputs]
        with torch.inference_mode():
            expected = model(*(torch.from_numpy(x) for x in feed)).numpy()
        (actual,) = session.run(spec.output_names, dict(zip(spec.input_names, feed)))
        by_batch[str(batch)] = float(np.max(np.abs(actual.astype(np.float32) - expected)))
    tolerance = spec.tolerance(precision)
    worst = max(by_batch.values())
    if not worst <= tolerance:  # also catches NaN
        raise ParityError(
            f"{spec.name} ONNX export ({precision}) differs from PyTorch by max |diff| {worst:.3g} "
            f"(batches {', '.join(f'{b}: {d:.3g}' for b, d in by_batch.items())}), over the tolerance {tolerance:g}"
        )
    return {
        "method": "onnxruntime CPU vs eager PyTorch (CPU, fp32)",
        "inputs": source,
        "max_abs_diff": worst,
        "max_abs_diff_by_batch": by_batch,
        "tolerance": tolerance,
        "passed": True,
    }


def _simplify(onnx_model):
    try:
        import onnxsim
    except ImportError as exc:
        return onnx_model, {"simplified": False, "simplify_note": f"onnxsim not installed ({exc})"}
    try:
        simplified, ok = onnxsim.simplify(onnx_model)
    except Exception as exc:
        return onnx_model, {"simplified": False, "simplify_note": f"onnxsim failed: {type(exc).__name__}: {exc}"[:300]}
    if not ok:
        return onnx_model, {"simplified": False, "simplify_note": "onnxsim could not validate its result"}
    return simplified, {"simplified": True, "simplifier": f"onnxsim {getattr(onnxsim, '__version__', '?')}"}


def keep_layers(model: nn.Module, onnx_model, names) -> list:
    """The layers of the fp32 `onnx_model` that the keep-fp32 `names` stand for; a `ParityError` for an unknown name."""
    from .onnx_layers import graph_of, resolve_layers

    try:
        return resolve_layers(graph_of(model, onnx_model), list(names))
    except ValueError as exc:
        raise ParityError(f"--keep-fp32 for {spec_for(model).name}: {exc}") from None


def to_fp16(onnx_model, keep_nodes: list[str] | tuple[str, ...] = ()):
    """`onnx_model` in fp16 with fp32 inputs and outputs, the nodes `keep_nodes` (and their weights) left fp32.

    The converter casts every graph input to fp16 and casts back for a kept node that reads it, so a kept first
    layer would still see its input rounded to fp16; such fp32 -> fp16 -> fp32 round trips are removed."""
    try:
        from onnxconverter_common import float16
    except ImportError as exc:
        raise ParityError("ONNX fp16 export needs onnxconverter-common: pip install onnxconverter-common") from exc
    with warnings.catch_warnings():  # one "truncated to 1e-07" warning per tiny weight
        warnings.filterwarnings("ignore", message="the float32 number", category=UserWarning)
        converted = float16.convert_float_to_float16(onnx_model, keep_io_types=True, node_block_list=list(keep_nodes))
    return _drop_cast_round_trips(converted) if keep_nodes else converted


def _drop_cast_round_trips(onnx_model):
    """Replace each Cast(to fp32) of a Cast(to fp16) of an fp32 tensor by an Identity of that tensor; drop dead casts."""
    import onnx

    fp32, fp16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    graph = onnx_model.graph
    producer = {out: node for node in graph.node for out in node.output}

    def cast_to(node) -> int | None:
        return next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None

    for node in graph.node:
        source = producer.get(node.input[0]) if node.input else None
        if cast_to(node) == fp32 and source is not None and cast_to(source) == fp16:
            upstream = producer.get(source.input[0])
            if upstream is None or cast_to(upstream) in (None, fp32):  # the fp16 cast's input is fp32 (or a graph input)
                node.op_type, node.input[0] = "Identity", source.input[0]
                del node.attribute[:]
    outputs = {o.name for o in graph.output}
    while True:
        used = {name for node in graph.node for name in node.input} | outputs
        dead = [node for node in graph.node if node.op_type == "Cast" and not any(out in used for out in node.output)]
        if not dead:
            return onnx_model
        for node in dead:
            graph.node.remove(node)


def _require_dynamic_batch(onnx_model, spec: ExportSpec) -> None:
    for value in [*onnx_model.graph.input, *onnx_model.graph.output]:
        dim = value.type.tensor_type.shape.dim[0]
        if dim.HasField("dim_value"):
            raise RuntimeError(f"{spec.name}.onnx: {value.name} lost its dynamic batch axis (fixed at {dim.dim_value})")


def _cpu_fp32_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).to("cpu", torch.float32).eval()


def _io_entry(tensor) -> dict:
    return {"name": tensor.name, "shape": [BATCH_DIM, *tensor.shape], "dtype": tensor.dtype}
