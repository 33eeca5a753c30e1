"""Execute a saved Core ML ML program on Linux, op by op, to check what the converted program computes.

Core ML prediction needs macOS. This module reads the `.mlpackage` the exporter wrote (its MIL
program and weight blobs, through coremltools' own loader: `export.coreml.load_program`) and runs
each op with PyTorch on the CPU, honouring every attribute (conv pads and pad_type, strides,
groups, dilations; upsample_bilinear scale factors and align_corners / half_pixel_centers; concat
axis and interleave; squeeze axes; cast dtype). fp16 programs keep fp16 storage between ops: every
op's result is rounded to the dtype the program declares for it (so fp16 overflow and precision
loss show up), and convolutions accumulate in fp32 on the fp16-rounded inputs and weights before
their result is rounded to fp16.

This emulates the program's arithmetic, not Apple's Neural Engine or GPU kernels: it catches
conversion mistakes (wrong weights, upsample mode, layout, fp16 overflow), not device-kernel
differences. An op it does not implement is a `ParityError` naming the op, never a skip.

    outputs = ProgramEmulator("exports/coreml-fp32/unet.mlpackage").run({"image": x, "audio": a})
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ParityError
from .coreml import load_program

NOTE = "emulates the Core ML program's arithmetic (MIL ops in PyTorch on the CPU, fp16 storage between ops), not Apple's Neural Engine or GPU kernels"

_FLOAT_DTYPES = {"fp16": torch.float16, "fp32": torch.float32}
_INT_DTYPES = {"int8": torch.int8, "uint8": torch.uint8, "int16": torch.int16, "int32": torch.int32, "int64": torch.int64, "bool": torch.bool}


def emulate(mlpackage: str | Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run the program of `mlpackage` on `inputs` (by input name); its outputs as float32 arrays by name."""
    return ProgramEmulator(mlpackage).run(inputs)


class ProgramEmulator:
    """The `main` function of one saved ML program, ready to run on NumPy inputs of any batch size."""

    def __init__(self, mlpackage: str | Path):
        self.path = Path(mlpackage)
        function = load_program(self.path).functions["main"]
        self.operations = list(function.operations)
        unknown = [op for op in self.operations if op.op_type not in OPS]
        if unknown:
            kinds = sorted({op.op_type for op in unknown})
            raise ParityError(
                f"{self.path}: the Core ML emulator does not implement op {kinds[0]!r} (first at {unknown[0].name!r}"
                f"{'; also ' + ', '.join(map(repr, kinds[1:])) if kinds[1:] else ''}); it cannot check this program"
            )
        self.inputs = dict(function.inputs.items())
        self.input_names = list(self.inputs)
        self.output_names = [var.name for var in function.outputs]
        self.op_types = sorted({op.op_type for op in self.operations})
        self.precisions = sorted({_dtype_name(v.dtype) for op in self.operations for v in op.outputs if _dtype_name(v.dtype) in _FLOAT_DTYPES})
        self._constants = {op.outputs[0].name: _const(op) for op in self.operations if op.op_type == "const"}
        self._constants = {name: value for name, value in self._constants.items() if value is not None}
        self._steps = [op for op in self.operations if op.op_type != "const"]
        self._release = _last_uses(self._steps, set(self._constants) | set(self.output_names))

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs by name (float32) for `inputs` by name; every program input must be given."""
        values = self._execute(inputs, release=True)
        return {name: values[name].to(torch.float32).numpy() for name in self.output_names}

    def trace(self, inputs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """Every value the program computes for `inputs` (inputs and op outputs, as stored), by variable name."""
        return self._execute(inputs, release=False)

    def run_op(self, op, given: dict[str, torch.Tensor]) -> torch.Tensor:
        """The first output of one op of this program on `given` values of its computed inputs (by variable name),
        each first stored in the dtype the program declares for it; constants are the program's."""
        values: dict[str, torch.Tensor] = dict(self._constants)
        declared = {var.name: var.dtype for var in _input_vars(op)}
        for name, value in given.items():
            values[name] = _store(value, declared[name]) if name in declared else value
        with torch.inference_mode():
            result = OPS[op.op_type](op, values)
        first = result[0] if isinstance(result, tuple) else result
        return _store(first, op.outputs[0].dtype)

    def _execute(self, inputs: dict[str, np.ndarray], release: bool) -> dict[str, torch.Tensor]:
        missing = [name for name in self.input_names if name not in inputs]
        if missing:
            raise ParityError(f"{self.path}: input {missing[0]!r} not given (the program takes {', '.join(self.input_names)})")
        values: dict[str, torch.Tensor] = dict(self._constants)
        for name, var in self.inputs.items():
            values[name] = _store(torch.from_numpy(np.array(inputs[name], dtype=np.float32)), var.dtype)
        with torch.inference_mode():
            for op, freed in zip(self._steps, self._release):
                result = OPS[op.op_type](op, values)
                results = result if isinstance(result, tuple) else (result,)
                for var, value in zip(op.outputs, results):
                    values[var.name] = _store(value, var.dtype)
                for name in freed if release else ():  # intermediates no later op reads: memory stays flat in depth
                    values.pop(name, None)
        return values


