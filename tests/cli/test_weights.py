"""`parity weights`: one-line errors for bad input (fast); the weights themselves in tests/reference/test_listening_weights.py."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from synctalk_parity.cli import app

from ..conftest import one_maker

ENV = {"COLUMNS": "120"}


def _invoke(*args: str):
    return CliRunner().invoke(app, ["weights", *args], env=ENV)


def _one_line_error(result, *phrases: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) <= 2, result.output
    for phrase in phrases:
        assert phrase in result.output, result.output


def test_a_missing_dataset_is_one_line(tmp_path):
    _one_line_error(_invoke("--dataset", str(tmp_path / "nowhere"), "--audio", str(tmp_path / "a.wav"), "--out", str(tmp_path / "w")),
                    "nowhere: dataset not found")


def test_a_missing_audio_file_is_one_line(tmp_path, sanders):
    _one_line_error(_invoke("--dataset", str(sanders), "--audio", str(tmp_path / "a.wav"), "--out", str(tmp_path / "w")), "a.wav: audio file not found")


def test_silence_cannot_calibrate_the_mouth(tmp_path, sanders):
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(32000, np.float32), 16000, subtype="PCM_16")
    _one_line_error(_invoke("--dataset", str(sanders), "--audio", str(silent), "--out", str(tmp_path / "w")),
                    "silent.wav: no speech to calibrate the mouth on")
    assert not (tmp_path / "w").exists()  # nothing half-written


def test_an_out_folder_holding_other_files_is_refused(tmp_path, sanders):
    out = tmp_path / "w"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    _one_line_error(_invoke("--dataset", str(sanders), "--audio", str(sanders / "talk_hb.wav"), "--out", str(out)), "holds other files")
    assert (out / "mine.txt").read_text() == "keep me"


def test_landmarks_without_synctalk_lips_are_refused_naming_the_file(tmp_path, sanders):
    dataset = tmp_path / "dataset"
    for sub in ("full_body_img", "landmarks"):
        (dataset / sub).mkdir(parents=True)
    for i in range(2):
        shutil.copyfile(sanders / "full_body_img" / f"{i}.jpg", dataset / "full_body_img" / f"{i}.jpg")
        points = np.loadtxt(sanders / "landmarks" / f"{i}.lms")
        points[90:110] = points[52]  # every lip point on the nose
        np.savetxt(dataset / "landmarks" / f"{i}.lms", points, fmt="%.3f")
    _one_line_error(_invoke("--dataset", str(dataset), "--audio", str(sanders / "talk_hb.wav"), "--out", str(tmp_path / "w")),
                    "0.jpg's landmarks (template 0): the lip points (90-109")


@pytest.mark.slow
def test_weights_are_written_as_original_layout_checkpoints(tmp_path, sanders, session_cache):
    from synctalk_parity.models.checkpoints import load_audio_encoder, load_unet

    out = tmp_path / "W"
    with one_maker(session_cache, "sanders-mini listening weights"):  # the listening weights' tests make the same ones
        result = _invoke("--dataset", str(sanders), "--audio", str(sanders / "talk_hb.wav"), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "not a SyncTalk model" in result.output and "parity run --dataset" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["audio_visual_encoder.pth", "unet_328_ave.pth", "weights.json"]
    load_unet(out / "unet_328_ave.pth"), load_audio_encoder(out / "audio_visual_encoder.pth")  # weights_only, strict
    again = _invoke("--dataset", str(sanders), "--audio", str(sanders / "talk_hb.wav"), "--out", str(out))
    assert again.exit_code == 0 and "from the cache" in again.output
