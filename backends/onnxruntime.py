"""ONNX Runtime: the exported `.onnx` networks on the CPU, CUDA, TensorRT or CoreML execution provider.

Loads `unet.onnx` and `audio_encoder.onnx` from an export folder (checked against its manifest),
or exports the source's checkpoints (fixture weights when none) once into the cache (`backends/exports.py`).
"""

from __future__ import annotations

import numpy as np

from ..errors import ParityError
from ..export.manifest import artifact_path, read_manifest
from .base import Backend
from .exports import export_for

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}


class OnnxRuntimeBackend(Backend):
    """Options: `provider` (cpu, cuda, tensorrt, coreml; default cpu), `threads` (intra-op threads)."""

    name = "onnxruntime"
    description = "ONNX Runtime (CPU, CUDA, TensorRT or CoreML execution provider)"

    @classmethod
    def available(cls) -> str | None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            return f"onnxruntime is not installed ({exc}); pip install onnxruntime (or onnxruntime-gpu)"
        return None

    def _load_impl(self) -> None:
        import onnxruntime as ort

        provider = self._provider(ort.get_available_providers())
        self.export_dir = export_for(self.source, "onnx")
        options = ort.SessionOptions()
        # No spin-waiting between ops: in the pipeline, decoding, pasting and encoding threads need
        # the cores that spinning ORT threads would burn (measured: 720p end-to-end 10 -> 11.7 fps).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if self.options.get("threads"):
            options.intra_op_num_threads = int(self.options["threads"])
        providers = [provider] if provider == PROVIDERS["cpu"] else [provider, PROVIDERS["cpu"]]
        self.sessions = {
            network: ort.InferenceSession(str(artifact_path(self.export_dir, network)), options, providers=providers)
            for network in ("unet", "audio_encoder")
        }

    def _encode_audio_impl(self, windows: np.ndarray) -> np.ndarray:
        return self.sessions["audio_encoder"].run(["audio_feature"], {"mel_window": windows})[0]

    def _generate_impl(self, image: np.ndarray, audio: np.ndarray) -> np.ndarray:
        return self.sessions["unet"].run(["mouth"], {"image": image, "audio": audio})[0]

    def _close_impl(self) -> None:
        self.sessions = {}

    def preferred_batch(self) -> int:
        """1 on the CPU provider: on 2 cores batch 4 ran the networks 5-10% faster but the whole pipeline
        slower (720p, two bench runs: 14.8-14.9 fps at 1, 12.7-14.5 at 4) with ~1 GB more memory; 4 on GPU
        providers."""
        if self._loaded and self.sessions["unet"].get_providers()[0] == PROVIDERS["cpu"]:
            return 1
        return super().preferred_batch()

    def describe(self) -> dict[str, str]:
        info = super().describe()
        if self._loaded:
            import onnxruntime as ort

            info.update(
                provider=self.sessions["unet"].get_providers()[0],
                onnxruntime=ort.__version__,
                precision=read_manifest(self.export_dir)["precision"],
                export_dir=str(self.export_dir),
            )
        return info

    def _provider(self, available: list[str]) -> str:
        choice = self.options.get("provider") or "cpu"
        if choice not in PROVIDERS:
            raise ParityError(f"unknown onnxruntime provider {choice!r}: choose from {', '.join(PROVIDERS)}")
        if PROVIDERS[choice] not in available:
            raise ParityError(f"onnxruntime has no {PROVIDERS[choice]} here; available: {', '.join(available)}")
        return PROVIDERS[choice]
