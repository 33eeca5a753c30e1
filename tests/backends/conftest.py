"""Shared backend fixtures: the golden checkpoints as a ModelSource, golden inputs, and one cached ONNX export."""

from __future__ import annotations

import pytest

from synctalk_parity.backends.base import ModelSource

from ..golden_files import golden_check_inputs, golden_inputs, golden_weights

SKIP_REASON = "golden folder absent (set SYNCTALK_PARITY_GOLDEN or place it at <repo>/../shared/golden)"


@pytest.fixture(scope="session")
def golden_source() -> ModelSource:
    weights = golden_weights()
    if weights is None:
        pytest.skip(SKIP_REASON)
    return ModelSource(unet=weights[0], audio_encoder=weights[1], check_inputs=golden_check_inputs)  # an export made here is checked on them


@pytest.fixture(scope="session")
def golden_batch():
    inputs = golden_inputs()
    if not inputs:
        pytest.skip(SKIP_REASON)
    return {k: v[:8].copy() for k, v in inputs.items()}


@pytest.fixture(scope="session")
def onnx_cache(session_cache):
    """The export cache the backends use: the session's (tests/conftest.py), where the golden exports are made once."""
    return session_cache


@pytest.fixture(scope="session")
def golden_onnx_dir(golden_export):
    """The golden weights exported once through the onnxruntime backend's cache (the export tests' folder too)."""
    return golden_export("onnx", "fp32")
