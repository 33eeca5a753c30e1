"""What can run here: backends, export formats, library versions, CPU, GPU and ffmpeg (`parity doctor`).

    report = probe()      # plain data; the command layer renders it
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import subprocess
from dataclasses import dataclass

from ..cache import cpu_model

# library shown -> distributions that provide it (first installed wins)
LIBRARIES: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "onnx": ("onnx",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-silicon"),
    "coremltools": ("coremltools",),
    "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt-libs"),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless", "opencv-contrib-python"),
    "librosa": ("librosa",),
    "numpy": ("numpy",),
    "pyav": ("av",),  # reads a port's video (codec, pixel format, colour, x264 settings) and its frames
    "pillow": ("pillow",),  # reads a port's image sizes, JPEG quantization tables and chroma subsampling
    "ray": ("ray",),  # `parity matrix --ray` (the optional extra synctalk-parity[ray])
}


@dataclass(frozen=True)
class BackendStatus:
    name: str
    reason: str | None  # None: available
    description: str


@dataclass(frozen=True)
class FormatStatus:
    name: str
    missing: list[str]  # exporter libraries that do not import
    precisions: tuple[str, ...]
    runs_on: str


@dataclass(frozen=True)
class DoctorReport:
    backends: list[BackendStatus]
    formats: list[FormatStatus]
    libraries: dict[str, str | None]  # None: not installed
    machine: dict[str, str]
    ffmpeg: tuple[str, str]  # executable, first line of its -version (or why not)


def probe() -> DoctorReport:
    from ..backends import BACKENDS, availability
    from ..export import FORMATS

    backends = [BackendStatus(name, reason, BACKENDS[name].description) for name, reason in availability().items()]
    formats = [FormatStatus(f.name, [lib for lib in f.libraries if importlib.util.find_spec(lib) is None], f.precisions, f.runs_on)
               for f in FORMATS.values()]
    machine = {
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}, Python {platform.python_version()}",
        "CPU": f"{cpu_model()}, {os.cpu_count()} logical cores",
        "GPU (torch)": gpu_summary(),
        "ONNX Runtime streams": streams_summary(),
    }
    return DoctorReport(backends, formats, {name: _version(dists) for name, dists in LIBRARIES.items()}, machine, ffmpeg_in_use())


def streams_summary() -> str:
    """How many U-Net calls ONNX Runtime runs at once on this machine's CPU by default, and why."""
    from ..backends.onnxruntime import default_cpu_streams

    streams, source = default_cpu_streams()
    return f"{streams} U-Net call{'s' if streams > 1 else ''} at once, {source}"


def gpu_summary() -> str:
    import torch

    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        return f"CUDA {torch.version.cuda}: {', '.join(names)}"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "Apple MPS"
    return f"none (torch {torch.__version__} sees no CUDA GPU)"


def ffmpeg_in_use() -> tuple[str, str]:
    """The ffmpeg executable imageio-ffmpeg resolves to, and the first line of its `-version`."""
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:
        return "not found", f"{type(exc).__name__}: {exc}"
    try:
        result = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=10)
        first = (result.stdout or result.stderr).strip().splitlines()
        return exe, first[0] if first else f"no version output (exit {result.returncode})"
    except (OSError, subprocess.SubprocessError) as exc:
        return exe, f"cannot run it: {exc}"


def _version(distributions: tuple[str, ...]) -> str | None:
    for name in distributions:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        return version if name == distributions[0] else f"{version} ({name})"
    return None
