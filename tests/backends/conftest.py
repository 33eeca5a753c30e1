"""Shared backend fixtures: the golden checkpoints as a ModelSource, golden inputs, and one cached ONNX export."""

from __future__ import annotations

import os

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
def onnx_cache(tmp_path_factory):
    """A private export cache for the session (`SYNCTALK_PARITY_CACHE`)."""
    from synctalk_parity.cache import CACHE_ENV

    path = tmp_path_factory.mktemp("cache")
    previous = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(path)
    yield path
    if previous is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = previous


@pytest.fixture(scope="session")
def golden_onnx_dir(golden_source, onnx_cache):
    """The golden weights exported once through the onnxruntime backend's cache."""
    from synctalk_parity.backends.exports import cached_export

    return cached_export(golden_source, "onnx")
