"""Audio to features, as `inference_328.py` does it (REFERENCE.md section A), one small function per step.

    pcm = load_audio(path)                  # (S,) float32, 16 kHz mono
    mel = mel_spectrogram(pcm)              # (T, 80) float64, normalized to [-4, 4]
    windows = mel_windows(mel)              # (N, 1, 80, 16) float32
    features = pad_features(encoder(windows))   # (N + 2, 512)
    unet_audio = unet_audio_window(features, i)  # (32, 16, 16) for output frame i

The choices a port can get wrong are knobs with the original's values as defaults: `AudioFrontEnd` (PCM to
features: pre-emphasis, STFT centring and padding, window, magnitude, mel scale, dB, normalization, padding)
and `AudioWindow` (which feature rows a frame's U-Net audio input holds). The simulation of port mistakes
(`harness/ports/simulate.py`) runs these same functions with other values.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import ParityError
from .knobs import check_choices, choice

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
FEATURE_SIZE = 512  # audio encoder output per window
PAD_MODES = ("constant", "reflect")  # librosa >= 0.10 default, and older librosa's
DEFAULT_PAD_MODE = "constant"
WINDOWS = ("periodic", "symmetric")  # Hann: periodic as librosa (scipy fftbins=True), symmetric (fftbins=False)
SPECTRA = ("magnitude", "power")
MEL_SCALES = ("slaney", "htk")
MEL_RANGES = ("[-4,4]", "[0,4]")
AUDIO_SOURCES = ("window", "zero", "constant", "tiled")
AUDIO_EDGES = ("zero", "repeat")  # rows before the first feature row and after the last: zeros (the original), or the nearest row


@dataclass(frozen=True)
class AudioFrontEnd:
    """PCM to padded features (REFERENCE.md A.2-A.7 and A.11): the choices a port makes, the original's by default.

    The object is the identity of the features it makes: equal front ends make equal features, so it (or
    `parts()`) is what caches of features and mels are keyed by. Fields marked `frame_count` change how many
    output frames the clip makes.
    """

    preemphasis: float = PREEMPHASIS  # y[n] = x[n] - k x[n-1]; 0: none (the float32 PCM goes to the STFT as it is)
    center: bool = field(default=True, metadata={"frame_count": True})  # n_fft/2 padding each side: T = 1 + S // 200
    pad_mode: str = choice(DEFAULT_PAD_MODE, PAD_MODES, "STFT pad mode")  # 'constant' (librosa >= 0.10) or 'reflect' (older)
    window: str = choice("periodic", WINDOWS, "Hann window")  # periodic (librosa's) or symmetric
    spectrum: str = choice("magnitude", SPECTRA)  # |STFT|, or "power": |STFT|^2
    mel_scale: str = choice("slaney", MEL_SCALES)  # librosa's default, or "htk"
    ref_level_db: float = float(REF_LEVEL_DB)  # subtracted after 20 log10
    mel_range: str = choice("[-4,4]", MEL_RANGES, "mel normalization range")  # symmetric [-4, 4], or "[0,4]"
    padded: bool = field(default=True, metadata={"frame_count": True})  # first and last feature rows repeated once

    def __post_init__(self) -> None:
        check_choices(self)

    def parts(self) -> dict[str, Any]:
        """Every field with its value (JSON-ready): the front end's part of a cache key."""
        return asdict(self)


FRAME_COUNT_KNOBS = frozenset(f.name for f in fields(AudioFrontEnd) if f.metadata.get("frame_count"))


