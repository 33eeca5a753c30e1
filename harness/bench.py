"""`parity bench`: how fast each backend runs the networks alone, the whole pipeline, and the reference.

Per backend and batch size:
- model: U-Net batches plus the audio encoder's share per frame, on real inputs (the golden
  subset when present, else inputs made from the demo), after a warm-up; R repeats;
- end-to-end: `parity run --no-compare --dump none` in a child process (frames, PNGs, video), whose
  own peak RSS is read back; R repeats;
and once: the eager reference loop (torch, one frame at a time), the yardstick of every ratio.
End-to-end frames/s counts the frame phase (template decode to video), after model loading and the
clip's audio stage; the model-only figure includes the audio encoder's share per frame.
`memory=True` adds peak RSS of end-to-end runs of 100 and 400 frames (memory must stay flat).

Timed runs go to a child with `python -m synctalk_parity.harness.bench end-to-end ...`, which prints
one JSON line.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..backends import ModelSource, create_backend, get_backend_class
from ..errors import ParityError

UNET_GFLOP_PER_FRAME = 9.772  # 4.886 GMAC
MEMORY_FRAMES = (100, 400)
DEFAULT_REFERENCE_FRAMES = 8
RESULT_SCHEMA = "synctalk-parity/result"

OnRow = Callable[["BenchRow"], None]


@dataclass
class BenchRequest:
    backends: list[str]
    batches: list[int]
    frames: int = 32
    repeats: int = 3
    dataset: Path | None = None
    audio: Path | None = None
    unet: Path | None = None
    audio_encoder: Path | None = None
    models: Path | None = None
    reference_frames: int = DEFAULT_REFERENCE_FRAMES
    memory: bool = False
    cache: Path | None = None  # where demo inputs live (default: harness.run.cache_dir())


@dataclass
class BenchRow:
    backend: str
    batch: int
    mode: str  # "model", "end-to-end", "end-to-end-video" (no PNG frames) or "reference"
    fps_median: float
    fps_min: float
    fps_max: float
    repeats: int
    unet_gflops: float | None = None
    peak_rss_mb: float | None = None
    ratio_to_reference: float | None = None
    load_average: float | None = None  # 1-minute load when measured: a busy machine reads slow


@dataclass
class MemoryRow:
    backend: str
    batch: int
    frames: int
    peak_rss_mb: float


@dataclass
class BenchResult:
    machine: str
    rows: list[BenchRow] = field(default_factory=list)
    memory: list[MemoryRow] = field(default_factory=list)

    def memory_growth_mb(self, backend: str) -> float | None:
        """Peak RSS of the longest run minus the shortest's, for `backend`."""
        rows = sorted((m for m in self.memory if m.backend == backend), key=lambda m: m.frames)
        return rows[-1].peak_rss_mb - rows[0].peak_rss_mb if len(rows) >= 2 else None

    def to_dict(self) -> dict:
        backends = dict.fromkeys(m.backend for m in self.memory)
        return {
            "machine": self.machine,
            "rows": [asdict(r) for r in self.rows],
            "memory": [asdict(m) for m in self.memory],
            "memory_growth_mb": {b: self.memory_growth_mb(b) for b in backends},
        }


def bench(request: BenchRequest, on_row: OnRow | None = None) -> BenchResult:
    """Measure every backend x batch; rows are handed to `on_row` as they are measured."""
    _check(request)
    result = BenchResult(machine=machine_description())
    emit = lambda row: (result.rows.append(row), on_row and on_row(row))  # noqa: E731

    reference = reference_row(request)
    emit(reference)
    for name in request.backends:
        for batch in request.batches:
            emit(_with_ratio(model_row(request, name, batch), reference))
            emit(_with_ratio(end_to_end_row(request, name, batch), reference))
            emit(_with_ratio(end_to_end_row(request, name, batch, save_frames=False), reference))
        if request.memory:
            inputs = _inputs(request, max(MEMORY_FRAMES))  # one dataset and audio for every length
            for frames in MEMORY_FRAMES:
                measured = end_to_end_child(request, name, request.batches[0], frames, inputs)
                result.memory.append(MemoryRow(name, request.batches[0], frames, measured["peak_rss_mb"]))
    return result


def model_row(request: BenchRequest, backend_name: str, batch: int) -> BenchRow:
    """Network-only frames/s: U-Net batches plus the audio encoder's per-frame share."""
    source = ModelSource.from_paths(request.unet, request.audio_encoder, request.models)
    with create_backend(backend_name, source) as backend:
        images, unet_audio, windows = model_inputs(request, backend, request.frames)
        run_once = lambda: _model_pass(backend, images, unet_audio, windows, batch)  # noqa: E731
        run_once()  # warm-up: allocations, kernel choice, lazy initialisation
        seconds, load = _repeat(run_once, request.repeats)
    fps = [request.frames / s for s in seconds]
    median = statistics.median(fps)
    return BenchRow(backend_name, batch, "model", median, min(fps), max(fps), request.repeats,
                    unet_gflops=median * UNET_GFLOP_PER_FRAME, load_average=load)


