"""Compare two stage dumps stage by stage: coverage, metrics, gates, the first divergent stage, diagnoses.

    comparison = compare_dumps(reference_dump, candidate_dump, load_gate(None, "fp32"))
    if not comparison:
        print(comparison.first_divergent_stage, [s.failure for s in comparison.stages if not s.passed])

Coverage first: every stage of the reference is either compared, "missing" (a failure) or, where the
gate's `provides` allows it, "not provided" (skipped); a compared per-frame stage fails when any
frame the reference dumped is absent. Then, per stage, over the frames both hold (each metric as the
README's "Metrics" defines it and `metrics.py` computes it): max, mean and 99th percentile of |diff|; share of
identical elements (of identical pixels, all three channels, for images); PSNR (uint8 images, and the U-Net
output scaled to 0..255; at most 100 dB, which identical data gets; pooled over frames by summed squared errors); SSIM of each
image over the whole image (scikit-image, 7 x 7 window, channel mean; the stage reports the mean over
frames, independent of their order; for output frames of 0.3 MP or more, 32 spread evenly by index) and, for
`frame.output`, also over each frame's crop box (`ssim_crop`, every frame); cosine similarity per 512-value feature row (audio features, U-Net audio windows; the
mean over rows); NaN/Inf counts in the candidate (any fails the stage). The 99th percentile is exact
up to 5 M elements per stage, then read from a histogram (exact for uint8, 100 log bins per decade
for floats: within 2.3 %).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ParityError
from ...reference.stages import CLIP_STAGES, STAGE_NAMES
from .diagnose import diagnose
from .dump import IMAGE_STAGES, Dump
from .gates import Gate, Tolerance
from .metrics import Percentile99, SquaredError, abs_difference, identical_count, row_cosines, squared_error, ssim
from .types import Comparison, PerFrame, StageResult, WorstElement, WorstFrame, frame_runs

COSINE_STAGES = frozenset({"audio.features", "frame.unet_audio"})
PSNR_FLOAT_STAGES = frozenset({"frame.unet_output"})  # float in [0, 1]: PSNR on the 0..255 scale
SSIM_FRAMES = 32  # frames of 0.3 megapixels or more (output frames) whose whole-image SSIM is computed (spread evenly; the crop box's: every frame)
LARGE_IMAGE_PIXELS = 300_000  # output frames (720p: 0.92 MP), not crops or mouths (0.1 MP)


def compare_dumps(reference: Dump | str | os.PathLike, candidate: Dump | str | os.PathLike, gate: Gate) -> Comparison:
    """Compare every stage present in both dumps, in contract order; then run the diagnoses."""
    reference = reference if isinstance(reference, Dump) else Dump.open(reference)
    candidate = candidate if isinstance(candidate, Dump) else Dump.open(candidate)
    common = [name for name in STAGE_NAMES if name in reference.stage_names and name in candidate.stage_names]
    if not common:
        raise ParityError(
            f"{candidate.path}: no stage in common with the reference dump {reference.path} "
            f"(candidate has {', '.join(candidate.stage_names) or 'none'}; reference has {', '.join(reference.stage_names) or 'none'})"
        )
    if gate.provides is not None:
        absent = [name for name in gate.provides if name not in reference.stage_names]
        if absent:
            raise ParityError(f"{gate.file}: provides {', '.join(absent)}, which the reference dump {reference.path} does not hold; "
                              "dump those stages in the reference (parity run --dump all) or drop them from 'provides'")
    stages = []
    for name in reference.stage_names:
        if name in common:
            stages.append(compare_stage(name, reference, candidate, gate.tolerance(name)))
        else:
            stages.append(_absent_stage(name, reference, candidate, gate))
    problems = []
    if reference.frame_count != candidate.frame_count:
        problems.append(
            f"frame count: the candidate makes {candidate.frame_count} output frames, the reference {reference.frame_count}"
        )
    comparison = Comparison(
        reference=reference.path,
        candidate=candidate.path,
        gate=gate,
        stages=stages,
        frame_count={"reference": reference.frame_count, "candidate": candidate.frame_count},
        problems=problems,
        worst_frame=_worst_frame(stages, reference, candidate),
        not_compared={
            "reference_only": [n for n in reference.stage_names if n not in common],
            "candidate_only": [n for n in candidate.stage_names if n not in common],
        },
        frames=_frame_coverage(stages, reference, candidate),
    )
    comparison.diagnoses = diagnose(comparison, reference, candidate)
    return comparison


def _crop_boxes(stage: str, reference: Dump) -> Callable[[int], Any] | None:
    """For `frame.output`: each frame's crop box from the reference dump (None for frames it lacks)."""
    if stage != "frame.output" or "frame.crop_box" not in reference.stage_names:
        return None
    dumped = set(reference.frames("frame.crop_box"))
    return lambda frame: reference.frame("frame.crop_box", frame) if frame in dumped else None


