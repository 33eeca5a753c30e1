"""The production pipeline: the reference's stages on any backend, batched and streamed.

The same stage functions as the reference (`reference/audio.py`, `reference/frames.py`), composed by the
reference's own two halves of a frame (`reference/pipeline.py`: `frame_inputs` before the network,
`finish_frame` after it), arranged for speed: audio features for the whole clip in batches; then three overlapping steps joined by
bounded queues, so memory stays flat however long the video is:

    reader thread    template image (LRU: every template the ping-pong uses while they fit 512 MiB), crop_328,
                     unet_input, unet_audio
    calling thread   U-Net batches of `batch` frames on the backend: `backend.streams()` calls at once, each on
                     a worker thread, their results handed on in frame order
    writer thread    mouth, pasted_region, paste, then `on_frame(FrameStages)` (PNG, video, dump)

    pipeline = ProductionPipeline(backend, batch=4)
    clip = pipeline.audio_stages(load_audio(wav))
    timing = pipeline.run(dataset, clip, count, on_frame=write_outputs)

An exception in any thread stops the other two and is raised in the caller.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ...backends.base import Backend
from ...errors import ParityError
from ...reference import audio
from ...reference.dataset import Dataset
from ...reference.pipeline import FrameInputs, finish_frame, frame_inputs
from ...reference.stages import ClipStages, FrameStages

DEFAULT_BATCH = 4
TEMPLATE_CACHE = None  # decoded templates kept: None, every template the run uses while they fit TEMPLATE_BYTES, else 8
TEMPLATE_BYTES = 512 * 2**20  # decoded templates kept at most (sanders-mini: 100 x 1280x720 = 264 MiB; 720p: 194 templates)
TEMPLATE_CACHE_MIN = 8  # the ping-pong schedule revisits its neighbours
POLL_SECONDS = 0.1  # how often a blocked thread checks whether another one failed

FrameSink = Callable[[FrameStages], None]
Progress = Callable[[int, int], None]  # (frames done, frames total)


@dataclass
class PipelineTiming:
    """Seconds spent per step (busy time of each thread, so they add up to more than `frames`)."""

    frames: int
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        wall = self.seconds.get("frames", 0.0)
        return self.frames / wall if wall else 0.0


class ProductionPipeline:
    def __init__(self, backend: Backend, batch: int = DEFAULT_BATCH, queue_frames: int | None = None,
                 template_cache: int | None = TEMPLATE_CACHE):
        if batch < 1:
            raise ParityError(f"--batch must be at least 1, got {batch}")
        self.backend = backend
        self.batch = batch
        self.queue_frames = queue_frames or 2 * batch * max(1, backend.streams())
        self.template_cache = template_cache

    def audio_stages(self, pcm: np.ndarray, source: str = "audio", mel: np.ndarray | None = None) -> ClipStages:
        """PCM to mel (or the `mel` already computed for this PCM: `harness/pipeline/audio_cache.py`), windows and padded
        features, the encoder run on the backend in batches."""
        if mel is None:
            mel = audio.mel_spectrogram(pcm)
        windows = audio.mel_windows(mel, source)
        features = audio.pad_features(audio.encode_windows(self.backend.encode_audio, windows))
        return ClipStages(pcm=pcm, mel=mel, windows=windows, features=features)

    def run(self, dataset: Dataset, clip: ClipStages, count: int | None, on_frame: FrameSink,
            progress: Progress | None = None) -> PipelineTiming:
        """Make output frames 0..count-1 and hand each to `on_frame` (on the writer thread), in order."""
        total = clip.frame_count if count is None else min(count, clip.frame_count)
        run = _Run(total, depth=self.queue_frames)
        reader = threading.Thread(target=run.guard, args=(self._read, dataset, clip.features, run), name="parity-read", daemon=True)
        writer = threading.Thread(target=run.guard, args=(self._write, on_frame, progress, run), name="parity-write", daemon=True)
        started = time.perf_counter()
        reader.start()
        writer.start()
        try:
            self._infer(run)
        except BaseException as exc:
            run.fail(exc)
        finally:
            reader.join()
            writer.join()
        if run.error is not None:
            raise run.error
        run.seconds["frames"] = time.perf_counter() - started
        return PipelineTiming(total, dict(run.seconds))

    # ----- the three steps ------------------------------------------------------------------
    def _read(self, dataset: Dataset, features: np.ndarray, run: _Run) -> None:
        images = _TemplateCache(dataset, self.template_cache or templates_kept(dataset, run.total))
        for index, template_index in enumerate(dataset.schedule(run.total)):
            t = time.perf_counter()
            item = _Frame(frame_inputs(dataset, features, index, template_index, images.get(template_index)))
            run.add("read", time.perf_counter() - t)
            run.put(run.to_infer, item)
        run.put(run.to_infer, _END)

    def _infer(self, run: _Run) -> None:
        """Batches to the backend, up to `backend.streams()` calls at once; results handed on oldest first, so the
        writer sees frames in order whatever order the calls finish in."""
        streams = max(1, self.backend.streams())
        in_flight: deque[tuple[list[_Frame], Future]] = deque()

        def call(frames: list[_Frame]) -> np.ndarray:
            t = time.perf_counter()
            outputs = self.backend.generate(np.stack([f.inputs.unet_input for f in frames]), np.stack([f.inputs.unet_audio for f in frames]))
            run.add("infer", time.perf_counter() - t)
            return outputs

        def hand_on_oldest() -> None:
            frames, future = in_flight.popleft()
            for frame, output in zip(frames, future.result()):
                frame.unet_output = output
                run.put(run.to_write, frame)

        with ThreadPoolExecutor(streams, thread_name_prefix="parity-infer") as pool:
            pending: list[_Frame] = []
            while True:
                while in_flight and in_flight[0][1].done():  # finished calls go on before waiting for more input
                    hand_on_oldest()
                item = run.get(run.to_infer)
                if item is not _END:
                    pending.append(item)
                if pending and (len(pending) == self.batch or item is _END):
                    if len(in_flight) == streams:
                        hand_on_oldest()
                    in_flight.append((pending, pool.submit(call, pending)))
                    pending = []
                if item is _END:
                    while in_flight:
                        hand_on_oldest()
                    run.put(run.to_write, _END)
                    return

    def _write(self, on_frame: FrameSink, progress: Progress | None, run: _Run) -> None:
        while (item := run.get(run.to_write)) is not _END:
            t = time.perf_counter()
            assert item.unet_output is not None
            stages = finish_frame(item.inputs, item.unet_output)
            run.add("paste", time.perf_counter() - t)
            t = time.perf_counter()
            on_frame(stages)
            run.add("write", time.perf_counter() - t)
            if progress:
                progress(stages.index + 1, run.total)

    def __repr__(self) -> str:
        return f"ProductionPipeline({self.backend.name}, batch={self.batch})"


# ----- plumbing ---------------------------------------------------------------------------------

_END = object()  # end of stream, sent down each queue once


@dataclass
class _Frame:
    inputs: FrameInputs  # its image is the decoded template, shared with the cache: read-only
    unet_output: np.ndarray | None = None


class _Stopped(Exception):
    """Raised in a thread blocked on a queue when another thread failed."""


class _Run:
    """State shared by the three threads of one run: queues, the first error, busy seconds."""

    def __init__(self, total: int, depth: int = 8):
        self.total = total
        self.to_infer: queue.Queue = queue.Queue(maxsize=depth)
        self.to_write: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.seconds: dict[str, float] = {"read": 0.0, "infer": 0.0, "paste": 0.0, "write": 0.0}
        self._lock = threading.Lock()

    def guard(self, step, *args) -> None:
        """Run one thread's step; its exception (other than being stopped) becomes the run's error."""
        try:
            step(*args)
        except _Stopped:
            pass
        except BaseException as exc:
            self.fail(exc)

    def fail(self, exc: BaseException) -> None:
        with self._lock:
            if self.error is None and not isinstance(exc, _Stopped):
                self.error = exc
        self.stop.set()

    def add(self, step: str, seconds: float) -> None:
        with self._lock:
            self.seconds[step] += seconds

    def put(self, q: queue.Queue, item) -> None:
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                q.put(item, timeout=POLL_SECONDS)
                return
            except queue.Full:
                continue

    def get(self, q: queue.Queue):
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                return q.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue


def templates_kept(dataset: Dataset, frames: int) -> int:
    """How many decoded templates a run of `frames` frames keeps: every one it uses (each is decoded once for the whole
    ping-pong) while they fit `TEMPLATE_BYTES`, else as many as fit, at least `TEMPLATE_CACHE_MIN`. Bounded by the
    dataset, not the video's length."""
    width, height = dataset.frame_size
    used = min(dataset.template_count, frames + 1)
    return max(TEMPLATE_CACHE_MIN, min(used, TEMPLATE_BYTES // max(1, width * height * 3)))


class _TemplateCache:
    """Decoded template images, least recently used dropped first."""

    def __init__(self, dataset: Dataset, size: int):
        self.dataset = dataset
        self.size = max(1, size)
        self._images: OrderedDict[int, np.ndarray] = OrderedDict()

    def get(self, template_index: int) -> np.ndarray:
        image = self._images.get(template_index)
        if image is None:
            image = self.dataset.templates[template_index].read_image()
            image.setflags(write=False)
            self._images[template_index] = image
            if len(self._images) > self.size:
                self._images.popitem(last=False)
        else:
            self._images.move_to_end(template_index)
        return image
