"""Audio input and the audio stages: any WAV, anything ffmpeg decodes, and clear errors for bad files."""

from __future__ import annotations

import subprocess

import imageio_ffmpeg
import librosa
import numpy as np
import pytest
import soundfile

from synctalk_parity.errors import ParityError
from synctalk_parity.reference import audio


def _tone(rate: int, seconds: float, channels: int) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    left = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
    right = 0.2 * np.sin(2 * np.pi * 330 * t)
    return np.stack([left, right][:channels], axis=1).astype(np.float32)


@pytest.mark.parametrize("rate, channels", [(16000, 1), (16000, 2), (44100, 2), (8000, 1), (48000, 2)])
def test_wav_of_any_rate_and_channels_loads_like_librosa(tmp_path, rate, channels):
    path = tmp_path / f"clip_{rate}_{channels}.wav"
    soundfile.write(path, _tone(rate, 1.0, channels), rate, subtype="PCM_16")
    pcm = audio.load_audio(path)
    expected, _ = librosa.load(path, sr=16000)
    assert pcm.dtype == np.float32 and pcm.ndim == 1
    assert pcm.shape == expected.shape == (16000,)
    assert np.array_equal(pcm, expected)


def test_compressed_audio_decodes_through_ffmpeg(tmp_path):
    wav = tmp_path / "clip.wav"
    soundfile.write(wav, _tone(44100, 1.0, 2), 44100)
    m4a = tmp_path / "clip.m4a"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(wav), "-c:a", "aac", str(m4a)], check=True
    )
    pcm = audio.load_audio(m4a)
    reference = audio.load_audio(wav)
    assert abs(len(pcm) - len(reference)) <= 2048  # AAC adds priming samples
    n = min(len(pcm), len(reference))
    # same signal, modulo codec delay and loss: strongly correlated over a shared stretch
    best = max(np.corrcoef(pcm[k : k + n - 2048], reference[: n - 2048])[0, 1] for k in range(0, 2048, 16))
    assert best > 0.9


def test_empty_missing_and_non_audio_files_are_clear_errors(tmp_path):
    with pytest.raises(ParityError, match="audio file not found"):
        audio.load_audio(tmp_path / "absent.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(ParityError, match="empty.wav: audio file is empty"):
        audio.load_audio(tmp_path / "empty.wav")
    (tmp_path / "notes.txt").write_text("hello, this is not audio\n" * 20)
    with pytest.raises(ParityError, match="notes.txt: not an audio file"):
        audio.load_audio(tmp_path / "notes.txt")


def test_wav_without_samples_is_a_clear_error(tmp_path):
    path = tmp_path / "silent.wav"
    soundfile.write(path, np.zeros((0, 1), dtype=np.float32), 16000)
    with pytest.raises(ParityError, match="no samples"):
        audio.load_audio(path)


def test_too_short_audio_names_the_minimum():
    mel = audio.mel_spectrogram(np.zeros(2999, dtype=np.float32))
    assert mel.shape == (15, 80)
    with pytest.raises(ParityError, match=r"clip.wav: too short: 15 mel frames.*3000 samples"):
        audio.mel_windows(mel, source="clip.wav")
    # 16 mel frames: N = int(0 / 80 * 25) + 2 = 2 windows, both the whole spectrogram
    assert audio.mel_windows(audio.mel_spectrogram(np.zeros(3000, dtype=np.float32))).shape == (2, 1, 80, 16)


@pytest.mark.parametrize("samples", [3000, 16000, 160000, 160123])
def test_window_count_and_shapes_follow_the_formula(samples):
    pcm = np.random.default_rng(0).normal(0, 0.1, samples).astype(np.float32)
    mel = audio.mel_spectrogram(pcm)
    frames = 1 + samples // 200
    assert mel.shape == (frames, 80)
    assert mel.min() >= -4 and mel.max() <= 4
    windows = audio.mel_windows(mel)
    assert windows.shape == (int((frames - 16) / 80 * 25) + 2, 1, 80, 16)
    last_start = frames - 16
    assert np.array_equal(windows[-1, 0], mel[last_start:].T.astype(np.float32))
    if len(windows) > 4:
        start = int(80 * 3 / 25)
        assert np.array_equal(windows[3, 0], mel[start : start + 16].T.astype(np.float32))


def test_reflect_padding_changes_only_the_edge_frames():
    pcm = np.random.default_rng(1).normal(0, 0.1, 16000).astype(np.float32)
    constant, reflect = audio.mel_spectrogram(pcm, audio.AudioFrontEnd(pad_mode="constant")), audio.mel_spectrogram(pcm, audio.AudioFrontEnd(pad_mode="reflect"))
    differs = np.flatnonzero(np.abs(constant - reflect).max(axis=1) > 0)
    assert set(differs) <= {0, 1, len(pcm) // 200 - 1, len(pcm) // 200}
    assert len(differs) > 0
    with pytest.raises(ParityError, match="unknown STFT pad mode"):
        audio.AudioFrontEnd(pad_mode="edge")


def test_feature_padding_and_unet_audio_window():
    features = np.arange(5 * 512, dtype=np.float32).reshape(5, 512)
    padded = audio.pad_features(features)
    assert padded.shape == (7, 512)
    assert np.array_equal(padded[0], features[0]) and np.array_equal(padded[-1], features[-1])
    window = audio.unet_audio_window(padded, 0)
    rows = window.reshape(16, 512)
    assert window.shape == (32, 16, 16)
    assert not rows[:8].any()  # rows -8..-1 are outside the clip: zeros
    assert np.array_equal(rows[8:15], padded[0:7]) and not rows[15].any()
    assert np.array_equal(audio.unet_audio_window(padded, 3).reshape(16, 512)[5:12], padded[0:7])
