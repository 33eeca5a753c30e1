"""Fixtures that make stage dumps: small synthetic ones (fast, no golden data) and a real reference
dump of sanders-mini with the golden weights (built once per session, skipped when absent)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from synctalk_parity.harness.verdict.dump import DumpWriter
from synctalk_parity.reference.stages import FrameStages

PRODUCER = {"name": "tests", "version": "0", "backend": "torch", "precision": "fp32"}
REFERENCE_FRAMES = (0, 1, 2, 3)
AUDIO_SECONDS = 2.0  # the first 2 s of the golden WAV: 47 encoder windows, 49 output frames


def write_dump(path: Path, clip: dict | None, frames: list[dict], frame_count: int, producer: dict | None = None, stages="all") -> Path:
    """A dump from a clip-stage dict and per-frame stage dicts (each with an "index")."""
    with DumpWriter(path, producer or PRODUCER, frame_count, stages) as writer:
        if clip:
            writer.add_clip(clip)
        for frame in frames:
            writer.add_frame(frame["index"], {k: v for k, v in frame.items() if k != "index"})
    return Path(path)


def frame_dict(stages: FrameStages) -> dict:
    return {"index": stages.index, **stages.as_dict()}


def synthetic_stages(seed: int = 0, frames: tuple[int, ...] = (0, 1, 2), size: tuple[int, int] = (48, 64)) -> tuple[dict, list[dict]]:
    """Contract-shaped random stages (clip dict, frame dicts); the output frame is `size` (H, W)."""
    rng = np.random.default_rng(seed)
    clip = {
        "audio.pcm": rng.standard_normal(3200).astype(np.float32),
        "audio.mel": rng.uniform(-4, 4, (17, 80)),
        "audio.windows": rng.uniform(-4, 4, (3, 1, 80, 16)).astype(np.float32),
        "audio.features": rng.standard_normal((5, 512)).astype(np.float32),
    }
    rows = []
    for index in frames:
        unet_output = rng.uniform(0, 1, (3, 320, 320)).astype(np.float32)
        mouth = (unet_output.transpose(1, 2, 0) * np.float32(255)).astype(np.uint8)
        rows.append({
            "index": index,
            "frame.template_index": np.int64(index + 1),
            "frame.crop_box": np.array([10, 8, 30 + index, 28 + index], dtype=np.int64),
            "frame.crop_328": rng.integers(0, 256, (328, 328, 3), dtype=np.uint8),
            "frame.unet_audio": rng.standard_normal((32, 16, 16)).astype(np.float32),
            "frame.unet_input": rng.uniform(0, 1, (6, 320, 320)).astype(np.float32),
            "frame.unet_output": unet_output,
            "frame.mouth": mouth,
            "frame.pasted_region": rng.integers(0, 256, (20 + index, 20 + index, 3), dtype=np.uint8),
            "frame.output": rng.integers(0, 256, (*size, 3), dtype=np.uint8),
        })
    return clip, rows


@pytest.fixture
def synthetic_dump(tmp_path):
    """A synthetic dump of every stage, 3 frames; returns its path."""
    clip, rows = synthetic_stages()
    return write_dump(tmp_path / "synthetic", clip, rows, frame_count=5)


@dataclass
class ReferenceCase:
    """The reference pipeline on sanders-mini, golden weights, 2 s of the golden WAV, frames 0..3."""

    pipeline: object
    dataset: object
    clip: object
    schedule: list[int]
    frames: dict[int, FrameStages]
    dump: Path
    network: object = None
    _outputs: dict[bytes, np.ndarray] = field(default_factory=dict)

    def generate(self, unet_input: np.ndarray, unet_audio: np.ndarray) -> np.ndarray:
        """The reference U-Net, run only for inputs it has not seen (mistakes downstream reuse outputs)."""
        key = hashlib.sha1(np.ascontiguousarray(unet_input).tobytes() + np.ascontiguousarray(unet_audio).tobytes()).digest()
        if key not in self._outputs:
            self._outputs[key] = self.network(unet_input, unet_audio)
        return self._outputs[key]


@pytest.fixture(scope="session")
def reference_case(golden, sanders, tmp_path_factory) -> ReferenceCase:
    from synctalk_parity.models import load_models
    from synctalk_parity.reference.audio import SAMPLE_RATE, load_audio
    from synctalk_parity.reference.dataset import open_dataset
    from synctalk_parity.reference.pipeline import ReferencePipeline

    from ..golden_files import golden_weights

    weights = golden_weights()
    if weights is None:
        pytest.skip("golden weights not found in ../shared/golden/weights")
    unet, encoder, _ = load_models(*weights)
    pipeline = ReferencePipeline(unet, encoder)
    dataset = open_dataset(sanders)
    pcm = load_audio(golden / "talk_hb_10s.wav")[: int(AUDIO_SECONDS * SAMPLE_RATE)]
    clip = pipeline.audio_stages(pcm)
    schedule = dataset.schedule(clip.frame_count)
    case = ReferenceCase(pipeline, dataset, clip, schedule, {}, Path(), network=pipeline.generate)
    pipeline.generate = case.generate  # every run through the pipeline shares the output cache
    case.frames = {i: pipeline.frame(dataset, clip.features, i, schedule[i]) for i in REFERENCE_FRAMES}
    case.dump = write_dump(
        tmp_path_factory.mktemp("reference") / "dump", clip.as_dict(), [frame_dict(f) for f in case.frames.values()],
        frame_count=clip.frame_count, producer={**PRODUCER, "name": "reference"},
    )
    return case


def reference_unet_outputs(dataset: Path, audio: Path, unet: Path, audio_encoder: Path, frames: int) -> dict[bytes, np.ndarray]:
    """The U-Net outputs of output frames 0..frames-1 of `parity compare --reference-exact`'s own reference (its
    `reference_dump`, plain eager PyTorch), by the digest of their inputs as `ReferenceCase.generate` keys them.

    A port judged with `--reference-exact` runs the same eager U-Net on the same inputs as that reference: computing
    both doubles the slowest work of a port-judging module. Asked for here first (into the session's cache, the stages
    a compare reads plus the U-Net's input and output), the reference is computed once, every compare then finds it
    cached, and a port written by hand takes the output of each U-Net input the reference ran from it (an input the
    reference never saw, a mistake before the network, is run by the port itself)."""
    from synctalk_parity.harness.pipeline.reference_cache import ReferenceInputs, reference_dump
    from synctalk_parity.harness.ports.judge import PORT_STAGES
    from synctalk_parity.harness.verdict.dump import Dump

    stages = PORT_STAGES | {"frame.unet_input", "frame.unet_output"}
    result = reference_dump(ReferenceInputs(dataset, audio, unet, audio_encoder, frames, 0, frozenset(stages), frozenset(range(frames)),
                                            execution="exact"))
    dump = Dump.open(result.dump)
    return {unet_key(dump.frame("frame.unet_input", i), dump.frame("frame.unet_audio", i)): dump.frame("frame.unet_output", i)
            for i in dump.frames("frame.unet_output")}


def unet_key(unet_input: np.ndarray, unet_audio: np.ndarray) -> bytes:
    return hashlib.sha1(np.ascontiguousarray(unet_input).tobytes() + np.ascontiguousarray(unet_audio).tobytes()).digest()
