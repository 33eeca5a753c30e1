"""Against the last release: figures beyond their noise bands, stage verdicts, speed beyond the spread of the
repeats, cells added or removed, allowances with a reason; and matrix.json round-trips through its schema."""

from __future__ import annotations

import json
from dataclasses import replace

from synctalk_parity.harness.matrix.baseline import compare_cells, compare_matrices, environment_changes, metric_band
from synctalk_parity.harness.matrix.result import read_matrix, write_matrix
from synctalk_parity.harness.matrix.types import Allowance, Bands, CellResult, ExecutorInfo, MatrixResult, Speed, StageFigures
from synctalk_parity.harness.verdict.types import Spread

GATE = {"max_abs": 0.01}


def _cell(unet_max_abs: float = 0.004, fps: tuple[float, float, float] = (10.0, 9.5, 10.4), status: str = "passed",
          cell_id: str = "demo/onnxruntime-cpu/fp16", environment: dict | None = None) -> CellResult:
    stages = [
        StageFigures("audio.features", "compared", True, max_abs=2e-4, mean_abs=3e-5, p99=1e-4, cosine=0.99999, tolerance={"max_abs": 0.01}),
        StageFigures("frame.unet_output", "compared", unet_max_abs <= GATE["max_abs"], max_abs=unet_max_abs, mean_abs=unet_max_abs / 20,
                     p99=unet_max_abs / 4, tolerance=dict(GATE)),
        StageFigures("frame.output", "compared", True, max_abs=2.0, mean_abs=0.01, p99=1.0, identical=0.97, psnr=61.0, ssim=0.9999,
                     tolerance={"min_psnr": 40.0}),
    ]
    return CellResult(cell_id, "demo", cell_id.split("/", 1)[1], "onnxruntime", "fp16", status, stages=stages,  # type: ignore[arg-type]
                      speed=Speed(Spread(*fps), 3, 4, 1), environment=environment or {"onnxruntime": "1.22.0", "cpu_isa": "avx2"})


def test_an_unchanged_cell_flags_nothing():
    change = compare_cells(_cell(), _cell(), Bands(), [])
    assert not change.regression and not change.changed and change.drifts == [] and change.stages == []


def test_unet_error_doubled_inside_the_gate_is_a_regression_of_that_stage_and_figure():
    change = compare_cells(_cell(0.004), _cell(0.008), Bands(), [])
    assert change.regression and change.after == "passed"  # still inside the absolute gate
    drifted = {(d.stage, d.metric) for d in change.drifts if d.regression}
    assert ("frame.unet_output", "max_abs") in drifted
    assert all(d.stage == "frame.unet_output" for d in change.drifts)
    assert change.stages == []  # no verdict changed


def test_a_drift_inside_the_band_is_noise():
    # band of max |diff|: the larger of 25% of the baseline and 5% of the gate
    assert metric_band("frame.unet_output", "max_abs", 0.004, GATE, Bands()) == 0.001
    assert not compare_cells(_cell(0.004), _cell(0.0049), Bands(), []).regression
    # a figure that improved beyond its band is reported, never failed
    better = compare_cells(_cell(0.008), _cell(0.004), Bands(), [])
    assert better.changed and not better.regression and not any(d.worse for d in better.drifts)


def test_the_noise_measured_over_repeats_widens_the_band():
    before, after = _cell(0.004), _cell(0.008)
    before.noise = {"frame.unet_output": {"max_abs": 0.005, "p99": 0.002}}  # a runtime that is not deterministic
    assert not compare_cells(before, after, Bands(), []).regression


def test_an_allowance_with_a_reason_accepts_the_change():
    allow = [Allowance("*/onnxruntime-cpu/fp16", "keep-fp32 set changed (reviewed)", "frame.unet_output")]
    change = compare_cells(_cell(0.004), _cell(0.008), Bands(), allow)
    assert not change.regression
    assert {d.allowed for d in change.drifts if d.worse} == {"keep-fp32 set changed (reviewed)"}


def test_a_newly_failing_stage_is_a_regression():
    change = compare_cells(_cell(0.004), _cell(0.02, status="failed"), Bands(), [])
    assert change.regression
    assert [(s.stage, s.before, s.after) for s in change.stages] == [("frame.unet_output", "pass", "fail")]


def test_speed_regresses_only_beyond_the_spread_of_the_repeats():
    overlapping = compare_cells(_cell(fps=(10.0, 9.0, 11.0)), _cell(fps=(8.5, 8.0, 9.2)), Bands(), [])
    assert overlapping.speed is not None and not overlapping.speed.slower and not overlapping.regression
    slower = compare_cells(_cell(fps=(10.0, 9.5, 10.4)), _cell(fps=(7.0, 6.8, 7.2)), Bands(), [])
    assert slower.speed is not None and slower.speed.slower and slower.regression
    assert (round(slower.speed.ratio.median, 2), round(slower.speed.ratio.min, 2), round(slower.speed.ratio.max, 2)) == (0.7, 0.65, 0.76)
    allowed = compare_cells(_cell(fps=(10.0, 9.5, 10.4)), _cell(fps=(7.0, 6.8, 7.2)), Bands(), [Allowance("*", "new thread pool", None, "fps")])
    assert not allowed.regression


def test_environment_changes_are_named_beside_the_figures():
    change = compare_cells(_cell(0.004), _cell(0.008, environment={"onnxruntime": "1.23.1", "cpu_isa": "avx512"}), Bands(), [])
    assert change.environment == ["CPU instruction set avx2 -> avx512", "onnxruntime 1.22.0 -> 1.23.1"]
    assert environment_changes({"gpu": "A10"}, {"gpu": "H100"}) == ["GPU A10 -> H100"]


def _matrix(cells: list[CellResult]) -> MatrixResult:
    return MatrixResult("release", "m.toml", "2026-12-05T12:00:00+00:00", True, [], ["onnxruntime-cpu/fp16"], cells, ExecutorInfo("local", 2))


def test_cells_added_and_removed_and_a_cell_that_did_not_run_now(tmp_path):
    before = _matrix([_cell(), _cell(cell_id="demo/torch-cpu/fp32")])
    now = _matrix([replace(_cell(), status="not run", stages=[], speed=None, reason="no macOS"), _cell(cell_id="demo/coreml/fp16")])
    comparison = compare_matrices(now, before, tmp_path, Bands(), [])
    assert comparison.added == ["demo/coreml/fp16"] and comparison.removed == ["demo/torch-cpu/fp32"]
    change = comparison.change("demo/onnxruntime-cpu/fp16")
    assert change is not None and not change.compared and not change.regression  # not run is never a pass, nor a regression


def test_matrix_json_round_trips_through_its_generated_schema(tmp_path):
    result = _matrix([_cell(), replace(_cell(cell_id="demo/coreml/fp16"), status="not run", reason="Core ML prediction needs macOS")])
    result.baseline = compare_matrices(result, _matrix([_cell(0.002)]), tmp_path / "last", Bands(), [])
    write_matrix(result, tmp_path)
    document = json.loads((tmp_path / "matrix.json").read_text())
    assert document["schema"] == "synctalk-parity/matrix" and document["passed"] is False
    assert document["baseline"]["regressions"] == ["demo/onnxruntime-cpu/fp16"]
    assert read_matrix(tmp_path) == result
    assert result.failures[0].startswith("demo/onnxruntime-cpu/fp16: regression since the baseline: frame.unet_output max_abs 0.002 -> 0.004")
