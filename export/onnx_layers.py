"""The ONNX side of `parity locate`: an exported graph's layers named by PyTorch module paths, run two ways.

Layers: every compute node of the graph (Constant and Cast nodes belong to the node they feed). Its name comes
from the TorchScript exporter's scope, which onnxsim and the fp16 converter keep in node names
(`/up3/conv/double_conv/double_conv.0/conv/conv.0/Conv` is module `up3.conv.double_conv.0.conv.0`). The PyTorch
value it is compared with: for a node in a leaf module's scope, that module's output (a Conv's BatchNorm is folded
into it by the exporter, so the BatchNorm's output); for a node a module's own forward makes (a residual Add, a
Concat), the module's output when the node's result leaves the module, else the input of the leaf module that
reads it; the graph output is the network's output.

Two runs, neither of which changes the artifact that is measured:
- `instrumented`: a copy of the model with every layer's output added as a graph output, run whole; the copy's
  network output is checked against the unmodified model's (`LocateResult.instrumented_output_diff`).
- `isolated`: one model holding a copy of every layer with its inputs cut loose as graph inputs, fed the PyTorch
  values of those inputs (in the dtype the layer reads them): each layer's output then carries only the error the
  layer adds itself.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from .module_values import ROOT, ModuleValue, is_leaf, module_of_scope

PASSIVE = ("Constant", "Cast")  # nodes that belong to the node they feed


@dataclass
class OnnxLayer:
    index: int
    name: str
    op: str
    node: str  # the compute node's name
    output: str  # tensor compared (after an output Cast for the graph output)
    value: ModuleValue | None  # None: the network output
    nodes: list[str] = field(default_factory=list)  # every node of the layer (compute node, its casts and constants)
    inputs: list[str] = field(default_factory=list)  # tensors read from outside the layer (not initializers)


@dataclass
class OnnxGraph:
    """One loaded ONNX model and its layers."""

    model: Any  # onnx.ModelProto
    layers: list[OnnxLayer]
    graph_inputs: list[str]
    graph_output: str
    elem_types: dict[str, int]  # tensor -> onnx elem type
    skipped: list[str] = field(default_factory=list)  # compute nodes with no PyTorch counterpart (named why)
    root: str = ""  # the network's class name: "Model:Sigmoid" is an op of the network's own forward


def load_graph(path_or_model, torch_model: nn.Module, folded: dict[str, str]) -> OnnxGraph:
    """The layers of an ONNX model (a path or a ModelProto) exported from `torch_model`."""
    import onnx

    model = onnx.load(str(path_or_model)) if isinstance(path_or_model, (str, Path)) else path_or_model
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = [o.name for o in graph.output]
    if len(outputs) != 1:
        raise ValueError(f"locate handles networks with one output; this graph has {len(outputs)}")
    graph_output = outputs[0]
    scopes = {node.name: _scope(torch_model, node.name) for node in graph.node}
    layers: list[OnnxLayer] = []
    skipped: list[str] = []
    names_used: dict[str, int] = {}
    root_class = type(torch_model).__name__
    for node in graph.node:
        if node.op_type in PASSIVE:
            continue
        tensor = node.output[0]
        nodes, reads = _gather_inputs(node, producer, initializers)
        nodes.reverse()  # the passive chain was walked from the node backwards
        # the graph output may sit behind the fp16 converter's output Cast
        after = [c for c in consumers.get(tensor, []) if c.op_type == "Cast" and c.output[0] == graph_output]
        if tensor == graph_output or after:
            compared, value = graph_output, None
        else:
            compared = tensor
            value = _reference_value(node, scopes, consumers.get(tensor, []), torch_model, folded)
            if value is None:
                skipped.append(f"{node.name} ({node.op_type}): no PyTorch module value matches its output")
                continue
        scope = scopes.get(node.name)
        if scope is None:
            name = node.name
        elif scope[0] != ROOT and is_leaf(torch_model, scope[0]):
            name = scope[0] + (f"#{scope[1] + 1}" if scope[1] else "")
        else:
            name = f"{scope[0] or root_class}:{node.op_type}"
        count = names_used.get(name, 0)
        names_used[name] = count + 1
        name = name if count == 0 else f"{name}#{count + 1}"
        nodes = [*nodes, node.name, *(c.name for c in after)]  # in execution order
        layers.append(OnnxLayer(len(layers), name, node.op_type, node.name, compared, value, nodes, reads))
    return OnnxGraph(model, layers, [i.name for i in graph.input], graph_output, _elem_types(model), skipped, root_class)


def _scope(torch_model: nn.Module, node_name: str) -> tuple[str, int] | None:
    if not node_name.startswith("/"):
        return None
    return module_of_scope(torch_model, node_name.split("/")[1:-1])


def _gather_inputs(node, producer: dict, initializers: set[str]) -> tuple[list[str], list[str]]:
    """The passive nodes (casts, constants) feeding `node`, and the tensors the layer reads from outside."""
    nodes: list[str] = []
    reads: list[str] = []
    for name in node.input:
        while name and name in producer and producer[name].op_type in PASSIVE:
            passive = producer[name]
            nodes.append(passive.name)
            name = passive.input[0] if passive.op_type == "Cast" else ""
        if name and name not in initializers and name not in reads:
            reads.append(name)
    return nodes, reads


def _reference_value(node, scopes: dict, readers: list, torch_model: nn.Module, folded: dict[str, str]) -> ModuleValue | None:
    scope = scopes.get(node.name)
    if scope is None:
        return None
    path, call = scope
    if path != ROOT and is_leaf(torch_model, path):
        if node.op_type == "Conv" and path in folded:
            return ModuleValue(folded[path], call, "output")
        return ModuleValue(path, call, "output")
    inside = [r for r in readers if _within(scopes.get(r.name), path)]
    if path != ROOT and len(inside) < len(readers):  # the result leaves the module: it is the module's output
        return ModuleValue(path, call, "output")
    for reader in inside:
        reader_scope = scopes.get(reader.name)
        if reader_scope and reader_scope[0] and is_leaf(torch_model, reader_scope[0]) and reader.input[0] == node.output[0]:
            return ModuleValue(reader_scope[0], reader_scope[1], "input")
    return None


def _within(scope: tuple[str, int] | None, path: str) -> bool:
    if scope is None:
        return False
    return path == ROOT or scope[0] == path or scope[0].startswith(path + ".")


def _elem_types(model) -> dict[str, int]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    types: dict[str, int] = {}
    for info in [*inferred.graph.input, *inferred.graph.output, *inferred.graph.value_info]:
        types[info.name] = info.type.tensor_type.elem_type
    for tensor in inferred.graph.initializer:
        types[tensor.name] = tensor.data_type
    return types


def instrumented_model(graph: OnnxGraph):
    """A copy of the model whose outputs are the network output and every layer's output tensor."""
    import onnx

    model = copy.deepcopy(graph.model)
    present = {o.name for o in model.graph.output}
    for layer in graph.layers:
        if layer.output not in present:
            model.graph.output.append(onnx.helper.make_tensor_value_info(layer.output, graph.elem_types[layer.output], None))
            present.add(layer.output)
    return model


