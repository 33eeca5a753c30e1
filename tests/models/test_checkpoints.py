"""Checkpoints load in their original layouts with weights_only=True; bad files get one clear line."""

from __future__ import annotations

import pytest
import torch

from synctalk_parity.errors import ParityError
from synctalk_parity.models import (
    fixture_audio_encoder,
    fixture_unet,
    load_audio_encoder,
    load_unet,
    save_audio_encoder,
    save_unet,
)


def test_golden_checkpoints_load_strictly(golden):
    unet = load_unet(golden / "weights" / "unet_328_ave.pth")
    encoder = load_audio_encoder(golden / "weights" / "audio_visual_encoder.pth")
    raw = torch.load(golden / "weights" / "audio_visual_encoder.pth", weights_only=True)
    assert not unet.training and not encoder.training
    assert torch.equal(encoder.state_dict()["audio_encoder.0.conv_block.0.weight"], raw["0.conv_block.0.weight"])


def test_save_and_load_round_trip_in_original_layouts(tmp_path):
    unet, encoder = fixture_unet(seed=3), fixture_audio_encoder(seed=3)
    save_unet(unet, tmp_path / "unet.pth")
    save_audio_encoder(encoder, tmp_path / "enc.pth")
    stored = torch.load(tmp_path / "enc.pth", weights_only=True)
    assert "0.conv_block.0.weight" in stored and not any(k.startswith("audio_encoder.") for k in stored)
    loaded = load_unet(tmp_path / "unet.pth")
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in unet.state_dict().items())
    loaded_enc = load_audio_encoder(tmp_path / "enc.pth")
    assert all(torch.equal(v, loaded_enc.state_dict()[k]) for k, v in encoder.state_dict().items())


def test_audio_encoder_with_prefixed_keys_loads_too(tmp_path):
    encoder = fixture_audio_encoder(seed=2)
    torch.save(encoder.state_dict(), tmp_path / "prefixed.pth")
    loaded = load_audio_encoder(tmp_path / "prefixed.pth")
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in encoder.state_dict().items())


def test_missing_and_unexpected_keys_are_listed_with_the_file(tmp_path):
    state = fixture_unet().state_dict()
    del state["outc.conv.bias"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ParityError) as err:
        load_unet(tmp_path / "bad.pth")
    message = str(err.value)
    assert str(tmp_path / "bad.pth") in message
    assert "1 missing key(s): outc.conv.bias" in message
    assert "1 unexpected key(s): extra.weight" in message
    assert "\n" not in message


def test_shape_mismatch_names_key_and_shapes(tmp_path):
    # a wenet checkpoint has the same keys as an ave one, with other audio-branch shapes
    torch.save(fixture_unet(mode="wenet").state_dict(), tmp_path / "wenet.pth")
    with pytest.raises(ParityError, match=r"shape mismatch.*audio_model\.conv1\.conv\.0\.weight \(512, 256, 1, 1\) vs \(64, 32, 1, 1\)"):
        load_unet(tmp_path / "wenet.pth", mode="ave")


def test_audio_encoder_checkpoint_given_as_unet_is_refused(tmp_path):
    save_audio_encoder(fixture_audio_encoder(), tmp_path / "enc.pth")
    with pytest.raises(ParityError, match=r"does not fit the U-Net \(ave\): 556 missing key\(s\)"):
        load_unet(tmp_path / "enc.pth")


def test_pickled_module_is_refused_with_what_to_do(tmp_path):
    torch.save(fixture_audio_encoder(), tmp_path / "module.pth")
    with pytest.raises(ParityError, match=r"not a plain state dict.*torch\.save\(model\.state_dict\(\), path\)"):
        load_audio_encoder(tmp_path / "module.pth")


def test_training_checkpoint_points_at_its_state_dict(tmp_path):
    torch.save({"epoch": 3, "state_dict": fixture_unet().state_dict()}, tmp_path / "train.pth")
    with pytest.raises(ParityError, match=r"training checkpoint.*under 'state_dict'"):
        load_unet(tmp_path / "train.pth")


def test_non_mapping_and_unreadable_and_missing_files(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ParityError, match="found list"):
        load_unet(tmp_path / "list.pth")
    (tmp_path / "junk.pth").write_bytes(b"this is not a checkpoint")
    with pytest.raises(ParityError, match="not a readable PyTorch checkpoint"):
        load_unet(tmp_path / "junk.pth")
    with pytest.raises(ParityError, match="checkpoint not found"):
        load_unet(tmp_path / "absent.pth")


def test_a_narrow_unet_checkpoint_loads_at_its_width(tmp_path):
    narrow = fixture_unet(seed=4, width=8)
    save_unet(narrow, tmp_path / "small.pth")
    loaded = load_unet(tmp_path / "small.pth")
    assert loaded.width == 8 and not loaded.training
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in narrow.state_dict().items())


def test_a_narrow_checkpoint_that_fits_no_width_is_described_against_synctalks(tmp_path):
    state = fixture_unet(width=8).state_dict()
    del state["outc.conv.bias"]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ParityError, match=r"does not fit the U-Net \(ave\): 1 missing key\(s\): outc\.conv\.bias; .*shape mismatch"):
        load_unet(tmp_path / "bad.pth")
