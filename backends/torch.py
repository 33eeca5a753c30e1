"""Eager PyTorch: the networks as they were trained, on the CPU unless CUDA is asked for.

Option `device`: "cpu" (the default, also when a GPU is present), "cuda" or "cuda:N". Weights come
from the source's checkpoints; a network without one uses fixture weights, and `describe()` says
which. fp16 runs only on CUDA.
"""

from __future__ import annotations

import re

import numpy as np
import torch

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
        unet, encoder, self.weights = source_models(self.source)
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
        return info

    def _run(self, model: torch.nn.Module, *arrays: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            tensors = [torch.from_numpy(np.array(a, dtype=np.float32)).to(self.device, self.dtype) for a in arrays]
            return model(*tensors).float().cpu().numpy()
