"""reference/video.py: the mp4 holds every frame, in the right colours, and appears only when complete."""

import imageio_ffmpeg
import numpy as np
import pytest

from synctalk_parity.errors import ParityError
from synctalk_parity.reference.video import VideoWriter


def _decode(path, size):
    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="bgr24")
    meta = next(reader)
    frames = [np.frombuffer(b, np.uint8).reshape(size[1], size[0], 3) for b in reader]
    return meta, frames


def _frames(sanders, count, size):
    """Real pictures (sanders-mini templates, cut to `size`): smooth skin, edges, saturated colours."""
    from synctalk_parity.reference.dataset import open_dataset

    templates = open_dataset(sanders).templates
    return [np.ascontiguousarray(templates[i].read_image()[200 : 200 + size[1], 500 : 500 + size[0]]) for i in range(count)]


@pytest.mark.parametrize("size", [(320, 240), (101, 75)])
def test_every_frame_comes_back_in_its_colours(tmp_path, sanders, size):
    frames = _frames(sanders, 12, size)
    with VideoWriter(tmp_path / "v.mp4", size) as video:
        for frame in frames:
            video.write(frame)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]
    even = (size[0] + size[0] % 2, size[1] + size[1] % 2)
    meta, decoded = _decode(tmp_path / "v.mp4", even)
    assert meta["fps"] == 25 and len(decoded) == len(frames)
    for source, back in zip(frames, decoded):
        back = back[: size[1], : size[0]].astype(np.int16)
        error = back - source
        # lossy but faithful (measured ~1.3 mean, channel bias <= ~1.7 with ffmpeg's own decoding conversion);
        # swapped channels, a wrong YUV matrix or range move these by tens of levels
        assert np.abs(error).mean() < 3.0
        assert np.all(np.abs(error.mean(axis=(0, 1))) < 2.5), error.mean(axis=(0, 1))


def test_wrong_frame_size_is_refused_and_abort_leaves_nothing(tmp_path):
    video = VideoWriter(tmp_path / "v.mp4", (64, 48))
    with pytest.raises(ParityError, match=r"v.mp4: frame 0 is \(48, 50, 3\) uint8, expected \(48, 64, 3\) uint8"):
        video.write(np.zeros((48, 50, 3), np.uint8))
    video.abort()
    assert list(tmp_path.iterdir()) == []
