"""Where the golden outputs of the original script live, for the tests only, and the real network inputs they hold.

`golden_dir()` finds the folder (env `SYNCTALK_PARITY_GOLDEN`, else `../shared/golden` beside this checkout);
`golden_inputs()` returns real U-Net and audio-encoder inputs from it and `golden_check_inputs` the same as the
export-time checks take them. The product never looks for this folder: a result must not depend on where a
clone lies (tests/test_layout.py checks that no package module looks for `shared`).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

GOLDEN_ENV = "SYNCTALK_PARITY_GOLDEN"
_DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "golden"
_SUBSET = "original/subset_frames.npz"
_AUDIO = "original/audio.npz"


def golden_dir() -> Path | None:
    """The golden folder, or None when it is not here (the env var wins over the default)."""
    path = Path(os.environ.get(GOLDEN_ENV) or _DEFAULT)
    if (path / _SUBSET).is_file() and (path / _AUDIO).is_file():
        return path
    return None


def golden_weights() -> tuple[Path, Path] | None:
    """The golden fixture checkpoints `(unet_328_ave.pth, audio_visual_encoder.pth)`, or None."""
    root = golden_dir()
    if root is None:
        return None
    unet, encoder = root / "weights" / "unet_328_ave.pth", root / "weights" / "audio_visual_encoder.pth"
    return (unet, encoder) if unet.is_file() and encoder.is_file() else None


def golden_inputs() -> dict[str, np.ndarray]:
    """Real inputs: `unet_input` (N,6,320,320), `audio_window` (N,32,16,16) for the saved frames
    (mode `ave`) and `mel_windows` (247,1,80,16), all float32. Empty when there is no golden folder."""
    root = golden_dir()
    return {} if root is None else dict(_read_inputs(str(root)))


def golden_check_inputs(audio_encoder=None):
    """The golden inputs as the export-time checks take them (`export_models(..., check_inputs=golden_check_inputs)`):
    the original script's own U-Net inputs (its audio encoder's windows, whatever encoder is exported)."""
    from synctalk_parity.export.check_inputs import CheckInputs

    inputs = golden_inputs()
    return CheckInputs("golden", inputs["unet_input"], inputs["audio_window"], inputs["mel_windows"])


@lru_cache(maxsize=2)
def _read_inputs(root: str) -> tuple[tuple[str, np.ndarray], ...]:
    with np.load(Path(root) / _SUBSET) as subset:
        frames = sorted({key.split("__")[0] for key in subset.files}, key=int)
        unet_input = np.stack([subset[f"{i}__unet_input"] for i in frames]).astype(np.float32)
        audio_window = np.stack([subset[f"{i}__audio_window"] for i in frames]).astype(np.float32)
    with np.load(Path(root) / _AUDIO) as audio:
        mel_windows = audio["mel_windows"].astype(np.float32)
    for array in (unet_input, audio_window, mel_windows):
        array.setflags(write=False)
    return (("unet_input", unet_input), ("audio_window", audio_window), ("mel_windows", mel_windows))
