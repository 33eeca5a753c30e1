"""Where parity locate's inputs come from: a run's dump (the frames that hold both U-Net inputs), with clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from synctalk_parity.errors import ParityError
from synctalk_parity.harness.locate.inputs import samples_from_dump
from synctalk_parity.harness.verdict.dump import DumpWriter

PRODUCER = {"name": "tests", "version": "0", "backend": "onnxruntime", "precision": "fp32"}


def _run_folder(tmp_path, stages="all"):
    rng = np.random.default_rng(0)
    run = tmp_path / "run"
    with DumpWriter(run / "dump", PRODUCER, 6, stages) as writer:
        writer.add_clip({"audio.windows": rng.uniform(-4, 4, (5, 1, 80, 16)).astype(np.float32)})
        for index in range(6):
            writer.add_frame(index, {"frame.unet_audio": np.full((32, 16, 16), index, np.float32),
                                     "frame.unet_input": np.full((6, 320, 320), index / 10, np.float32)}, heavy=index % 2 == 0)
    return run


def test_the_unet_takes_the_frames_that_hold_both_inputs_from_a_run_folder(tmp_path):
    samples = samples_from_dump(_run_folder(tmp_path), "unet", None)
    images, audio = samples.arrays
    assert images.shape == (3, 6, 320, 320) and audio.shape == (3, 32, 16, 16)
    assert [float(a[0, 0, 0]) for a in audio] == [0.0, 2.0, 4.0]  # frames 0, 2, 4: the heavy ones
    assert samples.source.endswith("frames 0, 2, 4")
    encoder = samples_from_dump(_run_folder(tmp_path / "again") / "dump", "audio_encoder", 3)
    assert encoder.arrays[0].shape == (3, 1, 80, 16)


def test_a_dump_without_the_inputs_says_what_to_do(tmp_path):
    run = _run_folder(tmp_path, stages="frame.unet_audio")
    with pytest.raises(ParityError, match="no frame.unet_input stage; run with --dump all"):
        samples_from_dump(run, "unet", None)
    with pytest.raises(ParityError, match="no audio.windows stage"):
        samples_from_dump(run, "audio_encoder", None)
