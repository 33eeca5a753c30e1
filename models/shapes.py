"""The networks' tensor shapes and audio modes, without torch: what backends and the pipeline need to check
inputs, importable where nothing runs a PyTorch module (a run on a cached export never imports torch)."""

from __future__ import annotations

AUDIO_MODES = ("ave", "hubert", "wenet")

# Shape of the audio input (without batch) each audio branch expects.
AUDIO_INPUT_SHAPES: dict[str, tuple[int, int, int]] = {
    "ave": (32, 16, 16),
    "hubert": (32, 32, 32),
    "wenet": (256, 16, 32),
}
IMAGE_INPUT_SHAPE = (6, 320, 320)
OUTPUT_SHAPE = (3, 320, 320)

WINDOW_SHAPE = (1, 80, 16)  # the audio encoder's input (without batch): one mel window
FEATURE_SIZE = 512  # the audio encoder's output per window
