"""A port whose U-Net ran at reduced precision is told by simulation where its frames are lossless: on the demo
weights, candidates made by really running the U-Net in bfloat16 or float16 (PyTorch on the CPU, not the emulation the
simulation uses, so the test is not circular) are named `unet_bf16` and `unet_fp16`, and a correct fp32 port names
neither (docs/judging-ports.md, "Reduced precision")."""

from __future__ import annotations

import copy

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # real bf16/fp16 runs of the full-size demo U-Net: 10.7 min for the three on the loaded 2-core machine

SAMPLE = [3, 15, 27]  # of the 39 frames of the demo speech's first 1.6 s; a real bf16/fp16 frame takes 2.4-10 s on this CPU


class PrecisionCase:
    def __init__(self, weights):
        from synctalk_parity.backends import ModelSource, create_backend
        from synctalk_parity.cache import cache_folder
        from synctalk_parity.harness.inputs import demo_check_inputs
        from synctalk_parity.harness.ports.simulate import Simulator
        from synctalk_parity.models import load_audio_encoder, load_unet
        from synctalk_parity.reference.audio import SAMPLE_RATE, load_audio
        from synctalk_parity.reference.dataset import open_dataset
        from synctalk_parity.reference.demo import make_demo
        from synctalk_parity.reference.execution import emulated_runner
        from synctalk_parity.reference.pipeline import ReferencePipeline

        demo = make_demo(cache_folder("demo"))
        self.dataset = open_dataset(demo.dataset_dir)
        self.unet = load_unet(weights[0])
        self.pipeline = ReferencePipeline(self.unet, load_audio_encoder(weights[1]))
        self.pcm = load_audio(demo.audio_path)[: int(1.6 * SAMPLE_RATE)]
        # as `parity compare` simulates: fp32 on ONNX Runtime, another precision emulated in PyTorch (`judge.py`)
        backend = create_backend("onnxruntime", ModelSource.from_paths(weights[0], weights[1], check_inputs=demo_check_inputs)).load()
        self.simulator = Simulator(self.dataset, self.pcm, backend.generate, backend.encode_audio,
                                   generate_at=lambda precision: emulated_runner(self.unet, precision))

    def port(self, generate) -> dict[int, np.ndarray]:
        """The sampled output frames of a port that runs the U-Net with `generate` and is otherwise correct."""
        from synctalk_parity.harness.ports.simulate import Simulator, Variant

        return Simulator(self.dataset, self.pcm, generate, self.pipeline.encode_audio).frames(Variant(), SAMPLE)

    def really_at(self, dtype):
        """The U-Net run in `dtype` by PyTorch: weights, inputs and every operation in that format (channels-last, as a
        CPU port would run it: bf16 2.4 s a frame against 3.6 s in NCHW, fp16 2.5 against 4.2, one process, idle)."""
        import torch

        unet = copy.deepcopy(self.unet).to(dtype).to(memory_format=torch.channels_last)

        def run(image, audio):
            with torch.no_grad():
                image_in = torch.from_numpy(image).to(dtype).contiguous(memory_format=torch.channels_last)
                return unet(image_in, torch.from_numpy(audio).to(dtype)).float().numpy()

        return run

    def explain(self, frames):
        from synctalk_parity.harness.ports.simulate import Variant, explain

        return explain(self.simulator, frames, sample=SAMPLE, candidate_frame_count=self.simulator.frame_count(Variant()))


@pytest.fixture(scope="module")
def case(demo_weights_files) -> PrecisionCase:
    return PrecisionCase(demo_weights_files)


def test_a_port_whose_unet_really_ran_in_bf16_is_named_unet_bf16(case):
    import torch

    explanation = case.explain(case.port(case.really_at(torch.bfloat16)))
    assert explanation.names == ["unet_bf16"], explanation.summary()
    finding = explanation.findings[0]
    assert finding.mistake.id == "unet_bf16" and "fp32" in finding.mistake.fix
    assert finding.after.box_db >= finding.before.box_db + 5, explanation.summary()  # 45.3 -> 52.4 dB measured on 4 frames
    assert finding.specificity is not None and finding.specificity.share >= 0.5


def test_a_port_whose_unet_really_ran_in_fp16_is_named_unet_fp16(case):
    import torch

    explanation = case.explain(case.port(case.really_at(torch.float16)))
    assert explanation.names == ["unet_fp16"], explanation.summary()
    assert "fp16 gate" in explanation.findings[0].mistake.fix


def test_a_correct_fp32_port_names_no_precision(case):
    from synctalk_parity.reference.execution import unet_runner

    explanation = case.explain(case.port(unet_runner(case.unet, "exact")))  # eager PyTorch against the simulation's ONNX Runtime
    assert explanation.names == [] and explanation.explained, explanation.summary()


def test_parity_compare_names_a_bf16_port_from_its_png_frames_and_says_nothing_of_precision_on_jpeg_frames(case, demo_weights_files, tmp_path):
    """The judge's own path: the PNG frames of a port whose U-Net really ran in bf16 get `simulated:unet_bf16`; the same
    frames as JPEG q90 get no precision named (codec noise dwarfs it: the precision hypotheses are not tried)."""
    import json

    import cv2
    import torch
    from typer.testing import CliRunner

    from synctalk_parity.cli import app
    from synctalk_parity.harness.ports.simulate import Simulator, Variant
    from synctalk_parity.reference.audio import SAMPLE_RATE, write_wav

    from .conftest import write_png_port

    pcm = case.pcm[: int(0.5 * SAMPLE_RATE)]  # a short clip: every frame is run really in bf16
    wav = write_wav(tmp_path / "speech.wav", pcm)  # the same bytes each session: its reference is cached
    port = Simulator(case.dataset, pcm, case.really_at(torch.bfloat16), case.pipeline.encode_audio)
    frames = port.frames(Variant(), range(port.frame_count(Variant())))
    png = write_png_port(tmp_path / "png", frames)
    jpeg = tmp_path / "jpeg"
    jpeg.mkdir()
    for index, frame in frames.items():
        cv2.imwrite(str(jpeg / f"frame_{index + 1:05d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
    named = {}
    for name, folder in (("png", png), ("jpeg", jpeg)):
        out = tmp_path / f"verdict-{name}"
        result = CliRunner().invoke(app, ["compare", str(folder), "--dataset", str(case.dataset.root), "--audio", str(wav), "--unet",
                                          str(demo_weights_files[0]), "--audio-encoder", str(demo_weights_files[1]), "--out", str(out)],
                                    env={"COLUMNS": "200"})
        assert (out / "result.json").is_file(), result.output
        named[name] = {d["name"] for d in json.loads((out / "result.json").read_text())["comparison"]["diagnoses"]}
    assert {d for d in named["png"] if d.startswith("simulated:")} == {"simulated:unet_bf16"}, named
    assert not {"simulated:unet_bf16", "simulated:unet_fp16"} & named["jpeg"], named
