"""The port bundle: everything a hand-written Go (ONNX Runtime) or Swift (Core ML) port needs.

`write_bundle` writes one folder, atomically (a `.partial` sibling renamed when complete)::

    bundle/
      README.md            what is here, the inputs, weights and sizes
      PORTING.md           stage by stage: what to implement, its tolerance, the usual mistakes
                           (PORTING.md.template beside this module, its tables and constants filled in)
      pipeline.json        every constant of the pipeline, named and explained (generated from code)
      mel_filterbank.npy   librosa's Slaney mel filterbank (80, 401) float32
      window.npy           the periodic Hann window librosa.stft uses (800,) float64
      dump.schema.json     JSON Schema of a dump's manifest.json
      models/              onnx-fp32/, coreml-fp32/, coreml-fp16/, each with manifest.json
      golden/              the reference's dump of every stage for N frames, plus its inputs
                           (the two float tensors of the U-Net, 3.7 MB a frame, for the first and
                           the last frame only: `tensor_frames`; every other stage for every frame):
        input.wav          the audio (cut to what N frames need)
        dataset/           full_body_img/{i}.png + landmarks/{i}.lms for templates 0..max used
        manifest.json ...  the dump (harness/verdict/dump.py format)

pipeline.json is built from the constants of `reference/` and `models/specs.py`, never typed by
hand, so it cannot drift from the reference.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

import cv2
import numpy as np

from ... import __version__
from ...atomic import building
from ...errors import ParityError
from ...models import load_models
from ...models.specs import IMAGE_PREPROCESSING, audio_encoder_spec, unet_spec
from ...reference import audio, frames, video
from ...reference import dataset as dataset_module
from ...reference.audio import load_audio
from ...reference.dataset import IMAGE_DIR, LANDMARK_DIR, open_dataset, template_schedule
from ...reference.pipeline import REFERENCE_VERSION, ReferencePipeline
from ...reference.stages import STAGE_NAMES, STAGES
from ..inputs import resolve_inputs
from ..verdict.dump import DumpWriter, dump_schema
from ..verdict.gates import default_gate
from ..verdict.mistakes import MISTAKES, VIDEO

PIPELINE_SCHEMA = "synctalk-parity/pipeline"
PIPELINE_VERSION = 1
DEFAULT_FRAMES = 8
MODEL_EXPORTS = (("onnx", "fp32"), ("coreml", "fp32"), ("coreml", "fp16"))
AUDIO_MARGIN_SECONDS = 0.2  # audio kept past the last feature row a frame reads (STFT edge padding)
PRODUCER = {"name": "synctalk-parity reference", "version": __version__, "backend": "torch-eager", "precision": "fp32"}
HANN_WINDOW = "hann"
FLOAT16_SHARE = 0.01  # float16 storage only where its rounding error is under 1 % of the fp32 gate's max |diff|
TENSOR_STAGES = ("frame.unet_input", "frame.unet_output")  # float32, 2.5 + 1.2 MB a frame: kept for `tensor_frames` only
PORTING_TEMPLATE = "PORTING.md.template"  # package data: PORTING.md's text, with $name where a generated part goes
DEMO_WEIGHTS_NOTE = ("the demo weights (listening test weights for the demo avatar, not a SyncTalk model): trained-like outputs whose "
                     "mouth follows the speech, fine for proving a port, its audio path included")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BundleRequest:
    out: Path
    dataset: Path | None = None
    audio: Path | None = None
    unet: Path | None = None
    audio_encoder: Path | None = None
    frames: int = DEFAULT_FRAMES
    models: bool = True  # export the networks into models/ (Core ML conversion takes ~30 s each)


def write_bundle(request: BundleRequest, progress: Progress | None = None) -> Path:
    """Write the bundle folder `request.out` (replacing an earlier bundle there); return it."""
    say = progress or (lambda _message: None)
    if request.frames < 1:
        raise ParityError(f"--frames must be at least 1, got {request.frames}")
    final = Path(request.out)
    if final.exists() and not (final / "pipeline.json").is_file():
        raise ParityError(f"{final} exists and is not a bundle: choose a new or empty folder")
    given = resolve_inputs(request.dataset, request.audio, request.unet, request.audio_encoder, note=say)
    assert given.dataset is not None and given.audio is not None
    dataset_path, audio_path, demo = given.dataset.resolve(), given.audio.resolve(), given.demo
    with building(final) as tmp:
        unet, encoder, labels = load_models(given.unet, given.audio_encoder)
        say("golden inputs")
        frame_count = _write_golden_inputs(tmp / "golden", dataset_path, audio_path, request.frames)
        say("golden dump (eager reference)")
        _write_golden_dump(tmp / "golden", ReferencePipeline(unet, encoder), frame_count)
        storage = storage_table(tmp / "golden")
        np.save(tmp / "mel_filterbank.npy", audio.mel_filterbank().astype(np.float32))
        np.save(tmp / "window.npy", hann_window())
        _write_json(tmp / "dump.schema.json", dump_schema())
        weights = {"unet": labels["unet"], "audio_encoder": labels["audio_encoder"],
                   "demo_weights": given.demo_weights}
        inputs = {"dataset": str(dataset_path), "audio": str(audio_path), "demo": demo, "frames": frame_count}
        _write_json(tmp / "pipeline.json", {**pipeline_constants(), "bundle": {"weights": weights, "inputs": inputs}})
        if request.models:
            for fmt, precision in MODEL_EXPORTS:
                say(f"models: {fmt} {precision}")
                _export(fmt, unet, encoder, tmp / "models", precision)
        (tmp / "PORTING.md").write_text(porting_guide(storage), encoding="utf-8")
        (tmp / "README.md").write_text(_readme(tmp, weights, inputs, frame_count), encoding="utf-8")
    return final


def pipeline_constants() -> dict:
    """Every constant of the pipeline, named and explained, read from the reference modules."""
    unet, encoder = unet_spec("ave"), audio_encoder_spec()
    real, masked = frames.INNER, frames.MASK_RECT
    return {
        "schema": PIPELINE_SCHEMA,
        "version": PIPELINE_VERSION,
        "reference_version": REFERENCE_VERSION,
        "producer": {"name": "synctalk-parity", "version": __version__},
        "audio": {
            "sample_rate": audio.SAMPLE_RATE,
            "input": "mono float32 PCM; other rates are resampled as librosa.load does (soxr_hq), channels averaged",
            "preemphasis": {"coefficient": audio.PREEMPHASIS, "formula": "y[n] = x[n] - coefficient * x[n-1], y[0] = x[0] (float64)"},
            "stft": {"n_fft": audio.N_FFT, "hop_length": audio.HOP_LENGTH, "win_length": audio.WIN_LENGTH,
                     "window": f"periodic {HANN_WINDOW} (window.npy)", "center": True, "pad_mode": audio.DEFAULT_PAD_MODE,
                     "pad": audio.N_FFT // 2, "magnitude": "abs(complex spectrum), float64",
                     "note": "centre padding of n_fft/2 zeros on both sides ('constant'; older librosa used 'reflect')"},
            "mel": {"n_mels": audio.N_MELS, "fmin": audio.FMIN, "fmax": audio.FMAX, "filterbank": "mel_filterbank.npy (Slaney, librosa.filters.mel)",
                    "shape": [audio.N_MELS, audio.N_FFT // 2 + 1]},
            "normalization": {"min_level_db": audio.MIN_LEVEL_DB, "ref_level_db": audio.REF_LEVEL_DB, "max_abs_value": audio.MAX_ABS_VALUE,
                              "amplitude_floor": 1e-5,
                              "formula": "db = 20*log10(max(1e-5, mel)) - ref_level_db; "
                                         "clip(2*max_abs*((db - min_level_db) / -min_level_db) - max_abs, -max_abs, max_abs)"},
            "mel_frames": {"formula": f"T = 1 + S // {audio.HOP_LENGTH}", "layout": "time-major (T, n_mels)"},
            "windows": {"frames_per_window": audio.WINDOW_FRAMES, "mel_fps": audio.MEL_FPS, "video_fps": audio.VIDEO_FPS,
                        "count_formula": f"N = int((T - {audio.WINDOW_FRAMES}) / {audio.MEL_FPS} * {audio.VIDEO_FPS}) + 2",
                        "start_formula": f"start(k) = int({audio.MEL_FPS} * k / {audio.VIDEO_FPS}); "
                                         f"if start + {audio.WINDOW_FRAMES} > T: start = T - {audio.WINDOW_FRAMES}",
                        "layout": f"window k = mel[start:start+{audio.WINDOW_FRAMES}].T as (1, {audio.N_MELS}, {audio.WINDOW_FRAMES}) float32",
                        "encoder_batch": audio.ENCODER_BATCH},
            "features": {"size": encoder.outputs[0].shape[0], "padding": "repeat the first and the last row once: (N, 512) -> (N + 2, 512)",
                         "frame_count": "output frames = N + 2"},
            "unet_audio": {"rows": audio.UNET_AUDIO_ROWS, "first_row": f"i - {audio.UNET_AUDIO_ROWS // 2}",
                           "last_row": f"i + {audio.UNET_AUDIO_ROWS // 2 - 1}",
                           "outside": "rows outside 0 .. N+1 of the padded features are zeros",
                           "shape": list(unet.inputs[1].shape), "layout": "the 16 x 512 rows reshaped row-major to (32, 16, 16)"},
        },
        "templates": {
            "image_dir": IMAGE_DIR, "landmark_dir": LANDMARK_DIR, "image_suffixes": list(dataset_module.IMAGE_SUFFIXES),
            "numbering": "{i}.jpg / {i}.lms, i = 0 .. L-1, contiguous",
            "landmarks": {"count": frames.LANDMARK_COUNT, "format": "one 'x y' line per point", "dtype": "float32, truncated to int32 before use"},
            "schedule": {"formula": "idx = 0, step = 0; per frame: if idx > L-2: step = -1; if idx < 1: step = 1; idx += step; use template idx",
                         "first": 1, "note": "L = template count; frames use 1, 2, .., L-1, L-2, .., 0, 1, ..; the first frame uses template 1, not 0"},
        },
        "crop": {
            "landmark_indices": {"xmin": frames.LEFT_JAW, "ymin": frames.NOSE, "xmax": frames.RIGHT_JAW},
            "box": "xmin = x[left], xmax = x[right], ymin = y[nose], ymax = ymin + (xmax - xmin)",
            "size": frames.CROP_SIZE,
            "interpolation": _interpolation_name(frames.INTERPOLATION),
            "inner": {"start": real[0], "stop": real[1], "note": f"crop[{real[0]}:{real[1]}, {real[0]}:{real[1]}] is what the U-Net sees"},
        },
        "unet_input": {
            "mask_rect": {"x": masked[0], "y": masked[1], "w": masked[2], "h": masked[3],
                          "note": f"cv2.rectangle filled: rows {masked[1]}..{masked[1] + masked[3] - 1}, cols {masked[0]}..{masked[0] + masked[2] - 1} "
                                  "of the inner 320 x 320 become 0 (inclusive ends)"},
            **IMAGE_PREPROCESSING,
            "shape": list(unet.inputs[0].shape),
            "dtype": "float32",
        },
        "unet_output": {"shape": list(unet.outputs[0].shape), "range": [0.0, 1.0], "channel_order": "BGR"},
        "mouth": {"scale": 255, "conversion": "float32 multiply by 255, then truncate toward zero to uint8 (no rounding)",
                  "layout": "CHW -> HWC"},
        "paste": {"mouth_offset": real[0], "note": f"mouth replaces crop[{real[0]}:{real[1]}, {real[0]}:{real[1]}]; "
                  "the crop is resized back to (xmax - xmin, ymax - ymin) and written at frame[ymin:ymax, xmin:xmax]",
                  "interpolation": _interpolation_name(frames.INTERPOLATION)},
        "video": {"fps": video.FPS, "crf": video.CRF, "codec": "H.264 + AAC (lossy: compare frames, not the video)"},
        "models": {
            "unet": _spec_dict(unet), "audio_encoder": _spec_dict(encoder),
        },
        "stages": [{"name": s.name, "per": s.per, "shape": s.shape, "dtype": s.dtype, "description": s.description} for s in STAGES],
    }


def hann_window() -> np.ndarray:
    """The periodic Hann window of `n_fft` samples that librosa.stft applies (float64)."""
    from scipy.signal import get_window

    return get_window(HANN_WINDOW, audio.WIN_LENGTH, fftbins=True)


def audio_samples_needed(frame_count: int) -> int:
    """PCM samples so that output frames 0..count-1 read the same features as from the whole clip.

    Frame i reads padded rows up to i + 7, i.e. encoder windows up to count + 5; a margin keeps
    those windows clear of the STFT's edge padding and of the last-window clamp.
    """
    last_window = frame_count + audio.UNET_AUDIO_ROWS // 2 - 3
    mel_frames = audio.window_start(last_window, mel_frames=sys.maxsize) + audio.WINDOW_FRAMES  # unclamped start
    seconds = mel_frames / audio.MEL_FPS + AUDIO_MARGIN_SECONDS
    return math.ceil(seconds * audio.SAMPLE_RATE)


def tensor_frames(frame_count: int) -> list[int]:
    """The frames whose U-Net tensors (`TENSOR_STAGES`) the golden dump keeps: the first and the last.

    The first frame reads zero rows before the audio (the edge padding), the last the furthest
    template and audio row; the U-Net is the same function on every frame, so two frames prove it,
    and every frame's image stages (uint8 PNG, from those tensors) are kept to prove the rest.
    """
    return sorted({0, frame_count - 1})


def storage_table(golden: Path) -> list[dict]:
    """Per stage of the golden dump: the frames it holds, how it is stored, the tightest gate it supports.

    Every stage is stored in its contract dtype without loss (float `.npy`, uint8 PNG), so each
    supports the fp32 gate. float16 storage of the U-Net tensors is measured here, on this dump: its
    rounding error adds to a port's difference, so it would need to stay under `FLOAT16_SHARE` of the
    fp32 gate's max |diff| (it does not: PORTING.md states the figures, and the tensors stay float32).
    """
    from ..verdict.dump import Dump

    dump, gate = Dump.open(golden), default_gate("fp32")
    rows = []
    for name in dump.stage_names:
        entry = dump.entry(name)
        frames_held = None if entry["per"] == "clip" else list(entry["frames"])
        stored = "8-bit PNG (lossless)" if entry.get("pattern", "").endswith(".png") else f"{entry['dtype']} .npy (exact)"
        row = {"stage": name, "frames": frames_held, "of": dump.frame_count, "stored": stored, "supports": "fp32 and fp16 gates"}
        if name in TENSOR_STAGES:
            error = max(float(np.max(np.abs(dump.frame(name, i).astype(np.float16).astype(np.float64) - dump.frame(name, i))))
                        for i in dump.frames(name))
            limit = gate.tolerance(name).max_abs
            row["float16_error"] = error
            row["float16_share_of_gate"] = error / limit if limit else math.inf
        rows.append(row)
    return rows


def gate_table(precision: str = "fp32") -> list[dict]:
    """The default tolerance of every stage, in contract order (for PORTING.md)."""
    gate = default_gate(precision)
    rows = []
    for stage in STAGES:
        tolerance = gate.stages.get(stage.name)
        rows.append({"stage": stage.name, "tolerance": tolerance.as_dict() if tolerance else {}})
    return rows


def porting_guide(storage: list[dict] | None = None) -> str:
    """PORTING.md: `PORTING_TEMPLATE` (what to implement per stage, the usual mistakes, how to prove a port) with
    its generated parts filled in: the tolerance of every stage (from the gates), what golden/ holds (`storage`,
    when given), and the pipeline's constants (from `pipeline_constants`)."""
    fp16 = {row["stage"]: row["tolerance"] for row in gate_table("fp16")}
    stage_rows = [f"| `{stage.name}` | `{stage.shape}` {stage.dtype} | {stage.description} | "
                  f"{_tolerance_text(row['tolerance'])} | {_tolerance_text(fp16[stage.name])} |"
                  for stage, row in zip(STAGES, gate_table("fp32"))]
    golden = "\n".join(_golden_section(storage)) if storage is not None else ""
    text = porting_template().substitute(stage_rows="\n".join(stage_rows), golden_section=golden, mistakes=porting_mistakes(),
                                         **porting_constants())
    return re.sub(r"\n{3,}", "\n\n", text)