def isolated_model(graph: OnnxGraph):
    """One model holding every layer cut loose: input `ref:<tensor>` per tensor a layer reads from outside,
    output `local:<index>` per layer."""
    import onnx

    source = graph.model.graph
    by_name = {node.name: node for node in source.node}
    nodes, inputs, outputs, fed = [], [], [], set()
    for layer in graph.layers:
        rename = {tensor: f"ref:{tensor}" for tensor in layer.inputs}
        for tensor in layer.inputs:
            if tensor not in fed:
                inputs.append(onnx.helper.make_tensor_value_info(f"ref:{tensor}", graph.elem_types[tensor], None))
                fed.add(tensor)
        for name in layer.nodes:
            node = copy.deepcopy(by_name[name])
            for out in node.output:
                rename.setdefault(out, f"{layer.index}:{out}")
            node.name = f"{layer.index}:{node.name}"
            node.input[:] = [rename.get(t, t) for t in node.input]
            node.output[:] = [rename[t] for t in node.output]
            nodes.append(node)
        produced = rename[layer.output]
        outputs.append(onnx.helper.make_tensor_value_info(produced, graph.elem_types[layer.output], None))
    isolated = onnx.helper.make_graph(nodes, "isolated_layers", inputs, outputs, initializer=list(source.initializer))
    model = onnx.helper.make_model(isolated, opset_imports=list(graph.model.opset_import))
    model.ir_version = graph.model.ir_version
    return model


