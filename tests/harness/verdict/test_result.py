"""result.json round-trips: every result type written by one process is the same object when read back, the schema
generated from the types declares every key a writer writes, and non-finite numbers have one encoding."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest

from synctalk_parity.errors import ParityError
from synctalk_parity.harness.verdict.compare import compare_dumps
from synctalk_parity.harness.verdict.dump import Dump
from synctalk_parity.harness.verdict.gates import load_gate
from synctalk_parity.harness.verdict.result import (
    ResultDocument,
    from_json,
    json_schema,
    json_text,
    read_result,
    result_document,
    result_schema,
    to_json,
    write_document,
)
from synctalk_parity.harness.verdict.types import (
    Backend,
    BenchResult,
    BenchRow,
    Comparison,
    Inputs,
    MemoryRow,
    PortAlignment,
    PortBench,
    PortBenchVerdict,
    PortPair,
    PortVerdict,
    ProcessRun,
    RunResult,
    Timing,
)
from synctalk_parity.harness.verdict.validate import schema_problems

from ..conftest import synthetic_stages, write_dump


def _comparison(tmp_path: Path, nan: bool = False) -> Comparison:
    """A real comparison of two synthetic dumps: the candidate's U-Net output off by 1e-3, its output frames darker
    in part, and (with `nan`) one NaN in its U-Net output."""
    clip, rows = synthetic_stages()
    reference = write_dump(tmp_path / "ref", clip, rows, frame_count=5)
    clip, rows = synthetic_stages()
    for row in rows:
        row["frame.unet_output"] += np.float32(1e-3)
        row["frame.output"][:10] //= 2
    if nan:
        rows[1]["frame.unet_output"][0, 5, 5] = np.nan
    candidate = write_dump(tmp_path / "cand", clip, rows, frame_count=5)
    return compare_dumps(reference, candidate, load_gate(None, "fp32"))


def _same(read: object, written: object) -> None:
    """The same object: equal (NaN is not equal to itself, so also the same JSON and the same types throughout)."""
    assert json_text(read) == json_text(written)
    assert type(read) is type(written)
    if "NaN" not in json_text(written):
        assert read == written


def _round_trip(value: object, tmp_path: Path) -> object:
    path = tmp_path / "value.json"
    path.write_text(json_text(value))
    return from_json(json.loads(path.read_text()), type(value))


def _run_result(comparison: Comparison, tmp_path: Path) -> RunResult:
    return RunResult(out=tmp_path / "run", backend="onnxruntime", demo=False, dataset="ds", audio="a.wav", weights={"unet": "u.pth"},
                     frames_written=3, frames_available=5, template_count=3, frame_size=(48, 64), batch=4, precision="fp32",
                     seconds={"frames": 0.25, "audio": 0.01}, describe={"provider": "cpu"}, comparison=comparison,
                     reference=tmp_path / "ref", gate_reason="--precision")


def _bench_result() -> BenchResult:
    process = lambda wall, first: ProcessRun(0, wall, wall * 1.5, wall, wall / 2, 512.0, first, 3, 4.2)
    pairs = [PortPair(process(2.0, 0.9), process(1.6, None)), PortPair(process(2.2, 1.0), process(1.5, 0.7))]
    port = PortBench("./port {out}", ["./port", "{out}"], ["parity", "run"], "ds", "a.wav", 3, pairs,
                     verdict=PortBenchVerdict(False, "frames", "frame.output", "1 of 1 stages compared", ["frames_missing"], "v/result.json"))
    rows = [BenchRow("onnxruntime", 1, "model", 11.5, 11.0, 12.0, 3, unet_gflops=112.4, peak_share=0.41, streams=2),
            BenchRow("onnxruntime", 1, "end-to-end", 10.1, 9.8, 10.3, 3, ratio_to_model=0.88, first_frame_s=0.4, process_wall_s=9.3,
                     process_first_frame_s=1.84, ratio_to_default_session=1.04)]
    return BenchResult("x86_64 Linux, 2 CPUs", rows, [MemoryRow("onnxruntime", 1, 100, 500.5), MemoryRow("onnxruntime", 1, 400, 503.0)],
                       sgemm_gflops=270.0, sgemm_readings=[250.0, 270.0], sgemm="numpy matmul", port=port)


def _port_verdict(tmp_path: Path, comparison: Comparison) -> PortVerdict:
    from synctalk_parity.harness.ports.judge import _localize

    regions, lossy = _localize(Dump.open(comparison.reference), Dump.open(comparison.candidate), None, None)
    alignment = PortAlignment("numbered from 1, offset 0: 3 of 5 reference frames present", 1, 0, 3, 5, [3, 4], [], 0.96, {1: 0, 2: 1, 3: 2})
    from synctalk_parity.harness.ports.judge import port_document

    port = port_document("frames", tmp_path / "frames", None, regions, lossy, None, None)
    port.alignment = alignment
    return port


def test_every_result_type_round_trips(tmp_path):
    comparison = _comparison(tmp_path, nan=True)
    assert comparison.stage("frame.unet_output").nan == 1 and math.isinf(comparison.stage("frame.unet_output").max_abs)
    for value in (comparison, comparison.stages[0], comparison.gate, _run_result(comparison, tmp_path), _bench_result(),
                  _port_verdict(tmp_path, _comparison(tmp_path / "port"))):
        _same(_round_trip(value, tmp_path), value)


def _lip_sync():
    from synctalk_parity.harness.verdict.lip_sync import measure_lip_sync

    rng = np.random.default_rng(3)
    reference = np.convolve(rng.normal(size=130), np.ones(3) / 3, mode="same")
    return measure_lip_sync(np.concatenate([np.zeros(2), reference[:-2]]), reference=reference)


def test_lip_sync_is_a_typed_object_of_result_json_with_its_offset_in_frames_and_ms(tmp_path):
    sync = _lip_sync()
    assert sync.offset_frames == 2
    write_document(result_document(tmp_path, "run", lip_sync=sync), tmp_path)
    written = json.loads((tmp_path / "result.json").read_text())["lip_sync"]
    assert written["offset_frames"] == 2 and written["offset_ms"] == 80.0 and written["against"] == "reference"
    assert [set(w) for w in written["windows"]] == [{"start", "frames", "offset_frames", "score"}] * len(sync.windows)
    properties = result_schema()["$defs"]["LipSync"]["properties"]
    assert {"offset_frames", "score", "windows", "offset_ms"} <= set(properties) and properties["offset_ms"]["readOnly"]
    read = read_result(tmp_path).lip_sync
    _same(read, sync)
    broken = {**json.loads((tmp_path / "result.json").read_text())}
    broken["lip_sync"]["offset_frames"] = "two"
    (tmp_path / "result.json").write_text(json.dumps(broken))
    with pytest.raises(ParityError, match="does not follow the result.json schema"):
        read_result(tmp_path)


def test_result_json_read_back_is_the_document_written(tmp_path):
    comparison = _comparison(tmp_path, nan=True)
    document = result_document(tmp_path, "run", backend=Backend("onnxruntime", "fp32", {"provider": "cpu"}, "--precision"),
                               inputs=Inputs("ds", "a.wav", {"unet": "u.pth"}, 3, False), comparison=comparison,
                               timing=Timing(11.9, 3, {"frames": 0.25}), bench=_bench_result(),
                               port=_port_verdict(tmp_path, _comparison(tmp_path / "port")), lip_sync=_lip_sync())
    write_document(document, tmp_path)
    read = read_result(tmp_path)
    _same(read, document)
    assert read.comparison.reference == Path("ref") and read.comparison.worst_frame.candidate_png.parent == Path("cand/frame.output")
    assert read.comparison.passed is False and read.comparison.stage("frame.unet_output").worst.candidate != read.comparison.stage(
        "frame.unet_output").worst.candidate  # NaN, read back as NaN


def test_non_finite_numbers_are_written_by_name_only(tmp_path):
    comparison = _comparison(tmp_path, nan=True)
    write_document(result_document(tmp_path / "run", "compare", comparison=comparison), tmp_path / "run")
    text = (tmp_path / "run" / "result.json").read_text()
    unet = json.loads(text)["comparison"]["stages"][9]
    assert unet["stage"] == "frame.unet_output" and unet["max_abs"] == "Infinity" and unet["worst"]["candidate"] == "NaN"
    assert unet["per_frame"]["max_abs"][1] == "Infinity" and unet["psnr"] == 0.0  # PSNR of non-finite data: 0 dB
    json.loads(text, parse_constant=lambda token: pytest.fail(f"bare {token} written"))
    (tmp_path / "run" / "result.json").write_text(text.replace('"NaN"', "NaN"))
    with pytest.raises(ParityError, match=r"is not valid JSON \(bare NaN"):
        read_result(tmp_path / "run")
    (tmp_path / "run" / "result.json").write_text(text.replace('"max_abs": "Infinity"', '"max_abs": "inf"', 1))
    with pytest.raises(ParityError, match=r"does not follow the result.json schema: \$.comparison.stages\[9\].max_abs"):
        read_result(tmp_path / "run")


def test_the_schema_declares_every_key_a_writer_writes(tmp_path):
    """No drift between what is written and what the schema says: every object closed to undeclared keys, the
    documents of every writer still validate (the bench rows' peak_share, process_wall_s, ... included)."""
    closed = _closed(copy.deepcopy(result_schema()))
    comparison = _comparison(tmp_path)
    document = result_document(tmp_path / "run", "bench", backend=Backend("port", "fp32"), comparison=comparison, timing=Timing(1.0),
                               bench=_bench_result(), port=_port_verdict(tmp_path, comparison))
    assert schema_problems(to_json(document), closed) == []
    written = to_json(document)
    written["bench"]["rows"][0]["unknown_figure"] = 1.0
    assert schema_problems(written, closed)[0] == "$.bench.rows[0]: Additional properties are not allowed ('unknown_figure' was unexpected)"
    row = result_schema()["$defs"]["BenchRow"]["properties"]
    assert {"peak_share", "process_wall_s", "process_first_frame_s", "device", "streams"} <= set(row)


def test_a_result_whose_verdict_disagrees_with_its_stages_is_refused(tmp_path):
    comparison = _comparison(tmp_path)
    path = write_document(result_document(tmp_path / "run", "compare", comparison=comparison), tmp_path / "run")
    document = json.loads(path.read_text())
    document["comparison"]["passed"] = True
    path.write_text(json.dumps(document))
    with pytest.raises(ParityError, match="comparison.passed is True, but its stages say False"):
        read_result(tmp_path / "run")


def test_the_schema_is_generated_from_the_types():
    assert json_schema(ResultDocument, result_schema()["$id"], result_schema()["title"]) == result_schema()
    stage = result_schema()["$defs"]["StageResult"]
    assert stage["properties"]["status"] == {"enum": ["compared", "missing", "not provided"], "default": "compared"}
    assert stage["properties"]["psnr"]["anyOf"] == [{"type": ["number", "null"]}, {"$ref": "#/$defs/non_finite"}]
    assert result_schema()["$defs"]["non_finite"]["enum"] == ["Infinity", "-Infinity", "NaN"]
    assert result_schema()["$defs"]["Comparison"]["properties"]["coverage"]["readOnly"] is True


def _closed(node):
    if isinstance(node, dict):
        if "properties" in node and node.get("type") == "object":
            node["additionalProperties"] = False
        for value in node.values():
            _closed(value)
    elif isinstance(node, list):
        for value in node:
            _closed(value)
    return node
