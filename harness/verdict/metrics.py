"""Every figure a comparison reports, defined once: |diff|, its 99th percentile, the identical share, PSNR, SSIM, cosine.

The README's "Metrics" table is the spec; `docs/metrics.md` says what each means and how result.json writes it.
Whatever compares two images or tensors (the stage comparison, the port's regions and lossy evidence, the
simulation's scores, the alignment, locate) calls these, so a convention cannot drift between them:

- **PSNR** is `10 log10(peak² / MSE)` dB with peak 255 (uint8 levels; float data on the 0..255 scale), at most
  `PSNR_IDENTICAL` (100 dB), which identical data gets exactly; non-finite data (a NaN or Inf candidate) gets 0 dB.
  It is pooled over frames or regions as torcheval does, by adding its accumulator (`SquaredError`: the sum of
  squared errors and the element count), never by turning a PSNR back into an MSE.
- **identical** is the share of elements equal in both; for images, of pixels equal in all three channels.
- **p99** is the 99th percentile of |diff|: exact up to `EXACT_P99_ELEMENTS`, then read from a histogram.
- **SSIM** is scikit-image's `structural_similarity` (7 x 7 window, data range 255, the channel mean).
- **cosine** is the cosine similarity of two vectors; 1 when both are zero, 0 when one is, or when either is not finite.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .types import PSNR_IDENTICAL

PEAK = 255.0  # PSNR's peak: uint8 levels (float stages are scaled to 0..255 first)
SSIM_WINDOW = 7  # scikit-image's default window
EXACT_P99_ELEMENTS = 5_000_000
_FLOAT_EDGES = np.concatenate([[0.0], np.logspace(-12, 6, 1801)])  # 100 log bins per decade: p99 within 2.3 %


def psnr(mse: float, peak: float = PEAK) -> float:
    """PSNR in dB of a mean squared error: at most PSNR_IDENTICAL, exactly that for 0; 0 dB for a non-finite error."""
    if not math.isfinite(mse):
        return 0.0
    if mse <= 0:
        return PSNR_IDENTICAL
    return float(min(PSNR_IDENTICAL, 10 * math.log10(peak * peak / mse)))


@dataclass(frozen=True)
class SquaredError:
    """PSNR's accumulator: the sum of squared errors (0..255 scale) and how many elements it covers. Pool frames or
    regions by adding accumulators (`a + b`), then take `.psnr`."""

    total: float = 0.0
    count: int = 0

    def __add__(self, other: SquaredError) -> SquaredError:
        return SquaredError(self.total + other.total, self.count + other.count)

    @property
    def mse(self) -> float:
        return self.total / self.count if self.count else 0.0

    @property
    def psnr(self) -> float:
        """PSNR_IDENTICAL for no elements or no error."""
        return psnr(self.mse)

    @property
    def identical(self) -> bool:
        return self.total == 0


def pooled(errors: Iterable[SquaredError]) -> SquaredError:
    """The sum of accumulators (frames, regions) of one PSNR."""
    total = SquaredError()
    for error in errors:
        total = total + error
    return total


def squared_error(diff: np.ndarray, scale: float = 1.0) -> SquaredError:
    """The accumulator of an absolute difference (exact integer sums for integer data; `scale` maps floats to 0..255).
    A non-finite difference gives an infinite total (PSNR 0 dB)."""
    if diff.dtype.kind in "iu":
        return SquaredError(float(np.square(diff, dtype=np.int64).sum(dtype=np.int64)) * scale * scale, int(diff.size))
    if not np.isfinite(diff).all():
        return SquaredError(math.inf, int(diff.size))
    return SquaredError(float(np.square(diff * scale).sum()), int(diff.size))


def abs_difference(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """|candidate - reference|: int16 for two uint8 arrays (exact, fast), float64 otherwise (NaN/Inf kept)."""
    if reference.dtype == np.uint8 and candidate.dtype == np.uint8:
        return np.abs(candidate.astype(np.int16) - reference.astype(np.int16))
    return np.abs(candidate.astype(np.float64) - reference.astype(np.float64))


def identical_count(diff: np.ndarray, image: bool) -> tuple[int, int]:
    """(identical units, units) of an absolute difference: for images (H, W, C) units are pixels, identical in every
    channel; otherwise elements."""
    if image and diff.ndim >= 2:
        differs = any_channel(diff != 0)
        return int(differs.size - np.count_nonzero(differs)), int(differs.size)
    return int(np.count_nonzero(diff == 0)), int(diff.size)


def any_channel(mask: np.ndarray) -> np.ndarray:
    """`np.any(mask, axis=-1)` of a boolean (..., C) array, as an OR of its C channel slices: the same values, 6-8 times
    faster on a 720p RGB frame (numpy's reduction over a short last axis is slow; 13 ms against 2 ms measured here)."""
    if mask.shape[-1] == 0:
        return np.zeros(mask.shape[:-1], dtype=bool)
    out = mask[..., 0].copy()
    for channel in range(1, mask.shape[-1]):
        out |= mask[..., channel]
    return out


def identical_share(diff: np.ndarray, image: bool) -> float:
    """Share of identical units (see `identical_count`); 1 for empty data."""
    identical, units = identical_count(diff, image)
    return identical / units if units else 1.0


def max_abs(diff: np.ndarray) -> float:
    """Largest |diff|: inf where any is not finite, 0 for empty data."""
    if diff.size and not np.isfinite(diff).all():
        return math.inf
    return float(diff.max(initial=0))


def mean_abs(diff: np.ndarray) -> float:
    """Mean |diff| over the elements; 0 for empty data."""
    return float(diff.mean()) if diff.size else 0.0


class Percentile99:
    """The 99th percentile of |diff| over many arrays: exact up to EXACT_P99_ELEMENTS elements, then read from a histogram
    (exact for uint8 levels; 100 log bins per decade for floats, within 2.3 %). Add finite differences only."""

    def __init__(self) -> None:
        self.kept: list[np.ndarray] | None = []
        self.histogram: np.ndarray | None = None
        self.integers = True

    def add(self, finite: np.ndarray) -> None:
        finite = finite.ravel()
        self.integers = self.integers and finite.dtype.kind in "iu"
        if self.kept is not None:
            self.kept.append(finite.astype(np.uint8 if self.integers else np.float32))
            if sum(d.size for d in self.kept) > EXACT_P99_ELEMENTS:
                self.kept = None
        if self.integers:
            counts = np.bincount(finite.astype(np.int64), minlength=256)[:256]
        else:
            counts = np.histogram(np.clip(finite, 0, _FLOAT_EDGES[-1]), bins=_FLOAT_EDGES)[0]
        self.histogram = counts if self.histogram is None else self.histogram + counts

    @property
    def value(self) -> float:
        if self.kept is not None:
            values = np.concatenate(self.kept) if self.kept else np.zeros(1)
            return float(np.percentile(values.astype(np.float64), 99)) if values.size else 0.0
        assert self.histogram is not None  # filled by every add()
        cumulative = np.cumsum(self.histogram)
        position = int(np.searchsorted(cumulative, 0.99 * cumulative[-1]))
        if self.integers:
            return float(position)
        return 0.0 if position == 0 else float(_FLOAT_EDGES[position + 1])


def cosine(dot: float, norm_a_squared: float, norm_b_squared: float) -> float:
    """Cosine similarity from the dot product and the squared norms: 1 when both vectors are zero, 0 when one is."""
    if not all(math.isfinite(v) for v in (dot, norm_a_squared, norm_b_squared)):
        return 0.0
    if norm_a_squared == 0 and norm_b_squared == 0:
        return 1.0
    if norm_a_squared == 0 or norm_b_squared == 0:
        return 0.0
    return float(dot / math.sqrt(norm_a_squared * norm_b_squared))


def row_cosines(reference: np.ndarray, candidate: np.ndarray, width: int = 512) -> list[float]:
    """Cosine similarity of each `width`-value row (audio features, U-Net audio windows), in float64; the whole array
    as one row when its size is not a multiple of `width`."""
    ref, cand = reference.astype(np.float64), candidate.astype(np.float64)
    rows = (ref.reshape(-1, width), cand.reshape(-1, width)) if ref.size % width == 0 else (ref.reshape(1, -1), cand.reshape(1, -1))
    out = []
    for r, c in zip(*rows):
        nr, nc = np.linalg.norm(r), np.linalg.norm(c)
        if not (np.isfinite(nr) and np.isfinite(nc)):
            out.append(0.0)
        elif nr == 0 or nc == 0:
            out.append(cosine(0.0, float(nr), float(nc)))
        else:
            out.append(float(np.dot(r, c) / (nr * nc)))
    return out


def ssim(reference: np.ndarray, candidate: np.ndarray) -> float:
    """SSIM (scikit-image: 7 x 7 window, channel mean, data range 255) of two uint8 images over the whole image.

    Exactly what `structural_similarity(reference, candidate, channel_axis=2)` returns, computed only where
    the images differ: a window with no differing pixel has SSIM exactly 1, so the map is evaluated on the
    rectangle that differs (plus the window's reach) and every other pixel counts 1. NaN for images under
    7 x 7 pixels.
    """
    from skimage.metrics import structural_similarity

    if min(reference.shape[:2]) < SSIM_WINDOW:
        return float("nan")
    differs = any_channel(reference != candidate) if reference.ndim == 3 else reference != candidate
    if not differs.any():
        return 1.0
    pad = (SSIM_WINDOW - 1) // 2
    height, width = differs.shape
    rows, cols = np.nonzero(differs.any(axis=1))[0], np.nonzero(differs.any(axis=0))[0]
    y0, y1 = max(0, rows[0] - pad), min(height, rows[-1] + 1 + pad)  # pixels whose window sees a difference
    x0, x1 = max(0, cols[0] - pad), min(width, cols[-1] + 1 + pad)
    cy0, cy1, cx0, cx1 = max(0, y0 - pad), min(height, y1 + pad), max(0, x0 - pad), min(width, x1 + pad)  # their windows
    channel = {"channel_axis": 2} if reference.ndim == 3 else {}
    _, local = structural_similarity(reference[cy0:cy1, cx0:cx1], candidate[cy0:cy1, cx0:cx1], data_range=255, full=True, **channel)
    local = local.mean(axis=2) if local.ndim == 3 else local
    window_map = np.ones((height, width))
    window_map[y0:y1, x0:x1] = local[y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0]
    return float(window_map[pad : height - pad, pad : width - pad].mean())  # scikit-image leaves out the border
