"""Demo weights: the listening test weights made for the built-in demo avatar and its speech, every command's default.

What they are and how they are made: `reference/listening_weights.py` (the U-Net reproduces the avatar's real crop
and opens a dark mouth between its lips as high as the speech around the frame is loud; weights for tests and
demos, not a SyncTalk model). Made on first use and cached under `<cache>/weights/<key>/` as original-layout
checkpoints (`unet_328_ave.pth`, `audio_visual_encoder.pth`, with `weights.json`), keyed by the demo's bytes and
this code, so everything downstream (exports, reference dumps) is keyed by their sha256 like any user's checkpoints.

History: the first demo weights (version 1) were a closed-form fit of the seeded U-Net to the demo avatar, deaf to
the audio (changing the audio window moved the output by 0.02 at most, and the mouth did not follow it); a full
Adam fit of the whole U-Net diverged at ~2 s a step. The listening weights replace them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..cache import cache_folder, key_of

DEMO_WEIGHTS_LABEL = "demo weights (listening test weights for the built-in demo avatar: the mouth follows the speech; not a SyncTalk model)"
DEMO_TEMPLATES = 8  # demo templates `demo_inputs` gives, spread over the avatar's


def demo_weights(note: Callable[[str], None] | None = None) -> tuple[Path, Path]:
    """`(unet_328_ave.pth, audio_visual_encoder.pth)` of the demo weights, made now when not cached."""
    from .listening_weights import listening_weights

    demo = _demo()
    return listening_weights(demo.dataset_dir, demo.audio_path, note)


def is_demo_weights(path: Path | str | None) -> bool:
    """Whether `path` is one of the cached demo checkpoints. A checkpoint outside the weights cache is not, decided
    without the demo: a run on a user's weights neither imports the demo's synthesiser (~0.5 s) nor makes the demo
    in an empty cache."""
    if path is None:
        return False
    folder = Path(path).resolve().parent
    if folder.parent != cache_folder("weights").resolve():
        return False
    return folder == _entry(_demo()).resolve()


def checkpoint_label(path: Path | str) -> str:
    """How a summary names a checkpoint, with its sha256: the demo weights by that name, listening weights made here by
    what their `weights.json` says, any other by path."""
    from ..cache import sha256_file
    from .listening_weights import read_about

    if is_demo_weights(path):
        name = DEMO_WEIGHTS_LABEL
    else:
        about = read_about(path)
        name = f"{path}: {about['what']}" if about else str(path)
    return f"{name} (sha256 {sha256_file(path)})"


def make_demo_weights(out_dir: Path) -> tuple[Path, Path]:
    """Make the demo weights into `out_dir` (not the cache): both checkpoints and `weights.json`."""
    from .listening_weights import make_listening_weights

    demo = _demo()
    made = make_listening_weights(demo.dataset_dir, demo.audio_path, out_dir, label=DEMO_WEIGHTS_LABEL)
    return made.unet, made.audio_encoder


def demo_inputs() -> tuple[Any, Any]:
    """U-Net inputs `(8, 6, 320, 320)` and audio windows `(8, 32, 16, 16)` (through the demo weights' encoder) of 8 demo
    templates spread over the avatar, paired with frames spread over the demo's speech (float32)."""
    import numpy as np
    import torch

    from ..models.checkpoints import load_audio_encoder
    from . import audio as A
    from . import frames as F
    from .dataset import open_dataset

    demo = _demo()
    dataset = open_dataset(demo.dataset_dir)
    chosen = np.linspace(0, dataset.template_count - 1, DEMO_TEMPLATES).round().astype(int)
    images = np.stack([F.unet_input(F.crop_328(dataset.templates[i].read_image(), dataset.templates[i].box)) for i in chosen])
    encoder = load_audio_encoder(demo_weights()[1])
    windows = A.mel_windows(A.mel_spectrogram(A.load_audio(demo.audio_path)))
    with torch.inference_mode():
        features = A.pad_features(A.encode_windows(lambda w: encoder(torch.from_numpy(w)).numpy(), windows))
    frames = np.linspace(0, len(features) - 1, DEMO_TEMPLATES).round().astype(int)
    audio = np.stack([A.unet_audio_window(features, int(i)) for i in frames])
    return images, audio


def _demo() -> Any:
    from .demo import make_demo

    return make_demo(cache_folder("demo"))


def _entry(demo: Any) -> Path:
    from .listening_weights import weights_key_parts

    return cache_folder("weights") / key_of(weights_key_parts(demo.dataset_dir, demo.audio_path))