def end_to_end_row(request: BenchRequest, backend_name: str, batch: int, save_frames: bool = True) -> BenchRow:
    """Production pipeline frames/s (no comparison, no dump) in child processes, with their peak RSS.

    With `save_frames` off the run writes the video only (mode "end-to-end-video"): on 2 cores a
    lossless 720p PNG per frame costs about as much CPU as a quarter of the U-Net."""
    runs = [end_to_end_child(request, backend_name, batch, request.frames, save_frames=save_frames)
            for _ in range(request.repeats)]
    fps = [r["fps"] for r in runs]
    median = statistics.median(fps)
    mode = "end-to-end" if save_frames else "end-to-end-video"
    return BenchRow(backend_name, batch, mode, median, min(fps), max(fps), request.repeats,
                    unet_gflops=median * UNET_GFLOP_PER_FRAME, peak_rss_mb=max(r["peak_rss_mb"] for r in runs),
                    load_average=os.getloadavg()[0])


def reference_row(request: BenchRequest) -> BenchRow:
    """The eager reference loop (torch, one frame at a time, every stage) on the benchmark's inputs."""
    from ..models import load_models
    from ..reference.audio import load_audio
    from ..reference.dataset import open_dataset
    from ..reference.pipeline import ReferencePipeline

    dataset_path, audio_path = _inputs(request, request.reference_frames)
    unet, encoder, _ = load_models(request.unet, request.audio_encoder)
    reference = ReferencePipeline(unet, encoder)
    dataset = open_dataset(dataset_path)
    clip = reference.audio_stages(load_audio(audio_path))
    count = min(request.reference_frames, clip.frame_count)
    schedule = dataset.schedule(count)
    reference.frame(dataset, clip.features, 0, schedule[0])  # warm-up

    def loop() -> None:
        for index, template_index in enumerate(schedule):
            reference.frame(dataset, clip.features, index, template_index)

    seconds, load = _repeat(loop, max(1, min(request.repeats, 2)))
    fps = [count / s for s in seconds]
    median = statistics.median(fps)
    return BenchRow("torch-reference", 1, "reference", median, min(fps), max(fps), len(seconds),
                    unet_gflops=median * UNET_GFLOP_PER_FRAME, load_average=load)


def end_to_end_child(request: BenchRequest, backend_name: str, batch: int, frames: int,
                     inputs: tuple[Path, Path] | None = None, save_frames: bool = True) -> dict:
    """Run the production pipeline in a fresh process; returns its `fps`, `frames` and `peak_rss_mb`."""
    dataset, audio = inputs or _inputs(request, frames)
    with tempfile.TemporaryDirectory(prefix="parity-bench-") as out:
        command = [sys.executable, "-m", __name__, "end-to-end", "--backend", backend_name, "--batch", str(batch),
                   "--frames", str(frames), "--out", out, "--dataset", str(dataset), "--audio", str(audio)]
        if not save_frames:
            command.append("--no-save-frames")
        for flag, path in (("--unet", request.unet), ("--audio-encoder", request.audio_encoder), ("--models", request.models)):
            if path is not None:
                command += [flag, str(path)]
        env = {**os.environ}
        if request.cache is not None:
            env["SYNCTALK_PARITY_CACHE"] = str(request.cache)
        done = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ParityError(f"end-to-end benchmark of {backend_name} (batch {batch}, {frames} frames) failed: {reason}")
    return json.loads(lines[-1])