def _input_vars(op) -> list:
    """The variables `op` reads (lists flattened)."""
    found: list = []
    for var in op.inputs.values():
        found.extend(var if isinstance(var, (list, tuple)) else (var,))
    return found


def _last_uses(steps, kept: set[str]) -> list[list[str]]:
    """Per step, the computed values (not in `kept`) that no later step reads."""
    last: dict[str, int] = {}
    for index, op in enumerate(steps):
        for var in op.inputs.values():
            for v in var if isinstance(var, (list, tuple)) else (var,):
                last[v.name] = index
    release: list[list[str]] = [[] for _ in steps]
    for name, index in last.items():
        if name not in kept:
            release[index].append(name)
    return release


def _dtype_name(dtype) -> str:
    from coremltools.converters.mil.mil import types

    return types.builtin_to_string(dtype)


def _store(value: torch.Tensor, dtype) -> torch.Tensor:
    """`value` as the program stores it: floats rounded to their declared precision and kept as
    fp32 (exact) for the next op's arithmetic; integers and booleans in their own dtype."""
    name = _dtype_name(dtype)
    if name in _FLOAT_DTYPES:
        return value.to(_FLOAT_DTYPES[name]).to(torch.float32)
    if name in _INT_DTYPES:
        return value.to(_INT_DTYPES[name])
    raise ParityError(f"Core ML emulator: tensor dtype {name!r} is not supported")


def _in(op, values: dict[str, torch.Tensor], name: str, default=None):
    """Input `name` of `op`: a constant attribute as its Python/NumPy value, a computed tensor as a tensor."""
    var = op.inputs.get(name)
    if var is None:
        return default
    if isinstance(var, (list, tuple)):
        return [_value(v, values) for v in var]
    return var.val if var.val is not None and var.name not in values else values[var.name]


def _tensor(op, values, name: str) -> torch.Tensor:
    return _value(op.inputs[name], values)


def _value(var, values) -> torch.Tensor:
    """The tensor of `var`: computed, a stored constant, or a constant folded by coremltools."""
    if var.name in values:
        return values[var.name]
    return torch.as_tensor(np.asarray(var.val))


def _const(op) -> torch.Tensor | None:
    """A numeric constant as a tensor (fp16 values widened exactly to fp32); None for strings."""
    value = np.asarray(op.outputs[0].val)
    if value.dtype.kind not in "biuf":
        return None
    return torch.from_numpy(value.astype(np.float32) if value.dtype == np.float16 else value.copy())


def _conv(op, values):
    """conv with pad_type valid / custom / same / same_lower, strides, dilations, groups; fp32 accumulation."""
    x = _tensor(op, values, "x").to(torch.float32)
    weight = _tensor(op, values, "weight").to(torch.float32)
    bias = _in(op, values, "bias")
    bias = None if bias is None else _tensor(op, values, "bias").to(torch.float32)
    rank = x.dim() - 2
    strides = [int(s) for s in _in(op, values, "strides", [1] * rank)]
    dilations = [int(d) for d in _in(op, values, "dilations", [1] * rank)]
    groups = int(_in(op, values, "groups", 1))
    pads = _conv_pads(str(_in(op, values, "pad_type", "valid")), _in(op, values, "pad", [0] * 2 * rank), x.shape[2:], weight.shape[2:], strides, dilations, op.name)
    # MIL pads are (begin, end) per spatial axis, first axis first; F.pad wants the last axis first.
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}.get(rank)
    if conv is None:
        raise ParityError(f"Core ML emulator: conv {op.name!r} has {rank} spatial dimensions; 1 to 3 are supported")
    padding = [begin for begin, _end in pads]
    if any(begin != end for begin, end in pads):  # asymmetric: pad explicitly (F.pad wants the last axis first)
        x = F.pad(x, [p for axis in reversed(range(rank)) for p in pads[axis]])
        padding = [0] * rank
    return conv(x, weight, bias, stride=strides, padding=padding, dilation=dilations, groups=groups)


