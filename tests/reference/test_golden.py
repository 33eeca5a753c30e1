"""The reference reproduces the original script's outputs on real data (shared/golden).

Audio and feature stages: within 1e-5 absolute. Template indices and crop boxes: equal. uint8
image stages: identical on at least 99.9% of elements and never more than 1 level apart.
Measured figures are printed (run with -s) so they can be reported.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from synctalk_parity.models import load_audio_encoder, load_unet
from synctalk_parity.reference.audio import load_audio
from synctalk_parity.reference.dataset import open_dataset
from synctalk_parity.reference.pipeline import ReferencePipeline

AUDIO_ATOL = 1e-5
MIN_IDENTICAL = 0.999


@pytest.fixture(scope="module")
def reference(golden):
    """The reference as verdicts run it: the U-Net frozen channels-last (`reference/execution.py`)."""
    weights = golden / "weights"
    return ReferencePipeline(load_unet(weights / "unet_328_ave.pth"), load_audio_encoder(weights / "audio_visual_encoder.pth"),
                             execution="fast")


@pytest.fixture(scope="module")
def frame_of(reference, dataset, clip, meta):
    """`frame_of(i)`: the reference's stages of frame i. Those of the saved subset (8 frames) are kept for the module:
    three tests read them (each computed them again), and the 249-frame test reads every frame. The others are
    not kept (7 MB of stages a frame)."""
    schedule = dataset.schedule(clip.frame_count)
    kept: dict = {}

    def frame(i: int):
        if i in kept:
            return kept[i]
        stages = reference.frame(dataset, clip.features, i, schedule[i])
        if i in meta["subset"]:
            kept[i] = stages
        return stages

    return frame


@pytest.mark.networks  # the full-size golden U-Net: `make test` runs it, `make test-fast` does not
def test_the_fast_execution_is_within_1e5_of_plain_eager(reference, dataset, clip, meta, frame_of):
    """`--reference-exact` (plain eager) and the default execution make the same U-Net output to 1e-5."""
    exact = ReferencePipeline(reference.unet, reference.audio_encoder, execution="exact")
    schedule = dataset.schedule(clip.frame_count)
    for i in meta["subset"][:3]:
        fast_frame = frame_of(i)
        exact_frame = exact.frame(dataset, clip.features, i, schedule[i])
        diff = float(np.abs(fast_frame.unet_output - exact_frame.unet_output).max())
        print(f"golden frame {i}: fast vs exact U-Net output max |diff| {diff:.3g}")
        assert diff <= 1e-5
        assert np.array_equal(fast_frame.unet_input, exact_frame.unet_input)


@pytest.fixture(scope="module")
def clip(reference, golden):
    return reference.audio_stages(load_audio(golden / "talk_hb_10s.wav"))


@pytest.fixture(scope="module")
def dataset(sanders):
    return open_dataset(sanders)


@pytest.fixture(scope="module")
def meta(golden):
    return json.loads((golden / "original" / "frames.json").read_text())


def test_audio_stages_match_original(clip, golden):
    original = np.load(golden / "original" / "audio.npz")
    pairs = {
        "wav": clip.pcm,
        "mel": clip.mel,
        "mel_windows": clip.windows,
        "audio_features_padded": clip.features,
    }
    for key, ours in pairs.items():
        assert ours.shape == original[key].shape, key
        diff = float(np.abs(ours.astype(np.float64) - original[key]).max())
        print(f"golden {key}: max |diff| {diff:.3g}")
        assert diff <= AUDIO_ATOL, f"{key}: max |diff| {diff:.3g} > {AUDIO_ATOL}"
    assert np.abs(clip.features[1:-1] - original["audio_features"]).max() <= AUDIO_ATOL


def test_schedule_and_crop_boxes_match_original(dataset, clip, meta):
    assert clip.frame_count == meta["frames"] == 249
    assert dataset.template_count == meta["template_count"]
    assert list(dataset.frame_size) == meta["frame_size"]
    schedule = dataset.schedule(clip.frame_count)
    assert schedule == meta["template_index"]
    assert [list(dataset.templates[t].box) for t in schedule] == meta["crop_box"]


def _image_figures(ours: np.ndarray, theirs: np.ndarray) -> tuple[float, int]:
    diff = np.abs(ours.astype(np.int16) - theirs.astype(np.int16))
    return float((diff == 0).mean()), int(diff.max())


@pytest.mark.networks  # the full-size golden U-Net: `make test` runs it, `make test-fast` does not
def test_subset_frames_match_original_stage_by_stage(frame_of, meta, golden):
    subset = np.load(golden / "original" / "subset_frames.npz")
    regions = np.load(golden / "original" / "pasted_regions.npz")
    for i in meta["subset"]:
        stages = frame_of(i)
        assert np.abs(stages.unet_audio - subset[f"{i}__audio_window"]).max() <= AUDIO_ATOL
        images = {
            "crop_328": (stages.crop_328, subset[f"{i}__crop_328"]),
            "mouth": (stages.mouth, subset[f"{i}__pred_uint8"]),
            "pasted_region": (stages.pasted_region, regions[f"frame_{i:05d}"]),
            "output": (stages.output, cv2.imread(str(golden / "original" / "frames" / f"{i:05d}.png"))),
        }
        for name, (ours, theirs) in images.items():
            assert ours.shape == theirs.shape, (i, name)
            identical, worst = _image_figures(ours, theirs)
            print(f"golden frame {i} {name}: identical {identical:.6%}, max diff {worst}")
            assert identical >= MIN_IDENTICAL and worst <= 1, f"frame {i} {name}: {identical:.4%} identical, max {worst}"
        # Float stages: exact where the crop is identical; where the JPEG/bicubic path differs by one
        # level in a pixel or two, the U-Net sees that input and its output moves a little everywhere.
        crop_exact = np.array_equal(stages.crop_328, subset[f"{i}__crop_328"])
        input_diff = float(np.abs(stages.unet_input - subset[f"{i}__unet_input"]).max())
        output_diff = float(np.abs(stages.unet_output - subset[f"{i}__unet_output"]).max())
        print(f"golden frame {i} unet_input max |diff| {input_diff:.3g}, unet_output max |diff| {output_diff:.3g} (crop exact: {crop_exact})")
        if crop_exact:
            assert input_diff == 0.0 and output_diff <= AUDIO_ATOL
        else:
            assert input_diff <= 1 / 255 + 1e-7 and output_diff <= 1e-2


@pytest.mark.slow
def test_every_frame_matches_original(frame_of, dataset, clip, golden):
    """All 249 pasted regions (with the template and the crop box, the whole output frame).

    OpenCV's bicubic resize in this environment differs from the golden run's in about one pixel
    per resize, by one level, for some box sizes (given the golden crop and mouth, our resize-back
    reproduces the golden pasted region exactly for 4 of the 8 saved frames and differs in exactly
    one pixel for the other 4; no thread count or SIMD level changes that). A one-level crop pixel
    reaches the U-Net, flips truncation in a few mouth pixels, and the bicubic resize-back can
    overshoot one such flip into two levels: measured, 2 elements of 25.7 million. So: >= 99.9%
    identical over the clip, no frame below 99%, at most 2 levels, and at most 4 elements past 1.
    """
    regions = np.load(golden / "original" / "pasted_regions.npz")
    total = identical_sum = worst_overall = beyond_one = 0
    worst_frame = (1.0, -1)
    for stages in map(frame_of, range(clip.frame_count)):  # `reference.frames(dataset, clip)`, the subset's frames kept
        theirs = regions[f"frame_{stages.index:05d}"]
        assert stages.pasted_region.shape == theirs.shape, stages.index
        diff = np.abs(stages.pasted_region.astype(np.int16) - theirs.astype(np.int16))
        identical = float((diff == 0).mean())
        assert diff.max() <= 2, f"frame {stages.index}: a pixel differs by {diff.max()} levels"
        assert identical >= 0.99, f"frame {stages.index}: only {identical:.4%} identical"
        identical_sum += identical * theirs.size
        total += theirs.size
        beyond_one += int((diff > 1).sum())
        worst_overall = max(worst_overall, int(diff.max()))
        worst_frame = min(worst_frame, (identical, stages.index))
    assert total > 0
    print(
        f"golden all 249 pasted regions: identical {identical_sum / total:.6%}, max diff {worst_overall} "
        f"({beyond_one} of {total} elements past 1), worst frame {worst_frame[1]} at {worst_frame[0]:.4%}"
    )
    assert identical_sum / total >= MIN_IDENTICAL
    assert beyond_one <= 4
