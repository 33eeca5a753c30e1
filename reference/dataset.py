"""A SyncTalk avatar dataset: template frames, their landmarks, and the ping-pong template schedule.

Layout (what `inference_328.py` reads): `full_body_img/N.jpg` and `landmarks/N.lms`, N = 0..count-1,
110 `"x y"` points per file. A video file with a landmarks folder is accepted too: its frames are
decoded once with ffmpeg into a lossless PNG cache. Everything is validated up front, so a bad
file fails before any inference, with its name in the message.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..atomic import building
from ..errors import ParityError
from .frames import LANDMARK_COUNT, Box, FrameGeometry, crop_box

IMAGE_DIR = "full_body_img"
LANDMARK_DIR = "landmarks"
IMAGE_SUFFIXES = (".jpg", ".png")
ORIGINAL_GEOMETRY = FrameGeometry()  # frame i uses template schedule[i] and that template's crop box


def template_schedule(frames: int, template_count: int) -> list[int]:
    """Template index of each output frame: 1, 2, ..., L, L-1, ..., 1, 0, 1, ... with L = count - 1.

    The original's state machine, kept literally: the first frame uses template 1, not 0.
    """
    last = template_count - 1
    idx, step, schedule = 0, 0, []
    for _ in range(frames):
        if idx > last - 1:
            step = -1
        if idx < 1:
            step = 1
        idx += step
        schedule.append(idx)
    return schedule


def read_landmarks(path: Path) -> np.ndarray:
    """The points of one `.lms` file as float32 `(110, 2)`, or a `ParityError` naming the file and line."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ParityError(f"{path}: cannot read landmarks ({exc})") from exc
    points = []
    for number, line in enumerate(lines, start=1):
        fields = line.split(" ")
        try:
            values = np.array(fields, dtype=np.float32)
        except ValueError:
            raise ParityError(f"{path}:{number}: expected 'x y' numbers, found {line.strip()[:40]!r}") from None
        if values.shape != (2,) or not np.all(np.isfinite(values)):
            raise ParityError(f"{path}:{number}: expected two finite numbers 'x y', found {line.strip()[:40]!r}")
        points.append(values)
    if len(points) != LANDMARK_COUNT:
        raise ParityError(
            f"{path}: {len(points)} landmark points, expected {LANDMARK_COUNT} (SyncTalk_2D's 110-point layout)"
        )
    return np.stack(points)


