"""The noise floor of a lossy output: the reference's frames encoded the way the port's were, measured per region.

A port that writes H.264, MJPEG or JPEG cannot match the reference pixel for pixel, and a fixed threshold does
not say whether what is left is the codec or a mistake. So the reference's own frames are encoded alike and
decoded the way the candidate is decoded; the PSNR that leaves, per region (mouth box, rest of the crop box,
outside), is what a faithful port written this way would score:

    encoding = video_encoding(video)                    # from the stream: x264's options line, pixel format, colour
    floor = measure_floor(encoding, reference, candidate, boxes)
    floor.consistent, floor.text   # "consistent with the reference within the codec's noise (mouth box 38.8 dB vs 38.9 ...)"

**How the encoding is known.** x264 writes every option it ran with into the stream (a user-data SEI):
`crf=20.0`, `ref=3`, `subme=7`, ... are passed back to libx264 as `-x264-params`, with the stream's pixel
format, colour range and matrix (`-vf scale=out_color_matrix=..:out_range=..`, the tags `-colorspace`,
`-color_range`). Another codec (MJPEG, H.264 from another encoder, VP9) says less, so its rate is estimated:
the reference is encoded at a ladder of qualities, and the rung whose error outside the crop box (where a port
writes the template itself) is closest to the candidate's is taken ("estimated"). JPEG frames are re-encoded
with OpenCV at the files' quality and chroma subsampling.

**Frames.** A video codec predicts frames from frames, so the reference is encoded as a run of consecutive
frames (the first `FLOOR_FRAMES` the candidate holds); JPEG frames are independent, so any sample will do. The
candidate's PSNR is measured on the same frames as the floor's.

Encoding goes through FFmpeg's command line (imageio-ffmpeg's executable: what most ports pipe their frames to),
decoding through PyAV as the candidate's own video is decoded (`ingest.read_video`).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import ParityError
from ..verdict.metrics import SquaredError, squared_error
from .colour import ColourCheck, check_colour
from .regions import REGIONS, region_differences

Box = tuple[int, int, int, int]
FLOOR_FRAMES = 48  # consecutive frames encoded for a video's floor (about two seconds at 25 fps)
LADDER_FRAMES = 16  # frames encoded per rung when a video's rate is estimated
JPEG_FLOOR_FRAMES = 12
TOLERANCE_DB = 1.0  # a region this far below the reference encoded alike is still the codec's noise
REFERENCE_RANGE, REFERENCE_MATRIX = "tv", "smpte170m"  # what the reference pipeline writes (reference/video.py)
# SEI option -> libx264 parameter; values of the form a:b become a,b
X264_PARAMS = {
    "crf": "crf", "qp": "qp", "bitrate": "bitrate", "ref": "ref", "me": "me", "subme": "subme", "mixed_ref": "mixed-refs",
    "me_range": "merange", "chroma_me": "chroma-me", "trellis": "trellis", "8x8dct": "8x8dct", "fast_pskip": "fast-pskip",
    "bframes": "bframes", "b_pyramid": "b-pyramid", "b_adapt": "b-adapt", "direct": "direct", "weightb": "weightb",
    "weightp": "weightp", "keyint": "keyint", "keyint_min": "min-keyint", "scenecut": "scenecut", "rc_lookahead": "rc-lookahead",
    "mbtree": "mbtree", "qcomp": "qcomp", "ipratio": "ipratio", "pbratio": "pbratio", "cabac": "cabac", "threads": "threads",
    "lookahead_threads": "lookahead-threads", "sliced_threads": "sliced-threads", "qpmin": "qpmin", "qpmax": "qpmax", "qpstep": "qpstep",
}
DIRECT_MODES = {"0": "none", "1": "spatial", "2": "temporal", "3": "auto"}
LADDERS = {  # codec -> (encoder, option, values best to worst)
    "mjpeg": ("mjpeg", "-q:v", (2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 31)),
    "h264": ("libx264", "-crf", (12, 14, 16, 18, 19, 20, 21, 22, 23, 24, 26, 28, 30, 34)),
    "hevc": ("libx264", "-crf", (12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 34)),  # libx265 is not in imageio-ffmpeg's build: H.264 alike
    "vp9": ("libvpx-vp9", "-crf", (15, 20, 25, 30, 35, 40, 45, 50)),
    "mpeg4": ("mpeg4", "-q:v", (2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 31)),
}
MATRIX_NAMES = {"smpte170m": "BT.601", "bt470bg": "BT.601", "bt709": "BT.709", "bt2020nc": "BT.2020", "fcc": "FCC", "smpte240m": "SMPTE 240M"}
SCALE_MATRICES = {"smpte170m": "bt601", "bt470bg": "bt601", "bt709": "bt709", "fcc": "fcc", "smpte240m": "smpte240m", "bt2020nc": "bt2020"}


@dataclass(frozen=True)
class Encoding:
    """How a port's output was encoded: what the floor re-makes."""

    kind: str  # "video" or "jpeg"
    codec: str  # the stream's codec ("h264", "mjpeg", ...) or "jpeg"
    encoder: str  # what re-encodes the reference: "libx264", "mjpeg", "opencv-jpeg", ...
    options: tuple[str, ...] = ()  # encoder arguments for FFmpeg ("-crf", "20", "-x264-params", "...")
    pixel_format: str | None = None
    color_range: str | None = None  # "tv" / "pc" / None (unspecified: FFmpeg's default, limited)
    color_matrix: str | None = None
    quality: int | None = None  # JPEG quality
    subsampling: str | None = None  # JPEG chroma subsampling ("4:2:0")
    estimated: str | None = None  # how the rate was estimated when the stream does not say ("-q:v 5, from the outside region")
    settings: str = ""  # one line: what was read

    def describe(self) -> str:
        if self.kind == "jpeg":
            return f"JPEG quality {self.quality}" + (f", chroma {self.subsampling}" if self.subsampling else "")
        parts = [self.settings or self.codec]
        if self.estimated:
            parts.append(f"rate estimated: {self.estimated}")
        return ", ".join(parts)

    def colour(self) -> str | None:
        """The colour range and matrix against the reference pipeline's (None for JPEG frames)."""
        if self.kind != "video":
            return None
        range_ = {"tv": "limited range", "pc": "full range"}.get(self.color_range or "", "range unspecified (limited)")
        matrix = MATRIX_NAMES.get(self.color_matrix or "", "matrix unspecified (BT.601 by FFmpeg's default)")
        same = (self.color_range in (None, REFERENCE_RANGE)) and (self.color_matrix in (None, REFERENCE_MATRIX, "bt470bg"))
        verdict = "as the reference pipeline writes (limited range, BT.601)" if same else \
            "the reference pipeline writes limited range, BT.601 (a player that ignores the tags shows other colours)"
        return f"{self.pixel_format or '?'}, {range_}, {matrix}: {verdict}"


