"""Diagnosis by simulation: which known port mistakes, applied to the reference, make the candidate's frames.

The signature-based diagnoses (`diagnose.py`) need a port's intermediate stages. A port that only hands
over its output frames can still be diagnosed, because the toolkit owns the reference pipeline: it re-runs
the reference on a few sampled output frames with known mistakes applied, and looks for the combination
of mistakes whose frames match the candidate's.

    simulator = Simulator(dataset, pcm, generate=backend.generate, encode=backend.encode_audio)
    explanation = explain(simulator, {i: frame_i, ...}, sample=[0, 7, 19, 33], candidate_frame_count=246)
    print(explanation.summary())

**Variants.** A `Variant` (`reference/pipeline.py`) is one pipeline: every knob of the reference's stage
functions, by stage group: the audio front end (`front_end`: pre-emphasis, STFT centring and padding,
window, magnitude, mel scale, dB reference, normalization, feature padding), the U-Net audio input
(`audio_window`: silent, constant, one row tiled, shifted), the frame geometry (`geometry`: template and
landmark offsets, one box for all, crop interpolation and its pixel mapping, JPEG-compressed templates or crops), the U-Net image
input (`network_input`: channel order, halves, scale, mask rectangle), the network's precision (`network`: fp32, or
fp16/bf16 emulated, run by the Simulator's `generate_at`) and what follows the network
(`finish`: rounding, channel orders, the 328 canvas, paste interpolation and mapping, blend, lossy output). `Variant()` is the
reference. `Simulator.frames(variant, indices)` makes that pipeline's output frames with the reference's own
stage functions (`frame_inputs`, then `finish_frame` on the network's output): there is no second
implementation of a stage here.

**Hypotheses.** A catalogued `Hypothesis` is one concrete form of a registered mistake
(`harness/verdict/mistakes.py`): `mask_smaller_2` is a form of `mask_rectangle_off`. It sets knobs, named
`group.field`; findings carry its mistake's id, so a result names a mistake as the stage signatures do.
A mistake with a parameter (`fitted`: the temporal processing of the feature sequence, whose shift, held rows and
smoothing width a port can have any value of) is one family of hypotheses, one per value of its knob: the search
fits the value (each value screened, only the family's best goes on), so the values do not compete as mistakes
of their own, and the finding says which value fits and which were searched.

**Cost.** Features are cached per front end (the `AudioFrontEnd` object is the key: every field of it,
so a knob added there cannot be left out) and only the 64-window encoder batches that hold the windows the
sampled frames read are encoded, batched as the reference batches them, so the reference's features come
out bit for bit; U-Net outputs are cached by the hash of their inputs, so every mistake after the network,
and every combination of them, reuses the outputs; the rest (crop, paste, JPEG) is recomputed, in
milliseconds.

**Search.** `explain` is greedy. The score of a variant is the PSNR between the candidate's sampled
frames and the variant's, measured separately inside the crop boxes and outside them (so output-wide
mistakes such as a lossy frame writer count), combined as the PSNR of the mean of the two squared
errors. It starts from the reference; each round it tries every catalogued hypothesis (`HYPOTHESES`)
that touches none of the knobs already turned, on top of the accepted ones, and accepts the best if
it raises the score by at least `margin_db` (1 dB by default: 21% less squared error; two runtimes'
U-Nets differ by about 90 dB, an error 10^5 times smaller than a 20-40 dB mismatch, while a mistake that
explains the frames moves the score by several dB) without making any sampled frame worse by more than the
margin (a real mistake acts on every frame alike). It stops when the frames are explained (both scores
at or above the noise floor, or identical) or nothing helps. To keep a round cheap, hypotheses that need
new U-Net runs are first screened on one sampled frame (the worst-explained, kept while it stays
unexplained, so screening after a mistake past the network reuses its U-Net outputs), and only the best few are
scored on all of them; the hypotheses after the network are scored on all frames straight away (their
U-Net outputs are cached). A greedy result that does not explain the frames is revised: for each of its first
`MAX_REVISIONS` searched findings (not those the frame count or prior evidence established), the search returns to the
findings accepted before it and searches again without it (a fitted family excluded whole); the alternative replaces the
greedy result only when every finding it holds is named and it explains the frames, or raises the score by the margin with
no sampled frame worse by more than the margin; the replacement is recorded with both scores (`Explanation.revisions`).
A greedy result that explains the frames costs nothing more. When the candidate's frame count differs from the reference's, the front-end
mistakes that change the count (and pairs of them) are tried first, and a count that matches names
the mistake; when the candidate's count is known, no variant making another count is tried (unpadded features
read every frame's audio one row on, as a shift does, but make two frames fewer).

**Specificity: never a wrong cause.** A better score is not enough to name a hypothesis: a port whose real
mistake is not catalogued (another blend, a colour curve) is often matched a little better by several wrong ones.
So the search accepts a hypothesis only when the candidate carries the change it predicts: over the pixels it
changes (`d`, the simulation with it minus the one without), the candidate's difference from the one without
(`r`) regressed on `d` must give a slope within `ALPHA_BAND` (1: all of the predicted change is there) on three
quarters of the sampled frames it acts on. One that improves the score without that is recorded as *partial*
("improves X dB, not as it predicts: something else is wrong here") and never named. When the search ends, every
accepted finding is judged again with all the others applied (the final variant against it without that
finding): it is named when its slope still holds and what it leaves where it acts is at the noise floor, or under
`RESIDUAL_SHARE` of the error there; otherwise it too is partial. Each finding says how much of the candidate's
squared error (sampled frames, as-is) it removes; `Explanation.unexplained_share` is what stays.

**Fitting.** Integer knobs with an open range (the feather's width, `FITTED`) are fitted after their hypothesis is
accepted: a descent from the catalogued start in steps of 8, 4, 2 and 1; the finding names the fitted value. The
template of each frame is not searched at all: it is recovered from the frames (`sources.py`) and applied first
(`recovered_templates`), with the recovery as its evidence; so is the crop box each frame was pasted into, where it
was registered as another template's (`boxes.py`, `recovered_boxes`).

**Registration.** When no catalogued mistake explains what is left, the candidate's crop-box region is
registered against the best simulation's (`cv2.findTransformECC`, affine; `cv2.phaseCorrelate` when
ECC does not converge) and the scale and shift are reported when aligning improves the box by the
margin: a geometric mistake the catalogue does not hold.

Mistakes below the noise floor (rounding instead of truncation moves pixels by one level: about
50 dB) are not searched for by default; pass `noise_floor_db=math.inf` for a candidate made on the
simulator's own runtime, where the reference itself is identical.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from ...errors import ParityError
from ...reference import audio, frames
from ...reference.audio import AudioFrontEnd
from ...reference.dataset import Dataset
from ...reference.frames import FrameGeometry
from ...reference.pipeline import FrameInputs, Variant, finish_frame, frame_inputs
from ...reference.stages import FrameStages
from ..verdict.metrics import PSNR_IDENTICAL, any_channel, psnr
from ..verdict.mistakes import Mistake, mistake

__all__ = ["HYPOTHESES", "HYPOTHESES_BY_NAME", "PRECISION_KNOBS", "Hypothesis", "Simulator", "Variant", "evidence_sample", "explain", "recovered_boxes",
           "recovered_templates"]

Box = tuple[int, int, int, int]
Generate = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (B,6,320,320), (B,32,16,16) -> (B,3,320,320)
Encode = Callable[[np.ndarray], np.ndarray]  # (B,1,80,16) -> (B,512)

# Where the search stops: a candidate within this PSNR of a simulation (crop box and outside it) is explained.
# Measured on sanders-mini with the golden weights (4 frames): ONNX Runtime fp32 against eager PyTorch 89.8 dB in
# the crop box; only the U-Net output rounded to fp16, 66.6 dB; while the audio mistakes move the box to 52-62 dB
# (silence 58.3, a one-row shift 59.8-61.7, no STFT centring 60.7) and the image mistakes below 52 dB. So 70 dB
# for fp32 candidates; pass FP16_NOISE_FLOOR_DB (or lower) for an fp16 port, where audio mistakes go unseen.
NOISE_FLOOR_DB = 70.0
FP16_NOISE_FLOOR_DB = 45.0
MARGIN_DB = 1.0
# Specificity: the candidate carries this share of a hypothesis's predicted change (regression slope over the pixels it
# changes) on most sampled frames; and where it acts it leaves the noise floor, or under RESIDUAL_SHARE of the error there.
ALPHA_BAND = (0.6, 1.4)
RESIDUAL_SHARE = 0.1
# A U-Net run at reduced precision (`network.precision`) is emulated (`reference/execution.py`): rounding is chaotic, so
# two honest bf16 runs differ where a value falls near a rounding boundary. Measured on the demo weights (4 frames): a
# real PyTorch bf16 run differs from fp32 by 45.3 dB in the crop box, from the emulation by 52.4 dB; the candidate
# carries 0.83-0.94 of the emulation's change and it removes 81% of the error where it acts. So a precision is named
# when it removes at least PRECISION_SHARE there (with the slope in ALPHA_BAND on most frames, as every hypothesis).
PRECISION_KNOBS = frozenset({"network.precision"})
PRECISION_SHARE = 0.5
JPEG_QUALITIES = (50, 75, 90, 95)
SHIFTS = (1, -1, 2, -2, 3, -3, 4, -4)  # feature rows an audio window may be shifted by: up to 160 ms either way
HOLDS = (2, 3, 4)  # rows held: features made at 1/2, 1/3, 1/4 of the frame rate
SMOOTHING = (3, 5, 7)  # rows averaged across windows
SCREEN_TOP = 4  # pre-network hypotheses scored on all sampled frames after screening on one
INTERPOLATION_NAMES = {cv2.INTER_CUBIC: "bicubic", cv2.INTER_LINEAR: "bilinear", cv2.INTER_NEAREST: "nearest", cv2.INTER_AREA: "area",
                       cv2.INTER_LANCZOS4: "Lanczos"}
# Resizes on another pixel-coordinate mapping than OpenCV's (`frames.resize`): hand-written bilinear and bicubic resizes
# (Go, Swift) map corners to corners (x * (n_in - 1) / (n_out - 1)) or scale indices (x * n_in / n_out)
MAPPED_RESIZES = ((cv2.INTER_LINEAR, "corner"), (cv2.INTER_LINEAR, "asymmetric"), (cv2.INTER_CUBIC, "corner"))
MAPPING_NAMES = {"corner": "corner-aligned pixels (x * (n_in - 1) / (n_out - 1), align_corners)",
                 "asymmetric": "scaled indices (x * n_in / n_out, no half-pixel offset)"}
FEATHER_STARTS = (4, 12, 24)  # feather widths the search starts from; the accepted one is then fitted (`_fit`)
FITTED = {"finish.feather": (1, 64)}  # integer knobs fitted after a hypothesis setting them is accepted: the range searched
RECOVERED_KNOBS = frozenset({"geometry.template_sequence", "geometry.box_sequence"})  # set from the frames' recovered sources (sources.py, boxes.py), not searched
COUNT_KNOBS = frozenset(f"front_end.{name}" for name in audio.FRAME_COUNT_KNOBS)  # the knobs that change the frame count
AFTER_NETWORK_GROUP = "finish"  # the knobs whose stages follow the network: they reuse its outputs


@dataclass(frozen=True)
class Hypothesis:
    """A catalogued port mistake in one concrete form: a function Variant -> Variant that sets some knobs
    (`group.field` -> value); `mistake` is its id in the mistake registry."""

    name: str
    description: str
    category: str
    changes: tuple[tuple[str, Any], ...]
    mistake: str
    family: str | None = None  # a fitted parameter's name (`fitted`): the search keeps the best value of a family

    def __post_init__(self) -> None:
        knobs = Variant().knobs()
        unknown = [name for name, _ in self.changes if name not in knobs]
        if unknown:
            raise ParityError(f"hypothesis {self.name}: {unknown[0]!r} is not a knob of the pipeline (one of {', '.join(knobs)})")
        mistake(self.mistake)

    def __call__(self, variant: Variant) -> Variant:
        return variant.with_knobs(dict(self.changes))

    @property
    def fields(self) -> frozenset[str]:
        """The knobs it sets."""
        return frozenset(name for name, _ in self.changes)

    @property
    def after_network(self) -> bool:
        """True when it changes only steps after the U-Net (its outputs are reused)."""
        return all(name.partition(".")[0] == AFTER_NETWORK_GROUP for name in self.fields)

    @property
    def registered(self) -> Mistake:
        """The registered mistake this is a form of: its title and the fix in the port's terms."""
        return mistake(self.mistake)


