"""`parity bench`: how fast each backend runs the networks alone, the whole pipeline, and the reference.

Per backend and batch size:
- model: U-Net batches plus the audio encoder's share per frame, on real inputs (made from --dataset/--audio,
  else from the demo, as the reference makes them), after a warm-up; R repeats; run as the pipeline runs
  the backend (`backend.streams()` U-Net calls at once);
- model, default session (onnxruntime): the same export, inputs and batches on plain ONNX Runtime sessions
  with their default options (`onnxruntime.InferenceSession(path)`: intra-op threads and spinning as ORT
  chooses), one call at a time, timed pass for pass alternately with the row above: the yardstick the
  pipeline's frame phase is held to (`ratio_to_default_session` of the end-to-end rows);
- end-to-end: `parity run --no-compare` itself (PNG frames, video, the default dump: light stages every
  frame, heavy ones every 10th) as a child process; R repeats;
- end-to-end-video: the same pipeline writing the video only (no PNG frames, no dump), in a bench child:
  what a deployed pipeline does;
and once: the eager reference loop (torch, one frame at a time), the yardstick of every ratio. Before
all of it, before each model row and at the end, the machine's fp32 limit: the sgemm peak (`sgemm_peak_gflops`,
the best of those readings: on a shared machine one reading can be low); every row's `peak_share` is its
achieved U-Net GFLOP/s over it, so figures compare across machines. Rows whose networks run on a GPU (torch on
CUDA, ONNX Runtime's CUDA or TensorRT provider, TensorRT) are measured against the GPU's own fp32 limit instead
(`gpu_sgemm_peak_gflops`: a torch float32 matmul on the device, IEEE fp32, no TF32), read at the start and the end.

End-to-end frames/s is the steady throughput of the frame phase (template decode to video): output
frames after the first batch divided by the time from the first batch's last frame to the last frame
out (for `parity run`, from the modification times of the PNG frames it wrote), like the model-only
figure, which is timed after a warm-up pass. What comes before (model loading, the clip's audio stage,
the pipeline filling up and the backend's first call) is reported beside it: `whole_run_fps` (frames over
the whole frame phase) and `first_frame_s` (frame phase start to first frame). As whole processes, measured
from outside (`bench_port.measure_process`): `process_wall_s`, `process_first_frame_s` (process start to
frames/00000.png: imports, checkpoints, caches and model loading included) and `peak_rss_mb` (the child's
own). The model-only figure includes the audio encoder's share per frame; `ratio_to_model` is end-to-end
over model-only for the same backend and batch (the pipeline's overhead).
`memory=True` adds peak RSS of default end-to-end runs of 100 and 400 frames (memory must stay flat).

Video-only runs go to a child with `python -m synctalk_parity.harness.bench end-to-end --video-only ...`,
which prints one JSON line. `parity bench --port` (a port's own command beside ours) is `bench_port.py`.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ...backends import ModelSource, create_backend, get_backend_class
from ...errors import ParityError
from ..inputs import DEMO_SECONDS, NETWORKS, demo_check_inputs, network_inputs, resolve_inputs
from ..verdict.result import read_result, write_result
from ..verdict.types import Backend, BenchResult, BenchRow, Inputs, MemoryRow, VerdictRow, WorstFrame

UNET_GFLOP_PER_FRAME = 9.772  # 4.886 GMAC
SGEMM_SIZE = 2048  # one float32 matmul: 17.2 GFLOP, 0.06-0.3 s on 2 cores (smaller sizes read lower)
SGEMM_REPEATS = 3
GPU_SGEMM_SIZE = 8192  # 1.1 TFLOP: ~20 ms on an H200 at fp32, far past launch overhead
MEMORY_FRAMES = (100, 400)
DEFAULT_REFERENCE_FRAMES = 8

SGEMM_TEXT = (f"numpy float32 {SGEMM_SIZE}x{SGEMM_SIZE} matmul, best of {SGEMM_REPEATS} after a warm-up, numpy's default threads; "
              "the best of readings at the start, before each model row and at the end")
GPU_SGEMM_TEXT = (f"torch float32 {GPU_SGEMM_SIZE}x{GPU_SGEMM_SIZE} matmul on the GPU (IEEE fp32, no TF32), best of {SGEMM_REPEATS} "
                  "after a warm-up; the best of readings at the start and the end")

OnRow = Callable[[BenchRow], None]


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
    cache: Path | None = None  # where demo inputs live (default: the cache root)
    provider: str | None = None  # ONNX Runtime execution provider for the onnxruntime rows (default cpu)
    device: str | None = None  # torch device for the torch rows (default cpu)
    streams: int | None = None  # U-Net calls in flight for the onnxruntime rows (default: the backend's choice)
    precision: str = "fp32"  # what checkpoints run in (an export runs its own; `parity matrix` measures fp16 cells)
    verdict: bool = False  # also time the first verdict: parity run with the reference cache cold, warm, and --no-compare

    def on_gpu(self, backend: str) -> bool:
        """Whether `backend`'s rows run the networks on a GPU (so their share is of the GPU's fp32 peak)."""
        return (backend == "tensorrt" or (backend == "torch" and (self.device or "cpu").startswith("cuda"))
                or (backend == "onnxruntime" and self.provider in ("cuda", "tensorrt")))

    def options(self, backend: str) -> dict[str, str]:
        """The backend options this request asks of `backend`: --provider and --streams for onnxruntime, --device for torch."""
        if backend == "onnxruntime" and (self.provider or self.streams):
            return {name: str(value) for name, value in (("provider", self.provider), ("streams", self.streams)) if value}
        if backend == "torch" and self.device:
            return {"device": self.device}
        return {}


def bench(request: BenchRequest, on_row: OnRow | None = None) -> BenchResult:
    """Measure every backend x batch; rows are handed to `on_row` as they are measured."""
    prepare(request)
    result = BenchResult(machine=machine_description())
    sgemm = [sgemm_peak_gflops()]  # read again before every model row and at the end: on a shared machine one reading can be low
    gpu_device = next((_gpu_device(request, name) for name in request.backends if request.on_gpu(name)), None)
    gpu_sgemm = [] if gpu_device is None else [gpu_sgemm_peak_gflops(gpu_device)]

    def emit(row: BenchRow) -> None:
        if row.mode != "reference" and request.on_gpu(row.backend):
            row.device = "gpu"
        result.rows.append(row)
        if on_row:
            on_row(row)

    reference = reference_row(request)
    emit(reference)
    for name in request.backends:
        for batch in request.batches:
            sgemm.append(sgemm_peak_gflops())
            model, *default_session = model_rows(request, name, batch)
            for row in (model, *default_session):
                emit(_with_ratio(row, reference))
            for video_only in (False, True):
                row = _with_ratio(end_to_end_row(request, name, batch, video_only=video_only), reference, model)
                if default_session and default_session[0].fps_median:
                    row.ratio_to_default_session = row.fps_median / default_session[0].fps_median
                emit(row)
        if request.verdict:
            result.verdict.append(verdict_row(request, name, request.batches[0]))
        if request.memory:
            inputs = _inputs(request, max(MEMORY_FRAMES))  # one dataset and audio for every length
            for frames in MEMORY_FRAMES:
                measured = end_to_end_child(request, name, request.batches[0], frames, inputs)
                result.memory.append(MemoryRow(name, request.batches[0], frames, measured["peak_rss_mb"]))
    sgemm.append(sgemm_peak_gflops())
    result.sgemm_readings, result.sgemm_gflops = sgemm, max(sgemm)
    if gpu_device is not None:
        import torch

        gpu_sgemm.append(gpu_sgemm_peak_gflops(gpu_device))
        result.gpu, result.gpu_sgemm_gflops = torch.cuda.get_device_name(gpu_device), max(gpu_sgemm)
    for row in result.rows:
        peak = result.gpu_sgemm_gflops if row.device == "gpu" else result.sgemm_gflops
        row.peak_share = None if row.unet_gflops is None or not peak else row.unet_gflops / peak
    return result


def prepare(request: BenchRequest) -> None:
    """Check the request and fill in its networks: the export folder found, else the checkpoints given or (none given)
    the demo weights, as every command takes them (an export runs on its own); the clip is checked now, and the demo's
    made as long as a measurement needs it."""
    _check(request)
    if request.models is not None:
        from ...export.manifest import find_export

        request.models, _ = find_export(request.models, None)
    given = resolve_inputs(request.dataset, request.audio, request.unet, request.audio_encoder, clip=False,
                           networks=NETWORKS if request.models is None else ())
    request.unet, request.audio_encoder = given.unet, given.audio_encoder


def sgemm_peak_gflops(size: int = SGEMM_SIZE, repeats: int = SGEMM_REPEATS) -> float:
    """The machine's fp32 limit as the backends meet it: GFLOP/s of the fastest of `repeats` float32
    `size` x `size` matmuls (numpy's BLAS with its default threads, one per CPU as ONNX Runtime's and torch's
    pools on these machines) after a warm-up; a few hundred ms. Each backend row's `peak_share` is its
    achieved U-Net GFLOP/s over this, so figures compare across machines."""
    rng = np.random.default_rng(0)
    a, b, product = (rng.random((size, size), dtype=np.float32) for _ in range(3))

    def multiply() -> None:
        np.matmul(a, b, out=product)

    multiply()  # warm-up: thread pool start, page faults
    best = min(_repeat(multiply, repeats)[0])
    return 2 * size**3 / best / 1e9


def gpu_sgemm_peak_gflops(device: str = "cuda", size: int = GPU_SGEMM_SIZE, repeats: int = SGEMM_REPEATS) -> float:
    """The GPU's fp32 limit as a backend meets it: GFLOP/s of the fastest of `repeats` float32 `size` x `size`
    torch matmuls on `device` (IEEE fp32: TF32 off, as the torch backend runs fp32) after a warm-up, timed with
    CUDA events."""
    import torch

    from ...backends.torch import strict_fp32

    strict_fp32()
    generator = torch.Generator(device=device).manual_seed(0)
    a, b = (torch.rand((size, size), device=device, generator=generator) for _ in range(2))
    product = torch.empty_like(a)
    torch.matmul(a, b, out=product)  # warm-up: cuBLAS handle, kernel choice
    best = float("inf")
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        torch.matmul(a, b, out=product)
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3)
    return 2 * size**3 / best / 1e9


def _gpu_device(request: BenchRequest, backend: str) -> str:
    """The CUDA device `backend`'s rows run on (torch: --device; the providers and TensorRT: the first GPU)."""
    return request.device if backend == "torch" and request.device else "cuda"