@dataclass(frozen=True)
class AudioWindow:
    """Which feature rows output frame i's U-Net audio input holds (REFERENCE.md B.8), the original's by default.

    `source`: "window", rows i-8 .. i+7 (zeros outside the features); "zero", silence; "constant", frame 0's
    window for every frame; "tiled", row i repeated 16 times. The temporal processing a port may apply to the
    feature sequence before reading it: `shift` k moves the rows read by k (frame i reads frame i+k's audio);
    `hold` h > 1 repeats rows: row r reads row r - r % h (features made at 1/h of the rate and held); `smoothing`
    w > 1 averages each row with its neighbours, w rows centred on it (a moving average across windows); `edge`
    says what rows outside the features hold, "zero" (the original) or "repeat" (the nearest row, another end padding).
    """

    source: str = choice("window", AUDIO_SOURCES, "U-Net audio source")
    shift: int = 0
    hold: int = 1
    smoothing: int = 1
    edge: str = choice("zero", AUDIO_EDGES, "U-Net audio edge padding")

    def __post_init__(self) -> None:
        check_choices(self)
        if self.hold < 1 or self.smoothing < 1:
            raise ParityError(f"AudioWindow: hold and smoothing are row counts of at least 1 (got hold {self.hold}, smoothing {self.smoothing})")


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


def write_wav(path: str | os.PathLike, pcm: np.ndarray) -> Path:
    """`pcm` as a 16 kHz mono float32 WAV whose bytes depend on the samples only (scipy's writer: libsndfile's float
    WAVs carry a PEAK chunk holding the time of writing, so the same audio written twice had another sha256, and what
    is cached by the audio's bytes, a reference, was made again). `load_audio` reads back the same samples."""
    from scipy.io import wavfile

    wavfile.write(path, SAMPLE_RATE, np.ascontiguousarray(pcm, dtype=np.float32))
    return Path(path)


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


def preemphasis(pcm: np.ndarray, coefficient: float = PREEMPHASIS) -> np.ndarray:
    """`y[n] = x[n] - 0.97 x[n-1]` (float64, as scipy.signal.lfilter returns)."""
    from scipy.signal import lfilter

    return lfilter([1, -coefficient], [1], pcm)


def mel_spectrogram(pcm: np.ndarray, front_end: AudioFrontEnd = AudioFrontEnd()) -> np.ndarray:
    """Normalized log-mel spectrogram, time-major `(T, 80)` float64, `T = 1 + S // 200` (centred STFT).

    The STFT's centre padding (`front_end.pad_mode`): 'constant' (librosa >= 0.10) or 'reflect' (older
    librosa); it changes the first and last two frames only.
    """
    import librosa

    y = preemphasis(pcm, front_end.preemphasis) if front_end.preemphasis else pcm
    window: Any = "hann"
    if front_end.window == "symmetric":
        from scipy.signal import get_window

        window = get_window("hann", WIN_LENGTH, fftbins=False)
    spectrum = np.abs(librosa.stft(
        y=y, n_fft=N_FFT, hop_length=HOP_LENGTH, win_length=WIN_LENGTH, window=window, center=front_end.center,
        pad_mode=front_end.pad_mode,  # type: ignore[arg-type]
    ))
    if front_end.spectrum == "power":
        spectrum = spectrum**2
    mel = np.dot(mel_filterbank(front_end.mel_scale), spectrum)
    db = 20 * np.log10(np.maximum(1e-5, mel)) - front_end.ref_level_db
    if front_end.mel_range == "[-4,4]":
        normalized = np.clip(
            (2 * MAX_ABS_VALUE) * ((db - MIN_LEVEL_DB) / -MIN_LEVEL_DB) - MAX_ABS_VALUE, -MAX_ABS_VALUE, MAX_ABS_VALUE
        )
    else:
        normalized = np.clip(MAX_ABS_VALUE * ((db - MIN_LEVEL_DB) / -MIN_LEVEL_DB), 0, MAX_ABS_VALUE)
    return normalized.T


def mel_filterbank(scale: str = "slaney") -> np.ndarray:
    """librosa's mel filterbank `(80, 401)` for 16 kHz, n_fft 800, 55..7600 Hz: Slaney scale and norm (the
    original's, librosa's default), or the HTK scale."""
    import librosa

    return librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX, htk=scale == "htk")


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


