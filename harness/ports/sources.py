"""Which template each of a port's output frames was built on, recovered from the frame itself.

Outside the crop box a correct port's frame is its template, so the template is found by comparing the frame
with every template of the dataset there (not one offset of the schedule: a port may walk the templates in
another order, repeat one, or start elsewhere). Frames and templates are area-averaged by `SCALE` and compared
outside the union of every template's crop box widened by `MARGIN` (the pasted region never reaches there); the
template with the least mean |diff| wins, unless the scheduled one is as close (within `TIE`), so a static
background never invents a difference.

    recovery = recover_templates(dataset, schedule)
    recovery.add(index, frame)           # every output frame as it is read
    recovery.runs()                      # [(0, 13, "schedule", ...), (14, 26, "reversed", "templates in reverse order ...")]

The recovered sequence is set on the reference's knob `geometry.template_sequence`, so the simulation rebuilds
each frame from the template the port used and judges the mouth against that: one sequencing mistake does not
hide the others. Once the template of a frame is known, the crop box its mouth was pasted into is registered
(`boxes.py`), and `result(boxes)` reports both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..verdict.types import Sources, TemplateRun
from .boxes import BoxRecovery, span

SCALE = 8  # area-average factor
MARGIN = 24  # pixels around the union of the crop boxes left out
TIE = 1.15  # the scheduled template is kept when its distance is within this factor of the best (plus TIE_LEVELS)
TIE_LEVELS = 0.05


@dataclass
class TemplateRecovery:
    """Templates of the dataset, area-averaged, and the frames recovered so far."""

    thumbnails: np.ndarray  # (T, h, w, 3) float32
    keep: np.ndarray  # (h, w) bool: outside every crop box
    schedule: list[int]  # the reference's template of each output frame
    recovered: dict[int, int] = field(default_factory=dict)  # output index -> template
    distance: dict[int, float] = field(default_factory=dict)  # mean |diff| (levels) to the recovered template
    scheduled_distance: dict[int, float] = field(default_factory=dict)

    def distances(self, frame: np.ndarray) -> np.ndarray:
        """`(T,)` mean |diff| (levels) between the frame and each template outside every crop box, area-averaged."""
        import cv2

        height, width = self.keep.shape
        small = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)
        return np.abs(self.thumbnails[:, self.keep] - small[self.keep]).mean(axis=(1, 2))

    def best_shift(self, by_number: dict[int, np.ndarray], shifts: list[int]) -> int | None:
        """The shift (reference index - candidate number) under which the most frames are built on their scheduled
        template (as close as the best template, within the tie); None when no shift places any frame so."""
        counts = {}
        for shift in shifts:
            count = 0
            for number, distances in by_number.items():
                index = number + shift
                if 0 <= index < len(self.schedule):
                    count += int(distances[self.schedule[index]] <= distances.min() * TIE + TIE_LEVELS)
            counts[shift] = count
        best = max(counts, key=lambda s: (counts[s], -abs(s)), default=None)
        return best if best is not None and counts[best] > 0 else None

    def add(self, index: int, frame: np.ndarray) -> None:
        """Recover the template of output frame `index` (BGR uint8, the templates' size)."""
        self.add_distances(index, self.distances(frame))

    def add_distances(self, index: int, distances: np.ndarray) -> None:
        """Recover the template of output frame `index` from its `distances` to every template."""
        if index >= len(self.schedule):
            return
        best = int(np.argmin(distances))
        scheduled = self.schedule[index]
        if distances[scheduled] <= distances[best] * TIE + TIE_LEVELS:
            best = scheduled
        self.recovered[index] = best
        self.distance[index] = float(distances[best])
        self.scheduled_distance[index] = float(distances[scheduled])

    @property
    def frames(self) -> list[int]:
        return sorted(self.recovered)

    @property
    def differs(self) -> list[int]:
        """Output frames built on another template than the schedule's."""
        return [i for i in self.frames if self.recovered[i] != self.schedule[i]]

    def sequence(self) -> tuple[int, ...]:
        """The template of every output frame: the recovered one where recovered, else the schedule's."""
        return tuple(self.recovered.get(i, t) for i, t in enumerate(self.schedule))

    def runs(self) -> list[TemplateRun]:
        """Runs of consecutive output frames that follow the schedule, or depart from it (one frame that happens to
        agree inside a departing run, as the middle of a reversed run does, stays in it), each classified."""
        frames = self.frames
        differs = {i: self.recovered[i] != self.schedule[i] for i in frames}
        runs: list[TemplateRun] = []
        start = 0
        while start < len(frames):
            end, kind_differs = start, differs[frames[start]]
            while end + 1 < len(frames) and frames[end + 1] == frames[end] + 1:
                nxt = frames[end + 1]
                if differs[nxt] == kind_differs:
                    end += 1
                elif kind_differs and end + 2 < len(frames) and frames[end + 2] == nxt + 1 and differs[frames[end + 2]]:
                    end += 1  # one agreeing frame inside a departing run
                else:
                    break
            runs.extend(self._split(frames[start], frames[end]))
            start = end + 1
        return runs

    def _split(self, first: int, last: int) -> list[TemplateRun]:
        """A run as one kind when it is one, else its longest leading part of one kind, then the rest alike."""
        runs = []
        while first <= last:
            end = last
            while end > first and self._kind(first, end) == "other":
                end -= 1
            kind = self._kind(first, end)
            runs.append(TemplateRun(first, end, kind, self._text(first, end, kind)))
            first = end + 1
        return runs

    def _kind(self, first: int, last: int) -> str:
        got = [self.recovered[i] for i in range(first, last + 1)]
        want = self.schedule[first : last + 1]
        if got == want:
            return "schedule"
        if len(got) > 2 and got == want[::-1]:
            return "reversed"
        if len({g - w for g, w in zip(got, want)}) == 1:
            return "offset"
        if len(got) > 1 and len(set(got)) == 1:
            return "constant"
        return "other"

    def _text(self, first: int, last: int, kind: str) -> str:
        frames = f"frame {first}" if first == last else f"frames {first}-{last}"
        got = [self.recovered[i] for i in range(first, last + 1)]
        want = self.schedule[first : last + 1]
        shown = span(got)
        if kind == "schedule":
            return f"{frames}: the schedule's templates ({shown})"
        if kind == "offset":
            k = got[0] - want[0]
            return f"{frames}: templates {k:+d} from the schedule ({shown} where it has {span(want)})"
        if kind == "constant":
            return f"{frames}: template {got[0]} for every frame (the schedule has {span(want)})"
        if kind == "reversed":
            return f"{frames}: templates in reverse order ({shown} where the schedule has {span(want)})"
        return f"{frames}: other templates ({shown} where the schedule has {span(want)})"

    def text(self) -> str:
        """Which templates the frames are built on, against the schedule: one line."""
        frames, differing = self.frames, self.differs
        if not differing:
            return f"every one of {len(frames)} frames is built on the schedule's template"
        return (f"{len(differing)} of {len(frames)} frames are built on another template than the schedule's: "
                + "; ".join(run.text for run in self.runs() if run.kind != "schedule"))

    def result(self, boxes: BoxRecovery | None = None) -> Sources:
        """The sources of every recovered frame: its template and, where `boxes` registered it, the crop box it was pasted into."""
        frames = self.frames
        text = self.text()
        if boxes is None:
            return Sources(frames, [self.recovered[i] for i in frames], [self.schedule[i] for i in frames], self.runs(), 0, [], text)
        registered = boxes.registered
        box_templates = [registered[i].box_template if i in registered else None for i in frames]
        box_runs = [TemplateRun(run.first, run.last, run.kind, run.text) for run in boxes.runs()]
        return Sources(frames, [self.recovered[i] for i in frames], [self.schedule[i] for i in frames], self.runs(), len(boxes.checked),
                       boxes.other, f"{text}; crop boxes: {boxes.text()}", box_templates, box_runs)


def recover_templates(dataset, frame_count: int) -> TemplateRecovery:
    """A recovery over `dataset`'s templates for a clip of `frame_count` output frames (the schedule's)."""
    import cv2

    width, height = dataset.frame_size
    small = (max(1, width // SCALE), max(1, height // SCALE))
    keep = np.ones((small[1], small[0]), bool)
    thumbnails = []
    for template in dataset.templates:
        x0, y0, x1, y1 = (int(v) for v in template.box)
        keep[max(0, (y0 - MARGIN) // SCALE) : -(-(y1 + MARGIN) // SCALE), max(0, (x0 - MARGIN) // SCALE) : -(-(x1 + MARGIN) // SCALE)] = False
        thumbnails.append(cv2.resize(template.read_image(), small, interpolation=cv2.INTER_AREA).astype(np.float32))
    return TemplateRecovery(np.stack(thumbnails), keep, dataset.schedule(frame_count))


__all__ = ["Sources", "TemplateRecovery", "recover_templates"]