def _absent_stage(stage: str, reference: Dump, candidate: Dump, gate: Gate) -> StageResult:
    """A reference stage the candidate does not hold: a failure, unless the gate says the candidate need not provide it."""
    per = "clip" if stage in CLIP_STAGES else "frame"
    expected = None if per == "clip" else len(reference.frames(stage))
    result = StageResult(stage=stage, per=per, frames_compared=0, tolerance=gate.tolerance(stage).as_dict(), frames_expected=expected,
                         frames_missing=expected or 0)
    if gate.required(stage):
        result.status, result.passed = "missing", False
        why = "every stage of the reference" if gate.provides is None else f"it ({gate.file}: provides)"
        result.failure = (f"{stage}: missing from the candidate ({candidate.path} has {', '.join(candidate.stage_names)}); the gate requires {why}"
                          + ("" if gate.provides is not None else "; a gate file with 'provides' lists the stages a candidate writes"))
    else:
        result.status = "not provided"
    return result


def _frame_coverage(stages: list[StageResult], reference: Dump, candidate: Dump) -> dict[str, int]:
    """Distinct output frames the reference dumped for its required per-frame stages, and how many of them were compared."""
    expected: set[int] = set()
    compared: set[int] = set()
    for stage in stages:
        if stage.per != "frame" or stage.skipped:
            continue
        frames = set(reference.frames(stage.stage))
        expected |= frames
        if stage.status == "compared":
            compared |= frames & set(candidate.frames(stage.stage))
    return {"compared": len(compared), "expected": len(expected)}


def compare_stage(stage: str, reference: Dump, candidate: Dump, tolerance: Tolerance) -> StageResult:
    """Metrics and the gate verdict for one stage present in both dumps; every frame the reference dumped must be there."""
    per = "clip" if stage in CLIP_STAGES else "frame"
    metrics = StageResult(stage=stage, per=per, frames_compared=0, tolerance=tolerance.as_dict())
    missing: list[int] = []
    if per == "clip":
        pairs: Iterable[tuple[int | None, np.ndarray, np.ndarray]] = [(None, reference.clip(stage), candidate.clip(stage))]
    else:
        expected, present = reference.frames(stage), set(candidate.frames(stage))
        missing = [i for i in expected if i not in present]
        metrics.frames_expected, metrics.frames_missing = len(expected), len(missing)
        frames = sorted(set(expected) & present)
        if not frames:
            metrics.passed = False
            metrics.failure = (
                f"{stage}: no frames in common (reference has {_frames_text(reference.frames(stage))}, "
                f"candidate {_frames_text(candidate.frames(stage))})"
            )
            return metrics
        pairs = _read_ahead(frames, lambda i: (i, reference.frame(stage, i), candidate.frame(stage, i)))
    accumulator = _Accumulator(stage, tolerance, _crop_boxes(stage, reference))
    if per == "frame" and stage in IMAGE_STAGES:
        accumulator.ssim_frames = ssim_frames(frames, reference.entry(stage).get("shape"))
    for frame, ref, cand in pairs:
        if ref.shape != cand.shape:
            where = "" if frame is None else f" frame {frame}:"
            metrics.passed = False
            metrics.failure = (
                f"{stage}:{where} shape mismatch: candidate {list(cand.shape)}, reference {list(ref.shape)}"
                f"{_shape_hint(stage, ref.shape, cand.shape)}"
            )
            return metrics
        accumulator.add(frame, ref, cand)
    accumulator.finish(metrics)
    if missing:
        gap = f"{stage}: {len(missing)} of {metrics.frames_expected} frames missing from the candidate ({_frames_text(missing)})"
        metrics.passed = False
        metrics.failure = gap if metrics.failure is None else f"{gap}; {metrics.failure}"
    return metrics