@dataclass
class CodecFloor:
    """Per region, the reference encoded alike against the reference (`floor`), and the candidate against the
    reference on the same frames (`candidate`), in dB."""

    encoding: Encoding
    frames: list[int]
    floor: dict[str, float]
    candidate: dict[str, float]
    tolerance_db: float = TOLERANCE_DB
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    colour: ColourCheck | None = None  # a video's YUV conversion told from its pixels, against what its stream declares (colour.py)

    @property
    def below(self) -> dict[str, float]:
        """The regions where the candidate is more than the tolerance below the floor: region -> dB below."""
        return {name: self.floor[name] - self.candidate[name] for name in REGIONS
                if name in self.floor and name in self.candidate and self.candidate[name] < self.floor[name] - self.tolerance_db}

    def colour_text(self) -> str | None:
        """The colour the stream declares against the reference pipeline's, and what its pixels say (None for JPEG frames)."""
        declared = self.encoding.colour()
        return declared if declared is None or self.colour is None else f"{declared}; {self.colour.text()}"

    @property
    def colour_mismatch(self) -> bool:
        """The pixels were converted to YUV otherwise than the stream declares: colours shifted everywhere."""
        return self.colour is not None and self.colour.mismatch

    @property
    def consistent(self) -> bool:
        return not self.below and not self.colour_mismatch

    @property
    def search_floor_db(self) -> float:
        """Where a simulation of this candidate stops: the lowest region floor, less the tolerance."""
        return min(self.floor.values()) - self.tolerance_db

    def text(self) -> str:
        pairs = ", ".join(f"{_label(name)} {self.candidate[name]:.1f} dB vs {self.floor[name]:.1f} dB" for name in REGIONS if name in self.floor)
        where = f"frames {self.frames[0]}..{self.frames[-1]}" if self.frames == list(range(self.frames[0], self.frames[-1] + 1)) else \
            f"{len(self.frames)} frames"
        if self.colour_mismatch and not self.below:
            assert self.colour is not None
            return f"{self.colour.text()}; otherwise within the codec's noise ({pairs} for the reference encoded alike; {where}); encoding: " \
                f"{self.encoding.describe()}"
        head = (f"consistent with the reference within the codec's noise ({pairs} for the reference encoded alike; {where})" if self.consistent else
                "beyond the codec's noise: " + "; ".join(f"{_label(name)} {self.candidate[name]:.1f} dB, {gap:.1f} dB below the "
                                                         f"{self.floor[name]:.1f} dB of the reference encoded alike"
                                                         for name, gap in self.below.items()) + f" ({where})")
        return f"{head}; encoding: {self.encoding.describe()}"


