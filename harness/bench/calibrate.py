"""`parity bench --calibrate-streams`: measure how many U-Net calls at once make the pipeline fastest on this machine.

For each candidate count (`backends/calibration.py`: 1, 2, 4, ... up to the CPUs), `parity run --no-compare
--streams N` as a child process (PNG frames, video, the default dump: the run users make), its steady frames/s
from the frames it wrote (`end_to_end_child`), after `--warmup` untimed runs; the candidates alternate, in reversed
order every other repeat, so a machine slowing down during the measurement does not favour one. One calibration at a
time per cache (`measuring`). The count with the highest median is kept in the
cache for this machine, where the ONNX Runtime backend takes it as its default on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from ...backends.calibration import Calibration, cpu_count, measuring, save_calibration, stream_candidates
from ...errors import ParityError
from .measure import BenchRequest, _inputs, end_to_end_child, prepare

OnRun = Callable[[int, int, "float | None"], None]  # (repeat, streams, steady frames/s: None as a run starts); repeat -1: the warm-up
BATCH = 1  # the CPU provider's batch (`OnnxRuntimeBackend.preferred_batch`)


def calibrate_streams(request: BenchRequest, warmup: int = 1, on_run: OnRun | None = None) -> Calibration:
    """Measure every candidate count `request.repeats` times on `request.frames` frames, after `warmup` untimed runs
    (the first run of a session pays for the files the page cache does not hold yet), and keep the fastest."""
    if request.backends != ["onnxruntime"]:
        raise ParityError(f"--calibrate-streams measures the onnxruntime backend's U-Net calls at once; --backend {','.join(request.backends)} "
                          "has no streams (use --backend onnxruntime, or leave --backend out)")
    if request.provider not in (None, "cpu"):
        raise ParityError(f"--calibrate-streams is for the CPU provider; --provider {request.provider} runs one call at a time")
    if request.streams is not None:
        raise ParityError("--calibrate-streams measures every stream count itself; leave --streams out")
    if request.frames < 3 * BATCH or request.repeats < 1 or warmup < 0:
        raise ParityError("--calibrate-streams needs --frames of at least 3, --repeats of at least 1 and --warmup of at least 0")
    prepare(request)
    inputs = _inputs(request, request.frames)
    candidates = stream_candidates(cpu_count())
    fps: dict[int, list[float]] = {count: [] for count in candidates}

    def timed(repeat: int, count: int) -> float:
        if on_run:
            on_run(repeat, count, None)
        measured = end_to_end_child(replace(request, streams=count), "onnxruntime", BATCH, request.frames, inputs)["steady_fps"]
        if on_run:
            on_run(repeat, count, measured)
        return measured

    with measuring():
        for _ in range(warmup):
            timed(-1, candidates[-1])
        for repeat in range(request.repeats):
            for count in candidates if repeat % 2 == 0 else reversed(candidates):
                fps[count].append(timed(repeat, count))
        networks = str(request.models or request.unet)
        return save_calibration(fps, request.frames, str(inputs[0]), networks)
