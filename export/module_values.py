"""The PyTorch side of `parity locate`: module paths from exporter scopes, and the values PyTorch modules compute.

A value is named by the module that makes or takes it: `ModuleValue("up3.conv.double_conv.0.conv.1", 0, "output")`
is the output of that module's first call in one forward pass; `"input"` is its first positional input. Values
are captured with forward (pre-)hooks on the eval-mode model and copied at once (the U-Net's ReLUs work in
place, so a BatchNorm output read later would already be rectified).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

ROOT = ""  # the path of the network itself


@dataclass(frozen=True)
class ModuleValue:
    module: str  # module path, ROOT for the network
    call: int  # 0-based call of that module within one forward pass
    kind: str  # "output" or "input"

    def describe(self, model: nn.Module) -> str:
        kind = type(_module(model, self.module)).__name__
        name = self.module or "the network"
        call = f" (call {self.call + 1})" if self.call else ""
        return f"{self.kind} of {name}{call} ({kind})"


def module_of_scope(model: nn.Module, scope: list[str]) -> tuple[str, int] | None:
    """The module path and call index that TorchScript-exporter scope segments name, or None when they name none.

    The exporter names a node `/down1/maxpool_conv/maxpool_conv.0/double_conv/.../Conv`: each segment is a child's
    attribute name, a Sequential's child is `<parent segment>.<index>`, and a module called again gets `_<n>`
    (`/audio_model/relu_1/Relu` is the second call of `audio_model.relu`)."""
    module, path, previous, call = model, [], None, 0
    for segment in scope:
        name = segment[len(previous) + 1:] if previous and segment.startswith(previous + ".") else segment
        children = dict(module.named_children())
        if name not in children:
            match = re.fullmatch(r"(.+)_(\d+)", name)
            if match is None or match[1] not in children:
                return None
            name, call = match[1], int(match[2])
        module = children[name]
        path.append(name)
        previous = segment
    return ".".join(path), call


def is_leaf(model: nn.Module, path: str) -> bool:
    return not any(True for _ in _module(model, path).children())


def folded_batchnorms(model: nn.Module, example: tuple[torch.Tensor, ...]) -> dict[str, str]:
    """Conv path -> the BatchNorm path that reads that conv's output directly (what exporters fold into the conv)."""
    names = {module: name for name, module in model.named_modules()}
    last: list = [None, None]  # (conv path, its output)
    folded: dict[str, str] = {}

    def on_conv(module, _inputs, output):
        last[:] = [names[module], output]

    def on_bn(module, inputs):
        if last[1] is not None and inputs[0] is last[1]:
            folded[last[0]] = names[module]

    hooks = [m.register_forward_hook(on_conv) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_pre_hook(on_bn) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    try:
        with torch.inference_mode():
            model.eval()(*example)
    finally:
        for hook in hooks:
            hook.remove()
    return folded


def capture(model: nn.Module, inputs: tuple[np.ndarray, ...], wanted: set[ModuleValue]) -> tuple[dict[ModuleValue, np.ndarray], np.ndarray]:
    """The `wanted` values (float32) of one forward pass of `model` on `inputs`, and the network output."""
    by_module: dict[str, list[ModuleValue]] = {}
    for value in wanted:
        by_module.setdefault(value.module, []).append(value)
    calls: dict[str, int] = {}
    found: dict[ModuleValue, np.ndarray] = {}
    hooks = []
    for name, module in model.named_modules():
        if name not in by_module or name == ROOT:
            continue
        values = by_module[name]

        def pre(module, args, name=name, values=values):
            call = calls.get(name, 0)
            for value in values:
                if value.kind == "input" and value.call == call:
                    found[value] = args[0].detach().to(torch.float32).numpy().copy()

        def post(module, _args, output, name=name, values=values):
            call = calls.get(name, 0)
            for value in values:
                if value.kind == "output" and value.call == call:
                    found[value] = output.detach().to(torch.float32).numpy().copy()
            calls[name] = call + 1

        hooks += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    try:
        with torch.inference_mode():
            output = model.eval()(*(torch.from_numpy(np.array(x, dtype=np.float32)) for x in inputs))
    finally:
        for hook in hooks:
            hook.remove()
    output_array = output.detach().to(torch.float32).numpy().copy()
    for value in by_module.get(ROOT, []):
        if value.kind == "output":
            found[value] = output_array
    missing = sorted(f"{v.kind} of {v.module or 'the network'} call {v.call}" for v in wanted - set(found))
    if missing:
        raise RuntimeError(f"PyTorch forward pass did not produce {', '.join(missing[:3])}")
    return found, output_array


def _module(model: nn.Module, path: str) -> nn.Module:
    return model.get_submodule(path) if path else model
