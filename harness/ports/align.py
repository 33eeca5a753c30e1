"""Align a port's frames with the reference's output frames: which reference index each candidate frame is.

    template = dataset_templates(dataset, frame_count)          # index -> (template image, crop box)
    alignment = align_frames(read_frame_files("port/frames"), template, frame_count)
    alignment = align_video(read_video("port.mp4"), template, frame_count)
    print(alignment.summary())   # numbered from 1, offset 0: 247 of 249 reference frames present; missing at the tail: 247..248
    alignment.reference_index(12)                               # -> 11

A reference output frame is its template frame everywhere outside the crop box (only the box is
pasted), so the region outside the box identifies which reference frame a candidate frame is, even
when the port's mouth is wrong or its frames were re-encoded lossily. Candidate frame `number` is
taken to be reference frame `number - base + offset`, with `base` the numbering base (the smallest
number: 0 for `00000.png`, 1 for `frame_00001.jpg`) and `offset` a constant shift found by search:

- each shift in a window (`-window..window` around "number - base", and around numbering from 0 and
  from 1) is scored by the mean absolute difference (levels, all channels) between sampled candidate
  frames and the templates they would be, outside each template's crop box widened by `margin`
  pixels, on images area-averaged by 4 (JPEG or H.264 noise averages out, motion does not);
- templates ping-pong (1, 2, .., L, L-1, ..), so several reference indices share one template: the
  sampled frames are spread over the whole clip and every shift is scored on all of them, which only
  the right shift matches everywhere;
- the samples are frames that stay inside the reference at every shift tried (when there are enough),
  so every shift is scored on the same frames;
- coarse to fine: three samples score every shift, the best three shifts are scored again on all
  samples (default 8), and the best wins. Confidence is `1 - best / runner-up` (1: unambiguous, 0: a
  tie).

The base reported is the smallest number when it is 0 or 1; when it is larger (frames missing at the
head), 0 or 1 if that explains the shift with offset 0, else the smallest number. Reference indices
with no candidate frame are reported as missing (at the head, at the tail, or gaps in between, as
ranges), candidate frames that fall outside the reference's frames as extra.

Measured on 2 cores (sanders-mini 1280x720, 249 frames, a wrong mouth in every frame): 247 JPEG
frames (quality 90) aligned in 0.5 s, best offset 0.04 levels against 1.6-2 for the neighbouring
templates (confidence 0.96); the same as an H.264 mp4 (CRF 20) in 1.5 s, decoding included
(confidence 0.47). About 70 template decodes and 8 candidate decodes, whatever the clip's length.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

import numpy as np

from ...errors import ParityError
from ..verdict.metrics import abs_difference, mean_abs
from ..verdict.types import frame_runs

Box = tuple[int, int, int, int]
TemplateFn = Callable[[int], tuple[np.ndarray, Box]]  # reference output index -> (template image BGR, crop box)

SAMPLES = 8  # candidate frames scored for the final choice
COARSE_SAMPLES = 3  # candidate frames scored for every shift
FINALISTS = 3  # shifts scored again on every sample
WINDOW = 8  # shifts tried on each side of the numbering base
MARGIN = 24  # pixels around the crop box left out (JPEG blocks and chroma straddling the box, boxes of other templates)
SCALE = 4  # area-average factor before differencing
POOR_MATCH = 12.0  # mean |diff| (levels) above which the frames hardly look like the reference's
LOW_CONFIDENCE = 0.3


class CandidateFrame(Protocol):
    """What `align_frames` needs of a candidate frame (ingest.FrameFile is one)."""

    @property
    def number(self) -> int: ...

    def load(self) -> np.ndarray: ...


@dataclass
class Alignment:
    """Candidate frame `number` is reference output frame `number - base + offset` (when inside 0..frame_count-1)."""

    base: int  # numbering base of the candidate's frames
    offset: int  # constant shift after the base
    frame_count: int  # the reference's output frames
    candidate_count: int
    mapping: dict[int, int]  # candidate number -> reference index, for frames inside the reference
    missing: list[int]  # reference indices no candidate frame maps to
    extra: list[int]  # candidate numbers that fall outside the reference's frames
    score: float  # mean |diff| outside the crop box (levels, area-averaged) at the chosen shift, over the samples
    runner_up_offset: int | None  # the next best offset, and its score
    runner_up_score: float | None
    confidence: float  # 1 - score / runner_up_score: 1 unambiguous, 0 a tie
    samples: list[int] = field(default_factory=list)  # candidate numbers scored
    scores: dict[int, float] = field(default_factory=dict)  # offset -> coarse score (every offset tried)

    @property
    def shift(self) -> int:
        """reference index - candidate number."""
        return self.offset - self.base

    @property
    def present(self) -> int:
        return self.frame_count - len(self.missing)

    def reference_index(self, number: int) -> int | None:
        index = number + self.shift
        return index if 0 <= index < self.frame_count else None

    def missing_runs(self) -> list[tuple[int, int]]:
        return frame_runs(self.missing)

    @property
    def missing_head(self) -> tuple[int, int] | None:
        runs = self.missing_runs()
        return runs[0] if runs and runs[0][0] == 0 else None

    @property
    def missing_tail(self) -> tuple[int, int] | None:
        runs = self.missing_runs()
        if not runs or runs[-1][1] != self.frame_count - 1 or runs[-1] == self.missing_head:
            return None
        return runs[-1]

    @property
    def missing_gaps(self) -> list[tuple[int, int]]:
        return [run for run in self.missing_runs() if run not in (self.missing_head, self.missing_tail)]

    def summary(self) -> str:
        """One line: numbering, offset, coverage, missing and extra frames, and any doubt."""
        offset = "0" if self.offset == 0 else f"{self.offset:+d}"
        parts = [f"numbered from {self.base}, offset {offset}: {self.present} of {self.frame_count} reference frames present"]
        if self.missing_head:
            parts.append(f"missing at the head: {_run_text(self.missing_head)}")
        if self.missing_tail:
            parts.append(f"missing at the tail: {_run_text(self.missing_tail)}")
        if self.missing_gaps:
            parts.append(f"missing in between: {_runs_text(self.missing_gaps)}")
        if self.extra:
            parts.append(f"{len(self.extra)} candidate frame(s) beyond the reference: {_runs_text(frame_runs(self.extra))}")
        if self.score > POOR_MATCH:
            parts.append(f"poor match: {self.score:.1f} levels mean |diff| outside the crop box even at the best offset "
                         "(another dataset, start frame or frame size?)")
        elif self.runner_up_offset is not None and self.confidence < LOW_CONFIDENCE:
            parts.append(f"uncertain: offset {self.runner_up_offset:+d} matches nearly as well "
                         f"({self.runner_up_score:.2f} vs {self.score:.2f} levels outside the crop box)")
        return "; ".join(parts)


def dataset_templates(dataset, frame_count: int, cache: int = 32) -> TemplateFn:
    """`template(index)` for reference output frame `index` of a `reference.dataset.Dataset`: its scheduled
    template image and crop box (decoded templates are cached, by template)."""
    schedule = dataset.schedule(frame_count)

    @lru_cache(maxsize=cache)
    def by_template(k: int) -> tuple[np.ndarray, Box]:
        template = dataset.templates[k]
        return template.read_image(), tuple(int(v) for v in template.box)  # type: ignore[return-value]

    def template(index: int) -> tuple[np.ndarray, Box]:
        return by_template(schedule[index])

    return template


def sample_numbers(numbers: Sequence[int], count: int = SAMPLES) -> list[int]:
    """`count` candidate numbers spread evenly over the sorted numbers, first and last included."""
    ordered = sorted(set(numbers))
    if len(ordered) <= count:
        return ordered
    positions = np.linspace(0, len(ordered) - 1, count).round().astype(int)
    return [ordered[p] for p in sorted(set(positions.tolist()))]


def alignment_samples(numbers: Sequence[int], frame_count: int, *, window: int = WINDOW, samples: int = SAMPLES) -> list[int]:
    """The candidate numbers `align` scores: spread over the frames that stay inside the reference at every shift tried."""
    ordered = sorted(set(numbers))
    if not ordered:
        return []
    return sample_numbers(_interior(ordered, _shifts(ordered[0], window), -ordered[0], window, frame_count, samples), samples)


def outside_difference(candidate: np.ndarray, template: np.ndarray, box: Box, margin: int = MARGIN, scale: int = SCALE) -> float:
    """Mean |candidate - template| (levels) outside the crop box widened by `margin`, on images area-averaged by `scale`."""
    import cv2

    height, width = template.shape[:2]
    if candidate.shape != template.shape:
        raise ParityError(f"candidate frames are {candidate.shape[1]}x{candidate.shape[0]}, the reference's {width}x{height}; "
                          "a port writes frames at the template size")
    small = (max(1, width // scale), max(1, height // scale))
    diff = abs_difference(cv2.resize(template, small, interpolation=cv2.INTER_AREA), cv2.resize(candidate, small, interpolation=cv2.INTER_AREA))
    keep = np.ones(diff.shape[:2], bool)
    x0, y0, x1, y1 = box
    keep[max(0, (y0 - margin) // scale) : -(-(y1 + margin) // scale), max(0, (x0 - margin) // scale) : -(-(x1 + margin) // scale)] = False
    if not keep.any():
        raise ParityError(f"the crop box {box} with a {margin}-pixel margin covers the whole {width}x{height} frame; nothing is left to align on")
    return mean_abs(diff[keep])


def align(numbers: Sequence[int], images: Mapping[int, np.ndarray] | Callable[[int], np.ndarray], template: TemplateFn,
          frame_count: int, *, window: int = WINDOW, samples: int = SAMPLES, margin: int = MARGIN, shift: int | None = None) -> Alignment:
    """Find the constant shift that maps candidate numbers to reference output indices (`shift`: one already decided,
    from every frame's recovered template; it is scored and reported like the others, and kept).

    `images` gives candidate frames by number: a callable (`number -> BGR image`, called for the sampled
    numbers only) or a mapping holding at least `alignment_samples(numbers, frame_count, window=window, samples=samples)`.
    """
    if frame_count < 1:
        raise ParityError("the reference has no output frames to align with")
    if not numbers:
        raise ParityError("no candidate frames to align")
    ordered = sorted(set(numbers))
    lowest = ordered[0]
    shifts = _shifts(lowest, window)
    chosen = alignment_samples(ordered, frame_count, window=window, samples=samples)
    loaded: dict[int, np.ndarray] = {}

    def image(number: int) -> np.ndarray:
        if number not in loaded:
            if callable(images):
                loaded[number] = images(number)
            elif number in images:
                loaded[number] = images[number]
            else:
                raise ParityError(f"candidate frame {number} was sampled for alignment but not given")
        return loaded[number]

    cache: dict[tuple[int, int], float] = {}

    def score(shift: int, sampled: Iterable[int]) -> float:
        sampled = list(sampled)
        values = []
        for number in sampled:
            index = number + shift
            if 0 <= index < frame_count:
                if (number, index) not in cache:
                    reference, box = template(index)
                    cache[(number, index)] = outside_difference(image(number), reference, box, margin)
                values.append(cache[(number, index)])
        return float(np.mean(values)) if len(values) >= max(1, math.ceil(len(sampled) / 2)) else math.inf

    coarse_samples = sample_numbers(chosen, COARSE_SAMPLES)
    coarse = {shift: score(shift, coarse_samples) for shift in shifts}
    if all(math.isinf(v) for v in coarse.values()):
        raise ParityError(f"candidate frames {ordered[0]}..{ordered[-1]} fall outside the reference's {frame_count} frames at every offset tried")
    finalists = sorted((s for s in shifts if math.isfinite(coarse[s])), key=lambda s: (coarse[s], abs(s + lowest)))[:FINALISTS]
    if shift is not None:  # decided from every frame's recovered template (sources.py): scored beside the samples' best
        finalists = [shift, *(s for s in finalists if s != shift)][:FINALISTS]
    fine = {shift: score(shift, chosen) for shift in finalists}
    ranked = sorted((s for s in finalists if math.isfinite(fine[s])), key=lambda s: (fine[s], abs(s + lowest)))
    if shift is not None and shift in ranked:
        ranked = [shift, *(s for s in ranked if s != shift)]
    best = ranked[0]
    runner = ranked[1] if len(ranked) > 1 else None
    base = _base(lowest, best)
    mapping = {n: n + best for n in ordered if 0 <= n + best < frame_count}
    covered = set(mapping.values())
    best_score = fine[best]
    runner_score = fine[runner] if runner is not None else None
    if runner_score is None or runner_score <= 0:
        confidence = 0.0 if runner_score is not None else 1.0
    else:
        confidence = max(0.0, 1.0 - best_score / runner_score)
    return Alignment(
        base=base,
        offset=best + base,
        frame_count=frame_count,
        candidate_count=len(ordered),
        mapping=mapping,
        missing=[i for i in range(frame_count) if i not in covered],
        extra=[n for n in ordered if n not in mapping],
        score=best_score,
        runner_up_offset=None if runner is None else runner + base,
        runner_up_score=runner_score,
        confidence=confidence,
        samples=chosen,
        scores={shift + base: value for shift, value in coarse.items() if math.isfinite(value)},
    )


def align_frames(frames: Sequence[CandidateFrame], template: TemplateFn, frame_count: int, **options) -> Alignment:
    """`align` for frame files (anything with `number` and `load()`, such as `ingest.read_frame_files`)."""
    by_number = {frame.number: frame for frame in frames}
    return align(list(by_number), lambda number: by_number[number].load(), template, frame_count, **options)


def align_video(video, template: TemplateFn, frame_count: int, **options) -> Alignment:
    """`align` for an `ingest.VideoFrames` (frames numbered from 0; the sampled ones decoded in one pass)."""
    numbers = list(range(video.frame_count))
    if not numbers:
        raise ParityError(f"{video.path}: the video has no frames")
    wanted = alignment_samples(numbers, frame_count, window=options.get("window", WINDOW), samples=options.get("samples", SAMPLES))
    return align(numbers, video.frames_at(wanted), template, frame_count, **options)


def candidate_shifts(numbers: Sequence[int], window: int = WINDOW) -> list[int]:
    """The shifts (reference index - number) `align` tries for these candidate numbers."""
    return _shifts(min(numbers), window) if numbers else []


def _shifts(lowest: int, window: int) -> list[int]:
    """Shifts (reference index - number) tried: a window around numbering from `lowest`, from 0 and from 1."""
    return sorted({s for start in {lowest, 0, 1} for s in range(-start - window, -start + window + 1)})


def _interior(ordered: list[int], shifts: list[int], main: int, window: int, frame_count: int, samples: int) -> list[int]:
    """The numbers that stay inside the reference at every shift tried (else at every shift of the main window), so every
    shift is scored on the same frames; all numbers when too few do."""
    wanted = min(samples, len(ordered))
    for low, high in ((shifts[0], shifts[-1]), (main - window, main + window)):
        inside = [n for n in ordered if n + low >= 0 and n + high < frame_count]
        if len(inside) >= wanted:
            return inside
    return ordered


def _base(lowest: int, shift: int) -> int:
    """The numbering base to report: the smallest number when it is 0 or 1; otherwise (frames missing at the head, or
    an unusual start) 0 or 1 when that explains the shift with offset 0, else the smallest number."""
    if lowest in (0, 1):
        return lowest
    if -shift in (0, 1):
        return -shift
    return lowest


def _run_text(run: tuple[int, int]) -> str:
    return str(run[0]) if run[0] == run[1] else f"{run[0]}..{run[1]}"


def _runs_text(runs: list[tuple[int, int]], limit: int = 6) -> str:
    pieces = [_run_text(run) for run in runs]
    return ", ".join(pieces[:limit]) + (f", ... ({len(pieces)} runs)" if len(pieces) > limit else "")