def lossy_output(quality: int) -> Hypothesis:
    """Output frames JPEG-encoded at `quality`: a lossy frame writer."""
    return Hypothesis(f"lossy_output_q{quality}", f"output frame JPEG-encoded at quality {quality} (a lossy frame writer)", "output frame",
                      (("finish.output_jpeg", quality),), "lossy_output")


def recovered_templates(sequence: Sequence[int]) -> Hypothesis:
    """Every output frame built on the template recovered from it (`sources.py`), in place of the schedule's."""
    return Hypothesis("templates_recovered", "output frames built on other templates than the ping-pong schedule's (recovered from the frames)",
                      "frame geometry", (("geometry.template_sequence", tuple(int(t) for t in sequence)),), "template_sequence")


def recovered_boxes(sequence: Sequence[int]) -> Hypothesis:
    """Output frames pasted into the crop box registered from them (`boxes.py`: a template index, -1 for the frame's own)."""
    return Hypothesis("boxes_recovered", "mouths pasted into the crop boxes of other templates' landmarks (registered from the frames)",
                      "frame geometry", (("geometry.box_sequence", tuple(int(t) for t in sequence)),), "crop_box_sequence")


def fitted(family: str, describe: Callable[[Any], str], category: str, knob: str, values: Sequence[Any], mistake_id: str) -> list[Hypothesis]:
    """A mistake with a parameter: one hypothesis per value of `knob` (named `family_value`: `audio_shift_+2`), of one
    family, whose value the search fits."""
    def label(value: Any) -> str:
        return f"{value:+d}" if family == "audio_shift" else str(value)

    return [Hypothesis(f"{family}_{label(value)}", describe(value), category, ((knob, value),), mistake_id, family) for value in values]


