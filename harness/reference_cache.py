"""The reference result of a run's inputs, computed once with the eager reference and cached on disk.

A candidate run is compared with a reference dump of the same stages and frames. Making it means
running eager PyTorch one frame at a time (`reference/pipeline.py`), which is slow, so the dump
is kept under `<cache>/reference/<key>/`, the key a sha256 of everything that decides it: audio
bytes, dataset files, weights, reference version, frame range, stage selection and dump spacing.

    dump, cached = reference_dump(ReferenceInputs(dataset, audio, None, None, frames=100, ...))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..backends.exports import FIXTURE_WEIGHTS
from ..cache import cache_folder, key_of, sha256_file
from ..models import load_models
from ..reference.audio import load_audio
from ..reference.dataset import IMAGE_DIR, LANDMARK_DIR, open_dataset
from ..reference.pipeline import REFERENCE_VERSION, ReferencePipeline
from .verdict.dump import DumpWriter

PRODUCER = {"name": "synctalk-parity reference", "version": __version__, "backend": "torch-eager", "precision": "fp32"}

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ReferenceInputs:
    """What decides a reference dump. `frames` is the number of output frames actually made."""

    dataset: Path
    audio: Path
    unet: Path | None
    audio_encoder: Path | None
    frames: int
    start_frame: int
    stages: frozenset[str]
    dump_every: int


@dataclass(frozen=True)
class ReferenceResult:
    dump: Path
    cached: bool  # True when an earlier run made it
    key: str


def reference_dump(inputs: ReferenceInputs, progress: Progress | None = None) -> ReferenceResult:
    """The reference dump of `inputs` under `<cache>/reference/<key>`, made now unless already there."""
    key = reference_key(inputs)
    folder = cache_folder("reference") / key
    if (folder / "manifest.json").is_file():
        return ReferenceResult(folder, True, key)
    write_reference_dump(inputs, folder, progress)
    return ReferenceResult(folder, False, key)


def write_reference_dump(inputs: ReferenceInputs, folder: Path, progress: Progress | None = None) -> Path:
    """Run the eager reference on `inputs` and write its dump to `folder` (atomically)."""
    unet, encoder, _ = load_models(inputs.unet, inputs.audio_encoder)
    reference = ReferencePipeline(unet, encoder)
    dataset = open_dataset(inputs.dataset, inputs.start_frame)
    clip = reference.audio_stages(load_audio(inputs.audio), source=str(inputs.audio))
    total = min(inputs.frames, clip.frame_count)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with DumpWriter(folder, PRODUCER, total, inputs.stages) as writer:
        writer.add_clip(clip.as_dict())
        for stages in reference.frames(dataset, clip, total):
            writer.add_frame(stages.index, stages.as_dict(), heavy=heavy_frame(stages.index, inputs.dump_every))
            if progress:
                progress(stages.index + 1, total)
    return folder


def heavy_frame(index: int, dump_every: int) -> bool:
    """Whether heavy stages are dumped for output frame `index`: every `dump_every`-th, frame 0 always."""
    return index % max(1, dump_every) == 0


def reference_key(inputs: ReferenceInputs) -> str:
    """The cache key of everything that decides the reference dump."""
    parts = {
        "reference_version": REFERENCE_VERSION,
        "audio": sha256_file(inputs.audio),
        "dataset": dataset_fingerprint(Path(inputs.dataset)),
        "unet": sha256_file(inputs.unet) if inputs.unet is not None else FIXTURE_WEIGHTS,
        "audio_encoder": sha256_file(inputs.audio_encoder) if inputs.audio_encoder is not None else FIXTURE_WEIGHTS,
        "frames": inputs.frames,
        "start_frame": inputs.start_frame,
        "stages": sorted(inputs.stages),
        "dump_every": inputs.dump_every,
    }
    return key_of(parts)


def dataset_fingerprint(path: Path) -> list[list]:
    """Name, size and sha256 of every image and landmark file of a dataset (a folder, or a video
    with its landmarks folder beside it)."""
    if path.is_file():
        landmark_dir = next((d for d in (path.parent / LANDMARK_DIR, path.with_suffix("") / LANDMARK_DIR) if d.is_dir()), None)
        files = [path] + (sorted(landmark_dir.iterdir()) if landmark_dir else [])
    else:
        files = [f for folder in (IMAGE_DIR, LANDMARK_DIR) if (path / folder).is_dir() for f in sorted((path / folder).iterdir())]
    return [[f"{f.parent.name}/{f.name}", f.stat().st_size, sha256_file(f)] for f in files if f.is_file()]
