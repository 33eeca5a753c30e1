"""Verdicts that cannot be fooled, end to end: the gate follows what runs, the cached reference knows its
environment and its own bytes, concurrent runs share one cache entry, and killed runs leave nothing half-new."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synctalk_parity.cli import app

runner = CliRunner()
ENV = {"COLUMNS": "200"}
SMALL_WEIGHTS: list[str] = []  # --unet/--audio-encoder of the small U-Net (tests/conftest.py): these tests check plumbing


@pytest.fixture(autouse=True)
def small_unet(small_weight_args):
    SMALL_WEIGHTS[:] = small_weight_args


@pytest.fixture
def cache(fresh_cache):
    """An empty cache of the test's own, holding the demo inputs and the demo weights only (tests/conftest.py)."""
    return fresh_cache


def _golden_args(golden, sanders, frames: int = 2) -> list[str]:
    weights = golden / "weights"
    return ["--dataset", str(sanders), "--audio", str(golden / "talk_hb_10s.wav"), "--unet", str(weights / "unet_328_ave.pth"),
            "--audio-encoder", str(weights / "audio_visual_encoder.pth"), "--frames", str(frames)]


def _demo_run(out: Path, *extra: str) -> list[str]:
    return ["run", "--backend", "torch", "--frames", "2", "--dump-every", "1", *SMALL_WEIGHTS, "--out", str(out), *extra]


# ----- the cached reference ---------------------------------------------------------------------