def _catalogue() -> list[Hypothesis]:
    h: list[Hypothesis] = []

    def add(name: str, description: str, category: str, changes: dict[str, Any], mistake_id: str | None = None) -> None:
        h.append(Hypothesis(name, description, category, tuple(changes.items()), mistake_id or name))

    front = "audio front end"
    add("stft_no_center", "STFT with center=False (no n_fft/2 padding): 4 mel frames fewer, so fewer output frames", front,
        {"front_end.center": False})
    add("stft_other_pad_mode", "STFT centre padding by reflection ('reflect', older librosa) instead of zeros ('constant')", front,
        {"front_end.pad_mode": "reflect"})
    add("symmetric_window", "symmetric Hann window instead of the periodic one librosa uses", front, {"front_end.window": "symmetric"})
    add("no_preemphasis", "pre-emphasis (y(n) = x(n) - 0.97 x(n-1)) skipped", front, {"front_end.preemphasis": 0.0})
    add("power_spectrum", "power |STFT|^2 instead of the magnitude |STFT| before the mel filterbank", front, {"front_end.spectrum": "power"})
    add("htk_mel", "HTK mel scale instead of librosa's Slaney scale", front, {"front_end.mel_scale": "htk"})
    add("no_ref_level", "the -20 dB reference level not subtracted after 20 log10", front, {"front_end.ref_level_db": 0.0})
    add("mel_range_0_4", "mel normalized to [0, 4] instead of the symmetric [-4, 4]", front, {"front_end.mel_range": "[0,4]"})
    add("features_unpadded", "features not padded (first and last rows not repeated): 2 frames fewer, every frame's audio one row on",
        front, {"front_end.padded": False}, "audio_dropped")

    sound = "U-Net audio input"
    add("audio_zero", "U-Net audio input all zeros (silence)", sound, {"audio_window.source": "zero"}, "ghost_audio")
    add("audio_constant", "one U-Net audio input (frame 0's) for every frame", sound, {"audio_window.source": "constant"}, "ghost_audio")
    add("audio_tiled", "one feature row (row i) tiled over the 16-row audio window", sound, {"audio_window.source": "tiled"})
    # the temporal processing of the feature sequence: parameters, fitted
    h.extend(fitted("audio_shift", lambda k: f"audio window shifted by {k:+d} feature row{'s' if abs(k) > 1 else ''} (rows i{k - 8:+d}..i{k + 7:+d}: "
                    f"the mouth {abs(k)} frame{'s' if abs(k) > 1 else ''} {'early' if k > 0 else 'late'})", sound, "audio_window.shift", SHIFTS,
                    "audio_shifted"))
    h.extend(fitted("audio_hold", lambda n: f"feature rows repeated: every {n}th row held for {n} frames (row r reads row r - r % {n})", sound,
                    "audio_window.hold", HOLDS, "audio_rows_repeated"))
    h.extend(fitted("audio_smoothed", lambda n: f"feature rows smoothed across windows: each the mean of the {n} rows around it", sound,
                    "audio_window.smoothing", SMOOTHING, "audio_smoothed"))
    add("audio_edge_repeat", "rows outside the features hold the first or last row repeated instead of zeros", sound, {"audio_window.edge": "repeat"},
        "audio_edge_repeated")

    geometry = "frame geometry"
    for k in (1, -1):
        add(f"template_offset_{k:+d}", f"template off by {k:+d}: frame i uses the scheduled template {k:+d}", geometry,
            {"geometry.template_offset": k}, "template_off_by_one")
    for k in (1, -1):
        add(f"landmark_offset_{k:+d}", f"crop box from the landmarks of template t{k:+d}, not of the template used", geometry,
            {"geometry.landmark_offset": k}, "landmark_off_by_one")
    add("box_from_template_0", "one crop box, template 0's, for every frame", geometry, {"geometry.box_template": 0}, "crop_box_wrong_frame")
    for flag in (cv2.INTER_LINEAR, cv2.INTER_NEAREST, cv2.INTER_AREA, cv2.INTER_LANCZOS4):
        add(f"crop_{INTERPOLATION_NAMES[flag].lower()}", f"crop resized to 328 x 328 with {INTERPOLATION_NAMES[flag]} instead of bicubic", geometry,
            {"geometry.interpolation": flag}, "resize_not_bicubic")
    for flag, mapping in MAPPED_RESIZES:
        add(f"crop_{INTERPOLATION_NAMES[flag].lower()}_{mapping}", f"crop resized to 328 x 328 with {INTERPOLATION_NAMES[flag]} on {MAPPING_NAMES[mapping]} "
            "instead of OpenCV's bicubic on half-pixel centres", geometry, {"geometry.interpolation": flag, "geometry.mapping": mapping}, "resize_mapping")
    for q in JPEG_QUALITIES:
        add(f"jpeg_template_q{q}", f"template frames JPEG-compressed at quality {q} before cropping", geometry, {"geometry.template_jpeg": q},
            "jpeg_template")
    for q in JPEG_QUALITIES:
        add(f"jpeg_crop_q{q}", f"the 328 x 328 crop JPEG-compressed at quality {q}", geometry, {"geometry.crop_jpeg": q}, "jpeg_crop")

    image = "U-Net image input"
    add("input_rgb", "U-Net image input in RGB order (the network expects BGR)", image, {"network_input.channels": "rgb"}, "channels_swapped")
    add("input_halves_swapped", "U-Net image input halves swapped: masked half first, real half second", image,
        {"network_input.halves": "masked,real"})
    add("input_unscaled", "U-Net image input not divided by 255 (0..255)", image, {"network_input.scale": "none"}, "wrong_input_scaling")
    add("input_minus1_1", "U-Net image input scaled to [-1, 1] instead of [0, 1]", image, {"network_input.scale": "[-1,1]"}, "wrong_input_scaling")
    x, y, w, hh = frames.MASK_RECT
    masks: list[tuple[str, str, Box | None]] = [(f"mask_smaller_{k}", f"mask rectangle {k} px smaller on each side", (x + k, y + k, w - 2 * k, hh - 2 * k)) for k in (2, 3, 4, 5, 6)]
    masks += [
        ("mask_larger_2", "mask rectangle 2 px larger on each side", (x - 2, y - 2, w + 4, hh + 4)),
        ("mask_corners", "mask rectangle's (x, y, w, h) drawn as corners (5, 5)-(310, 305)", (x, y, w - x + 1, hh - y + 1)),
        ("mask_wh_swapped", "mask rectangle with width and height swapped", (x, y, hh, w)),
        ("mask_shifted_4", "mask rectangle shifted 4 px right and down", (x + 4, y + 4, w, hh)),
        ("mask_missing", "masked half left unmasked (no black rectangle)", None),
    ]
    for name, description, rect in masks:
        add(name, description, image, {"network_input.mask_rect": rect}, "mask_rectangle_off")

    network = "the network"
    add("unet_fp16", "U-Net run in fp16: weights and every layer's output stored as half precision (11-bit mantissa)", network,
        {"network.precision": "fp16"})
    add("unet_bf16", "U-Net run in bf16: weights and every layer's output stored as bfloat16 (8-bit mantissa)", network,
        {"network.precision": "bf16"})

    after = "after the network"
    add("rounding", "U-Net output rounded (floor(x * 255 + 0.5)) instead of truncated", after, {"finish.rounding": "round"}, "rounding_not_truncation")
    add("output_rgb", "U-Net output read as RGB: the mouth's channels reversed before it is pasted", after, {"finish.mouth_channels": "rgb"},
        "channels_swapped_at_paste")
    for q in JPEG_QUALITIES:
        add(f"jpeg_mouth_q{q}", f"the 320 x 320 mouth JPEG-compressed at quality {q}", after, {"finish.mouth_jpeg": q}, "jpeg_mouth")
    add("no_canvas", "mouth resized straight onto the crop box without the 328 canvas", after, {"finish.canvas": False})
    for flag in (cv2.INTER_LINEAR, cv2.INTER_NEAREST, cv2.INTER_AREA, cv2.INTER_LANCZOS4):
        add(f"paste_{INTERPOLATION_NAMES[flag].lower()}", f"crop resized back to the box with {INTERPOLATION_NAMES[flag]} instead of bicubic", after,
            {"finish.interpolation": flag}, "resize_not_bicubic")
    for flag, mapping in MAPPED_RESIZES:
        add(f"paste_{INTERPOLATION_NAMES[flag].lower()}_{mapping}", f"crop resized back to the box with {INTERPOLATION_NAMES[flag]} on "
            f"{MAPPING_NAMES[mapping]} instead of OpenCV's bicubic on half-pixel centres", after,
            {"finish.interpolation": flag, "finish.mapping": mapping}, "resize_mapping")
    add("paste_rgb", "pasted region channel-reversed (the crop box written in RGB)", after, {"finish.region_channels": "rgb"},
        "channels_swapped_at_paste")

    for width in FEATHER_STARTS:
        add(f"feather_{width}", f"the pasted region feathered into the frame: a linear ramp {width} px wide from the box edge", after,
            {"finish.blend": "feather", "finish.feather": width}, "blended_paste")
    add("seamless_clone", "the pasted region cloned into the frame in the gradient domain (seamless clone): its colours shifted to the "
        "frame's around the box", after, {"finish.blend": "clone"}, "blended_paste")

    add("frame_rgb", "whole output frame written in RGB order", "output frame", {"finish.frame_channels": "rgb"}, "channels_swapped_at_paste")
    h.extend(lossy_output(q) for q in JPEG_QUALITIES)
    return h


HYPOTHESES: tuple[Hypothesis, ...] = tuple(_catalogue())
HYPOTHESES_BY_NAME: dict[str, Hypothesis] = {hyp.name: hyp for hyp in HYPOTHESES}


# ----- the simulator -----------------------------------------------------------------------------------


@dataclass
class _FrontEnd:
    """The features of one front end, their rows encoded on demand: the `FeatureRows` the reference's
    `unet_audio_window` reads."""

    mel: np.ndarray
    windows: np.ndarray  # (N, 1, 80, 16)
    front_end: AudioFrontEnd
    encode: Encode
    encoded: dict[int, np.ndarray] = field(default_factory=dict)  # window -> (512,)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self), audio.FEATURE_SIZE

    def __len__(self) -> int:
        return audio.feature_count(len(self.windows), self.front_end)

    def __getitem__(self, row: int) -> np.ndarray:
        window = audio.feature_source(row, len(self.windows), self.front_end)
        if window is None:
            raise IndexError(f"feature row {row} is outside the {len(self)} rows")
        if window not in self.encoded:
            # the whole 64-window encoder batch that holds it, as the reference batches them (64 windows from 0):
            # a runtime's output can depend on the batch it runs in by float32 ulps, and the reference's features
            # are reproduced exactly
            size = audio.ENCODER_BATCH
            start = window // size * size
            encoded = audio.encode_windows(self.encode, self.windows[start : start + size], size)
            for number, vector in enumerate(encoded, start):
                self.encoded[number] = vector
        return self.encoded[window]


@dataclass
class _Prepared:
    inputs: FrameInputs
    key: bytes  # of the U-Net inputs and the precision it runs at
    precision: str


