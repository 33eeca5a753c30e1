"""Which crop box each of a port's output frames had its mouth pasted into, registered from the frame itself.

A frame differs from the template it was built on (`sources.py` recovers which) only inside the box its mouth was
pasted into: a correct port's box is the one its template's landmarks give, but a port may take the box of another
template's landmarks (the landmarks read in another order than the images, or one off). Every distinct crop box of
the dataset's templates is a candidate; the frame's difference from its template decides between them:

- a pixel *differs* when its largest channel difference from the template is above the noise outside every crop box
  (zero for lossless frames; `NOISE_QUANTILE` of the ring around the union of the boxes for lossy ones);
- a box's cost is `OUTSIDE` for every differing pixel it leaves out (a paste never changes a pixel outside its box)
  plus `INSIDE` for every pixel of its written box (`written_box`: what the U-Net's output reaches) that does not
  differ (a mouth may reproduce its template there: weaker evidence); the band between the two, the 328 crop's
  border that is the template resampled twice, counts neither way;
- the margin of one box over another is the difference of their costs per pixel of their symmetric difference
  (`(OUTSIDE + INSIDE) / 2` = every such pixel says so, 0 = no evidence either way).

A frame is registered as pasted into another template's box only when that box costs least, beats the frame's own
box by `MARGIN`, and the frame differs on at least `GAINED` of the written pixels the other box adds outside its own
(which no correct paste changes) and on at most `GAINED` of its own written pixels the other box leaves out. A box
inside the frame's own adds nothing outside it: a mouth that reproduces its template near the box's edge, or a
feathered paste, looks the same, so it is never named. So a static or noisy frame never invents a difference. When another
box costs least without that evidence, or the frame shows no paste at all, the box is *not told apart* (counted in
neither `boxes_checked` nor `boxes_other`): a wrong cause is worse than none.

    registry = box_candidates(dataset)
    registration = registry.register(index, template_index, frame, template_image)
    recovery = BoxRecovery(registry); recovery.add(registration); recovery.runs(); recovery.sequence(frame_count)

The registered boxes go on the reference's knob `geometry.box_sequence` (the template whose box each frame uses), so
the simulation rebuilds those frames in the box the port used and judges the mouth against that.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from ...reference.frames import CROP_SIZE, INNER, Box
from ..verdict.types import frame_runs

OUTSIDE = 1.0  # cost of a differing pixel left outside the box
INSIDE = 0.25  # cost of a pixel of the box's written part (`written_box`) that does not differ from the template
MARGIN = 0.2  # another box must beat the frame's own by this much per pixel of their symmetric difference
GAINED = 0.5  # share of the pixels another box adds to the frame's own that must differ from the template
LOST = 0.1  # ... or, for a box shifted by about a pixel: at most this share of the own written pixels it leaves out differ, at least 1 - LOST of its own
LOST_MARGIN = 0.1  # and the margin it needs then
PASTED = 0.1  # a frame shows a paste when this share of its own box's pixel count differs (anywhere in the boxes' region)
RING = 16  # pixels around the union of the boxes: the region registered (its outer band measures the noise)
NOISE_QUANTILE = 0.99


@dataclass(frozen=True)
class BoxRegistration:
    """Frame `index`, built on template `template`: the template whose box its mouth was pasted into (`box_template`;
    None: not told apart), and the margin (per pixel, see the module) of the chosen box over the next best."""

    index: int
    template: int
    box_template: int | None
    margin: float
    note: str = ""

    @property
    def other(self) -> bool:
        return self.box_template is not None and self.box_template != self.template


@dataclass
class BoxCandidates:
    """The distinct crop boxes of a dataset's templates, and the region around them that registration reads."""

    boxes: list[Box]  # distinct
    holders: list[list[int]]  # the templates whose landmarks give each box
    box_of: list[int]  # template -> its box's position in `boxes`
    region: Box  # x0, y0, x1, y1: the union of the boxes widened by RING, inside the frame
    noise_band: np.ndarray  # (h, w) bool over the region: the ring outside the union widened by RING / 2

    def register(self, index: int, template: int, frame: np.ndarray, template_image: np.ndarray) -> BoxRegistration:
        """Which box frame `index` (built on `template`, whose decoded image is `template_image`) was pasted into."""
        import cv2

        x0, y0, x1, y1 = self.region
        absolute = cv2.absdiff(np.ascontiguousarray(frame[y0:y1, x0:x1]), np.ascontiguousarray(template_image[y0:y1, x0:x1]))
        diff = np.maximum(np.maximum(absolute[..., 0], absolute[..., 1]), absolute[..., 2])  # the largest channel's
        noise = diff[self.noise_band]
        threshold = float(np.quantile(noise, NOISE_QUANTILE)) if noise.size else 0.0
        table = cv2.integral((diff > threshold).view(np.uint8))
        own = self.box_of[template]
        own_area = _area(self.boxes[own])
        total = int(table[-1, -1])
        if total < PASTED * own_area:
            return BoxRegistration(index, template, None, 0.0, f"no paste seen ({total} pixels differ, threshold {threshold:g} levels)")
        costs = np.array([self._cost(table, box, total) for box in self.boxes])
        best = min(range(len(self.boxes)), key=lambda b: (costs[b], b != own))
        if best == own:
            margin = min((self._margin(costs, own, b) for b in range(len(self.boxes)) if b != own), default=float("inf"))
            return BoxRegistration(index, template, template, margin)
        margin = self._margin(costs, best, own)
        holder = min(self.holders[best], key=lambda t: (abs(t - template), t))
        # the specific evidence: the frame differs where the other box's written pixels lie outside its own box (no
        # correct paste changes a pixel there), and not where its own written pixels lie outside the other box
        gained = self._share(table, _minus(written_box(self.boxes[best]), self.boxes[own]))
        lost = self._share(table, _minus(written_box(self.boxes[own]), self.boxes[best]))
        if gained is not None:
            supported = gained >= GAINED and margin >= MARGIN
        else:
            # a box shifted by about a pixel: its written part lies inside the frame's own box, so only the frame's own
            # written pixels it leaves out can tell: they must clearly not differ where the box's own written pixels
            # clearly do (lossy noise leaves both sparse); a box inside the frame's own is never named (a mouth that
            # reproduces its template near the edge, or a feathered paste, looks the same)
            dense = self._share(table, [written_box(self.boxes[best])]) or 0.0
            supported = (not _inside(self.boxes[best], self.boxes[own]) and lost is not None and lost <= LOST and dense >= 1 - LOST
                         and margin >= LOST_MARGIN)
        contradicted = lost is not None and lost > GAINED
        if supported and not contradicted:
            return BoxRegistration(index, template, holder, margin)
        adds = "it adds no written pixel outside the frame's own box" if gained is None else \
            f"the frame differs on {gained:.0%} of the written pixels it adds outside its own box"
        leaves = "it leaves out none of the frame's own written pixels" if lost is None else \
            f"the frame differs on {lost:.0%} of its own written pixels that box leaves out"
        return BoxRegistration(index, template, None, margin, f"template {holder}'s box fits better by {margin:.2f} per pixel, but {adds}; "
                               f"{leaves}: not told apart")

    def _cost(self, table: np.ndarray, box: Box, total: int) -> float:
        """Differing pixels outside the box, and (less) pixels of its written box that do not differ; the band between the
        two (the 328 crop's border, the template resampled twice) counts neither way."""
        written = written_box(box)
        return OUTSIDE * (total - self._sum(table, box)) + INSIDE * (_area(written) - self._sum(table, written))

    def _margin(self, costs: np.ndarray, better: int, worse: int) -> float:
        apart = _area(self.boxes[better]) + _area(self.boxes[worse]) - 2 * _area(_intersection(self.boxes[better], self.boxes[worse]))
        return float(costs[worse] - costs[better]) / max(1, apart)

    def _sum(self, table: np.ndarray, box: Box) -> int:
        """Differing pixels inside `box` (frame coordinates) from the region's integral table."""
        rx0, ry0, rx1, ry1 = self.region
        bx0, by0, bx1, by1 = max(box[0], rx0) - rx0, max(box[1], ry0) - ry0, min(box[2], rx1) - rx0, min(box[3], ry1) - ry0
        if bx1 <= bx0 or by1 <= by0:
            return 0
        return int(table[by1, bx1] - table[by0, bx1] - table[by1, bx0] + table[by0, bx0])

    def _share(self, table: np.ndarray, parts: list[Box]) -> float | None:
        """The share of the pixels of `parts` that differ; None when they hold none."""
        area = _area_of(parts)
        return sum(self._sum(table, part) for part in parts) / area if area else None