def porting_mistakes() -> str:
    """PORTING.md's table of usual mistakes: the mistake registry (`harness/verdict/mistakes.py`), in stage order, each
    with the id `parity compare` names it by and what to change."""
    order = {name: i for i, name in enumerate((*STAGE_NAMES, VIDEO))}
    rows = [f"| `{m.stage}` | {m.title} | `{m.id}` | {m.fix} |" for m in sorted(MISTAKES, key=lambda m: order[m.stage])]
    return "\n".join(["| stage | mistake | id | what to change |", "| --- | --- | --- | --- |", *rows])


def porting_template() -> Template:
    """The hand-written part of PORTING.md (package data beside this module); `$name` marks a generated part."""
    return Template(resources.files(__package__).joinpath(PORTING_TEMPLATE).read_text(encoding="utf-8"))


def porting_constants() -> dict[str, str]:
    """The pipeline constants PORTING.md's text quotes, read from `pipeline_constants` (so the guide cannot drift)."""
    constants = pipeline_constants()
    sound, crop, unet_audio = constants["audio"], constants["crop"], constants["audio"]["unet_audio"]
    landmarks, inner = crop["landmark_indices"], crop["inner"]
    half = audio.UNET_AUDIO_ROWS // 2
    return {
        "sample_rate_khz": f"{sound['sample_rate'] / 1000:g}",
        "hop_length": str(sound["stft"]["hop_length"]),
        "window_frames": str(sound["windows"]["frames_per_window"]),
        "mel_fps": str(sound["windows"]["mel_fps"]),
        "video_fps": str(sound["windows"]["video_fps"]),
        "n_mels": str(sound["mel"]["n_mels"]),
        "feature_size": str(sound["features"]["size"]),
        "left_jaw": str(landmarks["xmin"]),
        "right_jaw": str(landmarks["xmax"]),
        "nose": str(landmarks["ymin"]),
        "crop_size": str(crop["size"]),
        "bicubic_a": f"{crop['interpolation']['a']:g}",
        "half_rows": str(half),
        "half_rows_less_one": str(half - 1),
        "unet_audio_shape": str(tuple(unet_audio["shape"])),
        "inner": f"{inner['start']}:{inner['stop']}",
    }


