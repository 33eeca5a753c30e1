"""The stage contract: every pipeline (reference, a backend's fast pipeline, a Go or Swift port)
produces these named stages, so any two runs can be compared stage by stage (DESIGN.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Stage:
    name: str
    per: str  # "clip" or "frame"
    shape: str  # symbolic: S samples, T mel frames, N windows, h/w crop box size, H/W frame size
    dtype: str
    description: str


STAGES: tuple[Stage, ...] = (
    Stage("audio.pcm", "clip", "(S,)", "float32", "16 kHz mono PCM"),
    Stage("audio.mel", "clip", "(T, 80)", "float64", "normalized log-mel, time-major"),
    Stage("audio.windows", "clip", "(N, 1, 80, 16)", "float32", "audio encoder inputs"),
    Stage("audio.features", "clip", "(N + 2, 512)", "float32", "encoder outputs, first/last row repeated"),
    Stage("frame.template_index", "frame", "()", "int64", "template used (ping-pong schedule)"),
    Stage("frame.crop_box", "frame", "(4,)", "int64", "xmin, ymin, xmax, ymax"),
    Stage("frame.crop_328", "frame", "(328, 328, 3)", "uint8", "crop resized with bicubic, BGR"),
    Stage("frame.unet_audio", "frame", "(32, 16, 16)", "float32", "feature rows i-8..i+7"),
    Stage("frame.unet_input", "frame", "(6, 320, 320)", "float32", "real + masked, BGR, /255"),
    Stage("frame.unet_output", "frame", "(3, 320, 320)", "float32", "U-Net output in [0, 1], BGR"),
    Stage("frame.mouth", "frame", "(320, 320, 3)", "uint8", "U-Net output * 255, truncated"),
    Stage("frame.pasted_region", "frame", "(h, w, 3)", "uint8", "crop with mouth, resized back to the box"),
    Stage("frame.output", "frame", "(H, W, 3)", "uint8", "the output frame, BGR"),
)
STAGE_NAMES = tuple(s.name for s in STAGES)
CLIP_STAGES = tuple(s.name for s in STAGES if s.per == "clip")
FRAME_STAGES = tuple(s.name for s in STAGES if s.per == "frame")


@dataclass
class ClipStages:
    """The clip-level stages of one run."""

    pcm: np.ndarray
    mel: np.ndarray
    windows: np.ndarray
    features: np.ndarray

    @property
    def frame_count(self) -> int:
        return len(self.features)

    def as_dict(self) -> dict[str, np.ndarray]:
        return {"audio.pcm": self.pcm, "audio.mel": self.mel, "audio.windows": self.windows, "audio.features": self.features}


@dataclass
class FrameStages:
    """The per-frame stages of output frame `index`."""

    index: int
    template_index: int
    crop_box: tuple[int, int, int, int]
    crop_328: np.ndarray
    unet_audio: np.ndarray
    unet_input: np.ndarray
    unet_output: np.ndarray
    mouth: np.ndarray
    pasted_region: np.ndarray
    output: np.ndarray
    # not a stage: the decoded template the output was pasted on (read-only, shared with the pipeline's template cache),
    # so what follows the frame (the lip sync's motion) need not decode it again; None where the maker did not keep it
    template: np.ndarray | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, np.ndarray]:
        return {
            "frame.template_index": np.asarray(self.template_index, dtype=np.int64),
            "frame.crop_box": np.asarray(self.crop_box, dtype=np.int64),
            "frame.crop_328": self.crop_328,
            "frame.unet_audio": self.unet_audio,
            "frame.unet_input": self.unet_input,
            "frame.unet_output": self.unet_output,
            "frame.mouth": self.mouth,
            "frame.pasted_region": self.pasted_region,
            "frame.output": self.output,
        }
