"""The demo weights are listening test weights for the demo avatar: its face reproduced, a mouth that opens with the
speech, and only the mouth moved by the audio."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synctalk_parity.models.checkpoints import load_audio_encoder, load_unet
from synctalk_parity.reference.demo_weights import (
    DEMO_WEIGHTS_LABEL,
    checkpoint_label,
    demo_inputs,
    demo_weights,
    is_demo_weights,
    make_demo_weights,
)
from synctalk_parity.reference.listening_weights import read_about

pytestmark = pytest.mark.slow  # made once per cache (about a minute), then reused by every demo run


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2)))


@pytest.fixture(scope="module")
def weights():
    return demo_weights()


@pytest.fixture(scope="module")
def outputs(weights):
    """The U-Net on 8 demo templates, with silent audio and with the demo speech's windows."""
    unet = load_unet(weights[0])  # loaded as any checkpoint is (weights_only)
    images, audio = demo_inputs()
    with torch.inference_mode():
        quiet = unet(torch.from_numpy(images), torch.zeros_like(torch.from_numpy(audio))).numpy()
        spoken = unet(torch.from_numpy(images), torch.from_numpy(audio)).numpy()
    return images, quiet, spoken


def test_the_unet_reproduces_the_avatars_face(outputs):
    images, quiet, _ = outputs
    real = images[:, :3]
    assert quiet.std() > 0.1  # a face, not the fixture's grey square
    for k in range(len(real)):
        assert psnr(quiet[k], real[k]) > 28.0, f"template {k}"


def test_only_the_mouth_follows_the_audio(outputs):
    _, quiet, spoken = outputs
    moved = np.abs(spoken - quiet).max(axis=1)  # (8, 320, 320)
    assert moved.max() > 0.3  # a mouth opened: far beyond any gate's tolerance
    changed = moved > 1e-6
    rows, cols = np.where(changed.any(axis=0))
    assert rows.min() > 40 and cols.min() > 40 and cols.max() < 280  # around the lips, never the crop's edges
    assert changed.mean() < 0.05  # the rest of the crop is exactly the silent output


def test_demo_weights_are_cached_files_named_as_the_demo_weights(weights):
    unet_path, encoder_path = weights
    assert demo_weights() == weights  # reused, not made again
    assert is_demo_weights(unet_path) and is_demo_weights(encoder_path)
    assert checkpoint_label(unet_path).startswith(DEMO_WEIGHTS_LABEL)
    assert "not a SyncTalk model" in read_about(unet_path)["what"]
    load_audio_encoder(encoder_path)  # an original-layout audio_visual_encoder.pth


def test_making_them_again_gives_the_same_tensors(weights, tmp_path):
    """Deterministic: every tensor equal (the files' bytes differ only by the serialization id torch.save writes), also
    when the process making them computes on another number of threads than the one that cached them (here 3, a count
    no test process has on this 2-core machine: the workers have 1, one process 2)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        made = make_demo_weights(tmp_path)
        assert torch.get_num_threads() == 3  # the making gave the process its thread count back
    finally:
        torch.set_num_threads(threads)
    for new, cached in zip(made, weights, strict=True):
        a, b = torch.load(new, weights_only=True), torch.load(cached, weights_only=True)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_checkpoint_outside_the_cache_is_told_apart_without_making_the_demo(weights, tmp_path, monkeypatch):
    """Labelling a user's checkpoint (every run does) neither makes the demo in an empty cache nor reads it."""
    from synctalk_parity.cache import CACHE_ENV

    cache = tmp_path / "empty-cache"
    monkeypatch.setenv(CACHE_ENV, str(cache))
    user = tmp_path / "mine" / "unet_328_ave.pth"
    user.parent.mkdir()
    user.write_bytes(weights[0].read_bytes())  # the demo weights' bytes, in a folder of the user's
    assert not is_demo_weights(user)
    assert not checkpoint_label(user).startswith(DEMO_WEIGHTS_LABEL)
    assert not cache.exists()  # no demo made, no folder created
