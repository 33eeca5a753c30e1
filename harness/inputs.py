"""The inputs a command runs on: the dataset, audio and checkpoints given, else the built-in demo's, checked once.

    inputs = resolve_inputs(dataset, audio, unet, audio_encoder, note=say)
    inputs.dataset, inputs.audio          # the given clip, or the demo's avatar and speech (inputs.demo)
    inputs.unet, inputs.audio_encoder     # the given checkpoints, or the demo weights (inputs.demo_weights)
    images, unet_audio, windows = network_inputs(inputs.dataset, inputs.audio, encode, frames=4)

Every command that takes `--dataset --audio --unet --audio-encoder` resolves them here, so one set of rules
holds for all of them, before any work: `--dataset` and `--audio` come together or not at all (then the demo's
avatar and speech); so do the checkpoints of the networks a command runs (then the demo weights, fit to the demo
avatar for the `ave` audio branch; another branch gets fixture weights); every path given exists.
`network_inputs` makes the networks' real inputs from a clip as the reference pipeline does: what the export-time
checks, `parity locate` and `parity bench` feed the networks.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ParityError

if TYPE_CHECKING:
    import numpy as np

    from ..export.check_inputs import CheckInputs

NETWORKS = ("unet", "audio_encoder")
FLAGS = {"dataset": "--dataset", "audio": "--audio", "unet": "--unet", "audio_encoder": "--audio-encoder"}
DEMO_SECONDS = 4.0  # the demo's speech: 97 output frames at 25 fps
CHECK_FRAMES = 4  # the export-time check runs batches 1 and 4

Note = Callable[[str], None]
PathLike = str | os.PathLike


@dataclass(frozen=True)
class Inputs:
    """What a command runs on, resolved: paths that exist, or the demo's."""

    dataset: Path | None  # None only for a command that reads no clip (clip=False)
    audio: Path | None
    unet: Path | None  # None: the command loads no checkpoint (an export runs), or fixture weights (an audio branch without demo weights)
    audio_encoder: Path | None
    demo: bool  # dataset and audio are the built-in demo's
    labels: dict[str, str]  # per input (dataset, audio, unet, audio_encoder): how a summary names it

    @property
    def demo_weights(self) -> bool:
        """Whether a checkpoint run is the demo weights (omitted, or given by its path in the cache)."""
        from ..reference.demo_weights import is_demo_weights

        return is_demo_weights(self.unet) or is_demo_weights(self.audio_encoder)


def resolve_inputs(dataset: PathLike | None = None, audio: PathLike | None = None, unet: PathLike | None = None,
                   audio_encoder: PathLike | None = None, *, clip: bool = True, networks: tuple[str, ...] = NETWORKS,
                   mode: str = "ave", demo_seconds: float = DEMO_SECONDS, cache: Path | None = None, note: Note | None = None) -> Inputs:
    """The inputs given, checked, else the demo's (made on first use, then cached).

    `clip`: make the demo's dataset and audio when none are given (False: the command reads no clip, e.g. it takes
    a dump, or makes the demo later at the length it needs; the paths given are checked all the same).
    `networks`: the networks whose checkpoints the command runs (() when an export runs instead; a path given is
    checked all the same): given together or not at all; any checkpoint omitted is then the demo weights'.
    `mode`: the U-Net's audio branch (the demo weights fit `ave`; another branch's omitted checkpoints stay None:
    fixture weights). `demo_seconds` and `cache` (a cache root): how long the demo's speech is, where it lives.
    """
    given = {"dataset": dataset, "audio": audio, "unet": unet, "audio_encoder": audio_encoder}
    if (dataset is None) != (audio is None):
        raise ParityError("pass both --dataset and --audio, or neither for the built-in demo's avatar and speech")
    for name, path in given.items():
        if path is not None and not Path(path).exists():
            what = "checkpoint" if name in NETWORKS else "dataset" if name == "dataset" else "audio file"
            raise ParityError(f"{FLAGS[name]} {path}: {what} not found")
    omitted = [name for name in networks if given[name] is None]
    if omitted and len(omitted) < len(networks):
        missing, present = FLAGS[omitted[0]], FLAGS[next(n for n in networks if n not in omitted)]
        raise ParityError(f"{present} without {missing}: pass the checkpoints of one model together, or neither for the demo weights")
    paths = {name: None if path is None else Path(path) for name, path in given.items()}
    labels = {name: str(path) for name, path in paths.items() if path is not None}
    demo = clip and dataset is None
    if demo:
        made = demo_clip(demo_seconds, cache)
        paths["dataset"], paths["audio"] = made
        labels["dataset"], labels["audio"] = f"the built-in demo's avatar ({made[0]})", f"the built-in demo's speech ({made[1]})"
    if networks and any(paths[name] is None for name in NETWORKS) and mode == "ave":  # those not given: the demo weights
        from ..reference.demo_weights import DEMO_WEIGHTS_LABEL, demo_weights

        for name, path in zip(NETWORKS, demo_weights(note)):
            if paths[name] is None:
                paths[name], labels[name] = path, f"the {DEMO_WEIGHTS_LABEL} ({path})"
    for name in NETWORKS:
        labels.setdefault(name, "fixture weights (seed 0)" if name in networks else "not loaded")
    return Inputs(paths["dataset"], paths["audio"], paths["unet"], paths["audio_encoder"], demo, labels)


