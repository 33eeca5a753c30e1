"""`parity locate` on a Core ML ML program, executed op by op by the `coreml-emulated` emulator.

The converter names each MIL op after the `torch.export` node it came from (`relu_1_cast_fp16` is node `relu_1`;
a conv with its BatchNorm folded in is named after the BatchNorm node), and each node's `nn_module_stack` names the
module that ran it. The PyTorch values are those nodes' outputs, computed by running the same exported program
(`export.coreml.exported_program`, as the conversion does) in PyTorch. A layer is every op but `const` and `cast`
(a cast belongs to the op it feeds), named as for ONNX: the module path for an op of a leaf module (a conv by its
Conv2d, not its folded BatchNorm), `module:op` for an op a module's forward makes itself.

Propagated error: the emulator's stored value of each op in one run of the program. Introduced error: each op run
alone (`ProgramEmulator.run_op`) on the PyTorch values of its inputs, stored in the dtypes the program declares.
This emulates the program's arithmetic (see `export/coreml_emulate.py`), not Apple's devices.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...export.coreml import exported_program
from ...export.coreml_emulate import ProgramEmulator
from ...export.module_values import is_leaf
from ...models.specs import spec_for
from .core import LayerStats, Samples, finish, max_abs
from .types import LocateResult

PASSIVE = ("const", "cast")
_SUFFIX = re.compile(r"_cast_fp(16|32)$")


@dataclass
class ProgramLayer:
    index: int
    name: str
    op: str
    node: str  # the MIL op's name
    output: str  # variable compared
    reference_node: str | None  # torch.export node whose value it is compared with; None: the network output
    reference: str
    operation: object = None  # the MIL op
    inputs: list[str] = field(default_factory=list)  # source variables it reads (through casts), not constants
    nodes: list[str] = field(default_factory=list)


def locate_coreml(torch_model: nn.Module, artifact: Path | str, samples: Samples, precision: str,
                  emulator: ProgramEmulator | None = None, batch: int = 1) -> LocateResult:
    """Every op of the ML program `artifact` (or the loaded `emulator`) against `torch_model` on `samples`."""
    start = time.perf_counter()
    torch_model = torch_model.eval()
    spec = spec_for(torch_model)
    emulator = emulator or ProgramEmulator(artifact)
    program = exported_program(torch_model, spec).module()
    layers, skipped, source_of = _layers(emulator, program, torch_model)
    stats = [LayerStats() for _ in layers]
    output_name = emulator.output_names[0]
    output_max_abs = 0.0
    by_output = {layer.output: layer for layer in layers}
    by_output.update({layer.operation.outputs[0].name: layer for layer in layers})  # the last op before the output cast
    for begin in range(0, samples.count, batch):
        inputs = [np.array(a[begin:begin + batch], dtype=np.float32) for a in samples.arrays]
        torch_values = _torch_values(program, inputs)
        feeds = dict(zip(emulator.input_names, inputs))
        traced = emulator.trace(feeds)
        output_max_abs = max(output_max_abs, max_abs(traced[output_name].numpy(), torch_values["__output__"]))
        for layer, layer_stats in zip(layers, stats):
            want = _reference(layer.output, by_output, source_of, feeds, torch_values)
            given = {var.name: torch.from_numpy(_reference(var.name, by_output, source_of, feeds, torch_values))
                     for var in _computed_inputs(layer.operation)}
            alone = emulator.run_op(layer.operation, given).numpy()
            layer_stats.add(want, traced[layer.output].numpy(), alone)
        del torch_values, traced
    notes = list(samples.notes) + [f"not compared: {text}" for text in skipped]
    return finish(spec, "coreml-emulated", str(artifact), precision, samples, layers, [layer.reference for layer in layers], stats,
                  output_max_abs, 0.0, notes, start)


def _reference(var: str, by_output: dict, source_of: dict, feeds: dict, torch_values: dict) -> np.ndarray:
    """The PyTorch value of a program variable: a program input, or the value of the torch.export node of the layer
    that makes it (through casts)."""
    if var not in by_output:
        var = source_of.get(var, var)
    if var in feeds:
        return feeds[var]
    layer = by_output[var]
    return torch_values["__output__"] if layer.reference_node is None else torch_values[layer.reference_node]


def _layers(emulator: ProgramEmulator, program, torch_model: nn.Module):
    """The program's layers, the ops skipped (no PyTorch node), and each cast's source variable."""
    nodes = {node.name: node for node in program.graph.nodes}
    operations = [op for op in emulator.operations if op.op_type != "const"]
    source_of: dict[str, str] = {}
    for op in operations:
        if op.op_type == "cast":
            source = op.inputs["x"].name
            source_of[op.outputs[0].name] = source_of.get(source, source)
    readers: dict[str, list] = {}
    for op in operations:
        for var in _computed_inputs(op):
            readers.setdefault(var.name, []).append(op)
    output_name = emulator.output_names[0]
    root_class = type(torch_model).__name__
    layers: list[ProgramLayer] = []
    skipped: list[str] = []
    calls: dict[str, int] = {}
    for op in operations:
        if op.op_type in PASSIVE:
            continue
        out = op.outputs[0].name
        to_output = out == output_name or any(r.op_type == "cast" and r.outputs[0].name == output_name for r in readers.get(out, []))
        node = nodes.get(out) or nodes.get(_SUFFIX.sub("", out))
        if node is None and not to_output:
            skipped.append(f"{op.name} ({op.op_type}): no torch.export node of that name")
            continue
        path, module_type, named_node = _module_of(node, nodes) if node is not None else ("", root_class, None)
        name = path if path and is_leaf(torch_model, path) else f"{path or root_class}:{op.op_type}"
        call = calls.get(name, 0)
        calls[name] = call + 1
        name += f"#{call + 1}" if call else ""
        if to_output or node is None:
            compared, reference_node, reference = output_name, None, "the network output"
        else:
            compared, reference_node = out, node.name
            kind = "BatchNorm2d, folded into the conv" if named_node else module_type
            reference = f"output of {(named_node or path) or 'the network'} ({kind}; torch.export node {node.name})"
        inputs = [source_of.get(v.name, v.name) for v in _computed_inputs(op)]
        extra = [r.name for r in readers.get(out, []) if r.op_type == "cast" and r.outputs[0].name == output_name]
        layers.append(ProgramLayer(len(layers), name, op.op_type, op.name, compared, reference_node, reference, op, inputs, [op.name, *extra]))
    return layers, skipped, source_of


def _module_of(node, nodes: dict) -> tuple[str, str, str | None]:
    """(module path, module class, the folded BatchNorm's path) of a torch.export node; a BatchNorm reading a convolution is
    named by that convolution's module, as the converter folds it."""
    stack = node.meta.get("nn_module_stack") or {}
    path, kind = list(stack.values())[-1] if stack else ("", "")
    kind = str(kind).rsplit(".", 1)[-1]
    source = node.args[0] if node.args else None
    if source is not None and "batch_norm" in str(node.target) and "conv" in str(getattr(source, "target", "")):
        conv_stack = source.meta.get("nn_module_stack") or {}
        if conv_stack:
            return list(conv_stack.values())[-1][0], "BatchNorm2d", path
    return path, kind, None


def _computed_inputs(op) -> list:
    """The variables `op` reads that some op computes or the program takes as input (not constants)."""
    found = []
    for var in op.inputs.values():
        for item in var if isinstance(var, (list, tuple)) else (var,):
            if item.op is None or item.op.op_type != "const":
                found.append(item)
    return found


def _torch_values(program, inputs: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Every call_function node's output (float32; a tuple's first item) of the exported program on `inputs`."""
    values: dict[str, np.ndarray] = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n):
            result = super().run_node(n)
            if n.op == "call_function":
                first = result[0] if isinstance(result, (tuple, list)) else result
                if isinstance(first, torch.Tensor) and first.is_floating_point():
                    values[n.name] = first.detach().to(torch.float32).numpy().copy()
            return result

    with torch.inference_mode():
        output = Recorder(program).run(*(torch.from_numpy(x) for x in inputs))
    output = output[0] if isinstance(output, (tuple, list)) else output
    values["__output__"] = output.detach().to(torch.float32).numpy().copy()
    return values