def _label(region: str) -> str:
    return {"mouth": "mouth box", "crop_rest": "rest of the crop box", "outside": "outside"}[region]


# ----- what the candidate was encoded with ----------------------------------------------------------------


def jpeg_encoding(quality: int, subsampling: str | None = None) -> Encoding:
    return Encoding("jpeg", "jpeg", "opencv-jpeg", quality=int(quality), subsampling=subsampling,
                    settings=f"JPEG quality {quality}" + (f", chroma {subsampling}" if subsampling else ""))


def video_encoding(video) -> Encoding:
    """The encoding an `ingest.VideoFrames` declares: x264's options when its stream carries them; otherwise only the
    codec, pixel format and colour (the rate is then estimated by `estimate_rate`)."""
    settings = video.encoder_settings or ""
    options: list[str] = []
    described = [video.codec]
    encoder = LADDERS.get(video.codec, ("libx264", "", ()))[0]
    if "x264" in settings and "options:" in settings:
        parsed = x264_options(settings)
        options = ["-x264-params", ":".join(f"{k}={v}" for k, v in parsed.items())]
        encoder = "libx264"
        rate = (parsed.get("crf") and f"crf={parsed['crf']}") or (parsed.get("qp") and f"qp={parsed['qp']}") or \
            (parsed.get("bitrate") and f"bitrate={parsed['bitrate']}") or "?"
        described = [f"H.264 by x264 ({rate}, {len(parsed)} options from the stream)"]
    described.append(video.pixel_format or "pixel format unknown")
    return Encoding("video", video.codec, encoder, tuple(options), video.pixel_format, video.color_range, video.color_matrix,
                    settings=", ".join(described))


