"""`parity run`: the built-in demo out of the box, real use on a SyncTalk dataset, and clean failures."""

from __future__ import annotations

import json
import subprocess

import cv2
import imageio_ffmpeg
import numpy as np
import pytest
from typer.testing import CliRunner

from synctalk_parity.harness.cli import app

runner = CliRunner()
ENV = {"COLUMNS": "120"}


def _streams(video) -> str:
    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(video)], capture_output=True, text=True)
    return probe.stderr


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SYNCTALK_PARITY_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"], env=ENV)
    assert result.exit_code == 0
    assert "run" in result.output and "export" in result.output and "doctor" in result.output
    run_help = runner.invoke(app, ["run", "--help"], env=ENV)
    assert "--dataset" in run_help.output and "--audio-encoder" in run_help.output and "--start-frame" in run_help.output


def test_demo_runs_out_of_the_box(tmp_path):
    out = tmp_path / "demo"
    result = runner.invoke(app, ["run", "--backend", "torch", "--frames", "3", "--out", str(out)], env=ENV)
    assert result.exit_code == 0, result.output
    assert "Built-in demo" in result.output and "wrote 3 frames" in result.output
    frames = sorted((out / "frames").glob("*.png"))
    assert [f.name for f in frames] == ["00000.png", "00001.png", "00002.png"]
    first = cv2.imread(str(frames[0]))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["demo"] is True and summary["frames_written"] == 3
    assert first.shape == (summary["frame_size"][1], summary["frame_size"][0], 3)
    streams = _streams(out / "video.mp4")
    assert "Video: h264" in streams and "Audio: aac" in streams
    assert not list(out.glob("*.partial*")) and not (out / "frames.partial").exists()


def test_real_dataset_run_makes_the_original_frames(tmp_path, golden, sanders):
    """Real use: sanders-mini + the golden weights; frames 0 and 1 equal the original script's."""
    out = tmp_path / "real"
    weights = golden / "weights"
    args = [
        "run", "--backend", "torch", "--dataset", str(sanders), "--audio", str(golden / "talk_hb_10s.wav"),
        "--unet", str(weights / "unet_328_ave.pth"), "--audio-encoder", str(weights / "audio_visual_encoder.pth"),
        "--frames", "2", "--out", str(out),
    ]
    result = runner.invoke(app, args, env=ENV)
    assert result.exit_code == 0, result.output
    assert "2 of 249" in result.output
    for i in (0, 1):
        ours = cv2.imread(str(out / "frames" / f"{i:05d}.png")).astype(np.int16)
        theirs = cv2.imread(str(golden / "original" / "frames" / f"{i:05d}.png")).astype(np.int16)
        diff = np.abs(ours - theirs)
        assert (diff == 0).mean() >= 0.999 and diff.max() <= 1


def test_dataset_without_audio_is_a_usage_error(tmp_path, sanders):
    result = runner.invoke(app, ["run", "--dataset", str(sanders), "--out", str(tmp_path)], env=ENV)
    assert result.exit_code == 2
    assert "pass both --dataset and --audio" in result.output
    assert "Traceback" not in result.output


def test_bad_dataset_fails_in_one_line_and_writes_nothing(tmp_path, golden):
    bad = tmp_path / "bad"
    (bad / "full_body_img").mkdir(parents=True)
    (bad / "landmarks").mkdir()
    cv2.imwrite(str(bad / "full_body_img" / "0.jpg"), np.zeros((64, 64, 3), np.uint8))
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", "--dataset", str(bad), "--audio", str(golden / "talk_hb_10s.wav"), "--out", str(out)], env=ENV)
    assert result.exit_code == 2
    assert "0.lms: missing" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (out / "frames").exists() and not (out / "video.mp4").exists()


def test_unknown_backend_is_refused(tmp_path):
    result = runner.invoke(app, ["run", "--backend", "tensorflow", "--out", str(tmp_path)], env=ENV)
    assert result.exit_code == 2 and "backend" in result.output
