"""One set of rules for the inputs of every command (harness/inputs.py): half a clip, a checkpoint without the
other and a path that is not there are refused in one line, the same way by each command, before any work; with
nothing given the demo's clip and weights stand in, and say so."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from synctalk_parity.cli import app
from synctalk_parity.errors import ParityError
from synctalk_parity.harness.inputs import resolve_inputs
from synctalk_parity.harness.verdict.png import write_png

runner = CliRunner()
ENV = {"COLUMNS": "200"}


@pytest.fixture
def given(tmp_path):
    """Files that exist (their content is never read: every refusal comes before any work), and a port's frames."""
    (tmp_path / "dataset").mkdir()
    for name in ("speech.wav", "unet.pth", "encoder.pth"):
        (tmp_path / name).write_bytes(b"x")
    frames = tmp_path / "port-frames"
    frames.mkdir()
    write_png(frames / "00000.png", np.zeros((48, 64, 3), np.uint8))
    return tmp_path


COMMANDS = {  # each command that takes --dataset --audio --unet --audio-encoder, with what else it needs
    "run": lambda g: ["run", "--out", str(g / "run")],
    "compare": lambda g: ["compare", str(g / "port-frames"), "--out", str(g / "verdict")],
    "bench": lambda g: ["bench", "--out", str(g / "bench")],
    "bundle": lambda g: ["bundle", "--out", str(g / "bundle")],
    "locate": lambda g: ["locate", "--out", str(g / "locate")],
}


def _refused(args: list[str]) -> str:
    result = runner.invoke(app, args, env=ENV)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]  # `parity run` says first what the demo is
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_refuses_half_a_clip(given, command):
    line = _refused([*COMMANDS[command](given), "--dataset", str(given / "dataset")])
    assert "pass both --dataset and --audio, or neither for the built-in demo's avatar and speech" in line
    line = _refused([*COMMANDS[command](given), "--audio", str(given / "speech.wav")])
    assert "pass both --dataset and --audio" in line


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_names_a_path_that_is_not_there(given, command):
    line = _refused([*COMMANDS[command](given), "--dataset", str(given / "dataset"), "--audio", str(given / "nope.wav")])
    assert f"--audio {given / 'nope.wav'}: audio file not found" in line
    line = _refused([*COMMANDS[command](given), "--unet", str(given / "nope.pth"), "--audio-encoder", str(given / "encoder.pth")])
    assert f"--unet {given / 'nope.pth'}: checkpoint not found" in line


@pytest.mark.parametrize("command", ["run", "compare", "bench", "bundle", "export"])
def test_a_checkpoint_without_the_other_is_refused_where_both_networks_run(given, command):
    """A real U-Net beside the demo's audio encoder would hear nothing it was trained on: one model or the demo's."""
    args = COMMANDS[command](given) if command in COMMANDS else ["export", "--out", str(given / "exports")]
    line = _refused([*args, "--unet", str(given / "unet.pth")])
    assert "--unet without --audio-encoder: pass the checkpoints of one model together, or neither for the demo weights" in line
    line = _refused([*args, "--audio-encoder", str(given / "encoder.pth")])
    assert "--audio-encoder without --unet" in line


def test_locate_takes_the_one_checkpoint_of_the_network_it_locates(given):
    """`parity locate --network audio_encoder --audio-encoder X` needs no U-Net checkpoint: only the pair rule's
    networks are those a command runs."""
    with pytest.raises(ParityError, match="checkpoint not found"):  # checked all the same
        resolve_inputs(audio_encoder=given / "missing.pth", networks=("audio_encoder",), clip=False)
    inputs = resolve_inputs(unet=None, audio_encoder=given / "encoder.pth", networks=("audio_encoder",), clip=False)
    assert inputs.audio_encoder == given / "encoder.pth"
    assert inputs.unet is not None and inputs.unet.is_file() and "demo weights" in inputs.labels["unet"]  # made, or cached


def test_nothing_given_is_the_demo_and_says_so():
    inputs = resolve_inputs(networks=())
    assert inputs.demo and inputs.dataset is not None and inputs.audio is not None
    assert (inputs.dataset / "full_body_img").is_dir() and inputs.audio.is_file()
    assert "the built-in demo's avatar" in inputs.labels["dataset"] and "the built-in demo's speech" in inputs.labels["audio"]
    assert (inputs.unet, inputs.audio_encoder) == (None, None)  # an export runs: no checkpoint made
    weighted = resolve_inputs(clip=False)
    assert weighted.dataset is None and not weighted.demo and weighted.demo_weights
    assert weighted.unet is not None and weighted.unet.is_file() and weighted.audio_encoder is not None and weighted.audio_encoder.is_file()


def test_the_clip_given_is_taken_as_given(given):
    inputs = resolve_inputs(given / "dataset", given / "speech.wav", given / "unet.pth", given / "encoder.pth")
    assert (inputs.dataset, inputs.audio, inputs.unet, inputs.audio_encoder) == (
        given / "dataset", given / "speech.wav", given / "unet.pth", given / "encoder.pth")
    assert not inputs.demo and not inputs.demo_weights and inputs.labels["unet"] == str(given / "unet.pth")
