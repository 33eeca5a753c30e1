"""`parity run`: audio + avatar dataset -> frames, an mp4, a stage dump and a verdict, on any backend.

The production pipeline (`harness/pipeline/production.py`) runs on the chosen backend; its stage dump is
compared with the eager reference's dump of the same inputs (computed once, then cached). With no
dataset and audio it runs the built-in demo (inputs made locally). Weights not given are the demo weights
(`reference/demo_weights.py`: listening test weights for the demo avatar, made once and cached). Output folder:

    frames/00000.png ...   every output frame, lossless, numbered in output order
    video.mp4              H.264 + AAC, 25 fps (lossy; compare frames, not the video)
    dump/                  the candidate's stage dump (light stages every frame, heavy every K-th)
    result.json            the result contract (reports read it), with the lip sync: every output frame's mouth motion
                           (measured as the frames are written) against the reference's, or with --no-compare
                           against the audio's loudness (`harness/verdict/lip_sync.py`)
    summary.json, summary.md
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ... import __version__
from ...atomic import building, write_text_atomically
from ...backends import ModelSource, create_backend, get_backend_class
from ...errors import ParityError
from ...precision import checked_precision
from ...reference.audio import load_audio
from ...reference.dataset import open_dataset
from ...reference.demo_weights import checkpoint_label
from ...reference.video import VideoWriter
from ..inputs import NETWORKS, demo_check_inputs, resolve_inputs
from ..verdict.dump import DumpWriter, parse_stage_selection
from ..verdict.lip_sync import MotionRecorder
from ..verdict.png import write_png
from ..verdict.result import json_text, write_result
from ..verdict.types import Backend, Inputs, ReferenceRun, RunResult, Timing
from .audio_cache import cached_mel, prefetch_librosa, store_mel
from .production import ProductionPipeline
from .reference_cache import ReferenceInputs, ReferenceResult, every_kth, heavy_frame, preload_reference, reference_dump, reference_missing

Progress = Callable[[int, int], None]  # (frames done, frames total)
DEFAULT_DUMP_EVERY = 10
# A reference not cached is computed after the frames (False) or while they are made (True). Measured side by side on
# the idle 2-core machine (docs/performance.md): after 27.6 s, while 32.0 s (the two compete for the cores).
REFERENCE_OVERLAP = False


@dataclass
class RunRequest:
    out: Path
    backend: str | None = None  # None: backends.default_backend()
    dataset: Path | None = None
    audio: Path | None = None
    unet: Path | None = None
    audio_encoder: Path | None = None
    frames: int | None = None
    start_frame: int = 0
    models: Path | None = None  # an export folder (`parity export`)
    batch: int | None = None  # None: the backend's preferred batch
    dump: str = "all"  # stage selection: all, none, or comma-separated stage names
    dump_every: int = DEFAULT_DUMP_EVERY
    compare: bool = True
    save_frames: bool = True  # lossless PNG of every output frame (harness/verdict/png.py: ~3 ms a 720p frame)
    gate: Path | None = None
    precision: str | None = None  # None: the loaded export's precision (its manifest), else fp32
    provider: str | None = None  # onnxruntime execution provider (cpu, cuda, tensorrt, coreml); None: cpu
    device: str | None = None  # torch device (cpu, cuda, cuda:N); None: cpu
    streams: int | None = None  # onnxruntime: U-Net calls in flight at once; None: the backend's choice (one per CPU on the CPU)
    overwrite: bool = False  # replace an --out folder that holds files a run does not write
    reference: Path | None = None  # a reference dump of these inputs to compare with (`parity matrix` ships one); None: the cached one
    reference_exact: bool = False  # the reference's U-Net in plain eager PyTorch (else the faster execution: reference/execution.py)
    reference_overlap: bool | None = None  # compute a missing reference while the frames are made; None: REFERENCE_OVERLAP

    def __post_init__(self) -> None:
        if self.backend is None:
            from ...backends import default_backend

            self.backend = default_backend()

    @property
    def backend_name(self) -> str:
        assert self.backend is not None  # set in __post_init__
        return self.backend

    @property
    def is_demo(self) -> bool:
        return self.dataset is None and self.audio is None

    def backend_options(self) -> dict[str, str]:
        options = {}
        if self.provider is not None:
            options["provider"] = self.provider
        if self.device is not None:
            options["device"] = self.device
        if self.streams is not None:
            options["streams"] = str(self.streams)
        return options


@dataclass(frozen=True)
class Precision:
    """What the networks run in, which default gate judges them, and why."""

    runs: str
    gate: str
    why: str


def resolve_precision(request: RunRequest) -> Precision:
    """The gate follows what runs: an export's manifest precision, else the checkpoints' (fp32, or --precision)."""
    if request.models is not None:
        from ...export.manifest import read_manifest

        runs = checked_precision(read_manifest(request.models)["precision"], f"{request.models}/manifest.json")
        if request.precision is not None:
            return Precision(runs, request.precision, f"--precision {request.precision} (the export runs {runs})")
        return Precision(runs, runs, f"the precision of {request.models} (its manifest.json)")
    if request.precision is not None:
        return Precision(request.precision, request.precision, f"--precision {request.precision}")
    return Precision("fp32", "fp32", "the checkpoints run in fp32")


BACKEND_FORMATS = {"onnxruntime": "onnx", "coreml": "coreml", "coreml-emulated": "coreml", "tensorrt": "tensorrt"}


def run(request: RunRequest, progress: Progress | None = None, reference_progress: Progress | None = None,
        progress_note: Callable[[str], None] | None = None) -> RunResult:
    """Run the pipeline on the backend, write frames, video, dump and result; compare with the reference.

    Everything is written into a fresh folder beside `request.out`, which replaces `out` only when the run
    is complete: an error or an interruption leaves the previous complete run (or nothing) in place.
    """
    stages = check_request(request)
    if request.models is not None:
        from ...export.manifest import find_export

        request.models, note = find_export(request.models, BACKEND_FORMATS.get(request.backend_name))
        if note and progress_note is not None:
            progress_note(note)
    final = Path(request.out)
    check_out_folder(final, request.overwrite)
    started = time.perf_counter()
    # the checkpoints run, or the reference needs them; an export without a comparison needs none
    inputs = resolve_inputs(request.dataset, request.audio, request.unet, request.audio_encoder,
                            networks=NETWORKS if request.models is None or request.compare else (), note=progress_note)
    dataset_path, audio_path = inputs.dataset, inputs.audio
    assert dataset_path is not None and audio_path is not None  # a run reads a clip
    request.unet, request.audio_encoder = inputs.unet, inputs.audio_encoder
    dataset = open_dataset(dataset_path, request.start_frame)
    pcm = load_audio(audio_path)
    mel, mel_key = cached_mel(audio_path)
    if mel is None:  # librosa computes it; imported while the backend loads
        prefetch_librosa()
    precision = resolve_precision(request)
    source = ModelSource.from_paths(request.unet, request.audio_encoder, request.models, precision=precision.runs, check_inputs=demo_check_inputs)
    with building(final) as out:
        backend = create_backend(request.backend_name, source, **request.backend_options()).load()
        try:
            batch = request.batch or backend.preferred_batch()
            pipeline = ProductionPipeline(backend, batch=batch)
            timings = {"setup": time.perf_counter() - started}
            t = time.perf_counter()
            clip = pipeline.audio_stages(pcm, source=str(audio_path), mel=mel)
            if mel is None:
                store_mel(audio_path, mel_key, clip.mel)
            timings["audio"] = time.perf_counter() - t
            total = clip.frame_count if request.frames is None else min(request.frames, clip.frame_count)
            reference = _reference_job(request, stages, dataset_path, audio_path, total, reference_progress)
            if reference is not None and request.reference is None:
                if _overlaps(request):
                    reference.start()
                else:
                    reference.preload()
            producer = {"name": "synctalk-parity", "version": __version__, "backend": backend.name, "precision": precision.runs}
            motion = MotionRecorder()
            frame_timing = _write_outputs(out, pipeline, dataset, clip, total, audio_path, stages, request.dump_every, producer,
                                          progress, request.save_frames, motion)
            timings.update(frame_timing.seconds)
            describe = backend.describe()
        finally:
            backend.close()

        result = RunResult(
            out=final,
            backend=request.backend_name,
            demo=request.is_demo,
            dataset=str(dataset_path),
            audio=str(audio_path),
            weights=weights_labels(request),
            frames_written=total,
            frames_available=clip.frame_count,
            template_count=dataset.template_count,
            frame_size=dataset.frame_size,
            seconds=timings,
            batch=batch,
            describe=describe,
            precision=precision.runs,
            dump="dump" if stages else None,
            gate_reason=precision.why,
        )
        if reference is not None:
            _compare(result, request, precision, reference, out)
        t = time.perf_counter()
        result.lip_sync = _lip_sync(motion, dataset, _reference_motion(result, dataset), clip.mel)
        timings["lip_sync"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - started
        write_run_result(result, out)
        write_summary(result, out)
    return result


RUN_OUTPUTS = frozenset({"frames", "dump", "video.mp4", "result.json", "summary.json", "summary.md", "report.md", "report.html",
                         "report.json", "report.junit.xml", "parity-error.log", "candidate-dump", "port"})  # what runs and verdicts write


def check_out_folder(out: Path, overwrite: bool = False) -> None:
    """`out` may be new, empty, or an earlier run's folder; anything else only with `overwrite`."""
    if out.exists() and not out.is_dir():
        raise ParityError(f"--out {out}: is a file; pass a folder")
    if out.is_dir() and not overwrite:
        foreign = sorted(p.name for p in out.iterdir() if p.name not in RUN_OUTPUTS)
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise ParityError(f"--out {out}: holds files a run does not write ({shown}); choose another folder, "
                              "or pass --overwrite to replace it whole")


