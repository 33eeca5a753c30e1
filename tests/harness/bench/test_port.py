"""`parity bench --port`: a port's own command beside `parity run --no-compare`, measured as whole processes, then judged.

The port here is written in the test: a script that writes PNG frames made with the reference's own stage
functions and network (as tests/harness/ports/test_judge.py builds its ports), or one that fails."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from synctalk_parity.cli import app
from synctalk_parity.harness.bench.port import measure_process

runner = CliRunner()
ENV = {"COLUMNS": "160"}
FRAMES = 8


@pytest.fixture(scope="module", autouse=True)
def isolated_cache(seeded_session_cache):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SYNCTALK_PARITY_CACHE", str(seeded_session_cache))
        yield


def _script(tmp_path, name: str, code: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(code))
    return f"{sys.executable} {path}"


@pytest.fixture(scope="module")
def made_frames(tmp_path_factory):
    """The demo's first FRAMES output frames, made from the reference's stage functions and the demo weights (what
    bench and its verdict use when no weights are given)."""
    import cv2

    from synctalk_parity.cache import cache_root
    from synctalk_parity.models import load_models
    from synctalk_parity.reference import audio, frames
    from synctalk_parity.reference.dataset import open_dataset
    from synctalk_parity.reference.demo import make_demo
    from synctalk_parity.reference.demo_weights import demo_weights
    from synctalk_parity.reference.pipeline import ReferencePipeline

    demo = make_demo(cache_root() / "demo")
    unet, encoder, _ = load_models(*demo_weights())
    network = ReferencePipeline(unet, encoder)
    dataset = open_dataset(demo.dataset_dir)
    features = network.audio_stages(audio.load_audio(demo.audio_path)).features
    made = tmp_path_factory.mktemp("made")
    for index, template_index in enumerate(dataset.schedule(FRAMES)):
        template = dataset.templates[template_index]
        image, box = template.read_image(), template.box
        crop = frames.crop_328(image, box)
        mouth = frames.mouth_from_output(network.generate(frames.unet_input(crop), audio.unet_audio_window(features, index)))
        cv2.imwrite(str(made / f"frame_{index + 1:04d}.png"), frames.paste(image, frames.pasted_region(crop, mouth, box), box))
    return made


def _copying_port(tmp_path, made, count: int = FRAMES) -> str:
    """A port's command: a script that writes the first `count` made frames as PNG into {out} (so the timed port
    process stays short)."""
    port = _script(tmp_path, "port.py", f"""
        import shutil, sys
        from pathlib import Path
        out = Path(sys.argv[1])
        for frame in sorted(Path({str(made)!r}).glob("*.png"))[:{count}]:  # numbered from 1, as many ports number them
            shutil.copyfile(frame, out / frame.name)
    """)
    return f"{port} {{out}}"


@pytest.fixture
def correct_port(tmp_path, made_frames):
    return _copying_port(tmp_path, made_frames)


@pytest.mark.slow
def test_a_port_is_timed_beside_our_run_and_judged_from_its_frames(tmp_path, correct_port):
    out = tmp_path / "bench"
    args = ["bench", "--port", correct_port, "--frames", str(FRAMES), "--repeats", "2", "--warmup", "0",
            "--backend", "torch", "--out", str(out), "--report", "md,html"]
    result = runner.invoke(app, args, env=ENV)
    assert result.exit_code == 0, result.output
    text = result.output
    assert "port: " in text and "ours: " in text and "parity run --no-compare" in text
    for label in ("wall s", "CPU s", "peak RSS MB", "first frame s", "port/ours"):
        assert label in text
    assert f"numbered from 1, offset 0: {FRAMES} of {FRAMES} reference frames present" in text
    assert f"PASS: 1 of 1 stages, {FRAMES} of {FRAMES} frames compared" in text

    document = json.loads((out / "result.json").read_text())
    assert document["command"] == "bench" and document["comparison"]["passed"] is True
    port = document["bench"]["port"]
    assert port["passed"] is True and port["failure"] is None and port["verdict"]["passed"] is True
    assert len(port["pairs"]) == 2
    for pair in port["pairs"]:
        for side in ("port", "ours"):
            run = pair[side]
            assert run["returncode"] == 0 and run["frame_files"] == FRAMES
            assert 0 < run["first_frame_s"] <= run["wall_s"] and run["cpu_s"] > 0 and run["peak_rss_mb"] > 0
        for metric in ("wall_s", "cpu_s", "peak_rss_mb", "first_frame_s"):
            assert pair["ratio"][metric] == pytest.approx(pair["port"][metric] / pair["ours"][metric])
    ratios = [pair["ratio"]["wall_s"] for pair in port["pairs"]]
    assert port["ratio"]["wall_s"] == {"median": pytest.approx(sum(ratios) / 2), "min": min(ratios), "max": max(ratios)}
    # our run loads torch and the U-Net; the port only copies files
    assert port["ours"]["peak_rss_mb"]["min"] > 3 * port["port"]["peak_rss_mb"]["max"]
    assert len(list((out / "port-output").glob("*.png"))) == FRAMES  # what was judged stays for a look
    report = (out / "report.md").read_text()
    assert "PASS" in report and "The port beside our pipeline" in report and "| wall s |" in report
    assert f"{FRAMES} of {FRAMES} frames compared" in report
    assert "The port beside our pipeline" in (out / "report.html").read_text()


@pytest.mark.slow
def test_a_port_that_leaves_out_frames_is_timed_and_fails_its_verdict(tmp_path, made_frames):
    out = tmp_path / "bench"
    args = ["bench", "--port", _copying_port(tmp_path, made_frames, FRAMES - 2), "--frames", str(FRAMES), "--repeats", "1",
            "--warmup", "0", "--backend", "torch", "--out", str(out)]
    result = runner.invoke(app, args, env=ENV)
    assert result.exit_code == 1, result.output
    assert "wall s" in result.output and "FAIL" in result.output and "PASS" not in result.output
    assert f"{FRAMES - 2} of {FRAMES} reference frames present" in result.output
    document = json.loads((out / "result.json").read_text())
    port = document["bench"]["port"]
    assert len(port["pairs"]) == 1 and port["failure"] is None
    assert port["passed"] is False and port["verdict"]["passed"] is False and document["comparison"]["passed"] is False
    assert "frames_missing" in port["verdict"]["diagnoses"]


@pytest.mark.parametrize(
    "code, message",
    [
        ("import sys; sys.stderr.write('model.onnx not found\\n'); sys.exit(3)",
         "the port's command failed (exit status 3): model.onnx not found"),
        ("pass", "the port's command exited 0 but wrote nothing into {out}"),
    ],
)
def test_a_port_that_fails_or_writes_nothing_is_reported_and_exits_1(tmp_path, code, message):
    port = _script(tmp_path, "port.py", code)
    out = tmp_path / "bench"
    result = runner.invoke(app, ["bench", "--port", f"{port} {{out}}", "--frames", "2", "--out", str(out)], env=ENV)
    assert result.exit_code == 1, result.output
    assert message in result.output and "no verdict" in result.output and "PASS" not in result.output
    port_document = json.loads((out / "result.json").read_text())["bench"]["port"]
    assert port_document["passed"] is False and message in port_document["failure"] and port_document["verdict"] is None


@pytest.mark.parametrize(
    "command, message",
    [
        ("./port --audio in.wav", "must contain {out}"),
        ("no-such-port-program {out}", "'no-such-port-program' is not a program"),
        ("./port {out} --memory", "--memory measures our pipeline alone"),
    ],
)
def test_a_port_command_without_out_or_program_is_refused_in_one_line(tmp_path, command, message):
    extra = ["--memory"] if command.endswith("--memory") else []
    result = runner.invoke(app, ["bench", "--port", command.removesuffix(" --memory"), *extra, "--out", str(tmp_path / "bench")], env=ENV)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "bench").exists()


@pytest.mark.skipif(sys.platform != "linux", reason="reads VmHWM and ru_maxrss as Linux reports them")
def test_a_measured_process_reports_its_own_cpu_memory_and_first_frame(tmp_path):
    """The child's own figures, not this (400 MB fatter) parent's: ru_maxrss survives fork + exec."""
    import numpy as np

    ballast = np.ones(400 * 2**20 // 8)  # touched: this process is 400 MB resident
    child = textwrap.dedent("""
        import sys, time
        from pathlib import Path
        import numpy as np
        start = time.thread_time()
        while time.thread_time() - start < 0.5:  # 0.5 s of this thread's CPU (so >= 0.5 s of wall; numpy's threads add CPU beside it)
            pass
        time.sleep(0.3)  # wall, not CPU
        Path(sys.argv[1], "00000.png").write_bytes(b"first")
        block = np.ones(200 * 2**20 // 8)  # 200 MB resident
        time.sleep(0.2)
        Path(sys.argv[1], "00001.png").write_bytes(b"second")
    """)
    out = tmp_path / "out"
    out.mkdir()
    run = measure_process([sys.executable, "-c", child, str(out)], out)
    assert ballast.sum() > 0
    assert run.returncode == 0 and run.error is None and run.frame_files == 2
    assert 200 <= run.peak_rss_mb < 350, run  # its 200 MB and numpy, not the parent's 400 MB
    # it busied the CPU >= 0.5 s and slept 0.5 s: CPU time is its own (numpy's threads may overlap the sleeps a little)
    assert run.cpu_s >= 0.5 and run.wall_s >= 0.5 and run.wall_s - run.cpu_s >= 0.25
    assert 0.8 <= run.first_frame_s < run.wall_s - 0.2


def test_a_measured_process_that_fails_keeps_its_last_words(tmp_path):
    run = measure_process([sys.executable, "-c", "import sys; print('loading'); sys.exit('no weights in ./models')"], tmp_path)
    assert run.returncode == 1 and run.error == "no weights in ./models" and run.first_frame_s is None
