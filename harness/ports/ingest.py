"""Read what a port already writes: a dump, a video, a folder of frames or of mouth crops, or raw tensors.

    kind = detect_kind(path)              # "dump" | "video" | "frames" | "mouths" | "tensors"
    files = read_frame_files(folder)      # FrameFile(number, path, size) sorted by number; files.base
    image = read_image(files[0].path)     # (H, W, 3) uint8 BGR, as cv2.imread gives
    video = read_video("port.mp4")        # fps, frame_count, size, audio (16 kHz mono float32 or None)
    for frame in video: ...               # BGR frames decoded lazily, one at a time
    info = jpeg_info(path)                # quality from the DQT table, chroma subsampling
    tensors = read_tensors(folder, None)  # {stage: {index or None: array}}

Frames: every JPEG, PNG or WebP in the folder, numbered by the last integer in the file name
(`frame_00001.jpg`, `00000.png`, `12.jpg`), so any numbering base works; the base is the smallest
number. Sizes come from the file headers (no decoding), and one folder holds one size. A folder whose
images are all 320 x 320 holds mouth crops (the U-Net's output, `frame.mouth`).

Images are decoded with OpenCV, as the reference reads its templates. Before decoding, each file's
structure is checked (JPEG ends with its EOI marker; a PNG's chunks run to IEND; a WebP's RIFF size
matches the file), so a truncated file fails in one line instead of libjpeg or libpng printing on
the terminal.

Videos are read with the ffmpeg that imageio-ffmpeg ships (`-loglevel error`, its stderr captured):
a stream-copy pass counts frames and reads fps and size from the header without decoding, frames are
decoded to BGR on a raw pipe when iterated (a 720p frame is 2.7 MB; nothing is held), and the sound
track is decoded to a float32 WAV on a pipe, read with soundfile and mixed to mono and resampled to
16 kHz the way `reference/audio.py` (and so `librosa.load`) does.

JPEG quality: the luminance quantization table (DQT marker) is compared with the IJG standard table
scaled by libjpeg's formula (`q < 50: 5000 / q; else 200 - 2 q`, `(t * scale + 50) / 100` clamped to
1..255) for every quality 1..100; the closest is the estimate, exact for libjpeg-based encoders
(OpenCV, Pillow, ffmpeg's mjpeg, most ports).

Tensors: `<stage>.npy` or `<stage>.bin` is a clip stage (or stacked per-frame rows; index None);
`<stage>/<index>.npy|.bin` and `<stage>_<index>.npy|.bin` are per-frame files. Stage names are the
contract's (`frame.unet_output`) or their unique last part (`unet_output`). `.bin` is raw little-endian
data (float32 unless its sidecar says `dtype`) whose shape comes from the caller or from a TOML
sidecar `NAME.toml` beside it (or `<stage>.toml` in the folder): `shape = [3, 320, 320]`, optionally
`stage = "frame.unet_output"`, `index = 12`, `dtype = "float32"`. Arrays are memory-mapped, so a
folder of every frame's U-Net input does not fill memory.
"""

from __future__ import annotations

import difflib
import io
import os
import re
import struct
import subprocess
import tempfile
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

from ...errors import ParityError
from ...reference.audio import SAMPLE_RATE
from ...reference.stages import STAGE_NAMES
from ..verdict.dump import MANIFEST

KINDS = ("dump", "video", "frames", "mouths", "tensors")
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
TENSOR_SUFFIXES = (".npy", ".bin")
MOUTH_SIZE = (320, 320)  # the U-Net's output, W x H
ACCEPTED = ("a dump folder (manifest.json), a video (.mp4 .mov .webm .mkv .avi), a folder of numbered frames "
            "(JPEG, PNG, WebP), a folder of 320x320 mouth crops, or a folder of tensors (.npy, .bin)")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HEADER_BYTES = 65536  # enough for the header of every image format read here, EXIF included

# IJG (JPEG standard Annex K) quantization tables, natural (row-major) order
IJG_LUMINANCE = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)
IJG_CHROMINANCE = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99, *(99,) * 32,
)
# ZIGZAG[k]: the natural position of the k-th coefficient stored in a DQT segment
ZIGZAG = (
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
    35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
)
_ALL_NAMES = (*STAGE_NAMES, *(name.split(".", 1)[1] for name in STAGE_NAMES))  # full and short stage names
SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


