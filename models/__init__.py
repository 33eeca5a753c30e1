"""PyTorch models of SyncTalk_2D with the original module names, checkpoint I/O and fixture weights."""

from .audio_encoder import AudioEncoder
from .checkpoints import load_audio_encoder, load_models, load_unet, read_state_dict, save_audio_encoder, save_unet
from .fixtures import fixture_audio_encoder, fixture_unet
from .unet import AUDIO_INPUT_SHAPES, AUDIO_MODES, Model

__all__ = [
    "AUDIO_INPUT_SHAPES",
    "AUDIO_MODES",
    "AudioEncoder",
    "Model",
    "fixture_audio_encoder",
    "fixture_unet",
    "load_audio_encoder",
    "load_models",
    "load_unet",
    "read_state_dict",
    "save_audio_encoder",
    "save_unet",
]
