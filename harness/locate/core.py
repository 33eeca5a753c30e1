"""Per-layer divergence of one exported network from the PyTorch modules that produced each layer's output.

    result = locate_onnx(torch_model, "exports/onnx-fp16/audio_encoder.onnx", samples, "fp16")
    result.first_introducing      # the first layer that adds error over its tolerance, or None

For every layer (see `onnx_graph`) and over every sample, it measures the layer's output against the PyTorch
value two ways: `propagated` (the artifact run whole: the error it inherits plus the error it adds) and
`introduced` (the layer run alone on the PyTorch values of its inputs: the error it adds by itself). The first
layer that introduces error is the first, in network order, whose introduced error relative to its own range
(max - min of the PyTorch value) exceeds `LAYER_TOLERANCE[precision]`: a layer downstream of it that only
inherits the error has a small introduced error however large its propagated error is. Running the layer on
PyTorch's inputs is the direct measurement of "the error this layer adds", where comparing propagated errors
would have to guess how each layer amplifies its inputs' error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from ...export.module_values import ModuleValue, capture, folded_batchnorms
from ...export.onnx_layers import as_float32, elem_numpy_dtype, instrumented_model, isolated_model, load_graph, session
from ...models.specs import spec_for
from ..verdict.metrics import cosine
from ..verdict.metrics import max_abs as metric_max_abs
from .types import LayerError, LocateResult

# A layer may add at most this much error, relative to the range of its own PyTorch output. fp32: ORT and PyTorch
# differ by summation order only (~1e-6 of the range); fp16: storing a value in fp16 alone costs up to 2^-11 of
# it, and a convolution on fp16-rounded inputs and weights a few times that (at most 1.3e-3 measured: the fp16 U-Net
# on 4 golden-clip frames, ONNX and Core ML alike), so 1e-2 separates rounding from a real fault (a wrong weight,
# an overflow).
LAYER_TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}
_CHUNK = 1 << 20


@dataclass
class LayerStats:
    """Running error statistics of one layer over samples."""

    max_abs: float = 0.0
    low: float = float("inf")
    high: float = float("-inf")
    dot: float = 0.0
    norm_ref: float = 0.0
    norm_got: float = 0.0
    local_max_abs: float = 0.0
    nonfinite: int = 0

    def add(self, reference: np.ndarray, got: np.ndarray, local: np.ndarray | None) -> None:
        got = as_float32(got)
        self.max_abs = max(self.max_abs, max_abs(got, reference))
        if not np.isfinite(self.max_abs):  # the artifact made NaN/Inf: count them, leave them out of the cosine sums
            finite = np.isfinite(got)
            self.nonfinite += int(got.size - np.count_nonzero(finite))
            got = np.where(finite, got, 0).astype(np.float32)
        self.low, self.high = min(self.low, float(reference.min())), max(self.high, float(reference.max()))
        flat_ref, flat_got = reference.reshape(-1), got.reshape(-1)
        for begin in range(0, flat_ref.size, _CHUNK):  # float64 sums, in chunks: no full-size float64 copies
            ref64 = flat_ref[begin:begin + _CHUNK].astype(np.float64)
            got64 = flat_got[begin:begin + _CHUNK].astype(np.float64)
            self.dot += float(ref64 @ got64)
            self.norm_ref += float(ref64 @ ref64)
            self.norm_got += float(got64 @ got64)
        if local is not None:
            self.local_max_abs = max(self.local_max_abs, max_abs(as_float32(local), reference))

    @property
    def range(self) -> float:
        return self.high - self.low

    def relative(self, value: float) -> float:
        return value / self.range if self.range > 0 else (0.0 if value == 0 else float("inf"))

    @property
    def cosine(self) -> float:
        if self.nonfinite:
            return float("nan")
        return cosine(self.dot, self.norm_ref, self.norm_got)


@dataclass
class Samples:
    """The network inputs to locate with: one array per network input, samples along axis 0."""

    arrays: list[np.ndarray]
    source: str  # said in the result: "golden", "dump run/dump", "demo", ...
    notes: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return int(self.arrays[0].shape[0])


def locate_onnx(torch_model: nn.Module, artifact: Path | str, samples: Samples, precision: str,
                onnx_model=None, batch: int = 1) -> LocateResult:
    """Every layer of the ONNX model `artifact` (or the in-memory `onnx_model`) against `torch_model` on `samples`,
    `batch` samples per run."""
    start = time.perf_counter()
    torch_model = torch_model.eval()
    spec = spec_for(torch_model)
    folded = folded_batchnorms(torch_model, spec.example_inputs(1))
    graph = load_graph(onnx_model if onnx_model is not None else Path(artifact), torch_model, folded)
    wanted = {layer.value for layer in graph.layers if layer.value is not None}
    plain, instrumented, isolated = session(graph.model), session(instrumented_model(graph), False), session(isolated_model(graph), False)
    instrumented_names = [o.name for o in instrumented.get_outputs()]
    isolated_names = [o.name for o in isolated.get_outputs()]
    feeds_needed = {i.name: i for i in isolated.get_inputs()}
    stats = [LayerStats() for _ in graph.layers]
    output_max_abs = instrumented_diff = instrumented_max_abs = 0.0
    for begin in range(0, samples.count, batch):
        inputs = tuple(np.ascontiguousarray(a[begin:begin + batch], dtype=np.float32) for a in samples.arrays)
        values, expected = capture(torch_model, inputs, wanted)
        feed = dict(zip(graph.graph_inputs, inputs))
        (actual,) = plain.run([graph.graph_output], feed)
        whole = dict(zip(instrumented_names, instrumented.run(instrumented_names, feed)))
        output_max_abs = max(output_max_abs, max_abs(as_float32(actual), expected))
        instrumented_diff = max(instrumented_diff, max_abs(as_float32(whole[graph.graph_output]), as_float32(actual)))
        instrumented_max_abs = max(instrumented_max_abs, max_abs(as_float32(whole[graph.graph_output]), expected))
        reference = {layer.output: (expected if layer.value is None else values[layer.value]) for layer in graph.layers}
        reference.update(feed)
        local_feed = {}
        with np.errstate(over="ignore"):  # a PyTorch value beyond fp16's range becomes inf, as the artifact would store it
            for name in feeds_needed:
                tensor = name[len("ref:"):]
                local_feed[name] = reference[tensor].astype(elem_numpy_dtype(graph.elem_types[tensor]))
        local = dict(zip(isolated_names, isolated.run(isolated_names, local_feed)))
        for layer, layer_stats, local_name in zip(graph.layers, stats, isolated_names):
            layer_stats.add(reference[layer.output], whole[layer.output], local[local_name])
        del values, whole, local, local_feed, reference
    references = [_describe(layer.value, torch_model) for layer in graph.layers]
    notes = list(samples.notes) + [f"not compared: {text}" for text in graph.skipped]
    if instrumented_diff:
        notes.append(f"the copy with extra outputs differs from the artifact by {instrumented_diff:.3g} at the network output "
                     f"(ONNX Runtime fuses ops the extra outputs keep apart, and rounds differently); its max |diff| vs PyTorch is "
                     f"{instrumented_max_abs:.3g}, the artifact's {output_max_abs:.3g}")
    return finish(spec, "onnxruntime", str(artifact), precision, samples, graph.layers, references, stats, output_max_abs,
                  instrumented_diff, notes, start)


def finish(spec, backend: str, artifact: str, precision: str, samples: Samples, layers, references: list[str],
           stats: list[LayerStats], output_max_abs: float, instrumented_diff: float, notes: list[str], start: float) -> LocateResult:
    """The result from each layer's statistics; `layers` have index, name, op, node, output, inputs and nodes."""
    tolerance = LAYER_TOLERANCE[precision]
    producer_of = {layer.output: i for i, layer in enumerate(layers)}
    errors = []
    for layer, layer_stats, reference in zip(layers, stats, references):
        inputs_rel = max((stats[producer_of[t]].relative(stats[producer_of[t]].max_abs) for t in layer.inputs if t in producer_of), default=0.0)
        errors.append(LayerError(
            index=layer.index, name=layer.name, op=layer.op, artifact_name=layer.node, reference=reference,
            range=layer_stats.range,
            propagated_max_abs=layer_stats.max_abs, propagated_rel=layer_stats.relative(layer_stats.max_abs),
            propagated_cosine=layer_stats.cosine,
            introduced_max_abs=layer_stats.local_max_abs, introduced_rel=layer_stats.relative(layer_stats.local_max_abs),
            inputs_rel=inputs_rel, tolerance_rel=tolerance, nonfinite=layer_stats.nonfinite, nodes=list(layer.nodes)))
    return LocateResult(
        network=spec.name, backend=backend, artifact=artifact, precision=precision, inputs=samples.source,
        samples=samples.count, layers=errors, output_max_abs=output_max_abs, output_tolerance=spec.tolerance(precision),
        instrumented_output_diff=instrumented_diff, seconds=time.perf_counter() - start, notes=notes)


def _describe(value: ModuleValue | None, model: nn.Module) -> str:
    return "the network output" if value is None else value.describe(model)


def max_abs(got: np.ndarray, want: np.ndarray) -> float:
    if got.shape != want.shape:
        raise RuntimeError(f"shape {got.shape} in the artifact, {want.shape} in PyTorch")
    return metric_max_abs(np.abs(got - want))  # in the artifact's float32, as it computes