@dataclass(frozen=True)
class BoxRun:
    """A run of consecutive output frames pasted into other templates' boxes in one way."""

    first: int
    last: int
    kind: str  # "schedule" (the scheduled template's box, built on another), "offset" (template t + k's box), "constant" (one template's box), "other"
    text: str


@dataclass
class BoxRecovery:
    """The boxes registered so far, by output frame."""

    candidates: BoxCandidates
    schedule: list[int] | None = None  # the reference's template of each output frame: landmarks that follow it while the images do not
    registered: dict[int, BoxRegistration] = field(default_factory=dict)

    def add(self, registration: BoxRegistration) -> None:
        self.registered[registration.index] = registration

    @property
    def checked(self) -> list[int]:
        """Frames whose box was told apart (their own template's or another's)."""
        return sorted(i for i, r in self.registered.items() if r.box_template is not None)

    @property
    def other(self) -> list[int]:
        """Frames pasted into another template's box."""
        return sorted(i for i, r in self.registered.items() if r.other)

    @property
    def unresolved(self) -> list[int]:
        return sorted(i for i, r in self.registered.items() if r.box_template is None)

    def sequence(self, frame_count: int) -> tuple[int, ...]:
        """`geometry.box_sequence`: the template whose box each output frame uses, -1 where its own template's."""
        return tuple(self.registered[i].box_template if i in self.registered and self.registered[i].other else -1  # type: ignore[misc]
                     for i in range(frame_count))

    def runs(self) -> list[BoxRun]:
        """Runs of consecutive frames pasted into other boxes, each one kind (`BoxRun`)."""
        frames = self.other
        runs: list[BoxRun] = []
        for first, last in frame_runs(frames):
            runs.extend(self._split(list(range(first, last + 1))))
        return runs

    def _split(self, frames: list[int]) -> list[BoxRun]:
        runs = []
        start = 0
        while start < len(frames):
            end = len(frames)
            while end - start > 1 and self._kind(frames[start:end]) == "other":
                end -= 1
            chunk = frames[start:end]
            kind = self._kind(chunk)
            runs.append(BoxRun(chunk[0], chunk[-1], kind, self._text(chunk, kind)))
            start = end
        return runs

    def _kind(self, frames: list[int]) -> str:
        used = [self.registered[i].box_template for i in frames]
        built = [self.registered[i].template for i in frames]
        if len(frames) > 1 and self.schedule is not None and used == [self.schedule[i] if i < len(self.schedule) else None for i in frames]:
            return "schedule"
        if len({u - t for u, t in zip(used, built)}) == 1:  # type: ignore[operator]
            return "offset"
        if len(set(used)) == 1:
            return "constant"
        return "other"

    def _text(self, frames: list[int], kind: str) -> str:
        shown = f"frame {frames[0]}" if len(frames) == 1 else f"frames {frames[0]}-{frames[-1]}"
        used = [int(self.registered[i].box_template) for i in frames]  # type: ignore[arg-type]
        built = [self.registered[i].template for i in frames]
        margin = min(self.registered[i].margin for i in frames)
        evidence = f"(boxes of templates {span(used)} where built on {span(built)}; margin {margin:.2f} per pixel)"
        if kind == "schedule":
            return f"{shown}: pasted into the crop boxes of the schedule's templates' landmarks while built on other templates: the " \
                   f"landmarks follow the schedule, the images do not {evidence}"
        if kind == "offset":
            k = used[0] - built[0]
            return f"{shown}: pasted into the crop box of template k{k:+d}'s landmarks {evidence}"
        if kind == "constant":
            return f"{shown}: pasted into the crop box of template {used[0]}'s landmarks for every frame {evidence}"
        return f"{shown}: pasted into the crop boxes of other templates' landmarks {evidence}"

    def text(self) -> str:
        """One line for the sources: how many boxes were registered, and the runs pasted elsewhere."""
        checked, other, unresolved = self.checked, self.other, self.unresolved
        told = f"; not told apart: {_frames(unresolved)}" if unresolved else ""
        if not other:
            return f"every one of {len(checked)} registered frames is pasted into its own template's crop box{told}"
        return (f"{len(other)} of {len(checked)} registered frames are pasted into another template's crop box: "
                + "; ".join(run.text for run in self.runs()) + told)


