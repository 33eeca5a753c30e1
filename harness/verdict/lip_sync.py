"""Lip sync from the frames: how many frames a candidate's mouth lags the reference's (or the sound), and how closely
it follows it. Separate from the check of a video's sound track, which compares the audio itself.

    motion = mouth_motion(frames, boxes, templates)                # one value per output frame
    sync = measure_lip_sync(motion, reference=reference_motion)    # or envelope=audio_envelope(pcm, len(motion))
    sync = lip_sync_of_dumps(candidate_dump, dataset, reference=reference_dump)   # or pcm=...: both from dumps
    print(sync.summary())    # lip sync against the reference: offset +2 frames (+80 ms, the mouth is late), score 0.97 ...
    LipSync.from_dict(sync.to_dict()) == sync

    recorder = MotionRecorder()                                    # as a pipeline writes its frames, one at a time
    recorder.add(index, frame, crop_box, template_index, template); motion = recorder.motion(dataset)

`LipSync` and `SyncWindow` are result types (`types.py`): result.json's `lip_sync`, which `parity run` (against the
reference's motion, or the audio's with --no-compare), `parity compare` of a port's frames or video and of a dump
write (docs/metrics.md, *Lip sync*).

**The mouth's motion.** For each output frame, the mouth box (the 320 x 320 the U-Net writes, mapped back into the
frame: `reference.frames.mouth_box`) is compared with the same pixels of the template the frame was made from: the
signal is how much darker the box is than the template (mean over the box, grey levels). A mouth that opens darkens
its box, one that closes lightens it; against the template, what the template does by itself (head motion, its own
mouth) cancels, and what is left is what the network made of the audio. Without the templates, the signal is the
box's own darkness (head motion then counts too). Slow drifts are not speech: both signals are high-passed (a
centred moving average of `HIGH_PASS` frames subtracted).

**Offset and score.** The candidate's signal is compared with the reference's at every lag within `max_lag` frames:
`offset_frames = k` when candidate frame i moves as reference frame i - k does (positive: the mouth is late, it moves
after the sound; negative: early). A port whose features are delayed by k frames measures k; one whose audio input
starts 80 ms late measures +2. The score at a lag is the concordance `2 cov(c, r) / (var c + var r)` of the two
high-passed signals over the frames both hold: 1 when the candidate moves exactly as the reference does, about 0 when
its mouth ignores the audio (a silent or constant audio input leaves only the template's part, which the template
difference and the high-pass remove), in between for a mouth that moves less, more or otherwise. `score` is the
score at `offset_frames`, `score_at_zero` the score without any offset. Without a reference, the signal is compared
with the sound's loudness (the mean log-mel of each frame's 40 ms: `audio_envelope`) and the score is the Pearson correlation
(the units differ), so the offset then includes the model's own latency. Against the audio there is no reference
motion to say whether the mouth moves with the sound at all, so the best lag must also beat chance: the same search
against sounds with the same loudness spectrum but scrambled timing (phase-randomized surrogates of the loudness)
gives the best scores chance reaches, and a best score not above their 95th percentile is "not measured". The clip gets
one offset and score; windows of `WINDOW` frames (hop `HOP`) get theirs, for a plot over the clip.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ...errors import ParityError
from .types import LipSync, SyncWindow

FPS = 25.0
MAX_LAG = 8  # frames searched either way: 320 ms
WINDOW, HOP = 50, 25  # frames per window (2 s) and between window starts
HIGH_PASS = 9  # frames in the moving average subtracted from each signal
STILL = 0.05  # grey levels: a reference mouth whose high-passed motion varies less than this is not measured
AGAINST = ("reference", "audio")

Box = tuple[int, int, int, int]


def mouth_motion(frames: Iterable[np.ndarray], boxes: Iterable[Sequence[int]], templates: Iterable[np.ndarray] | None = None) -> np.ndarray:
    """The mouth's darkness per frame: the mean grey level of the template's mouth box minus the frame's (BGR uint8
    frames; crop boxes `(xmin, ymin, xmax, ymax)`), or minus the frame's alone without templates. Iterables, so a long
    clip is read one frame at a time."""
    values = []
    pairs = zip(frames, boxes, templates) if templates is not None else ((f, b, None) for f, b in zip(frames, boxes))
    for index, (frame, box, template) in enumerate(pairs):
        grey = mouth_grey(frame, box, index)
        if template is None:
            values.append(-grey)
            continue
        if template.shape != frame.shape:
            raise ParityError(f"frame {index}: {frame.shape[1]}x{frame.shape[0]}, but its template is {template.shape[1]}x{template.shape[0]}")
        values.append(mouth_grey(template, box, index) - grey)
    return np.asarray(values)


def mouth_grey(image: np.ndarray, box: Sequence[int], index: int = 0) -> float:
    """The mean grey level of the mouth box (`reference.frames.mouth_box` of the crop box) of a BGR uint8 image."""
    import cv2

    from ...reference.frames import mouth_box

    x0, y0, x1, y1 = mouth_box(tuple(int(v) for v in box))  # type: ignore[arg-type]
    if not (0 <= x0 < x1 <= image.shape[1] and 0 <= y0 < y1 <= image.shape[0]):
        raise ParityError(f"frame {index}: mouth box {(x0, y0, x1, y1)} is outside the {image.shape[1]}x{image.shape[0]} frame")
    return float(cv2.cvtColor(np.ascontiguousarray(image[y0:y1, x0:x1]), cv2.COLOR_BGR2GRAY).astype(np.float64).mean())


class MotionRecorder:
    """The mouth motion of frames as a pipeline makes them, one at a time (`add`), without keeping them: each frame's
    mouth-box grey level now; its template's now too when `add` is given the decoded template (the pipeline's own),
    else at the end (`motion`: each template read once, as `mouth_motion` with the templates computes it)."""

    def __init__(self) -> None:
        self._frames: dict[int, tuple[float, Box, int]] = {}
        self._templates: dict[tuple[int, Box], float] = {}

    def add(self, index: int, frame: np.ndarray, crop_box: Sequence[int], template_index: int,
            template: np.ndarray | None = None) -> None:
        box: Box = tuple(int(v) for v in crop_box)  # type: ignore[assignment]
        self._frames[int(index)] = (mouth_grey(frame, box, int(index)), box, int(template_index))
        if template is not None and (int(template_index), box) not in self._templates:
            self._templates[(int(template_index), box)] = mouth_grey(template, box, int(index))

    def __len__(self) -> int:
        return len(self._frames)

    def motion(self, dataset: Any) -> np.ndarray:
        """Frame 0..n-1's darkening against its template (`dataset`'s), in frame order."""
        if sorted(self._frames) != list(range(len(self._frames))):
            missing = sorted(set(range(max(self._frames, default=-1) + 1)) - set(self._frames))
            raise ParityError(f"lip sync needs every frame from 0; frame {missing[0]} was not recorded")
        templates = dict(self._templates)
        values = []
        for index in range(len(self._frames)):
            grey, box, template = self._frames[index]
            if (template, box) not in templates:
                templates[(template, box)] = mouth_grey(dataset.templates[template].read_image(), box, index)
            values.append(templates[(template, box)] - grey)
        return np.asarray(values)


def not_measured(against: str, note: str, fps: float = FPS, max_lag: int = MAX_LAG) -> LipSync:
    """A lip sync that could not be measured, saying why (`note`)."""
    return LipSync(against, 0, fps, max_lag, None, None, None, note=note)  # type: ignore[arg-type]


def audio_envelope(pcm: np.ndarray, frames: int, fps: float = FPS) -> np.ndarray:
    """The sound's loudness per output frame: the mean of the normalized log-mel spectrogram (the models' own front end,
    `reference.audio.mel_spectrogram`: 16 kHz PCM, 80 mel frames a second) over frame i's `[i, i + 1) / fps`. Measured
    on the golden clip it follows what a mouth can follow better than the log RMS of the samples does (correlation
    with the mel loudness the listening weights open the mouth by: 0.91, against 0.63), since the log of a quiet
    frame's RMS swings with the noise floor."""
    from ...reference.audio import mel_spectrogram

    return mel_envelope(mel_spectrogram(np.asarray(pcm, np.float32)), frames, fps)