def _conv_pads(pad_type: str, pad, sizes, kernel, strides, dilations, name: str) -> list[tuple[int, int]]:
    """(begin, end) padding per spatial axis as MIL defines each pad_type."""
    rank = len(sizes)
    if pad_type == "valid":
        return [(0, 0)] * rank
    if pad_type == "custom":
        pad = [int(p) for p in pad]
        return [(pad[2 * i], pad[2 * i + 1]) for i in range(rank)]
    if pad_type in ("same", "same_lower"):
        pads = []
        for size, k, s, d in zip(sizes, kernel, strides, dilations):
            out = -(-int(size) // s)
            total = max((out - 1) * s + (int(k) - 1) * d + 1 - int(size), 0)
            small, large = total // 2, total - total // 2
            pads.append((small, large) if pad_type == "same" else (large, small))
        return pads
    raise ParityError(f"Core ML emulator: conv {name!r} has pad_type {pad_type!r}; valid, custom, same and same_lower are supported")


def _upsample_bilinear(op, values):
    """upsample_bilinear as MIL defines it: output size floor(in * scale); the grid per
    align_corners / half_pixel_centers (default: half-pixel centres unless align_corners)."""
    x = _tensor(op, values, "x").to(torch.float32)
    scales = (float(_in(op, values, "scale_factor_height", 1.0)), float(_in(op, values, "scale_factor_width", 1.0)))
    align_corners = bool(_in(op, values, "align_corners", False))
    half_pixel = _in(op, values, "half_pixel_centers")
    half_pixel = (not align_corners) if half_pixel is None else bool(half_pixel)
    if align_corners and half_pixel:
        raise ParityError(f"Core ML emulator: upsample_bilinear {op.name!r} sets both align_corners and half_pixel_centers (invalid in MIL)")
    for axis, scale in zip((-2, -1), scales):
        size_in = x.shape[axis]
        grid = _bilinear_grid(size_in, int(np.floor(size_in * scale)), scale, align_corners, half_pixel)
        matrix = torch.from_numpy(_interpolation_matrix(grid, size_in))  # (out, in): rows of two weights
        x = torch.matmul(matrix, x) if axis == -2 else torch.matmul(x, matrix.T)
    return x


def _interpolation_matrix(grid: np.ndarray, size_in: int) -> np.ndarray:
    """(out, in) float32 matrix: row i weights input low(i) by 1 - w and low(i) + 1 by w (linear interpolation)."""
    low = np.floor(grid).astype(np.int64)
    high = np.minimum(low + 1, size_in - 1)
    weight = grid - low
    matrix = np.zeros((grid.size, size_in), dtype=np.float64)
    rows = np.arange(grid.size)
    np.add.at(matrix, (rows, low), 1.0 - weight)
    np.add.at(matrix, (rows, high), weight)
    return matrix.astype(np.float32)


def _bilinear_grid(size_in: int, size_out: int, scale: float, align_corners: bool, half_pixel: bool) -> np.ndarray:
    """Source coordinate of each output index along one axis (float64), clamped to the input."""
    index = np.arange(size_out, dtype=np.float64)
    if align_corners:
        spacing = (size_in - 1) / (size_out - 1) if size_out > 1 else 0.0
        grid = index * spacing
    else:
        spacing = 1.0 / scale
        grid = index * spacing + (0.5 * spacing - 0.5 if half_pixel else 0.0)
    return np.clip(grid, 0, size_in - 1)


def _concat(op, values):
    tensors = [t.to(torch.float32) if t.is_floating_point() else t for t in _in(op, values, "values")]
    axis = int(_in(op, values, "axis"))
    axis = axis + tensors[0].dim() if axis < 0 else axis
    if bool(_in(op, values, "interleave", False)):
        # [a0, b0, a1, b1, ...] along `axis`: stack one axis further, then merge the two.
        return torch.stack(tensors, dim=axis + 1).flatten(axis, axis + 1)
    return torch.cat(tensors, dim=axis)


def _squeeze(op, values):
    x = _tensor(op, values, "x")
    axes = _in(op, values, "axes")
    if axes is None:
        return x.squeeze()
    axes = sorted((int(a) + x.dim()) % x.dim() for a in np.atleast_1d(axes))
    for axis in reversed(axes):
        x = x.squeeze(axis)
    return x


def _cast(op, values):
    dtype = str(_in(op, values, "dtype"))
    target = {**_FLOAT_DTYPES, **_INT_DTYPES}.get(dtype)
    if target is None:
        raise ParityError(f"Core ML emulator: cast {op.name!r} to {dtype!r} is not supported")
    return _tensor(op, values, "x").to(target)


def _binary(function: Callable) -> Callable:
    return lambda op, values: function(_tensor(op, values, "x").to(torch.float32), _tensor(op, values, "y").to(torch.float32))


def _unary(function: Callable) -> Callable:
    return lambda op, values: function(_tensor(op, values, "x").to(torch.float32))


# op type -> implementation(op, values by var name). Constants are read once when a program loads.
OPS: dict[str, Callable] = {
    "const": lambda op, values: _const(op),
    "conv": _conv,
    "relu": _unary(torch.relu),
    "sigmoid": _unary(torch.sigmoid),
    "add": _binary(torch.add),
    "concat": _concat,
    "upsample_bilinear": _upsample_bilinear,
    "cast": _cast,
    "squeeze": _squeeze,
}
