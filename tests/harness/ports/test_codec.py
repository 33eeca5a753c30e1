"""The codec's noise floor (`harness/ports/codec.py`): x264's options read back from its stream, the reference encoded
alike, and a candidate judged against that per region."""

from __future__ import annotations

import numpy as np
import pytest

from synctalk_parity.harness.ports import codec
from synctalk_parity.harness.ports.ingest import read_video

from .port_writer import write_video, write_yuv_video, yuv420_bt709, yuv420_full_range

SEI = ("x264 - core 164 r3095 baf180e - H.264/MPEG-4 AVC codec - Copyleft 2003-2022 - http://www.videolan.org/x264.html - options: "
       "cabac=1 ref=3 deblock=1:-1:-1 analyse=0x3:0x113 me=hex subme=7 psy=1 psy_rd=1.00:0.15 mixed_ref=1 me_range=16 chroma_me=1 "
       "trellis=1 8x8dct=1 cqm=0 deadzone=21,11 fast_pskip=1 chroma_qp_offset=-3 threads=6 lookahead_threads=1 sliced_threads=0 nr=0 "
       "decimate=1 interlaced=0 bluray_compat=0 constrained_intra=0 bframes=3 b_pyramid=2 b_adapt=1 b_bias=0 direct=1 weightb=1 "
       "open_gop=0 weightp=2 keyint=250 keyint_min=25 scenecut=40 intra_refresh=0 rc_lookahead=40 rc=crf mbtree=1 crf=18.0 qcomp=0.60 "
       "qpmin=0 qpmax=69 qpstep=4 ip_ratio=1.40 aq=1:1.00")


def test_x264s_options_line_becomes_libx264_parameters():
    found = codec.x264_options(SEI)
    assert found["crf"] == "18.0" and found["ref"] == "3" and found["subme"] == "7" and found["direct"] == "spatial"
    assert found["deblock"] == "-1,-1" and found["psy-rd"] == "1.00,0.15" and found["aq-mode"] == "1" and found["aq-strength"] == "1.00"
    assert found["deadzone-inter"] == "21" and found["deadzone-intra"] == "11" and found["threads"] == "6"
    assert "chroma-qp-offset" not in found and "analyse" not in found  # derived by x264 from the others: not set back
    assert "qp" not in found and "bitrate" not in found  # rc=crf: the crf is the rate