def elem_numpy_dtype(elem_type: int):
    import onnx

    return onnx.helper.tensor_dtype_to_np_dtype(elem_type)


def session(model, arena: bool = True):
    """An ONNX Runtime CPU session of an in-memory model (no spinning: the machine is shared); `arena=False` gives
    memory back after each run (the copies with every layer's output hold a whole forward pass)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = arena
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def as_float32(array) -> np.ndarray:
    return np.asarray(array).astype(np.float32, copy=False)


def graph_of(torch_model: nn.Module, onnx_model) -> OnnxGraph:
    """The layers of an in-memory ONNX model exported from `torch_model`."""
    from ..models.specs import spec_for
    from .module_values import folded_batchnorms

    torch_model = torch_model.eval()
    return load_graph(onnx_model, torch_model, folded_batchnorms(torch_model, spec_for(torch_model).example_inputs(1)))


def resolve_layers(graph: OnnxGraph, names: list[str] | tuple[str, ...]) -> list[OnnxLayer]:
    """The layers `names` stand for, in network order: a layer's own name (`audio_encoder.3.act`,
    `up3:Concat`), or a module path standing for every layer inside that module (`audio_encoder.11`). A name that
    matches no layer is a ValueError naming the closest ones."""
    import difflib

    chosen: dict[int, OnnxLayer] = {}
    for name in names:
        matched = [layer for layer in graph.layers if layer.name == name or name in _ancestors(layer.name, graph.root)]
        if not matched:
            known = sorted({layer.name for layer in graph.layers} | {m for layer in graph.layers for m in _ancestors(layer.name, graph.root)})
            close = difflib.get_close_matches(name, known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; layers are PyTorch module paths such as {graph.layers[0].name}"
            raise ValueError(f"no layer {name!r} in this network{hint}")
        chosen.update((layer.index, layer) for layer in matched)
    return [chosen[i] for i in sorted(chosen)]


def keep_units(graph: OnnxGraph) -> list[tuple[str, list[OnnxLayer]]]:
    """The candidate units of a keep-fp32 set, in network order: for each layer, the innermost module holding both a
    convolution and an activation (a conv + BatchNorm + ReLU block, a residual block): keeping a convolution fp32
    gains little when its output is rounded to fp16 for the ReLU that reads it. Layers outside such a module (the
    network's own ops, a lone output conv) are units by themselves."""
    units: dict[str, list[OnnxLayer]] = {}
    for layer in graph.layers:
        unit = layer.name
        for ancestor in _ancestors(layer.name, graph.root):
            inside = [other for other in graph.layers if _layer_module(other.name) == ancestor or _layer_module(other.name).startswith(ancestor + ".")]
            if {"Conv", "Relu"} <= {other.op for other in inside}:
                unit = ancestor
                break
        units.setdefault(unit, []).append(layer)
    return list(units.items())


def _layer_module(name: str) -> str:
    """The module path of a layer name ("up3:Concat" -> "up3", "audio_model.relu#2" -> "audio_model.relu")."""
    return name.split(":")[0].split("#")[0]


def _ancestors(name: str, root: str) -> list[str]:
    """The layer's module and its ancestors, innermost first (module paths only, not the network itself)."""
    if name.split(":")[0] == root:  # "Model:Sigmoid": an op of the network's own forward
        return []
    parts = _layer_module(name).split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]
