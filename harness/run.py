"""`parity run`: audio + avatar dataset -> lossless frames, an mp4 and a summary, on a backend.

With no dataset and audio it runs the built-in demo (inputs made locally from assets that ship
with the dependencies, fixture weights). Output folder:

    frames/00000.png ...   every output frame, lossless, numbered in output order
    video.mp4              H.264 + AAC, 25 fps (lossy; compare frames, not the video)
    summary.json, summary.md
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2

from .. import __version__
from ..errors import ParityError
from ..models import load_models
from ..reference.audio import load_audio
from ..reference.dataset import open_dataset
from ..reference.pipeline import ReferencePipeline
from ..reference.video import VideoWriter

RUN_BACKENDS = ("torch",)
Progress = Callable[[int, int], None]  # (frames done, frames total)


def cache_dir() -> Path:
    """Where demo inputs and cached results live (`$SYNCTALK_PARITY_CACHE`, else ~/.cache/synctalk-parity)."""
    return Path(os.environ.get("SYNCTALK_PARITY_CACHE") or Path.home() / ".cache" / "synctalk-parity")


@dataclass
class RunRequest:
    out: Path
    backend: str = "torch"
    dataset: Path | None = None
    audio: Path | None = None
    unet: Path | None = None
    audio_encoder: Path | None = None
    frames: int | None = None
    start_frame: int = 0

    @property
    def is_demo(self) -> bool:
        return self.dataset is None and self.audio is None


@dataclass
class RunResult:
    out: Path
    backend: str
    demo: bool
    dataset: str
    audio: str
    weights: dict[str, str]
    frames_written: int
    frames_available: int
    template_count: int
    frame_size: tuple[int, int]
    seconds: dict[str, float] = field(default_factory=dict)
    video: str = "video.mp4"

    @property
    def fps(self) -> float:
        return self.frames_written / self.seconds["frames"] if self.seconds.get("frames") else 0.0


def run(request: RunRequest, progress: Progress | None = None) -> RunResult:
    """Run the whole pipeline and write frames, video and summary into `request.out`."""
    if request.backend not in RUN_BACKENDS:
        raise ParityError(
            f"`parity run` runs on backend {', '.join(RUN_BACKENDS)} today (got {request.backend!r}); "
            "the other backends are exported and checked with `parity export`"
        )
    if (request.dataset is None) != (request.audio is None):
        raise ParityError("pass both --dataset and --audio, or neither to run the built-in demo")
    if request.frames is not None and request.frames < 1:
        raise ParityError(f"--frames must be at least 1, got {request.frames}")
    started = time.perf_counter()
    dataset_path, audio_path = _inputs(request)
    dataset = open_dataset(dataset_path, request.start_frame)
    pipeline, weights = _reference(request)
    pcm = load_audio(audio_path)
    timings = {"setup": time.perf_counter() - started}

    t = time.perf_counter()
    clip = pipeline.audio_stages(pcm, source=str(audio_path))
    timings["audio"] = time.perf_counter() - t
    total = clip.frame_count if request.frames is None else min(request.frames, clip.frame_count)

    out = Path(request.out)
    out.mkdir(parents=True, exist_ok=True)
    frames_tmp = out / "frames.partial"
    shutil.rmtree(frames_tmp, ignore_errors=True)
    frames_tmp.mkdir()
    t = time.perf_counter()
    try:
        with VideoWriter(out / "video.mp4", dataset.frame_size, audio=audio_path) as video:
            for stages in pipeline.frames(dataset, clip, total):
                cv2.imwrite(str(frames_tmp / f"{stages.index:05d}.png"), stages.output, [cv2.IMWRITE_PNG_COMPRESSION, 1])
                video.write(stages.output)
                if progress:
                    progress(stages.index + 1, total)
    except BaseException:
        shutil.rmtree(frames_tmp, ignore_errors=True)
        raise
    timings["frames"] = time.perf_counter() - t
    shutil.rmtree(out / "frames", ignore_errors=True)
    frames_tmp.rename(out / "frames")
    timings["total"] = time.perf_counter() - started

    result = RunResult(
        out=out,
        backend=request.backend,
        demo=request.is_demo,
        dataset=str(dataset_path),
        audio=str(audio_path),
        weights=weights,
        frames_written=total,
        frames_available=clip.frame_count,
        template_count=dataset.template_count,
        frame_size=dataset.frame_size,
        seconds=timings,
    )
    write_summary(result)
    return result


def write_summary(result: RunResult) -> None:
    summary = {**asdict(result), "out": str(result.out), "fps": result.fps, "version": __version__}
    (result.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [
        f"# parity run ({'built-in demo' if result.demo else 'dataset'}, backend {result.backend})",
        "",
        f"- dataset: `{result.dataset}` ({result.template_count} templates, {result.frame_size[0]}x{result.frame_size[1]})",
        f"- audio: `{result.audio}`",
        *(f"- {name}: {value}" for name, value in result.weights.items()),
        f"- frames: {result.frames_written} of {result.frames_available} written to `frames/` (PNG), video `{result.video}`",
        f"- speed: {result.fps:.2f} frames/s; audio {result.seconds['audio']:.2f} s, frames {result.seconds['frames']:.2f} s, "
        f"total {result.seconds['total']:.2f} s",
        "",
    ]
    (result.out / "summary.md").write_text("\n".join(lines))


def _inputs(request: RunRequest) -> tuple[Path, Path]:
    if not request.is_demo:
        return Path(request.dataset), Path(request.audio)
    from ..reference.demo import make_demo

    demo = make_demo(cache_dir() / "demo")
    return demo.dataset_dir, demo.audio_path


def _reference(request: RunRequest) -> tuple[ReferencePipeline, dict[str, str]]:
    unet, encoder, labels = load_models(request.unet, request.audio_encoder)
    return ReferencePipeline(unet, encoder), labels