# ---------------------------------------------------------------------------------------------- kind


def detect_kind(path: str | os.PathLike) -> str:
    """What `path` holds: "dump", "video", "frames", "mouths" or "tensors"; a ParityError otherwise."""
    path = Path(path)
    if not path.exists():
        raise ParityError(f"{path}: not found; pass {ACCEPTED}")
    if path.is_file():
        if path.suffix.lower() in VIDEO_SUFFIXES:
            return "video"
        if path.name == MANIFEST:
            return "dump"
        raise ParityError(f"{path}: a {path.suffix or 'suffix-less'} file is not something a port writes that can be judged; pass {ACCEPTED}")
    if (path / MANIFEST).is_file() or (path / "dump" / MANIFEST).is_file():
        return "dump"
    entries = [e for e in path.iterdir() if not e.name.startswith(".")]
    images = [e for e in entries if e.is_file() and e.suffix.lower() in IMAGE_SUFFIXES]
    if images:
        sizes = {_image_size(e) for e in images}
        return "mouths" if sizes == {MOUTH_SIZE} else "frames"
    if any(_tensor_files(path)):
        return "tensors"
    videos = [e.name for e in entries if e.is_file() and e.suffix.lower() in VIDEO_SUFFIXES]
    hint = f" (it holds {videos[0]}: pass the video file itself)" if videos else ""
    raise ParityError(f"{path}: no frames, tensors or manifest.json in this folder{hint}; pass {ACCEPTED}")


# -------------------------------------------------------------------------------------------- frames


@dataclass(frozen=True)
class FrameFile:
    """One image file of a port's output: its number (the last integer in the name), path and size (W, H)."""

    number: int
    path: Path
    size: tuple[int, int]

    def load(self) -> np.ndarray:
        return read_image(self.path)


class FrameFiles(list[FrameFile]):
    """The numbered image files of one folder, sorted by number, all of one size."""

    def __init__(self, folder: Path, files: Iterable[FrameFile]):
        super().__init__(files)
        self.folder = folder

    @property
    def base(self) -> int:
        """The numbering base: the smallest number (0 for `00000.png ..`, 1 for `frame_00001.jpg ..`)."""
        return self[0].number

    @property
    def size(self) -> tuple[int, int]:
        return self[0].size

    @property
    def numbers(self) -> list[int]:
        return [f.number for f in self]

    def by_number(self) -> dict[int, FrameFile]:
        return {f.number: f for f in self}


def frame_number(path: Path) -> int | None:
    """The last integer in the file's stem (`frame_00012.jpg` -> 12), or None when it has none."""
    found = re.findall(r"\d+", path.stem)
    return int(found[-1]) if found else None


