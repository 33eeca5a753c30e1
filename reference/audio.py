"""Audio to features, as `inference_328.py` does it (REFERENCE.md section A), one small function per step.

    pcm = load_audio(path)                  # (S,) float32, 16 kHz mono
    mel = mel_spectrogram(pcm)              # (T, 80) float64, normalized to [-4, 4]
    windows = mel_windows(mel)              # (N, 1, 80, 16) float32
    features = pad_features(encoder(windows))   # (N + 2, 512)
    unet_audio = unet_audio_window(features, i)  # (32, 16, 16) for output frame i
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np

from ..errors import ParityError

SAMPLE_RATE = 16000
PREEMPHASIS = 0.97
N_FFT = 800
HOP_LENGTH = 200
WIN_LENGTH = 800
N_MELS = 80
FMIN = 55
FMAX = 7600
MIN_LEVEL_DB = -100
REF_LEVEL_DB = 20
MAX_ABS_VALUE = 4.0
WINDOW_FRAMES = 16  # mel frames per encoder window
MEL_FPS = 80  # mel frames per second (16000 / 200)
VIDEO_FPS = 25
ENCODER_BATCH = 64
UNET_AUDIO_ROWS = 16  # feature rows per U-Net audio input: i-8 .. i+7
PAD_MODES = ("constant", "reflect")  # librosa >= 0.10 default, and older librosa's
DEFAULT_PAD_MODE = "constant"


def load_audio(path: str | os.PathLike) -> np.ndarray:
    """Mono float32 PCM at 16 kHz, as `librosa.load(path, sr=16000)` gives.

    What libsndfile reads (WAV, FLAC, OGG, ...) is read with soundfile as `librosa.load` reads it (float32,
    channels averaged as `librosa.to_mono` does); only another sample rate needs librosa itself, to resample
    as `librosa.load` does (soxr_hq). Reading a 16 kHz file without importing librosa saves ~1-2 s of start-up
    (librosa's audio module imports scipy.signal and numba); `tests/reference/test_audio.py` checks that both
    ways give the same samples. Anything else ffmpeg decodes (mp3, m4a, a video's sound) is decoded by the
    ffmpeg that imageio-ffmpeg ships to a float32 WAV on a pipe, read with soundfile, then mixed to mono and
    resampled the same way.
    """
    import soundfile

    path = Path(path)
    if not path.is_file():
        raise ParityError(f"{path}: audio file not found")
    if path.stat().st_size == 0:
        raise ParityError(f"{path}: audio file is empty")
    try:
        soundfile.info(path)
    except soundfile.LibsndfileError:
        data, rate = _decode_with_ffmpeg(path)
    else:
        with soundfile.SoundFile(path) as handle:  # as librosa.load reads it
            rate = handle.samplerate
            data = handle.read(dtype="float32", always_2d=False).T
    pcm = _to_mono(data)
    if pcm.size and rate != SAMPLE_RATE:
        import librosa

        pcm = librosa.resample(pcm, orig_sr=rate, target_sr=SAMPLE_RATE)
    if pcm.size == 0:
        raise ParityError(f"{path}: audio file holds no samples")
    return np.ascontiguousarray(pcm, dtype=np.float32)


def _to_mono(data: np.ndarray) -> np.ndarray:
    """`librosa.to_mono`: the mean over every axis but the last (samples)."""
    return np.mean(data, axis=tuple(range(data.ndim - 1))) if data.ndim > 1 else data


def audio_decoder(path: str | os.PathLike) -> str:
    """What `load_audio` decodes `path` with, and its version: part of a cached reference's key, since
    another decoder (or another ffmpeg) can give other samples."""
    import soundfile

    try:
        soundfile.info(path)
        return f"libsndfile {soundfile.__libsndfile_version__}"
    except soundfile.LibsndfileError:
        import imageio_ffmpeg

        version = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-version"], capture_output=True, text=True).stdout
        return (version.strip().splitlines() or ["ffmpeg (unknown version)"])[0]


def preemphasis(pcm: np.ndarray) -> np.ndarray:
    """`y[n] = x[n] - 0.97 x[n-1]` (float64, as scipy.signal.lfilter returns)."""
    from scipy.signal import lfilter

    return lfilter([1, -PREEMPHASIS], [1], pcm)


def mel_spectrogram(pcm: np.ndarray, pad_mode: str = DEFAULT_PAD_MODE) -> np.ndarray:
    """Normalized log-mel spectrogram, time-major `(T, 80)` float64, `T = 1 + S // 200`.

    `pad_mode` is the STFT's centre padding: 'constant' (librosa >= 0.10) or 'reflect' (older
    librosa); it changes the first and last two frames only.
    """
    import librosa

    if pad_mode not in PAD_MODES:
        raise ParityError(f"unknown STFT pad mode {pad_mode!r}: use one of {', '.join(PAD_MODES)}")
    spectrum = librosa.stft(
        y=preemphasis(pcm), n_fft=N_FFT, hop_length=HOP_LENGTH, win_length=WIN_LENGTH, pad_mode=pad_mode,  # type: ignore[arg-type]
    )
    mel = np.dot(mel_filterbank(), np.abs(spectrum))
    db = 20 * np.log10(np.maximum(1e-5, mel)) - REF_LEVEL_DB
    normalized = np.clip(
        (2 * MAX_ABS_VALUE) * ((db - MIN_LEVEL_DB) / -MIN_LEVEL_DB) - MAX_ABS_VALUE, -MAX_ABS_VALUE, MAX_ABS_VALUE
    )
    return normalized.T


def mel_filterbank() -> np.ndarray:
    """librosa's Slaney mel filterbank `(80, 401)` for 16 kHz, n_fft 800, 55..7600 Hz."""
    import librosa

    return librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX)


