"""`parity bench`: the structure of what it measures and writes (tiny settings; no timing is asserted)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from synctalk_parity.harness.bench import UNET_GFLOP_PER_FRAME, BenchResult, MemoryRow, steady_fps
from synctalk_parity.harness.cli import app

runner = CliRunner()
ENV = {"COLUMNS": "160"}


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SYNCTALK_PARITY_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--batch", "1,x"], "--batch: expected comma-separated integers"),
        (["--batch", "0"], "--batch: sizes must be at least 1"),
        (["--backend", "onnxrt"], "unknown backend 'onnxrt'"),
        (["--backend", "tensorrt"], "backend 'tensorrt' is not available"),
        (["--repeats", "0"], "must be at least 1"),
    ],
)
def test_bad_options_are_refused_in_one_line(tmp_path, args, message):
    result = runner.invoke(app, ["bench", "--out", str(tmp_path / "bench"), *args], env=ENV)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "bench").exists()


def test_steady_fps_starts_the_clock_when_the_first_batch_is_out():
    # batch 2: a slow first batch (pipeline filling, first backend call), then a frame every 0.1 s
    done_at = [1.0, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6]
    assert steady_fps(done_at, 2) == pytest.approx(6 / 0.6)
    assert steady_fps(done_at[:5], 2) is None  # fewer than two batches after the first: not steady yet


def test_memory_growth_is_longest_minus_shortest():
    result = BenchResult("m", memory=[MemoryRow("onnxruntime", 1, 400, 530.0), MemoryRow("onnxruntime", 1, 100, 500.0)])
    assert result.memory_growth_mb("onnxruntime") == 30.0
    assert result.memory_growth_mb("torch") is None
    assert result.to_dict()["memory_growth_mb"] == {"onnxruntime": 30.0}


@pytest.mark.slow
def test_bench_measures_every_backend_and_batch_and_writes_result_json(tmp_path):
    out = tmp_path / "bench"
    args = ["bench", "--backend", "onnxruntime", "--batch", "1,2", "--frames", "2", "--repeats", "1",
            "--reference-frames", "1", "--out", str(out), "--report", "md"]
    result = runner.invoke(app, args, env=ENV)
    assert result.exit_code == 0, result.output
    assert "end-to-end" in result.output and "torch-reference" in result.output
    document = json.loads((out / "result.json").read_text())
    assert document["command"] == "bench" and document["comparison"] is None
    rows = document["bench"]["rows"]
    assert [(r["backend"], r["batch"], r["mode"]) for r in rows] == [
        ("torch-reference", 1, "reference"),
        ("onnxruntime", 1, "model"), ("onnxruntime", 1, "end-to-end"), ("onnxruntime", 1, "end-to-end-video"),
        ("onnxruntime", 2, "model"), ("onnxruntime", 2, "end-to-end"), ("onnxruntime", 2, "end-to-end-video"),
    ]
    for row in rows:
        assert row["fps_min"] <= row["fps_median"] <= row["fps_max"] and row["repeats"] >= 1
        assert row["unet_gflops"] == pytest.approx(row["fps_median"] * UNET_GFLOP_PER_FRAME)
        if row["mode"] != "reference":
            assert row["ratio_to_reference"] == pytest.approx(row["fps_median"] / rows[0]["fps_median"])
        assert (row["peak_rss_mb"] is not None) == row["mode"].startswith("end-to-end")
        if row["mode"].startswith("end-to-end"):
            model = next(r for r in rows if r["mode"] == "model" and r["batch"] == row["batch"])
            assert row["ratio_to_model"] == pytest.approx(row["fps_median"] / model["fps_median"])
            assert row["whole_run_fps"] > 0 and row["first_frame_s"] > 0
        else:
            assert row["ratio_to_model"] is None and row["whole_run_fps"] is None
    assert document["bench"]["machine"] and document["bench"]["memory"] == []
    assert (out / "report.md").is_file()
