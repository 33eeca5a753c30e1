"""`parity report`: writes the asked formats where they belong, prints the paths, and exits 2 on bad input."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from typer.testing import CliRunner

from synctalk_parity.cli import app
from synctalk_parity.errors import ParityError
from synctalk_parity.reports import parse_formats, write_reports

from ..harness.conftest import synthetic_stages, write_dump
from ..reports.conftest import failing_result, passing_result, write_run

ENV = {"COLUMNS": "120"}
ALL_FILES = ["report.md", "report.html", "report.json", "report.junit.xml"]


def _invoke(*args: str):
    return CliRunner().invoke(app, ["report", *map(str, args)], env=ENV)


@pytest.fixture
def failing_run(tmp_path):
    return write_run(tmp_path / "onnxruntime-fp16", failing_result())


@pytest.fixture
def passing_run(tmp_path):
    return write_run(tmp_path / "onnxruntime-fp32", passing_result())


def test_one_run_reports_into_its_folder_and_prints_the_paths(failing_run):
    result = _invoke(failing_run)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in failing_run.glob("report*")) == sorted(ALL_FILES)
    assert [line.removeprefix("wrote ") for line in result.output.splitlines()] == [str(failing_run / name) for name in ALL_FILES]
    assert not list(failing_run.glob(".*partial"))  # written beside the target, then renamed
    assert "❌ FAIL" in (failing_run / "report.md").read_text()


def test_several_runs_default_to_parity_report_in_the_working_folder(passing_run, failing_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _invoke(passing_run, failing_run, "--format", "json,junit")
    assert result.exit_code == 0, result.output
    out = tmp_path / "parity-report"
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report.junit.xml"]
    document = json.loads((out / "report.json").read_text())
    assert [run["run_dir"] for run in document["runs"]] == ["../onnxruntime-fp32", "../onnxruntime-fp16"]
    root = ET.parse(out / "report.junit.xml").getroot()
    assert (root.get("tests"), root.get("failures")) == ("26", "4")


def test_out_option_and_all(failing_run, tmp_path):
    out = tmp_path / "nested" / "reports"
    result = _invoke(failing_run, "--format", "all", "--out", out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(ALL_FILES)


def test_mistyped_format_says_did_you_mean(failing_run):
    result = _invoke(failing_run, "--format", "md,htlm")
    assert result.exit_code == 2
    assert "unknown report format 'htlm': did you mean 'html'?" in result.output
    assert not list(failing_run.glob("report*"))  # nothing written when the request is wrong


def test_missing_run_folder_is_one_line_exit_2(tmp_path):
    result = _invoke(tmp_path / "nowhere")
    assert result.exit_code == 2
    assert f"{tmp_path / 'nowhere'} does not exist" in result.output and "Traceback" not in result.output


def test_invalid_result_json_names_the_file(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "result.json").write_text('{"schema": "synctalk-parity/result", "schema_version": 2, "command": "run", "comparison": {"passed": "yes", "stages": []}}')
    result = _invoke(run)
    assert result.exit_code == 2
    assert f"{run / 'result.json'} does not follow the result.json schema: $.comparison.passed: 'yes' is not of type 'boolean'" in result.output


def test_report_folder_that_is_a_file_is_refused(failing_run, tmp_path):
    (tmp_path / "taken").write_text("")
    result = _invoke(failing_run, "--out", tmp_path / "taken")
    assert result.exit_code == 2 and "is a file" in result.output


@pytest.mark.parametrize(("text", "formats"), [("md", ["md"]), (" html , md ,html", ["html", "md"]), ("all", ["md", "html", "json", "junit"])])
def test_parse_formats(text, formats):
    assert parse_formats(text) == formats


@pytest.mark.parametrize(("text", "hint"), [("markdown", "did you mean 'md'?"), ("xml", "did you mean 'junit'?"), ("pdf", "use md, html, json, junit or all"), ("", "no report format given")])
def test_parse_formats_refuses_unknown_names(text, hint):
    with pytest.raises(ParityError, match=hint):
        parse_formats(text)


def test_write_reports_needs_a_run_folder(tmp_path):
    with pytest.raises(ParityError, match="no run folder given"):
        write_reports([], ["md"], tmp_path)


def test_reports_a_real_comparison(tmp_path):
    """`parity compare` writes result.json from two real dumps; every report reads it and agrees with it."""
    from synctalk_parity.harness.verdict.judge import judge

    clip, rows = synthetic_stages(frames=(0, 1, 2, 3))
    reference = write_dump(tmp_path / "reference", clip, rows, frame_count=5)
    changed = [dict(row) for row in rows]
    for row in changed[2:]:  # a mouth-sized patch of the output frame off by 9 on frames 2 and 3
        output = row["frame.output"].astype(int)
        output[10:20, 10:30] += 9
        row["frame.output"] = np.clip(output, 0, 255).astype(np.uint8)
    run = tmp_path / "run"
    write_dump(run / "dump", clip, changed, frame_count=5)
    comparison, _ = judge(run / "dump", reference, None, "fp32", run)
    assert not comparison and comparison.first_divergent_stage == "frame.output"

    result = _invoke(run)
    assert result.exit_code == 0, result.output
    suite = ET.parse(run / "report.junit.xml").getroot().find("testsuite")
    failed = [case.get("name") for case in suite.findall("testcase") if case.find("failure") is not None]
    assert failed == [stage.stage for stage in comparison.stages if not stage.passed] == ["frame.output"]
    assert suite.get("tests") == str(len(comparison.stages))
    assert suite.find("testcase[@name='frame.output']/failure").text == comparison.stage("frame.output").failure
    markdown = (run / "report.md").read_text()
    assert "first divergent stage `frame.output`" in markdown and comparison.stage("frame.output").failure in markdown
    page = (run / "report.html").read_text()
    assert f"Frame {comparison.worst_frame.index}: 200 of 3,072 pixels differ" in page
    assert page.count("data:image/png;base64,") == 4  # reference, candidate, difference, heat map


def test_reports_what_parity_bench_writes(tmp_path):
    from synctalk_parity.harness.bench.measure import BenchResult, BenchRow, MemoryRow, write_bench_result

    measured = BenchResult(machine="test machine", sgemm_gflops=294.0, rows=[BenchRow("torch", 1, "reference", 2.0, 1.9, 2.1, 3),
                                                          BenchRow("onnxruntime", 4, "model", 11.5, 11.0, 11.8, 3, 112.4, 650.0, 5.75,
                                                                   peak_share=0.382),
                                                          BenchRow("onnxruntime", 4, "end-to-end", 10.0, 9.8, 10.1, 3, 97.7, 990.0, 5.0,
                                                                   ratio_to_model=0.87, whole_run_fps=9.5, first_frame_s=0.4,
                                                                   ratio_to_default_session=0.93)],
                           memory=[MemoryRow("onnxruntime", 4, 16, 640.0), MemoryRow("onnxruntime", 4, 64, 641.5)])
    run = write_bench_result(measured, tmp_path / "bench").parent
    result = _invoke(run, "--format", "md,junit")
    assert result.exit_code == 0, result.output
    text = (run / "report.md").read_text()
    assert "| onnxruntime | model | 4 | 11.50 | 11.00..11.80 | 3 | - | - | 5.75x | - | - | 112.4 | 38% | 650 | - | - |" in text
    assert "Machine: test machine; sgemm peak 294 GFLOP/s (numpy float32 2048x2048 matmul" in text
    assert "| onnxruntime | end-to-end | 4 | 10.00 | 9.80..10.10 | 3 | 0.87x | 0.93x | 5.00x | 9.50 | 0.40 | 97.7 | - | 990 | - | - |" in text
    assert "Growth from the shortest to the longest run: onnxruntime +2 MB" in text
    suite = ET.parse(run / "report.junit.xml").getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("skipped")) == ("1", "1")


def test_result_json_itself_may_be_named(failing_run):
    result = _invoke(failing_run / "result.json", "--format", "html")
    assert result.exit_code == 0, result.output
    assert "largest channel difference 14" in (failing_run / "report.html").read_text()