class Simulator:
    """Output frames of any `Variant` of the reference pipeline on one dataset and one clip.

    `generate((B,6,320,320), (B,32,16,16)) -> (B,3,320,320)` and `encode((B,1,80,16)) -> (B,512)` are
    the networks (a backend's `generate`/`encode_audio`, or a reference pipeline's wrapped to batches).
    `streams`: how many fp32 `generate` calls may run at once, each from its own thread (a backend's `streams()`:
    ONNX Runtime on the CPU runs one call per CPU, each on one thread); the U-Net outputs are the same either way.
    """

    def __init__(self, dataset: Dataset, pcm: np.ndarray, generate: Generate, encode: Encode, batch_size: int = 4,
                 generate_at: Callable[[str], Generate] | None = None, streams: int = 1):
        self.dataset = dataset
        self.pcm = np.ascontiguousarray(pcm, dtype=np.float32)
        self.generate = generate
        self.generate_at = generate_at  # precision -> the U-Net run at that precision (`network.precision`); None: fp32 only
        self._generators: dict[str, Generate] = {"fp32": generate}
        self.encode = encode
        self.batch_size = max(1, batch_size)
        self.streams = max(1, streams)
        self.unet_runs = 0
        self.unet_seconds = 0.0
        self._frontends: dict[AudioFrontEnd, _FrontEnd] = {}  # the front end's knobs are the key of its features
        self._outputs: dict[bytes, np.ndarray] = {}
        self._decoded: dict[int, np.ndarray] = {}
        self._images: dict[tuple[int, FrameGeometry], np.ndarray] = {}  # as each geometry makes frames from it
        self._schedules: dict[tuple[int, FrameGeometry], list[int]] = {}  # keyed by the whole geometry

    def supports(self, variant: Variant) -> bool:
        """Whether it can run the variant's U-Net: another precision than fp32 needs `generate_at`."""
        return variant.network.precision == "fp32" or self.generate_at is not None

    def makes(self, variant: Variant, indices: Sequence[int]) -> bool:
        """Whether it can make the variant's frames at `indices` (not empty): the variant makes each of them, and it
        can run the variant's U-Net (`supports`)."""
        return max(indices) < self.frame_count(variant) and self.supports(variant)

    def _generator(self, precision: str) -> Generate:
        if precision not in self._generators:
            if self.generate_at is None:
                raise ParityError(f"this simulation runs the U-Net in fp32 only, not {precision}: give the Simulator generate_at")
            self._generators[precision] = self.generate_at(precision)
        return self._generators[precision]

    # ----- counts and geometry -----
    def frame_count(self, variant: Variant) -> int:
        """The number of output frames this variant makes for the clip."""
        return len(self._frontend(variant))

    def template_index(self, variant: Variant, index: int) -> int:
        key = (self.frame_count(variant), variant.geometry)
        if key not in self._schedules:
            self._schedules[key] = self.dataset.schedule(key[0], variant.geometry)
        return self._schedules[key][index]

    def box(self, variant: Variant, index: int) -> Box:
        """The crop box the variant pastes frame `index` into."""
        return self.dataset.frame_box(self.template_index(variant, index), variant.geometry, index)

    # ----- frames -----
    def frames(self, variant: Variant, indices: Iterable[int]) -> dict[int, np.ndarray]:
        """The variant's output frames at `indices`."""
        return {s.index: s.output for s in self.stages(variant, indices)}

    def stages(self, variant: Variant, indices: Iterable[int]) -> list[FrameStages]:
        """The variant's stages of the output frames at `indices`; U-Net runs only for inputs it has not seen."""
        prepared = [self._prepare(variant, i) for i in indices]
        self._run_unet(prepared)
        return [finish_frame(p.inputs, self._outputs[p.key], variant) for p in prepared]

    def _image(self, template: int, variant: Variant) -> np.ndarray:
        """The template as the variant makes frames from it (decoded once; re-encoded once per JPEG quality)."""
        key = (template, variant.geometry)
        if key not in self._images:
            if template not in self._decoded:
                self._decoded[template] = self.dataset.templates[template].read_image()
                self._decoded[template].setflags(write=False)
            image = frames.template_image(self._decoded[template], variant.geometry)
            image.setflags(write=False)
            self._images[key] = image
        return self._images[key]

    def inputs(self, variant: Variant, index: int) -> FrameInputs:
        """The variant's frame `index` up to the network (no U-Net run): its template, crop box and the U-Net's inputs."""
        count = self.frame_count(variant)
        if not 0 <= index < count:
            raise ParityError(f"frame {index}: outside the {count} frames this variant makes")
        t = self.template_index(variant, index)
        return frame_inputs(self.dataset, self._frontend(variant), index, t, self._image(t, variant), variant)

    def _prepare(self, v: Variant, index: int) -> _Prepared:
        inputs = self.inputs(v, index)
        precision = v.network.precision
        return _Prepared(inputs, hashlib.sha1(inputs.unet_input.tobytes() + inputs.unet_audio.tobytes() + precision.encode()).digest(), precision)

    def prefetch(self, requests: Iterable[tuple[Variant, Sequence[int]]]) -> None:
        """Run the U-Net now for the fp32 variants' frames it has not seen, all in one go (so that `streams` calls run at
        once), for `frames`/`stages` to find later. A variant in another precision, or one that does not make every frame
        asked of it, is left out (the search does not score it). Nothing to do with one stream."""
        if self.streams < 2:
            return
        prepared = [self._prepare(variant, i) for variant, indices in requests
                    if variant.network.precision == "fp32" and indices and self.makes(variant, indices) for i in indices]
        self._run_unet(prepared)

    def _run_unet(self, prepared: Sequence[_Prepared]) -> None:
        missing: dict[bytes, _Prepared] = {}
        for p in prepared:
            if p.key not in self._outputs and p.key not in missing:
                missing[p.key] = p
        for precision in sorted({p.precision for p in missing.values()}):
            same = [p for p in missing.values() if p.precision == precision]
            # fp32 on `streams` calls at once (the backend's networks): the frames shared out so that each call has some;
            # other precisions (the emulation, PyTorch on every core) one call at a time
            streams = self.streams if precision == "fp32" else 1
            size = min(self.batch_size, math.ceil(len(same) / streams))
            batches = [same[start : start + size] for start in range(0, len(same), size)]
            generate = self._generator(precision)

            def run(batch: list[_Prepared], generate: Generate = generate) -> np.ndarray:
                return np.asarray(generate(np.stack([p.inputs.unet_input for p in batch]), np.stack([p.inputs.unet_audio for p in batch])),
                                  dtype=np.float32)

            began = time.perf_counter()
            if streams > 1 and len(batches) > 1:
                with ThreadPoolExecutor(min(streams, len(batches))) as pool:
                    outputs = list(pool.map(run, batches))
            else:
                outputs = [run(batch) for batch in batches]
            self.unet_seconds += time.perf_counter() - began
            for batch, out in zip(batches, outputs):
                self.unet_runs += len(batch)
                for p, frame in zip(batch, out):
                    frame.setflags(write=False)
                    self._outputs[p.key] = frame

    # ----- audio -----
    def _frontend(self, v: Variant) -> _FrontEnd:
        if v.front_end not in self._frontends:
            mel = audio.mel_spectrogram(self.pcm, v.front_end)
            self._frontends[v.front_end] = _FrontEnd(mel, audio.mel_windows(mel, "the simulated front end"), v.front_end, self.encode)
        return self._frontends[v.front_end]


# ----- scores -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    """Candidate against a simulation over the sampled frames: squared error and pixel count inside the
    crop boxes and outside them."""

    box_sse: float
    box_count: int
    outside_sse: float
    outside_count: int

    @property
    def box_db(self) -> float:
        return psnr(self.box_sse / max(1, self.box_count))

    @property
    def outside_db(self) -> float:
        return psnr(self.outside_sse / self.outside_count) if self.outside_count else PSNR_IDENTICAL

    @property
    def db(self) -> float:
        """The score searched on: PSNR of the mean of the two regions' mean squared errors, capped at 100 dB."""
        box = self.box_sse / max(1, self.box_count)
        outside = self.outside_sse / self.outside_count if self.outside_count else 0.0
        return psnr((box + outside) / 2)

    @property
    def identical(self) -> bool:
        return self.box_sse == 0 and self.outside_sse == 0

    def explained(self, noise_floor_db: float) -> bool:
        return self.identical or min(self.box_db, self.outside_db) >= noise_floor_db

    def __add__(self, other: Score) -> Score:
        return Score(self.box_sse + other.box_sse, self.box_count + other.box_count, self.outside_sse + other.outside_sse,
                     self.outside_count + other.outside_count)

    def describe(self) -> str:
        return f"crop box {_db(self.box_db)}, outside it {_db(self.outside_db)}"


def _db(value: float) -> str:
    return "identical" if value >= PSNR_IDENTICAL else f"{value:.1f} dB"


