"""How the reference runs the U-Net on the CPU: plain eager PyTorch, or a faster execution of the same module.

The reference is the module and its weights; how PyTorch executes it moves the output by float32 rounding
only. `exact` is plain eager (NCHW, the default CPU path); `fast` traces the same module in channels-last
memory format and freezes it (`torch.jit.freeze`: weights folded in as constants, each batch norm folded into
its convolution). Measured side by side on the golden U-Net (docs/performance.md): within 3.2e-6 of eager on
the U-Net output (the gate is 1e-4; the fidelity tests against the original script hold it to 1e-5), 2-2.5x
eager's frames/s; `torch.jit.optimize_for_inference` on top measured no faster and costs another third of
the one-off tracing time, so it is not applied.

    generate = unet_runner(unet, "fast")
    output = generate(image[None], audio[None])     # numpy in, numpy out, (B, 3, 320, 320)

`emulated_runner(unet, "bf16")` runs it as a port working in fp16 or bf16 would (the `network.precision` knob of a
`Variant`: the simulation of port mistakes), emulated in float32.
"""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ParityError
from .knobs import check_choices, choice

if TYPE_CHECKING:
    from ..models import Model

EXECUTIONS = ("fast", "exact")
DEFAULT_EXECUTION = "fast"
DESCRIPTIONS = {
    "exact": "eager PyTorch, NCHW",
    "fast": "PyTorch, channels-last, torch.jit.freeze",
}

UnetRunner = Callable[[np.ndarray, np.ndarray], np.ndarray]
_FREEZING = threading.Lock()  # one trace at a time (torch.jit's tracer is not documented as thread-safe)


def checked_execution(execution: str) -> str:
    if execution not in EXECUTIONS:
        raise ParityError(f"unknown reference execution {execution!r}; one of {', '.join(EXECUTIONS)}")
    return execution


def unet_runner(unet: Model, execution: str = "exact") -> UnetRunner:
    """`(image (B,6,320,320), audio (B,...)) -> (B,3,320,320)` float32 numpy, run as `execution` says."""
    import torch

    checked_execution(execution)
    unet = unet.eval()
    if execution == "exact":
        def eager(image: np.ndarray, audio: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return unet(torch.from_numpy(image), torch.from_numpy(audio)).numpy()

        return eager
    return _Frozen(unet)


class _Frozen:
    """The module traced channels-last and frozen on its first call (tracing needs an input of the real shapes)."""

    def __init__(self, unet: Model):
        self.unet = unet
        self.module: Any = None

    def __call__(self, image: np.ndarray, audio: np.ndarray) -> np.ndarray:
        import torch

        image_t = torch.from_numpy(np.ascontiguousarray(image)).contiguous(memory_format=torch.channels_last)
        audio_t = torch.from_numpy(np.ascontiguousarray(audio))
        with torch.no_grad():
            if self.module is None:
                self.module = _freeze(self.unet, image_t, audio_t)
            return self.module(image_t, audio_t).contiguous().numpy()


def _freeze(unet: Model, image, audio):
    import copy

    import torch

    with _FREEZING:  # the tracing warnings are ignored since this module's import (quiet_tracing)
        module = copy.deepcopy(unet).eval().to(memory_format=torch.channels_last)
        return torch.jit.freeze(torch.jit.trace(module, (image, audio), check_trace=False))


# What tracing and freezing the U-Net warn: a shape test that is constant at 320 x 320 (`models/unet.py`), and torch 2.x
# marking torch.jit deprecated in favour of torch.compile, whose compilation costs more than the frames a run's
# reference computes (docs/performance.md). Matched by message, so that installing them needs no torch import.
TRACING_WARNINGS = (
    (r"Converting a tensor to a Python boolean might cause the trace to be incorrect", Warning),
    (r"`torch\.jit\.\w+` is deprecated", DeprecationWarning),
)


@functools.cache
def quiet_tracing() -> None:
    """Ignore the warnings of tracing and freezing the U-Net (`TRACING_WARNINGS`) for the whole process, once.

    Installed, not scoped: `warnings.catch_warnings` saves and restores the process's one list of filters, so a scope
    on the reference's thread ended whenever another thread's scope did (an export's, an image reader's) and let the
    tracing warnings through mid-trace. Every command installs these at its start, before any thread
    (`cli/app.py`), so every later scope saves and restores them too; here they are installed for any other caller."""
    for message, category in TRACING_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


quiet_tracing()  # on import too, which in most processes comes before their threads do


# ----- the U-Net at reduced precision, emulated --------------------------------------------------------------------

NETWORK_PRECISIONS = ("fp32", "fp16", "bf16")


@dataclass(frozen=True)
class Network:
    """The knobs of how a port runs the U-Net: `precision`, the format its tensors are stored in (fp32 is the reference;
    fp16 or bf16 a port running the network at reduced precision)."""

    precision: str = choice("fp32", NETWORK_PRECISIONS, "U-Net precision")

    def __post_init__(self) -> None:
        check_choices(self)


def emulated_runner(unet: Model, precision: str) -> UnetRunner:
    """The U-Net run as a backend working in `precision` stores its tensors, emulated in float32 (a real fp16 or bf16
    run on this CPU takes 4-50 s a frame): its weights, buffers and inputs rounded to the format, and every module's
    output rounded to it (forward hooks: each convolution, batch norm, activation, residual sum, upsample and the final
    sigmoid). Accumulation stays float32 inside each operation, as in fp16/bf16 kernels that accumulate in fp32.
    `fp32` is plain eager."""
    import copy

    import torch

    if Network(precision).precision == "fp32":
        return unet_runner(unet, "exact")
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]

    def rounded(tensor):
        return tensor.to(dtype).float()

    module = copy.deepcopy(unet).eval()
    with torch.no_grad():
        for tensor in (*module.parameters(), *module.buffers()):
            if tensor.is_floating_point():
                tensor.copy_(rounded(tensor))
    # Rounding is idempotent, so a Sequential (whose output is its last child's, already rounded) needs no hook, and
    # each output is rounded in place: the same numbers as a rounded copy, with half the memory traffic (golden U-Net,
    # one thread, bf16: 0.57 s a frame against 0.69 for a rounded copy after every module, outputs bit-identical).
    hook = _round_in_place(dtype)
    for child in module.modules():
        if not isinstance(child, torch.nn.Sequential):
            child.register_forward_hook(hook)

    def run(image: np.ndarray, audio: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(rounded(torch.from_numpy(image)), rounded(torch.from_numpy(audio))).numpy()

    return run


def _round_in_place(dtype: Any) -> Callable[[Any, Any, Any], None]:
    """A forward hook that rounds a module's output tensor to `dtype` in place (its values stay float32)."""

    def hook(_module: Any, _inputs: Any, output: Any) -> None:
        output.copy_(output.to(dtype))

    return hook
