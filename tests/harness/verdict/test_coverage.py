"""Coverage is part of the gate: candidates that leave stages or frames out fail, each with its reason named;
a gate file that says what a port provides turns the rest into "not provided", never into passes."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from synctalk_parity.cli import app
from synctalk_parity.harness.verdict.compare import compare_dumps
from synctalk_parity.harness.verdict.gates import load_gate
from synctalk_parity.harness.verdict.result import write_result
from synctalk_parity.harness.verdict.types import Backend
from synctalk_parity.reports.junit import render as render_junit
from synctalk_parity.reports.view import load_runs

from ..conftest import synthetic_stages, write_dump

runner = CliRunner()


def _full(tmp_path):
    clip, rows = synthetic_stages()
    return clip, rows, write_dump(tmp_path / "reference", clip, rows, frame_count=5)


def _light_rows(count: int) -> list[dict]:
    rng = np.random.default_rng(1)
    return [{"index": i, "frame.crop_box": np.array([4, 4, 20, 20], dtype=np.int64),
             "frame.output": rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)} for i in range(count)]


def test_nothing_but_one_clip_stage_fails(tmp_path):
    clip, _, reference = _full(tmp_path)
    candidate = write_dump(tmp_path / "cand", {"audio.pcm": clip["audio.pcm"]}, [], frame_count=5, stages="audio.pcm")
    comparison = compare_dumps(reference, candidate, load_gate(None))
    assert not comparison and comparison.stage("audio.pcm").passed
    assert len(comparison.missing_stages) == 12
    assert comparison.coverage == "1 of 13 stages, 0 of 3 frames compared"
    assert "frame.output: missing from the candidate" in comparison.stage("frame.output").failure


def test_only_frame_0_fails_naming_the_frames(tmp_path):
    clip, rows, reference = _full(tmp_path)
    candidate = write_dump(tmp_path / "cand", clip, rows[:1], frame_count=5)
    comparison = compare_dumps(reference, candidate, load_gate(None))
    assert not comparison and comparison.first_divergent_stage == "frame.template_index"
    assert "frame.output: 2 of 3 frames missing from the candidate (1..2)" in comparison.stage("frame.output").failure
    assert comparison.coverage == "13 of 13 stages, 1 of 3 frames compared"


def test_every_stage_but_the_output_frames_fails(tmp_path):
    clip, rows, reference = _full(tmp_path)
    stages = ",".join(name for name in (*clip, *rows[0]) if name not in ("index", "frame.output"))
    candidate = write_dump(tmp_path / "cand", clip, rows, frame_count=5, stages=stages)
    comparison = compare_dumps(reference, candidate, load_gate(None))
    assert not comparison and comparison.missing_stages == ["frame.output"]
    assert comparison.first_divergent_stage is None  # nothing compared diverges: it is coverage that fails
    assert all(stage.passed for stage in comparison.stages if stage.status == "compared")


def test_right_stages_but_10_of_100_frames_fails(tmp_path):
    rows = _light_rows(100)
    reference = write_dump(tmp_path / "reference", None, rows, frame_count=100, stages="frame.crop_box,frame.output")
    candidate = write_dump(tmp_path / "cand", None, rows[:10], frame_count=100, stages="frame.crop_box,frame.output")
    comparison = compare_dumps(reference, candidate, load_gate(None))
    assert not comparison
    assert comparison.stage("frame.output").frames_missing == 90
    assert "frame.output: 90 of 100 frames missing from the candidate (10..99)" in comparison.stage("frame.output").failure
    assert comparison.coverage == "2 of 2 stages, 10 of 100 frames compared"


def test_the_wrong_frame_count_fails(tmp_path):
    clip, rows, reference = _full(tmp_path)
    candidate = write_dump(tmp_path / "cand", clip, rows, frame_count=4)
    comparison = compare_dumps(reference, candidate, load_gate(None))
    assert not comparison and all(stage.passed for stage in comparison.stages)
    assert "frame count: the candidate makes 4 output frames, the reference 5" in comparison.problems
    assert [d.name for d in comparison.diagnoses] == ["wrong_frame_count"]


def test_a_gate_that_names_what_a_port_provides(tmp_path):
    clip, rows, reference = _full(tmp_path)
    candidate = write_dump(tmp_path / "cand", clip, rows, frame_count=5, stages="audio.features,frame.output")
    gate = tmp_path / "port.toml"
    gate.write_text('provides = ["frame.output", "audio.features"]\n')
    comparison = compare_dumps(reference, candidate, load_gate(gate))
    assert comparison and comparison.gate.provides == ("audio.features", "frame.output")
    assert {stage.status for stage in comparison.stages if stage.stage not in comparison.gate.provides} == {"not provided"}
    assert comparison.coverage.startswith("2 of 2 stages, 3 of 3 frames compared; not provided (the gate allows it): audio.pcm")
    # what it provides must still be all there: leave a frame out and it fails
    short = write_dump(tmp_path / "short", clip, rows[1:], frame_count=5, stages="audio.features,frame.output")
    assert not compare_dumps(reference, short, load_gate(gate))
    # and a stage it says it provides but lacks is missing
    lacking = write_dump(tmp_path / "lacking", clip, rows, frame_count=5, stages="audio.features")
    assert compare_dumps(reference, lacking, load_gate(gate)).missing_stages == ["frame.output"]


def test_a_gate_cannot_require_what_the_reference_lacks(tmp_path):
    clip, rows = synthetic_stages()
    reference = write_dump(tmp_path / "reference", clip, rows, frame_count=5, stages="audio.features")
    gate = tmp_path / "port.toml"
    gate.write_text('provides = ["frame.output"]\n')
    with pytest.raises(Exception, match="provides frame.output, which the reference dump .* does not hold"):
        compare_dumps(reference, reference, load_gate(gate))


@pytest.mark.parametrize(("text", "message"), [
    ('provides = "frame.output"\n', "'provides' must be a non-empty list of stage names"),
    ('provides = ["frame.outptu"]\n', "provides: unknown stage 'frame.outptu'; did you mean 'frame.output'"),
])
def test_bad_provides_is_refused_in_one_line(tmp_path, text, message):
    gate = tmp_path / "gate.toml"
    gate.write_text(text)
    with pytest.raises(Exception, match=message):
        load_gate(gate)


def test_reports_show_missing_as_failures_and_not_provided_as_skipped(tmp_path):
    clip, rows, reference = _full(tmp_path)
    candidate = write_dump(tmp_path / "cand", clip, rows, frame_count=5, stages="audio.features,frame.output")
    gate = tmp_path / "port.toml"
    gate.write_text('provides = ["audio.features", "frame.output", "frame.mouth"]\n')
    comparison = compare_dumps(reference, candidate, load_gate(gate))
    run = tmp_path / "run"
    run.mkdir()
    write_result(run, "compare", backend=Backend("go-port", "fp32"), comparison=comparison)
    xml = render_junit(load_runs([run]))
    assert 'name="frame.mouth"' in xml and "frame.mouth: missing from the candidate" in xml
    assert xml.count("<skipped") == 10 and 'failures="1"' in xml  # 10 not provided, frame.mouth missing
    result = runner.invoke(app, ["report", str(run), "--format", "md"])
    assert result.exit_code == 0, result.output
    text = (run / "report.md").read_text()
    assert "MISSING" in text and "not provided" in text and "2 of 3 stages, 3 of 3 frames compared" in text
