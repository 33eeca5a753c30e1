"""The mel spectrogram of an audio file, computed once with librosa and cached, so a run on audio it has seen
starts without importing librosa.

librosa's STFT and mel filters import scipy.signal and numba (numba compiles librosa's ufuncs at import): 1.5-2.5 s
of a run's start-up on 2 cores, more than everything else before the first frame together. The mel is a pure
function of the audio file's bytes, the decoder and the code and libraries that compute it, so it is cached like
the reference and the exports: `<cache>/audio/<key>/mel.npy` (float64, exactly what `reference.audio.
mel_spectrogram` returned; 0.5 MB for 10 s), keyed by the file's sha256, the decoder, every knob of the front
end (`AudioFrontEnd().parts()`), the reference/ code and the library versions. On a miss the caller imports
librosa in the background while the backend loads (`prefetch_librosa`).
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ...cache import REFERENCE_LIBRARIES, build_entry, cache_folder, check_entry, environment, key_of, sha256_file
from ...reference import audio

MEL_FILE = "mel.npy"


def mel_parts(path: Path) -> dict[str, Any]:
    """What decides the mel's bytes: the file, how it is decoded, and the code and libraries that compute it."""
    return {
        "inputs": {"audio": sha256_file(path), "decoder": audio.audio_decoder(path), "front_end": audio.AudioFrontEnd().parts()},
        "environment": environment(("reference",), REFERENCE_LIBRARIES),
    }


def cached_mel(path: Path) -> tuple[np.ndarray | None, dict[str, Any]]:
    """The cached mel of the audio file at `path` (None when not cached), and its key's parts for `store_mel`."""
    parts = mel_parts(path)
    entry = cache_folder("audio") / key_of(parts)
    return (np.load(entry / MEL_FILE) if check_entry(entry) is None else None), parts


def store_mel(path: Path, parts: dict[str, Any], mel: np.ndarray) -> None:
    """Cache `mel` as the mel of the audio file at `path`, under the `parts` `cached_mel` returned (a valid entry
    published first wins)."""
    entry = cache_folder("audio") / key_of(parts)
    build_entry(entry, "audio", f"mel spectrogram of {path.name}", parts, lambda tmp: np.save(tmp / MEL_FILE, mel))


def prefetch_librosa() -> None:
    """Import librosa's STFT and mel filters in a background thread (the backend loads meanwhile: ONNX Runtime
    builds its sessions without holding the GIL)."""
    threading.Thread(target=_import_librosa, name="import-librosa", daemon=True).start()


def _import_librosa() -> None:
    with contextlib.suppress(Exception):  # an import error shows where librosa is used, with its own message
        import librosa.core.spectrum
        import librosa.filters  # noqa: F401
