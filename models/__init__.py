"""PyTorch models of SyncTalk_2D with the original module names, checkpoint I/O and fixture weights.

The names below are imported on first use (PEP 562), so `models.shapes` (and anything that needs only the
shapes) imports without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "AUDIO_INPUT_SHAPES": "shapes",
    "AUDIO_MODES": "shapes",
    "AudioEncoder": "audio_encoder",
    "Model": "unet",
    "fixture_audio_encoder": "fixtures",
    "fixture_unet": "fixtures",
    "load_audio_encoder": "checkpoints",
    "load_models": "checkpoints",
    "load_unet": "checkpoints",
    "read_state_dict": "checkpoints",
    "save_audio_encoder": "checkpoints",
    "save_unet": "checkpoints",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
