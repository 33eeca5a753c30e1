"""Read what a port already writes: a dump, a video, a folder of frames or of mouth crops, or raw tensors.

    kind = detect_kind(path)              # "dump" | "video" | "frames" | "mouths" | "tensors"
    files = read_frame_files(folder)      # FrameFile(number, path, size) sorted by number; files.base
    image = read_image(files[0].path)     # (H, W, 3) uint8 BGR, as cv2.imread gives
    video = read_video("port.mp4")        # fps, frame_count, size, codec, pixel format, colour, x264's settings, audio
    for frame in video: ...               # BGR frames decoded lazily, one at a time
    info = jpeg_info(path)                # quality from the quantization table, chroma subsampling
    tensors = read_tensors(folder, None)  # {stage: {index or None: array}}

Frames: every JPEG, PNG or WebP in the folder, numbered by the last integer in the file name
(`frame_00001.jpg`, `00000.png`, `12.jpg`), so any numbering base works; the base is the smallest
number. Sizes come from the file headers (Pillow reads the header only), and one folder holds one size. A
folder whose images are all 320 x 320 holds mouth crops (the U-Net's output, `frame.mouth`).

Images are decoded with OpenCV, as the reference reads its templates. Before decoding, each file is
checked, so a truncated file fails in one line instead of libjpeg or libpng printing on the terminal:
Pillow opens it (a cut WebP fails there) and verifies a PNG's chunks to IEND; for a JPEG, which Pillow
checks only by decoding it, the end-of-image marker is looked for.

Videos are read with PyAV (FFmpeg's libraries; FFmpeg's log stays off): the video stream's packets are
counted without decoding, its rate, size and codec read from the stream, its pixel format, colour range
and matrix and the encoder's own settings (x264's SEI: version and every option) from the first decoded
frame; frames are decoded to BGR when iterated (a 720p frame is 2.7 MB; nothing is held). The sound
track is decoded by the ffmpeg that imageio-ffmpeg ships to a float32 WAV on a pipe, read with soundfile
and mixed to mono and resampled to 16 kHz the way `reference/audio.py` (and so `librosa.load`) does.

JPEG quality: the luminance quantization table (Pillow's `quantization`) is compared with the IJG standard table
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
import subprocess
import tomllib
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ...errors import ParityError
from ...reference.audio import SAMPLE_RATE
from ...reference.stages import STAGE_NAMES
from ..verdict.dump import MANIFEST

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.frame import VideoFrame
    from PIL.Image import Image as PILImage

KINDS = ("dump", "video", "frames", "mouths", "tensors")
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
TENSOR_SUFFIXES = (".npy", ".bin")
MOUTH_SIZE = (320, 320)  # the U-Net's output, W x H
ACCEPTED = ("a dump folder (manifest.json), a video (.mp4 .mov .webm .mkv .avi), a folder of numbered frames "
            "(JPEG, PNG, WebP), a folder of 320x320 mouth crops, or a folder of tensors (.npy, .bin)")

IMAGE_FORMATS = ("JPEG", "PNG", "WEBP")  # Pillow's names of the formats read here
COLOR_RANGES = {1: "tv", 2: "pc"}  # FFmpeg's AVColorRange, by ffmpeg's names
# FFmpeg's AVColorSpace (the YUV matrix), by ffmpeg's names (`-colorspace`); 2 is "unspecified"
COLOR_MATRICES = {0: "gbr", 1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "ycgco", 9: "bt2020nc", 10: "bt2020c"}

# IJG (JPEG standard Annex K) quantization tables, natural (row-major) order
IJG_LUMINANCE = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)
_ALL_NAMES = (*STAGE_NAMES, *(name.split(".", 1)[1] for name in STAGE_NAMES))  # full and short stage names


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


@contextmanager
def _image_header(source: Path | bytes, path: Path) -> Iterator[PILImage]:
    """The image opened by Pillow, which reads its header only (size, JPEG tables and sampling); a JPEG, PNG or WebP,
    else a ParityError. Pillow's warnings (a damaged EXIF block, say) stay quiet: the checks here say what matters."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings(action="ignore"), Image.open(io.BytesIO(source) if isinstance(source, bytes) else source,
                                                                  formats=IMAGE_FORMATS) as image:
            yield image
    except UnidentifiedImageError:
        size = f" ({len(source)} bytes)" if isinstance(source, bytes) else ""
        raise ParityError(f"{path}: not a JPEG, PNG or WebP image{size}; write frames in one of those formats") from None
    except OSError as exc:
        if exc.errno is not None:
            raise ParityError(f"{path}: cannot read the image ({exc.strerror or exc})") from None
        # Pillow's WebP plugin has libwebp take the whole file apart when opening it: a cut one fails here
        raise ParityError(f"{path}: truncated or damaged image ({exc}); write it again") from None


