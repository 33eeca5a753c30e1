"""Stage dumps: written and read back exactly, readable without the writer, and validated on open."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from synctalk_parity.errors import ParityError
from synctalk_parity.harness.verdict.dump import (
    HEAVY_STAGES,
    LIGHT_STAGES,
    Dump,
    DumpWriter,
    dump_schema,
    parse_stage_selection,
)
from synctalk_parity.reference.stages import CLIP_STAGES, FRAME_STAGES, STAGE_NAMES

from ..conftest import PRODUCER, synthetic_stages, write_dump


def test_round_trip_is_exact(tmp_path):
    clip, rows = synthetic_stages(frames=(0, 2, 5))
    dump = Dump.open(write_dump(tmp_path / "d", clip, rows, frame_count=7))
    assert dump.stage_names == list(STAGE_NAMES)
    assert dump.frame_count == 7 and dump.producer == PRODUCER
    for name in CLIP_STAGES:
        got = dump.clip(name)
        assert got.dtype == clip[name].dtype and np.array_equal(got, clip[name])
    for name in FRAME_STAGES:
        assert dump.frames(name) == [0, 2, 5]
        for row in rows:
            got = dump.frame(name, row["index"])
            assert got.dtype == np.asarray(row[name]).dtype and np.array_equal(got, row[name]), name
    manifest = dump.manifest["stages"]
    assert manifest["frame.crop_box"]["layout"] == "stacked" and manifest["frame.crop_box"]["shape"] == [3, 4]
    assert manifest["frame.output"]["pattern"] == "frame.output/{index:05d}.png"
    assert manifest["frame.unet_output"]["pattern"] == "frame.unet_output/{index:05d}.npy"
    assert manifest["frame.pasted_region"]["shape"] == [None, None, 3]  # the size follows each crop box
    assert not (tmp_path / "d.partial").exists()


def test_stage_selection_and_light_frames(tmp_path):
    assert parse_stage_selection("all") == frozenset(STAGE_NAMES)
    assert parse_stage_selection("none") == frozenset()
    assert parse_stage_selection("audio.features, frame.output") == {"audio.features", "frame.output"}
    with pytest.raises(ParityError, match="did you mean 'frame.crop_box'"):
        parse_stage_selection("frame.cropbox")
    assert set(FRAME_STAGES) == LIGHT_STAGES | HEAVY_STAGES and not LIGHT_STAGES & HEAVY_STAGES
    clip, rows = synthetic_stages(frames=(0, 1, 2))
    with DumpWriter(tmp_path / "d", PRODUCER, 3, "audio.features,frame.crop_box,frame.output") as writer:
        writer.add_clip(clip)
        for row in rows:
            writer.add_frame(row["index"], {k: v for k, v in row.items() if k != "index"}, heavy=row["index"] == 1)
    dump = Dump.open(tmp_path / "d")
    assert dump.stage_names == ["audio.features", "frame.crop_box", "frame.output"]
    assert dump.frames("frame.crop_box") == [0, 1, 2] and dump.frames("frame.output") == [1]


def test_a_failed_write_leaves_no_dump(tmp_path):
    clip, _ = synthetic_stages()
    with pytest.raises(RuntimeError), DumpWriter(tmp_path / "d", PRODUCER, 3) as writer:
        writer.add_clip(clip)
        raise RuntimeError("pipeline crashed")
    assert not (tmp_path / "d").exists() and not (tmp_path / "d.partial").exists()


def test_a_new_dump_replaces_an_old_one_but_not_other_folders(tmp_path):
    clip, rows = synthetic_stages()
    write_dump(tmp_path / "d", clip, rows, frame_count=3)
    write_dump(tmp_path / "d", clip, rows[:1], frame_count=1)
    assert Dump.open(tmp_path / "d").frames("frame.output") == [0]
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(ParityError, match="photos: exists and is not a dump"):
        write_dump(tmp_path / "photos", clip, rows, frame_count=3)
    assert (tmp_path / "photos" / "holiday.jpg").exists() and not (tmp_path / "photos.partial").exists()


def test_a_dump_written_by_hand_opens(tmp_path):
    """What a Go or Swift port does: plain .npy, PNG and a manifest."""
    root = tmp_path / "port"
    (root / "frame.output").mkdir(parents=True)
    features = np.arange(10 * 512, dtype=np.float32).reshape(10, 512)
    np.save(root / "features.npy", features)
    np.save(root / "boxes.npy", np.array([[1, 2, 3, 4]], dtype=np.int32))
    image = np.full((8, 12, 3), (255, 0, 0), dtype=np.uint8)  # blue in BGR
    cv2.imwrite(str(root / "frame.output" / "00004.png"), image)
    manifest = {
        "schema": "synctalk-parity/dump", "schema_version": 1,
        "producer": {"name": "go-port", "version": "1", "backend": "go", "precision": "fp16"},
        "frame_count": 10,
        "stages": {
            "audio.features": {"per": "clip", "file": "features.npy", "shape": [10, 512], "dtype": "float32"},
            "frame.crop_box": {"per": "frame", "layout": "stacked", "file": "boxes.npy", "frames": [4], "shape": [1, 4], "dtype": "int32"},
            "frame.output": {"per": "frame", "layout": "files", "pattern": "frame.output/{index:05d}.png", "frames": [4], "shape": [8, 12, 3], "dtype": "uint8"},
        },
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    dump = Dump.open(root)
    assert np.array_equal(dump.clip("audio.features"), features)
    assert dump.frame("frame.crop_box", 4).tolist() == [1, 2, 3, 4]
    assert np.array_equal(dump.frame("frame.output", 4), image)
    with pytest.raises(ParityError, match="frame 3 of frame.output is not in the dump"):
        dump.frame("frame.output", 3)


def _break(path, edit):
    manifest = json.loads((path / "manifest.json").read_text())
    edit(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["stages"].__setitem__("frame.outptu", m["stages"].pop("frame.output")), "unknown stage 'frame.outptu'; did you mean 'frame.output'"),
        (lambda m: m["stages"]["audio.features"].__setitem__("shape", [4, 512]), r"audio.features.npy: shape \[5, 512\] does not match manifest.json's \[4, 512\]"),
        (lambda m: m["stages"]["audio.mel"].__setitem__("dtype", "float32"), "audio.mel.npy: dtype float64 does not match manifest.json's float32"),
        (lambda m: m["stages"]["frame.output"]["frames"].append(4), r"frame.output/00004.png: missing; manifest.json lists frame 4"),
        (lambda m: m["stages"]["frame.crop_box"]["frames"].append(4), "3 rows but manifest.json lists 4 frames"),
        (lambda m: m["stages"]["frame.output"].__setitem__("shape", [720, 1280, 3]), r"00000.png: shape \[48, 64, 3\] does not match"),
        (lambda m: m["stages"]["frame.unet_input"].__setitem__("shape", [3, 320, 320]), r"frame.unet_input/00000.npy: shape \[6, 320, 320\]"),
        (lambda m: m.__setitem__("schema_version", 7), "schema_version 7 is not supported"),
        (lambda m: m["producer"].__setitem__("precision", "int8"), r"\$.producer.precision: 'int8' is not one of \['fp32', 'fp16'\]"),
        (lambda m: m["stages"]["frame.crop_box"].__setitem__("per", "clip"), r"\$.stages.frame.crop_box.per: 'frame' was expected"),
    ],
)
def test_open_validates_against_the_contract(synthetic_dump, edit, message):
    _break(synthetic_dump, edit)
    with pytest.raises(ParityError, match=message):
        Dump.open(synthetic_dump)


def test_missing_files_and_folders_are_named(synthetic_dump, tmp_path):
    (synthetic_dump / "audio.pcm.npy").unlink()
    with pytest.raises(ParityError, match=r"audio.pcm.npy: missing; manifest.json lists it for audio.pcm"):
        Dump.open(synthetic_dump)
    run = tmp_path / "run"
    (run / "dump").mkdir(parents=True)
    (run / "dump" / "manifest.json").write_text("{}")
    with pytest.raises(ParityError, match="its dump is in dump/"):
        Dump.open(run)
    (run / "dump" / "manifest.json").write_text("{not json")
    with pytest.raises(ParityError, match="manifest.json: not valid JSON"):
        Dump.open(run / "dump")


def test_schema_describes_every_stage_and_accepts_written_manifests(synthetic_dump):
    schema = dump_schema()
    assert set(schema["properties"]["stages"]["properties"]) == set(STAGE_NAMES)
    assert schema["required"] == ["schema", "schema_version", "producer", "frame_count", "stages"]
    json.dumps(schema)  # serializable as dump.schema.json
    manifest = json.loads((synthetic_dump / "manifest.json").read_text())
    for name, entry in manifest["stages"].items():
        stage_schema = schema["properties"]["stages"]["properties"][name]
        assert set(stage_schema["required"]) <= set(entry), name
        assert entry["per"] == stage_schema["properties"]["per"]["const"]


def test_truncated_files_and_frames_outside_the_run_are_refused_when_opened(synthetic_dump):
    npy = synthetic_dump / "audio.features.npy"
    npy.write_bytes(npy.read_bytes()[:-100])
    with pytest.raises(ParityError, match=r"audio.features.npy: truncated .npy \(.* bytes, its header needs"):
        Dump.open(synthetic_dump)


def test_a_truncated_png_is_refused(synthetic_dump):
    png = synthetic_dump / "frame.output" / "00001.png"
    png.write_bytes(png.read_bytes()[:200])
    with pytest.raises(ParityError, match=r"frame.output/00001.png: truncated PNG"):
        Dump.open(synthetic_dump)


def test_frame_indices_outside_the_run_are_refused(synthetic_dump):
    _break(synthetic_dump, lambda m: m.__setitem__("frame_count", 2))  # frames 0..2 dumped, but the run makes 2
    with pytest.raises(ParityError, match=r"lists frame 2, outside the run's 2 frames \(0..1\)"):
        Dump.open(synthetic_dump)


# ------------------------------------------------------------------ a manifest cannot lead outside its dump


def _compare(candidate, reference):
    """`parity compare CANDIDATE --reference REFERENCE` through the real CLI."""
    from typer.testing import CliRunner

    from synctalk_parity.cli import app

    return CliRunner().invoke(app, ["compare", str(candidate), "--reference", str(reference), "--out", str(candidate.parent / "out")],
                              env={"COLUMNS": "200"})


@pytest.fixture
def reference_and_port(tmp_path):
    """Two dumps of the same synthetic stages: the reference and a port's (which the tests below tamper with)."""
    clip, rows = synthetic_stages()
    return write_dump(tmp_path / "reference", clip, rows, 5), write_dump(tmp_path / "port" / "dump", clip, rows, 5)


