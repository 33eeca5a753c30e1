"""Frames to an H.264 + AAC mp4 at 25 fps through the ffmpeg that imageio-ffmpeg ships.

The video is a separate, lossy stage: pixel parity is measured on frames before encoding.
Frames are converted to I420 (BT.601, limited range, as ffmpeg assumes for yuv420p) by OpenCV
before they reach ffmpeg: on 2 cores that costs ~1.3 ms a 720p frame against ~2.5 ms in ffmpeg's
own bgr24 conversion, halves what goes through the pipe, and is closer to the frames (mean error
~1.3 levels, against ~2.2 with a -2.5 level bias in blue through ffmpeg's default conversion).
`VideoWriter` writes to a temporary `.partial.mp4` and renames it into place on `close()`, so an
interrupted run never leaves a complete-looking video.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import cv2
import numpy as np

from ..errors import ParityError

FPS = 25
CRF = 20
# libx264's fastest preset. On 2 cores the default ("medium") costs ~35 ms of CPU per 720p frame,
# more than half the U-Net's ~57 ms; "ultrafast" ~6.5 ms, for a file ~2.5x larger at the same CRF.
# The video is a lossy viewing copy (parity is measured on frames before encoding).
PRESET = "ultrafast"
THREADS = 1  # x264 threads: one costs least CPU at this preset (the pipeline's other threads keep the cores busy)


class VideoWriter:
    """`with VideoWriter(path, (W, H), audio=wav) as video: video.write(frame_bgr)`."""

    def __init__(self, path: str | os.PathLike, size: tuple[int, int], audio: str | os.PathLike | None = None, fps: int = FPS):
        import imageio_ffmpeg

        self.path = Path(path)
        self.size = size
        self.frames = 0
        self._tmp = self.path.with_name(self.path.stem + ".partial.mp4")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._even = (size[0] + size[0] % 2, size[1] + size[1] % 2)  # I420 needs even sizes: repeat the last row/column
        self._writer = imageio_ffmpeg.write_frames(
            str(self._tmp),
            self._even,
            pix_fmt_in="yuv420p",
            pix_fmt_out="yuv420p",
            fps=fps,
            codec="libx264",
            quality=None,
            macro_block_size=1,
            ffmpeg_log_level="error",
            audio_path=None if audio is None else str(audio),
            audio_codec="aac" if audio is not None else None,
            # the matrix the pixels were converted with; stop at the shorter of video and audio
            output_params=["-crf", str(CRF), "-preset", PRESET, "-threads", str(THREADS),
                           "-colorspace", "smpte170m", "-color_range", "tv", "-shortest"],
        )
        self._writer.send(None)

    def write(self, frame: np.ndarray) -> None:
        if frame.shape != (self.size[1], self.size[0], 3) or frame.dtype != np.uint8:
            raise ParityError(
                f"{self.path}: frame {self.frames} is {frame.shape} {frame.dtype}, expected ({self.size[1]}, {self.size[0]}, 3) uint8"
            )
        if self._even != self.size:
            frame = cv2.copyMakeBorder(frame, 0, self._even[1] - self.size[1], 0, self._even[0] - self.size[0], cv2.BORDER_REPLICATE)
        self._writer.send(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420))
        self.frames += 1

    def close(self) -> Path:
        self._writer.close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, *rest) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