def frame_score(candidate: np.ndarray, simulated: np.ndarray, box: Box) -> Score:
    if candidate.shape != simulated.shape:
        raise ParityError(f"candidate frame is {candidate.shape}, the simulation {simulated.shape}")
    xmin, ymin, xmax, ymax = box
    total = float(cv2.norm(candidate, simulated, cv2.NORM_L2SQR))
    inside = float(cv2.norm(candidate[ymin:ymax, xmin:xmax], simulated[ymin:ymax, xmin:xmax], cv2.NORM_L2SQR))
    box_count = (ymax - ymin) * (xmax - xmin) * candidate.shape[2]
    return Score(inside, box_count, max(0.0, total - inside), candidate.size - box_count)


def _sum(scores: Iterable[Score]) -> Score:
    total = Score(0.0, 0, 0.0, 0)
    for s in scores:
        total = total + s
    return total


# ----- the explanation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Specificity:
    """Whether a hypothesis makes the change the candidate shows, where it acts: over the pixels it changes (`d`, the
    simulation with it minus the one without), the candidate's difference from the one without (`r`) regressed on `d`
    gives `alpha` per sampled frame (1: the candidate carries exactly the predicted change; 0: none of it); `share` is
    the part of the error there that it removes, `residual_db` the PSNR left there."""

    alphas: tuple[float | None, ...]  # per sampled frame; None where it changes nothing
    share: float
    residual_db: float
    holding: int  # sampled frames whose alpha is in the band
    acting: int  # sampled frames it changes

    @property
    def holds(self) -> bool:
        """The predicted change is in the candidate on most frames it acts on (three quarters, rounded up)."""
        return self.acting > 0 and self.holding * 4 >= self.acting * 3

    def describe(self) -> str:
        shown = ", ".join("-" if a is None else f"{a:.2f}" for a in self.alphas)
        return (f"the candidate carries {shown} of the predicted change on the sampled frames (1 = all of it); it removes "
                f"{self.share:.0%} of the error where it acts, leaving {_db(self.residual_db)} there")


@dataclass(frozen=True)
class Finding:
    """An accepted hypothesis, with the score before and after it was applied.

    `status` "named": its evidence is specific (the candidate carries the change it predicts on most sampled frames, and
    what it leaves where it acts is at the noise floor, or under a tenth of the error there); "partial": it improves
    the score, but something else is wrong where it acts, so it is not named as the port's mistake."""

    hypothesis: Hypothesis
    before: Score
    after: Score
    evidence: str
    status: str = "named"
    explains: float | None = None  # share of the candidate's squared error (sampled frames, as-is) it removes
    specificity: Specificity | None = None

    @property
    def name(self) -> str:
        return self.hypothesis.name

    @property
    def mistake(self) -> Mistake:
        """The registered mistake found: its id (as the stage signatures name it) and the fix."""
        return self.hypothesis.registered


@dataclass(frozen=True)
class Registration:
    """The candidate's crop-box region aligned to the best simulation's (median over the sampled frames):
    candidate(W x) = simulation(x), W = scale about the box centre, then shift."""

    scale: tuple[float, float]  # x, y
    shift: tuple[float, float]  # of the box centre, px
    rotation_deg: float
    method: str  # "ecc-affine" or "phase-correlation"
    before_db: float
    after_db: float
    frames: int

    def describe(self) -> str:
        return (f"the candidate's crop box is the simulation's scaled by {self.scale[0]:.4f} x {self.scale[1]:.4f}, rotated {self.rotation_deg:.2f} deg, "
                f"and shifted by ({self.shift[0]:+.2f}, {self.shift[1]:+.2f}) px ({self.method}, {self.frames} frame(s)): aligning it raises the box "
                f"from {_db(self.before_db)} to {_db(self.after_db)}; a geometric mistake the catalogue does not hold")


@dataclass(frozen=True)
class Explanation:
    findings: tuple[Finding, ...]
    variant: Variant
    initial: Score  # candidate vs reference
    final: Score  # candidate vs the accepted variant
    per_frame: dict[int, Score]  # final, per sampled frame
    explained: bool
    noise_floor_db: float
    margin_db: float
    sample: tuple[int, ...]
    candidate_frame_count: int | None
    reference_frame_count: int
    simulated_frame_count: int
    unexplained: tuple[str, ...]
    registration: Registration | None
    evaluations: int  # variants scored
    unet_runs: int  # U-Net runs this explanation needed (not cached before)
    seconds: float

    partials: tuple[Finding, ...] = ()  # improved the score without the specific evidence: not named
    revisions: tuple[str, ...] = ()  # searched findings the revision replaced, why, with both scores (`_Rounds.revised`)
    revision_seconds: float = 0.0  # spent revising (0 when the greedy search explained the frames)

    @property
    def names(self) -> list[str]:
        """The named findings (specific evidence); partial ones are in `partials`."""
        return [f.name for f in self.findings if f.status == "named"]

    @property
    def unexplained_share(self) -> float:
        """The share of the candidate's squared error (sampled frames, as-is) no finding accounts for."""
        total = self.initial.box_sse + self.initial.outside_sse
        return (self.final.box_sse + self.final.outside_sse) / total if total else 0.0

    @property
    def identical(self) -> bool:
        return self.final.identical

    def summary(self) -> str:
        lines = [f"as-is against the reference: {self.initial.describe()} over frames {', '.join(map(str, self.sample))}"]
        if self.candidate_frame_count is not None:
            lines.append(f"frame count: candidate {self.candidate_frame_count}, reference {self.reference_frame_count}, "
                         f"explanation {self.simulated_frame_count}")
        if not self.findings:
            lines.append("no catalogued mistake applies" if self.explained else "no catalogued mistake explains the difference")
        for f in self.findings:
            share = f" (explains {f.explains:.0%} of the error)" if f.explains is not None else ""
            if f.status == "named":
                lines.append(f"- {f.name} ({f.mistake.id}, {f.hypothesis.category}){share}: {f.hypothesis.description}; {f.evidence}; fix: {f.mistake.fix}")
            else:
                lines.append(f"- partial, not named: {f.name}{share}: {f.hypothesis.description}; {f.evidence}; something else is wrong where it acts")
        for f in self.partials:
            lines.append(f"- partial, not named: {f.name}: {f.hypothesis.description} improves the score ({f.evidence}) but not as it predicts; "
                         "something else is wrong here")
        state = "explained" if self.explained else "not explained"
        lines.append(f"{state}: {self.final.describe()} (noise floor {self.noise_floor_db:g} dB); "
                     f"{self.unexplained_share:.0%} of the error left unexplained")
        lines.extend(f"unexplained: {u}" for u in self.unexplained)
        lines.extend(f"revised: {r}" for r in self.revisions)
        revising = f" ({self.revision_seconds:.1f} s revising)" if self.revision_seconds else ""
        lines.append(f"{self.evaluations} variants scored, {self.unet_runs} U-Net runs, {self.seconds:.1f} s{revising}")
        return "\n".join(lines)


class _Search:
    def __init__(self, simulator: Simulator, candidate: Mapping[int, np.ndarray], boxes: Mapping[int, Box], sample: Sequence[int]):
        self.simulator, self.candidate, self.boxes, self.sample = simulator, candidate, boxes, list(sample)
        self.evaluations = 0
        self._screen: int | None = None
        self._scores: dict[tuple[Variant, int], Score] = {}
        self._frames: dict[Variant, dict[int, np.ndarray]] = {}  # the few variants specificity compares (current ones)

    def frames(self, variant: Variant) -> dict[int, np.ndarray]:
        """The variant's sampled frames (kept for the last few variants asked for)."""
        if variant not in self._frames:
            if len(self._frames) >= 6:
                self._frames.pop(next(iter(self._frames)))
            self._frames[variant] = self.simulator.frames(variant, self.sample)
        return self._frames[variant]

    def specificity(self, without: Variant, with_: Variant) -> Specificity:
        """How specifically the candidate carries the change from `without` to `with_` (see `Specificity`)."""
        base, changed = self.frames(without), self.frames(with_)
        alphas: list[float | None] = []
        before = after = 0.0
        count = 0
        for i in self.sample:
            d = changed[i].astype(np.float32) - base[i]
            acts = any_channel(d != 0)
            if not acts.any():
                alphas.append(None)
                continue
            dm = d[acts]
            r = self.candidate[i][acts].astype(np.float32) - base[i][acts]
            alphas.append(float((r * dm).sum() / (dm * dm).sum()))
            before += float((r * r).sum())
            after += float(np.square(r - dm).sum())
            count += r.size
        acting = [a for a in alphas if a is not None]
        holding = sum(1 for a in acting if ALPHA_BAND[0] <= a <= ALPHA_BAND[1])
        share = 1.0 - after / before if before > 0 else 0.0
        return Specificity(tuple(alphas), share, psnr(after / max(1, count)), holding, len(acting))

    def screen_frame(self, per_frame: Mapping[int, Score], noise_floor_db: float) -> int:
        """The sampled frame hypotheses are screened on: the worst-explained one (it carries the most evidence),
        kept from round to round while it is unexplained, so that after a mistake past the network is accepted
        the next round's screening reuses the U-Net outputs of this one."""
        if self._screen is None or per_frame[self._screen].explained(noise_floor_db):
            self._screen = min(per_frame, key=lambda i: per_frame[i].db)
        return self._screen

    def score(self, variant: Variant, indices: Sequence[int] | None = None) -> dict[int, Score] | None:
        """Per-frame scores of the variant at `indices` (all sampled by default); None when it cannot make them."""
        indices = self.sample if indices is None else list(indices)
        if not self.simulator.makes(variant, indices):
            return None
        todo = [i for i in indices if (variant, i) not in self._scores]
        if todo:
            self.evaluations += 1
            for i, frame in self.simulator.frames(variant, todo).items():
                self._scores[(variant, i)] = frame_score(self.candidate[i], frame, self.boxes[i])
        return {i: self._scores[(variant, i)] for i in indices}