def read_frame_files(folder: str | os.PathLike) -> FrameFiles:
    """The JPEG/PNG/WebP files of `folder`, numbered and sorted; refuses unnumbered names, duplicates and mixed sizes."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ParityError(f"{folder}: not a folder; pass the folder the port writes its frames into")
    found: dict[int, Path] = {}
    unnumbered: list[Path] = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or not entry.is_file() or entry.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        number = frame_number(entry)
        if number is None:
            unnumbered.append(entry)
        elif number in found:
            raise ParityError(f"{entry}: frame number {number} again ({found[number].name} has it); one file per frame")
        else:
            found[number] = entry
    if not found:
        raise ParityError(f"{folder}: no numbered images (JPEG, PNG or WebP named like frame_00001.jpg, 00000.png or 12.jpg)")
    if unnumbered:
        raise ParityError(f"{unnumbered[0]}: no number in its name, among {len(found)} numbered frames; move it out of {folder}")
    files = []
    first: tuple[Path, tuple[int, int]] | None = None
    for number in sorted(found):
        size = _image_size(found[number])
        if first is None:
            first = (found[number], size)
        elif size != first[1]:
            raise ParityError(f"{found[number]}: {size[0]}x{size[1]}, but {first[0].name} is {first[1][0]}x{first[1][1]}; "
                              "a frame folder holds frames of one size")
        files.append(FrameFile(number, found[number], size))
    return FrameFiles(folder, files)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """A JPEG, PNG or WebP as `(H, W, 3)` uint8 BGR (as `cv2.imread(path, cv2.IMREAD_COLOR)` gives)."""
    import cv2

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ParityError(f"{path}: cannot read the image ({exc.strerror or exc})") from None
    _check_image_complete(path, data)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ParityError(f"{path}: cannot decode the image; write it again")
    return image


def _image_format(data: bytes) -> str | None:
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == PNG_SIGNATURE:
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def _check_image_complete(path: Path, data: bytes) -> None:
    """Refuse a file that is not JPEG/PNG/WebP or that ends early, before a decoder prints about it."""
    kind = _image_format(data)
    if kind is None:
        raise ParityError(f"{path}: not a JPEG, PNG or WebP image ({len(data)} bytes); write frames in one of those formats")
    if kind == "jpeg":
        if b"\xff\xd9" not in data[-64:].rstrip(b"\x00\r\n "):
            raise ParityError(f"{path}: truncated JPEG (no end-of-image marker); write it again")
    elif kind == "png":
        offset = len(PNG_SIGNATURE)
        while True:
            if offset + 8 > len(data):
                raise ParityError(f"{path}: truncated PNG (ends before its IEND chunk); write it again")
            length, chunk = struct.unpack(">I4s", data[offset : offset + 8])
            offset += 12 + length
            if chunk == b"IEND":
                if offset > len(data):
                    raise ParityError(f"{path}: truncated PNG (ends inside its IEND chunk); write it again")
                break
    elif struct.unpack("<I", data[4:8])[0] + 8 > len(data):
        raise ParityError(f"{path}: truncated WebP ({len(data)} bytes, its header says {struct.unpack('<I', data[4:8])[0] + 8}); write it again")


def _image_size(path: Path) -> tuple[int, int]:
    """(W, H) from the file's header, without decoding."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(HEADER_BYTES)
    except OSError as exc:
        raise ParityError(f"{path}: cannot read the image ({exc.strerror or exc})") from None
    kind = _image_format(head)
    if kind == "jpeg":
        return _read_jpeg_header(path, head)[0]
    if kind == "png":
        if len(head) < 24 or head[12:16] != b"IHDR":
            raise ParityError(f"{path}: damaged PNG (no IHDR header); write it again")
        width, height = struct.unpack(">II", head[16:24])
        return int(width), int(height)
    if kind == "webp":
        return _webp_size(head, path)
    raise ParityError(f"{path}: not a JPEG, PNG or WebP image; write frames in one of those formats")


