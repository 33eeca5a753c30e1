"""ONNX Runtime: the exported `.onnx` networks on the CPU, CUDA, TensorRT or CoreML execution provider.

Loads `unet.onnx` and `audio_encoder.onnx` from an export folder (checked against its manifest),
or exports the source's checkpoints (fixture weights when none) once into the cache (`backends/exports.py`).

The provider asked for is the one that runs, or the load fails: ORT quietly runs a session on the CPU
when a GPU provider's libraries fail to load, and quietly sends nodes a provider cannot run to the CPU.
A GPU provider's sessions are created with CPU fallback of nodes disabled
(`session.disable_cpu_ep_fallback`) and without the Python API's retry on the CPU, and each session's
provider in use is checked after creation (`check_session_providers`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import ParityError
from ..export.manifest import artifact_path, read_manifest
from .base import Backend
from .calibration import Calibration, calibrated_streams, cpu_count
from .exports import export_for

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}
NETWORKS = ("unet", "audio_encoder")
MAX_DEFAULT_STREAMS = 4  # each U-Net call in flight holds ~210 MB of activations at batch 1 (see OnnxRuntimeBackend)
# ORT's session config key (onnxruntime_session_options_config_keys.h): "1" fails session creation when a node
# would be assigned to the CPU EP; invalid together with an explicitly listed CPUExecutionProvider.
DISABLE_CPU_FALLBACK = "session.disable_cpu_ep_fallback"
_LOAD_HINTS = {
    "CUDAExecutionProvider": "check the CUDA/cuDNN libraries",
    "TensorrtExecutionProvider": "check the TensorRT, CUDA and cuDNN libraries",
    "CoreMLExecutionProvider": "the CoreML provider needs macOS",
}


def check_session_providers(requested: str, in_use: list[str], network: str) -> None:
    """Refuse a session that does not run on `requested` (full ORT provider name) first: `in_use` is its
    `get_providers()`, where ORT lists the CPU first when a GPU provider failed to load."""
    actual = in_use[0] if in_use else "no execution provider"
    if actual != requested:
        hint = _LOAD_HINTS.get(requested, "check that provider's libraries")
        raise ParityError(f"onnxruntime: asked for {requested} but the {network} session runs on {actual} "
                          f"(the provider failed to load; {hint}, or use --provider cpu)")


def create_session(path: Path, network: str, provider: str, threads: int | None = None):
    """An `onnxruntime.InferenceSession` of `path` on `provider` (full ORT name) alone, or a one-line `ParityError`.

    Off the CPU, CPU fallback of nodes is disabled: a node the provider cannot run fails here instead
    of running on the CPU. `enable_fallback=0` stops the Python API from retrying a failed creation
    (or run) on the CPU.

    Session options on the CPU, U-Net model-only at batch 1, the golden export (fp32), onnxruntime 1.32,
    `scripts/ort_session_options.py --frames 10 --rounds 6`: every option set in one process, interleaved frame
    by frame in a rotating order, ratio to this session's options round by round, median (min..max), two runs.
    Measured on a 2-core AMD EPYC (AVX2) shared with other agents (load average 4-5 during the runs), so small
    ratios are noise: the same options in a second session (an A/A control) read 1.03x (0.97..1.10) and 1.05x
    (0.91..1.09).
    - ORT_ENABLE_EXTENDED (no layout transforms, no NCHWc): 0.55x (0.53..0.61): the layout transforms are what
      makes the convolutions fast; kept (ORT_ENABLE_ALL, set explicitly).
    - ORT_ENABLE_LAYOUT instead of ORT_ENABLE_ALL: 0.97x (0.89..1.12); `session.dynamic_block_base` 4: 0.97x
      (0.94..1.09); `session.set_denormal_as_zero`: 1.05x (0.97..1.25), then 0.94x (0.82..1.01): within the
      control's spread; not set.
    - ORT_PARALLEL with 2 inter-op threads: 0.68x (0.61..0.73); not set (the U-Net is one chain of ops).
    - intra-op spinning on (ORT's default), in an earlier run timed in blocks of 12 frames rather than frame by
      frame (a spinning session's threads would slow the next one): 0.68x (0.48..0.77) on this oversubscribed
      machine; kept off for the pipeline (comment below). Intra-op threads: ORT's default (one per physical core).
    Not measured here: an AVX-512 machine (not available to this session)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    # Every graph optimization, NCHWc layout transforms included (ORT's default, kept explicit: without the
    # layout transforms, ORT_ENABLE_EXTENDED, the U-Net ran at about 0.6x; see the docstring).
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # No spin-waiting between ops: in the pipeline, decoding, pasting and encoding threads need
    # the cores that spinning ORT threads would burn (measured: 720p end-to-end 10 -> 11.7 fps).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    if provider != PROVIDERS["cpu"]:
        options.add_session_config_entry(DISABLE_CPU_FALLBACK, "1")  # so the CPU EP must not be listed too
    try:
        return ort.InferenceSession(str(path), options, providers=[provider], enable_fallback=0)
    except Exception as exc:  # ORT raises its own pybind exception types (Fail, InvalidArgument...), not RuntimeError
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if provider == PROVIDERS["cpu"]:
            raise ParityError(f"onnxruntime: the {network} network ({path}) does not load: {reason} (re-export it with `parity export`, or upgrade onnxruntime)") from exc
        hint = _LOAD_HINTS.get(provider, "check that provider's libraries")
        raise ParityError(f"onnxruntime: the {network} network ({path}) does not load on {provider}: {reason} "
                          f"({hint}, or a node it cannot run; or use --provider cpu)") from exc


def default_cpu_streams() -> tuple[int, str]:
    """U-Net calls run at once on the CPU provider when neither `streams` nor `threads` is given, and where that count
    comes from: this machine's calibration (`backends/calibration.py`), else one per CPU up to `MAX_DEFAULT_STREAMS`
    (saying why a calibration found here is not used)."""
    calibration = calibrated_streams()
    if isinstance(calibration, Calibration):
        return calibration.streams, calibration.describe()
    rule = f"one per CPU, at most {MAX_DEFAULT_STREAMS}"
    return min(cpu_count(), MAX_DEFAULT_STREAMS), (
        f"{rule} (not calibrated: `parity bench --calibrate-streams` measures it)" if calibration is None
        else f"{rule}, because {calibration} (`parity bench --calibrate-streams` measures it again)")


def unet_session_threads(streams: int, threads: int | None) -> int | None:
    """Intra-op threads of the U-Net's session on the CPU: with several calls at once each runs on its share of the CPUs;
    one call at a time takes `threads` (None: ORT's default). The audio encoder runs alone, on `threads`."""
    return max(1, cpu_count() // streams) if streams > 1 else threads


class OnnxRuntimeBackend(Backend):
    """Options: `provider` (cpu, cuda, tensorrt, coreml; default cpu), `threads` (intra-op threads), `streams`
    (U-Net calls in flight at once).

    Streams, on the CPU provider: by default the count `parity bench --calibrate-streams` measured fastest on this
    machine (`backends/calibration.py`), else one U-Net call per CPU runs at once, up to `MAX_DEFAULT_STREAMS`, each
    on its share of the CPUs (one thread each on 2 to 4 CPUs; ONNX Runtime's `Run` is safe to call concurrently on
    one session), instead of one call at a time spread over every core. A call spread over the cores waits at
    every operator for its slowest thread, and in the pipeline a core is often busy decoding, pasting or encoding,
    so every operator waits; independent calls lose only the CPU time the other work takes. `streams=1` (or `threads` given) is one
    call at a time on ORT's intra-op pool. Other providers: one call at a time.

    Measured on a 2-core AMD EPYC (AVX2), sanders-mini 720p, 249 frames, golden weights, batch 1, whole `parity run
    --no-compare` processes alternately: streams 1 (the former default) 10.9 and 11.3 frames/s, 42-43 s of user CPU;
    streams 2: 13.4 and 13.9 frames/s, 36-37 s of user CPU (1.22x), frames bit-identical. Model-only, one process, in
    alternation: two concurrent single-threaded calls 13.6 frames/s against 10.9-13.0 for a default session (spinning
    on) and 11.2-12.0 with spinning off. In `parity bench` (same machine, same run): e2e 1.04x and e2e video 1.11x of
    plain ONNX Runtime's default-session model-only. Each call in flight holds its own activations, about 210 MB
    at batch 1 (resident memory 500 MB with one call, 719 with two, 1132 with four), hence the cap on the default.
    Not measured: an AVX-512 machine, or more than 2 CPUs."""

    name = "onnxruntime"
    description = "ONNX Runtime (CPU, CUDA, TensorRT or CoreML execution provider)"

    @classmethod
    def available(cls) -> str | None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            return f"onnxruntime is not installed ({exc}); pip install onnxruntime (or onnxruntime-gpu)"
        return None

    def _load_impl(self) -> None:
        import onnxruntime as ort

        provider = self._provider(ort.get_available_providers())
        self.export_dir = export_for(self.source, "onnx")
        self.provider_requested = provider
        threads = int(self.options["threads"]) if self.options.get("threads") else None
        self._streams = self._streams_option(provider, threads)
        unet_threads = unet_session_threads(self._streams, threads)
        # both sessions built at once: ONNX Runtime builds a session without the GIL (the backend load 0.74 -> 0.31 s, cProfile)
        with ThreadPoolExecutor(len(NETWORKS)) as pool:
            made = {network: pool.submit(create_session, artifact_path(self.export_dir, network), network, provider,
                                         unet_threads if network == "unet" else threads)
                    for network in NETWORKS}
            self.sessions = {network: future.result() for network, future in made.items()}
        for network, session in self.sessions.items():
            check_session_providers(provider, session.get_providers(), network)

    def _encode_audio_impl(self, windows: np.ndarray) -> np.ndarray:
        return self.sessions["audio_encoder"].run(["audio_feature"], {"mel_window": windows})[0]

    def _generate_impl(self, image: np.ndarray, audio: np.ndarray) -> np.ndarray:
        return self.sessions["unet"].run(["mouth"], {"image": image, "audio": audio})[0]

    def _close_impl(self) -> None:
        self.sessions = {}

    def preferred_batch(self) -> int:
        """1 on the CPU provider: on 2 cores batch 4 ran the networks 5-10% faster but the whole pipeline
        slower (720p, two bench runs: 14.8-14.9 fps at 1, 12.7-14.5 at 4) with ~1 GB more memory; 4 on GPU
        providers."""
        if self._loaded and self.sessions["unet"].get_providers()[0] == PROVIDERS["cpu"]:
            return 1
        return super().preferred_batch()

    def streams(self) -> int:
        return self._streams if self._loaded else 1

    def _streams_option(self, provider: str, threads: int | None) -> int:
        """The `streams` option, checked; default on the CPU provider (unless `threads` is given): the count `parity
        bench --calibrate-streams` measured fastest on this machine (`backends/calibration.py`), else one per CPU up
        to `MAX_DEFAULT_STREAMS`; on other providers 1. `streams_source` says which."""
        value = self.options.get("streams")
        if value is None:
            if provider != PROVIDERS["cpu"] or threads is not None:
                self.streams_source = "one call at a time (threads given)" if threads is not None else f"one call at a time on {provider}"
                return 1
            streams, self.streams_source = default_cpu_streams()
            return streams
        self.streams_source = "asked for (--streams)"
        try:
            streams = int(value)
        except ValueError:
            streams = 0
        if streams < 1:
            raise ParityError(f"--streams must be a whole number of at least 1, got {value!r}")
        if streams > 1 and provider != PROVIDERS["cpu"]:
            raise ParityError(f"--streams {streams}: concurrent U-Net calls are for the CPU provider; {provider} runs one call at a time (use --streams 1)")
        return streams

    def describe(self) -> dict[str, str]:
        """Backend, precision, the provider in use (`provider`) and asked for (`provider_requested`), the
        session's provider list (`providers`), U-Net calls in flight (`streams`), onnxruntime and numpy versions,
        export folder."""
        info = super().describe()
        if self._loaded:
            import onnxruntime as ort

            in_use = self.sessions["unet"].get_providers()
            info.update(
                provider=in_use[0],
                provider_requested=self.provider_requested,
                providers=", ".join(in_use),
                streams=str(self._streams),
                streams_source=self.streams_source,
                onnxruntime=ort.__version__,
                numpy=np.__version__,
                precision=read_manifest(self.export_dir)["precision"],
                export_dir=str(self.export_dir),
            )
        return info

    def _provider(self, available: list[str]) -> str:
        choice = self.options.get("provider") or "cpu"
        if choice not in PROVIDERS:
            raise ParityError(f"unknown onnxruntime provider {choice!r}: choose from {', '.join(PROVIDERS)}")
        if PROVIDERS[choice] not in available:
            raise ParityError(f"onnxruntime has no {PROVIDERS[choice]} here; available: {', '.join(available)} "
                              f"(providers come with the onnxruntime build, e.g. onnxruntime-gpu for cuda; or use --provider cpu)")
        return PROVIDERS[choice]
