"""harness/verdict/png.py: the pipeline's PNG writer must be lossless and readable by any PNG reader."""

import cv2
import numpy as np
import pytest
from PIL import Image

from synctalk_parity.errors import ParityError
from synctalk_parity.harness.verdict.png import encode_png, write_png


@pytest.mark.parametrize("shape", [(1, 1, 3), (7, 5, 3), (61, 33, 3), (9, 4)])
def test_round_trip_through_opencv_and_pillow(tmp_path, shape):
    image = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    path = tmp_path / "x.png"
    write_png(path, image)
    assert np.array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), image)
    with Image.open(path) as pil:  # an independent decoder, which checks chunk CRCs and the zlib stream
        pil_pixels = np.asarray(pil)
    expected = image if image.ndim == 2 else image[:, :, ::-1]  # Pillow reads RGB
    assert np.array_equal(pil_pixels, expected)


def test_real_frame_is_lossless_and_compressed(sanders):
    """A 1280x720 template: identical after decoding, and far smaller than the raw pixels."""
    from synctalk_parity.reference.dataset import open_dataset

    frame = open_dataset(sanders).templates[0].read_image()
    data = encode_png(frame)
    assert np.array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), frame)
    assert len(data) < frame.nbytes / 4
    # not a different view of the picture: a non-contiguous (cropped) input encodes the crop
    crop = frame[100:300, 200:520]
    assert np.array_equal(cv2.imdecode(np.frombuffer(encode_png(crop), np.uint8), cv2.IMREAD_UNCHANGED), crop)


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 4), np.uint8), np.zeros((0, 4, 3), np.uint8)])
def test_rejects_what_it_cannot_store(bad):
    with pytest.raises(ValueError, match="PNG needs"):
        encode_png(bad)


def test_unwritable_path_names_the_file(tmp_path):
    target = tmp_path / "missing-folder" / "x.png"
    with pytest.raises(ParityError, match="missing-folder/x.png: cannot write the PNG"):
        write_png(target, np.zeros((2, 2, 3), np.uint8))
    assert not target.exists()
