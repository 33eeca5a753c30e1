"""`parity doctor`: what can run here — backends, export formats, library versions, CPU, GPU, ffmpeg.

Always exits 0: it reports, it does not judge.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import subprocess

import typer
from rich.console import Console
from rich.table import Table

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
}


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor_command)


def doctor_command() -> None:
    """Show which backends and export formats work here, and the versions, CPU, GPU and ffmpeg in use."""
    console = Console()
    for table in (backend_table(), format_table(), library_table(), machine_table()):
        console.print(table)


def backend_table() -> Table:
    from ..backends import BACKENDS, availability

    table = _table("backends", "backend", "status", "what it is")
    for name, reason in availability().items():
        table.add_row(name, "[green]available[/green]" if reason is None else f"[yellow]{reason}[/yellow]", BACKENDS[name].description)
    return table


def format_table() -> Table:
    from ..export import FORMATS

    table = _table("export formats", "format", "exporter libraries", "precisions", "runs on")
    for fmt in FORMATS.values():
        missing = [lib for lib in fmt.libraries if importlib.util.find_spec(lib) is None]
        status = "[green]all importable[/green]" if not missing else f"[yellow]missing: {', '.join(missing)}[/yellow]"
        table.add_row(fmt.name, status, ", ".join(fmt.precisions), fmt.runs_on)
    return table


def library_table() -> Table:
    table = _table("libraries", "library", "version")
    for library, distributions in LIBRARIES.items():
        table.add_row(library, _version(distributions))
    return table


def machine_table() -> Table:
    table = _table("machine", "what", "found")
    table.add_row("platform", f"{platform.system()} {platform.release()} {platform.machine()}, Python {platform.python_version()}")
    table.add_row("CPU", f"{cpu_model()}, {os.cpu_count()} logical cores")
    table.add_row("GPU (torch)", gpu_summary())
    exe, version = ffmpeg_in_use()
    table.add_row("ffmpeg", f"{exe}\n{version}")
    return table


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "Hardware", "Model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


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
    except Exception as exc:  # noqa: BLE001 - doctor reports every failure instead of raising
        return "not found", f"{type(exc).__name__}: {exc}"
    try:
        result = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=10)
        first = (result.stdout or result.stderr).strip().splitlines()
        return exe, first[0] if first else f"no version output (exit {result.returncode})"
    except (OSError, subprocess.SubprocessError) as exc:
        return exe, f"cannot run it: {exc}"


def _version(distributions: tuple[str, ...]) -> str:
    for name in distributions:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        return version if name == distributions[0] else f"{version} ({name})"
    return "[dim]not installed[/dim]"


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    return table
