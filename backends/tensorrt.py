"""TensorRT: the `unet.engine` and `audio_encoder.engine` of a `tensorrt-<precision>` export on an NVIDIA GPU.

Loads the engines from the source's export folder (checked against its manifest; engines that
`build_engines.sh` built in a `.unbuilt` folder load unchecked), or builds the source's weights once
into the same cache as the onnxruntime backend. Running goes through `export.tensorrt.EngineRunner`
(torch CUDA tensors as buffers, batches split at the profile maximum).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ParityError
from ..export.manifest import artifact_path, read_manifest
from ..export.tensorrt import BUILD_SCRIPT, EngineRunner, missing_runtime
from .base import Backend
from .exports import cached_export

NETWORKS = ("unet", "audio_encoder")


class TensorRTBackend(Backend):
    """No options: precision and batch profile are fixed when the engines are built."""

    name = "tensorrt"
    description = "TensorRT engines on an NVIDIA GPU"

    @classmethod
    def available(cls) -> str | None:
        return missing_runtime()

    def _load_impl(self) -> None:
        self.export_dir = self._export_dir()
        self.runners = {network: EngineRunner(path.read_bytes(), str(path)) for network, path in engine_paths(self.export_dir).items()}

    def _encode_audio_impl(self, windows: np.ndarray) -> np.ndarray:
        return self.runners["audio_encoder"].run({"mel_window": windows})["audio_feature"]

    def _generate_impl(self, image: np.ndarray, audio: np.ndarray) -> np.ndarray:
        return self.runners["unet"].run({"image": image, "audio": audio})["mouth"]

    def _close_impl(self) -> None:
        self.runners = {}

    def describe(self) -> dict[str, str]:
        info = super().describe()
        if self._loaded:
            import tensorrt
            import torch

            manifest = read_manifest(self.export_dir)
            info.update(
                device=torch.cuda.get_device_name(),
                tensorrt=tensorrt.__version__,
                precision=manifest["precision"],
                export_dir=str(self.export_dir),
                max_batch=", ".join(f"{n} {r.max_batch}" for n, r in self.runners.items()),
            )
            if manifest.get("engines") == "not built":
                info["check"] = f"none: engines built by {BUILD_SCRIPT}, not by parity export"
        return info

    def _export_dir(self) -> Path:
        """The source's export folder, else this machine's cached engine export of the source's weights."""
        if self.source.export_dir is not None:
            return Path(self.source.export_dir)
        return cached_export(self.source, "tensorrt")


def engine_paths(export_dir: Path) -> dict[str, Path]:
    """`unet.engine` and `audio_encoder.engine` of a TensorRT export folder, or a `ParityError` saying what to do."""
    manifest = read_manifest(export_dir)
    if manifest["format"] != "tensorrt":
        raise ParityError(f"{export_dir}: a {manifest['format']} export, not tensorrt; pass a tensorrt-<precision> folder")
    if manifest.get("engines") != "not built":
        return {network: artifact_path(export_dir, network) for network in NETWORKS}
    paths = {network: Path(export_dir) / f"{network}.engine" for network in NETWORKS}
    if not all(p.is_file() for p in paths.values()):
        raise ParityError(f"{export_dir}: TensorRT-ready ONNX only, no engines yet; run {BUILD_SCRIPT} there, or `parity export` for tensorrt on this GPU machine")
    return paths