def window_count(mel_frames: int) -> int:
    """`N = int((T - 16) / 80 * 25) + 2`: the number of encoder windows (video frames minus 2)."""
    return int((mel_frames - WINDOW_FRAMES) / MEL_FPS * VIDEO_FPS) + 2


def window_start(k: int, mel_frames: int) -> int:
    """First mel frame of window `k`; the last windows are clamped to end at the last frame."""
    start = int(MEL_FPS * k / VIDEO_FPS)
    if start + WINDOW_FRAMES > mel_frames:
        start = mel_frames - WINDOW_FRAMES
    return start


def mel_windows(mel: np.ndarray, source: str = "audio") -> np.ndarray:
    """The encoder inputs `(N, 1, 80, 16)` float32: window k is `mel[start:start+16].T`."""
    frames = mel.shape[0]
    if frames < WINDOW_FRAMES:
        min_samples = (WINDOW_FRAMES - 1) * HOP_LENGTH
        raise ParityError(
            f"{source}: too short: {frames} mel frames, a window needs {WINDOW_FRAMES} "
            f"(at least {min_samples} samples, {min_samples / SAMPLE_RATE:.2f} s at 16 kHz)"
        )
    count = window_count(frames)
    windows = np.empty((count, 1, N_MELS, WINDOW_FRAMES), dtype=np.float32)
    for k in range(count):
        start = window_start(k, frames)
        windows[k, 0] = mel[start : start + WINDOW_FRAMES].T
    return windows


def encode_windows(encode, windows: np.ndarray, batch_size: int = ENCODER_BATCH) -> np.ndarray:
    """Run `encode((B,1,80,16)) -> (B,512)` over all windows in batches of 64: `(N, 512)` float32."""
    parts = [encode(windows[i : i + batch_size]) for i in range(0, len(windows), batch_size)]
    return np.concatenate(parts, axis=0).astype(np.float32, copy=False)


def pad_features(features: np.ndarray) -> np.ndarray:
    """Repeat the first and last rows once: `(N, 512)` -> `(N + 2, 512)`; the video has N + 2 frames."""
    return np.concatenate([features[:1], features, features[-1:]], axis=0)


def unet_audio_window(features: np.ndarray, frame: int) -> np.ndarray:
    """Rows `frame-8 .. frame+7` of the padded features (zeros outside), as `(32, 16, 16)` float32."""
    half = UNET_AUDIO_ROWS // 2
    rows = np.zeros((UNET_AUDIO_ROWS, features.shape[1]), dtype=np.float32)
    for r, source in enumerate(range(frame - half, frame + half)):
        if 0 <= source < len(features):
            rows[r] = features[source]
    return rows.reshape(32, 16, 16)


def _decode_with_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    """Decode any audio ffmpeg reads to float32 `(channels, samples)` at its own rate: ffmpeg writes a
    float32 WAV to a pipe, soundfile reads its rate and channels from the header."""
    import io

    import imageio_ffmpeg
    import soundfile

    decoded = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(path), "-vn", "-map", "0:a:0",
         "-f", "wav", "-acodec", "pcm_f32le", "-"],
        capture_output=True,
    )
    if decoded.returncode != 0 or not decoded.stdout:
        stderr = decoded.stderr.decode(errors="replace")
        message = stderr.strip().splitlines()
        reason = message[-1] if message else "no message"
        if any(sign in stderr for sign in ("matches no streams", "does not contain any stream", "Invalid data found")):
            raise ParityError(f"{path}: not an audio file (ffmpeg finds no audio stream in it)")
        raise ParityError(f"{path}: ffmpeg could not decode the audio ({reason})")
    data, rate = soundfile.read(io.BytesIO(decoded.stdout), dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.T), int(rate)
