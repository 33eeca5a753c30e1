"""`parity matrix` on this machine, end to end (the small U-Net: plumbing): cells in worker processes, one that
cannot run here reported "not run", a perturbed export failing its cell by name and stage, the grid report, JUnit
and matrix.json; a rerun reuses the finished cells; --require fails on a cell that did not run."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synctalk_parity.cli import app
from synctalk_parity.harness.matrix.result import read_matrix

from ...cli.test_width import assert_tables_fit
from .conftest import offset_unet_output, onnx_export, write_matrix_file

pytestmark = pytest.mark.slow
ENV = {"COLUMNS": "160"}
PERTURBED = "small/onnxruntime-perturbed/fp32"
CELLS = ["small/onnxruntime-cpu/fp32", PERTURBED, "small/torch-cpu/fp32", "small/coreml/fp16"]


def _matrix_text(small_weights, perturbed: Path | None) -> str:
    unet, encoder = small_weights
    text = f"""
name = "plumbing"
frames = 8
[speed]
frames = 2
repeats = 2
[[avatar]]
name = "small"            # the demo's clip with the small U-Net
unet = "{unet}"
audio_encoder = "{encoder}"
[[backend]]
backend = "onnxruntime"
[[backend]]
backend = "onnxruntime"
name = "onnxruntime-perturbed"
[[backend]]
backend = "torch"
[[backend]]
backend = "coreml"
precisions = ["fp16"]
"""
    if perturbed is not None:
        text += f'[[cell]]\nid = "{PERTURBED}"\nmodels = "{perturbed}"\n'
    return text


def _invoke(*args) -> object:
    return CliRunner().invoke(app, ["matrix", *map(str, args)], env=ENV)


@pytest.fixture(scope="module")
def first_run(small_weights, tmp_path_factory):
    """The matrix with one cell on a perturbed export (its U-Net adds 0.05 to every output element)."""
    root = tmp_path_factory.mktemp("matrix-local")
    perturbed = offset_unet_output(onnx_export(*small_weights, "fp32"), root / "perturbed-export", 0.05)
    matrix = write_matrix_file(root / "matrix.toml", _matrix_text(small_weights, perturbed))
    out = root / "out"
    return matrix, out, _invoke(matrix, "--out", out)


def test_a_perturbed_export_fails_its_cell_by_name_and_stage(first_run):
    _, out, result = first_run
    assert result.exit_code == 1, result.output
    assert f"{PERTURBED}: FAIL, first divergent stage frame.unet_output" in result.output
    summary = "\n".join(assert_tables_fit(result.output, 1)[0])  # one row per cell: fits 100 columns, nothing cut
    assert all(cell in summary.replace("\n", "") or cell.split("/")[0] in summary for cell in CELLS) and "NOT RUN" in summary
    matrix = read_matrix(out)
    assert matrix.complete and [cell.id for cell in matrix.cells] == CELLS
    assert {cell.id: cell.status for cell in matrix.cells} == {"small/onnxruntime-cpu/fp32": "passed", PERTURBED: "failed",
                                                              "small/torch-cpu/fp32": "passed", "small/coreml/fp16": "not run"}
    failed = matrix.cell(PERTURBED)
    assert failed is not None and failed.first_divergent_stage == "frame.unet_output" and failed.worst is not None
    assert failed.stage("frame.unet_output").max_abs > 0.04  # the 0.05 offset, through the sigmoid's range
    assert matrix.failures == [f"{PERTURBED}: FAIL, first divergent stage frame.unet_output ({failed.failures[0]})"]


def test_a_cell_that_cannot_run_here_is_not_run_with_its_reason_never_a_pass(first_run):
    _, out, _ = first_run
    cell = read_matrix(out).cell("small/coreml/fp16")
    assert cell is not None and cell.status == "not run" and not cell.ran and "macOS" in (cell.reason or "")
    assert cell.requires.resources == {"macos": 1.0}


def test_every_cell_that_ran_has_its_speed_its_node_and_its_own_report(first_run):
    _, out, _ = first_run
    matrix = read_matrix(out)
    assert matrix.executor.kind == "local" and matrix.executor.workers >= 1
    for cell in matrix.cells:
        if not cell.ran:
            continue
        assert cell.speed is not None and cell.speed.repeats == 2 and cell.speed.fps.min <= cell.speed.fps.median <= cell.speed.fps.max
        assert cell.node is not None and cell.node.pid > 0 and cell.seconds["total"] > 0
        assert (out / cell.report).is_file() and (out / cell.folder / "cell.json").is_file()
        assert (out / cell.folder / "run" / "result.json").is_file()
    assert not list(out.rglob("*.partial"))  # nothing half-written


def test_the_grid_report_markdown_and_junit(first_run):
    _, out, _ = first_run
    html = (out / "report.html").read_text()
    assert "Release matrix: plumbing" in html and '<table class="grid">' in html
    assert 'href="cells/small__onnxruntime-perturbed__fp32/run/report.html"' in html
    markdown = (out / "report.md").read_text()
    assert markdown.index("## Why it fails") < markdown.index("## Grid")
    assert "| small |" in markdown and "NOT RUN" in markdown
    root = ET.parse(out / "report.junit.xml").getroot()
    suites = {suite.get("name"): suite for suite in root}
    assert list(suites) == CELLS  # one test suite per cell
    assert suites["small/coreml/fp16"].get("skipped") == "1"
    failing = [case.get("name") for case in suites[PERTURBED] if case.find("failure") is not None]
    assert "frame.unet_output" in failing
    assert suites["small/onnxruntime-cpu/fp32"].get("failures") == "0"
    assert json.loads((out / "matrix.json").read_text())["counts"] == {"passed": 2, "failed": 1, "not run": 1, "lost": 0, "error": 0}


def test_a_rerun_reuses_the_finished_cells_and_a_required_cell_that_did_not_run_fails(first_run, small_weights):
    matrix_file, out, first = first_run
    assert first.exit_code == 1
    before = read_matrix(out)
    # the same matrix without the perturbed cell, into the same folder: the unchanged cells are reused, the gate passes
    matrix_file.write_text(_matrix_text(small_weights, None).replace('[[backend]]\nbackend = "onnxruntime"\nname = "onnxruntime-perturbed"\n', ""))
    again = _invoke(matrix_file, "--out", out)
    assert again.exit_code == 0, again.output
    matrix = read_matrix(out)
    assert [cell.id for cell in matrix.cells] == [CELLS[0], CELLS[2], CELLS[3]]
    assert all(cell.reused for cell in matrix.cells if cell.ran)
    assert matrix.cell(CELLS[0]).speed == before.cell(CELLS[0]).speed
    assert not (out / "cells" / "small__onnxruntime-perturbed__fp32").exists()  # a cell the matrix no longer names
    required = _invoke(matrix_file, "--out", out, "--require", "small/coreml/fp16")
    assert required.exit_code == 1
    assert "small/coreml/fp16: required, but not run: Core ML prediction needs macOS" in required.output


def test_ctrl_c_leaves_a_report_marked_incomplete_with_the_finished_cells(first_run, small_weights, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    matrix_file = write_matrix_file(tmp_path / "matrix.toml", _matrix_text(small_weights, None))
    out = tmp_path / "out"
    parity = Path(sys.executable).parent / "parity"
    process = subprocess.Popen([str(parity), "matrix", str(matrix_file), "--out", str(out), "--jobs", "1"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True, env={**os.environ, **ENV})
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:  # one cell at a time: interrupt once the first is done
            if (out / "matrix.json").is_file() and any(cell.status == "passed" for cell in read_matrix(out).cells):
                break
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the terminal's whole process group
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130, output
    matrix = read_matrix(out)
    assert not matrix.complete and "the matrix is incomplete (interrupted)" in " ".join(matrix.failures)
    finished = [cell for cell in matrix.cells if cell.ran]
    assert len(finished) >= 1 and all((out / cell.folder / "cell.json").is_file() for cell in finished)
    unfinished = [cell for cell in matrix.cells if cell.reason == "interrupted before it finished"]
    assert unfinished and all(not (out / "cells" / cell.id.replace("/", "__")).exists() for cell in unfinished)
    assert (out / "report.md").read_text().splitlines()[2].startswith("**INCOMPLETE: plumbing")
    assert not list(out.rglob("*.partial"))  # nothing half-written
    deadline = time.monotonic() + 10
    while _group(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _group(process.pid) == [], "processes left behind"  # no worker left behind


def _group(pgid: int) -> list[str]:
    """The command lines of the processes in process group `pgid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[2]) == pgid:
                    found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except (OSError, ValueError, IndexError):
                continue
    return found


def test_a_worker_killed_mid_cell_is_replaced_and_the_cell_run_again(first_run, small_weights, tmp_path):
    import os
    import re
    import signal
    import subprocess
    import sys
    import time

    text = _matrix_text(small_weights, None)
    for backend in ('[[backend]]\nbackend = "onnxruntime"\nname = "onnxruntime-perturbed"\n', '[[backend]]\nbackend = "torch"\n',
                    '[[backend]]\nbackend = "coreml"\nprecisions = ["fp16"]\n'):
        text = text.replace(backend, "")
    matrix_file = write_matrix_file(tmp_path / "matrix.toml", text)  # one cell: small/onnxruntime-cpu/fp32
    out = tmp_path / "out"
    parity = Path(sys.executable).parent / "parity"
    process = subprocess.Popen([str(parity), "matrix", str(matrix_file), "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True, env={**os.environ, **ENV})
    lines, killed = [], []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 300
        for line in process.stdout:
            lines.append(line)
            started = re.match(r"small/onnxruntime-cpu/fp32: started \(worker (\d+)\)", line)
            if started and not killed:
                time.sleep(1.0)  # mid-cell
                os.kill(int(started.group(1)), signal.SIGKILL)
                killed.append(int(started.group(1)))
            assert time.monotonic() < deadline, "".join(lines)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = "".join(lines)
    assert process.returncode == 0, output
    assert killed and "small/onnxruntime-cpu/fp32: the worker process died (SIGKILL)" in output
    cell = read_matrix(out).cell("small/onnxruntime-cpu/fp32")
    assert cell is not None and cell.status == "passed" and cell.node is not None and cell.node.pid != killed[0]
    assert [attempt.error for attempt in cell.attempts] == ["the worker process died (SIGKILL)"]
    assert not list(out.rglob("*.partial"))


def test_a_cell_that_finished_as_ctrl_c_came_is_reported_finished_not_interrupted(first_run, tmp_path):
    """A worker can put a cell's folder in place just before a Ctrl-C stops it from telling the matrix: the result is on
    disk, the message never arrives (CI once saw such a cell reported "interrupted before it finished" beside its
    folder). The matrix reads it back from disk: a cell.json with the job's key written since the matrix began; an
    earlier matrix's folder (older) or another key's is not taken."""
    import os
    import shutil
    import time

    from synctalk_parity.harness.matrix.cell import CellJob, Settings, cell_key, resolve_avatar
    from synctalk_parity.harness.matrix.run import finished_unreported
    from synctalk_parity.harness.matrix.spec import load_matrix

    matrix_file, first_out, _ = first_run
    out = tmp_path / "out"
    shutil.copytree(first_out, out)
    spec = load_matrix(matrix_file)
    settings = Settings(spec.frames, spec.dump_every, spec.accuracy_repeats, spec.speed)
    avatar = spec.avatars[0]
    inputs = resolve_avatar(avatar.name, avatar.dataset, avatar.audio, avatar.unet, avatar.audio_encoder, avatar.start_frame)
    jobs = [CellJob(cell, inputs, settings, cell_key(cell, inputs, settings)) for cell in spec.cells]
    assert (out / "cells" / "small__onnxruntime-cpu__fp32" / "cell.json").is_file()  # other tests may rerun into first_run's folder

    began = time.time()
    for file in (out / "cells").glob("*/cell.json"):  # an earlier matrix's: an hour old
        os.utime(file, (began - 3600, began - 3600))
    os.utime(out / "cells" / "small__onnxruntime-cpu__fp32" / "cell.json")  # written by this matrix, as the Ctrl-C came
    found = finished_unreported(out, jobs, {}, began)
    assert set(found) == {"small/onnxruntime-cpu/fp32"}  # the others' folders are older: an earlier matrix's
    assert found["small/onnxruntime-cpu/fp32"].status == "passed" and found["small/onnxruntime-cpu/fp32"].folder == "cells/small__onnxruntime-cpu__fp32"
    assert finished_unreported(out, jobs, dict(found), began) == {}  # one the matrix heard of is not read again
    other = [CellJob(job.cell, job.avatar, job.settings, "another key") for job in jobs]
    assert finished_unreported(out, other, {}, began) == {}  # written for other inputs
