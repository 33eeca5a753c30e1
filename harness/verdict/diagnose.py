"""Named diagnoses of known port mistakes, from a comparison's failures and the two dumps.

Each detector looks only at stages that failed their gate, reads a few frames, and returns a
`Diagnosis` saying what is wrong and where to look, or nothing. A clean candidate gets none.
The names are ids of the mistake registry (`mistakes.py`), which the simulation of a port's
output frames names its findings by too.

| name | signature |
|---|---|
| `wrong_frame_count` | manifest frame counts differ |
| `fp16_overflow` | NaN/Inf in a stage, or values piled up at 0/1 (U-Net output) or at +-65504 |
| `channels_swapped` | crop or U-Net input equals the reference with channels reversed (RGB instead of BGR) |
| `channels_swapped_at_paste` | mouth / pasted region / output equal the reference channel-reversed where they differ |
| `wrong_input_scaling` | U-Net input equals the reference x 255 (no /255) or x 2 - 1 (-1..1) |
| `mask_rectangle_off` | real half of the U-Net input matches; the black rectangle of the masked half is elsewhere |
| `template_off_by_one` | template index = reference +-1 |
| `landmark_off_by_one` | crop box = the reference box of the neighbouring template |
| `crop_box_wrong_frame` | crop box = the box of another (not neighbouring) frame, or one box for every frame |
| `resize_not_bicubic` | crop: statistical (duplicated rows/columns = nearest; less Laplacian energy = bilinear); pasted region: exact re-resize of the reference crop + mouth with nearest/bilinear |
| `rounding_not_truncation` | mouth - reference mouth in {0, +1}, many +1 (= round(x * 255)) |
| `ghost_audio` | features or U-Net audio windows all zero or the same for every row/frame |
| `audio_shifted` | features / audio window rows equal the reference's shifted by one row |
| `audio_dropped` | fewer feature rows: unpadded (first/last row not repeated) or cut |
| `random_weights` | network output far off (PSNR < 20 dB / cosine < 0.9) while its inputs pass |
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from ...reference.frames import INNER, INTERPOLATION, MASK_RECT
from ...reference.stages import STAGE_NAMES
from .metrics import any_channel
from .mistakes import diagnosis
from .types import Comparison, Diagnosis

if TYPE_CHECKING:
    from .dump import Dump

SAMPLE_FRAMES = 4
FP16_MAX = 65504.0
FAR_PSNR = 20.0
FAR_COSINE = 0.9


def diagnose(comparison: Comparison, reference: Dump, candidate: Dump) -> list[Diagnosis]:
    """Every diagnosis whose signature is present, in stage order."""
    context = _Context(comparison, reference, candidate)
    found = []
    for detector in DETECTORS:
        result = detector(context)
        if result is not None:
            found.append(result)
    explained = {d.stage for d in found if d.name != "random_weights"}
    found = [d for d in found if d.name != "random_weights" or d.stage not in explained]  # the specific cause wins
    order = {name: i for i, name in enumerate((*STAGE_NAMES, "video"))}
    return sorted(found, key=lambda d: order.get(d.stage, -1))


class _Context:
    def __init__(self, comparison: Comparison, reference: Dump, candidate: Dump):
        self.comparison, self.reference, self.candidate = comparison, reference, candidate

    def metrics(self, stage: str):
        return self.comparison.stage(stage)

    def failed(self, stage: str) -> bool:
        metrics = self.metrics(stage)
        return metrics is not None and metrics.status == "compared" and not metrics.passed

    def passed(self, stage: str) -> bool:
        metrics = self.metrics(stage)
        return metrics is not None and metrics.status == "compared" and metrics.passed

    def compared(self, stage: str) -> bool:
        metrics = self.metrics(stage)
        return metrics is not None and metrics.status == "compared" and metrics.max_abs is not None

    def frames(self, stage: str, count: int = SAMPLE_FRAMES) -> list[int]:
        metrics = self.metrics(stage)
        frames = metrics.per_frame.frames if metrics and metrics.per_frame else []
        differing = [f for f, m in zip(frames, metrics.per_frame.max_abs) if m > 0] if metrics and metrics.per_frame else []
        return (differing or frames)[:count]

    def pairs(self, stage: str, count: int = SAMPLE_FRAMES):
        for frame in self.frames(stage, count):
            yield frame, self.reference.frame(stage, frame).astype(np.float64), self.candidate.frame(stage, frame).astype(np.float64)

    def tolerance(self, stage: str, fallback: float = 1e-4) -> float:
        metrics = self.metrics(stage)
        return max(fallback, (metrics.tolerance or {}).get("max_abs", fallback)) if metrics else fallback


def _wrong_frame_count(c: _Context) -> Diagnosis | None:
    ref, cand = c.reference.frame_count, c.candidate.frame_count
    if ref == cand:
        return None
    hint = ""
    if cand == ref - 2:
        hint = " — exactly 2 fewer: the features were not padded (repeat the first and last row once: N windows make N + 2 frames)"
    elif cand < ref:
        hint = " — the video must have one frame per padded feature row (N + 2 for N encoder windows)"
    return diagnosis("wrong_frame_count", "video", f"the candidate makes {cand} output frames, the reference {ref}{hint}")


def _fp16_overflow(c: _Context) -> Diagnosis | None:
    for metrics in c.comparison.stages:
        if metrics.nan or metrics.inf:
            return diagnosis(
                "fp16_overflow", metrics.stage,
                f"{metrics.stage} holds {metrics.nan} NaN and {metrics.inf} Inf values: an activation overflowed "
                f"(fp16 holds at most +-{FP16_MAX:g}); run the overflowing layers in fp32 (keep_io_types / mixed precision), "
                "or, in an fp32 run, look for uninitialised buffers",
            )
    if c.failed("audio.features") and c.compared("audio.features"):
        features = c.candidate.clip("audio.features")
        if np.any(np.abs(features) >= FP16_MAX):
            return diagnosis("fp16_overflow", "audio.features", f"audio.features saturate at +-{FP16_MAX:g}: the encoder overflows fp16")
    if c.failed("frame.unet_output") and c.compared("frame.unet_output"):
        saturated = values = 0
        for _, ref, cand in c.pairs("frame.unet_output"):
            # pinned at 0 or 1 where the reference is not near it (fp16 rounding alone pins only values within 5e-4)
            saturated += int(np.count_nonzero(((cand <= 0) & (ref > 0.01)) | ((cand >= 1) & (ref < 0.99))))
            values += cand.size
        if values and saturated / values > 0.01:
            return diagnosis(
                "fp16_overflow", "frame.unet_output",
                f"{saturated / values:.1%} of U-Net output values sit at exactly 0 or 1 where the reference does not: the output "
                "saturates, as when fp16 activations overflow (or clamp at +-65504) before the sigmoid; keep those layers in fp32",
            )
    return None


def _channels_swapped(c: _Context) -> Diagnosis | None:
    checks = (
        ("frame.crop_328", lambda a: a[..., ::-1], 1.0,
         "the crop is RGB: the frame was decoded or converted to RGB; the pipeline works in OpenCV's BGR"),
        ("frame.unet_input", lambda a: a[[2, 1, 0, 5, 4, 3]], 1 / 255 + 1e-6,
         "the U-Net input channels are RGB; the network expects BGR (cv2 order) for both the real and the masked half"),
    )
    for stage, swap, tolerance, message in checks:
        if not c.failed(stage) or not c.compared(stage):
            continue
        matches = [np.max(np.abs(swap(cand) - ref)) <= tolerance for _, ref, cand in c.pairs(stage)]
        if matches and all(matches):
            return diagnosis("channels_swapped", stage, f"{stage}: {message}")
    return None


def _channels_swapped_at_paste(c: _Context) -> Diagnosis | None:
    for stage in ("frame.mouth", "frame.pasted_region", "frame.output"):
        if not c.failed(stage) or not c.compared(stage):
            continue
        verdicts = []
        for _, ref, cand in c.pairs(stage):
            differs = any_channel(ref != cand)
            rows, cols = np.nonzero(differs.any(axis=1))[0], np.nonzero(differs.any(axis=0))[0]
            if not len(rows):
                continue
            box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
            direct = np.mean(np.abs(cand[box] - ref[box]))
            swapped = np.mean(np.abs(cand[box][..., ::-1] - ref[box]))
            verdicts.append(swapped < 0.25 * direct and swapped < 2.0)
        if verdicts and all(verdicts):
            return diagnosis(
                "channels_swapped_at_paste", stage,
                f"{stage} equals the reference with its colour channels reversed where it differs: the mouth is converted "
                "to RGB (or written in RGB order) before it is pasted; keep BGR from the U-Net output to the frame",
            )
        return None
    return None


def _wrong_input_scaling(c: _Context) -> Diagnosis | None:
    if not c.failed("frame.unet_input") or not c.compared("frame.unet_input"):
        return None
    for _, ref, cand in c.pairs("frame.unet_input", 1):
        if np.allclose(cand, ref * 255, atol=1.01):
            return diagnosis("wrong_input_scaling", "frame.unet_input",
                             f"the U-Net input ranges {cand.min():.3g}..{cand.max():.3g}, the reference 0..1: divide the crop by 255")
        if np.allclose(cand, ref * 2 - 1, atol=2 / 255 + 1e-6):
            return diagnosis("wrong_input_scaling", "frame.unet_input",
                             f"the U-Net input ranges {cand.min():.3g}..{cand.max():.3g} (normalized to -1..1); the reference is x / 255 in 0..1, no mean/std")
        if cand.max() > 1.5 or cand.min() < -0.01:
            return diagnosis("wrong_input_scaling", "frame.unet_input",
                             f"the U-Net input ranges {cand.min():.3g}..{cand.max():.3g}, the reference 0..1 (x / 255)")
    return None


def _mask_rectangle_off(c: _Context) -> Diagnosis | None:
    if not c.failed("frame.unet_input") or not c.compared("frame.unet_input"):
        return None
    tolerance = 1 / 255 + 1e-6
    x, y, w, h = MASK_RECT
    for _, ref, cand in c.pairs("frame.unet_input", 1):
        if np.max(np.abs(cand[:3] - ref[:3])) > tolerance or np.max(np.abs(cand[3:] - ref[3:])) <= tolerance:
            return None
        black = np.all(cand[3:] == 0, axis=0) & np.any(cand[:3] != 0, axis=0)
        rows, cols = np.nonzero(black.any(axis=1))[0], np.nonzero(black.any(axis=0))[0]
        found = f"rows {rows[0]}..{rows[-1]}, cols {cols[0]}..{cols[-1]}" if len(rows) else "no black rectangle"
        return diagnosis(
            "mask_rectangle_off", "frame.unet_input",
            f"the masked half of the U-Net input is black at {found}; the reference blacks out rows {y}..{y + h - 1}, "
            f"cols {x}..{x + w - 1} (cv2.rectangle(img, (x={x}, y={y}, w={w}, h={h})) on the 320 x 320 inner crop)",
        )
    return None


def _template_off_by_one(c: _Context) -> Diagnosis | None:
    if not c.failed("frame.template_index") or not c.compared("frame.template_index"):
        return None
    deltas = [int(cand - ref) for _, ref, cand in c.pairs("frame.template_index", 1000)]
    if deltas and all(abs(d) == 1 for d in deltas):
        sign = "+1" if sum(deltas) > 0 else "-1"
        return diagnosis(
            "template_off_by_one", "frame.template_index",
            f"the template index is the reference's {sign} on {len(deltas)} frames: follow the original ping-pong schedule "
            "(the first output frame uses template 1, see reference/dataset.py template_schedule)",
        )
    return None


def _crop_box_from_other_frame(c: _Context) -> Diagnosis | None:
    if not c.failed("frame.crop_box") or not c.compared("frame.crop_box") or c.failed("frame.template_index"):
        return None
    ref_frames = c.reference.frames("frame.crop_box")
    boxes = {i: tuple(int(v) for v in c.reference.frame("frame.crop_box", i)) for i in ref_frames}
    has_templates = "frame.template_index" in c.reference.stage_names
    templates = {i: int(c.reference.frame("frame.template_index", i)) for i in c.reference.frames("frame.template_index")} if has_templates else {}
    box_template = {box: templates.get(i, i) for i, box in boxes.items()}
    neighbours = others = 0
    candidate_boxes = []
    for frame, _, cand in c.pairs("frame.crop_box", 1000):
        box = tuple(int(v) for v in cand)
        candidate_boxes.append(box)
        if box in box_template:
            step = box_template[box] - templates.get(frame, frame)
            neighbours += abs(step) == 1
            others += abs(step) > 1
    all_boxes = [tuple(int(v) for v in c.candidate.frame("frame.crop_box", i)) for i in c.candidate.frames("frame.crop_box")]
    if len(all_boxes) > 1 and len(set(all_boxes)) == 1 and len(set(boxes.values())) > 1:
        return diagnosis("crop_box_wrong_frame", "frame.crop_box",
                         f"every frame uses the crop box {all_boxes[0]}: the box must come from each frame's own template's landmarks")
    if neighbours and neighbours >= others:
        return diagnosis(
            "landmark_off_by_one", "frame.crop_box",
            f"on {neighbours} frames the crop box is the reference box of the neighbouring template: the landmarks are read "
            "for template index +-1 (N.jpg pairs with N.lms; check 0/1-based numbering and start_frame)",
        )
    if others:
        return diagnosis("crop_box_wrong_frame", "frame.crop_box",
                         f"on {others} frames the crop box is the reference box of another frame: take the box of the frame's own template")
    return None


def _resize_not_bicubic(c: _Context) -> Diagnosis | None:
    if c.failed("frame.crop_328") and c.compared("frame.crop_328") and not c.failed("frame.crop_box"):
        return _crop_resize(c)
    if c.failed("frame.pasted_region") and c.compared("frame.pasted_region") and c.passed("frame.mouth"):
        return _paste_resize(c)
    return None


def _crop_resize(c: _Context) -> Diagnosis | None:
    duplicated, sharpness = [], []
    for _, ref, cand in c.pairs("frame.crop_328"):
        if np.mean(np.abs(cand[..., ::-1] - ref)) < np.mean(np.abs(cand - ref)):
            return None  # a channel swap, not a resize
        duplicated.append((_duplicated_lines(cand), _duplicated_lines(ref)))
        sharpness.append(_laplacian_energy(cand) / max(_laplacian_energy(ref), 1e-9))
    if not duplicated:
        return None
    cand_dup, ref_dup = float(np.mean([d[0] for d in duplicated])), float(np.mean([d[1] for d in duplicated]))
    if cand_dup > 0.15 and cand_dup > 5 * max(ref_dup, 0.01):
        return diagnosis(
            "resize_not_bicubic", "frame.crop_328",
            f"the crop looks resized with nearest-neighbour ({cand_dup:.0%} of adjacent rows/columns repeat, reference {ref_dup:.0%}; "
            "a statistical signature): use bicubic (cv2.INTER_CUBIC, a = -0.75)",
        )
    ratio = float(np.mean(sharpness))
    if ratio < 0.93:
        return diagnosis(
            "resize_not_bicubic", "frame.crop_328",
            f"the crop is smoother than the reference (Laplacian energy {ratio:.0%} of it; a statistical signature of "
            "bilinear resize): use bicubic (cv2.INTER_CUBIC, a = -0.75)",
        )
    return None


def _paste_resize(c: _Context) -> Diagnosis | None:
    needed = ("frame.crop_328", "frame.mouth", "frame.crop_box")
    if any(stage not in c.reference.stage_names for stage in needed):
        return None
    methods = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "bicubic": INTERPOLATION}
    for frame in c.frames("frame.pasted_region", 1):
        if any(frame not in c.reference.frames(stage) for stage in needed):
            return None
        crop = c.reference.frame("frame.crop_328", frame).copy()
        crop[INNER[0]:INNER[1], INNER[0]:INNER[1]] = c.reference.frame("frame.mouth", frame)
        xmin, ymin, xmax, ymax = (int(v) for v in c.reference.frame("frame.crop_box", frame))
        cand = c.candidate.frame("frame.pasted_region", frame).astype(np.float64)
        errors = {
            name: float(np.mean(np.abs(cv2.resize(crop, (xmax - xmin, ymax - ymin), interpolation=flag).astype(np.float64) - cand)))
            for name, flag in methods.items()
        }
        best = min(errors, key=lambda name: errors[name])
        if best != "bicubic" and errors[best] < 0.5 * errors["bicubic"]:
            return diagnosis(
                "resize_not_bicubic", "frame.pasted_region",
                f"the pasted region matches a {best} resize of the reference crop + mouth (mean |diff| {errors[best]:.3g} vs "
                f"{errors['bicubic']:.3g} for bicubic; an exact re-resize): resize back to the box with cv2.INTER_CUBIC",
            )
    return None


def _rounding_not_truncation(c: _Context) -> Diagnosis | None:
    if not c.failed("frame.mouth") or not c.compared("frame.mouth") or c.failed("frame.unet_output"):
        return None
    plus = total = 0
    for _, ref, cand in c.pairs("frame.mouth"):
        diff = cand - ref
        if np.any((diff != 0) & (diff != 1)):
            return None
        plus += int(np.count_nonzero(diff == 1))
        total += diff.size
    if total and plus / total > 0.05:
        return diagnosis(
            "rounding_not_truncation", "frame.mouth",
            f"the mouth is the reference + 1 on {plus / total:.1%} of values and never below it: the U-Net output is rounded; "
            "the reference truncates: (x * 255).astype(uint8), not round(x * 255)",
        )
    return None


def _ghost_audio(c: _Context) -> Diagnosis | None:
    if c.failed("audio.features") and c.compared("audio.features"):
        features = c.candidate.clip("audio.features")
        if not np.any(features) or np.all(features == features[:1]):
            what = "all zero" if not np.any(features) else "the same for every row"
            return diagnosis("ghost_audio", "audio.features",
                             f"the audio features are {what}: the mouth cannot follow the speech; check the encoder input (mel windows) and that its output is used")
    if c.failed("frame.unet_audio") and c.compared("frame.unet_audio"):
        frames = c.frames("frame.unet_audio", 1000)
        windows = [c.candidate.frame("frame.unet_audio", f) for f in frames]
        references = [c.reference.frame("frame.unet_audio", f) for f in frames]
        if not any(np.any(w) for w in windows) and any(np.any(r) for r in references):
            return diagnosis("ghost_audio", "frame.unet_audio",
                             "the U-Net audio input is all zeros (\"ghost audio\"): feed feature rows i-8..i+7 of the padded features for frame i")
        if len(windows) > 1 and all(np.array_equal(w, windows[0]) for w in windows) and not all(np.array_equal(r, references[0]) for r in references):
            return diagnosis("ghost_audio", "frame.unet_audio",
                             f"the U-Net audio input is the same for all {len(windows)} frames (\"ghost audio\"): the window must move with the frame index")
    return None


def _audio_shifted_or_dropped(c: _Context) -> Diagnosis | None:
    features = c.metrics("audio.features")
    if features is not None and c.failed("audio.features"):
        ref, cand = c.reference.clip("audio.features").astype(np.float64), c.candidate.clip("audio.features").astype(np.float64)
        tolerance = c.tolerance("audio.features")
        if cand.ndim == 2 and ref.ndim == 2 and cand.shape[1] == ref.shape[1]:
            if cand.shape == ref.shape:
                for shift in (1, -1):
                    if _shifted_equal(ref, cand, shift, tolerance):
                        return diagnosis("audio_shifted", "audio.features",
                                         f"audio feature row i is the reference's row i{-shift:+d}: the features are shifted by one frame; check the window start (int(80 * k / 25)) and the padding")
            elif len(cand) < len(ref):
                missing = len(ref) - len(cand)
                if missing == 2 and _close(cand, ref[1:-1], tolerance):
                    return diagnosis("audio_dropped", "audio.features",
                                     "the features are not padded: repeat the first and last row once (N windows -> N + 2 rows, one per output frame)")
                where = "end" if _close(cand, ref[: len(cand)], tolerance) else "start" if _close(cand, ref[missing:], tolerance) else None
                if where:
                    return diagnosis("audio_dropped", "audio.features",
                                     f"{missing} feature rows are missing at the {where}: encode every window (including the last, clamped ones) and pad")
    if c.failed("frame.unet_audio") and c.compared("frame.unet_audio"):
        tolerance = c.tolerance("frame.unet_audio")
        for shift in (1, -1):
            pairs = list(c.pairs("frame.unet_audio"))
            if pairs and all(_shifted_equal(ref.reshape(16, -1), cand.reshape(16, -1), shift, tolerance) for _, ref, cand in pairs):
                return diagnosis("audio_shifted", "frame.unet_audio",
                                 f"the U-Net audio window is the reference's shifted by one feature row ({-shift:+d}): frame i uses rows i-8..i+7 of the padded features")
    return None


def _random_weights(c: _Context) -> Diagnosis | None:
    unet = c.metrics("frame.unet_output")
    if unet is not None and c.failed("frame.unet_output") and unet.psnr is not None and c.passed("frame.unet_input") and not c.failed("frame.unet_audio"):
        cosine = _centred_cosine(c, "frame.unet_output")
        first = unet.per_frame.psnr[0] if unet.per_frame and unet.per_frame.psnr and unet.per_frame.psnr[0] is not None else unet.psnr
        if unet.psnr < FAR_PSNR and first < FAR_PSNR and cosine < FAR_COSINE:
            return diagnosis(
                "random_weights", "frame.unet_output",
                f"the U-Net output is far off from the first frame (PSNR {unet.psnr:.1f} dB, cosine {cosine:.2f}) while its inputs match: "
                "the U-Net weights are not loaded, random, or from another checkpoint (check load_state_dict's missing keys)",
            )
    features = c.metrics("audio.features")
    if (features is not None and c.failed("audio.features") and features.cosine is not None and c.passed("audio.windows")
            and features.cosine < FAR_COSINE):
            return diagnosis(
                "random_weights", "audio.features",
                f"the audio features are far off (cosine {features.cosine:.2f}) while the mel windows match: the audio encoder "
                "weights are not loaded or random (audio_visual_encoder.pth keys carry no 'audio_encoder.' prefix)",
            )
    return None


DETECTORS = (
    _wrong_frame_count,
    _fp16_overflow,
    _channels_swapped,
    _wrong_input_scaling,
    _mask_rectangle_off,
    _template_off_by_one,
    _crop_box_from_other_frame,
    _resize_not_bicubic,
    _rounding_not_truncation,
    _channels_swapped_at_paste,
    _ghost_audio,
    _audio_shifted_or_dropped,
    _random_weights,
)


def _shifted_equal(ref: np.ndarray, cand: np.ndarray, shift: int, tolerance: float) -> bool:
    """cand[i] == ref[i - shift] on the overlapping rows (and those rows are not all trivially equal)."""
    if shift > 0:
        a, b = cand[shift:], ref[:-shift]
    else:
        a, b = cand[:shift], ref[-shift:]
    if not np.any(a) or _close(cand, ref, tolerance):
        return False
    return _close(a, b, tolerance)


def _close(a: np.ndarray, b: np.ndarray, tolerance: float) -> bool:
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= tolerance))


def _centred_cosine(c: _Context, stage: str) -> float:
    values = []
    for _, ref, cand in c.pairs(stage):
        r, k = (ref - ref.mean()).ravel(), (cand - cand.mean()).ravel()
        norm = np.linalg.norm(r) * np.linalg.norm(k)
        values.append(float(np.dot(r, k) / norm) if norm > 0 else 0.0)
    return float(np.mean(values)) if values else 1.0


def _duplicated_lines(image: np.ndarray) -> float:
    rows = np.mean(np.all(image[1:] == image[:-1], axis=(1, 2)))
    cols = np.mean(np.all(image[:, 1:] == image[:, :-1], axis=(0, 2)))
    return float(max(rows, cols))


def _laplacian_energy(image: np.ndarray) -> float:
    gray = image.mean(axis=-1)
    laplacian = 4 * gray[1:-1, 1:-1] - gray[:-2, 1:-1] - gray[2:, 1:-1] - gray[1:-1, :-2] - gray[1:-1, 2:]
    return float(np.mean(np.abs(laplacian)))
