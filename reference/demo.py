"""Built-in demo inputs: an avatar dataset and a speech-like WAV, made locally with no download.

The avatar is scikit-image's astronaut portrait, moved a little frame to frame like a head in a
video; its landmarks come from scikit-image's LBP face detector, laid out as SyncTalk_2D's 110
points. The audio is a small formant synthesiser (voiced syllables, pauses, fricatives).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf
from scipy import signal

from ..errors import ParityError

DEMO_VERSION = 2  # 2: the mouth at SyncTalk's lip points (90-109), which the listening weights read
FRAME_WIDTH, FRAME_HEIGHT = 448, 480  # not square, so a width/height mix-up shows
SAMPLE_RATE = 16000
LANDMARK_COUNT = 110
JPEG_QUALITY = 95
AUDIO_NAME = "aud.wav"
MANIFEST_NAME = "demo.json"


@dataclass(frozen=True)
class DemoInputs:
    dataset_dir: Path  # SyncTalk layout: full_body_img/{i}.jpg and landmarks/{i}.lms
    audio_path: Path  # 16 kHz mono int16 WAV


def make_demo(out_dir: Path, templates: int = 40, seconds: float = 4.0, seed: int = 0) -> DemoInputs:
    """Make the demo in `out_dir` (or reuse it there if made with the same parameters).

    Deterministic for a given seed. Written into a temporary sibling folder and renamed into
    place, so an interrupted run never leaves a half-written demo that looks complete.
    """
    if templates < 2:
        raise ParityError(f"demo needs at least 2 templates, got {templates}")
    if seconds < 0.5:
        raise ParityError(f"demo audio must last at least 0.5 s, got {seconds}")
    out_dir = Path(out_dir)
    parameters = {"version": DEMO_VERSION, "templates": templates, "seconds": seconds, "seed": seed}
    inputs = DemoInputs(dataset_dir=out_dir, audio_path=out_dir / AUDIO_NAME)
    if _is_complete(out_dir, parameters):
        return inputs
    if out_dir.exists() and not (out_dir / MANIFEST_NAME).exists() and any(out_dir.iterdir()):
        raise ParityError(f"{out_dir} exists and is not a demo folder: choose an empty or new folder")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    staging.chmod(0o755)  # mkdtemp makes it private
    try:
        _write_demo(staging, parameters)
        _move_into_place(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return inputs


def find_face(frame: np.ndarray) -> tuple[int, int, int, int]:
    """The largest frontal face in a BGR frame as `(x, y, width, height)`, by scikit-image's LBP cascade."""
    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    side = min(frame.shape[:2])
    found = _face_cascade().detect_multi_scale(
        img=rgb, scale_factor=1.1, step_ratio=1, min_size=(side // 6, side // 6), max_size=(side // 2, side // 2),
        min_neighbor_number=8,  # the default 4 also finds the astronaut's mission patch in a few frames
    )
    if not found:
        raise ParityError("the demo portrait has no detectable face: scikit-image's astronaut image or cascade changed")
    best = max(found, key=lambda d: d["width"] * d["height"])
    return best["c"], best["r"], best["width"], best["height"]


def face_landmarks(face: tuple[int, int, int, int]) -> np.ndarray:
    """110 plausible facial points `(x, y)` from a face box, in SyncTalk_2D's roles.

    Points 1 and 31 sit on the jaw line at the sides and 52 at the nose, so the reference's crop
    box (x from p[1] to p[31], y from p[52] down, square) covers the lower face: mouth and chin.
    Layout: 0-32 jaw, 33-42 brows, 43-57 nose (52 its tip), 58-69 eyes, 70-71 pupils, 72-89 forehead,
    90-109 the lips where SyncTalk's landmarks have them: 90-101 the outer lips from the left corner over the
    top (96 the right corner), 102-109 the inner lips the same way (102 and 106 the corners).
    """
    x, y, w, h = face
    jaw = _arc(0.5, 0.55, 0.48, 0.6, np.pi, 0.0, 33)  # through the chin (angles grow downwards)
    brows = np.concatenate([_arc(0.3, 0.3, 0.14, 0.1, 1.15 * np.pi, 1.85 * np.pi, 5),
                            _arc(0.7, 0.3, 0.14, 0.1, 1.15 * np.pi, 1.85 * np.pi, 5)])
    bridge = np.stack([np.full(9, 0.5), np.linspace(0.36, 0.52, 9)], axis=1)
    tip = np.array([[0.5, 0.6]])
    nostrils = _arc(0.5, 0.6, 0.1, 0.04, np.pi, 0.0, 5)
    eyes = np.concatenate([_arc(0.31, 0.4, 0.08, 0.03, np.pi, -np.pi, 7)[:6],
                           _arc(0.69, 0.4, 0.08, 0.03, np.pi, -np.pi, 7)[:6]])
    mouth = np.concatenate([_arc(0.5, 0.82, 0.18, 0.06, np.pi, 3 * np.pi, 13)[:12],  # angles grow downwards: over the top first
                            _arc(0.5, 0.82, 0.12, 0.02, np.pi, 3 * np.pi, 9)[:8]])
    pupils = np.array([[0.31, 0.4], [0.69, 0.4]])
    forehead = _arc(0.5, 0.3, 0.45, 0.25, 1.1 * np.pi, 1.9 * np.pi, 18)
    unit = np.concatenate([jaw, brows, bridge, tip, nostrils, eyes, pupils, forehead, mouth])
    assert len(unit) == LANDMARK_COUNT
    return np.stack([x + unit[:, 0] * w, y + unit[:, 1] * h], axis=1)


def speech_like_audio(seconds: float, seed: int = 0) -> np.ndarray:
    """Mono float speech-like sound at 16 kHz, peak 0.9: formant-filtered syllables with pauses."""
    rng = np.random.default_rng(seed)
    length = round(seconds * SAMPLE_RATE)
    voiced = _glottal_source(length, rng)
    sound = np.zeros(length)
    start = int(0.1 * SAMPLE_RATE)
    syllables_left_in_phrase = rng.integers(2, 5)
    while start < length:
        duration = int(rng.uniform(0.14, 0.3) * SAMPLE_RATE)
        stop = min(start + duration, length)
        if rng.random() < 0.35:
            _add_fricative(sound, start, rng)
        vowel = _VOWEL_FORMANTS[rng.integers(len(_VOWEL_FORMANTS))]
        sound[start:stop] += _resonate(voiced[start:stop], vowel) * _envelope(stop - start) * rng.uniform(0.5, 1.0)
        syllables_left_in_phrase -= 1
        gap = rng.uniform(0.02, 0.06)
        if syllables_left_in_phrase == 0:
            gap, syllables_left_in_phrase = rng.uniform(0.2, 0.4), rng.integers(2, 5)
        start = stop + int(gap * SAMPLE_RATE)
    sound += rng.normal(0.0, 1e-4 * np.abs(sound).max(), length)  # a quiet room, not digital silence
    return 0.9 * sound / np.abs(sound).max()


# -- avatar ------------------------------------------------------------------------------------


def _templates(count: int, seed: int) -> list[np.ndarray]:
    """`count` frames of the portrait with small smooth shifts and zoom, like head motion."""
    from skimage import data

    portrait = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    rng = np.random.default_rng(seed)
    t = np.arange(count)
    periods = rng.uniform(9.0, 17.0, 3)
    phases = rng.uniform(0.0, 2 * np.pi, 3)
    shift_x = 6.0 * np.sin(2 * np.pi * t / periods[0] + phases[0])
    shift_y = 4.0 * np.sin(2 * np.pi * t / periods[1] + phases[1])
    zoom = 1.0 + 0.04 * np.sin(2 * np.pi * t / periods[2] + phases[2])
    centre = np.array(portrait.shape[1::-1]) / 2.0
    frames = []
    for dx, dy, scale in zip(shift_x, shift_y, zoom):
        # Output pixel p shows portrait pixel centre + (p - frame centre) / scale - shift.
        matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), 0.0, float(scale))
        matrix[:, 2] += np.array([FRAME_WIDTH, FRAME_HEIGHT]) / 2.0 - centre + [dx, dy]
        frames.append(cv2.warpAffine(portrait, matrix, (FRAME_WIDTH, FRAME_HEIGHT),
                                     flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101))
    return frames