def mel_envelope(mel: np.ndarray, frames: int, fps: float = FPS) -> np.ndarray:
    """`audio_envelope` from the clip's mel spectrogram already computed (`(T, 80)`, as `audio.mel` holds it)."""
    from ...reference.audio import MEL_FPS

    levels = []
    for i in range(frames):
        start = min(int(i * MEL_FPS / fps), len(mel) - 1)
        stop = max(start + 1, min(int((i + 1) * MEL_FPS / fps), len(mel)))
        levels.append(float(mel[start:stop].mean()))
    return np.asarray(levels)


def measure_lip_sync(candidate: np.ndarray, reference: np.ndarray | None = None, envelope: np.ndarray | None = None, fps: float = FPS,
                     max_lag: int = MAX_LAG, window: int = WINDOW, hop: int = HOP) -> LipSync:
    """Offset and score of the candidate's mouth motion against the reference's (`mouth_motion` of both), or, without
    a reference, against the audio's loudness (`audio_envelope`)."""
    if (reference is None) == (envelope is None):
        raise ParityError("lip sync needs one of: the reference's mouth motion, or the audio's envelope")
    against = "reference" if reference is not None else "audio"
    other = np.asarray(reference if reference is not None else envelope, np.float64)
    count = min(len(candidate), len(other))
    c, r = high_pass(np.asarray(candidate, np.float64)[:count]), high_pass(other[:count])
    lags = range(-max_lag, max_lag + 1)
    blank = LipSync(against, count, fps, max_lag, None, None, None, [], _rounded(c), _rounded(r))
    if count < 2 * max_lag + 2:
        blank.note = f"{count} frames: too few for lags of up to {max_lag} frames (at least {2 * max_lag + 2})"
        return blank
    if against == "reference" and r.std() < STILL:
        blank.note = f"the reference's mouth hardly moves (motion {r.std():.3f} grey levels): weights that do not hear the audio?"
        return blank
    score = _concordance if against == "reference" else _correlation
    offset, best, at_zero = _best_lag(c, r, range(count), lags, score)
    if against == "audio":
        chance = _chance(c, r, max_lag)
        if best is None or chance is None or best <= chance:
            shown = "no lag scores" if best is None else f"the best lag ({offset:+d} frames) scores {best:.2f}"
            reach = "" if chance is None else f", where a sound unrelated to the mouth reaches {chance:.2f}"
            blank.note = (f"the mouth does not follow the audio's loudness beyond chance: {shown}{reach} "
                          "(weights that do not hear the audio?)")
            return blank
    windows = []
    starts = range(0, max(count - window, 0) + 1, hop) if count > window else [0]
    for start in starts:
        span = range(start, min(start + window, count))
        found = _best_lag(c, r, span, lags, score)
        windows.append(SyncWindow(start, len(span), found[0], None if found[1] is None else round(found[1], 4)))
    return LipSync(against, count, fps, max_lag, offset, None if best is None else round(best, 4), None if at_zero is None else round(at_zero, 4),
                   windows, _rounded(c), _rounded(r))


