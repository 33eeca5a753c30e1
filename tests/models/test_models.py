"""The networks match the original checkpoints' layouts, so real SyncTalk_2D weights load strictly."""

from __future__ import annotations

import json

import pytest
import torch

from synctalk_parity.models import AUDIO_MODES, AudioEncoder, Model, fixture_audio_encoder, fixture_unet


@pytest.mark.parametrize("mode", AUDIO_MODES)
def test_unet_state_dict_matches_original_layout(golden, mode):
    layouts = json.loads((golden / "checkpoint_layouts.json").read_text())
    ours = {k: list(v.shape) for k, v in Model(6, mode).state_dict().items()}
    expected = layouts[f"unet_328_{mode}"]
    assert sorted(set(expected) - set(ours)) == []
    assert sorted(set(ours) - set(expected)) == []
    assert ours == expected


def test_audio_encoder_state_dict_matches_checkpoint_layout(golden):
    layouts = json.loads((golden / "checkpoint_layouts.json").read_text())
    ours = {k.removeprefix("audio_encoder."): list(v.shape) for k, v in AudioEncoder().state_dict().items()}
    assert ours == layouts["audio_visual_encoder"]


def test_parameter_counts_match_reference():
    assert sum(p.numel() for p in Model(6, "ave").parameters()) == 12_186_935
    assert sum(p.numel() for p in AudioEncoder().parameters()) == 2_812_672


@pytest.mark.parametrize(
    "mode, audio_shape", [("ave", (32, 16, 16)), ("hubert", (32, 32, 32)), ("wenet", (256, 16, 32))]
)
def test_unet_forward_shapes_and_range(mode, audio_shape):
    model = fixture_unet(mode=mode)
    with torch.no_grad():
        out = model(torch.rand(2, 6, 320, 320), torch.rand(2, *audio_shape))
    assert out.shape == (2, 3, 320, 320)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_audio_encoder_forward_shape():
    with torch.no_grad():
        out = fixture_audio_encoder()(torch.rand(3, 1, 80, 16))
    assert out.shape == (3, 512)


def test_fixture_weights_are_reproducible_and_seeded():
    a, b, c = fixture_unet(seed=0), fixture_unet(seed=0), fixture_unet(seed=1)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert not torch.equal(a.state_dict()["outc.conv.weight"], c.state_dict()["outc.conv.weight"])
    enc_a, enc_b = fixture_audio_encoder(seed=0), fixture_audio_encoder(seed=0)
    assert all(torch.equal(v, enc_b.state_dict()[k]) for k, v in enc_a.state_dict().items())


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="unknown audio mode 'bert'"):
        Model(6, "bert")


@pytest.mark.parametrize("mode, audio_shape", [("ave", (32, 16, 16)), ("hubert", (32, 32, 32)), ("wenet", (256, 16, 32))])
def test_a_narrow_unet_keeps_the_names_and_the_interface(mode, audio_shape):
    """The tests' small U-Net: SyncTalk's module names and input/output shapes, every channel count scaled."""
    full, narrow = Model(6, mode).state_dict(), fixture_unet(mode=mode, width=8).state_dict()
    assert list(narrow) == list(full)
    assert narrow["inc.inconv.0.conv.6.weight"].shape[0] == 8 and full["inc.inconv.0.conv.6.weight"].shape[0] == 32
    assert narrow["fuse_conv.0.double_conv.0.conv.0.weight"].shape[1] == 2 * 16 * 8  # [bottleneck, audio branch]
    assert sum(v.numel() for v in narrow.values()) < sum(v.numel() for v in full.values()) / 8
    with torch.no_grad():
        out = fixture_unet(mode=mode, width=8)(torch.rand(2, 6, 320, 320), torch.rand(2, *audio_shape))
    assert out.shape == (2, 3, 320, 320)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


@pytest.mark.parametrize("width", [0, 7, -8, 8.0])
def test_a_width_a_unet_cannot_have_is_refused(width):
    with pytest.raises(ValueError, match="U-Net width must be a positive even number of channels"):
        Model(6, "ave", width)