def model_rows(request: BenchRequest, backend_name: str, batch: int) -> list[BenchRow]:
    """Network-only frames/s: U-Net batches plus the audio encoder's per-frame share, as the pipeline runs the
    backend (its `streams()` U-Net calls at once). For onnxruntime a second row: the same export on plain ONNX
    Runtime sessions with default options, one call at a time, each repeat timed right after the backend's."""
    source = ModelSource.from_paths(request.unet, request.audio_encoder, request.models, precision=request.precision,
                                    check_inputs=demo_check_inputs)
    with create_backend(backend_name, source, **request.options(backend_name)) as backend:
        images, unet_audio, windows = model_inputs(request, backend, request.frames)
        inputs = (images, unet_audio, windows, batch)
        passes = {"model": lambda: _model_pass(backend.generate, backend.encode_audio, *inputs, streams=backend.streams())}
        if backend_name == "onnxruntime":
            plain = default_sessions(backend)
            generate = lambda image, audio: plain["unet"].run(["mouth"], {"image": image, "audio": audio})
            encode = lambda window: plain["audio_encoder"].run(["audio_feature"], {"mel_window": window})
            passes["model-default-session"] = lambda: _model_pass(generate, encode, *inputs)
        for run_once in passes.values():
            run_once()  # warm-up: allocations, kernel choice, lazy initialisation
        seconds: dict[str, list[float]] = {mode: [] for mode in passes}
        for _ in range(request.repeats):  # alternately, so a busy moment of the machine falls on both
            for mode, run_once in passes.items():
                seconds[mode] += _repeat(run_once, 1)[0]
        load = os.getloadavg()[0]
        streams = backend.streams()
    rows = []
    for mode, timed in seconds.items():
        fps = [request.frames / s for s in timed]
        median = statistics.median(fps)
        rows.append(BenchRow(backend_name, batch, mode, median, min(fps), max(fps), request.repeats,
                             unet_gflops=median * UNET_GFLOP_PER_FRAME, load_average=load,
                             streams=streams if mode == "model" else 1))
    return rows


