"""`parity bench`: the structure of what it measures and writes (tiny settings; no timing is asserted)."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from synctalk_parity.cli import app
from synctalk_parity.harness.bench.measure import UNET_GFLOP_PER_FRAME, BenchRequest, BenchResult, MemoryRow, steady_fps
from synctalk_parity.harness.verdict.result import to_json

runner = CliRunner()
ENV = {"COLUMNS": "160"}


@pytest.fixture(autouse=True)
def isolated_cache(seeded_session_cache, monkeypatch):
    monkeypatch.setenv("SYNCTALK_PARITY_CACHE", str(seeded_session_cache))


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


@pytest.mark.skipif(sys.platform != "linux", reason="VmHWM is Linux's; elsewhere ru_maxrss is read as it is")
def test_a_child_reports_its_own_peak_memory_not_its_parents():
    """ru_maxrss is inherited across fork + exec: a child of this 400 MB-fatter process must not read 400 MB."""
    import subprocess

    import numpy as np

    from synctalk_parity.harness.bench.measure import peak_rss_mb

    ballast = np.ones(400 * 2**20 // 8)  # touched: 400 MB resident
    before = peak_rss_mb()
    code = "from synctalk_parity.harness.bench.measure import peak_rss_mb; print(peak_rss_mb())"
    child = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert before >= 400 and ballast.sum() > 0
    assert child < before - 300, (child, before)


def test_bench_table_fits_80_columns_without_cutting_a_figure():
    from rich.console import Console

    from synctalk_parity.cli.bench import bench_table
    from synctalk_parity.harness.bench.measure import BenchRow

    rows = [BenchRow("torch-reference", 1, "reference", 3.16, 3.12, 3.2, 2, 30.9, peak_share=0.105),
            BenchRow("onnxruntime", 8, "model", 17.85, 17.1, 18.04, 3, 174.4, ratio_to_reference=5.64, peak_share=0.593),
            BenchRow("onnxruntime", 8, "end-to-end-video", 15.53, 15.3, 15.61, 3, 151.8, 2333.0, 4.91,
                     ratio_to_model=0.87, whole_run_fps=14.88, first_frame_s=0.41, peak_share=0.516)]
    console = Console(width=80)
    with console.capture() as captured:
        console.print(bench_table(BenchResult("m", rows=rows)))
    text = captured.get()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    for figure in ("17.85", "15.30..15.61", "0.87x", "4.91x", "14.88", "2333", "e2e video", "174 59%", "152 52%"):
        assert figure in text


def test_the_sgemm_peak_is_the_rate_of_a_timed_float32_matmul(monkeypatch):
    """2 n^3 flops over the fastest of the timed matmuls (the warm-up is not timed)."""
    from synctalk_parity.harness.bench import measure as bench_module

    timed: list[int] = []

    def repeat(step, repeats):
        for _ in range(repeats):
            step()
            timed.append(1)
        return [0.5, 0.25][:repeats], 0.0

    monkeypatch.setattr(bench_module, "_repeat", repeat)
    assert bench_module.sgemm_peak_gflops(size=256, repeats=2) == pytest.approx(2 * 256**3 / 0.25 / 1e9)
    assert len(timed) == 2
    assert bench_module.sgemm_peak_gflops(size=256, repeats=1) > 0


def test_memory_growth_is_longest_minus_shortest():
    result = BenchResult("m", memory=[MemoryRow("onnxruntime", 1, 400, 530.0), MemoryRow("onnxruntime", 1, 100, 500.0)])
    assert result.growth_mb("onnxruntime") == 30.0
    assert result.growth_mb("torch") is None
    assert to_json(result)["memory_growth_mb"] == {"onnxruntime": 30.0}


@pytest.mark.slow
def test_bench_measures_every_backend_and_batch_and_writes_result_json(tmp_path):
    out = tmp_path / "bench"
    args = ["bench", "--backend", "onnxruntime", "--batch", "1,2", "--frames", "2", "--repeats", "1",
            "--reference-frames", "1", "--out", str(out), "--report", "md"]
    result = runner.invoke(app, args, env=ENV)
    assert result.exit_code == 0, result.output
    assert "e2e video" in result.output and "reference" in result.output and "steady frames/s" in result.output
    document = json.loads((out / "result.json").read_text())
    assert document["command"] == "bench" and document["comparison"] is None
    rows = document["bench"]["rows"]
    assert [(r["backend"], r["batch"], r["mode"]) for r in rows] == [
        ("torch-reference", 1, "reference"),
        ("onnxruntime", 1, "model"), ("onnxruntime", 1, "model-default-session"), ("onnxruntime", 1, "end-to-end"),
        ("onnxruntime", 1, "end-to-end-video"),
        ("onnxruntime", 2, "model"), ("onnxruntime", 2, "model-default-session"), ("onnxruntime", 2, "end-to-end"),
        ("onnxruntime", 2, "end-to-end-video"),
    ]
    assert "plain ORT" in result.output and "x dflt" in result.output
    peak = document["bench"]["sgemm_gflops"]
    assert peak > 0 and "sgemm peak:" in result.output
    assert len(document["bench"]["sgemm_readings"]) == 4 and peak == max(document["bench"]["sgemm_readings"])  # start, 2 batches, end
    for row in rows:
        assert row["fps_min"] <= row["fps_median"] <= row["fps_max"] and row["repeats"] >= 1
        assert row["unet_gflops"] == pytest.approx(row["fps_median"] * UNET_GFLOP_PER_FRAME)
        assert row["peak_share"] == pytest.approx(row["unet_gflops"] / peak)
        if row["mode"] != "reference":
            assert row["ratio_to_reference"] == pytest.approx(row["fps_median"] / rows[0]["fps_median"])
        assert (row["peak_rss_mb"] is not None) == row["mode"].startswith("end-to-end")
        if row["mode"].startswith("end-to-end"):
            model = next(r for r in rows if r["mode"] == "model" and r["batch"] == row["batch"])
            assert row["ratio_to_model"] == pytest.approx(row["fps_median"] / model["fps_median"])
            plain = next(r for r in rows if r["mode"] == "model-default-session" and r["batch"] == row["batch"])
            assert row["ratio_to_default_session"] == pytest.approx(row["fps_median"] / plain["fps_median"])
            assert row["whole_run_fps"] > 0 and row["first_frame_s"] > 0 and row["process_wall_s"] > 0
            if row["mode"] == "end-to-end":  # parity run itself: from process start to frames/00000.png
                assert 0 < row["process_first_frame_s"] < row["process_wall_s"]
                assert f"parity run onnxruntime batch {row['batch']}: first frame {row['process_first_frame_s']:.2f} s after process start" in result.output
            else:
                assert row["process_first_frame_s"] is None  # the video only: no frame file
        else:
            assert row["ratio_to_model"] is None and row["whole_run_fps"] is None
    assert document["bench"]["machine"] and document["bench"]["memory"] == []
    assert (out / "report.md").is_file()


def test_rows_on_a_gpu_are_told_apart_from_cpu_rows():
    """A GPU row's share is of the GPU's fp32 peak, not the CPU's sgemm (a CUDA row read 131% of the CPU peak)."""
    assert BenchRequest(["torch"], [1], device="cuda:0").on_gpu("torch")
    assert not BenchRequest(["torch"], [1], device="cpu").on_gpu("torch") and not BenchRequest(["torch"], [1]).on_gpu("torch")
    assert BenchRequest(["onnxruntime"], [1], provider="cuda").on_gpu("onnxruntime")
    assert not BenchRequest(["onnxruntime"], [1], provider="cpu").on_gpu("onnxruntime")
    assert BenchRequest(["tensorrt"], [1]).on_gpu("tensorrt")


