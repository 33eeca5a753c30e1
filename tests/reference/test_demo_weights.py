"""The demo weights behave like a trained model on the demo avatar: a face with its mouth, not a grey square."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synctalk_parity.cache import cache_folder
from synctalk_parity.models.checkpoints import load_audio_encoder, load_unet
from synctalk_parity.reference import frames as F
from synctalk_parity.reference.dataset import open_dataset
from synctalk_parity.reference.demo import make_demo
from synctalk_parity.reference.demo_weights import (
    DEMO_WEIGHTS_LABEL,
    _fit_inputs,
    checkpoint_label,
    demo_weights,
    is_demo_weights,
    make_demo_weights,
)

pytestmark = pytest.mark.slow  # made once per cache (~30 s), then reused by every demo run

HELD_OUT = (3, 14, 25)  # templates the fit did not see (it takes 0, 6, 11, 17, 22, 28, 33, 39)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2)))


@pytest.fixture(scope="module")
def weights():
    return demo_weights()


@pytest.fixture(scope="module")
def demo_inputs():
    dataset = open_dataset(make_demo(cache_folder("demo")).dataset_dir)
    crops = [F.crop_328(dataset.templates[i].read_image(), dataset.templates[i].box) for i in HELD_OUT]
    return np.stack([F.unet_input(c) for c in crops])


def test_the_unet_reconstructs_the_avatars_face_and_mouth(weights, demo_inputs):
    unet = load_unet(weights[0])  # loaded as any checkpoint is (weights_only)
    _, windows = _fit_inputs()  # real audio windows of the demo's speech (through the demo audio encoder)
    audio, other = windows[: len(demo_inputs)], windows[-len(demo_inputs) :]
    with torch.inference_mode():
        out = unet(torch.from_numpy(demo_inputs), torch.from_numpy(audio)).numpy()
        moved = unet(torch.from_numpy(demo_inputs), torch.from_numpy(other)).numpy()
    real = demo_inputs[:, :3]
    # the fixture U-Net's output is a grey square (std ~1e-3); these are faces
    assert out.std() > 0.1
    for k in range(len(HELD_OUT)):
        assert psnr(out[k], real[k]) > 28.0, f"template {HELD_OUT[k]}"
        mouth = (slice(None), slice(20, 130), slice(60, 260))  # lips and teeth (the crop starts at the nose)
        assert psnr(out[k][mouth], real[k][mouth]) > 26.0, f"template {HELD_OUT[k]} mouth"
    # the audio branch takes part: another audio window moves the output well beyond any gate's tolerance
    assert np.abs(out - moved).max() > 1e-2


def test_demo_weights_are_cached_files_named_as_the_demo_weights(weights):
    unet_path, encoder_path = weights
    assert demo_weights() == weights  # reused, not made again
    assert is_demo_weights(unet_path) and is_demo_weights(encoder_path)
    assert checkpoint_label(unet_path).startswith(DEMO_WEIGHTS_LABEL)
    load_audio_encoder(encoder_path)  # an original-layout audio_visual_encoder.pth


def test_making_them_again_gives_the_same_tensors(weights, tmp_path):
    """Deterministic: every tensor equal (the files' bytes differ only by the serialization id torch.save writes)."""
    made = make_demo_weights(tmp_path)
    for new, cached in zip(made, weights, strict=True):
        a, b = torch.load(new, weights_only=True), torch.load(cached, weights_only=True)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)