def default_sessions(backend) -> dict:
    """Plain ONNX Runtime sessions of the loaded onnxruntime backend's export, with ORT's default session options,
    on the provider the backend runs on."""
    import onnxruntime as ort

    from ...export.manifest import artifact_path

    provider = backend.sessions["unet"].get_providers()[0]
    return {network: ort.InferenceSession(str(artifact_path(backend.export_dir, network)), providers=[provider])
            for network in ("unet", "audio_encoder")}


def end_to_end_row(request: BenchRequest, backend_name: str, batch: int, video_only: bool = False) -> BenchRow:
    """Production pipeline steady frames/s (no comparison) in child processes, with their peak RSS and, as whole
    processes, their wall time and (frames written) time from process start to the first frame.

    Default: `parity run --no-compare` itself (PNG frames, video and the default dump; mode "end-to-end");
    `video_only`: the video alone, in a bench child (mode "end-to-end-video")."""
    runs = [end_to_end_child(request, backend_name, batch, request.frames, video_only=video_only)
            for _ in range(request.repeats)]
    fps = [r["steady_fps"] for r in runs]
    median = statistics.median(fps)
    starts = [r["process_first_frame_s"] for r in runs if r.get("process_first_frame_s") is not None]
    return BenchRow(backend_name, batch, "end-to-end-video" if video_only else "end-to-end", median, min(fps), max(fps),
                    request.repeats, unet_gflops=median * UNET_GFLOP_PER_FRAME,
                    peak_rss_mb=max(r["peak_rss_mb"] for r in runs), load_average=os.getloadavg()[0],
                    whole_run_fps=statistics.median(r["fps"] for r in runs),
                    first_frame_s=statistics.median(r["first_frame_s"] for r in runs),
                    process_wall_s=statistics.median(r["process_wall_s"] for r in runs),
                    process_first_frame_s=statistics.median(starts) if starts else None)


