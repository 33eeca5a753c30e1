"""`parity run`: the built-in demo out of the box, real use on a SyncTalk dataset, and clean failures."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import pytest
from typer.testing import CliRunner

from synctalk_parity.cli import app

runner = CliRunner()
ENV = {"COLUMNS": "120"}


def _streams(video) -> str:
    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(video)], capture_output=True, text=True)
    return probe.stderr


@pytest.fixture(autouse=True)
def isolated_cache(seeded_session_cache, monkeypatch):
    monkeypatch.setenv("SYNCTALK_PARITY_CACHE", str(seeded_session_cache))


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
    assert (out / "report.html").is_file() and f"open the report: {(out / 'report.html').resolve().as_uri()}" in result.output
    frames = sorted((out / "frames").glob("*.png"))
    assert [f.name for f in frames] == ["00000.png", "00001.png", "00002.png"]
    first = cv2.imread(str(frames[0]))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["demo"] is True and summary["frames_written"] == 3
    assert first.shape == (summary["frame_size"][1], summary["frame_size"][0], 3)
    streams = _streams(out / "video.mp4")
    assert "Video: h264" in streams and "Audio: aac" in streams
    assert not list(out.glob("*.partial*")) and not (out / "frames.partial").exists()


@pytest.mark.networks  # the full-size golden weights through a whole run: `make test` runs it, `make test-fast` does not
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


# ----- any backend, the stage dump and the comparison with the cached reference -------------------

SMALL = ["--frames", "3", "--dump-every", "2"]  # heavy stages of frames 0 and 2


def test_an_unavailable_backend_says_why_in_one_line(tmp_path):
    result = runner.invoke(app, ["run", "--backend", "tensorrt", "--out", str(tmp_path / "out")], env=ENV)
    assert result.exit_code == 2
    assert "backend 'tensorrt' is not available: TensorRT" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_streams_are_for_onnxruntime(tmp_path):
    result = runner.invoke(app, ["run", "--backend", "torch", "--streams", "2", "--out", str(tmp_path / "out")], env=ENV)
    assert result.exit_code == 2 and "--streams sets how many U-Net calls ONNX Runtime runs at once" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dump", "none"], "--dump none leaves nothing to compare"),
        (["--dump", "frame.ouptut"], "did you mean 'frame.output'"),
        (["--models", "exports/onnx-fp32"], "the reference needs the PyTorch weights"),
        (["--batch", "0"], "--batch must be at least 1"),
        (["--dump-every", "0"], "--dump-every must be at least 1"),
        (["--precision", "int8"], "--precision: unknown precision 'int8'; use fp32 or fp16"),
        (["--gate", "missing.toml"], "missing.toml: gate file not found"),
        (["--report", "pdf"], "unknown report format 'pdf'"),
        (["--streams", "0"], "--streams must be at least 1"),
    ],
)
def test_bad_options_are_refused_before_any_work(tmp_path, args, message):
    result = runner.invoke(app, ["run", "--backend", "onnxruntime", "--out", str(tmp_path / "out"), *args], env=ENV)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def demo_onnx_export(seeded_session_cache) -> Path:
    """The cache entry (`exports/<key>/`) of the demo weights' ONNX export, made as `parity run` makes it (checked on
    the demo's inputs) in the cache this module's other onnxruntime runs use, so it is made once for the module."""
    from synctalk_parity.backends.base import ModelSource
    from synctalk_parity.backends.exports import cached_export
    from synctalk_parity.harness.inputs import demo_check_inputs
    from synctalk_parity.reference.demo_weights import demo_weights

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SYNCTALK_PARITY_CACHE", str(seeded_session_cache))
        return cached_export(ModelSource.from_paths(*demo_weights(), check_inputs=demo_check_inputs), "onnx").parent


@pytest.mark.slow
def test_onnxruntime_run_writes_the_result_contract_and_caches_the_reference(tmp_path, fresh_cache, demo_onnx_export):
    # its first run computes the reference: a cache without one (fresh_cache), given the demo weights' ONNX export the
    # module's other onnxruntime runs use (exporting the full-size U-Net again cost more than the runs themselves)
    shutil.copytree(demo_onnx_export, fresh_cache / "exports" / demo_onnx_export.name)
    first = runner.invoke(app, ["run", "--backend", "onnxruntime", *SMALL, "--out", str(tmp_path / "a"), "--report", "md,json"], env=ENV)
    assert first.exit_code == 0, first.output
    assert "reference: computed (fast: PyTorch, channels-last" in first.output and "PASS" in first.output
    out = tmp_path / "a"
    document = json.loads((out / "result.json").read_text())
    assert document["schema"] == "synctalk-parity/result" and document["command"] == "run"
    assert document["backend"]["name"] == "onnxruntime" and document["backend"]["describe"]["provider"] == "CPUExecutionProvider"
    streams = int(document["backend"]["describe"]["streams"])  # U-Net calls at once: said where the speed is
    assert (f"batch 1, {streams} U-Net calls at once on onnxruntime" in first.output) == (streams > 1)
    assert document["inputs"]["demo"] is True and document["inputs"]["frames"] == 3
    comparison = document["comparison"]
    assert comparison["passed"] is True and comparison["first_divergent_stage"] is None and comparison["candidate"] == "dump"
    assert [s["stage"] for s in comparison["stages"]][-1] == "frame.output"
    assert (out / comparison["worst_frame"]["candidate_png"]).is_file()
    assert document["timing"]["frames"] == 3 and document["timing"]["fps"] > 0
    manifest = json.loads((out / "dump" / "manifest.json").read_text())
    assert manifest["producer"]["backend"] == "onnxruntime" and manifest["frame_count"] == 3
    assert manifest["stages"]["frame.crop_box"]["frames"] == [0, 1, 2]
    assert manifest["stages"]["frame.output"]["frames"] == [0, 2]
    assert sorted(p.name for p in (out / "frames").iterdir()) == ["00000.png", "00001.png", "00002.png"]
    assert (out / "report.md").is_file() and (out / "report.json").is_file()
    assert "PASS" in (out / "summary.md").read_text()
    assert not list(out.glob("*.partial*"))

    reference = document["reference"]  # how the reference was made: the faster execution, heavy stages of the dumped frames only
    assert (reference["execution"], reference["cached"], reference["frames_computed"], reference["frames_cached"]) == ("fast", False, 2, 0)
    assert "heavy stages of 2 frames computed now, 0 cached" in first.output

    second = runner.invoke(app, ["run", "--backend", "onnxruntime", *SMALL, "--out", str(tmp_path / "b")], env=ENV)
    assert second.exit_code == 0, second.output
    assert "reference: cached result (fast: " in second.output
    document = json.loads((tmp_path / "b" / "result.json").read_text())
    assert document["comparison"]["reference"] == comparison["reference"]
    assert (document["reference"]["execution"], document["reference"]["cached"], document["reference"]["frames_computed"]) == ("fast", True, 0)

    exact = runner.invoke(app, ["run", "--backend", "onnxruntime", *SMALL, "--reference-exact", "--out", str(tmp_path / "c")], env=ENV)
    assert exact.exit_code == 0, exact.output
    document = json.loads((tmp_path / "c" / "result.json").read_text())  # plain eager: a reference of its own, recorded as such
    assert (document["reference"]["execution"], document["reference"]["cached"]) == ("exact", False)
    assert document["reference"]["description"] == "eager PyTorch, NCHW" and document["comparison"]["passed"] is True
    assert document["comparison"]["reference"] != comparison["reference"]


@pytest.mark.slow
def test_a_failed_gate_exits_1_and_names_the_first_divergent_stage(tmp_path):
    gate = tmp_path / "strict.toml"
    gate.write_text('[stages."frame.unet_output"]\nmax_abs = 0.0\n')  # onnxruntime differs from torch by float32 ulps
    result = runner.invoke(app, ["run", "--backend", "onnxruntime", *SMALL, "--gate", str(gate), "--out", str(tmp_path / "run")], env=ENV)
    assert result.exit_code == 1, result.output
    assert "gate failed: first divergent stage frame.unet_output" in result.output
    document = json.loads((tmp_path / "run" / "result.json").read_text())
    assert document["comparison"]["passed"] is False and document["comparison"]["gate"]["file"] == str(gate)
    assert "FAIL" in (tmp_path / "run" / "summary.md").read_text()


@pytest.mark.slow
def test_no_compare_skips_the_reference(tmp_path):
    result = runner.invoke(app, ["run", "--backend", "onnxruntime", "--frames", "2", "--batch", "1", "--dump", "none",
                                 "--no-compare", "--out", str(tmp_path / "run")], env=ENV)
    assert result.exit_code == 0, result.output
    assert "comparison: skipped" in result.output
    document = json.loads((tmp_path / "run" / "result.json").read_text())
    assert document["comparison"] is None and document["timing"]["frames"] == 2
    assert not (tmp_path / "run" / "dump").exists()


@pytest.mark.slow
def test_an_interrupted_run_leaves_nothing_that_looks_complete(tmp_path):
    from synctalk_parity.harness.pipeline.run import RunRequest, run

    def interrupt(done, total):
        if done == 3:
            raise KeyboardInterrupt

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run(RunRequest(out, "onnxruntime", frames=8, batch=2, dump_every=1, compare=False), progress=interrupt)
    assert not out.exists() and not list(tmp_path.glob(".run.*"))  # no frames/, video.mp4, dump/, result.json, nor a .partial


def test_no_save_frames_writes_video_and_dump_but_no_pngs_on_the_default_backend(tmp_path, small_weight_args):
    out = tmp_path / "video-only"  # plumbing: the small U-Net, exported to ONNX in a second, not the demo weights
    result = runner.invoke(
        app, ["run", "--frames", "2", "--no-compare", "--no-save-frames", *small_weight_args, "--out", str(out)], env=ENV
    )
    assert result.exit_code == 0, result.output
    assert not (out / "frames").exists() and not (out / "frames.partial").exists()
    assert "Video: h264" in _streams(out / "video.mp4")
    assert (out / "dump" / "manifest.json").is_file()
    # neither --backend nor --batch: the best available backend, and its preferred batch (1 on CPU)
    assert "backend: onnxruntime, the best available here" in result.output
    assert re.search(r"batch 1(, \d+ U-Net calls at once)? on onnxruntime", result.output)


def test_a_dumped_frame_output_is_the_frames_png_linked_not_encoded_twice(tmp_path, small_weight_args):
    """A frame the dump keeps whole has its `frame.output` stored once: the dump's PNG is the one in frames/ (the same
    bytes, hard-linked where the file system allows), and the dump still reads it back as the frame."""
    import os

    from synctalk_parity.harness.verdict.dump import Dump

    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "--frames", "3", "--dump-every", "2", "--no-compare", *small_weight_args, "--out", str(out)], env=ENV)
    assert result.exit_code == 0, result.output
    dump = Dump.open(out / "dump")
    assert dump.frames("frame.output") == [0, 2]
    for index in (0, 2):
        png, dumped = out / "frames" / f"{index:05d}.png", out / "dump" / "frame.output" / f"{index:05d}.png"
        assert os.path.samefile(png, dumped) and png.stat().st_nlink == 2
        assert np.array_equal(dump.frame("frame.output", index), cv2.imread(str(png)))
    assert "frame.pasted_region" in dump.stage_names and dump.frames("frame.pasted_region") == [0, 2]


@pytest.mark.slow
def test_a_run_on_cached_exports_and_audio_imports_neither_torch_nor_librosa(tmp_path, golden, sanders, fresh_cache, golden_export):
    """Start-up: with the export and the audio's mel cached, `parity run` needs neither torch (the export is found
    by the checkpoints' sha256) nor librosa (the mel comes from the cache) — the two imports that took ~3 of the
    6-7 s before the first frame. The second run's mel is the first run's, byte for byte.

    The cache is one of the test's own holding the golden weights' ONNX export the session makes once
    (`golden_export`, tests/conftest.py; the cache keys an export by the checkpoints, not by its check's inputs), so
    the first run caches the mel without exporting the full-size U-Net again."""
    import os
    import sys

    entry = golden_export("onnx", "fp32").parent
    shutil.copytree(entry, fresh_cache / "exports" / entry.name)
    weights = golden / "weights"
    args = ["-X", "importtime", "-m", "synctalk_parity.cli", "run", "--backend", "onnxruntime", "--no-compare",
            "--dataset", str(sanders), "--audio", str(golden / "talk_hb_10s.wav"), "--unet", str(weights / "unet_328_ave.pth"),
            "--audio-encoder", str(weights / "audio_visual_encoder.pth"), "--frames", "2"]
    env = {**os.environ, "NO_COLOR": "1"}
    first = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "a")], capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    second = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "b")], capture_output=True, text=True, env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in second.stderr.splitlines() if line.startswith("import time:")}
    assert "onnxruntime" in imported  # the measurement sees imports at all
    assert not {"torch", "librosa.core.spectrum", "librosa.filters", "scipy.signal", "numba"} & imported
    mels = [np.load(tmp_path / run / "dump" / "audio.mel.npy") for run in ("a", "b")]
    assert mels[0].dtype == np.float64 and np.array_equal(mels[0], mels[1])