def explain(simulator: Simulator, candidate_frames: Mapping[int, np.ndarray], boxes: Mapping[int, Box] | None = None,
            sample: Sequence[int] | None = None, noise_floor_db: float = NOISE_FLOOR_DB, candidate_frame_count: int | None = None,
            margin_db: float = MARGIN_DB, max_rounds: int = 4, hypotheses: Sequence[Hypothesis] = HYPOTHESES, screen_top: int = SCREEN_TOP,
            register: bool = True, prior: Sequence[tuple[Hypothesis, str]] = ()) -> Explanation:
    """Which catalogued mistakes, applied to the reference, make the candidate's frames (greedy search).

    `candidate_frames`: output index -> BGR uint8 frame; `sample`: the indices to use (default: up to 4
    spread over the candidate's); `boxes`: index -> crop box to score inside (default: the reference's);
    `candidate_frame_count`: how many frames the candidate made, when known; `prior`: mistakes other
    evidence already established, with that evidence (e.g. the JPEG quality in the files' own tables):
    applied first, so the search judges the rest against frames made the same way.
    """
    began = time.perf_counter()
    runs_before = simulator.unet_runs
    reference = Variant()
    reference_count = simulator.frame_count(reference)
    sample = _sample(candidate_frames, sample)
    limit = min(reference_count, candidate_frame_count or reference_count)
    if max(sample) >= limit:
        raise ParityError(f"sampled frame {max(sample)} is outside the {limit} frames both the reference and the candidate make; sample earlier frames")
    width, height = simulator.dataset.frame_size
    for i in sample:
        shape = np.shape(candidate_frames[i])
        if shape != (height, width, 3):
            raise ParityError(f"candidate frame {i} is {shape}, the templates are {(height, width, 3)}: a frame of another size cannot be simulated")
    frames_in = {i: np.ascontiguousarray(candidate_frames[i], dtype=np.uint8) for i in sample}
    boxes = {i: simulator.box(reference, i) for i in sample} if boxes is None else {i: tuple(boxes[i]) for i in sample}  # type: ignore[misc]
    search = _Search(simulator, frames_in, boxes, sample)

    current = reference
    per_frame = search.score(current)
    assert per_frame is not None
    initial = current_score = _sum(per_frame.values())
    findings: list[Finding] = []
    used: set[str] = set()
    unexplained: list[str] = []
    count_locked = candidate_frame_count is not None  # a pipeline that makes another number of frames is not the candidate's

    def accept(h: Hypothesis, variant: Variant, scores: dict[int, Score], extra: str = "") -> None:
        nonlocal current, current_score, per_frame
        after = _sum(scores.values())
        findings.append(Finding(h, current_score, after, extra + _evidence(current_score, after)))
        current, current_score, per_frame = variant, after, scores
        used.update(h.fields)

    # frame count first: a front-end mistake whose count matches the candidate's names itself
    if candidate_frame_count is not None and candidate_frame_count != reference_count:
        count_locked = True
        matching = []
        changers = [h for h in hypotheses if h.fields & COUNT_KNOBS]
        options: list[tuple[Hypothesis, ...]] = [(h,) for h in changers]
        options += [(a, b) for n, a in enumerate(changers) for b in changers[n + 1 :] if not a.fields & b.fields]
        for combo in options:
            variant = reference
            for h in combo:
                variant = h(variant)
            if simulator.frame_count(variant) == candidate_frame_count:
                scores = search.score(variant)
                if scores is not None:
                    matching.append((_sum(scores.values()).db, combo, variant, scores))
        if matching:
            matching.sort(key=lambda m: -m[0])
            combo = matching[0][1]
            for h in combo:
                partial = h(current)
                part_scores = search.score(partial)
                assert part_scores is not None  # each count mistake only removes frames: alone it makes the pair's sampled frames too
                count_note = (f"makes {simulator.frame_count(partial)} frames (the reference {reference_count}, the candidate "
                              f"{candidate_frame_count}); ")
                if _sum(part_scores.values()).db - current_score.db < margin_db:
                    count_note += (f"named by the count alone: the frames change by under {margin_db:g} dB, so they cannot tell it from "
                                   "frames dropped at the tail; ")
                accept(h, partial, part_scores, count_note)
        else:
            unexplained.append(f"frame count: the candidate makes {candidate_frame_count} frames, the reference {reference_count}, "
                               "and no catalogued front-end mistake (or pair) makes that many")

    for h, why in prior:
        if h.fields & used:
            continue
        scores = search.score(h(current))
        if scores is not None:
            accept(h, h(current), scores, f"{why}; ")

    established = {f.name for f in findings}  # by the frame count or by other evidence: not searched, so not re-judged
    start = _Path(list(findings), current, current_score, dict(per_frame), frozenset(used))
    search_rounds = _Rounds(search, hypotheses, count_locked, margin_db, noise_floor_db, screen_top, established, initial)
    searched = search_rounds.greedy(start, max_rounds)
    result = search_rounds.finished(searched)
    revisions: list[str] = []
    revision_seconds = 0.0
    if not result.score.explained(noise_floor_db) and len(searched.findings) > len(start.findings):
        revision_began = time.perf_counter()
        result, revisions = search_rounds.revised(start, searched, result, max_rounds)
        revision_seconds = time.perf_counter() - revision_began
    findings, current, current_score, per_frame = result.findings, result.variant, result.score, result.per_frame
    partials = result.partials

    explained = current_score.explained(noise_floor_db)
    registration = None
    if not explained:
        if current_score.box_db < noise_floor_db:
            unexplained.append(f"inside the crop box: {_db(current_score.box_db)} against the best simulation, below the {noise_floor_db:g} dB floor")
        if current_score.outside_db < noise_floor_db:
            unexplained.append(f"outside the crop box: {_db(current_score.outside_db)} against the best simulation, below the {noise_floor_db:g} dB floor")
        if register and current_score.box_db < noise_floor_db:
            registration = _register(simulator, current, frames_in, boxes, sample, margin_db)
            if registration is not None:
                unexplained.append(registration.describe())
    return Explanation(
        findings=tuple(findings), variant=current, initial=initial, final=current_score, per_frame=dict(per_frame), explained=explained,
        noise_floor_db=noise_floor_db, margin_db=margin_db, sample=tuple(sample), candidate_frame_count=candidate_frame_count,
        reference_frame_count=reference_count, simulated_frame_count=simulator.frame_count(current), unexplained=tuple(unexplained),
        registration=registration, evaluations=search.evaluations, unet_runs=simulator.unet_runs - runs_before, seconds=time.perf_counter() - began,
        partials=tuple(partials.values()), revisions=tuple(revisions), revision_seconds=revision_seconds,
    )


MAX_REVISIONS = 2  # searched findings the revision may drop, each a new search (U-Net runs on the sampled frames)


@dataclass(frozen=True)
class _Path:
    """A search's state: the findings accepted in order, the variant they make and its scores, the knobs they turned, and
    the hypotheses that helped without the specific evidence (partial)."""

    findings: list[Finding]
    variant: Variant
    score: Score
    per_frame: dict[int, Score]
    used: frozenset[str]
    partials: dict[str, Finding] = field(default_factory=dict)

    def accepted(self, h: Hypothesis, variant: Variant, scores: dict[int, Score], extra: str = "") -> _Path:
        after = _sum(scores.values())
        return _Path([*self.findings, Finding(h, self.score, after, extra + _evidence(self.score, after))], variant, after, scores,
                     self.used | h.fields, self.partials)


