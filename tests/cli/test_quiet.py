"""No library warning or progress bar reaches the terminal: the toolkit filters the benign ones it knows, at the
call that causes them. Run as a user would: a fresh process, Python's default warning filters."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

NOISE = ("Warning:", "warnings.warn", "%|", "passes/s", "ops/s", "libpng")


def _parity(args: list[str], tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SYNCTALK_PARITY_CACHE": str(tmp_path / "cache"), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "synctalk_parity.cli", *args], capture_output=True, text=True,
                          env=env, timeout=900, cwd=tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "coreml", "tensorrt"])
def test_export_prints_only_its_own_lines(tmp_path, small_weight_args, fmt):  # the small U-Net: the same converters, in seconds
    done = _parity(["export", "--format", fmt, *small_weight_args, "--out", str(tmp_path / "exports")], tmp_path)
    assert done.returncode in (0, 2), done.stderr  # tensorrt: 2 here, with its one-line reason
    text = done.stdout + done.stderr
    assert not [noise for noise in NOISE if noise in text], text
    if fmt == "tensorrt":
        assert "tensorrt: TensorRT is not installed" in text


@pytest.mark.slow
def test_a_demo_run_prints_only_its_own_lines(tmp_path):  # an empty cache: the demo inputs, the demo weights, the export are made
    done = _parity(["run", "--frames", "2", "--out", str(tmp_path / "run")], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    text = done.stdout + done.stderr
    assert not [noise for noise in NOISE if noise in text], text
