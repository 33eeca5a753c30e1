"""The backend registry: one row per runtime drives `--backend` choices, imported only when used.

Importing this module imports no runtime (onnxruntime, coremltools, tensorrt); a backend's module
is imported when its class is asked for. A new backend is one module plus one row here, and a
test module `tests/backends/test_<name>.py` (a registry test fails without it).
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass

from ..errors import ParityError
from .base import Backend, ModelSource


@dataclass(frozen=True)
class BackendEntry:
    name: str
    target: str  # "module:Class", module relative to this package
    description: str


BACKENDS: dict[str, BackendEntry] = {
    entry.name: entry
    for entry in (
        BackendEntry("torch", "torch:TorchBackend", "eager PyTorch, the reference network (CPU, or CUDA when asked for with --device)"),
        BackendEntry("onnxruntime", "onnxruntime:OnnxRuntimeBackend", "ONNX Runtime with the CPU, CUDA, TensorRT or CoreML execution provider"),
        BackendEntry("coreml", "coreml:CoreMLBackend", "Core ML package via coremltools (macOS)"),
        BackendEntry("coreml-emulated", "coreml_emulated:CoreMLEmulatedBackend", "Core ML program executed op by op in PyTorch on any OS (emulates its arithmetic, not Apple's Neural Engine/GPU)"),
        BackendEntry("tensorrt", "tensorrt:TensorRTBackend", "TensorRT engine on an NVIDIA GPU"),
    )
}


def backend_names() -> list[str]:
    return list(BACKENDS)


def get_backend_class(name: str) -> type[Backend]:
    """The backend class registered as `name` (its module imported now), or a `ParityError` with a "did you mean"."""
    entry = BACKENDS.get(name)
    if entry is None:
        close = difflib.get_close_matches(name, list(BACKENDS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ParityError(f"unknown backend {name!r}: choose from {', '.join(BACKENDS)}{hint}")
    module_name, class_name = entry.target.split(":")
    module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, class_name)


def create_backend(name: str, source: ModelSource | None = None, **options) -> Backend:
    """An unloaded backend `name` over `source` (fixture weights when None)."""
    return get_backend_class(name)(source or ModelSource(), **options)


def default_backend() -> str:
    """The best backend that runs here from checkpoints alone (its export is made and cached on the fly):
    ONNX Runtime (about 5x eager PyTorch on CPU; its CUDA/TensorRT/CoreML execution provider when
    installed), else torch."""
    return "onnxruntime" if get_backend_class("onnxruntime").available() is None else "torch"


def availability() -> dict[str, str | None]:
    """For every registered backend: None when it can run here, else why not (one line)."""
    result: dict[str, str | None] = {}
    for name in BACKENDS:
        try:
            result[name] = get_backend_class(name).available()
        except ImportError as exc:
            result[name] = f"backend module failed to import: {exc}"
    return result


__all__ = ["BACKENDS", "Backend", "BackendEntry", "ModelSource", "availability", "backend_names", "create_backend", "default_backend",
           "get_backend_class"]
