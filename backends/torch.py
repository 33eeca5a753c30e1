"""Eager PyTorch: the networks as they were trained, on the CPU unless CUDA is asked for.

Option `device`: "cpu" (the default, also when a GPU is present), "cuda" or "cuda:N". Weights come
from the source's checkpoints; a network without one uses fixture weights, and `describe()` says
which. fp16 runs only on CUDA.

fp32 on CUDA means IEEE fp32. PyTorch lets cuDNN run fp32 convolutions in TF32 by default (a 10-bit
mantissa, on Ampere and later GPUs), which is not what the fp32 gate (1e-4 on the network outputs) judges:
loading fp32 on CUDA turns TF32 off for convolutions and matmuls (`strict_fp32`; process-wide, PyTorch has no
per-model switch), and `describe()` records `tf32: off`.

fp16 runs the networks with each BatchNorm folded into the convolution before it (`fold_batchnorm`), as the
ONNX and Core ML exporters do, then cast to float16: a separate fp16 BatchNorm rounds every activation once more.
"""

from __future__ import annotations

import copy
import re
from itertools import pairwise

import numpy as np
import torch
from torch import nn

from ..errors import ParityError
from ..models import load_models
from .base import Backend, ModelSource


def source_models(source: ModelSource) -> tuple[torch.nn.Module, torch.nn.Module, dict[str, str]]:
    """The U-Net and audio encoder of `source`'s checkpoints (fixture weights where none is given), eval, CPU,
    and where each came from."""
    if source.export_dir is not None and source.unet is None and source.audio_encoder is None:
        raise ParityError(f"{source.export_dir}: an export folder holds no PyTorch weights; pass --unet and --audio-encoder checkpoints")
    return load_models(source.unet, source.audio_encoder, source.mode)


def torch_device(choice: str | None) -> torch.device:
    """The device for option `device` (None: the CPU, never picked by what hardware is present), or a
    `ParityError` when it is not cpu, cuda or cuda:N, or names a GPU torch does not see."""
    device = choice or "cpu"
    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise ParityError(f"unknown torch device {device!r}: choose from cpu, cuda, cuda:N")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ParityError(f"device {device!r} requested but torch {torch.__version__} sees no CUDA GPU; use device='cpu'")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ParityError(f"device {device!r} requested but torch sees {torch.cuda.device_count()} CUDA GPU(s); use cuda:0")
    return torch.device(device)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of `model` (eval) with every BatchNorm2d folded into the Conv2d registered just before it in the same
    module (a Sequential's conv, bn, or attribute pairs such as `conv3`, `bn3`), the BatchNorm replaced by Identity.

    A BatchNorm that does not follow a conv is an error: these networks have none, and another network would
    need its own rule."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = copy.deepcopy(model).eval()
    for module in list(model.modules()):
        for (name, child), (next_name, following) in pairwise(list(module.named_children())):
            if isinstance(child, nn.Conv2d) and isinstance(following, nn.BatchNorm2d):
                setattr(module, name, fuse_conv_bn_eval(child, following))
                setattr(module, next_name, nn.Identity())
    left = [name for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    if left:
        raise ParityError(f"fold_batchnorm: {type(model).__name__} has BatchNorm layers not after a conv: {', '.join(left[:3])}")
    return model


def strict_fp32() -> None:
    """fp32 convolutions and matmuls on CUDA in IEEE fp32, not TF32 (cuDNN convolutions default to TF32).

    The new API (torch 2.9+) where it exists: once it is used, reading the legacy `allow_tf32` flags raises."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        conv.fp32_precision = "ieee"
        torch.backends.cuda.matmul.fp32_precision = "ieee"
    else:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


def tf32_state() -> str:
    """"on" or "off": whether cuDNN convolutions may run fp32 in TF32 now (new API: "none" defers to the parent)."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        for level in (conv, torch.backends.cudnn, torch.backends):
            setting = getattr(level, "fp32_precision", "none")
            if setting != "none":
                return "on" if setting == "tf32" else "off"
        return "off"
    return "on" if torch.backends.cudnn.allow_tf32 else "off"


class TorchBackend(Backend):
    """Options: `device` (cpu, cuda, cuda:N; default cpu)."""

    name = "torch"
    description = "eager PyTorch (CPU, or CUDA when asked for)"

    @classmethod
    def available(cls) -> str | None:
        return None  # torch is a dependency of the package

    def _load_impl(self) -> None:
        device = torch_device(self.options.get("device"))
        if self.source.precision not in ("fp32", "fp16"):
            raise ParityError(f"torch backend runs fp32 or fp16, not {self.source.precision!r}")
        if self.source.precision == "fp16" and device.type != "cuda":
            raise ParityError("torch backend runs fp16 only on CUDA; use precision fp32 on the CPU, or device='cuda'")
        self.device = device
        self.dtype = torch.float16 if self.source.precision == "fp16" else torch.float32
        if device.type == "cuda" and self.dtype == torch.float32:
            strict_fp32()
        unet, encoder, self.weights = source_models(self.source)
        if self.dtype == torch.float16:
            unet, encoder = fold_batchnorm(unet), fold_batchnorm(encoder)
        self.unet = unet.to(self.device, self.dtype)
        self.audio_encoder = encoder.to(self.device, self.dtype)

    def _encode_audio_impl(self, windows: np.ndarray) -> np.ndarray:
        return self._run(self.audio_encoder, windows)

    def _generate_impl(self, image: np.ndarray, audio: np.ndarray) -> np.ndarray:
        return self._run(self.unet, image, audio)

    def _close_impl(self) -> None:
        del self.unet, self.audio_encoder
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def describe(self) -> dict[str, str]:
        """Backend, precision, device, torch and numpy versions, and where each network's weights came from."""
        info = super().describe()
        if self._loaded:
            info.update(device=str(self.device), torch=torch.__version__, numpy=np.__version__,
                        unet_weights=self.weights["unet"], audio_encoder_weights=self.weights["audio_encoder"])
            if self.device.type == "cuda":
                info["tf32"] = tf32_state()
        return info

    def _run(self, model: torch.nn.Module, *arrays: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            tensors = [torch.from_numpy(np.array(a, dtype=np.float32)).to(self.device, self.dtype) for a in arrays]
            return model(*tensors).float().cpu().numpy()