def lip_sync_of_dumps(candidate: Any, dataset: Any, reference: Any = None, pcm: np.ndarray | None = None, fps: float = FPS) -> LipSync:
    """`measure_lip_sync` of a dump's output frames (every frame from 0: `--dump-every 1`) against a reference dump's
    (over the frames both hold), or, with `pcm` instead, against the audio's loudness. Each frame's crop box and
    template come from the dump itself when it holds them, else from the reference dump (a port's frames hold
    neither); the templates from `dataset` (None: the mouth box's own darkness, so the template's motion counts too)."""
    def frames_of(dump: Any) -> list[int]:
        frames = sorted(dump.frames("frame.output")) if "frame.output" in dump.stage_names else []
        if not frames or frames != list(range(len(frames))) or len(frames) < min(dump.frame_count, 2):
            raise ParityError(f"{dump.path}: lip sync needs frame.output for every frame ({len(frames)} of {dump.frame_count} dumped); "
                              "dump every frame (parity run --dump-every 1)")
        return frames

    def source_of(dump: Any, frames: list[int]) -> Any:
        for holder in (dump, reference):
            if holder is not None and all(stage in holder.stage_names and set(frames) <= set(holder.frames(stage))
                                          for stage in ("frame.crop_box", "frame.template_index")):
                return holder
        raise ParityError(f"{dump.path}: lip sync needs each frame's crop box and template (frame.crop_box, frame.template_index)")

    template_grey: dict[tuple[int, Box], float] = {}  # each template's mouth box, read once

    def motion(dump: Any, frames: list[int]) -> np.ndarray:
        return dump_motion(dump, dataset, frames, source_of(dump, frames), template_grey)

    if reference is None and pcm is None:
        raise ParityError("lip sync needs a reference dump or the audio")
    ours = frames_of(candidate)
    if reference is not None:
        theirs = frames_of(reference)
        common = ours[: len(theirs)]
        return measure_lip_sync(motion(candidate, common), reference=motion(reference, common), fps=fps)
    return measure_lip_sync(motion(candidate, ours), envelope=audio_envelope(np.asarray(pcm), len(ours), fps), fps=fps)


