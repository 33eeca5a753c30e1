"""`parity compare`: table, verdict, result.json and exit codes; a dump written without the toolkit."""

from __future__ import annotations

import json

import cv2
import numpy as np
from typer.testing import CliRunner

from synctalk_parity.cli import app
from synctalk_parity.harness.verdict.compare import compare_dumps
from synctalk_parity.harness.verdict.gates import load_gate
from synctalk_parity.harness.verdict.result import write_result
from synctalk_parity.harness.verdict.types import Timing

from ..harness.conftest import synthetic_stages, write_dump

runner = CliRunner()
ENV = {"COLUMNS": "120"}


def _hand_written_dump(root, clip, rows, frame_count, nudge=0.0):
    """What a Go/Swift port writes: plain .npy, cv2.imwrite PNGs and a hand-made manifest.json."""
    (root / "frame.output").mkdir(parents=True)
    (root / "frame.unet_output").mkdir()
    np.save(root / "audio.features.npy", clip["audio.features"])
    np.save(root / "frame.crop_box.npy", np.stack([r["frame.crop_box"] for r in rows]))
    for row in rows:
        cv2.imwrite(str(root / "frame.output" / f"{row['index']:05d}.png"), row["frame.output"])
        np.save(root / "frame.unet_output" / f"{row['index']:05d}.npy", row["frame.unet_output"] + np.float32(nudge))
    frames = [r["index"] for r in rows]
    manifest = {
        "schema": "synctalk-parity/dump", "schema_version": 1,
        "producer": {"name": "swift-port", "version": "0.1", "backend": "coreml", "precision": "fp32"},
        "frame_count": frame_count,
        "stages": {
            "audio.features": {"per": "clip", "file": "audio.features.npy", "shape": list(clip["audio.features"].shape), "dtype": "float32"},
            "frame.crop_box": {"per": "frame", "layout": "stacked", "file": "frame.crop_box.npy", "frames": frames, "shape": [len(frames), 4], "dtype": "int64"},
            "frame.unet_output": {"per": "frame", "layout": "files", "pattern": "frame.unet_output/{index:05d}.npy", "frames": frames, "shape": [3, 320, 320], "dtype": "float32"},
            "frame.output": {"per": "frame", "layout": "files", "pattern": "frame.output/{index:05d}.png", "frames": frames, "shape": [48, 64, 3], "dtype": "uint8"},
        },
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


PROVIDES = 'provides = ["audio.features", "frame.crop_box", "frame.unet_output", "frame.output"]\n'


def test_a_port_dump_passes_when_the_gate_says_what_it_provides(tmp_path):
    clip, rows = synthetic_stages()
    reference = write_dump(tmp_path / "reference", clip, rows, 5)
    port = _hand_written_dump(tmp_path / "port" / "dump", clip, rows, 5)
    out = tmp_path / "out"
    # by default every stage of the reference is required: the port's four are not enough
    result = runner.invoke(app, ["compare", str(port), "--reference", str(reference), "--out", str(out)], env=ENV)
    assert result.exit_code == 1, result.output
    assert "9 required stages missing" in result.output and "4 of 13 stages, 3 of 3 frames compared" in result.output
    gate = tmp_path / "port.toml"
    gate.write_text(PROVIDES)
    result = runner.invoke(app, ["compare", str(port), "--reference", str(reference), "--out", str(out), "--gate", str(gate)], env=ENV)
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output and "frame.unet_output" in result.output
    assert "4 of 4 stages, 3 of 3 frames compared; not provided (the gate allows it): audio.pcm" in result.output
    data = json.loads((out / "result.json").read_text())
    assert data["command"] == "compare" and data["schema"] == "synctalk-parity/result"
    comparison = data["comparison"]
    assert comparison["passed"] is True and comparison["first_divergent_stage"] is None
    compared = [s["stage"] for s in comparison["stages"] if s["status"] == "compared"]
    assert compared == ["audio.features", "frame.crop_box", "frame.unet_output", "frame.output"]
    assert {s["status"] for s in comparison["stages"] if s["stage"] not in compared} == {"not provided"}
    assert comparison["gate"]["provides"] == compared and comparison["gate"]["file"] == str(gate)
    assert data["backend"]["name"] == "coreml"


def test_a_failing_gate_exits_1_and_names_the_stage(tmp_path):
    clip, rows = synthetic_stages()
    reference = write_dump(tmp_path / "reference", clip, rows, 5)
    port = _hand_written_dump(tmp_path / "port", clip, rows, 5, nudge=1e-3)
    result = runner.invoke(app, ["compare", str(port), "--reference", str(reference)], env=ENV)
    assert result.exit_code == 1, result.output
    assert "first divergent stage frame.unet_output" in result.output and "exceed max |diff| 0.0001" in result.output
    data = json.loads((tmp_path / "result.json").read_text())  # default --out: the dump's parent
    assert data["comparison"]["passed"] is False and data["comparison"]["first_divergent_stage"] == "frame.unet_output"
    gate = tmp_path / "gate.toml"
    gate.write_text('precision = "fp16"\n' + PROVIDES)
    result = runner.invoke(app, ["compare", str(port), "--reference", str(reference), "--gate", str(gate)], env=ENV)
    assert result.exit_code == 0, result.output


def test_run_folder_uses_the_reference_named_in_result_json(tmp_path):
    clip, rows = synthetic_stages()
    write_dump(tmp_path / "cache" / "reference", clip, rows, 5)
    run_dir = tmp_path / "run"
    write_dump(run_dir / "dump", clip, rows, 5)
    ran = compare_dumps(tmp_path / "cache" / "reference", run_dir / "dump", load_gate(None, "fp32"))
    write_result(run_dir, "run", comparison=ran, timing=Timing(1.0, 3))  # as `parity run` leaves it: its reference named
    result = runner.invoke(app, ["compare", str(run_dir)], env=ENV)
    assert result.exit_code == 0, result.output
    data = json.loads((run_dir / "result.json").read_text())
    assert data["command"] == "compare" and data["comparison"]["candidate"] == "dump" and data["timing"]["frames"] == 3


def test_usage_errors_exit_2_with_one_line(tmp_path):
    clip, rows = synthetic_stages()
    dump = write_dump(tmp_path / "alone", clip, rows, 5)
    result = runner.invoke(app, ["compare", str(dump)], env=ENV)
    assert result.exit_code == 2 and "pass --reference DUMP" in result.output
    result = runner.invoke(app, ["compare", str(tmp_path / "missing"), "--reference", str(dump)], env=ENV)
    assert result.exit_code == 2 and "not found" in result.output
    result = runner.invoke(app, ["compare", str(dump), "--reference", str(dump), "--precision", "fp8"], env=ENV)
    assert result.exit_code == 2 and "unknown precision 'fp8'" in result.output
