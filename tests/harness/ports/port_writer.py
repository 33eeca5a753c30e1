"""Ports written by hand, as other people write them, for the port judge's tests: the reference's stage functions
where the port is right, and each mistake written here in plain OpenCV/numpy (never with the simulator or a
`Variant`, or a test would prove nothing): templates in another order, a crop or paste resized with another kernel,
a feathered or cloned paste, the mouth straight onto the box, a smaller mask, the mouth's colours bent (a mistake
no catalogue holds). Written as ports write them: PNG or JPEG frames numbered from 1, H.264 or MJPEG video."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np

from synctalk_parity.reference import audio, frames


@dataclass(frozen=True)
class PortMistakes:
    """What a hand-written port does differently (the defaults: nothing)."""

    templates: tuple[int, ...] | None = None  # the template of each frame, in place of the schedule
    crop_kernel: int = cv2.INTER_CUBIC
    paste_kernel: int = cv2.INTER_CUBIC
    no_canvas: bool = False
    mask: tuple[int, int, int, int] = frames.MASK_RECT
    feather: int = 0  # a linear alpha ramp this many pixels wide from the box edge
    clone: bool = False  # cv2.seamlessClone
    paste_corner_bilinear: bool = False  # the paste resized as a hand-written Go resize does: bilinear, corners mapped to corners
    mouth_gamma: float | None = None  # the mouth's levels bent by a gamma curve (uncatalogued)
    mouth_tint: tuple[int, int, int] | None = None  # BGR levels added to the mouth (uncatalogued)


def make_port(case, mistakes: PortMistakes = PortMistakes(), count: int | None = None) -> dict[int, np.ndarray]:
    """{index: output frame} of a port of `case` (a ReferenceCase-like object: dataset, clip, schedule, generate)."""
    out = {}
    total = case.clip.frame_count if count is None else count
    for index in range(total):
        template_index = mistakes.templates[index] if mistakes.templates is not None else case.schedule[index]
        template = case.dataset.templates[template_index]
        image, (xmin, ymin, xmax, ymax) = template.read_image(), template.box
        crop = cv2.resize(image[ymin:ymax, xmin:xmax], (328, 328), interpolation=mistakes.crop_kernel)
        real = crop[4:324, 4:324].copy()
        masked = cv2.rectangle(real.copy(), mistakes.mask, (0, 0, 0), -1)
        unet_input = np.stack([*cv2.split(real), *cv2.split(masked)]).astype(np.float32) / np.float32(255)
        mouth = (case.generate(unet_input, audio.unet_audio_window(case.clip.features, index)).transpose(1, 2, 0) * 255).astype(np.uint8)
        if mistakes.mouth_gamma is not None:
            table = np.clip(np.rint(255 * (np.arange(256) / 255) ** mistakes.mouth_gamma), 0, 255).astype(np.uint8)
            mouth = cv2.LUT(mouth, table)
        if mistakes.mouth_tint is not None:
            mouth = np.clip(mouth.astype(np.int16) + np.array(mistakes.mouth_tint, np.int16), 0, 255).astype(np.uint8)
        size = (xmax - xmin, ymax - ymin)
        if mistakes.no_canvas:
            region = cv2.resize(mouth, size, interpolation=mistakes.paste_kernel)
        else:
            canvas = crop.copy()
            canvas[4:324, 4:324] = mouth
            resized = corner_bilinear if mistakes.paste_corner_bilinear else lambda image, size: cv2.resize(image, size, interpolation=mistakes.paste_kernel)
            region = resized(canvas, size)
        frame = image.copy()
        if mistakes.clone:
            mask = np.full(region.shape[:2], 255, np.uint8)
            frame = cv2.seamlessClone(region, image, mask, ((xmin + xmax) // 2, (ymin + ymax) // 2), cv2.NORMAL_CLONE)
        elif mistakes.feather:
            h, w = region.shape[:2]
            d = np.minimum.outer(np.minimum(np.arange(h), np.arange(h)[::-1]), np.minimum(np.arange(w), np.arange(w)[::-1]))
            alpha = np.minimum(1.0, (d + 0.5) / mistakes.feather)[..., None]
            under = frame[ymin:ymax, xmin:xmax].astype(np.float64)
            frame[ymin:ymax, xmin:xmax] = np.clip(np.rint(under + alpha * (region - under)), 0, 255).astype(np.uint8)
        else:
            frame[ymin:ymax, xmin:xmax] = region
        out[index] = frame
    return out


def corner_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A bilinear resize as a Go port writes it: output (x, y) reads the source at x * (w_in - 1) / (w_out - 1), y likewise
    (corners on corners), the four neighbours weighted in float64, rounded to uint8."""
    width, height = size
    sy = np.arange(height) * ((image.shape[0] - 1) / (height - 1))
    sx = np.arange(width) * ((image.shape[1] - 1) / (width - 1))
    y0, x0 = sy.astype(np.int64), sx.astype(np.int64)
    y1, x1 = np.minimum(y0 + 1, image.shape[0] - 1), np.minimum(x0 + 1, image.shape[1] - 1)
    fy, fx = (sy - y0)[:, None, None], (sx - x0)[None, :, None]
    pixels = image.astype(np.float64)
    top = pixels[y0][:, x0] * (1 - fx) + pixels[y0][:, x1] * fx
    bottom = pixels[y1][:, x0] * (1 - fx) + pixels[y1][:, x1] * fx
    return np.clip(np.floor(top * (1 - fy) + bottom * fy + 0.5), 0, 255).astype(np.uint8)