def _webp_size(head: bytes, path: Path) -> tuple[int, int]:
    chunk, data = head[12:16], head[20:]
    if chunk == b"VP8 " and len(data) >= 10 and data[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[6:10])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 5 and data[0] == 0x2F:
        bits = int.from_bytes(data[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 10:
        return int.from_bytes(data[4:7], "little") + 1, int.from_bytes(data[7:10], "little") + 1
    raise ParityError(f"{path}: damaged WebP header; write it again")


# ---------------------------------------------------------------------------------------------- JPEG


@dataclass(frozen=True)
class JpegInfo:
    """What a JPEG's header says about its encoding."""

    quality: int  # the IJG quality whose scaled luminance table is closest to the file's
    exact: bool  # the luminance table is exactly IJG's at that quality (a libjpeg-style encoder)
    subsampling: str | None  # "4:2:0", "4:2:2", "4:4:4", ... (None for greyscale or an unusual layout)
    size: tuple[int, int]  # W, H

    @property
    def text(self) -> str:
        quality = f"quality {self.quality}" if self.exact else f"quality ~{self.quality} (not IJG's table)"
        return f"JPEG {quality}" + (f", chroma {self.subsampling}" if self.subsampling else "")


def jpeg_quality_estimate(path: str | os.PathLike) -> int | None:
    """The JPEG quality (1..100) estimated from the luminance quantization table; None for a non-JPEG file."""
    info = jpeg_info(path)
    return None if info is None else info.quality


def jpeg_info(path: str | os.PathLike) -> JpegInfo | None:
    """Quality, exactness and chroma subsampling from a JPEG's header; None for a non-JPEG file."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(HEADER_BYTES)
    except OSError as exc:
        raise ParityError(f"{path}: cannot read the image ({exc.strerror or exc})") from None
    if _image_format(head) != "jpeg":
        return None
    size, components, tables = _read_jpeg_header(path, head)
    if not components:
        raise ParityError(f"{path}: damaged JPEG (no frame header); write it again")
    luminance_id = components[0][2]
    if luminance_id not in tables:
        raise ParityError(f"{path}: damaged JPEG (quantization table {luminance_id} of its first component is missing)")
    quality, error = _closest_quality(tables[luminance_id], IJG_LUMINANCE)
    return JpegInfo(quality, error == 0, _subsampling(components), size)


def ijg_table(quality: int, base: tuple[int, ...] = IJG_LUMINANCE) -> np.ndarray:
    """libjpeg's `jpeg_set_quality` table (natural order) for `quality`, baseline (values 1..255)."""
    quality = min(max(int(quality), 1), 100)
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    table = (np.asarray(base, np.int64) * scale + 50) // 100
    return np.clip(table, 1, 255)


def _closest_quality(table: np.ndarray, base: tuple[int, ...]) -> tuple[int, int]:
    errors = [(int(np.abs(ijg_table(q, base) - table).sum()), -q) for q in range(1, 101)]
    error, negative = min(errors)
    return -negative, error


def _subsampling(components: list[tuple[int, int, int]]) -> str | None:
    """From the (h, v, table) sampling factors of Y, Cb, Cr."""
    if len(components) != 3:
        return None
    (yh, yv, _), (ch, cv, _), (rh, rv, _) = components
    if (ch, cv) != (rh, rv) or yh % ch or yv % cv:
        return None
    return {(1, 1): "4:4:4", (2, 1): "4:2:2", (2, 2): "4:2:0", (1, 2): "4:4:0", (4, 1): "4:1:1"}.get((yh // ch, yv // cv))


def _read_jpeg_header(path: Path, head: bytes) -> tuple[tuple[int, int], list[tuple[int, int, int]], dict[int, np.ndarray]]:
    """The header from the file's first bytes, or from the whole file when it runs past them (large EXIF)."""
    parsed = _jpeg_header(head, path)
    if parsed is None and len(head) >= HEADER_BYTES:
        try:
            parsed = _jpeg_header(path.read_bytes(), path)
        except OSError as exc:
            raise ParityError(f"{path}: cannot read the image ({exc.strerror or exc})") from None
    if parsed is None:
        raise ParityError(f"{path}: damaged JPEG (no frame header with its size); write it again")
    return parsed


def _jpeg_header(data: bytes, path: Path) -> tuple[tuple[int, int], list[tuple[int, int, int]], dict[int, np.ndarray]] | None:
    """Walk the marker segments up to the first scan: (W, H), [(h, v, table id) per component], {table id: natural-order
    table}; None when `data` ends before the frame header and the first scan."""
    tables: dict[int, np.ndarray] = {}
    components: list[tuple[int, int, int]] = []
    size = (0, 0)
    offset = 2
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            raise ParityError(f"{path}: damaged JPEG header (no marker at byte {offset}); write it again")
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            offset += 2
            continue
        length = struct.unpack(">H", data[offset + 2 : offset + 4])[0]
        if offset + 2 + length > len(data):
            return None
        segment = data[offset + 4 : offset + 2 + length]
        if marker == 0xDB:
            position = 0
            while position < len(segment):
                precision, table_id = segment[position] >> 4, segment[position] & 0x0F
                width = 2 if precision else 1
                raw = segment[position + 1 : position + 1 + 64 * width]
                stored = np.frombuffer(raw, ">u2" if width == 2 else np.uint8).astype(np.int64)
                if stored.size != 64:
                    raise ParityError(f"{path}: damaged JPEG (a quantization table ends early); write it again")
                natural = np.empty(64, np.int64)
                natural[list(ZIGZAG)] = stored
                tables[table_id] = natural
                position += 1 + 64 * width
        elif marker in SOF_MARKERS:
            height, width = struct.unpack(">HH", segment[1:5])
            size = (int(width), int(height))
            count = segment[5]
            for c in range(count):
                factors, table_id = segment[7 + 3 * c], segment[8 + 3 * c]
                components.append((factors >> 4, factors & 0x0F, table_id))
        elif marker == 0xDA:  # start of scan: the header is over
            return (size, components, tables) if size != (0, 0) else None
        offset += 2 + length
    return None


# --------------------------------------------------------------------------------------------- video


@dataclass
class VideoFrames:
    """A video's frames (decoded lazily, BGR uint8), its rate, count and size, and its sound at 16 kHz mono.

    `for frame in video` decodes from the start each time; `video.frames_at([0, 40, 80])` keeps only
    those frames of one pass. Frames are numbered from 0 in decoding order.
    """

    path: Path
    fps: float
    frame_count: int
    size: tuple[int, int]  # W, H
    codec: str
    audio: np.ndarray | None  # (S,) float32, 16 kHz mono; None when the file has no sound track
    audio_codec: str | None
    audio_rate: int | None  # the sound track's own sample rate

    def __len__(self) -> int:
        return self.frame_count

    @property
    def duration(self) -> float:
        return self.frame_count / self.fps if self.fps else 0.0

    def __iter__(self) -> Iterator[np.ndarray]:
        import imageio_ffmpeg

        width, height = self.size
        frame_bytes = width * height * 3
        command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(self.path),
                   "-map", "0:v:0", "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "bgr24", "-"]
        with tempfile.TemporaryFile() as errors:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors)
            stream = cast(io.BufferedReader, process.stdout)
            try:
                while True:
                    frame = np.empty((height, width, 3), np.uint8)
                    view = frame.reshape(-1).data
                    filled = 0
                    while filled < frame_bytes:
                        got = stream.readinto(view[filled:])
                        if not got:
                            break
                        filled += got
                    if filled == 0:
                        break
                    if filled < frame_bytes:
                        raise ParityError(f"{self.path}: the last frame is incomplete ({filled} of {frame_bytes} bytes); the video is damaged")
                    yield frame
                stream.close()
                if process.wait() != 0:
                    errors.seek(0)
                    lines = errors.read().decode(errors="replace").strip().splitlines()
                    raise ParityError(f"{self.path}: ffmpeg could not decode the video ({lines[-1] if lines else 'no message'})")
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()

    def frames_at(self, numbers: Iterable[int]) -> dict[int, np.ndarray]:
        """The frames with these numbers (0-based), from one decoding pass."""
        wanted = set(numbers)
        found: dict[int, np.ndarray] = {}
        if not wanted:
            return found
        last = max(wanted)
        for number, frame in enumerate(self):
            if number in wanted:
                found[number] = frame
            if number >= last:
                break
        return found


def read_video(path: str | os.PathLike) -> VideoFrames:
    """Open a video: count its frames and read its header (no decoding), and decode its sound track."""
    import imageio_ffmpeg

    path = Path(path)
    if not path.is_file():
        raise ParityError(f"{path}: video not found")
    probe = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "null", "-"],
        capture_output=True, text=True, errors="replace", stdin=subprocess.DEVNULL,
    )
    text = probe.stderr
    if probe.returncode != 0:
        if "matches no streams" in text:
            raise ParityError(f"{path}: no video stream in this file; pass the port's video (H.264 mp4 or similar)")
        lines = [line for line in text.strip().splitlines() if "Error opening" not in line]
        reason = (lines or text.strip().splitlines() or ["no message"])[-1].split("] ", 1)[-1]
        raise ParityError(f"{path}: ffmpeg cannot read this video ({reason})")
    video_line = next((line for line in text.splitlines() if line.lstrip().startswith("Stream #0") and " Video: " in line), None)
    audio_line = next((line for line in text.splitlines() if line.lstrip().startswith("Stream #0") and " Audio: " in line), None)
    counts = re.findall(r"frame=\s*(\d+)", text)
    if video_line is None or not counts:
        raise ParityError(f"{path}: ffmpeg finds no video frames in this file")
    size_match = re.search(r"\b(\d{2,5})x(\d{2,5})\b", video_line)
    fps_match = re.search(r"([\d.]+) fps", video_line) or re.search(r"([\d.]+)k? tbr", video_line)
    if size_match is None:
        raise ParityError(f"{path}: ffmpeg reports no frame size for the video stream")
    codec = video_line.split(" Video: ", 1)[1].split()[0].rstrip(",")
    audio, audio_codec, audio_rate = None, None, None
    if audio_line is not None:
        audio_codec = audio_line.split(" Audio: ", 1)[1].split()[0].rstrip(",")
        audio, audio_rate = _decode_audio(path)
    return VideoFrames(
        path=path, fps=float(fps_match.group(1)) if fps_match else 0.0, frame_count=int(counts[-1]),
        size=(int(size_match.group(1)), int(size_match.group(2))), codec=codec,
        audio=audio, audio_codec=audio_codec, audio_rate=audio_rate,
    )


def _decode_audio(path: Path) -> tuple[np.ndarray, int]:
    """The first sound track as 16 kHz mono float32, and its own rate (as reference/audio.py decodes with ffmpeg)."""
    import imageio_ffmpeg
    import soundfile

    decoded = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(path), "-vn", "-map", "0:a:0",
         "-f", "wav", "-acodec", "pcm_f32le", "-"],
        capture_output=True, stdin=subprocess.DEVNULL,
    )
    if decoded.returncode != 0 or not decoded.stdout:
        lines = decoded.stderr.decode(errors="replace").strip().splitlines()
        raise ParityError(f"{path}: ffmpeg could not decode the sound track ({lines[-1] if lines else 'no message'})")
    data, rate = soundfile.read(io.BytesIO(decoded.stdout), dtype="float32", always_2d=True)
    # librosa (slow to import) only when there is something to mix or resample
    pcm = data[:, 0] if data.shape[1] == 1 else _librosa().to_mono(np.ascontiguousarray(data.T))
    if pcm.size and rate != SAMPLE_RATE:
        pcm = _librosa().resample(pcm, orig_sr=rate, target_sr=SAMPLE_RATE)
    return np.ascontiguousarray(pcm, dtype=np.float32), int(rate)


