"""`parity doctor` lists backends, formats, versions, CPU, GPU and ffmpeg, and always exits 0."""

from __future__ import annotations

from typer.testing import CliRunner

from synctalk_parity.cli import app


def test_doctor_reports_everything_and_exits_0():
    result = CliRunner().invoke(app, ["doctor"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    for text in ("backends", "torch", "onnxruntime", "coreml", "tensorrt", "export formats", "onnx", "libraries", "librosa", "opencv", "numpy", "CPU", "GPU", "ffmpeg"):
        assert text in result.output, text
    assert "available" in result.output


def test_doctor_says_how_many_unet_calls_run_at_once_and_why(tmp_path, monkeypatch):
    """Not calibrated: the rule, and the command that measures it; calibrated: the count kept and when it was measured."""
    from synctalk_parity.backends.calibration import cpu_count, save_calibration
    from synctalk_parity.backends.onnxruntime import MAX_DEFAULT_STREAMS
    from synctalk_parity.cache import CACHE_ENV
    from synctalk_parity.harness.doctor import probe

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    found = probe().machine["ONNX Runtime streams"]
    expected = min(cpu_count(), MAX_DEFAULT_STREAMS)
    assert found.startswith(f"{expected} U-Net call{'s' if expected > 1 else ''} at once, one per CPU") and "parity bench --calibrate-streams" in found
    save_calibration({1: [30.0], 2: [10.0]}, frames=100, dataset="demo")
    found = probe().machine["ONNX Runtime streams"]
    assert found.startswith("1 U-Net call at once, measured by parity bench --calibrate-streams on")
    result = CliRunner().invoke(app, ["doctor"], env={"COLUMNS": "120"})  # the machine table shows it (folded in its cell)
    assert result.exit_code == 0 and "1 U-Net call at once, measured by" in " ".join(result.output.replace("│", " ").split())


def test_doctor_survives_a_broken_ffmpeg(monkeypatch):
    import imageio_ffmpeg

    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", lambda: (_ for _ in ()).throw(RuntimeError("no ffmpeg")))
    result = CliRunner().invoke(app, ["doctor"], env={"COLUMNS": "120"})
    assert result.exit_code == 0 and "no ffmpeg" in result.output
