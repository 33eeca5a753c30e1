"""Where an output frame differs from the reference's: per-region metrics, and whether the whole frame was re-encoded.

    regions = region_metrics(reference_frame, candidate_frame, box)   # {"mouth": {...}, "crop_rest": {...}, "outside": {...}}
    evidence = lossy_evidence(reference_frames, candidate_frames, boxes, candidate_paths=paths)
    print(evidence.text)   # lossy everywhere: JPEG quality 90 (...), outside the crop box PSNR 44.1 dB, ...

Regions of a frame, from the reference's crop box `(x0, y0, x1, y1)` (`w = x1 - x0`, `h = y1 - y0`):

- `mouth`: the 320 x 320 the U-Net writes (rows and columns 4..324 of the 328 crop) mapped back into
  frame pixels, rounded inward: `x0 + ceil(4 w / 328) .. x0 + floor(324 w / 328)`, the same for y;
- `crop_rest`: the crop box minus the mouth (the template resized to 328 and back);
- `outside`: the frame outside the crop box, which is the template itself in the reference.

Each region gets `pixels`, `psnr` (`10 log10(255² / MSE)`, 100 dB for identical, as `verdict/metrics.py` defines it), `max_abs`,
`mean_abs` (levels, over all channels) and `identical` (share of pixels identical in all three
channels), as the README's Metrics define them.

Lossy re-encoding against a wrong mouth: a port whose mouth is wrong leaves the outside region
identical. A port whose frames went through JPEG or a video codec differs everywhere outside the box
by a little (PSNR ~35-60 dB), and the differences are spread over the whole frame (`spread`: the
share of an 8 x 8 grid of cells over the frame holding any difference; ~0.9 for JPEG, even though
re-encoding a JPEG-decoded template reproduces many of its blocks exactly, ~0.05 for a region pasted
off its box). The outside region here leaves a 16-pixel margin around the box, where JPEG blocks and
chroma samples straddle the pasted mouth.

JPEG leaves 8 x 8 block edges in the error: `blockiness` is the mean |step| of the luma of the error
(candidate - reference) across block boundaries over the mean |step| inside blocks (1: no block
structure; JPEG ~1.2-2.7 from quality 100 to 50). It is not proof of JPEG: x264 `ultrafast` (no
deblocking filter) gives ~1.5, and blurring a JPEG-decoded template raises it too, since its old
block edges move most. So `kind` comes from what is known first: "video" for a video, "jpeg" for
JPEG files, else "jpeg" when the error is blocky and re-encoding the reference as JPEG re-makes the
candidate (at most half its squared error left at the best quality: ~0 for a libjpeg JPEG, ~1 for
H.264), else "unknown".

JPEG quality is read from the files' quantization tables when they are JPEGs (`ingest.jpeg_info`)
and, in any case, estimated by re-encoding the reference frames with OpenCV at qualities 50..100 (the
candidate's chroma subsampling when known) and taking the quality whose result is closest to the
candidate outside the box (least squared difference). Matching the outside PSNR against the
reference instead is ambiguous: the templates are JPEGs themselves (sanders-mini's at about quality
75), and re-encoding on their block grid makes PSNR non-monotonic in quality (measured 44.4, 43.1,
45.1, 46.6, 45.7, 49.4 dB at qualities 45, 54, 60, 63, 69, 72). Comparing with the candidate itself
is sharp at libjpeg's own quality and nearest for other encoders.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ...errors import ParityError
from ...reference.frames import mouth_box
from ..verdict.metrics import PSNR_IDENTICAL, SquaredError, abs_difference, identical_share, max_abs, mean_abs, squared_error

Box = tuple[int, int, int, int]
REGIONS = ("mouth", "crop_rest", "outside")
MARGIN = 16  # pixels around the crop box left out of the lossy evidence's outside region
BLOCK = 8  # JPEG's DCT block
CELLS = 8  # the spread of the differences: the share of an 8 x 8 grid of cells over the frame holding any
QUALITIES = range(50, 101)
QUALITY_FRAMES = 2  # reference frames re-encoded for the quality estimate
SPREAD_LOSSY = 0.5  # at least this share of the grid's cells differ: the whole frame was re-encoded
MIN_LOSSY_PSNR = 30.0  # below this the outside differs too much for an encoding: another template, swapped channels, ...
BLOCKY = 1.15  # blockiness above this: JPEG-like 8 x 8 block edges
JPEG_RESIDUAL = 0.5  # re-encoding at the best quality leaves at most this share of the squared error: a JPEG of these frames


def region_masks(frame_shape: tuple[int, ...], box: Box, margin: int = 0) -> dict[str, np.ndarray]:
    """Boolean `(H, W)` masks of `mouth`, `crop_rest` and `outside` (the latter `margin` pixels farther from the box)."""
    height, width = frame_shape[:2]
    x0, y0, x1, y1 = (int(v) for v in box)
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ParityError(f"crop box {box} is not inside the {width}x{height} frame")
    mx0, my0, mx1, my1 = mouth_box(box)
    crop = np.zeros((height, width), bool)
    crop[y0:y1, x0:x1] = True
    mouth = np.zeros((height, width), bool)
    mouth[my0:my1, mx0:mx1] = True
    outside = np.ones((height, width), bool)
    outside[max(0, y0 - margin) : y1 + margin, max(0, x0 - margin) : x1 + margin] = False
    return {"mouth": mouth, "crop_rest": crop & ~mouth, "outside": outside}


def region_metrics(reference: np.ndarray, candidate: np.ndarray, box: Box) -> dict[str, dict[str, float]]:
    """Per region: `pixels`, `psnr` (dB, 100 identical), `max_abs`, `mean_abs` (levels) and `identical` (share of pixels)."""
    return {name: region_figures(diff) for name, diff in region_differences(reference, candidate, box).items()}


def region_differences(reference: np.ndarray, candidate: np.ndarray, box: Box) -> dict[str, np.ndarray]:
    """Per region, the `(pixels, channels)` |diff| of its pixels (pool PSNR over frames with `metrics.squared_error` of these)."""
    _check_pair(reference, candidate)
    diff = abs_difference(reference, candidate)
    return {name: diff[mask] for name, mask in region_masks(reference.shape, box).items()}


def region_figures(diff: np.ndarray) -> dict[str, float]:
    """The figures of the (pixels, channels) |diff| of one region, each as `metrics.py` defines it."""
    return {
        "pixels": diff.shape[0],
        "psnr": squared_error(diff).psnr,
        "max_abs": max_abs(diff),
        "mean_abs": mean_abs(diff),
        "identical": identical_share(diff, image=True),
    }


@dataclass
class LossyEvidence:
    """Whether the candidate's frames were re-encoded lossily as a whole, and how."""

    lossy: bool
    kind: str | None  # "jpeg", "video" or "unknown" when lossy; None otherwise
    estimated_quality: int | None  # JPEG quality: the files' tables when JPEG, else the re-encoding estimate
    outside_psnr: float  # dB over the outside region (margin left out) of all frames
    blockiness: float | None  # the error's step across 8 x 8 block edges over its step inside blocks (1: none)
    text: str  # one line
    outside_identical: float = 1.0  # share of outside pixels identical
    spread: float = 0.0  # share of the frame's 8 x 8 grid cells (those mostly outside the box) holding any difference
    header_quality: int | None = None  # from the JPEG files' quantization tables
    reencoded_quality: int | None = None  # from re-encoding the reference frames
    subsampling: str | None = None  # the JPEG files' chroma subsampling
    frames: int = 0


