"""Judge a port from what it already writes: frames (PNG, JPEG, WebP), a video, mouth crops or raw tensors.

    result = judge_port(PortRequest(Path("port/frames"), dataset=DS, audio=WAV, unet=U, audio_encoder=E, out=Path("verdict")))
    result.comparison, result.alignment, result.regions, result.lossy, result.explanation

1. **Read** (`ingest.py`): what kind the candidate is, its frames or tensors.
2. **Reference** (`reference_cache.py`): the PyTorch reference on the same inputs, cached frame by frame as
   usual, with `frame.output`, `frame.pasted_region`, `frame.mouth` and the crop boxes for every frame the port
   is asked for.
3. **Align** (`align.py`): the numbering base and any constant frame offset, found from the
   region outside the crop box (where a correct port equals the template); missing and extra frames by
   index. A video's sound track is cross-correlated with the input audio (an A/V offset in ms).
4. **Compare**: the candidate becomes a dump of the stages it provides (at the reference's indices), and
   the usual comparison, gates, coverage, reports and JUnit apply (the gate requires what it provides).
5. **Localize** (`regions.py`): PSNR per region of every output frame (the mouth box the network
   writes, the rest of the crop box, outside it), and whether the whole frame was re-encoded lossily
   (JPEG quantization tables, re-encoding the reference), so "lossy everywhere" is told apart from "the
   mouth is wrong". A gate file with `lossy_ok = true` judges lossy frames by region PSNR instead
   (`[regions]` thresholds).
6. **Recover each frame's template** (`sources.py`): outside the crop box a correct port's frame is its
   template, so every frame is matched against every template; departures from the schedule are reported as
   runs ("frames 14-26: templates in reverse order") and set on the simulation first. Then the crop box each frame's
   mouth was pasted into (`boxes.py`): where the frame differs from its template, against every template's box
   ("frames 10-20: pasted into the crop box of template k+1's landmarks"), also set on the simulation first.
7. **Codec noise** (`codec.py`): for a video or JPEG frames, the reference encoded the way the candidate was
   (x264's options from its stream, the pixel format, colour range and matrix; JPEG's quality), measured per
   region beside the candidate on the same frames. A candidate within that noise is "consistent with the
   reference within the codec's noise", names no mistake but its encoding, and passes a `lossy_ok` gate. A video's
   declared range and matrix are checked against its pixels (`colour.py`): a mismatch is `colour_conversion`.
8. **Diagnose by simulation** (`simulate.py`): on a few sampled frames, the reference re-run with
   known port mistakes applied, searched greedily for the combination that explains the candidate; a
   finding is named only with specific evidence (else "partial"), down to the codec's floor for a video.
9. **What this port does differently** (`differences`): one line per recovered difference, the most of the
   error first, with its evidence, the fix and PORTING.md's section; what stays unexplained last.
10. **Lip sync** (`harness/verdict/lip_sync.py`): the mouth motion of the port's output frames (a folder of frames or
   a video) against the reference's, every frame from the first: the audio-visual offset in frames and ms and a
   score per window and for the clip (result.json's `lip_sync`). Separate from the video's sound track (step 3).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ...atomic import building
from ...errors import ParityError
from ...reference.stages import CLIP_STAGES
from ..inputs import demo_check_inputs, resolve_inputs
from ..pipeline.reference_cache import ReferenceInputs
from ..pipeline.run import ReferenceJob, check_out_folder, reference_run
from ..verdict.compare import compare_dumps
from ..verdict.dump import Dump, DumpWriter
from ..verdict.gates import Gate, load_gate
from ..verdict.metrics import SquaredError, squared_error
from ..verdict.mistakes import diagnosis, mistake
from ..verdict.result import write_result
from ..verdict.types import (
    AudioTrack,
    Backend,
    CodecNoise,
    Comparison,
    Diagnosis,
    Difference,
    Finding,
    Inputs,
    LipSync,
    Lossy,
    PortAlignment,
    PortVerdict,
    RegionFigures,
    Regions,
    RegionSeries,
    Simulation,
    Sources,
    StageResult,
    Timing,
    VideoStream,
    WorstMouth,
)
from .align import Alignment, align_frames, align_video, candidate_shifts, dataset_templates
from .boxes import BoxRecovery, box_candidates
from .codec import CodecFloor
from .ingest import FrameFiles, VideoFrames, detect_kind, read_frame_files, read_tensors, read_video
from .regions import REGIONS, LossyEvidence, lossy_evidence, region_differences
from .sources import TemplateRecovery, recover_templates

PORT_STAGES = frozenset({*CLIP_STAGES, "frame.template_index", "frame.crop_box", "frame.unet_audio", "frame.mouth",
                         "frame.pasted_region", "frame.output"})
SIMULATION_FRAMES = 4
AV_OFFSET_MS = 20.0  # half a frame at 25 fps: beyond it, lips and sound are visibly apart
Progress = Callable[[str], None]


@dataclass
class PortRequest:
    candidate: Path
    dataset: Path | None = None  # None with audio None: the built-in demo's inputs
    audio: Path | None = None
    unet: Path | None = None
    audio_encoder: Path | None = None
    start_frame: int = 0
    out: Path = Path("parity-port")
    gate: Path | None = None
    precision: str | None = None
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # for raw .bin tensors
    simulate: bool = True
    backend: str | None = None  # runs the networks of the simulation (default: the best available)
    frames: int | None = None  # judge the first N output frames (the port was asked for N); None: the whole clip
    reference_exact: bool = False  # the reference's U-Net in plain eager PyTorch (else the faster execution)


@dataclass
class PortResult:
    out: Path
    kind: str
    comparison: Comparison
    result_path: Path
    alignment: Alignment | None = None
    regions: Regions | None = None
    lossy: LossyEvidence | None = None
    audio_track: AudioTrack | None = None
    explanation: Any = None  # simulate.Explanation
    reference: Path | None = None
    reference_cached: bool = False
    seconds: dict[str, float] = field(default_factory=dict)
    lip_sync: LipSync | None = None
    port: PortVerdict | None = None  # the port section of result.json: codec noise, sources, what the port does differently


def judge_port(request: PortRequest, progress: Progress | None = None) -> PortResult:
    """Read the port's output, build the reference, align, compare, localize, diagnose; write result.json."""
    say = progress or (lambda text: None)
    started = time.perf_counter()
    kind = detect_kind(request.candidate)
    if kind == "dump":
        raise ParityError(f"{request.candidate}: a dump; `parity compare` judges it against --reference")
    gate_file = load_gate(request.gate, request.precision) if request.gate is not None else None
    final = Path(request.out)
    check_out_folder(final, overwrite=False)
    inputs = resolve_inputs(request.dataset, request.audio, request.unet, request.audio_encoder, note=say)  # the port's, else the demo's
    dataset_path, audio_path = inputs.dataset, inputs.audio
    assert dataset_path is not None and audio_path is not None  # a port is judged on a clip
    from ...reference.audio import HOP_LENGTH, load_audio, window_count

    request = replace(request, unet=inputs.unet, audio_encoder=inputs.audio_encoder)
    from ...reference.dataset import open_dataset

    dataset = open_dataset(dataset_path, request.start_frame)
    pcm = load_audio(audio_path)
    frame_count = window_count(1 + len(pcm) // HOP_LENGTH) + 2
    if request.frames is not None:
        frame_count = min(frame_count, request.frames)
    seconds: dict[str, float] = {}

    say("reference (cached after the first time; computed while the port's output is read)")
    # every frame the port is asked for: one it leaves out is a missing frame of the verdict
    job = ReferenceJob(ReferenceInputs(dataset_path, audio_path, request.unet, request.audio_encoder, frame_count, request.start_frame,
                                       PORT_STAGES, frozenset(range(frame_count)), execution="exact" if request.reference_exact else "fast"))
    job.start()

    with building(final) as out:  # a verdict appears complete or not at all; an earlier one stays until then
        t = time.perf_counter()
        candidate_dump = out / "candidate-dump"
        template = dataset_templates(dataset, frame_count)
        alignment = None
        audio_track = None
        recovery: TemplateRecovery | None = None
        video: VideoFrames | None = None
        files: FrameFiles | None = None
        producer = {"name": request.candidate.name, "version": "unknown", "backend": kind, "precision": request.precision or "fp32"}
        if kind == "frames":
            files = read_frame_files(request.candidate)
            say(f"{len(files)} frames ({files.size[0]}x{files.size[1]}) in {request.candidate}")
            by_number = files.by_number()
            recovery, distances = _recover(dataset, frame_count, ((n, f.load()) for n, f in by_number.items()), files.size)
            alignment = align_frames(files, template, frame_count, shift=_shift(recovery, distances))
            _place(recovery, distances, alignment)
            provides: tuple[str, ...] = ("frame.output",)
            _write_frames(candidate_dump, producer, alignment, lambda n: by_number[n].load(), "frame.output")
        elif kind == "video":
            video = read_video(request.candidate)
            say(f"video {video.frame_count} frames at {video.fps:g} fps ({video.codec}), sound {video.audio_codec or 'none'}")
            recovery, distances = _recover(dataset, frame_count, enumerate(video), video.size)
            alignment = align_video(video, template, frame_count, shift=_shift(recovery, distances))
            _place(recovery, distances, alignment)
            audio_track = _audio_track(video, pcm)
            provides = ("frame.output",)
            _write_video_frames(candidate_dump, producer, alignment, video)
        elif kind == "mouths":
            files = read_frame_files(request.candidate)  # mouths hold no template to align on: numbered from their base
            mouths = files.by_number()
            mapping = {f.number: f.number - files.base for f in files if 0 <= f.number - files.base < frame_count}
            provides = ("frame.mouth",)
            _write_mapped(candidate_dump, producer, max(len(files), max(mapping.values(), default=0) + 1), mapping,
                          lambda n: mouths[n].load(), "frame.mouth")
        else:  # tensors
            tensors = read_tensors(request.candidate, request.shapes or None)
            provides = tuple(sorted(tensors))
            _write_tensors(candidate_dump, producer, frame_count, tensors)
        seconds["read"] = time.perf_counter() - t

        t = time.perf_counter()
        reference = job.result()
        ref = Dump.open(reference.dump)
        seconds["reference"] = time.perf_counter() - t  # waited for it once the port's output was read
        gate = _port_gate(gate_file, request.precision, provides)
        t = time.perf_counter()
        say("comparing with the reference")
        cand = Dump.open(candidate_dump)
        comparison = compare_dumps(ref, cand, gate)
        seconds["compare"] = time.perf_counter() - t

        regions: Regions | None = None
        lossy = None
        floor: CodecFloor | None = None
        sources: Sources | None = None
        boxes: BoxRecovery | None = None
        if "frame.output" in provides and comparison.stage("frame.output") is not None:
            t = time.perf_counter()
            regions, lossy = _localize(ref, cand, files, video)
            seconds["regions"] = time.perf_counter() - t
            if recovery is not None:
                t = time.perf_counter()
                boxes = _register_boxes(dataset, recovery, cand)
                seconds["boxes"] = time.perf_counter() - t
                sources = recovery.result(boxes)
            if video is not None or (lossy.lossy and lossy.kind == "jpeg" and lossy.estimated_quality):
                t = time.perf_counter()
                say("measuring the codec's noise (the reference encoded as the port's output was)")
                floor = _codec_floor(ref, cand, video, lossy)
                seconds["codec"] = time.perf_counter() - t
            _apply_lossy_gate(comparison, gate_file, regions, lossy, floor)
        _port_diagnoses(comparison, alignment, lossy, audio_track, frame_count, video.fps if video is not None else None, floor)
        if recovery is not None and recovery.differs and sources is not None:
            comparison.diagnoses = [*comparison.diagnoses, diagnosis("template_sequence", "frame.output", recovery.text())]
        if boxes is not None and boxes.other:
            comparison.diagnoses = [*comparison.diagnoses, diagnosis("crop_box_sequence", "frame.output", boxes.text())]

        lip_sync = None
        if "frame.output" in provides:
            t = time.perf_counter()
            lip_sync = _lip_sync(cand, ref, dataset)
            seconds["lip_sync"] = time.perf_counter() - t

        explanation = None
        worst_mouth = None
        output = comparison.stage("frame.output")
        # colours misread everywhere (colour_conversion) leave nothing a simulation of the pipeline could match: fix them first
        if request.simulate and output is not None and output.status == "compared" and not _within_encoding(output, lossy, floor) and \
                not (floor is not None and floor.colour_mismatch):
            t = time.perf_counter()
            say("diagnosing by simulation (the reference re-run with known port mistakes)")
            explanation, simulated = _simulate(request, dataset, pcm, cand, ref, alignment, lossy, floor, recovery, regions, boxes)
            _simulation_diagnoses(comparison, explanation)
            worst_mouth = _worst_mouth(out, ref, cand, explanation, simulated)
            seconds["simulate"] = time.perf_counter() - t
        seconds["total"] = time.perf_counter() - started

        port = port_document(kind, request.candidate, alignment, regions, lossy, audio_track, explanation, floor)
        port.sources = sources
        port.differences = differences(comparison, explanation, floor)
        if video is not None:
            port.video = VideoStream(video.fps, video.frame_count, list(video.size), video.codec, video.audio_codec, 25, abs(video.fps - 25) < 0.01)
        port.worst_mouth = worst_mouth
        result_path = write_result(out, "compare", backend=Backend(request.candidate.name, gate.precision, {"kind": kind}),
                                   inputs=Inputs(str(dataset_path), str(audio_path), None, frame_count, request.dataset is None),
                                   comparison=comparison, timing=Timing(0.0, len(cand.frames("frame.output")) if "frame.output" in cand.stage_names else 0,
                                                                        seconds),
                                   port=port, lip_sync=lip_sync, reference=reference_run(reference, job.seconds))
    result_path = final / result_path.name
    return PortResult(final, kind, comparison, result_path, alignment, regions, lossy, audio_track, explanation, reference.dump, reference.cached,
                      seconds, lip_sync, port)


# ----- steps --------------------------------------------------------------------------------------


def _recover(dataset, frame_count: int, frames, size: tuple[int, int]) -> tuple[TemplateRecovery | None, dict[int, np.ndarray]]:
    """Every candidate frame's distance to every template outside the crop boxes (`sources.py`), by candidate number;
    no recovery for frames of another size than the templates'."""
    if tuple(size) != tuple(dataset.frame_size):
        return None, {}
    recovery = recover_templates(dataset, frame_count)
    return recovery, {number: recovery.distances(frame) for number, frame in frames}


def _register_boxes(dataset, recovery: TemplateRecovery, cand: Dump) -> BoxRecovery:
    """The crop box each compared frame whose template was recovered was pasted into (`boxes.py`); each template is
    decoded once, the last few kept (a port's frames walk the templates in runs)."""
    from functools import lru_cache

    boxes = BoxRecovery(box_candidates(dataset), recovery.schedule)
    image = lru_cache(maxsize=8)(lambda template: dataset.templates[template].read_image())
    for index in sorted(set(cand.frames("frame.output")) & set(recovery.recovered)):
        template = recovery.recovered[index]
        boxes.add(boxes.candidates.register(index, template, cand.frame("frame.output", index), image(template)))
    return boxes


def _shift(recovery: TemplateRecovery | None, distances: dict[int, np.ndarray]) -> int | None:
    """The alignment's shift from every frame's recovered template: where most frames are on their scheduled one."""
    return recovery.best_shift(distances, candidate_shifts(list(distances))) if recovery is not None and distances else None


def _place(recovery: TemplateRecovery | None, distances: dict[int, np.ndarray], alignment: Alignment) -> None:
    """The recovered template of each aligned frame, by reference index."""
    if recovery is None:
        return
    for number, values in distances.items():
        index = alignment.mapping.get(number)
        if index is not None:
            recovery.add_distances(index, values)


def _lip_sync(cand: Dump, ref: Dump, dataset) -> LipSync:
    """The port's mouth motion against the reference's, over the frames from the first that both hold (each frame's
    crop box and template are the reference's: a port's frames hold neither); not measured when the port's frames
    are not consecutive from the first (the note says so)."""
    from ..verdict.lip_sync import lip_sync_of_dumps, not_measured

    try:
        return lip_sync_of_dumps(cand, dataset, reference=ref)
    except ParityError as exc:
        return not_measured("reference", str(exc))


def _port_gate(gate: Gate | None, precision: str | None, provides: tuple[str, ...]) -> Gate:
    """The gate file's (its `provides` wins), else the default gate; a port is required to provide what it wrote."""

    base = gate or load_gate(None, precision)
    return base if base.provides is not None else replace(base, provides=tuple(provides))


def _write_mapped(folder: Path, producer: dict, frame_count: int, mapping: dict[int, int], load: Callable[[int], np.ndarray], stage: str) -> None:
    with DumpWriter(folder, producer, frame_count, stage) as writer:
        for number, index in sorted(mapping.items(), key=lambda item: item[1]):
            writer.add_frame(index, {stage: load(number)})


def _write_frames(folder: Path, producer: dict, alignment: Alignment, load: Callable[[int], np.ndarray], stage: str) -> None:
    frame_count = max(alignment.candidate_count, max(alignment.mapping.values(), default=0) + 1)
    _write_mapped(folder, producer, frame_count, alignment.mapping, load, stage)


def _write_video_frames(folder: Path, producer: dict, alignment: Alignment, video: VideoFrames) -> None:
    frame_count = max(alignment.candidate_count, max(alignment.mapping.values(), default=0) + 1)
    with DumpWriter(folder, producer, frame_count, "frame.output") as writer:
        for number, frame in enumerate(video):
            index = alignment.mapping.get(number)
            if index is not None:
                writer.add_frame(index, {"frame.output": frame})


def _write_tensors(folder: Path, producer: dict, frame_count: int, tensors: dict[str, dict[int | None, np.ndarray]]) -> None:
    with DumpWriter(folder, producer, frame_count, ",".join(sorted(tensors))) as writer:
        clip = {stage: values[None] for stage, values in tensors.items() if None in values}
        if clip:
            writer.add_clip(clip)
        indices = sorted({i for values in tensors.values() for i in values if i is not None})
        for index in indices:
            writer.add_frame(index, {stage: values[index] for stage, values in tensors.items() if index in values})


def _localize(ref: Dump, cand: Dump, files: FrameFiles | None, video: VideoFrames | None) -> tuple[Regions, LossyEvidence]:
    """Per-region PSNR of every compared output frame (and over all of them: pooled squared errors), and the
    lossy-encoding evidence on a few of them."""
    frames = sorted(set(ref.frames("frame.output")) & set(cand.frames("frame.output")))
    per_frame = RegionSeries()
    pooled = dict.fromkeys(REGIONS, SquaredError())
    sampled = set(frames[:: max(1, len(frames) // 3)][:3])
    refs: list[np.ndarray] = []
    cands: list[np.ndarray] = []
    boxes: list[tuple[int, int, int, int]] = []
    for index in frames:
        reference, candidate = ref.frame("frame.output", index), cand.frame("frame.output", index)
        box = _box(ref.frame("frame.crop_box", index))
        for name, diff in region_differences(reference, candidate, box).items():
            error = squared_error(diff)
            getattr(per_frame, name).append(error.psnr)
            pooled[name] = pooled[name] + error
        if index in sampled:
            refs.append(reference)
            cands.append(candidate)
            boxes.append(box)
    overall = RegionFigures(**{name: error.psnr if error.count else None for name, error in pooled.items()})
    paths: list[Path] | None = None
    if files is not None:
        paths = [files[0].path]
    lossy = lossy_evidence(refs, cands, boxes, candidate_paths=paths, source="video" if video is not None else None)
    return Regions(overall, frames, per_frame), lossy


def _box(value) -> tuple[int, int, int, int]:
    """A crop box from a dump row as four ints."""
    x0, y0, x1, y1 = (int(v) for v in value)
    return x0, y0, x1, y1


def _apply_lossy_gate(comparison: Comparison, gate: Gate | None, regions: Regions | None, lossy: LossyEvidence | None,
                      floor: CodecFloor | None = None) -> None:
    """With `lossy_ok` and lossy frames, `frame.output` is judged by region PSNR: the gate's `[regions]` minimums and,
    when the codec's noise was measured, no region more than its tolerance below the reference encoded alike."""
    output = comparison.stage("frame.output")
    lossy_frames = (lossy is not None and lossy.lossy) or floor is not None
    if gate is None or not gate.lossy_ok or output is None or output.status != "compared" or not lossy_frames:
        return
    minimums = gate.regions if floor is None else _explicit_regions(gate)  # the codec's measured floor replaces the default minimums
    low = [f"{name} {value:.2f} dB < {minimums[name]:g} dB" for name, value in (vars(regions.psnr) if regions else {}).items()
           if value is not None and name in minimums and value < minimums[name]]
    if floor is not None and not floor.consistent:
        low.append(floor.text())
    nonfinite = output.nan or output.inf
    output.passed = not low and not nonfinite
    output.failure = None if output.passed else "frame.output: lossy frames (lossy_ok): " + ("; ".join(low) or "NaN/Inf values")
    output.tolerance = {**output.tolerance, **{f"{name}_min_psnr": value for name, value in gate.regions.items()}, "lossy_ok": 1.0}


def _explicit_regions(gate: Gate) -> dict[str, float]:
    """The `[regions]` minimums the gate file itself sets (not the defaults `lossy_ok` brings)."""
    import tomllib

    if not gate.file or not Path(gate.file).is_file():
        return {}
    with open(gate.file, "rb") as handle:
        regions = tomllib.load(handle).get("regions") or {}
    return {name: value for name, value in gate.regions.items() if name in regions}


def _within_encoding(output: StageResult, lossy: LossyEvidence | None, floor: CodecFloor | None = None) -> bool:
    """Nothing to simulate: the frames pass, or differ only as much as the reference encoded alike does."""
    if floor is not None:
        return floor.consistent
    return output.passed and (lossy is None or not lossy.lossy)


def _codec_floor(ref: Dump, cand: Dump, video: VideoFrames | None, lossy: LossyEvidence) -> CodecFloor:
    """The reference encoded as the candidate was, against the reference per region, beside the candidate on the same frames."""
    from .codec import floor_indices, jpeg_encoding, measure_floor, video_encoding

    frames = sorted(set(ref.frames("frame.output")) & set(cand.frames("frame.output")))
    if video is not None:
        encoding = video_encoding(video)
    else:
        assert lossy.estimated_quality is not None
        encoding = jpeg_encoding(lossy.estimated_quality, lossy.subsampling)
    indices = floor_indices(frames, encoding.kind)
    return measure_floor(encoding, {i: ref.frame("frame.output", i) for i in indices}, {i: cand.frame("frame.output", i) for i in indices},
                         {i: _box(ref.frame("frame.crop_box", i)) for i in indices})


def _audio_track(video: VideoFrames, pcm: np.ndarray) -> AudioTrack:
    """Is the video's sound the input audio, and how far apart in time (cross-correlation, ms; > 0: the sound is late)."""
    if video.audio is None:
        return AudioTrack(False, "the video has no sound track")
    from scipy.signal import correlate

    track, source = video.audio.astype(np.float64), pcm.astype(np.float64)
    length = min(len(track), len(source))
    if length < 1600:
        return AudioTrack(True, "the sound track is too short to compare")
    a, b = track[:length] - track[:length].mean(), source[:length] - source[:length].mean()
    xcorr = correlate(a, b, mode="full", method="fft")
    lag = int(np.argmax(np.abs(xcorr))) - (length - 1)
    peak = float(np.abs(xcorr).max() / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
    offset_ms = lag / 16.0  # 16 kHz
    same = peak > 0.5
    text = (f"the sound track is the input audio (correlation {peak:.2f}), offset {offset_ms:+.1f} ms" if same else
            f"the sound track does not match the input audio (best correlation {peak:.2f})")
    return AudioTrack(True, text, same, peak, offset_ms, len(track) / 16000.0, len(source) / 16000.0)


def _port_diagnoses(comparison: Comparison, alignment: Alignment | None, lossy: LossyEvidence | None, audio_track: AudioTrack | None,
                    frame_count: int, video_fps: float | None = None, floor: CodecFloor | None = None) -> None:
    found = list(comparison.diagnoses)
    if alignment is not None:
        if alignment.offset:
            found.append(diagnosis("frame_offset", "frame.output", f"the frames are shifted by {alignment.offset:+d} against the reference "
                                   f"({alignment.summary()}): a numbering or template-index mistake"))
        if alignment.missing or alignment.extra:
            found.append(diagnosis("frames_missing", "frame.output", alignment.summary()))
    if floor is not None:
        found.append(diagnosis("lossy_output", "frame.output", floor.text()))
        if floor.colour_mismatch and floor.colour is not None:
            found.append(diagnosis("colour_conversion", "video", floor.colour.text()))
    elif lossy is not None and lossy.lossy:
        found.append(diagnosis("lossy_output", "frame.output", lossy.text))
    if video_fps is not None and abs(video_fps - 25) >= 0.01:
        found.append(diagnosis("wrong_frame_rate", "video", f"the video runs at {video_fps:g} fps; the pipeline makes 25 frames a second of audio"))
    if audio_track and audio_track.same_signal and audio_track.offset_ms is not None and abs(audio_track.offset_ms) > AV_OFFSET_MS:
        found.append(diagnosis("av_offset", "video", f"the video's sound is {audio_track.offset_ms:+.0f} ms off the frames "
                               f"(cross-correlation with the input audio, {audio_track.correlation:.2f}): lips and sound are out of sync"))
    elif audio_track and audio_track.present and audio_track.same_signal is False:
        found.append(diagnosis("wrong_sound_track", "video", audio_track.text))
    comparison.diagnoses = found


def _simulate(request: PortRequest, dataset, pcm: np.ndarray, cand: Dump, ref: Dump, alignment: Alignment | None, lossy: LossyEvidence | None,
              floor: CodecFloor | None = None, recovery: TemplateRecovery | None = None, regions: Regions | None = None,
              pasted: BoxRecovery | None = None):
    from ...backends import ModelSource, create_backend, default_backend
    from .simulate import HYPOTHESES, NOISE_FLOOR_DB, PRECISION_KNOBS, Simulator, evidence_sample, explain, lossy_output, recovered_boxes, recovered_templates

    frames = sorted(set(cand.frames("frame.output")) & set(ref.frames("frame.output")))
    if regions is not None and len(regions.per_frame.mouth) == len(regions.frames):  # the frames with the most evidence, spread
        picks = evidence_sample(dict(zip(regions.frames, regions.per_frame.mouth)), SIMULATION_FRAMES)
    else:
        picks = sorted({frames[round(p)] for p in np.linspace(0, len(frames) - 1, min(SIMULATION_FRAMES, len(frames)))})
    candidate = {i: cand.frame("frame.output", i) for i in picks}
    boxes = {i: _box(ref.frame("frame.crop_box", i)) for i in picks}
    source = ModelSource.from_paths(request.unet, request.audio_encoder, check_inputs=demo_check_inputs)
    with create_backend(request.backend or default_backend(), source) as backend:
        simulator = Simulator(dataset, pcm, generate=backend.generate, encode=backend.encode_audio, generate_at=_precision_runners(request.unet),
                              streams=backend.streams())
        count = alignment.candidate_count if alignment is not None else None
        prior = []
        if recovery is not None and recovery.differs:
            prior.append((recovered_templates(recovery.sequence()), recovery.text()))
        if pasted is not None and pasted.other and recovery is not None:  # boxes are registered on the recovered templates
            prior.append((recovered_boxes(pasted.sequence(len(recovery.schedule))), pasted.text()))
        if lossy is not None and lossy.lossy and lossy.kind == "jpeg" and lossy.estimated_quality:
            q = lossy.estimated_quality
            prior.append((lossy_output(q), f"the frames are JPEG quality {q} ({lossy.text.split(';')[0]})"))
        noise = NOISE_FLOOR_DB if floor is None or floor.encoding.kind != "video" else floor.search_floor_db
        # a U-Net at reduced precision moves the mouth by a pixel level or a few: told only on lossless frames (codec noise dwarfs it)
        lossless = floor is None and not (lossy is not None and lossy.lossy)
        hypotheses = HYPOTHESES if lossless else tuple(h for h in HYPOTHESES if not h.fields & PRECISION_KNOBS)
        explanation = explain(simulator, candidate, boxes, sample=picks, candidate_frame_count=count, prior=prior, noise_floor_db=noise,
                              hypotheses=hypotheses)
        worst = min(explanation.per_frame, key=lambda i: explanation.per_frame[i].box_db)
        return explanation, {worst: simulator.frames(explanation.variant, [worst])[worst]}


def _precision_runners(unet_path: Path | None):
    """precision -> the U-Net run as a port working at that precision would (emulated in float32; loaded on first use);
    None without a U-Net checkpoint (the simulation then runs fp32 only)."""
    if unet_path is None:
        return None
    loaded: list = []

    def runner(precision: str):
        from ...models import load_unet
        from ...reference.execution import emulated_runner

        if not loaded:
            loaded.append(load_unet(unet_path))
        return emulated_runner(loaded[0], precision)

    return runner


def _worst_mouth(out: Path, ref: Dump, cand: Dump, explanation, simulated: dict[int, np.ndarray]) -> WorstMouth:
    """The least-explained sampled frame's mouth box: reference | candidate | best simulation | amplified difference
    (candidate against the simulation: what the explanation leaves), as PNGs for the reports."""
    import cv2

    from ..verdict.png import write_png
    from .regions import mouth_box

    index, simulation = next(iter(simulated.items()))
    x0, y0, x1, y1 = mouth_box(_box(ref.frame("frame.crop_box", index)))
    crops = {"reference": ref.frame("frame.output", index)[y0:y1, x0:x1], "candidate": cand.frame("frame.output", index)[y0:y1, x0:x1],
             "simulation": simulation[y0:y1, x0:x1]}
    diff = np.abs(crops["candidate"].astype(np.int16) - crops["simulation"].astype(np.int16))
    crops["difference"] = np.clip(diff * 8, 0, 255).astype(np.uint8)
    folder = out / "port"
    folder.mkdir(exist_ok=True)
    files = {}
    for name, image in crops.items():
        write_png(folder / f"worst_mouth_{name}.png", cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST))
        files[name] = f"port/worst_mouth_{name}.png"
    score = explanation.per_frame[index]
    return WorstMouth(index, files, score.box_db, f"frame {index}: candidate vs best simulation {score.describe()}; difference x8")


def _simulation_diagnoses(comparison: Comparison, explanation) -> None:
    found = list(comparison.diagnoses)
    already = {d.name for d in found}
    for finding in explanation.findings:
        if finding.status == "named" and finding.mistake.id not in already:  # partial findings are reported in the simulation, never named as the port's mistake
            found.append(Diagnosis(f"simulated:{finding.mistake.id}", "frame.output",
                                   f"{finding.hypothesis.description}: {finding.evidence}; fix: {finding.mistake.fix}"))
    registration = explanation.registration
    if not explanation.explained and registration is not None and _measurable(registration):
        found.append(diagnosis("geometry", "frame.output", registration.describe()))
    comparison.diagnoses = found


HEADLINE_IDS = ("frame_offset", "frames_missing", "wrong_frame_count", "template_sequence", "crop_box_sequence", "wrong_frame_rate", "av_offset",
                "wrong_sound_track", "colour_conversion")


def differences(comparison: Comparison, explanation, floor: CodecFloor | None) -> list[Difference]:
    """"What this port does differently": one line per recovered difference, most of the error it explains first, each
    with its evidence, the fix in the port's terms and where PORTING.md says how (no internal hypothesis ids)."""
    found: list[Difference] = []
    seen: set[str] = set()
    if explanation is not None:
        for f in explanation.findings:
            if f.status != "named" or f.mistake.id in seen:
                continue
            seen.add(f.mistake.id)
            found.append(Difference(f.hypothesis.description, f.evidence, f.mistake.fix, f.mistake.id, f.explains, f.mistake.porting_section))
    for d in comparison.diagnoses:
        if d.name in HEADLINE_IDS and d.name not in seen:
            seen.add(d.name)
            registered = mistake(d.name)
            found.append(Difference(registered.title, d.message, registered.fix, d.name, None, registered.porting_section))
    found.sort(key=lambda d: -(d.explains if d.explains is not None else -1.0))
    if floor is not None and "lossy_output" not in seen:
        registered = mistake("lossy_output")
        what = f"written lossy: {floor.encoding.describe()}"
        found.append(Difference(what, floor.text(), "nothing to fix for a lossy deliverable (judge it with lossy_ok = true); write PNG frames "
                                "or a dump for exact parity" if floor.consistent else registered.fix, "lossy_output", None, registered.porting_section))
    if explanation is not None and not explanation.explained:
        left = explanation.unexplained_share
        partial = [f.hypothesis.description for f in (*explanation.findings, *explanation.partials) if f.status == "partial"]
        hint = f"; hypotheses that help a little but not as they predict (not named): {'; '.join(partial[:3])}" if partial else ""
        found.append(Difference(f"not explained: {left:.0%} of the error on the sampled frames", "; ".join(explanation.unexplained) + hint,
                                "compare the port's stages with a dump (`parity run --dump`) to find the first that differs", None, left, None))
    return found


def _measurable(registration) -> bool:
    """A registration names a geometric mistake only when it moves the box measurably: a scale off by 0.2%, a shift of a
    quarter pixel or a rotation of 0.1 degree (a near-identity warp that helps is interpolation, not geometry)."""
    scale_x, scale_y = registration.scale
    shift_x, shift_y = registration.shift
    return max(abs(scale_x - 1), abs(scale_y - 1)) > 0.002 or max(abs(shift_x), abs(shift_y)) > 0.25 or abs(registration.rotation_deg) > 0.1


def port_document(kind: str, candidate: Path, alignment: Alignment | None, regions: Regions | None, lossy: LossyEvidence | None,
                  audio_track: AudioTrack | None, explanation, floor: CodecFloor | None = None) -> PortVerdict:
    """The `port` object of result.json: what was read, how it aligned, per-region PSNR, lossy evidence, simulation."""
    port = PortVerdict(kind, str(candidate), regions=regions, audio_track=audio_track)
    if alignment is not None:
        port.alignment = PortAlignment(alignment.summary(), alignment.base, alignment.offset, alignment.candidate_count, alignment.frame_count,
                                       list(alignment.missing), list(alignment.extra), alignment.confidence, dict(sorted(alignment.mapping.items())))
    if lossy is not None:
        port.lossy = Lossy(lossy.lossy, lossy.kind, lossy.estimated_quality, lossy.outside_psnr, lossy.text)
    if floor is not None:
        figures = lambda values: RegionFigures(**{name: values.get(name) for name in REGIONS})
        port.codec = CodecNoise(floor.encoding.describe(), floor.colour_text(), floor.encoding.estimated, list(floor.frames), figures(floor.floor),
                                figures(floor.candidate), floor.tolerance_db, floor.consistent, floor.text())
    if explanation is not None:
        findings = [Finding(f.name, f.hypothesis.description, f.evidence, f.mistake.id, f.mistake.fix, f.status, f.explains)
                    for f in (*explanation.findings, *explanation.partials)]
        port.simulation = Simulation(findings, explanation.explained, explanation.summary(), list(explanation.sample), list(explanation.unexplained),
                                     explanation.seconds)
    return port