def dump_motion(dump: Any, dataset: Any, frames: Sequence[int], source: Any = None, template_grey: dict | None = None) -> np.ndarray:
    """`mouth_motion` of `dump`'s output frames `frames`, each frame's crop box and template read from `source` (default:
    the dump itself) and the templates from `dataset` (None: the mouth box's own darkness). `template_grey` keeps each
    template's mouth-box grey level across calls (each template read once)."""
    source = dump if source is None else source
    template_grey = {} if template_grey is None else template_grey
    values = []
    for i in frames:
        box: Box = tuple(int(v) for v in source.frame("frame.crop_box", i))  # type: ignore[assignment]
        output = dump.frame("frame.output", i)
        grey = mouth_grey(output, box, i)
        if dataset is None:
            values.append(-grey)
            continue
        key = (int(source.frame("frame.template_index", i)), box)
        if key not in template_grey:
            template = dataset.templates[key[0]].read_image()
            if template.shape != output.shape:
                raise ParityError(f"frame {i}: {dump.path}'s frames are not the size of the dataset's templates")
            template_grey[key] = mouth_grey(template, box, i)
        values.append(template_grey[key] - grey)
    return np.asarray(values)


def high_pass(signal: np.ndarray, size: int = HIGH_PASS) -> np.ndarray:
    """The signal minus its centred moving average over `size` frames (edges: the nearest value repeated; as
    `scipy.ndimage.uniform_filter1d(mode="nearest")`, whose import alone costs a run ~0.4 s)."""
    signal = np.asarray(signal, np.float64)
    if len(signal) < size:
        return signal - signal.mean()
    left = size // 2
    padded = np.pad(signal, (left, size - 1 - left), mode="edge")
    sums = np.cumsum(np.concatenate(([0.0], padded)))
    return signal - (sums[size:] - sums[:-size]) / size


def _best_lag(c: np.ndarray, r: np.ndarray, span: Iterable[int], lags: Iterable[int], score) -> tuple[int | None, float | None, float | None]:
    """The lag with the highest score over the candidate frames `span` (ties: the smaller lag), its score, and lag 0's."""
    indices = np.asarray(list(span))
    found: list[tuple[float, int]] = []
    for lag in lags:
        i = indices[(indices - lag >= 0) & (indices - lag < len(r))]
        value = score(c[i], r[i - lag]) if len(i) >= 4 else None
        if value is not None:
            found.append((value, lag))
    at_zero = next((value for value, lag in found if lag == 0), None)
    if not found:
        return None, None, at_zero
    value, lag = max(found, key=lambda item: (item[0], -abs(item[1]), item[1]))
    return lag, value, at_zero


def _chance(c: np.ndarray, r: np.ndarray, max_lag: int, share: float = 95.0, surrogates: int = 200) -> float | None:
    """The best correlation over lags within `max_lag` that `c` reaches with sounds like `r` but unrelated to it: `r`'s
    phase-randomized surrogates (the same spectrum, so the same smoothness, with every timing scrambled; a fixed
    seed, so the same clip gives the same figure), the `share` percentile of their best scores (`_best_lag`'s
    search with `_correlation`, for all surrogates at once)."""
    count = len(r)
    rng = np.random.default_rng(0)
    spectrum = np.fft.rfft(r - r.mean())
    phases = np.exp(2j * np.pi * rng.uniform(size=(surrogates, len(spectrum))))
    phases[:, 0] = 1
    if count % 2 == 0:
        phases[:, -1] = 1
    sounds = np.fft.irfft(spectrum * phases, count, axis=1)
    indices = np.arange(len(c))
    best = np.full(surrogates, -np.inf)
    for lag in range(-max_lag, max_lag + 1):
        i = indices[(indices - lag >= 0) & (indices - lag < count)]
        if len(i) < 4:
            continue
        ours = c[i] - c[i].mean()
        theirs = sounds[:, i - lag]
        theirs = theirs - theirs.mean(axis=1, keepdims=True)
        norms = np.sqrt(float(ours @ ours) * np.einsum("ij,ij->i", theirs, theirs))
        valid = norms > 0
        values = np.full(surrogates, -np.inf)
        values[valid] = (theirs[valid] @ ours) / norms[valid]
        best = np.maximum(best, values)
    best = best[np.isfinite(best)]
    return float(np.percentile(best, share)) if len(best) else None


def _concordance(c: np.ndarray, r: np.ndarray) -> float | None:
    c, r = c - c.mean(), r - r.mean()
    total = float(np.dot(c, c) + np.dot(r, r))
    return None if total <= 0 else 2 * float(np.dot(c, r)) / total


def _correlation(c: np.ndarray, r: np.ndarray) -> float | None:
    c, r = c - c.mean(), r - r.mean()
    norm = math.sqrt(float(np.dot(c, c)) * float(np.dot(r, r)))
    return None if norm <= 0 else float(np.dot(c, r)) / norm


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 4) for v in values]
