"""The one interface every runtime implements: load, encode audio windows, generate mouths, close.

Modelled on Polygraphy's runner layering: this base class owns the public methods (state checks,
input validation); a backend module writes only the `_*_impl` methods and `available()`.
Backends know tensors only, never images or audio files.

    with OnnxRuntimeBackend(ModelSource(export_dir=path)) as backend:
        features = backend.encode_audio(windows)        # (B,1,80,16) -> (B,512)
        mouths = backend.generate(images, unet_audio)   # (B,6,320,320) + (B,32,16,16) -> (B,3,320,320)
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..errors import ParityError
from ..models.shapes import AUDIO_INPUT_SHAPES, IMAGE_INPUT_SHAPE, WINDOW_SHAPE

if TYPE_CHECKING:
    from ..export.check_inputs import CheckInputsMaker


@dataclass(frozen=True)
class ModelSource:
    """Where a backend gets its networks: an export folder, checkpoints, or (neither) fixture weights.

    `unet` and `audio_encoder` are original-layout `.pth` files; `export_dir` is a folder written
    by `parity export`. A backend that needs an exported artifact and is given checkpoints may
    export them itself, checked on what `check_inputs` makes (the harness gives the demo's real inputs).
    """

    unet: Path | None = None
    audio_encoder: Path | None = None
    export_dir: Path | None = None
    mode: str = "ave"
    precision: str = "fp32"
    check_inputs: CheckInputsMaker | None = field(default=None, compare=False)  # for an export made here; see export/check_inputs.py

    @classmethod
    def from_paths(
        cls,
        unet: str | os.PathLike | None = None,
        audio_encoder: str | os.PathLike | None = None,
        export_dir: str | os.PathLike | None = None,
        mode: str = "ave",
        precision: str = "fp32",
        check_inputs: CheckInputsMaker | None = None,
    ) -> ModelSource:
        as_path = lambda p: None if p is None else Path(p)
        return cls(as_path(unet), as_path(audio_encoder), as_path(export_dir), mode, precision, check_inputs)


class Backend(ABC):
    """Base of every runtime backend. Subclasses set `name` and implement the `_*_impl` methods."""

    name: ClassVar[str]
    description: ClassVar[str] = ""

    def __init__(self, source: ModelSource | None = None, **options):
        self.source = source or ModelSource()
        self.options = options
        self._loaded = False

    # ----- what a backend implements -------------------------------------------------------
    @classmethod
    @abstractmethod
    def available(cls) -> str | None:
        """None when this backend can run here, else one line: what is missing and how to get it."""

    @abstractmethod
    def _load_impl(self) -> None: ...

    @abstractmethod
    def _encode_audio_impl(self, windows: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _generate_impl(self, image: np.ndarray, audio: np.ndarray) -> np.ndarray: ...

    def _close_impl(self) -> None:  # noqa: B027 (an optional hook: most runtimes need no clean-up)
        """Release runtime resources (sessions, engines, device memory)."""

    def preferred_batch(self) -> int:
        """The U-Net batch the pipeline uses when none is asked for: where the runtime gains from batches."""
        return 4

    def streams(self) -> int:
        """How many `generate` calls the pipeline may have running at once, each from its own thread (1: one at a
        time). A backend answers more than 1 only where its runtime runs concurrent calls safely and gains from it."""
        return 1

    def describe(self) -> dict[str, str]:
        """What actually runs: device, execution provider, precision... (shown in reports)."""
        return {"backend": self.name, "precision": self.source.precision}

    # ----- the public interface (do not override) --------------------------------------------
    def load(self) -> Backend:
        if self._loaded:
            return self
        reason = type(self).available()
        if reason:
            raise ParityError(f"backend {self.name!r} is not available: {reason}")
        self._load_impl()
        self._loaded = True
        return self

    def encode_audio(self, windows: np.ndarray) -> np.ndarray:
        """Mel windows `(B, 1, 80, 16)` float32 to audio features `(B, 512)` float32."""
        self._check_loaded()
        windows = _as_batch(windows, WINDOW_SHAPE, "audio windows")
        out = np.asarray(self._encode_audio_impl(windows), dtype=np.float32)
        if out.shape != (windows.shape[0], 512):
            raise RuntimeError(f"{self.name}: audio encoder returned {out.shape}, expected {(windows.shape[0], 512)}")
        return out

    def generate(self, image: np.ndarray, audio: np.ndarray) -> np.ndarray:
        """U-Net inputs `(B, 6, 320, 320)` + `(B, *audio shape)` to mouths `(B, 3, 320, 320)` in [0, 1]."""
        self._check_loaded()
        image = _as_batch(image, IMAGE_INPUT_SHAPE, "U-Net image input")
        audio = _as_batch(audio, AUDIO_INPUT_SHAPES[self.source.mode], "U-Net audio input")
        if image.shape[0] != audio.shape[0]:
            raise ParityError(f"U-Net inputs disagree on batch size: image {image.shape[0]}, audio {audio.shape[0]}")
        out = np.asarray(self._generate_impl(image, audio), dtype=np.float32)
        if out.shape != (image.shape[0], 3, 320, 320):
            raise RuntimeError(f"{self.name}: U-Net returned {out.shape}, expected {(image.shape[0], 3, 320, 320)}")
        return out

    def close(self) -> None:
        if self._loaded:
            self._close_impl()
            self._loaded = False

    def __enter__(self) -> Backend:
        return self.load()

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_loaded(self) -> None:
        if not self._loaded:
            raise RuntimeError(f"backend {self.name!r} used before load()")


def _as_batch(array: np.ndarray, item_shape: tuple[int, ...], what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != len(item_shape) + 1 or tuple(array.shape[1:]) != tuple(item_shape):
        raise ParityError(f"{what}: expected shape (B, {', '.join(map(str, item_shape))}), got {tuple(array.shape)}")
    if array.shape[0] < 1:
        raise ParityError(f"{what}: empty batch")
    return np.ascontiguousarray(array, dtype=np.float32)
