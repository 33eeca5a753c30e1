"""Demo weights: a U-Net that behaves like a trained one on the demo avatar, made here in seconds.

An untrained U-Net's output is a nearly constant grey square, so the demo's mouths looked broken and its
comparison measured nothing (U-Net output max |diff| 6e-8 between ONNX Runtime and PyTorch, where trained
weights give ~3e-5). These weights start from the seeded fixture U-Net (`models/fixtures.py`) and are fit,
in closed form, to SyncTalk's own objective on the demo avatar: reconstruct the real 320 x 320 crop from the
network's input (real crop + masked crop) and the audio window:

1. BatchNorm statistics recalibrated on real demo inputs (cumulative averages over 8 templates spread over
   the clip, as `torch.optim.swa_utils.update_bn` does);
2. the input block's last 1x1 projection solved by least squares so that 6 of its 32 output channels carry
   the input image (the other 26 keep what the seeded weights computed); every later BatchNorm recalibrated;
3. the last up block's input from the untrained deep layers damped to 0.5% (their fp32 rounding error, ~1e-5 of
   their range after recalibration, otherwise reaches the output at full size: ONNX Runtime and PyTorch then
   differed by 3.7e-4, over the 1e-4 gate, where trained weights differ by ~3e-5; damped to 1% they differed by
   1.0e-5 with 99.95% of mouth pixels identical, which left the demo's pasted region 0.02% above its gate),
   every later BatchNorm recalibrated, and the block's projection solved so that 3 of its 16 channels carry
   the target's logits;
   the residual block after it recalibrated and its projection solved to what the first left over;
4. the output 1x1 convolution solved by least squares from its 16 input channels to the target's logits.

Each solve accumulates the normal equations batch by batch (float64, a ridge of 1e-3 of the mean diagonal), so memory stays small.
Everything else keeps its seeded weights and recalibrated statistics, so every layer takes part in the output
(the audio branch too). Measured on 6 held-out demo templates: 33 dB PSNR against the real crop (a face with the
avatar's own mouth, teeth and lips); ONNX Runtime against PyTorch max |diff| 5.4e-6, mean 3.3e-7, 99.98% of
truncated mouth pixels identical (the golden fixture weights on real data: ~3e-5); changing the audio window
moves the output by up to 0.02 (so audio mistakes show). The audio encoder stays the seeded fixture (its
features are real-valued and vary with the speech, which is what the gates need). Not a SyncTalk model:
the mouth does not follow the audio.

Made on first use (23-31 s on 2 shared cores) and cached under `<cache>/weights/<key>/` as original-layout
checkpoints (`unet_328_ave.pth`, 49 MB; `audio_visual_encoder.pth`, 11 MB), keyed by this code, the demo's
parameters and the library versions, so everything downstream (exports, reference dumps) is keyed by their sha256
like any user's checkpoints. Deterministic on one machine: made again, every tensor is equal (the files'
bytes differ by the random serialization id torch.save writes; the cached files are made once).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..cache import REFERENCE_LIBRARIES, build_entry, cache_folder, check_entry, environment, key_of

DEMO_WEIGHTS_VERSION = 1
UNET_FILE, ENCODER_FILE = "unet_328_ave.pth", "audio_visual_encoder.pth"
FIT_TEMPLATES = 8  # templates used for the fit and the recalibration, spread over the demo's 40
BATCH = 2
RIDGE = 1e-3  # relative to the mean diagonal of the normal equations
DEEP_SCALE = 0.005
DEMO_WEIGHTS_LABEL = "demo weights (fit to the built-in demo avatar; not a SyncTalk model)"


def demo_weights(note: Callable[[str], None] | None = None) -> tuple[Path, Path]:
    """`(unet_328_ave.pth, audio_visual_encoder.pth)` of the demo weights, made now when not cached."""
    parts = _parts()
    entry = cache_folder("weights") / key_of(parts)
    files = entry / UNET_FILE, entry / ENCODER_FILE
    if check_entry(entry) is None:
        return files
    if note is not None:
        note("Making the demo weights (once, about 30 s): a closed-form fit of the U-Net to the demo avatar")
    build_entry(entry, "weights", DEMO_WEIGHTS_LABEL, parts, make_demo_weights)
    return files


def is_demo_weights(path: Path | str | None) -> bool:
    """Whether `path` is one of the cached demo checkpoints."""
    if path is None:
        return False
    folder = cache_folder("weights").resolve()
    return Path(path).resolve().parent.parent == folder


def checkpoint_label(path: Path | str) -> str:
    """How a summary names a checkpoint: the demo weights by that name, any other by path; both with sha256."""
    from ..cache import sha256_file

    name = DEMO_WEIGHTS_LABEL if is_demo_weights(path) else str(path)
    return f"{name} (sha256 {sha256_file(path)})"


def make_demo_weights(out_dir: Path) -> tuple[Path, Path]:
    """Fit the demo U-Net (module docstring) and write both checkpoints into `out_dir`."""
    import torch

    from ..models.checkpoints import save_audio_encoder, save_unet
    from ..models.fixtures import fixture_audio_encoder, fixture_unet

    images, audio = _fit_inputs()
    with torch.random.fork_rng(devices=[]), torch.inference_mode():
        torch.manual_seed(0)
        unet, encoder = fixture_unet(seed=0), fixture_audio_encoder(seed=0)
        fit_unet(unet, torch.from_numpy(images), torch.from_numpy(audio))
    out_dir.mkdir(parents=True, exist_ok=True)
    return save_unet(unet, out_dir / UNET_FILE), save_audio_encoder(encoder, out_dir / ENCODER_FILE)


def fit_unet(net: Any, images: Any, audio: Any) -> None:
    """Steps 1-4 of the module docstring, in place, on `images` (N,6,320,320) and `audio` (N,32,16,16).

    Two passes run the whole network (the recalibration after the input block's solve, then one that keeps
    the last block's inputs); the input block's passes run that block alone, the last block's on those inputs."""
    import torch
    from torch import nn

    net.eval()
    target = images[:, :3].clamp(0.01, 0.99)
    logits = torch.log(target / (1 - target))
    batches = [slice(i, i + BATCH) for i in range(0, len(images), BATCH)]
    last = net.up5.conv.double_conv
    captured: list[tuple[Any, Any]] = []  # the last up block's inputs, batch by batch

    def run_input_block() -> None:
        for rows in batches:
            net.inc(images[rows])

    def run_all() -> None:
        for rows in batches:
            net(images[rows], audio[rows])

    def capture_last_inputs() -> None:  # in eval mode, as the network will run
        with _hooks(net.up5.register_forward_pre_hook(lambda module, args: captured.append(args))):
            run_all()

    def run_last_blocks() -> None:
        for deep, skip in captured:
            net.outc(net.up5(deep, skip))

    def recalibrate(modules: list[nn.Module], run: Callable[[], None]) -> None:
        norms = [m for module in modules for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # cumulative average over the passes
            norm.train()
        run()
        net.eval()

    recalibrate([net.inc], run_input_block)  # the rest is recalibrated after the input block's solve
    inc = net.inc.inconv[0].conv
    # the input block's projection: channels 0..5 carry the input image (scaled to about unit range)
    _solve_projection(run_input_block, inc[6], inc[7], lambda x, out, i: torch.cat([images[i] * 4 - 2, out[:, 6:]], 1))
    # the last block sees [upsampled deep features, input block]: damp the deep part (DEEP_SCALE), so that the
    # untrained deep layers' rounding error (~1e-5 of their range) is not carried to the output at full size
    last[0].conv[0].weight[:, : last[0].conv[0].in_channels // 2] *= DEEP_SCALE
    recalibrate([m for name, m in net.named_children() if name != "inc"], run_all)
    capture_last_inputs()
    _solve_projection(run_last_blocks, last[0].conv[6], last[0].conv[7],
                      lambda x, out, i: torch.cat([logits[i], torch.zeros_like(out[:, 3:])], 1))
    recalibrate([last[1]], run_last_blocks)
    # the residual block after it: its projection fit to what the first block left over
    block_input: dict[str, Any] = {}
    with _hooks(last[1].register_forward_pre_hook(lambda module, args: block_input.__setitem__("y", args[0]))):
        _solve_projection(run_last_blocks, last[1].conv[6], last[1].conv[7],
                          lambda x, out, i: torch.cat([logits[i], torch.zeros_like(out[:, 3:])], 1) - block_input["y"])
    weight, bias = _least_squares(run_last_blocks, net.outc.conv, lambda x, out, i: logits[i])
    net.outc.conv.weight.copy_(weight.reshape(net.outc.conv.weight.shape))
    net.outc.conv.bias.copy_(bias)


def _solve_projection(run: Callable[[], None], conv: Any, norm: Any, target: Callable) -> None:
    """Set the 1x1 `conv` (no bias) and the BatchNorm after it so that `norm(conv(x))` is the least-squares fit
    of `target`; the BatchNorm becomes the identity plus the fit's offset."""
    weight, bias = _least_squares(run, conv, target, output_of=norm)
    conv.weight.copy_(weight.reshape(conv.weight.shape))
    norm.running_mean.zero_()
    norm.running_var.fill_(1 - norm.eps)
    norm.weight.fill_(1)
    norm.bias.copy_(bias)


def _least_squares(run: Callable[[], None], conv: Any, target: Callable, output_of: Any | None = None) -> tuple[Any, Any]:
    """Weights `(out, in)` and bias `(out,)` of the 1x1 map from `conv`'s input to `target(x, out, rows)`,
    by normal equations accumulated over every batch (float64, ridge `RIDGE`)."""
    import torch

    sums: dict[str, Any] = {}
    taken: dict[str, Any] = {}
    seen = [0]

    def take_input(module: Any, args: tuple) -> None:
        taken["x"] = args[0]

    def accumulate(module: Any, args: tuple, out: Any) -> None:
        x = taken["x"]
        rows = slice(seen[0], seen[0] + len(x))
        seen[0] += len(x)
        y = target(x, out, rows)
        a = torch.cat([x, torch.ones_like(x[:, :1])], 1).permute(0, 2, 3, 1).reshape(-1, x.shape[1] + 1).double()
        b = y.permute(0, 2, 3, 1).reshape(-1, y.shape[1]).double()
        sums["ata"] = sums.get("ata", 0) + a.T @ a
        sums["atb"] = sums.get("atb", 0) + a.T @ b

    with _hooks(conv.register_forward_pre_hook(take_input), (output_of or conv).register_forward_hook(accumulate)):
        run()
    ata = sums["ata"]
    ridge = RIDGE * torch.trace(ata) / len(ata)
    solution = torch.linalg.solve(ata + ridge * torch.eye(len(ata), dtype=ata.dtype), sums["atb"]).float()
    return solution[:-1].T.contiguous(), solution[-1].contiguous()


@contextmanager
def _hooks(*handles: Any) -> Iterator[None]:
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _fit_inputs() -> tuple[Any, Any]:
    """U-Net inputs and audio windows of `FIT_TEMPLATES` demo templates spread over the clip (float32)."""
    import numpy as np
    import torch

    from ..models.fixtures import fixture_audio_encoder
    from . import audio as A
    from . import frames as F
    from .dataset import open_dataset
    from .demo import make_demo

    demo = make_demo(cache_folder("demo"))
    dataset = open_dataset(demo.dataset_dir)
    chosen = np.linspace(0, dataset.template_count - 1, FIT_TEMPLATES).round().astype(int)
    images = np.stack([F.unet_input(F.crop_328(dataset.templates[i].read_image(), dataset.templates[i].box)) for i in chosen])
    windows = A.mel_windows(A.mel_spectrogram(A.load_audio(demo.audio_path)))
    encoder = fixture_audio_encoder(seed=0)
    with torch.inference_mode():
        features = A.pad_features(A.encode_windows(lambda w: encoder(torch.from_numpy(w)).numpy(), windows))
    audio = np.stack([A.unet_audio_window(features, int(i)) for i in chosen])
    return images, audio


def _parts() -> dict[str, Any]:
    """The key: this code and the demo's (their digest), and the libraries that compute them. Not the package version
    (the digest says what changed) nor the CPU's instruction set: made on another ISA the weights may differ in their
    last bits and are as good. What is computed *from* them (exports, reference dumps) is keyed by their sha256 and
    by both, so a new version or ISA recomputes those, not the weights (whose bytes would differ: torch.save writes
    a random serialization id)."""
    env = environment(("models", "reference"), REFERENCE_LIBRARIES)
    return {
        "inputs": {"what": "demo weights", "version": DEMO_WEIGHTS_VERSION, "templates": FIT_TEMPLATES},
        "environment": {k: v for k, v in env.items() if k not in ("synctalk-parity", "ONEDNN_MAX_CPU_ISA", "cpu_isa")},
    }