def weights_labels(request: RunRequest) -> dict[str, str]:
    """Where each network came from, with sha256 for files."""
    labels = {}
    for name, path in (("unet", request.unet), ("audio_encoder", request.audio_encoder)):
        labels[name] = checkpoint_label(path) if path is not None else "the export's own (not given)"
    if request.models is not None:
        labels["models"] = str(request.models)
    return labels


def write_run_result(result: RunResult, folder: Path) -> Path:
    """`result.json` in the run folder being written (the contract reports read)."""
    return write_result(
        folder, "run",
        backend=Backend(result.backend, result.precision, dict(result.describe), result.gate_reason),
        inputs=Inputs(result.dataset, result.audio, dict(result.weights), result.frames_written, result.demo),
        comparison=result.comparison,
        timing=Timing(result.fps, result.frames_written, dict(result.seconds)),
        lip_sync=result.lip_sync,
        reference=result.reference_run,
    )


def write_summary(result: RunResult, folder: Path) -> None:
    summary = {
        **{k: v for k, v in asdict(result).items() if k not in ("comparison", "reference", "lip_sync")},
        "lip_sync": None if result.lip_sync is None else result.lip_sync.summary(),
        "out": str(result.out), "fps": result.fps, "version": __version__,
        "passed": result.passed, "reference": None if result.reference is None else str(result.reference),
    }
    write_text_atomically(folder / "summary.json", json_text(summary))
    seconds = result.seconds
    steps = ", ".join(f"{name} {seconds[name]:.2f} s" for name in ("read", "infer", "paste", "write") if name in seconds)
    lines = [
        f"# parity run ({'built-in demo' if result.demo else 'dataset'}, backend {result.backend}, batch {result.batch})",
        "",
        f"- dataset: `{result.dataset}` ({result.template_count} templates, {result.frame_size[0]}x{result.frame_size[1]})",
        f"- audio: `{result.audio}`",
        *(f"- {name}: {value}" for name, value in result.weights.items()),
        f"- frames: {result.frames_written} of {result.frames_available} written to `frames/` (PNG), video `{result.video}`"
        + (f", stage dump `{result.dump}/`" if result.dump else ""),
        f"- speed: {result.fps:.2f} frames/s; audio {seconds['audio']:.2f} s, frames {seconds['frames']:.2f} s "
        f"(busy: {steps}), total {seconds.get('total', 0.0):.2f} s",
        *_verdict_lines(result),
        "",
    ]
    write_text_atomically(folder / "summary.md", "\n".join(lines))