@functools.cache
def _face_cascade():
    from skimage import data
    from skimage.feature import Cascade

    return Cascade(data.lbp_frontal_face_cascade_filename())


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, stop: float, count: int) -> np.ndarray:
    """`count` points on an ellipse from angle `start` to `stop` (image coordinates: y down)."""
    angles = np.linspace(start, stop, count)
    return np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], axis=1)


# -- audio -------------------------------------------------------------------------------------

# F1, F2, F3 in Hz for a, i, u, e, o.
_VOWEL_FORMANTS = ((800, 1200, 2500), (300, 2300, 3000), (320, 800, 2300), (500, 1900, 2600), (500, 900, 2400))
_FORMANT_BANDWIDTHS = (80, 100, 140)


def _glottal_source(length: int, rng: np.random.Generator) -> np.ndarray:
    """A pulse train with a wandering pitch (100-200 Hz), low-passed like a glottal flow."""
    t = np.arange(length) / SAMPLE_RATE
    pitch = 145 + 35 * np.sin(2 * np.pi * rng.uniform(0.3, 0.7) * t + rng.uniform(0, 2 * np.pi))
    pitch += 10 * np.sin(2 * np.pi * rng.uniform(2.0, 4.0) * t)
    cycles = np.cumsum(np.clip(pitch, 100, 200)) / SAMPLE_RATE
    pulses = np.diff(np.floor(cycles), prepend=0.0)
    return signal.lfilter([1.0], [1.0, -0.95], pulses)


