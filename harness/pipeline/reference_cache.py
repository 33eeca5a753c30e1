"""The reference result of a run's inputs, computed once with the eager reference and cached on disk.

A candidate run is compared with a reference dump of the same stages and frames. Making it means
running eager PyTorch one frame at a time (`reference/pipeline.py`), which is slow, so the dump is
kept under `<cache>/reference/<key>/dump/`, the key a sha256 of everything that can change its bytes:
the inputs (audio bytes, dataset files, weights, frame range, stage selection, dump spacing) and the
environment (`cache.environment`: package version, a digest of the models/ and reference/ code,
torch, numpy, SciPy, OpenCV, librosa, soundfile and soxr versions, `ONEDNN_MAX_CPU_ISA`, the CPU's
instruction set, and the audio decoder with its version). An entry is checked before reuse (every
file present with its recorded size and sha256); a damaged one is made again, and so is one whose
environment changed, each with a note saying why.

    result = reference_dump(ReferenceInputs(dataset, audio, None, None, frames=100, ...))
    result.dump, result.cached, result.note, result.mouth_motion

Beside the dump the entry keeps the mouth motion of every output frame (`mouth_motion.npy`: the mouth box's
darkening against its template, `harness/verdict/lip_sync.py`), measured while the frames are made, so that a run's
lip sync compares with the reference's whatever stages and frames its dump holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ... import __version__
from ...backends.exports import FIXTURE_WEIGHTS
from ...cache import REFERENCE_LIBRARIES, build_entry, cache_folder, check_entry, entries, environment, key_of, read_entry, sha256_file
from ...reference.dataset import IMAGE_DIR, LANDMARK_DIR
from ..verdict.dump import DumpWriter
from ..verdict.lip_sync import MotionRecorder

PRODUCER = {"name": "synctalk-parity reference", "version": __version__, "backend": "torch-eager", "precision": "fp32"}

Progress = Callable[[int, int], None]
MOUTH_MOTION = "mouth_motion.npy"  # beside the dump: one float per output frame
OUTPUTS = "dump + mouth motion"  # what an entry holds: part of its key, so entries made before the motion are made again


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
    note: str | None = None  # why it was made again, when an entry for the same inputs existed

    @property
    def mouth_motion(self) -> Path:
        """The reference's mouth motion, one value per output frame (`MOUTH_MOTION` beside the dump)."""
        return self.dump.parent / MOUTH_MOTION


def reference_dump(inputs: ReferenceInputs, progress: Progress | None = None) -> ReferenceResult:
    """The reference dump of `inputs` under `<cache>/reference/<key>/dump`, made now unless a valid entry is there."""
    parts = reference_parts(inputs)
    key = key_of(parts)
    folder = cache_folder("reference") / key
    note = None
    if folder.exists():
        problem = check_entry(folder)
        if problem is None:
            return ReferenceResult(folder / "dump", True, key)
        note = f"cached reference {key} is damaged ({problem}); computing it again"
    else:
        note = _changed_environment(parts)
    build_entry(folder, "reference", _what(inputs), parts, lambda tmp: write_reference_dump(inputs, tmp / "dump", progress))
    return ReferenceResult(folder / "dump", False, key, note)


def write_reference_dump(inputs: ReferenceInputs, folder: Path, progress: Progress | None = None) -> Path:
    """Run the eager reference on `inputs` and write its dump to `folder` (atomically), and its mouth motion beside it."""
    from ...models import load_models
    from ...reference.audio import load_audio
    from ...reference.dataset import open_dataset
    from ...reference.pipeline import ReferencePipeline

    unet, encoder, _ = load_models(inputs.unet, inputs.audio_encoder)
    reference = ReferencePipeline(unet, encoder)
    dataset = open_dataset(inputs.dataset, inputs.start_frame)
    clip = reference.audio_stages(load_audio(inputs.audio), source=str(inputs.audio))
    total = min(inputs.frames, clip.frame_count)
    folder.parent.mkdir(parents=True, exist_ok=True)
    motion = MotionRecorder()
    with DumpWriter(folder, PRODUCER, total, inputs.stages) as writer:
        writer.add_clip(clip.as_dict())
        for stages in reference.frames(dataset, clip, total):
            writer.add_frame(stages.index, stages.as_dict(), heavy=heavy_frame(stages.index, inputs.dump_every))
            motion.add(stages.index, stages.output, stages.crop_box, stages.template_index)
            if progress:
                progress(stages.index + 1, total)
    np.save(folder.parent / MOUTH_MOTION, motion.motion(dataset), allow_pickle=False)
    return folder