def _read_ahead(frames: list[int], read: Callable[[int], Any], ahead: int = 2) -> Iterator[Any]:
    """`read(i)` for each frame in order, the next `ahead` frames read on a thread of their own while the caller
    measures this one (decoding two PNGs of a 720p frame takes about as long as its metrics; cv2 and numpy release
    the GIL). A read's error comes out where its frame would."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="parity-compare-read") as pool:
        pending = deque(pool.submit(read, i) for i in frames[:ahead])
        following = iter(frames[ahead:])
        try:
            while pending:
                value = pending.popleft().result()
                nxt = next(following, None)
                if nxt is not None:
                    pending.append(pool.submit(read, nxt))
                yield value
        finally:
            for future in pending:
                future.cancel()


def ssim_frames(frames: list[int], shape: list | None) -> set[int] | None:
    """The frames whose whole-image SSIM is computed: all of them for small images; for images of 0.3 megapixels or more (output frames)
    (scikit-image takes ~0.45 s on a 720p frame that differs everywhere), `SSIM_FRAMES` spread evenly over the
    compared frames, chosen by index (so the mean does not depend on the order the frames come in)."""
    pixels = int(shape[0] or 0) * int(shape[1] or 0) if shape and len(shape) >= 2 and shape[0] and shape[1] else 0
    if pixels < LARGE_IMAGE_PIXELS or len(frames) <= SSIM_FRAMES:
        return None
    ordered = sorted(frames)
    return {ordered[round(p)] for p in np.linspace(0, len(ordered) - 1, SSIM_FRAMES)}


class _Accumulator:
    """Running metrics over the frames of one stage (memory flat in the number of frames); each metric from `metrics.py`."""

    def __init__(self, stage: str, tolerance: Tolerance, crop_box: Callable[[int], Any] | None = None):
        self.stage = stage
        self.tolerance = tolerance
        self.image = stage in IMAGE_STAGES
        self.psnr_scale = 255.0 if stage in PSNR_FLOAT_STAGES else (1.0 if self.image else None)  # None: PSNR does not apply
        self.elements = self.units = self.identical = self.exceed = self.nan = self.inf = 0
        self.total_abs = 0.0
        self.squared = SquaredError()
        self.worst: WorstElement | None = None
        self.worst_abs = -1.0
        self.first_nonfinite: dict | None = None
        self.percentile = Percentile99()
        self.per_frame = PerFrame()
        self.ssim: list[float] = []
        self.ssim_crop: list[float] = []
        self.crop_box = crop_box
        self.ssim_frames: set[int] | None = None  # frames whose whole-image SSIM is computed (None: all)
        self.cosines: list[float] = []

    def add(self, frame: int | None, reference: np.ndarray, candidate: np.ndarray) -> None:
        diff = abs_difference(reference, candidate)
        all_finite = diff.dtype.kind in "iu" or bool(np.isfinite(diff).all())
        ranked = diff if all_finite else self._nonfinite(frame, reference, candidate, diff)
        flat = int(np.argmax(ranked)) if diff.size else 0
        frame_max = float(ranked.flat[flat]) if diff.size else 0.0
        if frame_max > self.worst_abs:
            self.worst_abs = frame_max
            index = np.unravel_index(flat, diff.shape)
            self.worst = WorstElement(frame, [int(i) for i in index], float(reference[index]), float(candidate[index]))
        finite = diff if all_finite else np.where(np.isfinite(diff), diff, 0.0)
        self.elements += diff.size
        self.total_abs += float(finite.sum(dtype=np.int64)) if diff.dtype.kind in "iu" else float(finite.sum())
        squared = squared_error(diff, self.psnr_scale or 1.0)
        self.squared = self.squared + squared
        identical, units = identical_count(diff, self.image and diff.ndim == 3)
        self.identical += identical
        self.units += units
        if self.tolerance.max_abs is not None:
            self.exceed += int(np.count_nonzero(ranked > self.tolerance.max_abs))
        self.percentile.add(diff if all_finite else diff[np.isfinite(diff)])
        if frame is not None:
            self.per_frame.frames.append(frame)
            self.per_frame.max_abs.append(frame_max)
            self.per_frame.psnr.append(squared.psnr if self.psnr_scale is not None else None)
        if self.image and reference.ndim == 3:
            frame_ssim: float | None = None  # a large frame between the sampled ones (see SSIM_FRAMES)
            if frame is None or self.ssim_frames is None or frame in self.ssim_frames:
                frame_ssim = ssim(reference, candidate) if frame_max > 0 else 1.0
                self.ssim.append(frame_ssim)
            if frame is not None:
                if self.per_frame.ssim is None:
                    self.per_frame.ssim = []
                self.per_frame.ssim.append(frame_ssim)
            box = self.crop_box(frame) if self.crop_box is not None and frame is not None else None
            if box is not None:
                xmin, ymin, xmax, ymax = (int(v) for v in box)
                self.ssim_crop.append(ssim(reference[ymin:ymax, xmin:xmax], candidate[ymin:ymax, xmin:xmax]) if frame_max > 0 else 1.0)
        if self.stage in COSINE_STAGES:
            self.cosines.extend(row_cosines(reference, candidate))

    def _nonfinite(self, frame, reference: np.ndarray, candidate: np.ndarray, diff: np.ndarray) -> np.ndarray:
        """Count the candidate's NaN/Inf (a NaN or Inf in the reference is a damaged reference); NaN ranks as the worst."""
        if not np.isfinite(reference).all():
            where = "" if frame is None else f" (frame {frame})"
            raise ParityError(f"the reference dump holds NaN or Inf in {self.stage}{where}: it is damaged or was made wrong; "
                              "make it again (parity cache --clear, or re-run the reference)")
        cand = candidate.astype(np.float64)
        nan, inf = np.isnan(cand), np.isinf(cand)
        if nan.any() or inf.any():
            self.nan += int(nan.sum())
            self.inf += int(inf.sum())
            if self.first_nonfinite is None:
                index = np.unravel_index(int(np.argmax(nan | inf)), cand.shape)
                self.first_nonfinite = {"frame": frame, "index": [int(i) for i in index]}
        return np.where(np.isnan(diff), np.inf, diff)

    def finish(self, metrics: StageResult) -> None:
        metrics.frames_compared = len(self.per_frame.frames)
        if metrics.per != "clip":
            metrics.per_frame = self.per_frame
        metrics.max_abs = self.worst_abs if self.elements else 0.0
        metrics.mean_abs = self.total_abs / self.elements if self.elements else 0.0
        metrics.p99 = self.percentile.value
        metrics.identical = self.identical / self.units if self.units else 1.0
        metrics.nan, metrics.inf = self.nan, self.inf
        metrics.worst = self.worst
        if self.psnr_scale is not None:
            metrics.psnr = self.squared.psnr
        finite_crop = [s for s in self.ssim_crop if np.isfinite(s)]
        metrics.ssim_crop = float(np.mean(finite_crop)) if finite_crop else None
        finite_ssim = [s for s in self.ssim if np.isfinite(s)]
        metrics.ssim = float(np.mean(finite_ssim)) if finite_ssim else None
        metrics.cosine = float(np.mean(self.cosines)) if self.cosines else None
        failures = self._failures(metrics)
        metrics.passed = not failures
        metrics.failure = "; ".join(failures) if failures else None

    def _failures(self, m: StageResult) -> list[str]:
        t, stage, failures = self.tolerance, self.stage, []
        worst = _worst_text(m.worst)
        unit = "pixels" if self.image else "elements"
        if m.nan or m.inf:
            at = self.first_nonfinite or {}
            frame = "" if at.get("frame") is None else f"frame {at['frame']}, "
            failures.append(
                f"{stage}: the candidate holds {m.nan} NaN and {m.inf} Inf values (first at {frame}index {tuple(at.get('index', []))}); "
                "any NaN or Inf fails"
            )
        if t.max_abs is not None and self.exceed:
            failures.append(
                f"{stage}: {self.exceed:,} of {self.elements:,} elements ({self.exceed / self.elements:.2%}) exceed max |diff| "
                f"{t.max_abs:.3g}; worst |diff| {m.max_abs:.4g} {worst}"
            )
        if t.max_mean_abs is not None and m.mean_abs is not None and m.mean_abs > t.max_mean_abs:
            failures.append(f"{stage}: mean |diff| {m.mean_abs:.4g} exceeds {t.max_mean_abs:.3g}; worst |diff| {m.max_abs:.4g} {worst}")
        if t.min_identical is not None and m.identical is not None and m.identical < t.min_identical:
            failures.append(
                f"{stage}: {m.identical:.3%} of {unit} identical, gate needs >= {t.min_identical:.3%}; worst |diff| {m.max_abs:.4g} {worst}"
            )
        if t.min_psnr is not None and m.psnr is not None and m.psnr < t.min_psnr:
            lowest = self._lowest_psnr_frame()
            failures.append(f"{stage}: PSNR {m.psnr:.2f} dB, gate needs >= {t.min_psnr:g} dB{lowest}; worst |diff| {m.max_abs:.4g} {worst}")
        if t.min_ssim is not None and m.ssim is not None and m.ssim < t.min_ssim:
            failures.append(f"{stage}: SSIM {m.ssim:.4f}, gate needs >= {t.min_ssim:g}")
        if t.min_cosine is not None and m.cosine is not None and m.cosine < t.min_cosine:
            failures.append(f"{stage}: cosine similarity {m.cosine:.5f}, gate needs >= {t.min_cosine:g}")
        return failures

    def _lowest_psnr_frame(self) -> str:
        series = [(p, f) for p, f in zip(self.per_frame.psnr, self.per_frame.frames) if p is not None]
        if len(series) < 2:
            return ""
        psnr, frame = min(series)
        return f" (lowest: frame {frame}, {psnr:.2f} dB)"