def box_candidates(dataset) -> BoxCandidates:
    """The distinct crop boxes of `dataset`'s templates and the region registration reads around them."""
    boxes: list[Box] = []
    holders: list[list[int]] = []
    position: dict[Box, int] = {}
    box_of = []
    for template in dataset.templates:
        box = tuple(int(v) for v in template.box)
        if box not in position:
            position[box] = len(boxes)  # type: ignore[index]
            boxes.append(box)  # type: ignore[arg-type]
            holders.append([])
        holders[position[box]].append(template.index)  # type: ignore[index]
        box_of.append(position[box])  # type: ignore[index]
    width, height = dataset.frame_size
    union = (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))
    region = (max(0, union[0] - RING), max(0, union[1] - RING), min(width, union[2] + RING), min(height, union[3] + RING))
    band = np.ones((region[3] - region[1], region[2] - region[0]), bool)
    inner = RING // 2
    band[max(0, union[1] - inner - region[1]) : union[3] + inner - region[1], max(0, union[0] - inner - region[0]) : union[2] + inner - region[0]] = False
    return BoxCandidates(boxes, holders, box_of, region, band)


def written_box(box: Box) -> Box:
    """The pixels of crop box `box` that the U-Net's 320 x 320 reaches (crop rows and columns 4..324 of 328), rounded
    outward: the rest of the box is the template resampled twice, which differs from it on few pixels (measured on the
    demo: 5% of the box's outermost pixel column, 98% of the next one)."""
    x0, y0, x1, y1 = box
    width, height = x1 - x0, y1 - y0
    return (x0 + INNER[0] * width // CROP_SIZE, y0 + INNER[0] * height // CROP_SIZE,
            x0 + -(-INNER[1] * width // CROP_SIZE), y0 + -(-INNER[1] * height // CROP_SIZE))


def _inside(a: Box, b: Box) -> bool:
    """`a` lies inside `b`."""
    return a[0] >= b[0] and a[1] >= b[1] and a[2] <= b[2] and a[3] <= b[3]


def _area(box: Box) -> int:
    return max(0, box[2] - box[0]) * max(0, box[3] - box[1])


def _intersection(a: Box, b: Box) -> Box:
    return max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])


