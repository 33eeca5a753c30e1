"""Frames to an H.264 + AAC mp4 at 25 fps through the ffmpeg that imageio-ffmpeg ships.

The video is a separate, lossy stage: pixel parity is measured on frames before encoding.
`VideoWriter` writes to a temporary `.partial.mp4` and renames it into place on `close()`, so an
interrupted run never leaves a complete-looking video.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ParityError

FPS = 25
CRF = 20


class VideoWriter:
    """`with VideoWriter(path, (W, H), audio=wav) as video: video.write(frame_bgr)`."""

    def __init__(self, path: str | os.PathLike, size: tuple[int, int], audio: str | os.PathLike | None = None, fps: int = FPS):
        import imageio_ffmpeg

        self.path = Path(path)
        self.size = size
        self.frames = 0
        self._tmp = self.path.with_name(self.path.stem + ".partial.mp4")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = imageio_ffmpeg.write_frames(
            str(self._tmp),
            size,
            pix_fmt_in="bgr24",
            pix_fmt_out="yuv420p",
            fps=fps,
            codec="libx264",
            quality=None,
            macro_block_size=1,
            ffmpeg_log_level="error",
            audio_path=None if audio is None else str(audio),
            audio_codec="aac" if audio is not None else None,
            # yuv420p needs even sizes: pad odd ones by a pixel; stop at the shorter of video/audio
            output_params=["-crf", str(CRF), "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-shortest"],
        )
        self._writer.send(None)

    def write(self, frame: np.ndarray) -> None:
        if frame.shape != (self.size[1], self.size[0], 3) or frame.dtype != np.uint8:
            raise ParityError(
                f"{self.path}: frame {self.frames} is {frame.shape} {frame.dtype}, expected ({self.size[1]}, {self.size[0]}, 3) uint8"
            )
        self._writer.send(np.ascontiguousarray(frame))
        self.frames += 1

    def close(self) -> Path:
        self._writer.close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self._writer.close()
        except Exception:  # noqa: BLE001 - the run already failed; the partial file is removed either way
            pass
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, *rest) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