def _check_image_complete(path: Path, data: bytes) -> None:
    """Refuse a file that is not JPEG/PNG/WebP or that ends early, before a decoder prints about it (libjpeg's
    "Premature end of JPEG file", libpng's "PNG input buffer is incomplete")."""
    with _image_header(data, path) as image:
        if image.format == "JPEG":
            # Pillow reads a JPEG's header only, and its verify() checks nothing for JPEG (a file cut in half passes);
            # only decoding finds the cut (Pillow: 11.7 ms a 720p frame, measured, on top of OpenCV's decode). So the
            # end-of-image marker is looked for here, in the file's last bytes.
            if b"\xff\xd9" not in data[-64:].rstrip(b"\x00\r\n "):
                raise ParityError(f"{path}: truncated JPEG (no end-of-image marker); write it again")
        elif image.format == "PNG":
            try:
                image.verify()  # walks the chunks to IEND, checking their CRCs: 0.25 ms a 720p frame, measured
            except (OSError, SyntaxError) as exc:
                raise ParityError(f"{path}: truncated or damaged PNG ({exc}); write it again") from None


def _image_size(path: Path) -> tuple[int, int]:
    """(W, H) from the file's header, without decoding."""
    with _image_header(path, path) as image:
        return image.size


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
    """Quality, exactness and chroma subsampling from a JPEG's header (read by Pillow); None for a non-JPEG file."""
    from PIL.JpegImagePlugin import JpegImageFile

    path = Path(path)
    with _image_header(path, path) as image:
        if not isinstance(image, JpegImageFile):
            return None
        components = image.layer  # per component of the frame header: (id, h, v, quantization table id)
        tables = image.quantization  # {table id: 64 values in natural (row-major) order}
        if not components:
            raise ParityError(f"{path}: damaged JPEG (no frame header); write it again")
        luminance_id = components[0][3]
        if luminance_id not in tables:
            raise ParityError(f"{path}: damaged JPEG (quantization table {luminance_id} of its first component is missing)")
        quality, error = _closest_quality(np.asarray(tables[luminance_id], np.int64), IJG_LUMINANCE)
        return JpegInfo(quality, error == 0, _subsampling([(h, v) for _, h, v, _ in components]), image.size)


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