def x264_options(settings: str) -> dict[str, str]:
    """x264's options line ("... options: cabac=1 ref=3 deblock=1:0:0 ... crf=20.0 ...") as libx264 parameters."""
    found: dict[str, str] = {}
    raw = dict(item.split("=", 1) for item in settings.split("options:", 1)[1].split() if "=" in item)
    rc = raw.get("rc", "crf")
    for key, value in raw.items():
        name = X264_PARAMS.get(key)
        if name is None or (key == "crf" and rc != "crf") or (key == "qp" and rc != "cqp") or (key == "bitrate" and rc not in ("abr", "cbr")):
            continue
        if key == "direct":
            value = DIRECT_MODES.get(value, value)
        found[name] = value.replace(":", ",")
    deblock = raw.get("deblock")
    if deblock:
        enabled, *offsets = deblock.split(":")
        found["deblock" if enabled == "1" else "no-deblock"] = ",".join(offsets) if enabled == "1" else "1"
    if raw.get("psy") == "1" and "psy_rd" in raw:
        found["psy-rd"] = raw["psy_rd"].replace(":", ",")
    elif raw.get("psy") == "0":
        found["no-psy"] = "1"
    aq = raw.get("aq")
    if aq:
        mode, _, strength = aq.partition(":")
        found["aq-mode"] = mode
        if strength:
            found["aq-strength"] = strength
    deadzone = raw.get("deadzone")
    if deadzone and "," in deadzone:
        inter, intra = deadzone.split(",", 1)
        found["deadzone-inter"], found["deadzone-intra"] = inter, intra
    if found.get("keyint") == "infinite":
        found["keyint"] = "infinite"
    return found


# ----- encoding the reference alike ---------------------------------------------------------------------------


def encode_alike(frames: Sequence[np.ndarray], encoding: Encoding, extra: Sequence[str] = ()) -> list[np.ndarray]:
    """The frames (BGR uint8, one size) encoded as `encoding` says and decoded as the candidate's are."""
    if not frames:
        return []
    if encoding.kind == "jpeg":
        return [_jpeg(frame, encoding.quality or 95, encoding.subsampling) for frame in frames]
    import imageio_ffmpeg

    from .ingest import read_video

    height, width = frames[0].shape[:2]
    folder = Path(tempfile.mkdtemp(prefix="parity-codec-"))
    try:
        out = folder / ("alike.mkv" if encoding.encoder != "libx264" else "alike.mp4")
        scale = []
        if encoding.color_matrix in SCALE_MATRICES or encoding.color_range in ("tv", "pc"):
            parts = [f"out_color_matrix={SCALE_MATRICES.get(encoding.color_matrix or '', 'bt601')}",
                     f"out_range={'full' if encoding.color_range == 'pc' else 'limited'}"]
            scale = ["-vf", "scale=" + ":".join(parts)]
        tags = []
        if encoding.color_range:
            tags += ["-color_range", encoding.color_range]
        if encoding.color_matrix:
            tags += ["-colorspace", encoding.color_matrix]
        pixel = ["-pix_fmt", encoding.pixel_format] if encoding.pixel_format else []
        command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
                   "-s", f"{width}x{height}", "-r", "25", "-i", "-", *scale, "-c:v", encoding.encoder, *encoding.options, *extra, *pixel, *tags,
                   str(out)]
        done = subprocess.run(command, input=b"".join(np.ascontiguousarray(f).tobytes() for f in frames), capture_output=True)
        if done.returncode != 0:
            lines = done.stderr.decode(errors="replace").strip().splitlines()
            raise ParityError(f"encoding the reference as the port's video ({encoding.encoder}) failed: {lines[-1] if lines else 'no message'}")
        return list(read_video(out))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _jpeg(frame: np.ndarray, quality: int, subsampling: str | None) -> np.ndarray:
    import cv2

    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    factor = {"4:4:4": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444, "4:2:2": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
              "4:2:0": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420}.get(subsampling or "")
    if factor is not None:
        params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, factor]
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(frame), params)
    if not ok:
        raise ParityError(f"OpenCV could not JPEG-encode a {frame.shape} frame")
    return np.asarray(cv2.imdecode(data, cv2.IMREAD_COLOR))