def write_frames(folder: Path, made: dict[int, np.ndarray], pattern: str = "frame_{:05d}.png", quality: int | None = None, base: int = 1) -> Path:
    folder.mkdir(parents=True)
    for index in sorted(made):
        params = [cv2.IMWRITE_JPEG_QUALITY, quality] if quality else []
        cv2.imwrite(str(folder / pattern.format(index + base)), made[index], params)
    return folder


def write_video(path: Path, made: dict[int, np.ndarray], codec_args: list[str], wav: Path | None = None) -> Path:
    """The frames piped to FFmpeg as a port does (`-c:v libx264 -crf 20 -pix_fmt yuv420p`), with the sound when given."""
    height, width = made[0].shape[:2]
    sound = ["-i", str(wav), "-c:a", "aac", "-shortest"] if wav is not None else []
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}",
               "-r", "25", "-i", "-", *sound, *codec_args, str(path)]
    subprocess.run(command, input=b"".join(np.ascontiguousarray(made[i]).tobytes() for i in sorted(made)), check=True)
    return path


def yuv420_full_range(frame: np.ndarray) -> bytes:
    """A port's own BGR -> yuv420p conversion, BT.601 weights but full range (Y = luma * 255, no 16..235 scaling): the
    raw planes it pipes to FFmpeg, which tags nothing (limited range is then assumed by every decoder)."""
    return _yuv420(frame, (0.299, 0.587, 0.114), full=True)


def yuv420_bt709(frame: np.ndarray) -> bytes:
    """A port's own BGR -> yuv420p conversion with BT.709 weights, limited range, untagged (read as BT.601 by decoders)."""
    return _yuv420(frame, (0.2126, 0.7152, 0.0722), full=False)


def _yuv420(frame: np.ndarray, weights: tuple[float, float, float], full: bool) -> bytes:
    height, width = frame.shape[:2]
    b, g, r = (frame[..., i].astype(np.float64) for i in range(3))
    kr, kg, kb = weights
    luma = kr * r + kg * g + kb * b
    luma_scale, chroma_scale = (1.0, 1.0) if full else (219 / 255, 224 / 255)
    planes = [(0 if full else 16) + luma_scale * luma, 128 + chroma_scale * (b - luma) / (2 * (1 - kb)),
              128 + chroma_scale * (r - luma) / (2 * (1 - kr))]
    halved = [plane.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3)) for plane in planes[1:]]
    return b"".join(np.clip(np.rint(plane), 0, 255).astype(np.uint8).tobytes() for plane in (planes[0], *halved))


def write_yuv_video(path: Path, made: dict[int, np.ndarray], convert: Callable[[np.ndarray], bytes], codec_args: list[str]) -> Path:
    """The frames converted to yuv420p by the port itself (`convert`), piped to FFmpeg as raw planes."""
    height, width = made[0].shape[:2]
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{width}x{height}",
               "-r", "25", "-i", "-", *codec_args, str(path)]
    subprocess.run(command, input=b"".join(convert(made[i]) for i in sorted(made)), check=True)
    return path


Maker = Callable[..., dict[int, np.ndarray]]
