"""The stream count a machine measured fastest (`backends/calibration.py`): kept per machine, followed by the ONNX
Runtime backend on the CPU, never taken from another machine or a damaged file."""

from __future__ import annotations

import json

import pytest

from synctalk_parity.backends import ModelSource, create_backend
from synctalk_parity.backends.calibration import (
    FILE,
    MEASURED_BY,
    NOT_USED,
    calibrated_streams,
    cpu_count,
    machine_parts,
    save_calibration,
    stream_candidates,
)
from synctalk_parity.backends.onnxruntime import MAX_DEFAULT_STREAMS
from synctalk_parity.cache import CACHE_ENV, entries, write_entry


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """A cache of this test's own: a calibration written here reaches no other test (the backends below load an
    export folder, so nothing else is needed from the cache)."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def unet_threads(backend) -> int:
    return backend.sessions["unet"].get_session_options().intra_op_num_threads


@pytest.mark.parametrize(("cpus", "candidates"), [(1, [1]), (2, [1, 2]), (3, [1, 2, 3]), (4, [1, 2, 4]), (6, [1, 2, 4, 6]), (64, [1, 2, 4, 8])])
def test_the_candidates_are_one_and_powers_of_two_up_to_the_cpus(cpus, candidates):
    assert stream_candidates(cpus) == candidates


def test_without_a_calibration_one_stream_per_cpu_up_to_the_cap_and_says_so(golden_onnx_dir):
    with create_backend("onnxruntime", ModelSource(export_dir=golden_onnx_dir), provider="cpu") as backend:
        expected = min(cpu_count(), MAX_DEFAULT_STREAMS)
        assert backend.streams() == expected and backend.describe()["streams"] == str(expected)
        source = backend.describe()["streams_source"]
        assert source.startswith("one per CPU") and "not calibrated" in source and "parity bench --calibrate-streams" in source


def test_the_backend_runs_the_count_this_machine_measured_fastest(golden_onnx_dir):
    """The highest median wins (1 here, against the rule's one per CPU); a new measurement replaces the old; --streams
    still decides when given."""
    kept = save_calibration({1: [20.0, 22.0, 21.0], 2: [30.0, 15.0, 16.0]}, frames=100, dataset="demo")
    assert kept.streams == 1 and kept.medians == {1: 21.0, 2: 16.0}
    with create_backend("onnxruntime", ModelSource(export_dir=golden_onnx_dir)) as backend:
        assert backend.streams() == 1 and unet_threads(backend) == 0  # one call at a time on ORT's own pool
        info = backend.describe()
        assert info["streams"] == "1" and info["streams_source"].startswith(MEASURED_BY) and "1: 21.00, 2: 16.00" in info["streams_source"]
    save_calibration({1: [10.0], 2: [12.0]}, frames=100, dataset="demo")
    assert calibrated_streams().streams == 2
    listed = [entry for entry in entries() if entry.kind == "calibration"]  # replaced, not added: `parity cache` shows one
    assert len(listed) == 1 and listed[0].problem is None and listed[0].what.startswith("ONNX Runtime U-Net calls at once: 2")
    with create_backend("onnxruntime", ModelSource(export_dir=golden_onnx_dir)) as backend:
        assert backend.streams() == 2 and unet_threads(backend) == max(1, cpu_count() // 2)
    with create_backend("onnxruntime", ModelSource(export_dir=golden_onnx_dir), streams="1") as backend:
        assert backend.streams() == 1 and backend.describe()["streams_source"] == "asked for (--streams)"


def test_a_calibration_made_on_another_machine_is_not_used(golden_onnx_dir):
    other = {**machine_parts(), "cpus": cpu_count() + 62}
    save_calibration({1: [30.0], 2: [10.0]}, frames=100, dataset="demo", parts=other)
    assert calibrated_streams() is None
    other_runtime = {**machine_parts(), "onnxruntime": "0.0.1"}
    save_calibration({1: [30.0], 2: [10.0]}, frames=100, dataset="demo", parts=other_runtime)
    assert calibrated_streams() is None
    with create_backend("onnxruntime", ModelSource(export_dir=golden_onnx_dir)) as backend:
        assert backend.streams() == min(cpu_count(), MAX_DEFAULT_STREAMS)


def test_a_damaged_calibration_is_not_used_and_the_backend_says_why(golden_onnx_dir):
    kept = save_calibration({1: [30.0], 2: [10.0]}, frames=100, dataset="demo")
    document = json.loads((kept.path / FILE).read_text())
    document["streams"] = 1000  # edited by hand: no longer what was measured
    (kept.path / FILE).write_text(json.dumps(document))
    found = calibrated_streams()
    assert isinstance(found, str) and "damaged" in found and str(kept.path) in found
    with create_backend("onnxruntime", ModelSource(export_dir=golden_onnx_dir)) as backend:
        assert backend.streams() == min(cpu_count(), MAX_DEFAULT_STREAMS)
        assert "damaged" in backend.describe()["streams_source"] and NOT_USED in backend.describe()["streams_source"]
    listed = [entry for entry in entries() if entry.kind == "calibration"]  # `parity cache` shows it damaged
    assert len(listed) == 1 and listed[0].path == kept.path and "when written" in (listed[0].problem or "")


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda d: d.update(streams=1000, fps={**d["fps"], "1000": [99.0]}), "not those of counts 1 to 8"),
        (lambda d: d.update(streams=4), "a count it did not measure"),
        (lambda d: d.update(fps=[30.0, 10.0]), "not used"),
        (lambda d: d.update(fps={"1": [], "2": [10.0]}), "not those of counts"),
        (lambda d: d.update(schema="something-else"), "not a streams calibration"),
        (lambda d: d.pop("measured_at"), "measured_at"),
    ],
)
def test_a_calibration_holding_what_none_writes_is_not_used(golden_onnx_dir, edit, words):
    """Well-formed files (their entry.json re-recorded, so no checksum catches them) whose contents no calibration
    writes: a newer layout, or an edit by hand. The backend keeps its rule and says why; nothing raises."""
    kept = save_calibration({1: [30.0], 2: [10.0]}, frames=100, dataset="demo")
    document = json.loads((kept.path / FILE).read_text())
    edit(document)
    (kept.path / FILE).write_text(json.dumps(document))
    write_entry(kept.path, "calibration", "edited", machine_parts())
    found = calibrated_streams()
    assert isinstance(found, str) and words in found and str(kept.path) in found
    with create_backend("onnxruntime", ModelSource(export_dir=golden_onnx_dir)) as backend:
        assert backend.streams() == min(cpu_count(), MAX_DEFAULT_STREAMS) and NOT_USED in backend.describe()["streams_source"]


def test_overlapping_ranges_are_said_to_be_within_noise():
    assert save_calibration({1: [20.0, 22.0, 21.0], 2: [30.0, 15.0, 16.0]}, frames=100, dataset="demo").within_noise  # 2 reached 30
    assert not save_calibration({1: [10.0, 11.0], 2: [12.0, 13.0]}, frames=100, dataset="demo").within_noise


def test_a_calibration_needs_a_reading_of_every_candidate():
    with pytest.raises(ValueError, match="at least one reading"):
        save_calibration({1: [20.0], 2: []}, frames=100, dataset="demo")