# ----- steps ------------------------------------------------------------------------------------


def check_request(request: RunRequest) -> frozenset[str]:
    """Validate the options before any work; returns the stage selection of the dump."""
    reason = get_backend_class(request.backend_name).available()  # unknown name: ParityError with a "did you mean"
    if reason:
        raise ParityError(f"backend {request.backend_name!r} is not available: {reason}")
    if request.frames is not None and request.frames < 1:
        raise ParityError(f"--frames must be at least 1, got {request.frames}")
    if request.batch is not None and request.batch < 1:
        raise ParityError(f"--batch must be at least 1, got {request.batch}")
    if request.dump_every < 1:
        raise ParityError(f"--dump-every must be at least 1, got {request.dump_every}")
    if request.precision is not None:
        checked_precision(request.precision)
    if request.provider is not None and request.backend_name != "onnxruntime":
        raise ParityError(f"--provider chooses ONNX Runtime's execution provider; backend {request.backend_name!r} has none (use --backend onnxruntime)")
    if request.streams is not None and request.backend_name != "onnxruntime":
        raise ParityError(f"--streams sets how many U-Net calls ONNX Runtime runs at once; backend {request.backend_name!r} runs one at a time (use --backend onnxruntime)")
    if request.streams is not None and request.streams < 1:
        raise ParityError(f"--streams must be at least 1, got {request.streams}")
    if request.device is not None and request.backend_name != "torch":
        raise ParityError(f"--device chooses the torch device; backend {request.backend_name!r} does not take one (use --backend torch)")
    stages = parse_stage_selection(request.dump)
    if request.compare and not stages:
        raise ParityError("--dump none leaves nothing to compare with the reference; add --no-compare or dump some stages")
    if request.compare and request.models is not None and (request.unet is None or request.audio_encoder is None):
        raise ParityError(
            f"--models {request.models}: the reference needs the PyTorch weights this export came from; "
            "pass --unet and --audio-encoder too, or --no-compare"
        )
    if request.gate is not None:
        from ..verdict.gates import load_gate

        load_gate(request.gate, request.precision)  # a mistyped gate file fails now, before any work
    return stages