def encode_windows(encode: Callable[[np.ndarray], np.ndarray], windows: np.ndarray, batch_size: int = ENCODER_BATCH) -> np.ndarray:
    """Run `encode((B,1,80,16)) -> (B,512)` over all windows in batches of 64: `(N, 512)` float32."""
    parts = [encode(windows[i : i + batch_size]) for i in range(0, len(windows), batch_size)]
    return np.concatenate(parts, axis=0).astype(np.float32, copy=False)


def feature_count(windows: int, front_end: AudioFrontEnd = AudioFrontEnd()) -> int:
    """How many feature rows (= output frames) `windows` encoder windows make: N + 2 padded."""
    return windows + 2 if front_end.padded else windows


def feature_source(row: int, windows: int, front_end: AudioFrontEnd = AudioFrontEnd()) -> int | None:
    """The encoder window that feature row `row` holds; None outside the features. Padded features repeat
    the first and the last window once."""
    if not 0 <= row < feature_count(windows, front_end):
        return None
    return min(max(row - 1, 0), windows - 1) if front_end.padded else row


def pad_features(features: np.ndarray, front_end: AudioFrontEnd = AudioFrontEnd()) -> np.ndarray:
    """Repeat the first and last rows once: `(N, 512)` -> `(N + 2, 512)`; the video has N + 2 frames."""
    rows = [feature_source(row, len(features), front_end) for row in range(feature_count(len(features), front_end))]
    return features[np.asarray(rows, dtype=np.intp)]


class FeatureRows(Protocol):
    """What `unet_audio_window` reads: the padded features, or anything giving their rows on demand."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __len__(self) -> int: ...

    def __getitem__(self, row: int) -> np.ndarray: ...


def unet_audio_rows(frame: int, window: AudioWindow = AudioWindow()) -> list[int | None]:
    """The feature row each of the 16 rows of frame `frame`'s U-Net audio input holds (None: zeros)."""
    if window.source == "zero":
        return [None] * UNET_AUDIO_ROWS
    if window.source == "tiled":
        return [frame + window.shift] * UNET_AUDIO_ROWS
    half = UNET_AUDIO_ROWS // 2
    centre = (0 if window.source == "constant" else frame) + window.shift
    return list(range(centre - half, centre + half))


def unet_audio_window(features: np.ndarray | FeatureRows, frame: int, window: AudioWindow = AudioWindow()) -> np.ndarray:
    """Rows `frame-8 .. frame+7` of the padded features (zeros outside), as `(32, 16, 16)` float32."""
    rows = np.zeros((UNET_AUDIO_ROWS, features.shape[1]), dtype=np.float32)
    for r, source in enumerate(unet_audio_rows(frame, window)):
        value = feature_row(features, source, window)
        if value is not None:
            rows[r] = value
    return rows.reshape(32, 16, 16)


def feature_row(features: np.ndarray | FeatureRows, row: int | None, window: AudioWindow = AudioWindow()) -> np.ndarray | None:
    """Feature row `row` as `window` reads it (held, edge-padded, smoothed: `AudioWindow`); None for zeros. With the
    original's window, `features[row]` itself inside the features and None outside them."""
    if row is None:
        return None
    if window.smoothing == 1:
        return _held_row(features, row, window)
    half = window.smoothing // 2
    total = np.zeros(features.shape[1], dtype=np.float64)
    for neighbour in range(row - half, row - half + window.smoothing):
        value = _held_row(features, neighbour, window)
        if value is not None:
            total += value
    return (total / window.smoothing).astype(np.float32)


def _held_row(features: np.ndarray | FeatureRows, row: int, window: AudioWindow) -> np.ndarray | None:
    count = len(features)
    if not 0 <= row < count:
        if window.edge == "zero" or count == 0:
            return None
        row = min(max(row, 0), count - 1)
    return features[row - row % window.hold]


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