def _subsampling(factors: list[tuple[int, int]]) -> str | None:
    """From the (h, v) sampling factors of Y, Cb, Cr. Pillow's `JpegImagePlugin.get_sampling` names 4:4:4, 4:2:2 and
    4:2:0 only (-1 for 4:4:0 and 4:1:1, which OpenCV's IMWRITE_JPEG_SAMPLING_FACTOR writes too), hence this table."""
    if len(factors) != 3:
        return None
    (yh, yv), (ch, cv), (rh, rv) = factors
    if (ch, cv) != (rh, rv) or yh % ch or yv % cv:
        return None
    return {(1, 1): "4:4:4", (2, 1): "4:2:2", (2, 2): "4:2:0", (1, 2): "4:4:0", (4, 1): "4:1:1"}.get((yh // ch, yv // cv))


# --------------------------------------------------------------------------------------------- video


@dataclass
class VideoFrames:
    """A video's frames (decoded lazily, BGR uint8), its rate, count, size and encoding, and its sound at 16 kHz mono.

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
    pixel_format: str | None = None  # as the stream is decoded: "yuv420p", "yuvj420p", "yuv444p", ...
    color_range: str | None = None  # "tv" (limited, 16..235) or "pc" (full); None when the stream does not say
    color_matrix: str | None = None  # the YUV matrix the stream declares ("smpte170m", "bt709"); None when unspecified
    encoder_settings: str | None = None  # what the encoder wrote about itself in the stream: x264's "x264 - core .. - options: .."

    def __len__(self) -> int:
        return self.frame_count

    @property
    def duration(self) -> float:
        return self.frame_count / self.fps if self.fps else 0.0

    def __iter__(self) -> Iterator[np.ndarray]:
        import av

        width, height = self.size
        with _open_video(self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            try:
                for frame in container.decode(stream):
                    yield frame.to_ndarray(format="bgr24", width=width, height=height)
            except av.FFmpegError as exc:
                raise ParityError(f"{self.path}: ffmpeg could not decode the video ({_reason(exc)})") from None

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
    """Open a video with PyAV (FFmpeg's libraries): count its frames (packets, no decoding), read its stream's rate,
    size and encoding and the first frame's side data (x264's settings), and decode its sound track."""
    import av

    path = Path(path)
    if not path.is_file():
        raise ParityError(f"{path}: video not found")
    with _open_video(path) as container:
        if not container.streams.video:
            raise ParityError(f"{path}: no video stream in this file; pass the port's video (H.264 mp4 or similar)")
        stream = container.streams.video[0]
        context = stream.codec_context
        try:
            frame_count = sum(1 for packet in container.demux(stream) if packet.size)
        except av.FFmpegError as exc:
            raise ParityError(f"{path}: ffmpeg cannot read this video ({_reason(exc)})") from None
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        size = (context.width, context.height)
        audio_codec = container.streams.audio[0].codec_context.name if container.streams.audio else None
        codec = context.name
    if frame_count == 0:
        raise ParityError(f"{path}: ffmpeg finds no video frames in this file")
    if 0 in size:
        raise ParityError(f"{path}: ffmpeg reports no frame size for the video stream")
    first = _first_frame(path)
    audio, audio_rate = _decode_audio(path) if audio_codec is not None else (None, None)
    return VideoFrames(
        path=path, fps=fps, frame_count=frame_count, size=size, codec=codec, audio=audio, audio_codec=audio_codec, audio_rate=audio_rate,
        pixel_format=first.format.name, color_range=COLOR_RANGES.get(int(first.color_range)),
        color_matrix=COLOR_MATRICES.get(int(first.colorspace)), encoder_settings=_encoder_settings(first),
    )


@contextmanager
def _open_video(path: Path) -> Iterator[InputContainer]:
    """The file opened by PyAV for reading (FFmpeg's log stays off, as PyAV leaves it), or a one-line ParityError."""
    import av

    try:
        container = av.open(str(path), mode="r")
    except av.FFmpegError as exc:
        raise ParityError(f"{path}: ffmpeg cannot read this video ({_reason(exc)})") from None
    with container:
        yield container


def _first_frame(path: Path) -> VideoFrame:
    import av

    with _open_video(path) as container:
        try:
            return next(container.decode(container.streams.video[0]))
        except (av.FFmpegError, StopIteration) as exc:
            reason = _reason(exc) if isinstance(exc, av.FFmpegError) else "no frame decodes"
            raise ParityError(f"{path}: ffmpeg could not decode the video ({reason})") from None


def _encoder_settings(frame: VideoFrame) -> str | None:
    """The text of the frame's user-data SEI (after its 16-byte UUID): x264 writes its version and every option there."""
    for data in cast(Iterable[Any], frame.side_data):  # PyAV's stubs call the container a single SideData
        if data.type.name == "SEI_UNREGISTERED":
            text = bytes(data)[16:].split(b"\x00", 1)[0].decode("utf-8", errors="replace").strip()
            if text:
                return text
    return None


def _reason(exc: Exception) -> str:
    """FFmpeg's own words for an error, without the file name PyAV appends."""
    return str(getattr(exc, "strerror", None) or exc).strip() or type(exc).__name__


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
