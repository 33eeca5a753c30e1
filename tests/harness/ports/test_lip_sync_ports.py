"""Lip sync from what ports write, end to end: ports written with the demo weights (listening test weights: the mouth
follows the speech) by the simulation's own `Variant`s, as PNG frames or an mp4, judged by `parity compare`; and a
port's stage dump judged against the reference's. result.json's `lip_sync` must measure a correct port at offset 0
with a score near one, features shifted by k frames at k, an audio input that starts 80 ms late at +2 (judged with
the original audio), and a port that ignores the audio near zero."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from synctalk_parity.cli import app

from .conftest import ENV, FRAMES, write_png_port

runner = CliRunner()
pytestmark = pytest.mark.slow


def test_a_correct_port_is_in_step_with_a_score_near_one(demo_ports, tmp_path):
    result, data = demo_ports.compare(write_png_port(tmp_path / "port", demo_ports.frames()), tmp_path / "verdict", "--no-simulate")
    sync = data["lip_sync"]
    assert sync["against"] == "reference" and sync["frames"] == FRAMES
    assert sync["offset_frames"] == 0 and sync["offset_ms"] == 0 and sync["score"] > 0.99
    assert "lip sync against the reference: offset +0 frames (+0 ms, in step)" in result.output


@pytest.mark.parametrize("k", [1, -1, 2, -2])
def test_features_shifted_by_k_frames_are_measured_at_k(demo_ports, tmp_path, k):
    """Frame i reads the feature rows of frame i + k: its mouth moves k frames early (k > 0), so the offset is -k."""
    frames = demo_ports.frames({"audio_window.shift": -k})  # rows i-k-8 .. i-k+7: the mouth k frames late
    result, data = demo_ports.compare(write_png_port(tmp_path / "port", frames), tmp_path / "verdict", "--no-simulate")
    assert result.exit_code == 1, result.output
    sync = data["lip_sync"]
    assert sync["offset_frames"] == k and sync["offset_ms"] == 40 * k
    assert sync["score"] > 0.8 and sync["score"] > sync["score_at_zero"] + 0.2, sync
    assert [w["offset_frames"] for w in sync["windows"]] == [k]  # one window: the clip


def test_an_audio_input_that_starts_80_ms_late_is_two_frames_late(demo_ports, tmp_path):
    late = np.concatenate([np.zeros(1280, np.float32), demo_ports.pcm])  # 80 ms of silence first: 2 frames at 25 fps
    frames = demo_ports.frames(pcm=late)
    _, data = demo_ports.compare(write_png_port(tmp_path / "port", frames), tmp_path / "verdict", "--no-simulate")
    sync = data["lip_sync"]
    assert sync["offset_frames"] == 2 and sync["offset_ms"] == 80 and sync["score"] > 0.8, sync


@pytest.mark.parametrize("source", ["zero", "constant"])
def test_a_port_that_ignores_the_audio_scores_near_zero(demo_ports, tmp_path, source):
    frames = demo_ports.frames({"audio_window.source": source})
    _, data = demo_ports.compare(write_png_port(tmp_path / "port", frames), tmp_path / "verdict", "--no-simulate")
    sync = data["lip_sync"]
    assert sync["score"] is not None and abs(sync["score"]) < 0.3, sync
    assert abs(sync["score_at_zero"]) < 0.3


def test_a_port_video_shifted_by_two_frames_is_measured_from_its_frames(demo_ports, tmp_path):
    from synctalk_parity.reference.video import VideoWriter

    frames = demo_ports.frames({"audio_window.shift": -2})
    video = tmp_path / "port.mp4"
    with VideoWriter(video, demo_ports.dataset.frame_size, audio=demo_ports.wav) as writer:
        for index in range(len(frames)):
            writer.write(frames[index])
    result, data = demo_ports.compare(video, tmp_path / "verdict", "--no-simulate")
    assert data["port"]["kind"] == "video" and data["port"]["audio_track"]["same_signal"]  # the sound track is right ...
    sync = data["lip_sync"]
    assert sync["offset_frames"] == 2 and sync["score"] > 0.7, sync  # ... the lips are two frames late
    assert "offset +2 frames (+80 ms, the mouth is late)" in result.output


def test_a_port_dump_with_shifted_features_is_measured_against_the_reference_dump(demo_ports, tmp_path):
    from synctalk_parity.harness.demo_ports.simulate import Variant
    from synctalk_parity.harness.verdict.dump import DumpWriter

    def dump(folder, knobs):
        variant = Variant().with_knobs(knobs)
        count = demo_ports.simulator.frame_count(variant)
        with DumpWriter(folder, {"name": "port", "version": "0", "backend": "torch", "precision": "fp32"}, count,
                        "frame.template_index,frame.crop_box,frame.output") as writer:
            for stages in demo_ports.simulator.stages(variant, range(count)):
                writer.add_frame(stages.index, stages.as_dict())
        return folder

    reference = dump(tmp_path / "reference", {})
    candidate = dump(tmp_path / "candidate", {"audio_window.shift": 1})  # the mouth one frame early
    result = runner.invoke(app, ["compare", str(candidate), "--reference", str(reference), "--dataset", str(demo_ports.dataset_dir),
                                 "--out", str(tmp_path / "verdict")], env=ENV)
    sync = json.loads((tmp_path / "verdict" / "result.json").read_text())["lip_sync"]
    assert sync["offset_frames"] == -1 and sync["score"] > 0.8, sync
    assert "offset -1 frames (-40 ms, the mouth is early)" in result.output


def test_a_correct_run_is_in_step_with_the_reference_and_its_dumps_say_the_same(demo_ports, tmp_path):
    """`parity run` measures every frame it writes against the reference's motion (cached beside the reference dump,
    here the port judge's: the same stages, every frame); `parity compare` of its dump measures it from the dumps."""
    from synctalk_parity.harness.demo_ports.judge import PORT_STAGES

    out = tmp_path / "run"
    args = ["run", "--backend", "onnxruntime", "--dataset", str(demo_ports.dataset_dir), "--audio", str(demo_ports.wav), "--unet", str(demo_ports.unet),
            "--audio-encoder", str(demo_ports.audio_encoder), "--dump", ",".join(sorted(PORT_STAGES)), "--dump-every", "1", "--out", str(out)]
    result = runner.invoke(app, args, env=ENV)
    sync = json.loads((out / "result.json").read_text())["lip_sync"]
    assert sync["against"] == "reference" and sync["frames"] == FRAMES, result.output
    assert sync["offset_frames"] == 0 and sync["score"] > 0.99, sync
    assert "lip sync against the reference: offset +0 frames" in result.output and "lip sync" in (out / "summary.md").read_text()
    again = runner.invoke(app, ["compare", str(out), "--out", str(tmp_path / "verdict")], env=ENV)
    from_dumps = json.loads((tmp_path / "verdict" / "result.json").read_text())["lip_sync"]
    assert from_dumps["offset_frames"] == 0 and from_dumps["score"] > 0.99 and from_dumps["frames"] == FRAMES, again.output
    assert from_dumps["candidate_motion"] == pytest.approx(sync["candidate_motion"], abs=1e-3)  # the same frames, read back


def test_a_run_without_a_reference_is_measured_against_the_audio(demo_ports, tmp_path):
    out = tmp_path / "run"
    args = ["run", "--backend", "onnxruntime", "--dataset", str(demo_ports.dataset_dir), "--audio", str(demo_ports.wav), "--unet", str(demo_ports.unet),
            "--audio-encoder", str(demo_ports.audio_encoder), "--no-compare", "--dump", "none", "--no-save-frames", "--out", str(out)]
    result = runner.invoke(app, args, env=ENV)
    assert result.exit_code == 0, result.output
    sync = json.loads((out / "result.json").read_text())["lip_sync"]
    assert sync["against"] == "audio" and sync["frames"] == FRAMES
    assert abs(sync["offset_frames"]) <= 1 and sync["score"] > 0.4, sync  # the mouth follows the speech's loudness
