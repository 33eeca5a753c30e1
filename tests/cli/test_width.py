"""Every table a command prints fits a 100-column terminal, whatever COLUMNS says, and no figure is cut to fit.

Each command runs for real (typer's CliRunner) on small inputs. The tables are found in its output by their
rules (rich's box-drawing characters; `print_table` puts a blank line before and after each table), and every
line of every table must be at most 100 columns wide. Prose lines (paths, verdicts, diagnoses) are printed whole
for the terminal to wrap, so that a path can be copied; they are not tables and are not measured here."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from synctalk_parity.cli import app

from ..harness.conftest import synthetic_stages, write_dump

WIDTH = 100
BOX_DRAWING = {chr(code) for code in range(0x2500, 0x2580)}
runner = CliRunner()


def tables(output: str) -> list[list[str]]:
    """The tables in a command's output: each a run of non-blank lines of which one begins with a box-drawing
    character (a border, or the rule under a header; a progress bar's line begins with its label)."""
    found, block = [], []
    for line in [*output.splitlines(), ""]:
        if line.strip():
            block.append(line)
            continue
        if any(text.lstrip()[:1] in BOX_DRAWING for text in block):
            found.append(block)
        block = []
    return found


def assert_tables_fit(output: str, count: int) -> list[list[str]]:
    found = tables(output)
    assert len(found) == count, output
    for table in found:
        wide = [line for line in table if len(line) > WIDTH]
        assert not wide, "\n".join(table)
        assert not any("…" in line for line in table), "\n".join(table)  # narrowed, never cut
    return found


def invoke(args: list[str], columns: int):
    return runner.invoke(app, args, env={"COLUMNS": str(columns)})


def test_the_table_finder_finds_tables_and_only_tables():
    output = ("wrote x\n\nheader\n  a   b\n ────────\n  1   2\n\nprose " + "word " * 40 + "\nframes ━━━━ 2/2\n\n"
              "┏━┓\n┃ x ┃\n┗━┛\n")
    found = tables(output)
    assert [block[0] for block in found] == ["header", "┏━┓"]
    with pytest.raises(AssertionError):
        assert_tables_fit(output.replace("  1   2", "  1" + " " * 120 + "2"), 2)


@pytest.mark.parametrize("columns", [WIDTH, 250])
def test_compare_fits_with_a_nan_and_missing_frames(tmp_path, columns):
    clip, rows = synthetic_stages()
    reference = write_dump(tmp_path / "reference", clip, rows, 5)
    clip, bad = synthetic_stages()
    bad[0]["frame.unet_output"][0, 0, :3] = np.nan
    bad[1]["frame.output"] = 255 - bad[1]["frame.output"]
    candidate = write_dump(tmp_path / "candidate", clip, bad[:2], 5)  # frame 2 missing
    result = invoke(["compare", str(candidate), "--reference", str(reference), "--out", str(tmp_path / "out")], columns)
    assert result.exit_code == 1, result.output
    [table] = assert_tables_fit(result.output, 1)
    unet_row = next(line for line in table if line.startswith("frame.unet_output"))
    assert unet_row.split()[:3] == ["frame.unet_output", "2/3", "NaN"]  # |NaN - x| is NaN; the count is in the verdict
    assert "the candidate holds 3 NaN and 0 Inf values" in result.output
    assert "SSIM/cos" in table[1] and any("SSIM/cos: SSIM for images, cosine for feature rows" in line for line in table)


@pytest.mark.parametrize("columns", [WIDTH, 250])
def test_doctor_fits(columns):
    result = invoke(["doctor"], columns)
    assert result.exit_code == 0, result.output
    assert_tables_fit(result.output, 4)


@pytest.mark.parametrize("columns", [WIDTH, 250])
def test_cache_fits_with_long_and_damaged_entries(tmp_path, monkeypatch, columns):
    from synctalk_parity.cache import build_entry, cache_folder

    monkeypatch.setenv("SYNCTALK_PARITY_CACHE", str(tmp_path / "cache"))
    what = "reference dump of " + "/a/rather/long/dataset/path/" * 4 + " with talk.wav, 249 frames"
    for name in ("0" * 24, "1" * 24):
        build_entry(cache_folder("reference") / name, "reference", what, {"name": name},
                    lambda folder: (folder / "dump.npy").write_bytes(b"x" * 1000))
    (cache_folder("reference") / ("1" * 24) / "dump.npy").write_bytes(b"y" * 10)  # damaged: the state says why at length
    result = invoke(["cache"], columns)
    assert result.exit_code == 0, result.output
    assert_tables_fit(result.output, 1)
    assert "2 entries" in result.output


@pytest.mark.parametrize("columns", [WIDTH, 250])
def test_locate_fits(golden, tmp_path, columns):
    weights = golden / "weights" / "audio_visual_encoder.pth"
    if not weights.is_file():
        pytest.skip("golden fixture weights (../shared/golden/weights) not found")
    result = invoke(["locate", "--network", "audio_encoder", "--audio-encoder", str(weights), "--dataset", str(golden.parent / "datasets" / "sanders-mini"),
                     "--audio", str(golden / "talk_hb_10s.wav"), "--frames", "4", "--out", str(tmp_path)], columns)
    assert result.exit_code == 0, result.output
    [table] = assert_tables_fit(result.output, 1)
    assert any("audio_encoder" in line and "ok" in line for line in table)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """`parity run` on the built-in demo, 2 frames: its output (at 100 columns) and its folder."""
    out = tmp_path_factory.mktemp("width") / "run"
    result = invoke(["run", "--frames", "2", "--out", str(out)], WIDTH)
    assert result.exit_code == 0, result.output
    return result.output, out


@pytest.mark.slow
def test_run_fits(demo_run):
    output, _ = demo_run
    comparison, timing = assert_tables_fit(output, 2)
    assert any(line.startswith("frame.output") for line in comparison) and any("seconds" in line for line in timing)


@pytest.mark.slow
def test_bench_and_bench_port_fit(demo_run, tmp_path):
    _, run = demo_run
    result = invoke(["bench", "--backend", "onnxruntime", "--batch", "1", "--frames", "2", "--repeats", "1", "--reference-frames", "1",
                     "--out", str(tmp_path / "bench")], 250)
    assert result.exit_code == 0, result.output
    [table] = assert_tables_fit(result.output, 1)
    assert any("plain ORT" in line for line in table)
    port = tmp_path / "port.py"  # a port that writes the frames parity run made, as a Go or Swift port would write its own
    port.write_text(f"import shutil, sys\nfor i in range(2):\n    shutil.copyfile({str(run / 'frames')!r} + f'/{{i:05d}}.png', sys.argv[1] + f'/{{i:05d}}.png')\n")
    result = invoke(["bench", "--port", f"{sys.executable} {port} {{out}}", "--frames", "2", "--repeats", "1", "--warmup", "0",
                     "--out", str(tmp_path / "bench-port")], 250)
    assert result.exit_code == 0, result.output
    speed, regions, comparison = assert_tables_fit(result.output, 3)  # the port's frames judged as `parity compare` judges them
    assert any("port/ours" in line for line in speed) and any("mouth box" in line for line in regions)
    assert any(line.startswith("frame.output") for line in comparison)


@pytest.mark.slow
def test_export_fits(tmp_path):
    result = invoke(["export", "--format", "onnx", "--out", str(tmp_path / "exports-with-a-longer-folder-name" / "onnx")], 250)
    assert result.exit_code == 0, result.output
    [table] = assert_tables_fit(result.output, 1)
    manifest = json.loads((tmp_path / "exports-with-a-longer-folder-name" / "onnx" / "onnx-fp32" / "manifest.json").read_text())
    assert manifest["artifacts"][0]["sha256"][:12] in "".join(table)
    assert any("onnx-fp32/unet.onnx" in line for line in table) and any("onnx-fp32/audio_encoder.onnx" in line for line in table)  # whole
