"""The reference cache holds frames individually: a comparison gets the heavy stages of the frames it uses, a later
one that needs more computes only the missing frames (and says so), concurrent requests are safe, and the
execution (fast or exact) is part of what was asked and what is recorded.

The demo's avatar and speech, the small U-Net (plumbing: what is computed and cached, not fidelity)."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest

from synctalk_parity.harness.inputs import resolve_inputs
from synctalk_parity.harness.pipeline.reference_cache import ReferenceInputs, every_kth, reference_dump, reference_missing
from synctalk_parity.harness.verdict.dump import HEAVY_STAGES, Dump
from synctalk_parity.reference.stages import STAGE_NAMES

FRAMES = 5


@pytest.fixture
def inputs(fresh_cache, small_weights) -> ReferenceInputs:
    clip = resolve_inputs(None, None, *small_weights)
    return ReferenceInputs(clip.dataset, clip.audio, small_weights[0], small_weights[1], FRAMES, 0, frozenset(STAGE_NAMES),
                           frozenset({0, 3}))


def test_heavy_stages_only_for_the_frames_asked_and_more_frames_later_computes_only_the_missing(inputs, fresh_cache):
    first = reference_dump(inputs)
    assert not first.cached and first.frames_computed == 2 and first.frames_cached == 0 and first.note is None
    dump = Dump.open(first.dump)
    assert dump.frame_count == FRAMES
    assert dump.frames("frame.crop_box") == list(range(FRAMES)) and dump.frames("frame.unet_audio") == list(range(FRAMES))
    for stage in HEAVY_STAGES:
        assert dump.frames(stage) == [0, 3], stage
    assert dump.producer["backend"] == "torch-frozen-channels-last"

    more = reference_dump(replace(inputs, heavy_frames=frozenset({0, 1, 3})))
    assert not more.cached and more.frames_computed == 1 and more.frames_cached == 2
    assert more.note == "2 of the 3 reference frames this comparison needs were cached; computed the other 1 now"
    bigger = Dump.open(more.dump)
    assert bigger.frames("frame.output") == [0, 1, 3]
    for stage in ("frame.unet_output", "frame.output", "frame.crop_box"):  # the cached frames are the same bytes
        assert np.array_equal(bigger.frame(stage, 3), dump.frame(stage, 3))
    assert len(list((first.dump.parents[2] / "frames").iterdir())) == 3  # one entry per frame computed, none twice

    again = reference_dump(replace(inputs, heavy_frames=frozenset({0, 1, 3})))
    assert again.cached and again.frames_computed == 0 and again.dump == more.dump and again.note is None
    fewer = reference_dump(replace(inputs, frames=2, heavy_frames=every_kth(2, 10)))  # a shorter run: a new dump, nothing computed
    assert fewer.frames_computed == 0 and Dump.open(fewer.dump).frames("frame.output") == [0]


def test_reference_missing_says_whether_a_run_will_compute_the_reference(inputs):
    """What decides whether a run loads PyTorch ahead of its frames: nothing cached, then a frame not cached."""
    assert reference_missing(inputs)
    reference_dump(inputs)
    assert not reference_missing(inputs)
    assert not reference_missing(replace(inputs, heavy_frames=frozenset({3})))  # fewer frames: all cached
    assert reference_missing(replace(inputs, heavy_frames=frozenset({0, 1, 3})))  # frame 1's heavy stages are not
    assert not reference_missing(replace(inputs, stages=frozenset({"frame.crop_box"}), heavy_frames=frozenset({1})))  # light stages only


def test_a_damaged_frame_is_computed_again(inputs):
    first = reference_dump(inputs)
    computed = Dump.open(first.dump).frame("frame.unet_output", 3)
    frame = next(p for p in (first.dump.parents[2] / "frames").iterdir() if p.name.startswith("00003-"))
    (frame / "frame.unet_output.npy").write_bytes(b"not a tensor")  # the dumps assembled from it are hard links: damaged too
    again = reference_dump(replace(inputs, heavy_frames=frozenset({0, 2, 3})))  # a new selection: frame 3 is read from its entry
    assert again.frames_computed == 2 and again.frames_cached == 1
    assert np.array_equal(Dump.open(again.dump).frame("frame.unet_output", 3), computed)
    repaired = reference_dump(inputs)  # the first selection's dump is checked before reuse, and assembled again
    assert repaired.frames_computed == 0 and np.array_equal(Dump.open(repaired.dump).frame("frame.unet_output", 3), computed)


def test_concurrent_requests_for_the_same_frames_are_safe(inputs):
    results, errors = [], []

    def request():
        try:
            results.append(reference_dump(inputs))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=request) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    dumps = [Dump.open(result.dump) for result in results]
    assert dumps[0].path == dumps[1].path and dumps[0].frames("frame.output") == [0, 3]
    assert np.array_equal(dumps[0].frame("frame.output", 3), dumps[1].frame("frame.output", 3))
    folder = results[0].dump.parents[2]
    assert not [p for p in folder.rglob("*") if p.name.endswith(".partial")]


def test_the_exact_execution_is_its_own_reference_and_agrees_with_the_fast_one(inputs):
    fast = reference_dump(inputs)
    exact = reference_dump(replace(inputs, execution="exact"))
    assert exact.key != fast.key and exact.execution == "exact" and exact.frames_computed == 2
    exact_dump, fast_dump = Dump.open(exact.dump), Dump.open(fast.dump)
    assert exact_dump.producer["backend"] == "torch-eager"
    for index in (0, 3):
        assert np.abs(exact_dump.frame("frame.unet_output", index) - fast_dump.frame("frame.unet_output", index)).max() <= 1e-5
        assert np.array_equal(exact_dump.frame("frame.unet_input", index), fast_dump.frame("frame.unet_input", index))
