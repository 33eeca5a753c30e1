"""Dataset input is validated up front: every bad file fails with its name before any inference."""

from __future__ import annotations

import shutil
import subprocess

import cv2
import imageio_ffmpeg
import numpy as np
import pytest

from synctalk_parity.errors import ParityError
from synctalk_parity.reference.dataset import open_dataset, read_landmarks, template_schedule
from synctalk_parity.reference.demo import make_demo


@pytest.fixture(scope="module")
def demo_source(tmp_path_factory):
    return make_demo(tmp_path_factory.mktemp("demo") / "demo", templates=6, seconds=1.0).dataset_dir


@pytest.fixture
def dataset_dir(demo_source, tmp_path):
    target = tmp_path / "ds"
    shutil.copytree(demo_source / "full_body_img", target / "full_body_img")
    shutil.copytree(demo_source / "landmarks", target / "landmarks")
    return target


def test_schedule_ping_pongs_starting_at_template_one():
    assert template_schedule(12, 4) == [1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0]
    assert template_schedule(5, 2) == [1, 0, 1, 0, 1]


def test_valid_dataset_opens(dataset_dir):
    dataset = open_dataset(dataset_dir)
    assert dataset.template_count == 6
    assert all(t.landmarks.shape == (110, 2) and t.landmarks.dtype == np.float32 for t in dataset.templates)
    width, height = dataset.frame_size
    for template in dataset.templates:
        xmin, ymin, xmax, ymax = template.box
        assert 0 <= xmin < xmax <= width and 0 <= ymin < ymax <= height and xmax - xmin == ymax - ymin


def test_start_frame_offsets_templates(dataset_dir):
    dataset = open_dataset(dataset_dir, start_frame=2)
    assert dataset.template_count == 4
    assert dataset.templates[0].image_path.name == "2.jpg"
    with pytest.raises(ParityError, match="--start-frame 6 is outside the dataset's 6 frames"):
        open_dataset(dataset_dir, start_frame=6)


def test_numbering_gap_names_the_missing_frame(dataset_dir):
    (dataset_dir / "full_body_img" / "3.jpg").unlink()
    (dataset_dir / "landmarks" / "3.lms").unlink()
    with pytest.raises(ParityError, match=r"numbering gap: frame 3 is missing but 5 exists"):
        open_dataset(dataset_dir)


def test_missing_landmark_file_is_named(dataset_dir):
    (dataset_dir / "landmarks" / "4.lms").unlink()
    with pytest.raises(ParityError, match=r"landmarks/4\.lms: missing"):
        open_dataset(dataset_dir)


def test_extra_landmark_file_is_named(dataset_dir):
    shutil.copy(dataset_dir / "landmarks" / "0.lms", dataset_dir / "landmarks" / "9.lms")
    with pytest.raises(ParityError, match=r"landmarks/9\.lms: has no frame 9"):
        open_dataset(dataset_dir)


def test_wrong_point_count_is_named(dataset_dir):
    path = dataset_dir / "landmarks" / "2.lms"
    path.write_text("\n".join(path.read_text().splitlines()[:68]) + "\n")
    with pytest.raises(ParityError, match=r"2\.lms: 68 landmark points, expected 110"):
        open_dataset(dataset_dir)


def test_non_numeric_landmark_names_file_and_line(dataset_dir):
    path = dataset_dir / "landmarks" / "1.lms"
    lines = path.read_text().splitlines()
    lines[40] = "12.5 abc"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ParityError, match=r"1\.lms:41: expected 'x y' numbers, found '12\.5 abc'"):
        read_landmarks(path)
    with pytest.raises(ParityError, match=r"1\.lms:41"):
        open_dataset(dataset_dir)


def test_templates_of_different_sizes_are_refused(dataset_dir):
    path = dataset_dir / "full_body_img" / "5.jpg"
    image = cv2.imread(str(path))
    cv2.imwrite(str(path), cv2.resize(image, (image.shape[1] + 10, image.shape[0])))
    with pytest.raises(ParityError, match=r"5\.jpg: .* all templates must have one size"):
        open_dataset(dataset_dir)


def test_crop_box_leaving_the_frame_names_the_landmark_file(dataset_dir):
    path = dataset_dir / "landmarks" / "3.lms"
    points = read_landmarks(path)
    points[31, 0] = 5000  # right jaw far outside the frame
    path.write_text("\n".join(f"{x} {y}" for x, y in points) + "\n")
    with pytest.raises(ParityError, match=r"3\.lms: crop box .* leaves the"):
        open_dataset(dataset_dir)


def test_missing_folders_and_unreadable_images(dataset_dir, tmp_path):
    with pytest.raises(ParityError, match="dataset not found"):
        open_dataset(tmp_path / "nowhere")
    shutil.rmtree(dataset_dir / "landmarks")
    with pytest.raises(ParityError, match=r"landmarks: missing"):
        open_dataset(dataset_dir)


def test_video_with_landmarks_beside_it(dataset_dir, tmp_path):
    # a lossless video of the templates; its decoded frames must equal the template images
    video = tmp_path / "clip" / "clip.mkv"
    video.parent.mkdir()
    shutil.copytree(dataset_dir / "landmarks", video.parent / "landmarks")
    first = cv2.imread(str(dataset_dir / "full_body_img" / "0.jpg"))
    height, width = first.shape[:2]
    frames = [cv2.imread(str(dataset_dir / "full_body_img" / f"{i}.jpg")) for i in range(6)]
    writer = subprocess.Popen(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24",
         "-s", f"{width}x{height}", "-r", "25", "-i", "-", "-c:v", "ffv1", str(video)],
        stdin=subprocess.PIPE,
    )
    writer.communicate(b"".join(f.tobytes() for f in frames))
    assert writer.returncode == 0
    dataset = open_dataset(video)
    assert dataset.template_count == 6
    assert np.array_equal(dataset.templates[4].read_image(), frames[4])
    assert open_dataset(video).templates[0].image_path == dataset.templates[0].image_path  # decoded once, reused


def test_video_without_landmarks_is_refused(tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not really a video")
    with pytest.raises(ParityError, match="a video needs its landmarks"):
        open_dataset(video)