def lossy_evidence(reference_frames: Sequence[np.ndarray], candidate_frames: Sequence[np.ndarray], boxes: Sequence[Box], *,
                   candidate_paths: Sequence[str | os.PathLike] | None = None, source: str | None = None,
                   margin: int = MARGIN) -> LossyEvidence:
    """Tell "the whole frame was re-encoded lossily" from "the mouth is wrong, the rest exact".

    `reference_frames[i]`, `candidate_frames[i]` and `boxes[i]` belong to one output frame (the
    reference's crop box). `candidate_paths`: the candidate's files, read for JPEG tables; `source`: the
    ingest kind ("video" makes a lossy verdict "video").
    """
    from .ingest import jpeg_info

    if not (len(reference_frames) == len(candidate_frames) == len(boxes)) or not reference_frames:
        raise ParityError(f"lossy evidence needs as many reference frames, candidate frames and boxes, at least one "
                          f"(got {len(reference_frames)}, {len(candidate_frames)}, {len(boxes)})")
    totals = np.zeros(len(_SUMS))
    for reference, candidate, box in zip(reference_frames, candidate_frames, boxes):
        totals += _frame_sums(reference, candidate, box, margin)
    sums = dict(zip(_SUMS, totals.tolist()))
    squared, elements, pixels, identical = sums["squared"], sums["elements"], sums["pixels"], sums["identical"]
    block_steps = (sums["edge_step"], sums["edge_count"])
    inner_steps = (sums["inner_step"], sums["inner_count"])
    differing_cells, cells = sums["differing_cells"], sums["cells"]
    outside_psnr = SquaredError(squared, int(elements)).psnr
    outside_identical = float(identical / pixels) if pixels else 1.0
    spread = float(differing_cells / cells) if cells else 0.0
    blockiness = None
    if block_steps[1] and inner_steps[1] and inner_steps[0] > 0:
        blockiness = float((block_steps[0] / block_steps[1]) / (inner_steps[0] / inner_steps[1]))
    infos = [jpeg_info(p) for p in candidate_paths[:QUALITY_FRAMES]] if candidate_paths else []
    jpeg = next((info for info in infos if info is not None), None)
    mouth_psnr = SquaredError(sums["mouth_squared"], int(sums["mouth_elements"])).psnr
    frames = len(reference_frames)

    def evidence(kind: str | None, text: str, estimated: int | None = None, reencoded: int | None = None) -> LossyEvidence:
        return LossyEvidence(lossy=kind is not None, kind=kind, estimated_quality=estimated, outside_psnr=outside_psnr,
                             blockiness=blockiness, text=text, outside_identical=outside_identical, spread=spread,
                             header_quality=jpeg.quality if jpeg else None, reencoded_quality=reencoded,
                             subsampling=jpeg.subsampling if jpeg else None, frames=frames)

    if outside_identical == 1.0:
        where = "the mouth differs" if mouth_psnr < PSNR_IDENTICAL else "the mouth is identical too"
        text = f"not re-encoded: outside the crop box identical to the reference in all {frames} frame(s); {where} (PSNR {mouth_psnr:.1f} dB)"
        return evidence(None, text)
    if spread < SPREAD_LOSSY:
        text = (f"not an encoding: outside the crop box only {spread:.0%} of the frame (of an 8x8 grid of cells) differs (PSNR {outside_psnr:.1f} dB): "
                "something is drawn outside the box (a box from another frame, a pasted region too large?)")
        return evidence(None, text)
    if outside_psnr < MIN_LOSSY_PSNR:
        text = (f"not an encoding: the frame differs everywhere outside the crop box, PSNR {outside_psnr:.1f} dB, too far for a lossy "
                "codec: another template, swapped channels or a colour conversion?")
        return evidence(None, text)

    if source == "video":
        kind = "video"
    elif jpeg is not None or (blockiness is not None and blockiness >= BLOCKY):
        kind = "jpeg"  # from the files' headers, or inferred from 8 x 8 block edges in the error
    else:
        kind = "unknown"
    reencoded = None
    if kind == "jpeg":
        match = _reencoded_quality(reference_frames[:QUALITY_FRAMES], candidate_frames[:QUALITY_FRAMES], boxes[:QUALITY_FRAMES],
                                   margin, jpeg.subsampling if jpeg else None)
        if match is not None and (jpeg is not None or match[1] <= JPEG_RESIDUAL):
            reencoded = match[0]
        elif jpeg is None:
            kind = "unknown"  # blocky, but no JPEG quality re-makes these frames: another codec (a video's, say)
    estimated = jpeg.quality if jpeg is not None else reencoded
    codec = {"jpeg": "JPEG", "video": "a video codec", "unknown": "an unknown lossy encoding"}[kind]
    quality = ""
    if kind == "jpeg":
        found = [] if jpeg is not None else ["inferred from 8x8 block edges in the error"]
        if jpeg is not None:
            found.append(f"quality {jpeg.quality} in the files' tables" + ("" if jpeg.exact else " (nearest IJG)")
                         + (f", chroma {jpeg.subsampling}" if jpeg.subsampling else ""))
        if reencoded is not None:
            found.append(f"re-encoding the reference matches quality {reencoded}")
        quality = f" ({'; '.join(found)})"
    block = f", blockiness {blockiness:.2f}" if blockiness is not None else ""
    text = (f"lossy everywhere: {codec}{quality}; outside the crop box PSNR {outside_psnr:.1f} dB, {1 - outside_identical:.0%} of pixels "
            f"differ, spread over {spread:.0%} of the frame{block}; judge these frames with a PSNR gate, or write PNG for exact parity")
    return evidence(kind, text, estimated, reencoded)


