"""Reading what real ports write, on real data (sanders-mini, golden weights, the reference's frames 0..3):
frame folders in the usual namings and formats, mouth crops, mp4 with its sound track, raw tensors; and the
refusals, each one line, with nothing printed by OpenCV, libjpeg, libpng or ffmpeg."""

from __future__ import annotations

import shutil
import subprocess

import cv2
import numpy as np
import pytest
import soundfile

from synctalk_parity.errors import ParityError
from synctalk_parity.harness.ports.ingest import (
    detect_kind,
    frame_number,
    jpeg_info,
    jpeg_quality_estimate,
    read_frame_files,
    read_image,
    read_tensors,
    read_video,
)
from synctalk_parity.harness.verdict.png import write_png
from synctalk_parity.reference.audio import SAMPLE_RATE
from synctalk_parity.reference.video import VideoWriter


def _outputs(case) -> list[np.ndarray]:
    return [case.frames[i].output for i in sorted(case.frames)]


def _write_frames(folder, frames, name: str, start: int, quality: int | None = None):
    """Frames the way ports write them: cv2.imwrite JPEG at `quality`, or PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, frame in enumerate(frames):
        path = folder / name.format(n=k + start)
        if path.suffix == ".png":
            write_png(path, frame)
        else:
            assert cv2.imwrite(str(path), frame, [cv2.IMWRITE_JPEG_QUALITY, quality or 95])
    return folder


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 100.0 if mse == 0 else 10 * np.log10(255**2 / mse)


def _one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_detect_kind_of_each_thing_a_port_writes(reference_case, tmp_path):
    outputs = _outputs(reference_case)
    assert detect_kind(reference_case.dump) == "dump"
    run = tmp_path / "run"
    shutil.copytree(reference_case.dump, run / "dump")
    assert detect_kind(run) == "dump"
    assert detect_kind(_write_frames(tmp_path / "jpeg", outputs, "frame_{n:05d}.jpg", 1, 90)) == "frames"
    assert detect_kind(_write_frames(tmp_path / "png", outputs, "{n:05d}.png", 0)) == "frames"
    mouths = [reference_case.frames[i].mouth for i in sorted(reference_case.frames)]
    assert detect_kind(_write_frames(tmp_path / "mouths", mouths, "mouth_{n:04d}.png", 0)) == "mouths"
    tensors = tmp_path / "tensors" / "frame.unet_output"
    tensors.mkdir(parents=True)
    np.save(tensors / "0.npy", reference_case.frames[0].unet_output)
    assert detect_kind(tmp_path / "tensors") == "tensors"
    video = tmp_path / "port.mp4"
    with VideoWriter(video, (outputs[0].shape[1], outputs[0].shape[0])) as writer:
        for frame in outputs:
            writer.write(frame)
    assert detect_kind(video) == "video"


def test_detect_kind_refuses_what_it_cannot_judge_in_one_line(tmp_path):
    with pytest.raises(ParityError) as missing:
        detect_kind(tmp_path / "nothing")
    assert "nothing: not found" in _one_line(missing) and "manifest.json" in str(missing.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ParityError) as empty:
        detect_kind(tmp_path / "empty")
    assert "empty: no frames, tensors or manifest.json" in _one_line(empty)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ParityError) as text:
        detect_kind(tmp_path / "notes.txt")
    assert "notes.txt" in _one_line(text) and ".mp4" in str(text.value)
    holder = tmp_path / "holder"
    holder.mkdir()
    (holder / "video.mp4").write_bytes(b"")
    with pytest.raises(ParityError) as video:
        detect_kind(holder)
    assert "pass the video file itself" in _one_line(video)


@pytest.mark.parametrize(("name", "start", "quality"), [
    ("frame_{n:05d}.jpg", 1, 90),  # numbered from 1
    ("{n:05d}.png", 0, None),      # numbered from 0, lossless
    ("{n}.jpg", 0, 75),            # plain numbers: 10.jpg sorts after 9.jpg
])
def test_frame_files_numbered_in_the_usual_ways(reference_case, tmp_path, name, start, quality):
    outputs = _outputs(reference_case)
    frames = [outputs[k % len(outputs)] for k in range(12)]
    files = read_frame_files(_write_frames(tmp_path / "port", frames, name, start, quality))
    assert files.numbers == list(range(start, start + 12))
    assert files.base == start and files.size == (1280, 720) and len(files) == 12
    for k in (0, 10, 11):
        image = files[k].load()
        assert image.shape == (720, 1280, 3) and image.dtype == np.uint8
        if quality is None:
            assert np.array_equal(image, frames[k])
        else:
            assert 35 < _psnr(image, frames[k]) < 100


def test_frame_number_is_the_last_integer_of_the_stem(tmp_path):
    assert frame_number(tmp_path / "frame_00012.jpg") == 12
    assert frame_number(tmp_path / "take2_out_0007.png") == 7
    assert frame_number(tmp_path / "00000.png") == 0
    assert frame_number(tmp_path / "poster.jpg") is None


def test_frame_folders_with_mixed_sizes_duplicates_or_no_numbers_are_refused(reference_case, tmp_path):
    frame = _outputs(reference_case)[0]
    mixed = _write_frames(tmp_path / "mixed", [frame, frame], "{n:05d}.png", 0)
    write_png(mixed / "00002.png", cv2.resize(frame, (640, 360)))
    with pytest.raises(ParityError) as sizes:
        read_frame_files(mixed)
    assert "00002.png: 640x360, but 00000.png is 1280x720" in _one_line(sizes)
    twice = _write_frames(tmp_path / "twice", [frame], "{n}.png", 1)
    cv2.imwrite(str(twice / "frame_01.jpg"), frame)
    with pytest.raises(ParityError) as duplicate:
        read_frame_files(twice)
    assert "frame number 1 again" in _one_line(duplicate)
    stray = _write_frames(tmp_path / "stray", [frame], "{n}.png", 0)
    cv2.imwrite(str(stray / "poster.jpg"), frame)
    with pytest.raises(ParityError) as unnumbered:
        read_frame_files(stray)
    assert "poster.jpg: no number in its name" in _one_line(unnumbered)
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "readme.txt").write_text("no images")
    with pytest.raises(ParityError) as nothing:
        read_frame_files(tmp_path / "none")
    assert "no numbered images" in _one_line(nothing)


def test_damaged_images_fail_in_one_line_and_nothing_reaches_the_terminal(reference_case, tmp_path, capfd):
    frame = _outputs(reference_case)[0]
    files = {}
    for suffix, params in ((".jpg", [cv2.IMWRITE_JPEG_QUALITY, 90]), (".png", []), (".webp", [cv2.IMWRITE_WEBP_QUALITY, 90])):
        ok, data = cv2.imencode(suffix, frame, params)
        assert ok
        whole = tmp_path / f"whole{suffix}"
        whole.write_bytes(data.tobytes())
        files[suffix] = whole
        cut = tmp_path / f"cut{suffix}"
        cut.write_bytes(data.tobytes()[: len(data) // 2])
        with pytest.raises(ParityError) as truncated:
            read_image(cut)
        assert f"cut{suffix}: truncated" in _one_line(truncated)
    (tmp_path / "text.jpg").write_bytes(b"not an image at all")
    with pytest.raises(ParityError) as garbage:
        read_image(tmp_path / "text.jpg")
    assert "not a JPEG, PNG or WebP" in _one_line(garbage)
    assert np.array_equal(read_image(files[".png"]), frame)
    assert _psnr(read_image(files[".jpg"]), frame) > 35 and _psnr(read_image(files[".webp"]), frame) > 30
    assert capfd.readouterr().err == ""  # libjpeg's "Premature end of JPEG file" and libpng's errors stayed quiet


@pytest.mark.parametrize("quality", [75, 90, 95])
def test_jpeg_quality_estimate_from_the_quantization_table(reference_case, tmp_path, quality):
    path = tmp_path / "frame.jpg"
    cv2.imwrite(str(path), _outputs(reference_case)[1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    estimate = jpeg_quality_estimate(path)
    assert estimate is not None and abs(estimate - quality) <= 5
    info = jpeg_info(path)
    assert info is not None and info.exact and info.quality == quality and info.subsampling == "4:2:0" and info.size == (1280, 720)


def test_jpeg_subsampling_and_non_jpeg(reference_case, tmp_path):
    frame = _outputs(reference_case)[0]
    full = tmp_path / "full.jpg"
    cv2.imwrite(str(full), frame, [cv2.IMWRITE_JPEG_QUALITY, 85, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
    info = jpeg_info(full)
    assert info is not None and info.quality == 85 and info.subsampling == "4:4:4"
    write_png(tmp_path / "frame.png", frame)
    assert jpeg_quality_estimate(tmp_path / "frame.png") is None


def _best_lag(signal: np.ndarray, reference: np.ndarray, reach: int = 400) -> tuple[int, float]:
    """(lag of `signal` against `reference` in samples, correlation there)."""
    length = min(len(signal), len(reference)) - 2 * reach
    best = max(range(-reach, reach + 1), key=lambda lag: float(np.dot(signal[reach + lag : reach + lag + length], reference[reach : reach + length])))
    a, b = signal[reach + best : reach + best + length], reference[reach : reach + length]
    return best, float(np.corrcoef(a, b)[0, 1])


def test_video_frames_rate_count_and_its_sound_track(reference_case, tmp_path):
    outputs = _outputs(reference_case)
    frames = [outputs[k % len(outputs)] for k in range(25)]
    pcm = reference_case.clip.pcm[:SAMPLE_RATE]  # the golden speech, 1 s
    wav = tmp_path / "speech.wav"
    soundfile.write(wav, pcm, SAMPLE_RATE, subtype="FLOAT")
    path = tmp_path / "port.mp4"
    with VideoWriter(path, (1280, 720), audio=wav) as writer:
        for frame in frames:
            writer.write(frame)
    video = read_video(path)
    assert (video.frame_count, video.fps, video.size, video.codec, video.audio_codec) == (25, 25.0, (1280, 720), "h264", "aac")
    assert len(video) == 25 and video.duration == 1.0
    # how it was encoded, as a re-encoding of the reference needs it: VideoWriter's yuv420p, BT.601 limited range, x264 at CRF 20
    assert (video.pixel_format, video.color_range, video.color_matrix) == ("yuv420p", "tv", "smpte170m")
    assert video.encoder_settings is not None and video.encoder_settings.startswith("x264 - core ")
    assert "options: " in video.encoder_settings and " crf=20.0 " in video.encoder_settings and " threads=1 " in video.encoder_settings
    decoded = list(video)
    assert len(decoded) == 25
    assert all(_psnr(d, f) > 30 for d, f in zip(decoded, frames))
    some = video.frames_at([0, 13, 24])
    assert sorted(some) == [0, 13, 24] and np.array_equal(some[13], decoded[13])
    assert video.audio is not None and video.audio.dtype == np.float32 and video.audio_rate == SAMPLE_RATE
    assert abs(len(video.audio) - len(pcm)) < 0.1 * SAMPLE_RATE
    lag, correlation = _best_lag(video.audio, pcm)
    assert abs(lag) <= 2 and correlation > 0.99


def test_video_sound_is_mixed_to_mono_and_resampled_and_silence_is_none(reference_case, tmp_path):
    frame = _outputs(reference_case)[0]
    pcm = reference_case.clip.pcm[:SAMPLE_RATE]
    import librosa

    stereo = librosa.resample(pcm, orig_sr=SAMPLE_RATE, target_sr=44100)
    wav = tmp_path / "stereo.wav"
    soundfile.write(wav, np.stack([stereo, stereo * 0.5], axis=1), 44100, subtype="FLOAT")
    with VideoWriter(tmp_path / "stereo.mp4", (1280, 720), audio=wav) as writer:
        for _ in range(25):
            writer.write(frame)
    video = read_video(tmp_path / "stereo.mp4")
    assert video.audio_rate == 44100 and video.audio is not None
    lag, correlation = _best_lag(video.audio, pcm)
    assert abs(lag) <= 2 and correlation > 0.98
    with VideoWriter(tmp_path / "silent.mp4", (1280, 720)) as writer:
        for _ in range(3):
            writer.write(frame)
    silent = read_video(tmp_path / "silent.mp4")
    assert silent.audio is None and silent.audio_codec is None and silent.frame_count == 3


def test_damaged_or_soundless_files_are_refused_as_videos(tmp_path, golden, capfd):
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200)
    with pytest.raises(ParityError) as broken:
        read_video(tmp_path / "broken.mp4")
    assert "broken.mp4: ffmpeg cannot read this video" in _one_line(broken)
    with pytest.raises(ParityError) as audio_only:
        read_video(golden / "talk_hb_10s.wav")
    assert "no video stream" in _one_line(audio_only)
    assert capfd.readouterr().err == ""  # FFmpeg's own log stayed quiet


def test_a_video_whose_container_does_not_count_its_frames(reference_case, tmp_path):
    """Matroska keeps no frame count in its header: the packets are counted."""
    import imageio_ffmpeg

    frame = _outputs(reference_case)[0]
    with VideoWriter(tmp_path / "port.mp4", (1280, 720)) as writer:
        for _ in range(7):
            writer.write(frame)
    remux = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(tmp_path / "port.mp4"), "-c", "copy",
                            str(tmp_path / "port.mkv")], capture_output=True)
    assert remux.returncode == 0, remux.stderr
    video = read_video(tmp_path / "port.mkv")
    assert (video.frame_count, video.fps, video.codec, video.pixel_format) == (7, 25.0, "h264", "yuv420p")
    assert video.encoder_settings is not None and "crf=20.0" in video.encoder_settings
    assert len(list(video)) == 7


def test_tensors_in_every_layout_ports_use(reference_case, tmp_path):
    folder = tmp_path / "tensors"
    frames = reference_case.frames
    (folder / "frame.unet_output").mkdir(parents=True)
    for i in (0, 1):
        np.save(folder / "frame.unet_output" / f"{i:05d}.npy", frames[i].unet_output)
    frames[2].unet_output.astype("<f4").tofile(folder / "unet_output_2.bin")          # short stage name, shape from the caller
    frames[3].unet_output.astype("<f4").tofile(folder / "out_0003.bin")               # any name: the sidecar says what it is
    (folder / "out_0003.toml").write_text('stage = "frame.unet_output"\nshape = [3, 320, 320]\n')
    (folder / "frame.unet_input").mkdir()
    frames[0].unet_input.astype("<f4").tofile(folder / "frame.unet_input" / "0.bin")  # one sidecar for the stage folder
    (folder / "frame.unet_input.toml").write_text("shape = [6, 320, 320]\n")
    np.save(folder / "audio.features.npy", reference_case.clip.features)
    tensors = read_tensors(folder, {"frame.unet_output": (3, 320, 320)})
    assert list(tensors) == ["audio.features", "frame.unet_input", "frame.unet_output"]
    assert list(tensors["frame.unet_output"]) == [0, 1, 2, 3]
    for i in range(4):
        assert np.array_equal(tensors["frame.unet_output"][i], frames[i].unet_output)
    assert np.array_equal(tensors["frame.unet_input"][0], frames[0].unet_input)
    assert np.array_equal(tensors["audio.features"][None], reference_case.clip.features)


def test_tensor_files_without_shape_of_wrong_size_or_unknown_stage_are_refused(reference_case, tmp_path):
    output = reference_case.frames[0].unet_output
    folder = tmp_path / "noshape"
    folder.mkdir()
    output.tofile(folder / "frame.unet_output_0.bin")
    with pytest.raises(ParityError) as shape:
        read_tensors(folder, None)
    assert "frame.unet_output_0.bin: a raw .bin needs its shape" in _one_line(shape) and "frame.unet_output_0.toml" in str(shape.value)
    with pytest.raises(ParityError) as size:
        read_tensors(folder, {"frame.unet_output": (3, 320, 321)})
    assert "1228800 bytes, but shape 3x320x321 of float32 needs 1232640" in _one_line(size)
    wrong = tmp_path / "wrongname"
    wrong.mkdir()
    np.save(wrong / "unet_outptu.npy", output)
    with pytest.raises(ParityError) as name:
        read_tensors(wrong, None)
    assert "'unet_outptu' is not a stage name; did you mean 'unet_output'?" in _one_line(name)
    twice = tmp_path / "twice"
    (twice / "frame.mouth").mkdir(parents=True)
    np.save(twice / "frame.mouth" / "1.npy", reference_case.frames[0].mouth)
    np.save(twice / "frame.mouth_1.npy", reference_case.frames[0].mouth)
    with pytest.raises(ParityError) as duplicate:
        read_tensors(twice, None)
    assert "frame 1 of frame.mouth again" in _one_line(duplicate)
