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


def test_doctor_survives_a_broken_ffmpeg(monkeypatch):
    import imageio_ffmpeg

    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", lambda: (_ for _ in ()).throw(RuntimeError("no ffmpeg")))
    result = CliRunner().invoke(app, ["doctor"], env={"COLUMNS": "120"})
    assert result.exit_code == 0 and "no ffmpeg" in result.output
