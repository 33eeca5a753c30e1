"""Core ML export: one ML program `.mlpackage` per network, checked against PyTorch where it was made.

Conversion goes through `torch.export` (coremltools cannot convert this U-Net from `torch.jit.trace`
with numpy 2.x). Inputs and outputs are declared float32 whatever the compute precision, with a
dynamic batch `1..spec.max_batch`. The export-time check reads the saved package back and verifies
its I/O and that its weights are the PyTorch weights (`verify_coreml_weights`); Core ML prediction
itself only runs on macOS, so the numeric comparison happens there and is recorded as skipped elsewhere.
"""

from __future__ import annotations

import contextlib
import io
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ParityError
from ..models.specs import ExportSpec, spec_for
from .check_inputs import CheckInputs, inputs_for
from .manifest import ArtifactRecord

SUFFIX = ".mlpackage"
DEPLOYMENT_TARGET = "iOS16 / macOS13"
# Per-element weight tolerance |coreml - torch| <= atol * max|torch| + rtol * |torch|.
WEIGHT_TOLERANCE = {"fp32": (1e-5, 1e-6), "fp16": (1e-3, 1e-5)}  # (rtol, atol relative to the tensor's max)
_SHOW = 5  # mismatches kept in a WeightCheck
# As in the ONNX export: fp16 audio features (values up to ~5) miss the 1e-2 tolerance (~1.6e-2 on
# the golden windows) and the encoder is under 2% of the compute, so fp16 exports keep it fp32.
KEPT_FP32 = {"audio_encoder": "audio encoder kept FLOAT32 in fp16 exports: fp16 features differ by ~1.6e-2 (> 1e-2); it is <2% of the compute"}


def export(unet: nn.Module, audio_encoder: nn.Module, out_dir: Path, precision: str, check: CheckInputs | None = None) -> list[ArtifactRecord]:
    """Convert both networks into `out_dir` and check each (prediction on macOS on `check`, else the specs' example
    inputs); raise `ParityError` if a check fails."""
    return [export_network(model, Path(out_dir), precision, check) for model in (unet, audio_encoder)]


def export_network(model: nn.Module, out_dir: Path, precision: str, check_inputs: CheckInputs | None = None) -> ArtifactRecord:
    """Convert one network to `out_dir/<spec.name>.mlpackage`, check it, and describe it."""
    ct = _coremltools()
    model = model.eval()
    spec = spec_for(model)
    compute = "fp32" if spec.name in KEPT_FP32 else precision
    path = Path(out_dir) / f"{spec.name}{SUFFIX}"
    convert(model, spec, compute).save(str(path))

    io_problems = check_io(path, spec)
    weights = verify_coreml_weights(path, model, compute)
    check = {
        "method": "weights read back from the saved package vs PyTorch (BatchNorm folded); I/O names, shapes, dtypes",
        "io_passed": not io_problems,
        "io_problems": io_problems,
        **weights.as_dict(),
        **predict_check(path, model, spec, precision, check_inputs),
    }
    check["passed"] = bool(weights) and not io_problems and check.get("prediction_passed", True)
    if not check["passed"]:
        problems = io_problems + weights.mismatches + check.get("prediction_problems", [])
        raise ParityError(f"Core ML export of {spec.name} ({precision}) failed its check: {'; '.join(problems[:_SHOW])}")
    extra = {
        "max_batch": spec.max_batch,
        "batch": f"dynamic 1..{spec.max_batch} (ct.RangeDim)",
        "model_type": "mlprogram",
        "minimum_deployment_target": DEPLOYMENT_TARGET,
        "compute_precision": "FLOAT16" if compute == "fp16" else "FLOAT32",
        "io_dtype": "float32",
        "converted_from": "torch.export",
        "coremltools": ct.__version__,
    }
    if compute != precision:
        extra["note"] = KEPT_FP32[spec.name]
    return ArtifactRecord(
        network=spec.name,
        file=path.name,
        inputs=[{"name": t.name, "shape": ["B", *t.shape], "dtype": "float32"} for t in spec.inputs],
        outputs=[{"name": t.name, "shape": ["B", *t.shape], "dtype": "float32"} for t in spec.outputs],
        check=check,
        preprocessing=spec.preprocessing,
        extra=extra,
    )