def _frames(count: int = 12, size: tuple[int, int] = (96, 128)) -> list[np.ndarray]:
    """A moving gradient with texture: something a codec has to work on."""
    rng = np.random.default_rng(0)
    base = (np.add.outer(np.arange(size[0]), np.arange(size[1])) % 256).astype(np.uint8)
    texture = rng.integers(0, 40, (*size, 3), dtype=np.uint8)
    return [np.ascontiguousarray(np.roll(np.dstack([base, base[::-1], base[:, ::-1]]), k, axis=1) // 2 + texture) for k in range(count)]


BOX = (32, 16, 96, 80)


def test_a_faithful_h264_candidate_is_at_the_floor_and_a_changed_mouth_is_below_it(tmp_path):
    frames = _frames()
    faithful = read_video(write_video(tmp_path / "a.mp4", dict(enumerate(frames)), ["-c:v", "libx264", "-crf", "20", "-pix_fmt", "yuv420p"]))
    encoding = codec.video_encoding(faithful)
    assert encoding.encoder == "libx264" and "crf=20.0" in encoding.describe() and encoding.pixel_format == "yuv420p"
    boxes = dict.fromkeys(range(len(frames)), BOX)
    floor = codec.measure_floor(encoding, dict(enumerate(frames)), dict(enumerate(faithful)), boxes)
    assert floor.consistent and floor.floor == pytest.approx(floor.candidate, abs=0.2), floor.text()
    assert 25 < floor.floor["mouth"] < 60 and "within the codec's noise" in floor.text()

    wrong = [f.copy() for f in frames]
    for f in wrong:
        f[30:66, 46:82] = 255 - f[30:66, 46:82]  # the mouth box inverted
    changed = read_video(write_video(tmp_path / "b.mp4", dict(enumerate(wrong)), ["-c:v", "libx264", "-crf", "20", "-pix_fmt", "yuv420p"]))
    floor = codec.measure_floor(codec.video_encoding(changed), dict(enumerate(frames)), dict(enumerate(changed)), boxes)
    assert not floor.consistent and "mouth" in floor.below and floor.below["mouth"] > 10
    assert "beyond the codec's noise: mouth box" in floor.text()


def test_an_mjpeg_video_has_its_rate_estimated_from_outside_the_box(tmp_path):
    frames = _frames()
    video = read_video(write_video(tmp_path / "m.mkv", dict(enumerate(frames)), ["-c:v", "mjpeg", "-q:v", "6", "-pix_fmt", "yuvj420p"]))
    encoding = codec.video_encoding(video)
    assert encoding.codec == "mjpeg" and not encoding.options  # MJPEG carries no settings line
    floor = codec.measure_floor(encoding, dict(enumerate(frames)), dict(enumerate(video)), dict.fromkeys(range(len(frames)), BOX))
    assert floor.encoding.estimated and "-q:v 6" in floor.encoding.estimated, floor.encoding
    assert floor.consistent, floor.text()


def test_the_colour_line_says_how_the_video_differs_from_the_reference_pipeline():
    same = codec.Encoding("video", "h264", "libx264", pixel_format="yuv420p", color_range="tv", color_matrix="smpte170m")
    full = codec.Encoding("video", "h264", "libx264", pixel_format="yuvj420p", color_range="pc", color_matrix="bt709")
    assert "as the reference pipeline writes" in (same.colour() or "")
    text = full.colour() or ""
    assert "full range" in text and "BT.709" in text and "the reference pipeline writes limited range, BT.601" in text


def _saturated(count: int = 4, size: tuple[int, int] = (96, 128)) -> list[np.ndarray]:
    """Saturated colour bars over a dark-to-light ramp: BT.601 and BT.709 read them differently."""
    bars = np.array([[40, 40, 220], [40, 220, 40], [220, 40, 40], [220, 220, 40], [40, 220, 220], [230, 230, 230], [20, 20, 20], [128, 60, 200]])
    columns = bars[np.arange(size[1]) * len(bars) // size[1]]
    ramp = np.linspace(0.5, 1.0, size[0])[:, None, None]
    return [np.ascontiguousarray(np.clip(columns[None] * ramp + k, 0, 255).astype(np.uint8)) for k in range(count)]


@pytest.mark.parametrize(("convert", "told"), [(None, None), (yuv420_full_range, "BT.601 full range"), (yuv420_bt709, "BT.709 limited range")],
                         ids=["ffmpeg", "full-range", "bt709"])
def test_the_yuv_conversion_is_told_from_the_pixels_against_what_the_stream_declares(tmp_path, convert, told):
    frames = _saturated()
    made = dict(enumerate(frames))
    args = ["-c:v", "libx264", "-crf", "20", "-pix_fmt", "yuv420p"]
    path = write_video(tmp_path / "port.mp4", made, args) if convert is None else write_yuv_video(tmp_path / "port.mp4", made, convert, args)
    video = read_video(path)
    floor = codec.measure_floor(codec.video_encoding(video), made, dict(enumerate(video)), dict.fromkeys(made, BOX))
    check = floor.colour
    assert check is not None and check.declared == ("smpte170m", "tv"), check
    if told is None:  # FFmpeg's own conversion, untagged: BT.601 limited, as declared
        assert not check.mismatch and check.range == "tv" and check.matrix == "smpte170m", check
        assert floor.consistent and "colours as the stream declares" in (floor.colour_text() or "")
    else:
        assert check.mismatch and not floor.consistent, check
        assert f"converted to YUV with {told}" in check.text(), check.text()


def test_colours_are_not_told_from_frames_that_are_not_the_references(tmp_path):
    """Outside the box the candidate holds other frames (another template): no conversion fits, nothing is claimed."""
    frames = _saturated()
    path = write_yuv_video(tmp_path / "port.mp4", {i: np.ascontiguousarray(f[:, ::-1]) for i, f in enumerate(frames)}, yuv420_full_range,
                           ["-c:v", "libx264", "-crf", "20", "-pix_fmt", "yuv420p"])
    video = read_video(path)
    check = codec.measure_floor(codec.video_encoding(video), dict(enumerate(frames)), dict(enumerate(video)), dict.fromkeys(range(4), BOX)).colour
    assert check is not None and not check.mismatch and check.range is None and check.matrix is None, check
    assert check.text().startswith("colours not checked"), check.text()


def test_floor_frames_are_a_run_for_video_and_a_sample_for_jpeg():
    assert codec.floor_indices([3, 4, 5, 7, 8], "video") == [3, 4, 5]
    assert codec.floor_indices(list(range(200)), "video") == list(range(codec.FLOOR_FRAMES))
    sample = codec.floor_indices(list(range(200)), "jpeg")
    assert len(sample) == codec.JPEG_FLOOR_FRAMES and sample[0] == 0 and sample[-1] == 199