def heavy_frame(index: int, dump_every: int) -> bool:
    """Whether heavy stages are dumped for output frame `index`: every `dump_every`-th, frame 0 always."""
    return index % max(1, dump_every) == 0


def reference_key(inputs: ReferenceInputs) -> str:
    """The cache key of everything that decides the reference dump."""
    return key_of(reference_parts(inputs))


def reference_parts(inputs: ReferenceInputs) -> dict[str, Any]:
    """Everything that decides the reference dump: its inputs, and the environment that computes it."""
    from ...reference.audio import audio_decoder
    from ...reference.pipeline import REFERENCE_VERSION

    return {
        "inputs": {
            "audio": sha256_file(inputs.audio),
            "dataset": dataset_fingerprint(Path(inputs.dataset)),
            "unet": sha256_file(inputs.unet) if inputs.unet is not None else FIXTURE_WEIGHTS,
            "audio_encoder": sha256_file(inputs.audio_encoder) if inputs.audio_encoder is not None else FIXTURE_WEIGHTS,
            "frames": inputs.frames,
            "start_frame": inputs.start_frame,
            "stages": sorted(inputs.stages),
            "dump_every": inputs.dump_every,
            "outputs": OUTPUTS,
        },
        "environment": {
            **environment(("models", "reference"), REFERENCE_LIBRARIES),
            "reference_version": REFERENCE_VERSION,
            "audio_decoder": audio_decoder(inputs.audio),
        },
    }


def _changed_environment(parts: dict[str, Any]) -> str | None:
    """When a cached reference of the same inputs exists for another environment: what changed, in one line."""
    for entry in entries():
        if entry.kind != "reference":
            continue
        old = (read_entry(entry.path) or {}).get("parts") or {}
        if old.get("inputs") != parts["inputs"]:
            continue
        changed = _differences(old.get("environment") or {}, parts["environment"])
        if changed:
            return f"the cached reference of these inputs ({entry.key}) was made with {'; '.join(changed)}: computing it again"
    return None


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    found = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if isinstance(before, dict) and isinstance(after, dict):
            found += _differences(before, after, f"{prefix}{name} ")
        elif before != after:
            found.append(f"{prefix}{name} {before} (now {after})")
    return found


def _what(inputs: ReferenceInputs) -> str:
    return f"reference dump: {Path(inputs.dataset).name} + {Path(inputs.audio).name}, {inputs.frames} frames, {len(inputs.stages)} stages"


def dataset_fingerprint(path: Path) -> list[list]:
    """Name, size and sha256 of every image and landmark file of a dataset (a folder, or a video
    with its landmarks folder beside it)."""
    if path.is_file():
        landmark_dir = next((d for d in (path.parent / LANDMARK_DIR, path.with_suffix("") / LANDMARK_DIR) if d.is_dir()), None)
        files = [path] + (sorted(landmark_dir.iterdir()) if landmark_dir else [])
    else:
        files = [f for folder in (IMAGE_DIR, LANDMARK_DIR) if (path / folder).is_dir() for f in sorted((path / folder).iterdir())]
    return [[f"{f.parent.name}/{f.name}", f.stat().st_size, sha256_file(f)] for f in files if f.is_file()]