def reference_row(request: BenchRequest) -> BenchRow:
    """The eager reference loop (torch, one frame at a time, every stage) on the benchmark's inputs."""
    from ...models import load_models
    from ...reference.audio import load_audio
    from ...reference.dataset import open_dataset
    from ...reference.pipeline import ReferencePipeline

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


def verdict_row(request: BenchRequest, backend_name: str, batch: int) -> VerdictRow:
    """Time to the first verdict, whole processes, alternated per repeat: `parity run --no-compare`, then `parity run`
    with an empty reference cache (cold), then again (warm: the reference the cold run cached). The cold runs get a
    cache of their own whose exports, mel spectrograms, demo inputs and weights are the request's (linked), its
    reference folder empty."""
    from ...cache import KINDS, cache_root
    from .port import measure_process, parity_run_command

    dataset, audio = _inputs(request, request.frames)
    root = request.cache or cache_root()
    paths = {"unet": request.unet, "audio_encoder": request.audio_encoder, "models": request.models}
    seconds: dict[str, list[float]] = {"run": [], "cold": [], "warm": []}
    with tempfile.TemporaryDirectory(prefix="parity-bench-verdict-") as scratch:
        for repeat in range(request.repeats):
            cold_cache = Path(scratch) / f"cache-{repeat}"
            cold_cache.mkdir()
            for kind in KINDS:
                if kind != "reference" and (root / kind).is_dir():
                    (cold_cache / kind).symlink_to(root / kind)
            for name, compare, cache in (("run", False, root), ("cold", True, cold_cache), ("warm", True, cold_cache)):
                out = Path(scratch) / f"{name}-{repeat}"
                command = parity_run_command(out, dataset, audio, backend=backend_name, batch=batch, frames=request.frames,
                                             **request.options(backend_name), **paths)
                if compare:
                    command.remove("--no-compare")
                measured = measure_process(command, out, frames_dir=out / "frames", env={**os.environ, "SYNCTALK_PARITY_CACHE": str(cache)})
                if measured.returncode not in (0, 1):  # 1: the verdict failed, which is still a verdict
                    raise ParityError(f"time to first verdict of {backend_name} ({name} run, {request.frames} frames) failed: "
                                      f"{measured.error or 'no output'}")
                if compare:  # the cold run computed its reference, the warm one found it: else the row is not what it says
                    reference = read_result(out).reference
                    if reference is None or reference.cached != (name == "warm"):
                        raise ParityError(f"time to first verdict: the {name} run's reference was "
                                          f"{'missing' if reference is None else 'cached' if reference.cached else 'computed'}")
                seconds[name].append(measured.wall_s)
    return VerdictRow(backend_name, batch, request.frames, seconds["run"], seconds["cold"], seconds["warm"])