def _write_outputs(out, pipeline, dataset, clip, total, audio_path, stages, dump_every, producer, progress, save_frames=True,
                   motion: MotionRecorder | None = None):
    """Frames (PNG, unless `save_frames` is off), video and dump, written from the pipeline's writer thread
    into the run's own (temporary) folder; each frame's mouth motion into `motion`."""
    frames_dir = out / "frames"
    if save_frames:
        frames_dir.mkdir()
    dump = DumpWriter(out / "dump", producer, total, stages) if stages else None
    with VideoWriter(out / "video.mp4", dataset.frame_size, audio=audio_path) as video:
        if dump is not None:
            dump.add_clip(clip.as_dict())

        def write_frame(frame) -> None:
            png = frames_dir / f"{frame.index:05d}.png"
            if save_frames:
                write_png(png, frame.output)
            video.write(frame.output)
            if motion is not None:
                motion.add(frame.index, frame.output, frame.crop_box, frame.template_index, frame.template)
            if dump is not None:
                heavy, stages = heavy_frame(frame.index, dump_every), frame.as_dict()
                if save_frames and heavy:  # the frame's PNG is the dump's frame.output, byte for byte: linked, not encoded twice
                    output = stages.pop("frame.output")
                    dump.add_frame_file("frame.output", frame.index, png, output.shape, output.dtype.name)
                dump.add_frame(frame.index, stages, heavy=heavy)

        timing = pipeline.run(dataset, clip, total, write_frame, progress)
        if dump is not None:
            dump.close()
    return timing


def reference_inputs(request: RunRequest, stages: frozenset[str], dataset_path: Path, audio_path: Path, total: int) -> ReferenceInputs:
    """What the comparison of this run reads from the reference: its stages, the light ones for every frame, the heavy
    ones for the frames the run dumps them for (every `--dump-every`-th)."""
    return ReferenceInputs(dataset_path, audio_path, request.unet, request.audio_encoder, total, request.start_frame, frozenset(stages),
                           every_kth(total, request.dump_every), execution="exact" if request.reference_exact else "fast")


def _reference_job(request: RunRequest, stages: frozenset[str], dataset_path: Path, audio_path: Path, total: int,
                   progress: Progress | None) -> ReferenceJob | None:
    """The run's reference: none without a comparison; the dump the caller made for these inputs (`parity matrix`
    computes one for several runs); else the cached one, computing what it lacks."""
    if not request.compare:
        return None
    if request.reference is not None:
        return ReferenceJob.given(ReferenceResult(Path(request.reference), True, "given"))
    return ReferenceJob(reference_inputs(request, stages, dataset_path, audio_path, total), progress)


def _overlaps(request: RunRequest) -> bool:
    return REFERENCE_OVERLAP if request.reference_overlap is None else request.reference_overlap