def model_inputs(request: BenchRequest, backend, frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """U-Net images `(F,6,320,320)`, audio `(F,32,16,16)` and mel windows `(F,1,80,16)` for `frames` frames:
    the golden subset when present (cycled), else made from the demo inputs."""
    from ..models.golden import golden_inputs

    golden = golden_inputs()
    if golden:
        images, unet_audio, windows = golden["unet_input"], golden["audio_window"], golden["mel_windows"]
    else:
        images, unet_audio, windows = _demo_inputs(request, backend, min(frames, 16))
    cycle = lambda a: np.ascontiguousarray(a[np.arange(frames) % len(a)])  # noqa: E731
    return cycle(images), cycle(unet_audio), cycle(windows)


def write_bench_result(result: BenchResult, out: Path) -> Path:
    """`result.json` (command "bench") in `out`."""
    document = {
        "schema": RESULT_SCHEMA, "schema_version": 1, "command": "bench",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "backend": None, "inputs": None, "comparison": None, "timing": None,
        "bench": result.to_dict(),
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / "result.json"
    tmp = path.with_name("result.json.partial")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def machine_description() -> str:
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, {platform.processor() or 'cpu'}; load average {load}"


# ----- helpers ----------------------------------------------------------------------------------


def _check(request: BenchRequest) -> None:
    if not request.backends:
        raise ParityError("--backend: name at least one backend")
    if not request.batches or any(b < 1 for b in request.batches):
        raise ParityError(f"--batch: sizes must be at least 1, got {request.batches}")
    if request.frames < 1 or request.repeats < 1 or request.reference_frames < 1:
        raise ParityError("--frames, --repeats and --reference-frames must be at least 1")
    if (request.dataset is None) != (request.audio is None):
        raise ParityError("pass both --dataset and --audio, or neither to benchmark on the built-in demo")
    for name in request.backends:
        reason = get_backend_class(name).available()
        if reason:
            raise ParityError(f"backend {name!r} is not available: {reason}")


def _model_pass(backend, images: np.ndarray, unet_audio: np.ndarray, windows: np.ndarray, batch: int) -> None:
    for start in range(0, len(images), batch):
        backend.generate(images[start : start + batch], unet_audio[start : start + batch])
    for start in range(0, len(windows), 64):  # reference/audio.py ENCODER_BATCH
        backend.encode_audio(windows[start : start + 64])


def _repeat(step: Callable[[], None], repeats: int) -> tuple[list[float], float]:
    seconds = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - t)
    return seconds, os.getloadavg()[0]


def _with_ratio(row: BenchRow, reference: BenchRow) -> BenchRow:
    row.ratio_to_reference = row.fps_median / reference.fps_median if reference.fps_median else None
    return row


def _inputs(request: BenchRequest, frames: int) -> tuple[Path, Path]:
    """The dataset and audio: the request's, else a demo long enough for `frames` output frames."""
    if request.dataset is not None:
        return Path(request.dataset), Path(request.audio)
    from ..reference.demo import make_demo
    from .run import cache_dir

    seconds = max(4.0, float(np.ceil(frames / 25 + 1)))
    folder = (request.cache or cache_dir()) / ("demo" if seconds == 4.0 else f"demo-{seconds:g}s")
    demo = make_demo(folder, seconds=seconds)
    return demo.dataset_dir, demo.audio_path


def _demo_inputs(request: BenchRequest, backend, frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from ..reference import audio, frames as frame_stages
    from ..reference.dataset import open_dataset

    dataset_path, audio_path = _inputs(request, frames)
    dataset = open_dataset(dataset_path)
    windows = audio.mel_windows(audio.mel_spectrogram(audio.load_audio(audio_path)))
    features = audio.pad_features(audio.encode_windows(backend.encode_audio, windows))
    count = min(frames, len(features))
    images, unet_audio = [], []
    for index, template_index in enumerate(dataset.schedule(count)):
        template = dataset.templates[template_index]
        images.append(frame_stages.unet_input(frame_stages.crop_328(template.read_image(), template.box)))
        unet_audio.append(audio.unet_audio_window(features, index))
    return np.stack(images), np.stack(unet_audio), windows[:count]


def _end_to_end_main(argv: list[str]) -> None:
    """Child process: one production run, then one JSON line with fps and this process's peak RSS."""
    import argparse

    from .run import RunRequest, run

    parser = argparse.ArgumentParser(prog="python -m synctalk_parity.harness.bench end-to-end")
    for flag in ("--backend", "--out", "--dataset", "--audio", "--unet", "--audio-encoder", "--models"):
        parser.add_argument(flag)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--no-save-frames", action="store_true")
    args = parser.parse_args(argv)
    as_path = lambda p: None if p is None else Path(p)  # noqa: E731
    request = RunRequest(Path(args.out), args.backend, as_path(args.dataset), as_path(args.audio), as_path(args.unet),
                         as_path(args.audio_encoder), args.frames, models=as_path(args.models), batch=args.batch,
                         dump="none", compare=False, save_frames=not args.no_save_frames)
    try:
        result = run(request)
    except ParityError as exc:
        sys.stderr.write(f"{exc}\n")
        raise SystemExit(exc.exit_code) from None
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    if sys.platform == "darwin":
        peak_kb /= 1024  # bytes there
    sys.stdout.write(json.dumps({"fps": result.fps, "frames": result.frames_written, "peak_rss_mb": peak_kb / 1024}) + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] != ["end-to-end"]:
        raise SystemExit("usage: python -m synctalk_parity.harness.bench end-to-end --backend NAME --out DIR ...")
    _end_to_end_main(sys.argv[2:])