@dataclass
class WeightCheck:
    """Whether a Core ML program carries the PyTorch weights; truthy when it does."""

    tensors_checked: int = 0  # conv weights and biases compared
    layers_checked: int = 0  # PyTorch conv layers (BatchNorm folded in)
    worst_rel_error: float = 0.0  # max |coreml - torch| / max |torch| over all tensors
    worst_tensor: str = ""
    mismatches: list[str] = field(default_factory=list)  # the first few, one line each
    mismatch_count: int = 0

    def __bool__(self) -> bool:
        return self.mismatch_count == 0 and self.tensors_checked > 0

    def as_dict(self) -> dict:
        return {
            "weights_passed": bool(self),
            "weight_tensors_checked": self.tensors_checked,
            "weight_layers_checked": self.layers_checked,
            "weight_worst_rel_error": self.worst_rel_error,
            "weight_worst_tensor": self.worst_tensor,
            "weight_mismatches": self.mismatches,
            "weight_mismatch_count": self.mismatch_count,
        }


def verify_coreml_weights(mlpackage: str | Path, torch_model: nn.Module, precision: str) -> WeightCheck:
    """Compare every conv weight and bias of a saved ML program with `torch_model`'s (BatchNorm folded).

    The converter folds each BatchNorm into the conv before it and stores one weight and one bias
    constant per conv op (fp16 when `precision` is fp16). Each PyTorch conv layer must find a conv
    op of the same weight shape whose constants equal its folded weight and bias within
    `WEIGHT_TOLERANCE[precision]`; conv ops left without a PyTorch layer are mismatches too.
    """
    rtol, atol = WEIGHT_TOLERANCE[precision]
    expected = folded_conv_weights(torch_model)
    program = program_conv_weights(mlpackage)
    result = WeightCheck(layers_checked=len(expected))

    def fail(message: str) -> None:
        result.mismatch_count += 1
        if len(result.mismatches) < _SHOW:
            result.mismatches.append(message)

    unused = dict(enumerate(program))
    for index, (name, weight, bias) in enumerate(expected):
        candidates = [i for i in unused if unused[i][1].shape == weight.shape]
        candidates.sort(key=lambda i: i != index)  # the op in the same position first
        best = None  # (error, op index, bad tensor, detail)
        for i in candidates:
            errors = [_compare(f"{name}.weight", unused[i][1], weight, rtol, atol)]
            errors.append(_compare(f"{name}.bias", unused[i][2], bias, rtol, atol))
            worst = max(errors, key=lambda e: e[1])
            if best is None or worst[1] < best[0]:
                best = (worst[1], i, worst, errors)
            if all(e[0] for e in errors):
                break
        if best is None:
            fail(f"{name}.weight: no conv op with weight shape {tuple(weight.shape)} in the Core ML program")
            continue
        _, i, worst, errors = best
        if all(e[0] for e in errors):
            del unused[i]
            result.tensors_checked += 2
            for _ok, rel, tensor, _detail in errors:
                if rel > result.worst_rel_error or not result.worst_tensor:
                    result.worst_rel_error, result.worst_tensor = rel, tensor
        else:
            fail(f"{worst[2]}: {worst[3]} (closest conv op {unused[i][0]!r})")
    for op_name, weight, _bias in unused.values():
        fail(f"conv op {op_name!r} (weight {tuple(weight.shape)}) matches no PyTorch layer")
    return result