def _resonate(source: np.ndarray, formants: tuple[int, ...]) -> np.ndarray:
    """`source` through a cascade of two-pole resonators at the vowel's formants."""
    out = source
    for frequency, bandwidth in zip(formants, _FORMANT_BANDWIDTHS):
        radius = np.exp(-np.pi * bandwidth / SAMPLE_RATE)
        a = [1.0, -2 * radius * np.cos(2 * np.pi * frequency / SAMPLE_RATE), radius**2]
        out = signal.lfilter([sum(a)], a, out)  # unit gain at 0 Hz
    return out


def _envelope(length: int) -> np.ndarray:
    """A syllable's loudness: raised-cosine attack and release around a plateau."""
    ramp = max(1, min(length // 3, int(0.03 * SAMPLE_RATE)))
    edge = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, ramp))
    envelope = np.ones(length)
    envelope[:ramp], envelope[-ramp:] = edge, edge[::-1]
    return envelope


def _add_fricative(sound: np.ndarray, start: int, rng: np.random.Generator) -> None:
    """A short high-passed noise burst (an s or f) just before `start`."""
    length = int(rng.uniform(0.04, 0.08) * SAMPLE_RATE)
    begin = max(0, start - length)
    if begin == start:
        return
    highpass = signal.butter(4, rng.uniform(2500, 4500), btype="highpass", fs=SAMPLE_RATE, output="sos")
    noise = signal.sosfilt(highpass, rng.normal(0.0, 1.0, start - begin))
    sound[begin:start] += 0.3 * noise * _envelope(start - begin)


# -- files -------------------------------------------------------------------------------------


def _write_demo(folder: Path, parameters: dict) -> None:
    (folder / "full_body_img").mkdir()
    (folder / "landmarks").mkdir()
    for index, frame in enumerate(_templates(parameters["templates"], parameters["seed"])):
        cv2.imwrite(str(folder / "full_body_img" / f"{index}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        points = face_landmarks(find_face(frame))
        _check_crop_box(points, index)
        lines = (f"{px:.3f} {py:.3f}" for px, py in points)
        (folder / "landmarks" / f"{index}.lms").write_text("\n".join(lines) + "\n")
    audio = speech_like_audio(parameters["seconds"], parameters["seed"])
    sf.write(folder / AUDIO_NAME, np.round(audio * 32767).astype(np.int16), SAMPLE_RATE, subtype="PCM_16")
    (folder / MANIFEST_NAME).write_text(json.dumps(parameters, indent=2) + "\n")  # last: marks complete


def _check_crop_box(points: np.ndarray, index: int) -> None:
    """The reference's crop box (points 1, 31, 52) must lie inside the frame."""
    xmin, xmax, ymin = int(points[1, 0]), int(points[31, 0]), int(points[52, 1])
    ymax = ymin + (xmax - xmin)
    if not (0 <= xmin < xmax <= FRAME_WIDTH and 0 <= ymin < ymax <= FRAME_HEIGHT):
        raise ParityError(f"demo template {index}: crop box {(xmin, ymin, xmax, ymax)} leaves the frame")


def _is_complete(folder: Path, parameters: dict) -> bool:
    try:
        made_with = json.loads((folder / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return False
    count = parameters["templates"]
    return (
        made_with == parameters
        and (folder / AUDIO_NAME).is_file()
        and all((folder / "full_body_img" / f"{i}.jpg").is_file() for i in range(count))
        and all((folder / "landmarks" / f"{i}.lms").is_file() for i in range(count))
    )


def _move_into_place(staging: Path, out_dir: Path) -> None:
    """Rename `staging` to `out_dir`, replacing an older demo there."""
    if out_dir.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.replace(out_dir, retired / "demo")
        os.replace(staging, out_dir)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, out_dir)