def _check_pair(reference: np.ndarray, candidate: np.ndarray) -> None:
    if reference.shape != candidate.shape or reference.ndim != 3:
        raise ParityError(f"the candidate frame is {candidate.shape}, the reference's {reference.shape}; both must be (H, W, 3) of one size")


def _cell_counts(differs: np.ndarray, outside: np.ndarray) -> tuple[int, int]:
    """(cells of a CELLS x CELLS grid over the frame that lie mostly outside the box, of those the ones holding a difference)."""
    height, width = differs.shape
    cells = differing = 0
    for r in range(CELLS):
        for c in range(CELLS):
            rows, cols = slice(r * height // CELLS, (r + 1) * height // CELLS), slice(c * width // CELLS, (c + 1) * width // CELLS)
            keep = outside[rows, cols]
            if keep.sum() * 2 < keep.size:
                continue
            cells += 1
            differing += bool(differs[rows, cols][keep].any())
    return cells, differing


_SUMS = ("squared", "elements", "pixels", "identical", "mouth_squared", "mouth_elements", "cells", "differing_cells",
         "edge_step", "edge_count", "inner_step", "inner_count")


def _frame_sums(reference: np.ndarray, candidate: np.ndarray, box: Box, margin: int) -> np.ndarray:
    """The sums (in `_SUMS` order) that lossy_evidence pools over frames, for one frame."""
    import cv2

    _check_pair(reference, candidate)
    masks = region_masks(reference.shape, box, margin)
    outside = masks["outside"]
    squared = float(cv2.norm(candidate, reference, cv2.NORM_L2SQR, outside.view(np.uint8)))
    diff = np.asarray(cv2.absdiff(candidate, reference), dtype=np.uint8)
    differs = (diff[..., 0] | diff[..., 1] | diff[..., 2]) != 0
    pixels = int(np.count_nonzero(outside))
    identical = pixels - int(np.count_nonzero(differs & outside))
    x0, y0, x1, y1 = (int(v) for v in box)
    mouth = diff[y0:y1, x0:x1][masks["mouth"][y0:y1, x0:x1]]
    mouth_squared = squared_error(mouth).total
    cells, differing_cells = _cell_counts(differs, outside)
    grey = cv2.COLOR_BGR2GRAY
    error = cv2.cvtColor(candidate.astype(np.float32), grey) - cv2.cvtColor(reference.astype(np.float32), grey)  # luma of the error
    steps = np.zeros(4)  # edge step, edge count, inner step, inner count
    for axis in (0, 1):
        step = np.abs(np.diff(error, axis=axis))
        valid = outside[1:, :] & outside[:-1, :] if axis == 0 else outside[:, 1:] & outside[:, :-1]
        kept = step * valid
        edge = (slice(BLOCK - 1, None, BLOCK), slice(None)) if axis == 0 else (slice(None), slice(BLOCK - 1, None, BLOCK))
        edge_step, edge_count = float(kept[edge].sum()), int(np.count_nonzero(valid[edge]))
        steps += (edge_step, edge_count, float(kept.sum()) - edge_step, int(np.count_nonzero(valid)) - edge_count)
    return np.array([squared, pixels * reference.shape[2], pixels, identical, mouth_squared, mouth.size, cells, differing_cells, *steps])


def _reencoded_quality(references: Sequence[np.ndarray], candidates: Sequence[np.ndarray], boxes: Sequence[Box], margin: int,
                       subsampling: str | None) -> tuple[int, float] | None:
    """The OpenCV JPEG quality (50..100) at which the re-encoded reference frames come closest to the candidate's, outside the box,
    and the share of the candidate's squared error that is left at that quality (~0 for a libjpeg JPEG of these frames).

    Every fifth quality first, then the four on each side of the closest (about 19 encodings of each frame, not 51).
    """
    import cv2

    params = [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444] if subsampling == "4:4:4" else []
    masks = [region_masks(reference.shape, box, margin)["outside"].view(np.uint8) for reference, box in zip(references, boxes)]
    if not any(mask.any() for mask in masks):
        return None
    found: dict[int, float] = {}

    def distance(quality: int) -> float:
        if quality not in found:
            squared = 0.0
            for reference, candidate, mask in zip(references, candidates, masks):
                ok, encoded = cv2.imencode(".jpg", reference, [cv2.IMWRITE_JPEG_QUALITY, quality, *params])
                decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR) if ok else None
                if decoded is None:
                    raise ParityError(f"OpenCV cannot encode and decode a JPEG at quality {quality}")
                squared += float(cv2.norm(decoded, candidate, cv2.NORM_L2SQR, mask))
            found[quality] = squared
        return found[quality]

    coarse = [q for q in QUALITIES if (q - QUALITIES.start) % 5 == 0]
    best = min(coarse, key=lambda q: (distance(q), -q))
    best = min((q for q in QUALITIES if abs(q - best) < 5), key=lambda q: (distance(q), -q))
    error = sum(float(cv2.norm(candidate, reference, cv2.NORM_L2SQR, mask)) for reference, candidate, mask in zip(references, candidates, masks))
    return best, (distance(best) / error if error else 0.0)
