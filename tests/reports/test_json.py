"""The JSON report and the result.json contract: strict JSON, both schemas, and one-line errors naming the file."""

from __future__ import annotations

import json
import math

import pytest

from synctalk_parity.errors import ParityError
from synctalk_parity.harness.verdict.result import read_result, result_schema, to_json
from synctalk_parity.harness.verdict.validate import schema_problems as validate
from synctalk_parity.reports import json_report
from synctalk_parity.reports.view import load_runs, report_schema

from .conftest import bench_result, failing_result, passing_result, write_run


def _strict(text: str):
    def refuse(constant: str):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_report_combines_runs_as_strict_json_following_its_schema(passing_run, failing_run, bench_run, tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    document = _strict(json_report.render(load_runs([passing_run, failing_run, bench_run]), out))
    assert validate(document, report_schema()) == []
    assert (document["schema"], document["schema_version"]) == ("synctalk-parity/report", 2)
    assert [run["command"] for run in document["runs"]] == ["run", "run", "bench"]
    assert [(out / run["run_dir"]).resolve() for run in document["runs"]] == [p.resolve() for p in (passing_run, failing_run, bench_run)]
    failing = document["runs"][1]
    assert failing["comparison"]["first_divergent_stage"] == "frame.unet_output"
    assert failing["comparison"]["stages"][6]["psnr"] == "Infinity"  # frame.crop_328, identical
    assert (out / failing["run_dir"] / failing["comparison"]["worst_frame"]["reference_png"]).is_file()


def _holds(whole, part) -> bool:
    """Every field of `part` is in `whole` with the same value (objects compared key by key, recursively)."""
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(key in whole and _holds(whole[key], value) for key, value in part.items())
    if isinstance(part, list):
        return isinstance(whole, list) and len(whole) == len(part) and all(_holds(w, p) for w, p in zip(whole, part))
    return whole == part


def test_report_keeps_every_result_field(failing_run, tmp_path):
    document = _strict(json_report.render(load_runs([failing_run]), failing_run))
    original = _strict((failing_run / "result.json").read_text())
    run = document["runs"][0]
    assert run.pop("run_dir") == "."
    assert _holds(run, original)
    assert run == to_json(read_result(failing_run))  # and nothing else: the typed result, written back


@pytest.mark.parametrize("result", [passing_result(), failing_result(), bench_result()], ids=["pass", "fail", "bench"])
def test_contract_results_follow_the_result_schema(result):
    assert validate(json.loads(json.dumps(result)), result_schema()) == []


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
        (lambda r: r.update(command="deploy"), "$.command: 'deploy' is not one of ['bench', 'compare', 'run']"),
    ],
)
def test_schema_violations_name_the_path(change, problem):
    result = failing_result()
    change(result)
    assert problem in validate(result, result_schema())


def test_a_report_missing_run_dir_breaks_the_report_schema(failing_run, tmp_path):
    document = _strict(json_report.render(load_runs([failing_run]), tmp_path))
    del document["runs"][0]["run_dir"]
    assert validate(document, report_schema()) == ["$.runs[0]: 'run_dir' is a required property"]


def test_strict_json_names_non_finite_numbers():
    assert to_json({"a": [math.inf, -math.inf, math.nan, 1.5]}) == {"a": ["Infinity", "-Infinity", "NaN", 1.5]}


def test_read_result_reads_non_finite_numbers_by_name_only(failing_run):
    result = read_result(failing_run)
    assert result.comparison.stages[6].psnr == math.inf
    path = failing_run / "result.json"
    path.write_text(path.read_text().replace('"Infinity"', "Infinity"))  # JSON's extension token, as Python's json writes it
    with pytest.raises(ParityError, match=r"result.json is not valid JSON \(bare Infinity \(non-finite numbers are written as the strings"):
        read_result(failing_run)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "has no result.json"),
        ("{not json", "is not valid JSON"),
        ('{"schema": "synctalk-parity/dump", "schema_version": 1}', "is not a parity result (schema 'synctalk-parity/dump'"),
        ('[1, 2]', "is not a parity result"),
        ('{"schema": "synctalk-parity/result", "schema_version": 3, "command": "run"}', "schema_version 3; this version reads 2: upgrade synctalk-parity"),
        ('{"schema": "synctalk-parity/result", "schema_version": 1, "command": "run"}', "schema_version 1; this version reads 2: re-run the command"),
        ('{"schema": "synctalk-parity/result", "schema_version": 2, "command": "run", "timing": {"fps": "fast"}}',
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

    for schema in (result_schema(), report_schema()):
        jsonschema.Draft202012Validator.check_schema(schema)
    result = json.loads(json.dumps(failing_result()))
    jsonschema.validate(result, result_schema())
    result["timing"]["fps"] = "fast"
    assert not jsonschema.Draft202012Validator(result_schema()).is_valid(result)
