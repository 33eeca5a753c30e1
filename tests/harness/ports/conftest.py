"""Ports written with the demo weights (listening test weights: the mouth follows the speech), shared by the lip
sync and audio-diagnosis tests: the demo avatar, the first 1.6 s of its speech, and a simulator on ONNX Runtime
that writes any `Variant`'s frames (U-Net outputs cached across the tests of a session)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from synctalk_parity.cli import app

ENV = {"COLUMNS": "200"}
SECONDS = 1.6  # the demo speech's first 1.6 s: 39 output frames
FRAMES = 39
runner = CliRunner()


class DemoPorts:
    """The demo avatar, 1.6 s of its speech and the demo weights; ports made by the simulator on ONNX Runtime (a
    correct port then differs from the eager reference by float32 rounding only)."""

    def __init__(self, root, weights):
        from synctalk_parity.backends import ModelSource, create_backend
        from synctalk_parity.cache import cache_folder
        from synctalk_parity.harness.inputs import demo_check_inputs
        from synctalk_parity.harness.ports.simulate import Simulator
        from synctalk_parity.reference.audio import SAMPLE_RATE, load_audio, write_wav
        from synctalk_parity.reference.dataset import open_dataset
        from synctalk_parity.reference.demo import make_demo

        demo = make_demo(cache_folder("demo"))
        self.root, self.unet, self.audio_encoder = root, weights[0], weights[1]
        self.dataset_dir = demo.dataset_dir
        self.dataset = open_dataset(demo.dataset_dir)
        self.pcm = load_audio(demo.audio_path)[: int(SECONDS * SAMPLE_RATE)]
        self.wav = write_wav(root / "speech.wav", self.pcm)
        self.backend = create_backend("onnxruntime", ModelSource.from_paths(weights[0], weights[1], check_inputs=demo_check_inputs)).load()
        self._simulators: dict[bytes, Simulator] = {}
        self.simulator = self.simulator_for(self.pcm)

    def simulator_for(self, pcm: np.ndarray):
        from synctalk_parity.harness.ports.simulate import Simulator

        key = pcm.tobytes()
        if key not in self._simulators:
            self._simulators[key] = Simulator(self.dataset, pcm, self.backend.generate, self.backend.encode_audio)
        return self._simulators[key]

    def frames(self, knobs: dict | None = None, pcm: np.ndarray | None = None, count: int | None = None) -> dict[int, np.ndarray]:
        from synctalk_parity.harness.ports.simulate import Variant

        simulator = self.simulator if pcm is None else self.simulator_for(pcm)
        variant = Variant().with_knobs(knobs or {})
        return simulator.frames(variant, range(count or simulator.frame_count(variant)))

    def compare(self, candidate, out, *extra):
        args = ["compare", str(candidate), "--dataset", str(self.dataset_dir), "--audio", str(self.wav), "--unet", str(self.unet),
                "--audio-encoder", str(self.audio_encoder), "--out", str(out), *extra]
        result = runner.invoke(app, args, env=ENV)
        assert (out / "result.json").is_file(), result.output
        return result, json.loads((out / "result.json").read_text())


@pytest.fixture(scope="session")
def demo_ports(demo_weights_files, tmp_path_factory):
    made = DemoPorts(tmp_path_factory.mktemp("demo-ports"), demo_weights_files)
    yield made
    made.backend.close()


def write_png_port(folder, frames: dict[int, np.ndarray], base: int = 1):
    """Frames as a port writes them: PNG, numbered from `base`."""
    import cv2

    folder.mkdir(parents=True)
    for index, frame in frames.items():
        cv2.imwrite(str(folder / f"frame_{index + base:05d}.png"), frame)
    return folder
