"""`parity bench --calibrate-streams`: every candidate count timed as a real `parity run`, the fastest kept for this
machine, and `parity run` following it (tiny settings; which count wins is the machine's business, not asserted)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from synctalk_parity.backends.calibration import MEASURED_BY, Calibration, calibrated_streams, cpu_count, stream_candidates
from synctalk_parity.cache import CACHE_ENV
from synctalk_parity.cli import app

runner = CliRunner()
ENV = {"COLUMNS": "200"}


@pytest.fixture
def own_cache(tmp_path, seeded_session_cache, monkeypatch):
    """A cache of this test's own, its demo inputs and weights linked from the seeded one: a calibration written here
    reaches no other test (a run elsewhere would follow it)."""
    folder = tmp_path / "cache"
    folder.mkdir()
    for entry in seeded_session_cache.iterdir():
        if entry.name != "calibration":
            (folder / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    monkeypatch.setenv(CACHE_ENV, str(folder))
    return folder


def test_the_fastest_count_is_kept_and_parity_run_follows_it(tmp_path, own_cache, small_weight_args):
    result = runner.invoke(app, ["bench", "--calibrate-streams", "--frames", "12", "--repeats", "1", *small_weight_args], env=ENV)
    assert result.exit_code == 0, result.output
    found = calibrated_streams()
    assert isinstance(found, Calibration) and found.path.parent == own_cache / "calibration"
    assert sorted(found.fps) == stream_candidates(cpu_count()) and found.frames == 12
    assert all(len(readings) == 1 and readings[0] > 0 for readings in found.fps.values())
    assert found.streams == max(found.medians, key=found.medians.__getitem__)
    assert found.networks == small_weight_args[1]  # the U-Net it measured, recorded
    assert f"kept {found.streams} in {found.path}" in result.output and "U-Net calls at once" in result.output
    for fps in found.medians.values():  # the table shows each candidate's figure
        assert f"{fps:.2f}" in result.output

    out = tmp_path / "run"
    run = runner.invoke(app, ["run", "--backend", "onnxruntime", "--no-compare", "--frames", "6", "--out", str(out), *small_weight_args], env=ENV)
    assert run.exit_code == 0, run.output
    describe = json.loads((out / "result.json").read_text())["backend"]["describe"]
    assert describe["streams"] == str(found.streams) and describe["streams_source"].startswith(MEASURED_BY)
    assert "`parity bench --calibrate-streams` measured fastest here" in run.output
    streams = runner.invoke(app, ["run", "--backend", "onnxruntime", "--no-compare", "--frames", "6", "--streams", "1",
                                  "--out", str(tmp_path / "asked"), *small_weight_args], env=ENV)
    assert streams.exit_code == 0, streams.output
    describe = json.loads((tmp_path / "asked" / "result.json").read_text())["backend"]["describe"]
    assert describe["streams"] == "1" and describe["streams_source"] == "asked for (--streams)"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "torch"], "--calibrate-streams measures the onnxruntime backend's U-Net calls at once"),
        (["--streams", "2"], "--calibrate-streams measures every stream count itself; leave --streams out"),
        (["--provider", "cuda"], "--calibrate-streams is for the CPU provider"),
        (["--batch", "4"], "--calibrate-streams measures at batch 1"),
        (["--memory"], "run it without --port, --memory and --verdict"),
        (["--frames", "2"], "--frames of at least 3"),
        (["--out", "somewhere"], "writes no result.json; leave out --out, --report and --device"),
        (["--report", "md"], "writes no result.json; leave out --out, --report and --device"),
    ],
)
def test_what_a_calibration_cannot_take_is_refused_in_one_line(own_cache, args, message):
    result = runner.invoke(app, ["bench", "--calibrate-streams", *args], env=ENV)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert calibrated_streams() is None


def test_a_second_calibration_while_one_measures_is_refused_in_one_line(own_cache):
    """Two at once would time each other: the second is refused and keeps nothing."""
    from synctalk_parity.backends.calibration import measuring

    with measuring():
        result = runner.invoke(app, ["bench", "--calibrate-streams", "--frames", "12", "--repeats", "1"], env=ENV)
    assert result.exit_code == 2, result.output
    assert "another `parity bench --calibrate-streams` is measuring with this cache" in result.output and "Traceback" not in result.output
    assert calibrated_streams() is None
