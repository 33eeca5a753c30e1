"""The colours of a port's video checked against its pixels: which YUV conversion (BT.601 or BT.709 matrix, limited
or full range) its frames were made with, against what its stream declares (what every decoder, and this toolkit,
reads them as).

A port that converts its BGR frames to YUV itself (a Go or Swift port writing raw yuv420p to FFmpeg), or tells
FFmpeg one conversion and tags another, makes a video whose colours are shifted everywhere once decoded: full-range
values read as limited range crush the blacks and clip the whites; a BT.709 matrix read as BT.601 shifts the hues.
Outside the crop box a port writes the template itself, so there the candidate is the reference's frame through the
port's conversion and its codec. Each conversion is applied to the reference's frames (PyAV's swscale: BGR to the
stream's YUV format with that matrix and range, then back as the stream declares) and compared with the candidate
outside the crop box, both low-passed (area-averaged by `BLOCK`: the codec's noise averages out, a colour shift
does not):

    check = check_colour(encoding, reference_frames, candidate_frames, boxes)
    check.mismatch, check.text()   # "the pixels were converted with full range; the stream declares limited range ..."

The range and the matrix are decided apart, each only when one value beats the other by `MARGIN_DB`, and neither when
no conversion fits (`FITS_DB`: outside the box the port wrote other frames than the reference's; on sanders-mini's
skin and grey tones BT.601 and BT.709 differ by about half a level, within an x264 CRF 20 codec's noise: the matrix
is then "not told apart" and nothing is claimed about it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..verdict.metrics import psnr

Box = tuple[int, int, int, int]
COLOUR_FRAMES = 8  # frames of the floor's run compared
BLOCK = 8  # area-averaging factor before comparing
MARGIN_DB = 3.0  # one range (or matrix) is told from the other when it fits the candidate by this much more
FITS_DB = 35.0  # and only when it fits at all: below this, outside the box is not the reference's frame (another template)
MATRICES = {"smpte170m": "BT.601", "bt709": "BT.709"}  # the matrices checked, by FFmpeg's tag name
DECLARED_MATRICES = {None: "smpte170m", "smpte170m": "smpte170m", "bt470bg": "smpte170m", "bt709": "bt709"}  # unspecified: read as BT.601
RANGES = {"tv": "limited range", "pc": "full range"}
_SWS_MATRIX = {"smpte170m": "itu601", "bt709": "itu709"}
_SWS_RANGE = {"tv": "MPEG", "pc": "JPEG"}
_PLANAR = {"yuv420p": "yuv420p", "yuvj420p": "yuv420p", "yuv422p": "yuv422p", "yuvj422p": "yuv422p", "yuv444p": "yuv444p",
           "yuvj444p": "yuv444p", "nv12": "nv12"}


@dataclass(frozen=True)
class ColourCheck:
    """Per conversion (matrix, range), the candidate against the reference made with it and read as declared, outside the
    crop box, low-passed (dB); the range and matrix told from the pixels (None: not told apart)."""

    declared: tuple[str, str]  # matrix, range as the stream is read
    declared_text: str
    scores: dict[tuple[str, str], float]
    matrix: str | None
    range: str | None

    @property
    def mismatch(self) -> bool:
        return (self.range is not None and self.range != self.declared[1]) or (self.matrix is not None and self.matrix != self.declared[0])

    def describe(self, matrix: str | None, range_: str | None) -> str:
        parts = [MATRICES[matrix] if matrix else "", RANGES[range_] if range_ else ""]
        return " ".join(p for p in parts if p) or "?"

    def text(self) -> str:
        told = self.describe(self.matrix, self.range)
        found = (self.matrix or self.declared[0], self.range or self.declared[1])
        evidence = (f"outside the crop box, area-averaged by {BLOCK}: {self.scores[found]:.1f} dB as {self.describe(*found)} vs "
                    f"{self.scores[self.declared]:.1f} dB as declared")
        if self.range is None and self.matrix is None and max(self.scores.values()) < FITS_DB:
            return (f"colours not checked: outside the crop box the frames are not the reference's through any conversion "
                    f"(best {max(self.scores.values()):.1f} dB, area-averaged by {BLOCK})")
        if not self.mismatch:
            untold = "" if self.matrix else "; BT.601 and BT.709 not told apart on these colours"
            return f"colours as the stream declares ({self.declared_text}; {evidence}){untold}"
        return (f"the pixels were converted to YUV with {told}, the stream declares {self.declared_text}: every decoder shows the "
                f"colours shifted everywhere ({evidence})")


def check_colour(pixel_format: str | None, color_matrix: str | None, color_range: str | None, reference: Sequence[np.ndarray],
                 candidate: Sequence[np.ndarray], boxes: Sequence[Box]) -> ColourCheck | None:
    """Which conversion the candidate's frames were made with, against what its stream declares; None when the stream's
    pixel format or matrix is not one checked (RGB, BT.2020, ...) or there are no frames."""
    planar = _PLANAR.get(pixel_format or "yuv420p")
    declared_matrix = DECLARED_MATRICES.get(color_matrix)
    if planar is None or declared_matrix is None or not reference:
        return None
    full = color_range == "pc" or (color_range is None and (pixel_format or "").startswith("yuvj"))
    declared = (declared_matrix, "pc" if full else "tv")
    declared_text = (f"{MATRICES[declared_matrix]}{'' if color_matrix else ' (unspecified)'}, "
                     f"{RANGES[declared[1]]}{'' if color_range else ' (unspecified)'}")
    count = min(COLOUR_FRAMES, len(reference), len(candidate))
    candidate_small = [_small(frame) for frame in candidate[:count]]
    masks = [_outside(frame.shape, box) for frame, box in zip(reference[:count], boxes[:count])]
    scores = {}
    for matrix in MATRICES:
        for range_ in RANGES:
            error = count_ = 0.0
            for frame, small, mask in zip(reference[:count], candidate_small, masks):
                diff = _small(_converted(frame, planar, (matrix, range_), declared)) - small
                error += float(np.sum(diff[mask] ** 2))
                count_ += float(diff[mask].size)
            scores[(matrix, range_)] = psnr(error / max(1.0, count_))
    best = max(scores, key=lambda k: scores[k])
    if scores[best] < FITS_DB:
        return ColourCheck(declared, declared_text, scores, None, None)
    other_range = (best[0], "pc" if best[1] == "tv" else "tv")
    other_matrix = ("bt709" if best[0] == "smpte170m" else "smpte170m", best[1])
    told_range = best[1] if scores[best] >= scores[other_range] + MARGIN_DB else None
    told_matrix = best[0] if scores[best] >= scores[other_matrix] + MARGIN_DB else None
    return ColourCheck(declared, declared_text, scores, told_matrix, told_range)


def _converted(frame: np.ndarray, planar: str, conversion: tuple[str, str], declared: tuple[str, str]) -> np.ndarray:
    """The BGR frame converted to `planar` YUV with `conversion` (matrix, range) and read back as `declared`."""
    import av

    yuv = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="bgr24").reformat(
        format=planar, dst_colorspace=_SWS_MATRIX[conversion[0]], dst_color_range=_SWS_RANGE[conversion[1]])
    return np.asarray(yuv.reformat(format="bgr24", src_colorspace=_SWS_MATRIX[declared[0]], src_color_range=_SWS_RANGE[declared[1]]).to_ndarray())


def _small(frame: np.ndarray) -> np.ndarray:
    import cv2

    height, width = frame.shape[:2]
    return np.asarray(cv2.resize(frame, (width // BLOCK, height // BLOCK), interpolation=cv2.INTER_AREA), dtype=np.float64)


def _outside(shape: tuple[int, ...], box: Box) -> np.ndarray:
    """(h // BLOCK, w // BLOCK) bool: the low-passed blocks that hold no pixel of the crop box."""
    height, width = shape[0] // BLOCK, shape[1] // BLOCK
    xmin, ymin, xmax, ymax = box
    mask = np.ones((height, width), bool)
    mask[max(0, ymin // BLOCK) : (ymax + BLOCK - 1) // BLOCK, max(0, xmin // BLOCK) : (xmax + BLOCK - 1) // BLOCK] = False
    return mask