@dataclass(frozen=True)
class Template:
    index: int
    image_path: Path
    landmarks: np.ndarray  # (110, 2) float32
    box: Box  # xmin, ymin, xmax, ymax

    def read_image(self) -> np.ndarray:
        image = cv2.imread(str(self.image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise ParityError(f"{self.image_path}: cannot decode the image")
        return image


@dataclass(frozen=True)
class Dataset:
    """A validated SyncTalk dataset; `templates[k]` is template k (after `start_frame`)."""

    root: Path
    templates: tuple[Template, ...]
    frame_size: tuple[int, int]  # (W, H)

    @property
    def template_count(self) -> int:
        return len(self.templates)

    def schedule(self, frames: int, geometry: FrameGeometry = ORIGINAL_GEOMETRY) -> list[int]:
        """The template index of each of `frames` output frames (the ping-pong schedule; `geometry.template_offset`
        moves it, clipped to the templates; `geometry.template_sequence` replaces it for the frames it covers)."""
        scheduled = [self.frame_template(t, geometry) for t in template_schedule(frames, self.template_count)]
        sequence = geometry.template_sequence
        if sequence is None:
            return scheduled
        return [self._clip(sequence[i]) if i < len(sequence) else t for i, t in enumerate(scheduled)]

    def frame_template(self, scheduled: int, geometry: FrameGeometry = ORIGINAL_GEOMETRY) -> int:
        """The template an output frame uses when the schedule gives it `scheduled`."""
        return self._clip(scheduled + geometry.template_offset)

    def frame_box(self, template_index: int, geometry: FrameGeometry = ORIGINAL_GEOMETRY, index: int | None = None) -> Box:
        """The crop box of output frame `index`, made from template `template_index`: that template's, or (a port's
        mistake) the box of the template `geometry.landmark_offset` away, or of template `geometry.box_template` for all,
        or of template `geometry.box_sequence[index]` for the frames it gives one (not -1)."""
        sequence = geometry.box_sequence
        if sequence is not None and index is not None and index < len(sequence) and sequence[index] >= 0:
            return self.templates[self._clip(sequence[index])].box
        if geometry.box_template is not None:
            return self.templates[self._clip(geometry.box_template)].box
        return self.templates[self._clip(template_index + geometry.landmark_offset)].box

    def _clip(self, template_index: int) -> int:
        return min(max(template_index, 0), self.template_count - 1)


def open_dataset(path: str | os.PathLike, start_frame: int = 0, cache_dir: Path | None = None) -> Dataset:
    """Validate and open a dataset directory, or a video file whose landmarks are beside it.

    For a video `clip.mp4`, landmarks come from `landmarks/` next to it (or `clip/landmarks/`), and
    its frames are decoded into `cache_dir` (default: a `.frames` folder beside the video).
    """
    path = Path(path)
    if path.is_file():
        return _open_video(path, start_frame, cache_dir)
    if not path.is_dir():
        raise ParityError(f"{path}: dataset not found (pass a folder with {IMAGE_DIR}/ and {LANDMARK_DIR}/, or a video)")
    return _open_folder(path, path / IMAGE_DIR, path / LANDMARK_DIR, start_frame)


def _open_folder(root: Path, image_dir: Path, landmark_dir: Path, start_frame: int) -> Dataset:
    for folder in (image_dir, landmark_dir):
        if not folder.is_dir():
            raise ParityError(f"{folder}: missing; a SyncTalk dataset has {IMAGE_DIR}/N.jpg and {LANDMARK_DIR}/N.lms")
    images = _numbered(image_dir, IMAGE_SUFFIXES)
    landmarks = _numbered(landmark_dir, (".lms",))
    if not images:
        raise ParityError(f"{image_dir}: no numbered frames (0.jpg, 1.jpg, ...)")
    _check_contiguous(images, image_dir, "frame")
    missing = sorted(set(images) - set(landmarks))
    if missing:
        raise ParityError(f"{landmark_dir / f'{missing[0]}.lms'}: missing (landmarks for {len(missing)} frame(s) absent)")
    extra = sorted(set(landmarks) - set(images))
    if extra:
        raise ParityError(f"{landmark_dir / f'{extra[0]}.lms'}: has no frame {extra[0]} in {image_dir} ({len(extra)} extra landmark file(s))")
    # Templates are frames start_frame..count-1. inference_328.py ping-pongs over all count frames
    # and adds start_frame, which reads past the last file at the turn; up to there both agree.
    count = len(images)
    if not 0 <= start_frame < count:
        raise ParityError(f"--start-frame {start_frame} is outside the dataset's {count} frames")
    usable = count - start_frame
    if usable < 2:
        raise ParityError(f"{root}: at least 2 templates are needed after start frame {start_frame}")
    size = _image_size(images[0])
    templates = []
    for k in range(usable):
        number = k + start_frame
        points = read_landmarks(landmarks[number])
        box = crop_box(points)
        frame_size = _image_size(images[number]) if number else size
        if frame_size != size:
            raise ParityError(
                f"{images[number]}: {frame_size[0]}x{frame_size[1]}, but {images[0].name} is {size[0]}x{size[1]}; "
                "all templates must have one size"
            )
        _check_box(box, size, landmarks[number])
        templates.append(Template(k, images[number], points, box))
    return Dataset(root, tuple(templates), size)


def _numbered(folder: Path, suffixes: tuple[str, ...]) -> dict[int, Path]:
    found: dict[int, Path] = {}
    for entry in folder.iterdir():
        if entry.suffix.lower() in suffixes and entry.stem.isdigit():
            number = int(entry.stem)
            if number in found:
                raise ParityError(f"{entry}: frame {number} appears twice ({found[number].name})")
            found[number] = entry
    return found


def _check_contiguous(numbered: dict[int, Path], folder: Path, what: str) -> None:
    expected = set(range(len(numbered)))
    gaps = sorted(expected - set(numbered))
    if gaps:
        beyond = sorted(set(numbered) - expected)
        raise ParityError(
            f"{folder}: numbering gap: {what} {gaps[0]} is missing but {beyond[0]} exists; "
            f"{what}s must be numbered 0..{len(numbered) - 1} without gaps"
        )


def _image_size(path: Path) -> tuple[int, int]:
    """(W, H) from the image's header (Pillow reads only the header: ~0.1 ms where decoding a 720p JPEG takes
    ~5 ms, for every template at start-up); an image whose data is damaged fails where it is decoded, with
    its path (`Template.read_image`)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, UnidentifiedImageError):
        raise ParityError(f"{path}: not a readable image") from None


def _check_box(box: tuple[int, int, int, int], size: tuple[int, int], lms_path: Path) -> None:
    xmin, ymin, xmax, ymax = box
    width, height = size
    if xmax - xmin < 2:
        raise ParityError(f"{lms_path}: crop box {box} is empty (point 31 must lie right of point 1)")
    if xmin < 0 or ymin < 0 or xmax > width or ymax > height:
        raise ParityError(f"{lms_path}: crop box {box} leaves the {width}x{height} frame; check the landmarks")


def _open_video(video: Path, start_frame: int, cache_dir: Path | None) -> Dataset:
    landmark_dir = next(
        (d for d in (video.parent / LANDMARK_DIR, video.with_suffix("") / LANDMARK_DIR) if d.is_dir()), None
    )
    if landmark_dir is None:
        raise ParityError(f"{video}: a video needs its landmarks in {video.parent / LANDMARK_DIR}/ (N.lms per frame)")
    frames_dir = cache_dir or video.parent / f".{video.stem}.frames"
    _decode_video(video, frames_dir)
    return _open_folder(video, frames_dir, landmark_dir, start_frame)


def _decode_video(video: Path, frames_dir: Path) -> None:
    """Decode every frame to `frames_dir/N.png` (numbered from 0) once; reuse a complete decode."""
    import imageio_ffmpeg

    stamp = frames_dir / ".complete"
    signature = f"{video.resolve()} {video.stat().st_size} {video.stat().st_mtime_ns}"
    if stamp.is_file() and stamp.read_text() == signature:
        return
    with building(frames_dir) as tmp:
        result = subprocess.run(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(video),
             "-fps_mode", "passthrough", "-start_number", "0", str(tmp / "%d.png")],
            capture_output=True, text=True,
        )
        if result.returncode != 0 or not any(tmp.iterdir()):
            reason = (result.stderr.strip().splitlines() or ["no frames decoded"])[-1]
            raise ParityError(f"{video}: ffmpeg could not decode video frames ({reason})")
        (tmp / ".complete").write_text(signature)

