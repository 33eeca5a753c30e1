"""The result types of `parity locate`: one row per layer of the exported network, the verdict, the keep-fp32 advice.

Light (no numpy, no torch), so the command layer and the reports can name them. `locate.json` holds a `LocateResult`
written and read by the verdict's result codec (`harness/verdict/result.py`: fields by name, the `JSON_DERIVED`
properties beside them, non-finite numbers as "Infinity"/"-Infinity"/"NaN"); its schema is generated from these types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Literal

LOCATE_SCHEMA_NAME: Final = "synctalk-parity/locate"
LOCATE_SCHEMA_VERSION: Final = 2  # 1: hand-made dict, output nested, non-finite as "inf"/"nan"


@dataclass
class LayerError:
    """One layer of the artifact (one compute node of an ONNX graph, one op of a Core ML program), named by the
    PyTorch module that produced its output, and how far its output is from that module's output.

    `propagated_*`: the artifact run whole (the error the layer inherits plus the error it adds).
    `introduced_*`: the layer run alone on the PyTorch values of its inputs (the error it adds by itself).
    Relative errors are max |diff| divided by the range (max - min) of the PyTorch output."""

    JSON_DERIVED: ClassVar[dict[str, Any]] = {"over": bool}

    index: int  # position in network order (topological order of the artifact)
    name: str  # PyTorch module path ("up3.conv.double_conv.0.conv.0"), or "module:Op" for an op a module's forward makes itself
    op: str  # the artifact's op type: Conv, Relu, Add, Concat, Resize, conv, relu, ...
    artifact_name: str  # the node / op name inside the artifact
    reference: str  # which PyTorch value it is compared with ("output of up3.conv.double_conv.0.conv.1 (BatchNorm2d, folded)")
    range: float  # max - min of the PyTorch value over the inputs
    propagated_max_abs: float
    propagated_rel: float
    propagated_cosine: float
    introduced_max_abs: float
    introduced_rel: float
    inputs_rel: float  # the largest propagated relative error among the layer's inputs (0 for the network inputs)
    tolerance_rel: float  # the layer's tolerance on introduced_rel
    nonfinite: int = 0  # NaN/Inf in the artifact's output of this layer (whole run)
    nodes: list[str] = field(default_factory=list)  # artifact nodes this layer owns (for keep-fp32: the ones kept)

    @property
    def over(self) -> bool:
        """This layer adds more error than its tolerance (or makes NaN/Inf from finite inputs)."""
        return not self.introduced_rel <= self.tolerance_rel  # NaN counts as over


@dataclass
class KeepStep:
    """One step of the keep-fp32 search: a layer added to the set or dropped from it, and the output's max |diff| after."""

    action: Literal["add", "drop"]
    layer: str
    max_abs: float


@dataclass
class KeepAdvice:
    """The smallest keep-fp32 set found for an fp16 artifact, and how it was verified."""

    network: str
    keep_fp32: list[str]  # layer names, in network order
    passed: bool  # the network passes its fp16 gate with this set kept fp32 (on the search inputs)
    max_abs: float  # network output max |diff| vs PyTorch with the set kept fp32 (search inputs)
    baseline_max_abs: float  # the same with nothing kept (whole network fp16)
    tolerance: float  # the network's fp16 gate (max |diff|)
    evaluations: int  # conversions tried by the search
    steps: list[KeepStep] = field(default_factory=list)
    verification: dict[str, Any] = field(default_factory=dict)  # the re-export's export-time check, when done
    note: str = ""


@dataclass
class LocateResult:
    """Every layer of one network's artifact against PyTorch; truthy when no layer exceeds its tolerance and the
    network output is within its gate."""

    JSON_DERIVED: ClassVar[dict[str, Any]] = {"passed": bool, "output_passed": bool,
                                              "first_introducing": ("first_introducing_name", str | None)}

    network: str
    backend: str  # "onnxruntime" or "coreml-emulated"
    artifact: str  # path of the artifact located
    precision: str
    inputs: str  # where the inputs came from ("dump run/dump: 4 frames", "golden", ...)
    samples: int  # frames (U-Net) or mel windows (audio encoder) compared
    layers: list[LayerError]
    output_max_abs: float  # the network output's max |diff| vs PyTorch (artifact as exported)
    output_tolerance: float  # the network's gate for this precision
    instrumented_output_diff: float  # max |diff| of the network output between the artifact and its copy with extra outputs
    seconds: float = 0.0  # the whole locate (inputs, layers, keep-fp32 search)
    advice: KeepAdvice | None = None
    notes: list[str] = field(default_factory=list)
    schema: Literal["synctalk-parity/locate"] = LOCATE_SCHEMA_NAME
    schema_version: Literal[2] = LOCATE_SCHEMA_VERSION

    @property
    def first_introducing(self) -> LayerError | None:
        """The first layer in network order that introduces error over its tolerance (not one that inherits it)."""
        return next((layer for layer in self.layers if layer.over), None)

    @property
    def first_introducing_name(self) -> str | None:
        first = self.first_introducing
        return None if first is None else first.name

    @property
    def output_passed(self) -> bool:
        return self.output_max_abs <= self.output_tolerance

    @property
    def passed(self) -> bool:
        return self.first_introducing is None and self.output_passed

    def __bool__(self) -> bool:
        return self.passed

    def worst_introducing(self, count: int = 5) -> list[LayerError]:
        """The layers that add the most error, largest first (relative to their own range)."""
        return sorted(self.layers, key=lambda layer: -_sortable(layer.introduced_rel))[:count]


def _sortable(value: float) -> float:
    return float("inf") if value != value else value  # NaN sorts as the worst