@dataclass
class _Rounds:
    """The search after the established findings: greedy rounds, the accepted findings fitted and judged, and the revision
    of a greedy result that does not explain the frames."""

    search: _Search
    hypotheses: Sequence[Hypothesis]
    count_locked: bool
    margin_db: float
    noise_floor_db: float
    screen_top: int
    established: set[str]
    initial: Score

    def greedy(self, start: _Path, rounds: int, excluded: Collection[str] = ()) -> _Path:
        """Each round the hypothesis that raises the score most by the margin and carries its predicted change (none
        of `excluded`), accepted; partial ones recorded and not tried again (`revised` may go back on an accepted one)."""
        path = start
        partials: dict[str, Finding] = {}
        for _ in range(rounds):
            if path.score.explained(self.noise_floor_db):
                break
            choices = _round(self.search, path.variant, path.score, path.per_frame, self.hypotheses, set(path.used), self.count_locked, self.margin_db,
                             self.noise_floor_db, self.screen_top, set(partials) | set(excluded))
            taken = False
            for h, variant, scores in choices:
                specificity = self.search.specificity(path.variant, variant)
                if specificity.holds:
                    path = path.accepted(h, variant, scores, _fit_note(h, self.hypotheses))
                    taken = True
                    break
                after = _sum(scores.values())
                partials[h.name] = Finding(h, path.score, after, f"{_evidence(path.score, after)}; {specificity.describe()}", "partial",
                                           specificity=specificity)
            if not taken:
                break
        return replace(path, partials=partials)

    def finished(self, path: _Path) -> _Path:
        """The path's findings fitted (`_fit`) and judged with all the others applied (`_judged`)."""
        findings, variant, per_frame = path.findings, path.variant, path.per_frame
        if findings:
            findings, variant = _fit(self.search, findings, variant)
            per_frame = self.search.score(variant) or per_frame
        findings = _judged(self.search, findings, self.established, self.initial, self.noise_floor_db)
        return replace(path, findings=findings, variant=variant, score=_sum(per_frame.values()), per_frame=per_frame)

    def revised(self, start: _Path, searched: _Path, greedy: _Path, max_rounds: int) -> tuple[_Path, list[str]]:
        """A greedy result that does not explain the frames, revised: for each of the first `MAX_REVISIONS` searched findings,
        the search goes back to the findings accepted before it and searches again with it (its whole family, for a fitted
        one) excluded; the findings accepted after it are searched again too, since their evidence was measured on top of
        it. An alternative replaces the greedy result only when every finding it holds is named (specific) and it explains
        the frames, or raises the score by the margin without making any sampled frame worse by more than the margin; of
        several, the first that explains, else the best. Returns the result kept and, for a replacement, why (both scores)."""
        kept: list[tuple[_Path, int, Hypothesis]] = []
        for n in range(len(start.findings), min(len(searched.findings), len(start.findings) + MAX_REVISIONS)):
            dropped = searched.findings[n].hypothesis
            accepted_before = searched.findings[len(start.findings) : n]
            variant = start.variant
            for f in accepted_before:
                variant = f.hypothesis(variant)
            per_frame = self.search.score(variant)
            assert per_frame is not None  # scored when the greedy search accepted these findings
            before = _Path(searched.findings[:n], variant, _sum(per_frame.values()), per_frame,
                           start.used.union(*(f.hypothesis.fields for f in accepted_before)))
            excluded = {h.name for h in self.hypotheses if h.name == dropped.name or (dropped.family is not None and h.family == dropped.family)}
            alternative = self.finished(self.greedy(before, max_rounds - len(accepted_before), excluded))
            explained = alternative.score.explained(self.noise_floor_db)
            better = (alternative.score.db >= greedy.score.db + self.margin_db
                      and all(alternative.per_frame[i].db >= greedy.per_frame[i].db - self.margin_db for i in greedy.per_frame))
            if all(f.status == "named" for f in alternative.findings) and (explained or better):
                kept.append((alternative, n, dropped))
                if explained:
                    break
        if not kept:
            return greedy, []
        alternative, n, dropped = max(kept, key=lambda k: (k[0].score.explained(self.noise_floor_db), k[0].score.db))
        state = "explained" if alternative.score.explained(self.noise_floor_db) else "not explained"
        note = (f"{', '.join(f.name for f in greedy.findings[n:])} replaced by {', '.join(f.name for f in alternative.findings[n:]) or 'nothing'}: "
                f"the greedy search's findings leave {greedy.score.describe()} (not explained); searched again without "
                f"{dropped.family or dropped.name}, every finding is named and the frames are at {alternative.score.describe()} ({state}, "
                f"noise floor {self.noise_floor_db:g} dB)")
        return alternative, [note]


def _fit(search: _Search, findings: list[Finding], current: Variant) -> tuple[list[Finding], Variant]:
    """Integer knobs of accepted findings (`FITTED`: the feather's width) fitted to the candidate: a descent in steps of 8,
    4, 2 and 1 from the catalogued start; the finding then names the fitted value."""
    fitted = []
    for f in findings:
        knobs = [knob for knob in f.hypothesis.fields if knob in FITTED]
        for knob in knobs:
            low, high = FITTED[knob]
            value = start = current.knobs()[knob]
            scores = search.score(current)
            assert scores is not None
            best = _sum(scores.values()).db
            for step in (8, 4, 2, 1):
                moved = True
                while moved:
                    moved = False
                    for trial in (value - step, value + step):
                        if low <= trial <= high:
                            trial_scores = search.score(current.with_knobs({knob: trial}))
                            if trial_scores is not None and _sum(trial_scores.values()).db > best:
                                best, value, moved = _sum(trial_scores.values()).db, trial, True
            if value != start:
                current = current.with_knobs({knob: value})
                changes = tuple((name, value if name == knob else old) for name, old in f.hypothesis.changes)
                h = f.hypothesis
                description = h.description.replace(f" {start} px", f" {value} px") + f" (fitted: {value} px; {h.name} was the start)"
                after = search.score(current)
                assert after is not None
                f = replace(f, hypothesis=Hypothesis(f"{h.name.rsplit('_', 1)[0]}_{value}", description, h.category, changes, h.mistake),
                            after=_sum(after.values()), evidence=_evidence(f.before, _sum(after.values())))
        fitted.append(f)
    return fitted, current


def _judged(search: _Search, findings: list[Finding], established: set[str], initial: Score, noise_floor_db: float) -> list[Finding]:
    """Each accepted finding judged with all the others applied: the final variant against the final variant without it.
    Named when the candidate carries its change on most frames and what it leaves where it acts is at the noise floor
    (or under a tenth of the error there); otherwise partial. `explains`: the share of the as-is error it removes."""
    if not findings:
        return findings
    final = findings[-1]
    variant = Variant()
    for f in findings:
        variant = f.hypothesis(variant)
    total = initial.box_sse + initial.outside_sse
    after = final.after.box_sse + final.after.outside_sse
    original = Variant().knobs()
    judged = []
    for f in findings:
        without = variant.with_knobs({name: original[name] for name in f.hypothesis.fields})
        scores = search.score(without) if without != variant else None
        explains = None
        if scores is not None and total > 0:
            left = _sum(scores.values())
            explains = max(0.0, (left.box_sse + left.outside_sse - after) / total)
        if f.name in established or scores is None:
            judged.append(replace(f, explains=explains))
            continue
        specificity = search.specificity(without, variant)
        enough = PRECISION_SHARE if f.hypothesis.fields & PRECISION_KNOBS else 1 - RESIDUAL_SHARE
        named = specificity.holds and (specificity.residual_db >= noise_floor_db or specificity.share >= enough)
        evidence = f.evidence if named else f"{f.evidence}; {specificity.describe()}"
        judged.append(replace(f, status="named" if named else "partial", explains=explains, specificity=specificity, evidence=evidence))
    return judged