def end_to_end_child(request: BenchRequest, backend_name: str, batch: int, frames: int,
                     inputs: tuple[Path, Path] | None = None, video_only: bool = False) -> dict:
    """Run the production pipeline in a fresh process, measured from outside (`bench_port.measure_process`).

    Default: `parity run --no-compare`, timed from the files it writes: steady frames/s from the modification
    times of frames/*.png, the frame phase (`fps`, `first_frame_s`) from its result.json, and, from process
    start, `process_wall_s` and `process_first_frame_s` (frames/00000.png written). `video_only`: the bench child
    (`python -m synctalk_parity.harness.bench end-to-end --video-only`), which reports its frame times itself.
    Both: `frames` and `peak_rss_mb` (the child's own, see `measure_process`)."""
    from .port import measure_process, parity_run_command

    dataset, audio = inputs or _inputs(request, frames)
    env = {**os.environ}
    if request.cache is not None:
        env["SYNCTALK_PARITY_CACHE"] = str(request.cache)
    paths = {"unet": request.unet, "audio_encoder": request.audio_encoder, "models": request.models}
    with tempfile.TemporaryDirectory(prefix="parity-bench-") as scratch:
        out, log, stdout = Path(scratch) / "out", Path(scratch) / "log.txt", Path(scratch) / "stdout.txt"
        if video_only:
            command = [sys.executable, "-m", __name__, "end-to-end", "--backend", backend_name, "--batch", str(batch),
                       "--frames", str(frames), "--out", str(out), "--dataset", str(dataset), "--audio", str(audio), "--video-only"]
            for option, value in {**request.options(backend_name), **paths}.items():
                if value is not None:
                    command += [f"--{option.replace('_', '-')}", str(value)]
        else:
            command = parity_run_command(out, dataset, audio, backend=backend_name, batch=batch, frames=frames,
                                         **request.options(backend_name), **paths)
        measured = measure_process(command, out, frames_dir=out / "frames", env=env, log=log, stdout=stdout)
        if measured.returncode != 0:
            raise ParityError(f"end-to-end benchmark of {backend_name} (batch {batch}, {frames} frames) failed: "
                              f"{measured.error or 'no output'}")
        if video_only:
            lines = stdout.read_text().strip().splitlines()
            if not lines:
                raise ParityError(f"end-to-end benchmark of {backend_name} (batch {batch}, {frames} frames) printed nothing")
            child = json.loads(lines[-1])
        else:
            child = _run_figures(out, batch)
    return {**child, "peak_rss_mb": measured.peak_rss_mb, "process_wall_s": measured.wall_s,
            "process_first_frame_s": measured.first_frame_s if not video_only else None}


