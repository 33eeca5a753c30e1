"""The reference stages a comparison needs, computed with the PyTorch reference once, cached frame by frame.

A candidate run is compared with a reference dump of the same stages. The reference is slow (PyTorch one
frame at a time, `reference/pipeline.py`), so it computes only what the comparison reads, and keeps it:

- the clip stages and the light per-frame stages (`frame.template_index`, `frame.crop_box`, `frame.unet_audio`:
  no image, no network) of every output frame of the clip, once per clip;
- the heavy stages (the crop, both U-Net tensors, the mouth, the pasted region, the output frame) only for the
  frames the comparison uses (`ReferenceInputs.heavy_frames`: every `--dump-every`-th frame of a run, the frames a
  port provides), each frame its own cache entry, so a later comparison that needs more frames computes only
  the missing ones (and says so in `ReferenceResult.note`).

The dump a comparison reads is assembled from those entries (hard links) and cached too:

    <cache>/reference/<key>/                 the clip's entry: entry.json, clip/ (a dump of the clip and light stages)
        frames/<index>-<stages>/             one frame's heavy stages (`<stages>`: a digest of their names)
        dumps/<selection>/dump/              the dump of one request (frames, stages, heavy frames)

`<key>` is a sha256 of everything that can change the bytes: the inputs (audio bytes, dataset files, weights,
start frame), how the U-Net runs (`execution`: `fast` or `exact`, `reference/execution.py`) and the environment
(`cache.environment`: package version, a digest of the models/ and reference/ code, torch, numpy, SciPy,
OpenCV, librosa, soundfile and soxr versions, `ONEDNN_MAX_CPU_ISA`, the CPU's instruction set, and the audio
decoder with its version). Every entry is built in a private folder and published with one rename, so
concurrent runs never see each other's half-written work; each is checked before reuse (every file present
with its recorded size and sha256), and a damaged one is made again, as is one whose environment changed,
each with a note saying why.

    result = reference_dump(ReferenceInputs(dataset, audio, None, None, frames=100, start_frame=0,
                                            stages=frozenset(STAGE_NAMES), heavy_frames=frozenset({0, 10, 20})))
    result.dump, result.cached, result.note, result.frames_computed
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ... import __version__
from ...backends.exports import FIXTURE_WEIGHTS
from ...cache import REFERENCE_LIBRARIES, build_entry, cache_folder, check_entry, entries, environment, key_of, read_entry, sha256_file
from ...reference.dataset import IMAGE_DIR, LANDMARK_DIR
from ...reference.execution import DEFAULT_EXECUTION, checked_execution
from ...reference.stages import CLIP_STAGES, STAGE_NAMES
from ..verdict.dump import HEAVY_STAGES, IMAGE_STAGES, LIGHT_STAGES, Dump, DumpWriter
from ..verdict.png import write_png

PRODUCER_BACKEND = {"exact": "torch-eager", "fast": "torch-frozen-channels-last"}
FRAME_META = "stages.json"

Progress = Callable[[int, int], None]


def producer(execution: str) -> dict[str, str]:
    return {"name": "synctalk-parity reference", "version": __version__, "backend": PRODUCER_BACKEND[execution], "precision": "fp32"}


@dataclass(frozen=True)
class ReferenceInputs:
    """What decides a reference dump. `frames`: the output frames the run makes; `heavy_frames`: those whose heavy
    stages the comparison reads (others get the light stages only)."""

    dataset: Path
    audio: Path
    unet: Path | None
    audio_encoder: Path | None
    frames: int
    start_frame: int
    stages: frozenset[str]
    heavy_frames: frozenset[int] = field(default_factory=frozenset)
    execution: str = DEFAULT_EXECUTION


@dataclass(frozen=True)
class ReferenceResult:
    dump: Path
    cached: bool  # True when nothing was computed now
    key: str
    note: str | None = None  # why it was made again, or which frames were computed now beside cached ones
    execution: str = DEFAULT_EXECUTION
    frames_computed: int = 0  # frames whose heavy stages were computed now
    frames_cached: int = 0  # frames whose heavy stages an earlier run computed

def every_kth(frames: int, dump_every: int) -> frozenset[int]:
    """The frames of `frames` whose heavy stages a run dumps: every `dump_every`-th, frame 0 always."""
    return frozenset(i for i in range(frames) if heavy_frame(i, dump_every))


def heavy_frame(index: int, dump_every: int) -> bool:
    """Whether heavy stages are dumped for output frame `index`: every `dump_every`-th, frame 0 always."""
    return index % max(1, dump_every) == 0


def reference_dump(inputs: ReferenceInputs, progress: Progress | None = None) -> ReferenceResult:
    """The reference dump of `inputs`, from the cache where it holds the stages, computing what it lacks."""
    checked_execution(inputs.execution)
    parts = reference_parts(inputs)
    key = key_of(parts)
    folder = cache_folder("reference") / key
    notes = []
    computer = _Computer(inputs)
    problem = check_entry(folder) if folder.exists() else "missing"
    clip_cached = problem is None
    if not clip_cached:
        note = _changed_environment(parts) if problem == "missing" else f"cached reference {key} is damaged ({problem}); computing it again"
        if note:
            notes.append(note)
        build_entry(folder, "reference", _what(inputs), parts, lambda tmp: computer.write_clip(tmp / "clip"))
    clip = Dump.open(folder / "clip")
    inputs = replace(inputs, frames=min(inputs.frames, clip.frame_count))
    heavy_stages = sorted(HEAVY_STAGES & inputs.stages)
    heavy = sorted(i for i in inputs.heavy_frames if 0 <= i < inputs.frames) if heavy_stages else []
    selection = {"frames": inputs.frames, "stages": sorted(inputs.stages), "heavy_frames": heavy}
    target = folder / "dumps" / key_of(selection)
    if clip_cached and check_entry(target) is None:
        return ReferenceResult(target / "dump", True, key, None, inputs.execution, 0, len(heavy))

    damaged: list[str] = []
    stored = {i: _frame_entry(folder, i, heavy_stages, damaged) for i in heavy}
    notes.extend(damaged)
    missing = [i for i, entry in stored.items() if entry is None]
    for done, index in enumerate(missing):
        stored[index] = computer.write_frame(folder, clip, index, heavy_stages)
        if progress:
            progress(done + 1, len(missing))
    reused = len(heavy) - len(missing)
    if reused and missing:
        notes.append(f"{reused} of the {len(heavy)} reference frames this comparison needs were cached; computed the other {len(missing)} now")
    build_entry(target, "reference-dump", f"{_what(inputs)}, heavy stages of {len(heavy)}", {**parts, "selection": selection},
                lambda tmp: _assemble(tmp / "dump", inputs, clip, stored, heavy_stages))
    return ReferenceResult(target / "dump", not missing and clip_cached, key, "; ".join(notes) or None, inputs.execution,
                           len(missing), reused)


def reference_missing(inputs: ReferenceInputs) -> bool:
    """Whether `reference_dump(inputs)` will compute anything: its clip entry, or an entry of a frame whose heavy stages
    it needs, is not in the cache. A quick look (no checksums; `reference_dump` checks every entry it reads): it only
    decides whether a run loads PyTorch ahead of need (`preload_reference`)."""
    folder = cache_folder("reference") / key_of(reference_parts(inputs))
    if not (folder / "clip").is_dir():
        return True
    stages = sorted(HEAVY_STAGES & inputs.stages)
    frames = folder / "frames"
    return bool(stages) and any(not any(frames.glob(f"{i:05d}-*")) for i in inputs.heavy_frames if 0 <= i < inputs.frames)


def preload_reference() -> None:
    """Import PyTorch and the reference's networks and pipeline (1.2-1.6 s of one core on the 2-core machine): what a
    reference that must be computed loads first."""
    from ...models import load_models  # noqa: F401  (imports torch)
    from ...reference.pipeline import ReferencePipeline  # noqa: F401


def write_reference_dump(inputs: ReferenceInputs, folder: Path, progress: Progress | None = None) -> Path:
    """The reference dump of `inputs` written to `folder` (atomically), through the cache."""
    import shutil

    result = reference_dump(inputs, progress)
    partial = folder.with_name(folder.name + ".partial")
    shutil.copytree(result.dump, partial, dirs_exist_ok=False)
    partial.rename(folder)
    return folder


# ----- computing ------------------------------------------------------------------------------------


class _Computer:
    """Loads the networks and the reference pipeline on first need (a warm cache needs neither torch nor librosa)."""

    def __init__(self, inputs: ReferenceInputs):
        self.inputs = inputs
        self._pipeline: Any = None
        self._dataset: Any = None
        self._features: np.ndarray | None = None

    @property
    def pipeline(self):
        if self._pipeline is None:
            from ...models import load_models
            from ...reference.pipeline import ReferencePipeline

            unet, encoder, _ = load_models(self.inputs.unet, self.inputs.audio_encoder)
            self._pipeline = ReferencePipeline(unet, encoder, execution=self.inputs.execution)
        return self._pipeline

    @property
    def dataset(self):
        if self._dataset is None:
            from ...reference.dataset import open_dataset

            self._dataset = open_dataset(self.inputs.dataset, self.inputs.start_frame)
        return self._dataset

    def write_clip(self, folder: Path) -> None:
        """The clip stages, and the light stages of every output frame of the clip, as a dump."""
        from ...reference.audio import AudioFrontEnd, load_audio
        from ...reference.pipeline import light_stages
        from .audio_cache import cached_mel, store_mel

        # the mel spectrogram is the reference's own function of the file's bytes, cached under every knob that decides it
        # (a run has usually cached it already: no librosa import, 2 s of a cold verdict)
        mel, mel_key = cached_mel(Path(self.inputs.audio)) if self.pipeline.variant.front_end == AudioFrontEnd() else (None, None)
        clip = self.pipeline.audio_stages(load_audio(self.inputs.audio), source=str(self.inputs.audio), mel=mel)
        if mel is None and mel_key is not None:
            store_mel(Path(self.inputs.audio), mel_key, clip.mel)
        self._features = clip.features
        dataset = self.dataset
        with DumpWriter(folder, producer(self.inputs.execution), clip.frame_count, CLIP_STAGES + tuple(sorted(LIGHT_STAGES))) as writer:
            writer.add_clip(clip.as_dict())
            for index, template_index in enumerate(dataset.schedule(clip.frame_count)):
                writer.add_frame(index, light_stages(dataset, clip.features, index, template_index), heavy=False)

    def write_frame(self, folder: Path, clip: Dump, index: int, stages: list[str]) -> Path:
        """Compute output frame `index` and store its heavy `stages` as one cache entry; returns the entry."""
        if self._features is None:
            self._features = clip.clip("audio.features")
        template_index = int(clip.frame("frame.template_index", index))
        frame = self.pipeline.frame(self.dataset, self._features, index, template_index).as_dict()
        final = folder / "frames" / f"{index:05d}-{_stages_digest(stages)}"
        build_entry(final, "reference-frame", f"reference frame {index}", {"frame": index, "stages": stages},
                    lambda tmp: _write_frame_files(tmp, {name: frame[name] for name in stages}))
        return final


def _write_frame_files(folder: Path, stages: dict[str, np.ndarray]) -> None:
    meta = {}
    for name, array in stages.items():
        file = f"{name}.{'png' if name in IMAGE_STAGES else 'npy'}"
        if name in IMAGE_STAGES:
            write_png(folder / file, array)
        else:
            np.save(folder / file, array, allow_pickle=False)
        meta[name] = {"file": file, "shape": list(array.shape), "dtype": array.dtype.name}
    (folder / FRAME_META).write_text(json.dumps(meta, indent=1) + "\n")


def _stages_digest(stages: list[str]) -> str:
    return key_of({"stages": sorted(stages)})[:8]


def _frame_entry(folder: Path, index: int, stages: list[str], damaged: list[str]) -> Path | None:
    """A valid cached entry of frame `index` holding every one of `stages`, else None; an entry that holds them but
    fails its check is named in `damaged` (it is computed again)."""
    for candidate in sorted((folder / "frames").glob(f"{index:05d}-*")):
        if candidate.name.startswith(".") or candidate.name.endswith(".partial"):
            continue
        recorded = ((read_entry(candidate) or {}).get("parts") or {}).get("stages") or []
        if not set(stages) <= set(recorded):
            continue
        problem = check_entry(candidate)
        if problem is None:
            return candidate
        damaged.append(f"cached reference frame {index} is damaged ({problem}); computing it again")
    return None


def _assemble(folder: Path, inputs: ReferenceInputs, clip: Dump, stored: dict[int, Path | None], heavy_stages: list[str]) -> None:
    """The dump of one request: clip and light stages from the clip's dump (the first `inputs.frames` frames), heavy
    stages linked from the frames' entries."""
    with DumpWriter(folder, producer(inputs.execution), inputs.frames, inputs.stages) as writer:
        writer.add_clip({name: clip.clip(name) for name in CLIP_STAGES if name in inputs.stages})
        light = [name for name in STAGE_NAMES if name in LIGHT_STAGES and name in inputs.stages]
        for index in range(inputs.frames):
            writer.add_frame(index, {name: clip.frame(name, index) for name in light}, heavy=False)
        for index, entry in sorted(stored.items()):
            assert entry is not None
            meta = json.loads((entry / FRAME_META).read_text())
            for name in heavy_stages:
                writer.add_frame_file(name, index, entry / meta[name]["file"], tuple(meta[name]["shape"]), meta[name]["dtype"])


def reference_key(inputs: ReferenceInputs) -> str:
    """The cache key of everything that decides the reference's stages (the clip's entry)."""
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
            "start_frame": inputs.start_frame,
            "execution": inputs.execution,
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
    return f"reference dump ({inputs.execution}): {Path(inputs.dataset).name} + {Path(inputs.audio).name}"


def dataset_fingerprint(path: Path) -> list[list]:
    """Name, size and sha256 of every image and landmark file of a dataset (a folder, or a video
    with its landmarks folder beside it)."""
    if path.is_file():
        landmark_dir = next((d for d in (path.parent / LANDMARK_DIR, path.with_suffix("") / LANDMARK_DIR) if d.is_dir()), None)
        files = [path] + (sorted(landmark_dir.iterdir()) if landmark_dir else [])
    else:
        files = [f for folder in (IMAGE_DIR, LANDMARK_DIR) if (path / folder).is_dir() for f in sorted((path / folder).iterdir())]
    return [[f"{f.parent.name}/{f.name}", f.stat().st_size, sha256_file(f)] for f in files if f.is_file()]
