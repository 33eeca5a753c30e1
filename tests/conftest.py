"""Shared fixtures: the golden outputs of the original script and the real dataset, skipped when absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from .golden_files import golden_dir

SHARED_HINT = "../shared is not beside this checkout (a fresh clone); CI has it"


@pytest.fixture(scope="session")
def golden() -> Path:
    root = golden_dir()
    if root is None:
        pytest.skip(f"golden outputs not found: {SHARED_HINT}")
    return root


@pytest.fixture(scope="session")
def sanders(golden: Path) -> Path:
    """The real SyncTalk dataset sanders-mini (100 frames 1280x720)."""
    path = golden.parent / "datasets" / "sanders-mini"
    if not (path / "full_body_img").is_dir():
        pytest.skip(f"dataset sanders-mini not found: {SHARED_HINT}")
    return path