def _golden_section(storage: list[dict]) -> list[str]:
    """PORTING.md's table of what `golden/` holds per stage: frames, storage, the gates it supports."""
    lines = [
        "## What `golden/` holds",
        "",
        "Every stage is stored in its contract dtype without loss, so each stored stage supports the fp32",
        "gate (and the looser fp16 one). To keep `golden/` small, the two float tensors of the U-Net",
        f"(`{'`, `'.join(TENSOR_STAGES)}`, 3.7 MB a frame) are kept for the frames listed only; every",
        "other stage is kept for every frame. A port may dump any frames: `parity compare` compares each",
        "stage on the frames the golden dump holds and ignores the port's extra frames; a golden frame",
        "the port lacks fails.",
        "",
        "| stage | frames in golden/ | stored as | supports |",
        "| --- | --- | --- | --- |",
    ]
    for row in storage:
        frames_held = "clip" if row["frames"] is None else _frames_list(row["frames"], row["of"])
        lines.append(f"| `{row['stage']}` | {frames_held} | {row['stored']} | {row['supports']} |")
    tensors = [row for row in storage if "float16_error" in row]
    if tensors:
        lines += ["", "float16 storage would halve the U-Net tensors; measured on this dump, its rounding alone is off by"]
        for row in tensors:
            limit = default_gate("fp32").tolerance(row["stage"]).max_abs
            lines.append(f"- `{row['stage']}`: up to {row['float16_error']:.3g}, {row['float16_share_of_gate']:.0%} of the fp32 gate's "
                         f"max |diff| {limit:.3g}")
        lines += ["", "and that error adds to a port's own difference (a port at the gate's edge would fail against it), so",
                  "these tensors are stored float32: float16 would need its error under "
                  f"{FLOAT16_SHARE:.0%} of the gate."]
    return lines