def _librosa():
    import librosa

    return librosa


# ------------------------------------------------------------------------------------------- tensors


def read_tensors(folder: str | os.PathLike, shapes: dict[str, tuple[int, ...]] | None = None) -> dict[str, dict[int | None, np.ndarray]]:
    """`{stage: {index: array}}` from a port's tensor files (index None for `<stage>.npy`); arrays are memory-mapped.

    `shapes` gives the per-file shape of `.bin` files by stage name (a sidecar TOML overrides nothing it does not say).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ParityError(f"{folder}: not a folder; pass the folder holding the port's .npy or .bin tensors")
    files = list(_tensor_files(folder))
    if not files:
        raise ParityError(f"{folder}: no .npy or .bin files (name them <stage>.npy, <stage>/<index>.npy or <stage>_<index>.bin)")
    found: dict[str, dict[int | None, np.ndarray]] = {}
    origin: dict[tuple[str, int | None], Path] = {}
    for file in files:
        sidecar = _sidecar(file, folder)
        stage, index = _tensor_name(file, folder, sidecar)
        array = _load_npy(file) if file.suffix == ".npy" else _load_bin(file, stage, sidecar, shapes)
        key = (stage, index)
        if key in origin:
            what = "the clip" if index is None else f"frame {index}"
            raise ParityError(f"{file}: {what} of {stage} again ({origin[key].relative_to(folder)} has it); one file each")
        origin[key] = file
        found.setdefault(stage, {})[index] = array
    return {stage: dict(sorted(found[stage].items(), key=lambda item: -1 if item[0] is None else item[0])) for stage in STAGE_NAMES if stage in found}


def _tensor_files(folder: Path) -> Iterator[Path]:
    """`.npy`/`.bin` files in the folder and one level below, sorted."""
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.suffix.lower() in TENSOR_SUFFIXES:
            yield entry
        elif entry.is_dir():
            yield from (f for f in sorted(entry.iterdir()) if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in TENSOR_SUFFIXES)


def _sidecar(file: Path, folder: Path) -> tuple[Path, dict] | None:
    """The TOML beside a `.bin` (`NAME.toml`), else `<stage>.toml` for a file in `<stage>/`; None when neither exists."""
    candidates = [file.with_suffix(".toml")]
    if file.parent != folder:
        candidates.append(folder / f"{file.parent.name}.toml")
    for candidate in candidates:
        if candidate.is_file():
            try:
                return candidate, tomllib.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
                raise ParityError(f"{candidate}: not valid TOML ({exc})") from None
    return None


def _stage_name(name: str, where: Path) -> str:
    if name in STAGE_NAMES:
        return name
    short = [stage for stage in STAGE_NAMES if stage.split(".", 1)[1] == name]
    if len(short) == 1:
        return short[0]
    close = difflib.get_close_matches(name, _ALL_NAMES, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; stages are {', '.join(STAGE_NAMES)}"
    raise ParityError(f"{where}: {name!r} is not a stage name{hint} (or give stage = \"...\" in a sidecar {where.stem}.toml)")


def _tensor_name(file: Path, folder: Path, sidecar: tuple[Path, dict] | None) -> tuple[str, int | None]:
    """(stage, index) from the sidecar's `stage`/`index`, else from the path: <stage>/<index>, <stage>_<index>, <stage>."""
    settings = sidecar[1] if sidecar else {}
    where = sidecar[0] if sidecar else file
    number = frame_number(file)
    if "stage" in settings:
        if not isinstance(settings["stage"], str):
            raise ParityError(f"{where}: stage must be a string such as \"frame.unet_output\"")
        stage = _stage_name(settings["stage"], where)
        index = number if stage.startswith("frame.") else None
    elif file.parent != folder:
        stage = _stage_name(file.parent.name, file.parent)
        if number is None:
            raise ParityError(f"{file}: no frame index in its name; files in {file.parent.name}/ are named <index>{file.suffix}")
        index = number
    else:
        match = re.fullmatch(r"(.+?)[_\-.](\d+)", file.stem)
        if match and match.group(1) in _ALL_NAMES:
            stage, index = _stage_name(match.group(1), file), int(match.group(2))
        else:
            stage, index = _stage_name(file.stem, file), None
    if "index" in settings:
        if not isinstance(settings["index"], int) or settings["index"] < 0:
            raise ParityError(f"{where}: index must be a frame index >= 0")
        index = settings["index"]
    return stage, index