def folded_conv_weights(model: nn.Module) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """`(layer name, weight, bias)` per conv in execution order, with a following BatchNorm folded in (float64)."""
    convs = {m: n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    order: list[nn.Conv2d] = []
    bn_of: dict[nn.Conv2d, nn.BatchNorm2d] = {}
    last: list = [None, None]  # (conv, its output)

    def on_conv(module, _inputs, output):
        order.append(module)
        last[:] = [module, output]

    def on_bn(module, inputs):
        if last[1] is not None and inputs[0] is last[1]:
            bn_of[last[0]] = module

    hooks = [m.register_forward_hook(on_conv) for m in convs]
    hooks += [m.register_forward_pre_hook(on_bn) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    try:
        with torch.no_grad():
            model.eval()(*spec_for(model).example_inputs(1))
    finally:
        for hook in hooks:
            hook.remove()

    folded = []
    for conv in order:
        weight = conv.weight.detach().double().numpy()
        bias = np.zeros(weight.shape[0]) if conv.bias is None else conv.bias.detach().double().numpy()
        bn = bn_of.get(conv)
        if bn is not None:
            assert bn.running_var is not None and bn.running_mean is not None  # BatchNorm2d tracks running stats here
            scale = bn.weight.detach().double().numpy() / np.sqrt(bn.running_var.detach().double().numpy() + bn.eps)
            weight = weight * scale[:, None, None, None]
            bias = (bias - bn.running_mean.detach().double().numpy()) * scale + bn.bias.detach().double().numpy()
        folded.append((convs[conv], weight, bias))
    return folded


def program_conv_weights(mlpackage: str | Path) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """`(op name, weight, bias or None)` of every conv op of a saved ML program, in program order."""
    program = load_program(mlpackage)
    found = []
    for op in program.functions["main"].operations:
        if op.op_type != "conv":
            continue
        weight, bias = op.inputs["weight"], op.inputs.get("bias")
        if weight.val is None:
            raise ParityError(f"{mlpackage}: conv op {op.name!r} has a computed weight (compressed?); cannot verify it")
        found.append((op.name, np.asarray(weight.val), None if bias is None else np.asarray(bias.val)))
    return found


def load_program(mlpackage: str | Path):
    """The MIL program of a saved `.mlpackage`, weights read from its blob file (works on Linux)."""
    ct = _coremltools()
    from coremltools.converters.mil.frontend.milproto.load import load

    model = ct.models.MLModel(str(mlpackage), skip_model_load=True)
    spec = model.get_spec()
    return load(spec, spec.specificationVersion, model.weights_dir)


def check_io(mlpackage: str | Path, spec: ExportSpec) -> list[str]:
    """Problems with the package's inputs and outputs against `spec` (names, shapes, float32); empty if none."""
    ct = _coremltools()
    description = ct.models.MLModel(str(mlpackage), skip_model_load=True).get_spec().description
    problems = []
    float32 = ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
    for kind, features, tensors in (("input", description.input, spec.inputs), ("output", description.output, spec.outputs)):
        names = [f.name for f in features]
        if names != [t.name for t in tensors]:
            problems.append(f"{kind} names {names}, expected {[t.name for t in tensors]}")
            continue
        for feature, tensor in zip(features, tensors):
            array = feature.type.multiArrayType
            if array.dataType != float32:
                problems.append(f"{kind} {tensor.name!r} is not float32")
            if kind == "input":
                ranges = [(r.lowerBound, r.upperBound) for r in array.shapeRange.sizeRanges]
                want = [(1, spec.max_batch)] + [(d, d) for d in tensor.shape]
                if ranges != want:
                    problems.append(f"input {tensor.name!r} shape range {ranges}, expected {want}")
    outputs = load_program(mlpackage).functions["main"].outputs
    for var, tensor in zip(outputs, spec.outputs):
        if tuple(var.shape[1:]) != tuple(tensor.shape):
            problems.append(f"output {tensor.name!r} shape {var.shape}, expected (B, {', '.join(map(str, tensor.shape))})")
    return problems


def predict_check(mlpackage: str | Path, model: nn.Module, spec: ExportSpec, precision: str, given: CheckInputs | None = None) -> dict:
    """On macOS, max |diff| of Core ML vs PyTorch on `given` (else the spec's example inputs); elsewhere, why it was skipped."""
    if sys.platform != "darwin":
        return {"prediction": "skipped: Core ML prediction needs macOS"}
    ct = _coremltools()
    source, inputs = inputs_for(spec, given)
    with torch.no_grad():
        want = model(*(torch.from_numpy(x) for x in inputs)).numpy()
    mlmodel = ct.models.MLModel(str(mlpackage), compute_units=ct.ComputeUnit.CPU_ONLY)
    got = mlmodel.predict(dict(zip(spec.input_names, inputs)))[spec.output_names[0]]
    diff = float(np.max(np.abs(np.asarray(got, dtype=np.float32) - want)))
    tolerance = spec.tolerance(precision)
    check = {"prediction": f"Core ML CPU_ONLY vs eager PyTorch on {source} inputs", "max_abs_diff": diff, "tolerance": tolerance, "prediction_passed": diff <= tolerance}
    if diff > tolerance:
        check["prediction_problems"] = [f"max |diff| vs PyTorch {diff:.3g} > tolerance {tolerance:g}"]
    return check


def convert(model: nn.Module, spec: ExportSpec, precision: str):
    """The in-memory `MLModel` of `model` (through `torch.export`, dynamic batch, float32 I/O)."""
    ct = _coremltools()
    with _quiet_conversion():
        program = exported_program(model, spec)
        batch_range = ct.RangeDim(1, spec.max_batch, default=1)
        return ct.convert(
            program,
            inputs=[ct.TensorType(name=t.name, shape=(batch_range, *t.shape), dtype=np.float32) for t in spec.inputs],
            outputs=[ct.TensorType(name=t.name, dtype=np.float32) for t in spec.outputs],
            convert_to="mlprogram",
            minimum_deployment_target=ct.target.iOS16,
            compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32,
        )


def exported_program(model: nn.Module, spec: ExportSpec):
    """The `torch.export` program the conversion starts from (dynamic batch, decomposed): its node names become the
    ML program's op names, and its nodes' `nn_module_stack` names the module of each."""
    batch = torch.export.Dim("batch", min=1, max=spec.max_batch)
    names = _forward_argument_names(model)
    with _quiet_conversion():
        # Example batch 2: torch.export specializes a dimension of size 1 to a constant.
        program = torch.export.export(model, spec.example_inputs(batch=2), dynamic_shapes={n: {0: batch} for n in names})
        return program.run_decompositions({})


@contextlib.contextmanager
def _quiet_conversion():
    """Without coremltools' tqdm progress bars (one per MIL pass pipeline, on stderr) and the known, benign warnings
    of this conversion: torch's pytree deprecation inside torch.export (FutureWarning) and coremltools' own
    registry deprecation (DeprecationWarning). Our own message says what was converted."""
    # coremltools makes its bars with tqdm's defaults (file=sys.stderr, looked up when each bar is made) and
    # offers no switch: the bars go to a buffer for the conversion; errors still arrive as exceptions
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
        warnings.filterwarnings("ignore", message=r"Function _TORCH_OPS_REGISTRY", category=DeprecationWarning)
        yield


def _compare(tensor: str, got: np.ndarray | None, want: np.ndarray, rtol: float, atol: float):
    """(passed, relative error, tensor name, detail) for one constant."""
    if got is None:
        if not np.any(want):  # a zero bias may be dropped
            return True, 0.0, tensor, ""
        return False, float("inf"), tensor, "missing in the Core ML program"
    got = np.asarray(got, dtype=np.float64).reshape(-1)
    want = want.reshape(-1)
    if got.shape != want.shape:
        return False, float("inf"), tensor, f"{got.size} values, expected {want.size}"
    scale = float(np.max(np.abs(want))) or 1.0
    diff = np.abs(got - want)
    bad = diff > atol * scale + rtol * np.abs(want)
    rel = float(np.max(diff)) / scale
    if not bad.any():
        return True, rel, tensor, ""
    worst = int(np.argmax(diff))
    return False, rel, tensor, (
        f"{int(bad.sum())} of {want.size} values differ ({bad.mean():.1%}); worst at flat index {worst}: "
        f"Core ML {got[worst]:.6g}, PyTorch {want[worst]:.6g} (max |diff| / max |w| = {rel:.3g})"
    )


def _forward_argument_names(model: nn.Module) -> list[str]:
    import inspect

    return list(inspect.signature(model.forward).parameters)


def _coremltools():
    try:
        return import_coremltools()
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ParityError("Core ML export needs coremltools: pip install coremltools") from exc


def import_coremltools():
    """coremltools, imported without its import-time chatter on stderr (untested torch/scikit-learn
    versions, and the macOS-only prediction proxies failing to load on Linux)."""
    import logging

    logging.getLogger("coremltools").setLevel(logging.ERROR)
    import coremltools

    return coremltools