def _outside_line(result, stage: str, key: str, value: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert f"stage {stage}'s {key} {value!r} leads outside the dump" in lines[0]


@pytest.mark.parametrize("outside", ["/etc/hostname", "../../../../etc/hostname", "../reference/audio.features.npy"])
def test_a_file_outside_the_dump_is_refused(reference_and_port, outside):
    reference, port = reference_and_port
    _break(port, lambda m: m["stages"]["audio.features"].__setitem__("file", outside))
    _outside_line(_compare(port, reference), "audio.features", "file", outside)


@pytest.mark.parametrize("outside", ["/tmp/frame.output/{index:05d}.png", "../../reference/frame.output/{index:05d}.png"])
def test_a_pattern_outside_the_dump_is_refused(reference_and_port, outside):
    reference, port = reference_and_port
    _break(port, lambda m: m["stages"]["frame.output"].__setitem__("pattern", outside))
    _outside_line(_compare(port, reference), "frame.output", "pattern", outside.format(index=0))


def test_a_symlink_leading_out_of_the_dump_is_refused(reference_and_port, tmp_path):
    reference, port = reference_and_port
    (port / "audio.features.npy").unlink()
    (port / "audio.features.npy").symlink_to(reference / "audio.features.npy")  # a valid .npy, but another dump's
    _outside_line(_compare(port, reference), "audio.features", "file", "audio.features.npy")
    (port / "audio.features.npy").unlink()
    (port / "audio.features.npy").write_bytes((reference / "audio.features.npy").read_bytes())
    frames = port / "frame.output"
    shutil.rmtree(frames)
    frames.symlink_to(reference / "frame.output", target_is_directory=True)  # the folder of a pattern's files, linked out
    _outside_line(_compare(port, reference), "frame.output", "pattern", "frame.output/00000.png")


def test_a_symlink_inside_the_dump_stays_allowed(reference_and_port):
    reference, port = reference_and_port
    (port / "kept").mkdir()
    (port / "audio.features.npy").rename(port / "kept" / "features.npy")
    (port / "audio.features.npy").symlink_to(port / "kept" / "features.npy")
    (port / "frame.output").rename(port / "kept" / "frames")
    (port / "frame.output").symlink_to("kept/frames", target_is_directory=True)  # relative, resolving inside
    result = _compare(port, reference)
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output