def _frames_list(frames_held: list[int], frame_count: int) -> str:
    """"0..7 (all 8)" for every frame of the run, else the frames themselves ("0, 7")."""
    if len(frames_held) > 2 and frames_held == list(range(frame_count)):
        return f"0..{frame_count - 1} (all {frame_count})"
    return ", ".join(map(str, frames_held))


def _write_golden_inputs(golden: Path, dataset_path: Path, audio_path: Path, frame_count: int) -> int:
    """input.wav (cut) and dataset/ (templates 0..max used, lossless PNG); returns the frames the bundle holds."""
    import soundfile

    pcm = load_audio(audio_path)
    pcm = pcm[: audio_samples_needed(frame_count)]
    golden.mkdir(parents=True)
    as_int16 = pcm * 32768.0
    if np.array_equal(as_int16, np.round(as_int16)) and np.abs(as_int16).max(initial=0) < 32768:
        soundfile.write(golden / "input.wav", as_int16.astype(np.int16), audio.SAMPLE_RATE, subtype="PCM_16")
    else:
        audio.write_wav(golden / "input.wav", pcm)  # 32-bit float, the same bytes whenever a bundle is built
    windows = audio.window_count(1 + len(pcm) // audio.HOP_LENGTH)
    total = min(frame_count, windows + 2)
    source = open_dataset(dataset_path)
    used = max(template_schedule(total, source.template_count))
    images, landmarks = golden / "dataset" / IMAGE_DIR, golden / "dataset" / LANDMARK_DIR
    images.mkdir(parents=True)
    landmarks.mkdir(parents=True)
    for k, template in enumerate(source.templates[: used + 1]):
        cv2.imwrite(str(images / f"{k}.png"), template.read_image())
        points = "".join(f"{x:.9g} {y:.9g}\n" for x, y in template.landmarks.tolist())
        (landmarks / f"{k}.lms").write_text(points, encoding="utf-8")
    return total


def _write_golden_dump(golden: Path, reference: ReferencePipeline, frame_count: int) -> None:
    """The reference's dump of every stage of every frame (the U-Net tensors of `tensor_frames` only), from the bundle's own inputs."""
    bundle_dataset = open_dataset(golden / "dataset")
    clip = reference.audio_stages(load_audio(golden / "input.wav"), source=str(golden / "input.wav"))
    dump = golden.with_name("golden-dump")
    kept = set(tensor_frames(frame_count))
    with DumpWriter(dump, PRODUCER, frame_count, "all") as writer:
        writer.add_clip(clip.as_dict())
        for stages in reference.frames(bundle_dataset, clip, frame_count):
            values = stages.as_dict()
            if stages.index not in kept:
                values = {name: value for name, value in values.items() if name not in TENSOR_STAGES}
            writer.add_frame(stages.index, values, heavy=True)
    for item in dump.iterdir():
        item.rename(golden / item.name)
    dump.rmdir()


def _export(fmt: str, unet, encoder, out: Path, precision: str) -> None:
    from ...export import export_models

    export_models(fmt, unet, encoder, out, precision)


def _readme(folder: Path, weights: dict, inputs: dict, frame_count: int) -> str:
    sizes = {name: folder_size(folder / name) for name in ("golden", "models")}
    weights_line = DEMO_WEIGHTS_NOTE if weights["demo_weights"] else f"U-Net {weights['unet']}; audio encoder {weights['audio_encoder']}"
    return "\n".join([
        "# SyncTalk_2D port bundle",
        "",
        f"Made by synctalk-parity {__version__} (reference version {REFERENCE_VERSION}).",
        "",
        f"- inputs: {'the built-in demo' if inputs['demo'] else inputs['dataset'] + ' + ' + inputs['audio']}; {frame_count} frames",
        f"- weights: {weights_line}",
        f"- `golden/`: {_megabytes(sizes['golden'])} - the eager reference's dump of every stage of frames 0..{frame_count - 1}",
        f"  (`{'` and `'.join(TENSOR_STAGES)}`, float32, 3.7 MB a frame, for frames {_frames_list(tensor_frames(frame_count), frame_count)} only;",
        "  every other stage for every frame; each stored without loss, so each supports the fp32 gate: PORTING.md,",
        "  *What `golden/` holds*), made from `golden/input.wav`",
        "  (the audio cut to what these frames read) and `golden/dataset/` (templates 0..max used, decoded",
        "  once and stored as lossless PNG so no JPEG decoder difference can creep in; numbering as in the",
        "  original dataset, so the ping-pong schedule is the same).",
        f"- `models/`: {_megabytes(sizes['models'])} - ONNX fp32, Core ML fp32 and fp16, each with manifest.json.",
        "- `pipeline.json`: every constant; `mel_filterbank.npy`, `window.npy`: librosa's filterbank and window.",
        "- `dump.schema.json`: JSON Schema of a dump's manifest.json; `PORTING.md`: how to port and prove it.",
        "",
    ]) + "\n"


def folder_size(path: Path) -> int:
    """Bytes of all files under `path` (0 when absent)."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) if Path(path).exists() else 0


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _spec_dict(spec) -> dict:
    return {
        "inputs": [{"name": t.name, "shape": ["B", *t.shape], "dtype": t.dtype, "description": t.description} for t in spec.inputs],
        "outputs": [{"name": t.name, "shape": ["B", *t.shape], "dtype": t.dtype, "description": t.description} for t in spec.outputs],
        "tolerance": {"fp32": spec.fp32_tolerance, "fp16": spec.fp16_tolerance},
    }


def _interpolation_name(flag: int) -> dict:
    names = {cv2.INTER_CUBIC: ("opencv_bicubic", -0.75), cv2.INTER_LINEAR: ("opencv_bilinear", None)}
    name, a = names[flag]
    return {"name": name, "a": a, "opencv_flag": int(flag),
            "note": "OpenCV convention: pixel centres at (x + 0.5) * scale - 0.5, borders replicated, result rounded and saturated to uint8"}


def _tolerance_text(tolerance: dict) -> str:
    if not tolerance:
        return "-"
    return ", ".join(f"{key} {value:g}" for key, value in tolerance.items() if value is not None)


def _write_json(path: Path, document: dict) -> None:
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