def estimate_rate(encoding: Encoding, reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray], boxes: Sequence[Box]) -> Encoding:
    """For a stream that does not carry its settings: the rung of the codec's quality ladder whose error outside the
    crop box is closest to the candidate's (where a port writes the template itself)."""
    if encoding.kind != "video" or encoding.options or encoding.codec not in LADDERS:
        return encoding
    encoder, option, values = LADDERS[encoding.codec]
    frames = min(LADDER_FRAMES, len(reference))
    target = _pooled(reference[:frames], candidate[:frames], boxes[:frames])["outside"]
    best: tuple[float, int] | None = None
    for value in values:
        rung = Encoding("video", encoding.codec, encoder, (option, str(value)), encoding.pixel_format, encoding.color_range, encoding.color_matrix)
        try:
            decoded = encode_alike(reference[:frames], rung)
        except ParityError:
            return encoding
        gap = abs(_pooled(reference[:frames], decoded, boxes[:frames])["outside"] - target)
        if best is None or gap < best[0]:
            best = (gap, value)
    assert best is not None
    return Encoding("video", encoding.codec, encoder, (option, str(best[1])), encoding.pixel_format, encoding.color_range, encoding.color_matrix,
                    estimated=f"{encoder} {option} {best[1]}, whose error outside the crop box is nearest the candidate's ({best[0]:.2f} dB apart)",
                    settings=encoding.settings)


# ----- the floor -------------------------------------------------------------------------------------------


def measure_floor(encoding: Encoding, reference: Mapping[int, np.ndarray], candidate: Mapping[int, np.ndarray],
                  boxes: Mapping[int, Box]) -> CodecFloor:
    """The reference frames at the indices given (consecutive ones for a video), encoded alike, against the reference,
    per region; and the candidate against the reference on the same frames."""
    import time

    began = time.perf_counter()
    indices = sorted(set(reference) & set(candidate))
    if not indices:
        raise ParityError("no frames both in the reference and the candidate to measure the codec's noise on")
    refs, cands, bxs = [reference[i] for i in indices], [candidate[i] for i in indices], [boxes[i] for i in indices]
    notes = []
    if encoding.kind == "video" and not encoding.options:
        encoding = estimate_rate(encoding, refs, cands, bxs)
    decoded = encode_alike(refs, encoding)
    if len(decoded) != len(refs):
        notes.append(f"the encoder returned {len(decoded)} of {len(refs)} frames")
        count = min(len(decoded), len(refs))
        indices, refs, cands, bxs, decoded = indices[:count], refs[:count], cands[:count], bxs[:count], decoded[:count]
    floor = _pooled(refs, decoded, bxs)
    measured = _pooled(refs, cands, bxs)
    colour = check_colour(encoding.pixel_format, encoding.color_matrix, encoding.color_range, refs, cands, bxs) if encoding.kind == "video" else None
    return CodecFloor(encoding, indices, floor, measured, seconds=time.perf_counter() - began, notes=notes, colour=colour)


def floor_indices(available: Sequence[int], kind: str) -> list[int]:
    """The frames a floor is measured on: the first run of consecutive frames (video), or a sample (JPEG)."""
    ordered = sorted(set(available))
    if kind == "video":
        run = [ordered[0]] if ordered else []
        for index in ordered[1:]:
            if index != run[-1] + 1 or len(run) >= FLOOR_FRAMES:
                break
            run.append(index)
        return run
    if len(ordered) <= JPEG_FLOOR_FRAMES:
        return ordered
    return [ordered[p] for p in sorted(set(np.linspace(0, len(ordered) - 1, JPEG_FLOOR_FRAMES).round().astype(int).tolist()))]


def _pooled(reference: Sequence[np.ndarray], other: Sequence[np.ndarray], boxes: Sequence[Box]) -> dict[str, float]:
    pooled = dict.fromkeys(REGIONS, SquaredError())
    for ref, frame, box in zip(reference, other, boxes):
        for name, diff in region_differences(ref, frame, box).items():
            pooled[name] = pooled[name] + squared_error(diff)
    return {name: error.psnr for name, error in pooled.items() if error.count}