def _run_figures(out: Path, batch: int) -> dict:
    """Frame-phase figures of a finished `parity run` from what it wrote: PNG mtimes and result.json's timing."""
    timing = read_result(out).timing
    if timing is None:
        raise ParityError(f"{out / 'result.json'} has no timing: the benchmarked `parity run` did not finish its frames")
    done_at = [p.stat().st_mtime for p in sorted((out / "frames").glob("*.png"))]
    started = done_at[-1] - timing.seconds["frames"] if done_at else 0.0  # the frame phase ends when the last frame is out
    return {"fps": timing.fps, "steady_fps": steady_fps(done_at, batch) or timing.fps, "frames": timing.frames,
            "first_frame_s": done_at[0] - started if done_at else None}


def model_inputs(request: BenchRequest, backend, frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """U-Net images `(F,6,320,320)`, audio `(F,32,16,16)` and mel windows `(F,1,80,16)` for `frames` frames: made
    from the request's dataset and audio (else the demo's) as the reference makes them, 16 at most, cycled."""
    dataset, audio = _inputs(request, min(frames, 16))
    images, unet_audio, windows = network_inputs(dataset, audio, backend.encode_audio, min(frames, 16))
    windows = windows[: len(images)]
    cycle = lambda a: np.ascontiguousarray(a[np.arange(frames) % len(a)])
    return cycle(images), cycle(unet_audio), cycle(windows)


def write_bench_result(result: BenchResult, out: Path) -> Path:
    """`result.json` (command "bench") in `out`, saying how each peak was measured."""
    described = replace(result, sgemm=result.sgemm or SGEMM_TEXT,
                        gpu_sgemm=result.gpu_sgemm or (GPU_SGEMM_TEXT if result.gpu is not None else None))
    return write_result(Path(out), "bench", bench=described)


def write_port_bench_result(result, out: Path) -> Path:
    """`result.json` (command "bench") of `parity bench --port`: the timings under `bench.port`, and the port's
    verdict as the document's comparison (and `port`), so the reports show how fast and how right it is."""
    out = Path(out)
    comparison = port = backend = None
    if result.judged is not None:
        verdict = read_result(result.judged.result_path)
        where = Path(os.path.relpath(result.judged.out, out))
        inside = lambda path: path if Path(path).is_absolute() else where / path  # relative to the verdict there
        comparison, port = verdict.comparison, verdict.port
        if comparison is not None:
            worst = comparison.worst_frame
            comparison = replace(comparison, candidate=inside(comparison.candidate), worst_frame=None if worst is None else
                                 WorstFrame(worst.index, inside(worst.reference_png), inside(worst.candidate_png)))
        if port is not None and port.worst_mouth is not None:
            port.worst_mouth.files = {name: str(inside(file)) for name, file in port.worst_mouth.files.items()}
        backend = Backend(f"port ({Path(result.port_argv[0]).name})", comparison.gate.precision if comparison else "fp32",
                          {"kind": result.judged.kind})
    bench_section = BenchResult(machine=machine_description(), port=result.to_record())
    return write_result(out, "bench", backend=backend, inputs=Inputs(result.dataset, result.audio, frames=result.frames),
                        bench=bench_section, comparison=comparison, port=port)


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
    for name in request.backends:
        reason = get_backend_class(name).available()
        if reason:
            raise ParityError(f"backend {name!r} is not available: {reason}")


def _model_pass(generate: Callable, encode: Callable, images: np.ndarray, unet_audio: np.ndarray, windows: np.ndarray,
                batch: int, streams: int = 1) -> None:
    """U-Net batches through `generate(image, audio)` as the pipeline sends them (`streams` calls at once), then the
    encoder's windows through `encode(windows)`."""
    starts = range(0, len(images), batch)
    call = lambda start: generate(images[start : start + batch], unet_audio[start : start + batch])
    if streams == 1:  # on this thread: a fresh thread per pass would pay, e.g., torch's per-thread cuDNN/cuBLAS handles
        for start in starts:
            call(start)
    else:
        with ThreadPoolExecutor(streams) as pool:
            list(pool.map(call, starts))
    for start in range(0, len(windows), 64):  # reference/audio.py ENCODER_BATCH
        encode(windows[start : start + 64])


def _repeat(step: Callable[[], None], repeats: int) -> tuple[list[float], float]:
    seconds = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - t)
    return seconds, os.getloadavg()[0]