@pytest.mark.slow
def test_time_to_first_verdict_runs_cold_then_warm_beside_the_run_alone(small_weights):
    """`--verdict`: whole `parity run` processes; the cold run computes the reference, the warm one reuses it (checked
    from their result.json by `verdict_row` itself), the run alone skips it."""
    from synctalk_parity.cli.bench import verdict_lines
    from synctalk_parity.harness.bench.measure import verdict_row

    request = BenchRequest(backends=["onnxruntime"], batches=[1], frames=2, repeats=1, unet=small_weights[0], audio_encoder=small_weights[1],
                           verdict=True)
    row = verdict_row(request, "onnxruntime", 1)
    assert (row.backend, row.batch, row.frames, row.execution) == ("onnxruntime", 1, 2, "fast")
    assert len(row.run_s) == len(row.cold_s) == len(row.warm_s) == 1 and min(row.run_s + row.cold_s + row.warm_s) > 0
    result = BenchResult(machine="test", verdict=[row])
    assert to_json(result)["verdict"][0]["cold_s"] == row.cold_s
    line = verdict_lines(result)[0]
    assert line.startswith("first verdict onnxruntime batch 1, 2 frames: reference not cached ")
    assert f"({row.cold_s[0] / row.run_s[0]:.2f}x the run" in line and "the run alone (--no-compare)" in line