def _load_npy(file: Path) -> np.ndarray:
    try:
        return np.load(file, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ParityError(f"{file}: not a readable .npy ({exc}); write it with numpy.save or the .npy format 1.0") from None


def _load_bin(file: Path, stage: str, sidecar: tuple[Path, dict] | None, shapes: dict[str, tuple[int, ...]] | None) -> np.ndarray:
    settings = sidecar[1] if sidecar else {}
    shape = settings.get("shape")
    if shape is None and shapes:
        shape = shapes.get(stage, shapes.get(stage.split(".", 1)[1]))
    if shape is None:
        raise ParityError(f"{file}: a raw .bin needs its shape: pass it, or write {file.with_suffix('.toml').name} "
                          f"beside it with shape = [..] (and stage = \"{stage}\")")
    if not isinstance(shape, list | tuple) or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ParityError(f"{sidecar[0] if sidecar and 'shape' in settings else file}: shape must be a list of positive integers, got {shape!r}")
    dtype_name = settings.get("dtype", "float32")
    try:
        dtype = np.dtype(dtype_name).newbyteorder("<")
    except TypeError:
        raise ParityError(f"{sidecar[0] if sidecar else file}: unknown dtype {dtype_name!r} (use float32, float16, int64, uint8)") from None
    expected = int(np.prod(shape)) * dtype.itemsize
    actual = file.stat().st_size
    if actual != expected:
        dims = "x".join(str(d) for d in shape)
        raise ParityError(f"{file}: {actual} bytes, but shape {dims} of {dtype.name} needs {expected}; check the shape or the file")
    return np.memmap(file, dtype=dtype, mode="r", shape=tuple(shape))
