"""Core ML, emulated: executes the converted ML programs op by op with PyTorch on the CPU (any OS).

This emulates the Core ML program's arithmetic (fp16 storage between ops in fp16 programs), not
Apple's Neural Engine or GPU kernels: it shows whether the converted program computes what PyTorch
computes, not how a Mac's devices round. See `export/coreml_emulate.py`.

Loads `unet.mlpackage` and `audio_encoder.mlpackage` from a `coreml-<precision>` export folder
(checked against its manifest), or converts the source's checkpoints (fixture weights when none)
once into the export cache keyed by the weights' sha256, as the onnxruntime backend does.
Any batch size runs (the program's batch is a RangeDim; the emulator is not bound by its range).
"""

from __future__ import annotations

import numpy as np

from ..export.manifest import artifact_path, read_manifest
from ..models.specs import audio_encoder_spec, unet_spec
from .base import Backend
from .exports import export_for


class CoreMLEmulatedBackend(Backend):
    name = "coreml-emulated"
    description = "Core ML ML program executed op by op in PyTorch (emulates the program's arithmetic, not the Neural Engine/GPU)"

    @classmethod
    def available(cls) -> str | None:
        try:
            from ..export.coreml import import_coremltools

            import_coremltools()
        except ImportError:
            return "coremltools is not installed (needed to read the .mlpackage): pip install coremltools"
        return None

    def _load_impl(self) -> None:
        from ..export.coreml_emulate import ProgramEmulator

        self.export_dir = export_for(self.source, "coreml")
        self._precision = read_manifest(self.export_dir).get("precision", self.source.precision)
        self.programs = {network: ProgramEmulator(artifact_path(self.export_dir, network)) for network in ("unet", "audio_encoder")}

    def _encode_audio_impl(self, windows: np.ndarray) -> np.ndarray:
        spec = audio_encoder_spec()
        return self.programs["audio_encoder"].run({spec.input_names[0]: windows})[spec.output_names[0]]

    def _generate_impl(self, image: np.ndarray, audio: np.ndarray) -> np.ndarray:
        spec = unet_spec(self.source.mode)
        return self.programs["unet"].run(dict(zip(spec.input_names, (image, audio))))[spec.output_names[0]]

    def _close_impl(self) -> None:
        self.programs = {}

    def describe(self) -> dict[str, str]:
        from ..export.coreml_emulate import NOTE

        info = {**super().describe(), "note": NOTE}
        if self._loaded:
            info.update(
                precision=self._precision,
                export_dir=str(self.export_dir),
                unet_ops=", ".join(self.programs["unet"].op_types),
                audio_encoder_ops=", ".join(self.programs["audio_encoder"].op_types),
            )
        return info
