"""Load and save SyncTalk_2D checkpoints in their original layouts, always with `weights_only=True`.

- U-Net: a plain state dict of `Model` (`unet_328.py` names). A narrower U-Net of the same architecture
  (`Model(width=...)`, the tests' small U-Net) loads too: its width is read from the input block's weights.
- Audio encoder: `audio_visual_encoder.pth`, the state dict of the inner Sequential, i.e. keys
  without the `audio_encoder.` prefix. Files with the prefix are accepted too.

Every problem a user can fix raises `ParityError` with one line naming the file and what to do.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..atomic import writing
from ..cache import sha256_file
from ..errors import ParityError
from .audio_encoder import AudioEncoder
from .fixtures import fixture_audio_encoder, fixture_unet
from .unet import AUDIO_MODES, DEFAULT_WIDTH, Model, check_width

AUDIO_ENCODER_PREFIX = "audio_encoder."
_SHOW = 5  # offending keys listed in a message
_WIDTH_KEY = "inc.inconv.0.conv.6.weight"  # the input block's 1x1 projection: (width, 2 * 6, 1, 1)


def load_unet(path: str | os.PathLike, mode: str = "ave") -> Model:
    """A `Model` in eval mode with the weights of the U-Net checkpoint at `path`."""
    if mode not in AUDIO_MODES:
        raise ParityError(f"unknown U-Net audio mode {mode!r}: use one of {', '.join(AUDIO_MODES)}")
    state = read_state_dict(path)
    width = unet_width(state)
    if width != DEFAULT_WIDTH:
        narrow = Model(6, mode, width)
        if _fits(narrow, state):
            narrow.load_state_dict(state, strict=True)
            return narrow.eval()
    model = Model(6, mode)  # SyncTalk's width; a file that fits no width is described against it
    _load_into(model, state, path, what=f"U-Net ({mode})")
    return model.eval()


def unet_width(state: Mapping[str, torch.Tensor]) -> int:
    """The channel width of the U-Net whose state dict is `state`: the input block's output channels (SyncTalk's
    32); the default where that weight is absent or not a width a U-Net can have."""
    weight = state.get(_WIDTH_KEY)
    if isinstance(weight, torch.Tensor) and weight.ndim == 4:
        try:
            return check_width(int(weight.shape[0]))
        except ValueError:
            pass
    return DEFAULT_WIDTH


def load_audio_encoder(path: str | os.PathLike) -> AudioEncoder:
    """An `AudioEncoder` in eval mode with the weights of `audio_visual_encoder.pth` at `path`."""
    state = read_state_dict(path)
    if not any(k.startswith(AUDIO_ENCODER_PREFIX) for k in state):
        state = {AUDIO_ENCODER_PREFIX + k: v for k, v in state.items()}
    model = AudioEncoder()
    _load_into(model, state, path, what="audio encoder")
    return model.eval()


def load_models(
    unet: str | os.PathLike | None, audio_encoder: str | os.PathLike | None, mode: str = "ave"
) -> tuple[Model, AudioEncoder, dict[str, str]]:
    """Both networks: from checkpoints where given, fixture weights (seed 0) where not.

    The labels say where each came from (`{"unet": ..., "audio_encoder": ...}`), for summaries.
    """
    if unet is not None:
        unet_model, unet_label = load_unet(unet, mode), f"{unet} (sha256 {sha256_file(unet)[:12]})"
    else:
        unet_model, unet_label = fixture_unet(seed=0, mode=mode), FIXTURE_LABEL + " (untrained: output nearly constant)"
    if audio_encoder is not None:
        encoder, encoder_label = load_audio_encoder(audio_encoder), f"{audio_encoder} (sha256 {sha256_file(audio_encoder)[:12]})"
    else:
        encoder, encoder_label = fixture_audio_encoder(seed=0), FIXTURE_LABEL
    return unet_model, encoder, {"unet": unet_label, "audio_encoder": encoder_label}


FIXTURE_LABEL = "fixture weights, seed 0"


def save_unet(model: Model, path: str | os.PathLike) -> Path:
    """Write `model` as an original-layout U-Net checkpoint (atomically)."""
    return _atomic_save(model.state_dict(), path)


def save_audio_encoder(model: AudioEncoder, path: str | os.PathLike) -> Path:
    """Write `model` as `audio_visual_encoder.pth` does: inner Sequential keys, no prefix."""
    state = {k[len(AUDIO_ENCODER_PREFIX):]: v for k, v in model.state_dict().items()}
    return _atomic_save(state, path)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensor state dict stored at `path`, or a `ParityError` saying what was found instead."""
    path = Path(path)
    if not path.is_file():
        raise ParityError(f"{path}: checkpoint not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ParityError(
            f"{path}: not a plain state dict (it pickles Python objects, e.g. a whole nn.Module; "
            f"refusing to unpickle it). Re-save it with torch.save(model.state_dict(), path)"
        ) from exc
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ParityError(f"{path}: not a readable PyTorch checkpoint ({first})") from exc
    if not isinstance(obj, Mapping):
        raise ParityError(
            f"{path}: expected a state dict (a mapping of names to tensors), found {type(obj).__name__}"
        )
    non_tensors = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if non_tensors:
        inner = [k for k in ("state_dict", "model_state_dict", "model", "net") if isinstance(obj.get(k), Mapping)]
        hint = (
            f"; it holds a state dict under {inner[0]!r}: pass torch.load(path)[{inner[0]!r}] "
            f"saved on its own (torch.save(ckpt[{inner[0]!r}], 'weights.pth'))"
            if inner
            else "; pass a file saved with torch.save(model.state_dict(), path)"
        )
        raise ParityError(
            f"{path}: a training checkpoint or other dict, not a state dict "
            f"(top-level keys: {', '.join(map(str, list(obj)[:_SHOW]))}){hint}"
        )
    return dict(obj)


def _fits(model: nn.Module, state: Mapping[str, torch.Tensor]) -> bool:
    expected = model.state_dict()
    return expected.keys() == state.keys() and all(tuple(state[k].shape) == tuple(v.shape) for k, v in expected.items())


def _load_into(model: nn.Module, state: Mapping[str, torch.Tensor], path, what: str) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_first(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_first(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es) (file vs model): {_first(mismatched)}")
    if problems:
        raise ParityError(f"{path}: does not fit the {what}: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


def _first(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOW])
    return shown + (", ..." if len(items) > _SHOW else "")


def _atomic_save(state: Mapping[str, torch.Tensor], path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with writing(path) as tmp:
        torch.save(dict(state), tmp)
    return path
