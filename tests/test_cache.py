"""Cache entries are built privately and published whole: a failed build leaves nothing, a second build keeps the first."""

from __future__ import annotations

import pytest

from synctalk_parity.cache import build_entry, check_entry, read_entry

PARTS = {"inputs": {"what": "test"}, "environment": {}}


def test_a_built_entry_is_complete_and_records_its_files(tmp_path):
    final = tmp_path / "kind" / "key"
    assert build_entry(final, "test", "a test entry", PARTS, lambda folder: (folder / "data.txt").write_text("hello"))
    assert check_entry(final) is None
    document = read_entry(final)
    assert document["kind"] == "test" and document["what"] == "a test entry" and list(document["files"]) == ["data.txt"]


def test_a_failed_build_leaves_nothing_behind(tmp_path):
    final = tmp_path / "kind" / "key"

    def make(folder):
        (folder / "half.txt").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        build_entry(final, "test", "a test entry", PARTS, make)
    assert not final.exists() and list(final.parent.iterdir()) == []  # no .partial folder left


def test_the_first_complete_entry_wins(tmp_path):
    final = tmp_path / "kind" / "key"
    build_entry(final, "test", "first", PARTS, lambda folder: (folder / "data.txt").write_text("first"))
    assert not build_entry(final, "test", "second", PARTS, lambda folder: (folder / "data.txt").write_text("second"))
    assert (final / "data.txt").read_text() == "first" and len(list(final.parent.iterdir())) == 1


def test_an_entry_built_to_replace_takes_the_place_of_a_valid_one(tmp_path):
    """`replace`: a new measurement supersedes the old entry (the stream calibration), where the first one would win."""
    final = tmp_path / "kind" / "key"
    build_entry(final, "test", "first", PARTS, lambda folder: (folder / "data.txt").write_text("first"))
    assert build_entry(final, "test", "second", PARTS, lambda folder: (folder / "data.txt").write_text("second"), replace=True)
    assert (final / "data.txt").read_text() == "second" and len(list(final.parent.iterdir())) == 1
