"""The JUnit XML report: one testsuite per run, one testcase per stage, counts CI systems can trust."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from synctalk_parity.reports import junit
from synctalk_parity.reports.view import load_runs

from .conftest import CLIP_STAGES, FRAME_STAGES, UNET_FAILURE, failing_result, passing_result, write_run

STAGES = [*CLIP_STAGES, *FRAME_STAGES]


def _parse(*run_dirs) -> ET.Element:
    return ET.fromstring(junit.render(load_runs(list(run_dirs))).encode("utf-8"))


def test_one_suite_per_run_and_one_case_per_stage(passing_run, failing_run):
    root = _parse(passing_run, failing_run)
    suites = root.findall("testsuite")
    assert [suite.get("name") for suite in suites] == ["onnxruntime-fp32", "onnxruntime-fp16"]
    for suite in suites:
        cases = suite.findall("testcase")
        assert [case.get("name") for case in cases] == STAGES
        assert {case.get("classname") for case in cases} == {f"parity.{suite.get('name')}"}
        assert suite.get("tests") == str(len(STAGES)) and suite.get("errors") == "0"


def test_counts_match_the_failures(passing_run, failing_run):
    root = _parse(passing_run, failing_run)
    passing, failing = root.findall("testsuite")
    assert passing.get("failures") == "0" and not passing.findall("testcase/failure")
    assert failing.get("failures") == "4"
    failed = [case.get("name") for case in failing.findall("testcase") if case.find("failure") is not None]
    assert failed == ["frame.unet_output", "frame.mouth", "frame.pasted_region", "frame.output"]
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == (str(2 * len(STAGES)), "4", "0")


def test_failure_carries_the_comparison_text(failing_run):
    suite = _parse(failing_run).find("testsuite")
    failure = suite.find("testcase[@name='frame.unet_output']/failure")
    assert failure.text == UNET_FAILURE
    assert failure.get("message") == UNET_FAILURE and failure.get("type") == "ParityGate"


def test_diagnoses_are_system_out_of_the_suite_and_of_their_stage(failing_run):
    suite = _parse(failing_run).find("testsuite")
    expected = ("diagnosis fp16_overflow (frame.unet_output): U-Net output saturates at 1.0 in 0.7% of elements in fp16: "
                "keep the last conv in fp32 (<keep_io_types>)")
    assert suite.find("system-out").text == expected
    assert suite.find("testcase[@name='frame.unet_output']/system-out").text == expected
    assert suite.find("testcase[@name='frame.output']/system-out") is None


def test_properties_and_stage_times(failing_run):
    suite = _parse(failing_run).find("testsuite")
    assert suite.get("name") == "onnxruntime"  # one run: named by its backend alone
    assert {case.get("classname") for case in suite.findall("testcase")} == {"parity.onnxruntime"}
    properties = {p.get("name"): p.get("value") for p in suite.findall("properties/property")}
    assert properties["backend"] == "onnxruntime" and properties["precision"] == "fp16"
    assert properties["verdict"] == "FAIL" and properties["first_divergent_stage"] == "frame.unet_output"
    assert suite.find("testcase[@name='frame.unet_output']").get("time") == "0.410"


def test_run_without_comparison_is_one_skipped_case(bench_run):
    root = _parse(bench_run)
    suite = root.find("testsuite")
    assert suite.get("name") == "bench" and (suite.get("tests"), suite.get("skipped"), suite.get("failures")) == ("1", "1", "0")
    assert "no comparison" in suite.find("testcase/skipped").get("message")
    assert root.get("skipped") == "1"


def test_markup_and_control_characters_stay_well_formed(tmp_path):
    result = failing_result()
    result["comparison"]["stages"][-1]["failure"] = 'frame.output: <b>&"odd"</b>\x07 bell\nsecond line'
    root = _parse(write_run(tmp_path / "run", result, with_worst_pngs=False))
    failure = root.find("testsuite/testcase[@name='frame.output']/failure")
    assert failure.text == 'frame.output: <b>&"odd"</b>\ufffd bell\nsecond line'
    assert failure.get("message") == 'frame.output: <b>&"odd"</b>\ufffd bell'


def test_same_backend_twice_gets_distinct_suites(tmp_path):
    root = _parse(write_run(tmp_path / "a", passing_result("torch", "fp32")), write_run(tmp_path / "b", passing_result("torch", "fp32")))
    assert [suite.get("name") for suite in root.findall("testsuite")] == ["torch-fp32-1", "torch-fp32-2"]


def test_problems_of_the_whole_comparison_are_one_failing_case(tmp_path):
    result = passing_result()
    result["comparison"].update(passed=False, problems=["frame count: the candidate makes 11 output frames, the reference 12"])
    suite = _parse(write_run(tmp_path / "run", result)).find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == (str(len(STAGES) + 1), "1")
    failure = suite.find("testcase[@name='comparison']/failure")
    assert failure.text == "frame count: the candidate makes 11 output frames, the reference 12"