def _minus(a: Box, b: Box) -> list[Box]:
    """`a` without `b`, as up to four disjoint boxes."""
    i = _intersection(a, b)
    if _area(i) == 0:
        return [a]
    parts = [(a[0], a[1], a[2], i[1]), (a[0], i[3], a[2], a[3]), (a[0], i[1], i[0], i[3]), (i[2], i[1], a[2], i[3])]
    return [p for p in parts if _area(p) > 0]


def _area_of(parts: list[Box]) -> int:
    return sum(_area(p) for p in parts)


def _frames(indices: list[int]) -> str:
    """"frame 5", "frames 0-3, 7, 9-13": consecutive frames as ranges."""
    parts = [str(first) if first == last else f"{first}-{last}" for first, last in frame_runs(indices)]
    return ("frame " if len(indices) == 1 else "frames ") + ", ".join(parts)


def span(values: list[int]) -> str:
    """"7", "3..9" (a run stepping by one either way), or the first six values: a list of template indices in a line."""
    if len(values) == 1:
        return str(values[0])
    step = values[1] - values[0]
    if step in (1, -1) and all(b - a == step for a, b in itertools.pairwise(values)):
        return f"{values[0]}..{values[-1]}"
    shown = ", ".join(map(str, values[:6]))
    return shown + (", ..." if len(values) > 6 else "")


__all__ = ["BoxCandidates", "BoxRecovery", "BoxRegistration", "BoxRun", "box_candidates"]