def _worst_frame(stages: list[StageResult], reference: Dump, candidate: Dump) -> WorstFrame | None:
    output = next((s for s in stages if s.stage == "frame.output"), None)
    if output is None or not output.per_frame or not output.per_frame.frames:
        return None
    _, index = min(zip(output.per_frame.psnr, output.per_frame.frames))  # type: ignore[type-var]  # images: PSNR everywhere
    return WorstFrame(int(index), Path(reference.frame_path("frame.output", index)), Path(candidate.frame_path("frame.output", index)))


def _shape_hint(stage: str, reference: tuple, candidate: tuple) -> str:
    if stage == "frame.crop_328":
        return " (the crop must be resized to 328 x 328 before the inner 320 x 320 is taken)"
    if stage in ("frame.unet_input", "frame.unet_output") and candidate[::-1] == reference[::-1]:
        return ""
    if stage in ("frame.unet_input", "frame.unet_output", "frame.mouth") and sorted(candidate) == sorted(reference):
        return " (same sizes in another order: CHW vs HWC?)"
    if stage == "audio.features" and len(candidate) and len(reference):
        return f" ({reference[0] - candidate[0]:+d} rows: the padded features repeat the first and last row once, N + 2 rows)"
    return ""


def _worst_text(worst: WorstElement | None) -> str:
    if not worst:
        return ""
    frame = "" if worst.frame is None else f"frame {worst.frame}, "
    return f"at {frame}index {tuple(worst.index)}: reference {worst.reference:.6g}, candidate {worst.candidate:.6g}"


def _frames_text(frames: list[int]) -> str:
    """"0, 3..9, 12" (consecutive runs shown as ranges; at most 6 pieces)."""
    if not frames:
        return "no frames"
    pieces = [str(a) if a == b else f"{a}..{b}" for a, b in frame_runs(frames)]
    return ", ".join(pieces[:6]) + (", ..." if len(pieces) > 6 else "")
