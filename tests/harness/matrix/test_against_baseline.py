"""`parity matrix --baseline`, end to end (the small U-Net, whose fp16 export differs from PyTorch by ~1.3e-5 at
the U-Net output, under a gate of 1e-4 for that stage): an unchanged rerun flags nothing; an fp16 export whose U-Net
error doubled, still inside its absolute gate, is a regression of that cell, stage and figure; the matrix file can
allow it with a reason."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from synctalk_parity.cli import app
from synctalk_parity.harness.matrix.result import read_matrix

from .conftest import offset_unet_output, onnx_export, write_matrix_file

pytestmark = pytest.mark.slow
ENV = {"COLUMNS": "160"}
CELL = "small/onnxruntime-cpu/fp16"
MATRIX = """
name = "{name}"
frames = 8
[speed]
frames = 2
repeats = 2
[bands]
# speed is compared but never flagged here (tests/harness/matrix/test_baseline.py tests its flags): under two test
# workers the same export's 2-frame speed read 1.72x apart between two runs (22-36 against 36-63 frames/s)
speed_floor = 2.0
[gates]
fp16 = "gate-fp16.toml"
[[avatar]]
name = "small"               # the demo's clip with the small U-Net
unet = "{unet}"
audio_encoder = "{encoder}"
[[backend]]
backend = "onnxruntime"
precisions = ["fp16"]
"""
GATE = """precision = "fp16"
[stages."frame.unet_output"]
max_abs = 1e-4               # tight (the built-in fp16 gate is 1e-2): a change of the small U-Net's error is visible
"""


def _invoke(*args):
    return CliRunner().invoke(app, ["matrix", *map(str, args)], env=ENV)


@pytest.fixture(scope="module")
def releases(tmp_path_factory, small_weights):
    root = tmp_path_factory.mktemp("matrix-baseline")
    (root / "gate-fp16.toml").write_text(GATE)
    text = MATRIX.replace("{unet}", str(small_weights[0])).replace("{encoder}", str(small_weights[1]))
    matrix = write_matrix_file(root / "matrix.toml", text.format(name="release 1"))
    first = _invoke(matrix, "--out", root / "release-1")
    assert first.exit_code == 0, first.output
    unchanged = _invoke(write_matrix_file(root / "matrix-2.toml", text.format(name="release 2")), "--out", root / "release-2",
                        "--baseline", root / "release-1")
    error = read_matrix(root / "release-1").cell(CELL).stage("frame.unet_output").max_abs
    # the same export, its U-Net adding twice its error to an 8x8 patch of every output: the error there doubles
    perturbed = offset_unet_output(onnx_export(*small_weights, "fp16"), root / "onnx-fp16-changed", 2 * error, box=(150, 158, 150, 158))
    changed_file = write_matrix_file(root / "matrix-3.toml", text.format(name="release 3") + f'[[cell]]\nid = "{CELL}"\nmodels = "{perturbed}"\n')
    changed = _invoke(changed_file, "--out", root / "release-3", "--baseline", root / "release-1")
    return root, error, unchanged, changed, changed_file


def test_an_unchanged_rerun_flags_nothing(releases):
    root, _, unchanged, _, _ = releases
    assert unchanged.exit_code == 0, unchanged.output
    comparison = read_matrix(root / "release-2").baseline
    assert comparison is not None and comparison.regressions == [] and comparison.added == comparison.removed == []
    change = comparison.change(CELL)
    assert change is not None and change.compared and change.drifts == [] and change.stages == []
    assert "since release 1: nothing changed beyond its noise band" in unchanged.output


def test_unet_error_doubled_inside_the_gate_is_flagged_as_a_regression(releases):
    root, error, _, changed, _ = releases
    assert changed.exit_code == 1, changed.output
    matrix = read_matrix(root / "release-3")
    cell = matrix.cell(CELL)
    assert cell is not None and cell.status == "passed"  # inside the absolute gate
    now = cell.stage("frame.unet_output").max_abs
    assert 1.6 * error < now < 1e-4
    assert matrix.baseline is not None and matrix.baseline.regressions == [CELL]
    drift = next(d for d in matrix.baseline.change(CELL).drifts if (d.stage, d.metric) == ("frame.unet_output", "max_abs"))
    assert drift.regression and drift.baseline == error and drift.now == now
    assert f"{CELL}: regression since the baseline: " in changed.output and "frame.unet_output max_abs" in changed.output
    assert "REGRESSION" in (root / "release-3" / "report.md").read_text().split("## Grid")[0]  # what changed comes first


def test_the_matrix_file_can_allow_the_change_with_a_reason(releases):
    root, _, _, _, changed_file = releases
    changed_file.write_text(changed_file.read_text() + '[[allow]]\ncell = "small/*/fp16"\nreason = "U-Net retrained (reviewed)"\n')
    allowed = _invoke(changed_file, "--out", root / "release-3", "--baseline", root / "release-1")  # the cell is reused
    assert allowed.exit_code == 0, allowed.output
    matrix = read_matrix(root / "release-3")
    assert matrix.cell(CELL).reused and matrix.baseline.regressions == []
    drift = next(d for d in matrix.baseline.change(CELL).drifts if (d.stage, d.metric) == ("frame.unet_output", "max_abs"))
    assert drift.worse and drift.allowed == "U-Net retrained (reviewed)"
    assert "allowed: U-Net retrained (reviewed)" in (root / "release-3" / "report.md").read_text()
