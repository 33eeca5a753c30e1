"""The JSON report and the result.json contract: strict JSON, both schemas, and one-line errors naming the file."""

from __future__ import annotations

import json
import math

import pytest

from synctalk_parity.errors import ParityError
from synctalk_parity.harness.verdict.result import RESULT_SCHEMA, read_result
from synctalk_parity.harness.verdict.validate import schema_problems as validate
from synctalk_parity.reports import json_report
from synctalk_parity.reports.schema import REPORT_SCHEMA, load_runs

from .conftest import bench_result, failing_result, passing_result, write_run


def _strict(text: str):
    def refuse(constant: str):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_report_combines_runs_as_strict_json_following_its_schema(passing_run, failing_run, bench_run, tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    document = _strict(json_report.render(load_runs([passing_run, failing_run, bench_run]), out))
    assert validate(document, REPORT_SCHEMA) == []
    assert (document["schema"], document["schema_version"]) == ("synctalk-parity/report", 1)
    assert [run["command"] for run in document["runs"]] == ["run", "run", "bench"]
    assert [(out / run["run_dir"]).resolve() for run in document["runs"]] == [p.resolve() for p in (passing_run, failing_run, bench_run)]
    failing = document["runs"][1]
    assert failing["comparison"]["first_divergent_stage"] == "frame.unet_output"
    assert failing["comparison"]["stages"][6]["psnr"] == "Infinity"  # frame.crop_328, identical
    assert (out / failing["run_dir"] / failing["comparison"]["worst_frame"]["reference_png"]).is_file()


def test_report_keeps_every_result_field(failing_run, tmp_path):
    document = _strict(json_report.render(load_runs([failing_run]), failing_run))
    original = json.loads((failing_run / "result.json").read_text())
    run = document["runs"][0]
    assert run.pop("run_dir") == "."
    assert run == json_report.strict_json(original)


@pytest.mark.parametrize("result", [passing_result(), failing_result(), bench_result()], ids=["pass", "fail", "bench"])
def test_contract_results_follow_the_result_schema(result):
    assert validate(json.loads(json.dumps(result)), RESULT_SCHEMA) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda r: r.pop("command"), "$: 'command' is a required property"),
        (lambda r: r["backend"].pop("precision"), "$.backend: 'precision' is a required property"),
        (lambda r: r["comparison"]["stages"][9].update(max_abs="big"), "$.comparison.stages[9].max_abs: 'big' is not of type 'number', 'null'"),
        (lambda r: r["comparison"]["stages"][9].update(passed="no"), "$.comparison.stages[9].passed: 'no' is not of type 'boolean'"),
        (lambda r: r["comparison"]["stages"][9].update(nan=-1), "$.comparison.stages[9].nan: -1 is less than the minimum of 0"),
        (lambda r: r["comparison"]["worst_frame"].pop("candidate_png"), "$.comparison.worst_frame: 'candidate_png' is a required property"),
        (lambda r: r["comparison"]["diagnoses"][0].pop("message"), "$.comparison.diagnoses[0]: 'message' is a required property"),
        (lambda r: r["timing"].update(fps=None), "$.timing.fps: None is not of type 'number'"),
        (lambda r: r["bench"]["rows"][0].update(fps_median="fast"), "$.bench.rows[0].fps_median: 'fast' is not of type 'number'"),
        (lambda r: r.update(command="deploy"), "$.command: 'deploy' is not one of ['run', 'compare', 'bench']"),
    ],
)
def test_schema_violations_name_the_path(change, problem):
    result = failing_result()
    change(result)
    assert problem in validate(result, RESULT_SCHEMA)


def test_a_report_missing_run_dir_breaks_the_report_schema(failing_run, tmp_path):
    document = _strict(json_report.render(load_runs([failing_run]), tmp_path))
    del document["runs"][0]["run_dir"]
    assert validate(document, REPORT_SCHEMA) == ["$.runs[0]: 'run_dir' is a required property"]


def test_strict_json_names_non_finite_numbers():
    assert json_report.strict_json({"a": [math.inf, -math.inf, math.nan, 1.5]}) == {"a": ["Infinity", "-Infinity", "NaN", 1.5]}


def test_read_result_accepts_python_infinity(failing_run):
    result = read_result(failing_run)
    assert result["comparison"]["stages"][6]["psnr"] == math.inf


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "has no result.json"),
        ("{not json", "is not valid JSON"),
        ('{"schema": "synctalk-parity/dump", "schema_version": 1}', "is not a parity result (schema 'synctalk-parity/dump'"),
        ('[1, 2]', "is not a parity result"),
        ('{"schema": "synctalk-parity/result", "schema_version": 2, "command": "run"}', "schema_version 2; this version reads 1: upgrade synctalk-parity"),
        ('{"schema": "synctalk-parity/result", "schema_version": 1, "command": "run", "timing": {"fps": "fast"}}',
         "does not follow the result.json schema: $.timing.fps: 'fast' is not of type 'number'"),
    ],
)
def test_bad_result_json_is_one_line_naming_the_file(tmp_path, content, message):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    if content is not None:
        (run_dir / "result.json").write_text(content)
    with pytest.raises(ParityError) as raised:
        load_runs([run_dir])
    text = str(raised.value)
    assert message in text and str(run_dir) in text and "\n" not in text


def test_missing_run_folder_says_so(tmp_path):
    with pytest.raises(ParityError, match="does not exist: pass a folder written by `parity run`"):
        read_result(tmp_path / "nowhere")


def test_labels_are_unique_across_runs(tmp_path):
    runs = load_runs([
        write_run(tmp_path / "a", passing_result("onnxruntime", "fp32")),
        write_run(tmp_path / "b", passing_result("onnxruntime", "fp16")),
        write_run(tmp_path / "c", passing_result("torch", "fp32")),
        write_run(tmp_path / "d", passing_result("torch", "fp32")),
    ])
    assert [run.label for run in runs] == ["onnxruntime-fp32", "onnxruntime-fp16", "torch-fp32-1", "torch-fp32-2"]


def test_the_schemas_are_valid_json_schema_documents():
    """The schemas are checked by jsonschema itself, and the validator refuses what breaks them."""
    import jsonschema

    for schema in (RESULT_SCHEMA, REPORT_SCHEMA):
        jsonschema.Draft202012Validator.check_schema(schema)
    result = json.loads(json.dumps(failing_result()))
    jsonschema.validate(result, RESULT_SCHEMA)
    result["timing"]["fps"] = "fast"
    assert not jsonschema.Draft202012Validator(RESULT_SCHEMA).is_valid(result)