def _round(search: _Search, current: Variant, current_score: Score, per_frame: dict[int, Score], hypotheses: Sequence[Hypothesis], used: set[str],
           count_locked: bool, margin_db: float, noise_floor_db: float, screen_top: int,
           rejected: Collection[str] = ()) -> list[tuple[Hypothesis, Variant, dict[int, Score]]]:
    """The hypotheses on top of `current` that improve the score by the margin, best first (none rejected before)."""
    simulator = search.simulator
    count = simulator.frame_count(current)
    options = []
    for h in hypotheses:
        if h.fields & used or h.name in rejected:
            continue
        variant = h(current)
        if variant == current or (count_locked and simulator.frame_count(variant) != count):
            continue
        options.append((h, variant))

    scored: list[tuple[Hypothesis, Variant, dict[int, Score]]] = []
    for h, variant in options:
        if h.after_network:
            scores = search.score(variant)
            if scores is not None:
                scored.append((h, variant, scores))
    best_after = max(scored, key=lambda s: _sum(s[2].values()).db, default=None)
    if best_after is None or not _sum(best_after[2].values()).explained(noise_floor_db):
        worst = search.screen_frame(per_frame, noise_floor_db)
        simulator.prefetch((variant, [worst]) for h, variant in options if not h.after_network)
        screened = []
        for h, variant in options:
            if h.after_network:
                continue
            scores = search.score(variant, [worst])
            if scores is not None and scores[worst].db >= per_frame[worst].db + margin_db:
                screened.append((scores[worst].db, h, variant))
        screened.sort(key=lambda s: -s[0])
        chosen = _best_of_each_family(screened, screen_top, margin_db)
        simulator.prefetch((variant, search.sample) for _, _, variant in chosen)
        for _, h, variant in chosen:
            scores = search.score(variant)
            if scores is not None:
                scored.append((h, variant, scores))
    good = [(h, variant, scores) for h, variant, scores in scored
            if _sum(scores.values()).db >= current_score.db + margin_db and all(scores[i].db >= per_frame[i].db - margin_db for i in per_frame)]
    return sorted(good, key=lambda s: -_sum(s[2].values()).db)


def _best_of_each_family(screened: list[tuple[float, Hypothesis, Variant]], top: int, margin_db: float) -> list[tuple[float, Hypothesis, Variant]]:
    """The `top` best screened hypotheses, a fitted family (`fitted`) counting as one: its values within `margin_db`
    of its best on the screened frame all go on, to be told apart on every sampled frame (a frame where the mouth is
    shut or wide open whatever the shift does ties several values of it): the fit."""
    groups: list[list[tuple[float, Hypothesis, Variant]]] = []
    families: dict[str, list[tuple[float, Hypothesis, Variant]]] = {}
    for item in screened:
        family = item[1].family
        if family is None:
            groups.append([item])
        elif family not in families:
            families[family] = [item]
            groups.append(families[family])
        elif item[0] >= families[family][0][0] - margin_db:
            families[family].append(item)
    return [item for group in groups[:top] for item in group]


def _fit_note(h: Hypothesis, hypotheses: Sequence[Hypothesis]) -> str:
    """"fitted audio_window.shift = +2 (searched +1, -1, ...); " for a family's value, else ""."""
    if h.family is None:
        return ""
    knob, value = h.changes[0]
    values = [other.changes[0][1] for other in hypotheses if other.family == h.family]
    shown = ", ".join(f"{v:+d}" if isinstance(v, int) and h.family == "audio_shift" else str(v) for v in values)
    return f"fitted {knob} = {value:+d} (searched {shown}); " if h.family == "audio_shift" else f"fitted {knob} = {value} (searched {shown}); "


def _evidence(before: Score, after: Score) -> str:
    parts = []
    if after.box_db != before.box_db:
        parts.append(f"explains the crop box: {_db(after.box_db)} simulated vs {_db(before.box_db)} as-is")
    if after.outside_db != before.outside_db:
        parts.append(f"outside the box: {_db(after.outside_db)} simulated vs {_db(before.outside_db)} as-is")
    return "; ".join(parts) or "no change in score"


def evidence_sample(mouth_db: Mapping[int, float], count: int = 4) -> list[int]:
    """Which frames to simulate: `count` frames spread over the clip, each the one of its share of the clip (consecutive
    spans) whose mouth box differs most from the reference's (`mouth_db`: frame -> the mouth box's PSNR against the
    reference). A port's mistake acts on every frame alike, hence one frame from each part of the clip; but an
    audio-path mistake shows only where it moves the mouth (a mouth shut in a pause is shut whatever the audio path
    does, and the end padding reaches only the first and last frames), hence the frame of the span with the most
    evidence. A span identical to the reference gives its middle frame."""
    frames = sorted(mouth_db)
    if not frames:
        raise ParityError("no frames to sample for the simulation")
    picks = []
    for span in np.array_split(np.asarray(frames), min(count, len(frames))):
        middle = int(span[len(span) // 2])
        picks.append(int(min(span, key=lambda i: (mouth_db[int(i)], abs(int(i) - middle)))))
    return sorted(set(picks))


def _sample(candidate_frames: Mapping[int, np.ndarray], sample: Sequence[int] | None) -> list[int]:
    if not candidate_frames:
        raise ParityError("no candidate frames to explain")
    if sample is None:
        indices = sorted(candidate_frames)
        picks = np.linspace(0, len(indices) - 1, min(4, len(indices))).round().astype(int)
        return sorted({indices[p] for p in picks})
    sample = sorted({int(i) for i in sample})
    if not sample:
        raise ParityError("the sample of frames to explain is empty")
    absent = [i for i in sample if i not in candidate_frames]
    if absent:
        raise ParityError(f"sampled frame {absent[0]} is not among the candidate frames given")
    return sample


# ----- registration fallback ---------------------------------------------------------------------------


def _register(simulator: Simulator, variant: Variant, candidate: Mapping[int, np.ndarray], boxes: Mapping[int, Box], sample: Sequence[int],
              margin_db: float) -> Registration | None:
    """Align each sampled frame's candidate box to the simulation's; the median transform when aligning helps by the margin."""
    simulated = simulator.frames(variant, sample)
    found = []
    before = after = Score(0.0, 0, 0.0, 0)
    for i in sample:
        xmin, ymin, xmax, ymax = boxes[i]
        cand = candidate[i][ymin:ymax, xmin:xmax]
        sim = np.ascontiguousarray(simulated[i][ymin:ymax, xmin:xmax])
        result = _align(cand, sim)
        if result is None:
            continue
        warp, method = result
        aligned = cv2.warpAffine(cand, warp, (xmax - xmin, ymax - ymin), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
        border = max(2, (xmax - xmin) // 20)  # the warp's edge pixels are extrapolated: leave them out of both scores
        inner = (slice(border, -border), slice(border, -border))
        n = aligned[inner].size
        before = before + Score(float(cv2.norm(np.ascontiguousarray(cand[inner]), np.ascontiguousarray(sim[inner]), cv2.NORM_L2SQR)), n, 0.0, 0)
        after = after + Score(float(cv2.norm(np.ascontiguousarray(aligned[inner]), np.ascontiguousarray(sim[inner]), cv2.NORM_L2SQR)), n, 0.0, 0)
        found.append((warp, method, (xmax - xmin) / 2, (ymax - ymin) / 2))
    if not found or after.box_db < before.box_db + margin_db:
        return None
    scales_x, scales_y, rotations, shifts_x, shifts_y = [], [], [], [], []
    for warp, _, cx, cy in found:
        a = warp[:, :2].astype(np.float64)
        scales_x.append(float(np.hypot(a[0, 0], a[1, 0])))
        scales_y.append(float(np.hypot(a[0, 1], a[1, 1])))
        rotations.append(float(np.degrees(np.arctan2(a[1, 0], a[0, 0]))))
        centre = a @ np.array([cx, cy]) + warp[:, 2]
        shifts_x.append(float(centre[0] - cx))
        shifts_y.append(float(centre[1] - cy))
    methods = {m for _, m, _, _ in found}
    return Registration(
        scale=(float(np.median(scales_x)), float(np.median(scales_y))), shift=(float(np.median(shifts_x)), float(np.median(shifts_y))),
        rotation_deg=float(np.median(rotations)), method="ecc-affine" if methods == {"ecc-affine"} else "/".join(sorted(methods)),
        before_db=before.box_db, after_db=after.box_db, frames=len(found),
    )


def _align(candidate: np.ndarray, simulated: np.ndarray) -> tuple[np.ndarray, str] | None:
    """The 2 x 3 warp W with candidate(W x) ~ simulated(x): ECC affine, else a phase-correlation shift."""
    cand = cv2.cvtColor(candidate, cv2.COLOR_BGR2GRAY).astype(np.float32)
    sim = cv2.cvtColor(simulated, cv2.COLOR_BGR2GRAY).astype(np.float32)
    warp = np.eye(2, 3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 200, 1e-6)
    try:
        _, found = cv2.findTransformECC(sim, cand, warp, cv2.MOTION_AFFINE, criteria, None, 5)  # type: ignore[call-overload]
        return np.asarray(found, dtype=np.float32), "ecc-affine"
    except cv2.error:
        pass
    window = cv2.createHanningWindow(sim.shape[::-1], cv2.CV_32F)
    (dx, dy), response = cv2.phaseCorrelate(sim, cand, window)
    if response < 0.05:
        return None
    return np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float32), "phase-correlation"
