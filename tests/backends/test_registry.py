"""The backend registry: every row has a test module, names resolve lazily, typos get a "did you mean"."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from synctalk_parity.backends import BACKENDS, availability, backend_names, create_backend, get_backend_class
from synctalk_parity.backends.base import Backend
from synctalk_parity.errors import ParityError


@pytest.mark.parametrize("name", list(BACKENDS))
def test_every_registered_backend_has_a_test_module(name):
    assert (Path(__file__).parent / f"test_{name}.py").is_file(), f"backend {name!r} is registered but has no tests/backends/test_{name}.py"


def test_names_and_rows():
    assert backend_names()[:2] == ["torch", "onnxruntime"]
    assert {"coreml", "tensorrt"} <= set(backend_names())
    for entry in BACKENDS.values():
        assert ":" in entry.target and entry.description


def test_unknown_backend_says_did_you_mean():
    with pytest.raises(ParityError, match="did you mean 'onnxruntime'"):
        get_backend_class("onnxruntim")
    with pytest.raises(ParityError, match="choose from torch, onnxruntime"):
        create_backend("nothing-like-it")


def test_importing_the_registry_imports_no_runtime():
    code = (
        "import sys, synctalk_parity.backends as b; b.backend_names(); "
        "print(sorted(m for m in ('onnxruntime', 'coremltools', 'tensorrt') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_availability_reports_every_backend():
    reasons = availability()
    assert list(reasons) == backend_names()
    assert reasons["torch"] is None
    for name, reason in reasons.items():
        assert reason is None or (isinstance(reason, str) and "\n" not in reason.strip()), name


@pytest.mark.parametrize("name", ["torch", "onnxruntime"])
def test_registered_classes_are_backends(name):
    cls = get_backend_class(name)
    assert issubclass(cls, Backend) and cls.name == name