def test_the_reference_is_reused_then_made_again_when_its_environment_or_bytes_change(tmp_path, cache, monkeypatch):
    first = runner.invoke(app, _demo_run(tmp_path / "a"), env=ENV)
    assert first.exit_code == 0, first.output
    assert "reference: computed (fast: " in first.output
    again = runner.invoke(app, _demo_run(tmp_path / "a"), env=ENV)
    assert again.exit_code == 0 and "reference: cached result" in again.output
    entries = [p for p in (cache / "reference").iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1 and (entries[0] / "entry.json").is_file()

    # the oneDNN ISA cap is part of the key: another value computes another reference, and says why
    before = os.environ.get("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE")
    other = runner.invoke(app, _demo_run(tmp_path / "a"), env=ENV)
    assert other.exit_code == 0, other.output
    assert "reference: computed (fast: " in other.output
    assert f"ONEDNN_MAX_CPU_ISA {before} (now AVX512_CORE)" in other.output
    monkeypatch.undo()
    monkeypatch.setenv("SYNCTALK_PARITY_CACHE", str(cache))

    # so is the package version
    import synctalk_parity

    monkeypatch.setattr(synctalk_parity, "__version__", "0.0.0-test")
    bumped = runner.invoke(app, _demo_run(tmp_path / "a"), env=ENV)
    assert bumped.exit_code == 0 and "synctalk-parity 0.1.0 (now 0.0.0-test)" in bumped.output
    monkeypatch.undo()
    monkeypatch.setenv("SYNCTALK_PARITY_CACHE", str(cache))

    # a truncated file inside the entry (a frame's, which the assembled dump links): recomputed, with one line saying so
    png = entries[0] / "frames" / next(p.name for p in (entries[0] / "frames").iterdir() if p.name.startswith("00000-")) / "frame.output.png"
    png.write_bytes(png.read_bytes()[:100])
    repaired = runner.invoke(app, _demo_run(tmp_path / "a"), env=ENV)
    assert repaired.exit_code == 0, repaired.output
    assert "cached reference frame 0 is damaged (frame.output.png has 100 bytes" in repaired.output
    assert len(png.read_bytes()) > 100


def test_library_versions_are_part_of_the_key(cache, monkeypatch):
    from synctalk_parity import cache as cache_module
    from synctalk_parity.cache import REFERENCE_LIBRARIES, environment

    before = environment(("models", "reference"), REFERENCE_LIBRARIES)
    real = cache_module.library_versions
    monkeypatch.setattr(cache_module, "library_versions", lambda names: {**real(names), "numpy": "9.9.9"})
    after = environment(("models", "reference"), REFERENCE_LIBRARIES)
    assert before["libraries"]["numpy"] != after["libraries"]["numpy"]
    assert cache_module.key_of({"e": before}) != cache_module.key_of({"e": after})


def test_parity_cache_lists_and_clears(tmp_path, cache):
    assert runner.invoke(app, _demo_run(tmp_path / "a"), env=ENV).exit_code == 0
    listing = runner.invoke(app, ["cache"], env=ENV)
    assert listing.exit_code == 0
    assert "reference dump" in listing.output and "ok" in listing.output
    kept = runner.invoke(app, ["cache", "--clear", "--older-than", "30d"], env=ENV)
    assert kept.exit_code == 0 and "removed 0 entries" in kept.output
    cleared = runner.invoke(app, ["cache", "--clear"], env=ENV)
    assert cleared.exit_code == 0 and "removed" in cleared.output
    assert not [p for p in (cache / "reference").iterdir() if not p.name.startswith(".")]
    bad = runner.invoke(app, ["cache", "--clear", "--older-than", "soon"], env=ENV)
    assert bad.exit_code == 2 and "expected a number with a unit" in bad.output


def test_two_concurrent_runs_both_pass_and_leave_one_valid_entry(tmp_path, cache):
    env = {**os.environ, "SYNCTALK_PARITY_CACHE": str(cache)}
    # the demo inputs first, so the two runs race on the reference and nothing else
    assert runner.invoke(app, ["run", "--backend", "torch", "--frames", "1", "--no-compare", "--out", str(tmp_path / "warm")], env=ENV).exit_code == 0
    command = [sys.executable, "-m", "synctalk_parity.cli"]
    runs = [subprocess.Popen([*command, *_demo_run(tmp_path / f"run{i}")], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for i in range(2)]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    from synctalk_parity.cache import check_entry

    entries = [p for p in (cache / "reference").iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1 and check_entry(entries[0]) is None
    assert not list((cache / "reference").glob(".*.partial"))


# ----- outputs that belong to one run ------------------------------------------------------------


def test_a_failed_run_leaves_the_previous_complete_run(tmp_path, cache):
    out = tmp_path / "run"
    assert runner.invoke(app, _demo_run(out), env=ENV).exit_code == 0
    before = json.loads((out / "result.json").read_text())
    bad_gate = tmp_path / "gate.toml"
    bad_gate.write_text("[stages.nope]\n")
    failed = runner.invoke(app, [*_demo_run(out), "--gate", str(bad_gate)], env=ENV)
    assert failed.exit_code == 2
    assert json.loads((out / "result.json").read_text()) == before
    assert not list(tmp_path.glob(".run.*"))


def test_an_out_folder_with_other_files_needs_overwrite(tmp_path, cache):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    refused = runner.invoke(app, _demo_run(out, "--no-compare"), env=ENV)
    assert refused.exit_code == 2 and "holds files a run does not write (notes.txt)" in refused.output
    assert (out / "notes.txt").read_text() == "keep me"
    replaced = runner.invoke(app, _demo_run(out, "--no-compare", "--overwrite"), env=ENV)
    assert replaced.exit_code == 0 and not (out / "notes.txt").exists() and (out / "video.mp4").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_killing_a_run_leaves_the_previous_output_or_nothing(tmp_path, cache, sig):
    env = {**os.environ, "SYNCTALK_PARITY_CACHE": str(cache)}
    out = tmp_path / "run"
    command = [sys.executable, "-m", "synctalk_parity.cli", "run", "--backend", "torch", "--no-compare", "--out", str(out)]
    assert subprocess.run([*command, "--frames", "1"], env=env, capture_output=True, timeout=600).returncode == 0
    previous = sorted(p.relative_to(out) for p in out.rglob("*"))
    for attempt in range(2):  # once killed early (loading), once mid-frames
        child = subprocess.Popen([*command, "--frames", "40"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 300
        while time.time() < deadline and child.poll() is None:
            partial = list(tmp_path.glob(".run.*.partial/frames/*.png"))
            if (attempt == 0 and list(tmp_path.glob(".run.*.partial"))) or len(partial) >= 3:
                break
            time.sleep(0.05)
        assert child.poll() is None, "the run ended before it could be killed"
        child.send_signal(sig)
        _, stderr = child.communicate(timeout=120)
        assert child.returncode != 0
        if sig == signal.SIGINT:
            # 130, or the process ends itself by SIGINT after that line (a shell shows both as 130): CPython 3.11 does that
            # at exit when it took the KeyboardInterrupt for unhandled somewhere in code run from C before the command
            # caught it: with Python's own SIGINT handler, 3 runs in 29 killed 2.2-4.5 s after start (kill(self, SIGINT)
            # under strace, after "interrupted" was printed); with the CLI's (`arm_interrupts`), none in 21
            assert child.returncode in (130, -signal.SIGINT) and "interrupted" in stderr, (child.returncode, stderr[-2000:])
            assert not list(tmp_path.glob(".run.*.partial"))  # cleaned up on the way out
        assert sorted(p.relative_to(out) for p in out.rglob("*")) == previous  # the previous complete run, untouched
    if sig == signal.SIGKILL:  # what a killed process left beside --out goes with the next run
        assert list(tmp_path.glob(".run.*.partial"))
        assert subprocess.run([*command, "--frames", "1"], env=env, capture_output=True, timeout=600).returncode == 0
        assert not list(tmp_path.glob(".run.*.partial"))


# ----- the gate follows what runs ----------------------------------------------------------------


@pytest.fixture(scope="module")
def golden_runs_cache(tmp_path_factory, demo_weights_files):
    """One cache for the fp16 tests (as `fresh_cache`: the demo inputs and weights only): both runs compare against the
    same reference (the golden weights' first 2 frames), which the first computes and the other reuses (each computed
    it in a cache of its own)."""
    from ...conftest import seed_cache

    return seed_cache(tmp_path_factory.mktemp("golden-runs") / "cache", demo_weights_files)


@pytest.mark.slow
@pytest.mark.parametrize("fmt,backend", [("onnx", "onnxruntime"), ("coreml", "coreml-emulated")])
def test_an_fp16_export_is_judged_by_the_fp16_gate_without_being_told(tmp_path, golden_runs_cache, golden, sanders, fmt, backend,
                                                                      monkeypatch):
    monkeypatch.setenv("SYNCTALK_PARITY_CACHE", str(golden_runs_cache))
    weights = golden / "weights"
    exported = runner.invoke(app, ["export", "--format", fmt, "--precision", "fp16", "--unet", str(weights / "unet_328_ave.pth"),
                                   "--audio-encoder", str(weights / "audio_visual_encoder.pth"), "--out", str(tmp_path / "exports")], env=ENV)
    assert exported.exit_code == 0, exported.output
    models = tmp_path / "exports" / f"{fmt}-fp16"
    result = runner.invoke(app, ["run", "--backend", backend, "--models", str(models), *_golden_args(golden, sanders), "--dump-every", "1",
                                 "--out", str(tmp_path / "run")], env=ENV)
    assert result.exit_code == 0, result.output
    assert f"within the fp16 gate (the precision of {models} (its manifest.json))" in result.output
    data = json.loads((tmp_path / "run" / "result.json").read_text())
    assert data["comparison"]["gate"]["precision"] == "fp16" and data["backend"]["precision"] == "fp16"
    strict = runner.invoke(app, ["run", "--backend", backend, "--models", str(models), *_golden_args(golden, sanders), "--dump-every", "1",
                                 "--precision", "fp32", "--out", str(tmp_path / "strict")], env=ENV)
    assert strict.exit_code == 1 and "fp32 gate (--precision fp32 (the export runs fp16))" in strict.output
