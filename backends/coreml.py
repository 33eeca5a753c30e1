"""Core ML backend: runs the `.mlpackage` files of a `parity export --format coreml` folder (macOS only).

Options: `compute_units` = cpu_only | cpu_and_gpu | all (default all: CPU, GPU and Neural Engine).
Batches larger than the package's batch range are split.
"""

from __future__ import annotations

import sys

import numpy as np

from ..errors import ParityError
from ..export.coreml import import_coremltools
from ..export.manifest import artifact_path, read_manifest
from ..models.specs import audio_encoder_spec, unet_spec
from .base import Backend

COMPUTE_UNITS = {"cpu_only": "CPU_ONLY", "cpu_and_gpu": "CPU_AND_GPU", "all": "ALL"}
LINUX_REASON = (
    "Core ML prediction needs macOS (coremltools converts here but cannot predict); "
    "on Linux use --backend coreml-emulated to execute the converted program, or run on a Mac"
)


class CoreMLBackend(Backend):
    name = "coreml"
    description = "Core ML .mlpackage (ML program) via coremltools, macOS"

    @classmethod
    def available(cls) -> str | None:
        try:
            import_coremltools()
        except ImportError:
            return "coremltools is not installed: pip install coremltools"
        if sys.platform != "darwin":
            return LINUX_REASON
        return None

    def _load_impl(self) -> None:
        ct = import_coremltools()
        units = self.options.get("compute_units", "all")
        if units not in COMPUTE_UNITS:
            raise ParityError(f"coreml: compute_units {units!r}: choose from {', '.join(COMPUTE_UNITS)}")
        export_dir = self.source.export_dir
        if export_dir is None:
            raise ParityError("coreml backend needs an export folder: run `parity export --format coreml` and pass it")
        manifest = read_manifest(export_dir)
        if manifest.get("format") != "coreml":
            raise ParityError(f"{export_dir}: a {manifest.get('format')!r} export, not coreml")
        self._max_batch = {a["network"]: int(a.get("extra", {}).get("max_batch", 1)) for a in manifest["artifacts"]}
        compute_units = getattr(ct.ComputeUnit, COMPUTE_UNITS[units])
        self._models = {
            network: ct.models.MLModel(str(artifact_path(export_dir, network)), compute_units=compute_units)
            for network in ("unet", "audio_encoder")
        }
        self._units, self._precision = units, manifest.get("precision", self.source.precision)

    def _encode_audio_impl(self, windows: np.ndarray) -> np.ndarray:
        spec = audio_encoder_spec()
        return self._predict("audio_encoder", {spec.input_names[0]: windows}, spec.output_names[0])

    def _generate_impl(self, image: np.ndarray, audio: np.ndarray) -> np.ndarray:
        spec = unet_spec(self.source.mode)
        return self._predict("unet", dict(zip(spec.input_names, (image, audio))), spec.output_names[0])

    def _predict(self, network: str, inputs: dict[str, np.ndarray], output: str) -> np.ndarray:
        model, step = self._models[network], self._max_batch[network]
        total = next(iter(inputs.values())).shape[0]
        parts = [
            model.predict({k: np.ascontiguousarray(v[start : start + step]) for k, v in inputs.items()})[output]
            for start in range(0, total, step)
        ]
        return np.concatenate([np.asarray(p, dtype=np.float32) for p in parts])

    def _close_impl(self) -> None:
        self._models = {}

    def describe(self) -> dict[str, str]:
        loaded = {"precision": self._precision, "compute_units": self._units} if self._loaded else {}
        return {**super().describe(), "compute_units": self.options.get("compute_units", "all"), **loaded}