def _with_ratio(row: BenchRow, reference: BenchRow, model: BenchRow | None = None) -> BenchRow:
    row.ratio_to_reference = row.fps_median / reference.fps_median if reference.fps_median else None
    if model is not None and model.fps_median:
        row.ratio_to_model = row.fps_median / model.fps_median
    return row


def steady_fps(done_at: list[float], batch: int) -> float | None:
    """Frames/s after the first batch: `(n - batch) / (done_at[-1] - done_at[batch - 1])`, from the
    times each output frame was written; None when there are fewer than two batches after it."""
    if len(done_at) < 3 * batch:
        return None
    return (len(done_at) - batch) / (done_at[-1] - done_at[batch - 1])


def _inputs(request: BenchRequest, frames: int) -> tuple[Path, Path]:
    """The dataset and audio: the request's, else a demo long enough for `frames` output frames."""
    seconds = max(DEMO_SECONDS, float(np.ceil(frames / 25 + 1)))
    inputs = resolve_inputs(request.dataset, request.audio, networks=(), demo_seconds=seconds, cache=request.cache)
    assert inputs.dataset is not None and inputs.audio is not None
    return inputs.dataset, inputs.audio


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB.

    On Linux it is VmHWM of /proc/self/status: getrusage's ru_maxrss survives fork + exec, so a child
    started by a bench process holding 2 GB reports at least 2 GB, whatever it used itself."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes there, kB on Linux


def _end_to_end_main(argv: list[str]) -> None:
    """Child process: one production run, then one JSON line with fps and this process's peak RSS."""
    import argparse

    from ...allocator import tune_allocator
    from ..pipeline.run import RunRequest, run

    tune_allocator()  # as `parity run` has it

    parser = argparse.ArgumentParser(prog="python -m synctalk_parity.harness.bench end-to-end")
    for flag in ("--backend", "--out", "--dataset", "--audio", "--unet", "--audio-encoder", "--models", "--provider", "--device"):
        parser.add_argument(flag)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--streams", type=int, default=None)
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--video-only", action="store_true", help="no PNG frames, no dump")
    args = parser.parse_args(argv)
    as_path = lambda p: None if p is None else Path(p)
    request = RunRequest(Path(args.out), args.backend, as_path(args.dataset), as_path(args.audio), as_path(args.unet),
                         as_path(args.audio_encoder), args.frames, models=as_path(args.models), batch=args.batch,
                         dump="none" if args.video_only else "all", compare=False, save_frames=not args.video_only,
                         provider=args.provider, device=args.device, streams=args.streams)
    done_at: list[float] = []
    try:
        result = run(request, progress=lambda done, total: done_at.append(time.perf_counter()))
    except ParityError as exc:
        sys.stderr.write(f"{exc}\n")
        raise SystemExit(exc.exit_code) from None
    frame_phase = result.seconds["frames"]
    started = done_at[-1] - frame_phase if done_at else 0.0  # the frame phase ends when the last frame is out
    sys.stdout.write(json.dumps({
        "fps": result.fps, "steady_fps": steady_fps(done_at, args.batch) or result.fps, "frames": result.frames_written,
        "first_frame_s": done_at[0] - started if done_at else None, "peak_rss_mb": peak_rss_mb(),
    }) + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] != ["end-to-end"]:
        raise SystemExit("usage: python -m synctalk_parity.harness.bench end-to-end --backend NAME --out DIR ...")
    _end_to_end_main(sys.argv[2:])