def demo_clip(seconds: float = DEMO_SECONDS, cache: Path | None = None) -> tuple[Path, Path]:
    """The built-in demo's dataset and audio (`seconds` long), made once under the cache root (or `cache`)."""
    from ..cache import cache_root
    from ..reference.demo import make_demo

    folder = (cache or cache_root()) / ("demo" if seconds == DEMO_SECONDS else f"demo-{seconds:g}s")
    made = make_demo(folder, seconds=seconds)
    return made.dataset_dir, made.audio_path


def network_inputs(dataset: Path, audio: Path, encode: Callable[[np.ndarray], np.ndarray], frames: int,
                   start_frame: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first `frames` output frames' U-Net images `(F, 6, 320, 320)` and audio windows `(F, 32, 16, 16)`, and
    the clip's mel windows `(N, 1, 80, 16)`, all float32, made as the reference pipeline makes them; `encode` is
    the audio encoder (mel windows -> features)."""
    import numpy as np

    from ..reference import audio as audio_stages
    from ..reference import frames as frame_stages
    from ..reference.dataset import open_dataset

    windows = audio_stages.mel_windows(audio_stages.mel_spectrogram(audio_stages.load_audio(audio)), str(audio))
    features = audio_stages.pad_features(audio_stages.encode_windows(encode, windows))
    clip = open_dataset(dataset, start_frame)
    count = min(frames, len(features))
    images, unet_audio = [], []
    for index, template_index in enumerate(clip.schedule(count)):
        template = clip.templates[template_index]
        images.append(frame_stages.unet_input(frame_stages.crop_328(template.read_image(), template.box)))
        unet_audio.append(audio_stages.unet_audio_window(features, index))
    as_float = lambda arrays: np.ascontiguousarray(np.stack(arrays), dtype=np.float32)
    return as_float(images), as_float(unet_audio), np.ascontiguousarray(windows, dtype=np.float32)


def eager_encoder(audio_encoder) -> Callable[[np.ndarray], np.ndarray]:
    """`audio_encoder` (a PyTorch module) as a function of mel windows, run eagerly in inference mode."""
    import torch

    def encode(windows: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return audio_encoder.eval()(torch.from_numpy(windows)).numpy()

    return encode


def demo_check_inputs(audio_encoder) -> CheckInputs:
    """Export-time check inputs from the built-in demo: its first frames' U-Net inputs (audio windows from
    `audio_encoder`, the network being exported, in eager PyTorch) and mel windows spread over its speech."""
    import numpy as np

    from ..export.check_inputs import CheckInputs

    dataset, audio = demo_clip()
    images, unet_audio, windows = network_inputs(dataset, audio, eager_encoder(audio_encoder), CHECK_FRAMES)
    spread = np.linspace(0, len(windows) - 1, CHECK_FRAMES).round().astype(int)
    return CheckInputs("demo", images, unet_audio, windows[spread])