class ReferenceJob:
    """The reference dump of a run: computed on its own thread while the frames are made (`start`), or when asked."""

    def __init__(self, inputs: ReferenceInputs | None, progress: Progress | None = None):
        self.inputs, self.progress = inputs, progress
        self.seconds = 0.0
        self._result: ReferenceResult | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def given(cls, result: ReferenceResult) -> ReferenceJob:
        """A job whose reference dump exists already (nothing to compute)."""
        job = cls(None)
        job._result = result
        return job

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="parity-reference", daemon=True)
        self._thread.start()

    def preload(self) -> None:
        """When the reference must be computed, import PyTorch and its networks' code on a thread of its own while the
        frames are made (an import is one core's work; the network itself waits for the frames: `REFERENCE_OVERLAP`)."""
        inputs = self.inputs
        if inputs is None:
            return

        def load() -> None:
            with contextlib.suppress(Exception):  # an import error shows where the reference needs it, with its own message
                if reference_missing(inputs):
                    preload_reference()

        threading.Thread(target=load, name="parity-reference-preload", daemon=True).start()

    def result(self) -> ReferenceResult:
        """The dump: joined when started, computed now when neither started nor given."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        elif self._result is None and self._error is None:
            self._run()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def _run(self) -> None:
        t = time.perf_counter()
        try:
            assert self.inputs is not None  # a given job has its result
            self._result = reference_dump(self.inputs, self.progress)
        except BaseException as exc:
            self._error = exc
        self.seconds = time.perf_counter() - t


def _compare(result: RunResult, request: RunRequest, precision: Precision, job: ReferenceJob, out: Path) -> None:
    from ..verdict.compare import compare_dumps
    from ..verdict.gates import load_gate

    gate = load_gate(request.gate, precision.gate)
    if request.gate is not None:
        result.gate_reason = f"the gate file {request.gate}" + ("" if gate.precision == precision.gate else f" (precision {gate.precision})")
    t = time.perf_counter()
    reference = job.result()
    result.seconds["reference"] = time.perf_counter() - t  # waited for it after the frames (all of it, unless it overlapped them)
    result.reference, result.reference_cached, result.reference_note = reference.dump, reference.cached, reference.note
    result.reference_run = reference_run(reference, job.seconds)
    t = time.perf_counter()
    result.comparison = compare_dumps(reference.dump, out / "dump", gate)
    result.seconds["compare"] = time.perf_counter() - t


def _reference_motion(result: RunResult, dataset):
    """The reference's mouth motion over the run's frames, when the reference dump holds every output frame (the run
    dumped every frame: `--dump-every 1`); None otherwise (the reference's U-Net ran only on the frames compared)."""
    if result.reference is None:
        return None
    from ..verdict.dump import Dump
    from ..verdict.lip_sync import dump_motion

    reference = Dump.open(Path(result.reference))
    frames = range(result.frames_written)
    if not all(stage in reference.stage_names and set(frames) <= set(reference.frames(stage))
               for stage in ("frame.output", "frame.crop_box", "frame.template_index")):
        return None
    return dump_motion(reference, dataset, frames)


def _lip_sync(motion: MotionRecorder, dataset, reference_motion, mel):
    """The run's lip sync: its mouth motion against the reference's (`reference_motion`, when the reference holds every
    frame), else against the audio's loudness (from the clip's mel spectrogram: no second one computed)."""
    from ..verdict.lip_sync import measure_lip_sync, mel_envelope

    ours = motion.motion(dataset)
    if reference_motion is not None:
        return measure_lip_sync(ours, reference=reference_motion)
    return measure_lip_sync(ours, envelope=mel_envelope(mel, len(ours)))


def reference_run(reference: ReferenceResult, seconds: float) -> ReferenceRun:
    """result.json's `reference` section for a reference dump obtained in `seconds`."""
    from ...reference.execution import DESCRIPTIONS

    return ReferenceRun(reference.execution, DESCRIPTIONS[reference.execution], reference.cached, reference.frames_computed,
                        reference.frames_cached, round(seconds, 3), reference.note)


def _verdict_lines(result: RunResult) -> list[str]:
    if result.comparison is None:
        return ["- comparison: not run (--no-compare)"] + ([f"- {result.lip_sync.summary()}"] if result.lip_sync is not None else [])
    source = "cached" if result.reference_cached else "computed now"
    if result.reference_run is not None:
        run = result.reference_run
        source += f" ({run.execution}: {run.description}; heavy stages of {run.frames_computed + run.frames_cached} frames, {run.frames_computed} computed now)"
    lines = [f"- reference: {source}, `{result.reference}`"]
    if result.lip_sync is not None:
        lines.append(f"- {result.lip_sync.summary()}")
    if result.comparison:
        lines.append(f"- verdict: **PASS**: every stage within its gate ({len(result.comparison.stages)} stages compared)")
    else:
        lines.append(f"- verdict: **FAIL**: first divergent stage `{result.comparison.first_divergent_stage}`")
        lines += [f"  - {m.failure}" for m in result.comparison.stages if not m.passed and m.failure]
        lines += [f"  - diagnosis {d.name} ({d.stage}): {d.message}" for d in result.comparison.diagnoses]
    return lines


__all__ = ["DEFAULT_DUMP_EVERY", "ReferenceJob", "RunRequest", "check_request", "run", "write_run_result", "write_summary"]
