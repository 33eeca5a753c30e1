"""Make docs/lip-sync-strip.png: three demo frames (mouth closed, half open, open) beside the speech's loudness.

Usage (from the repository root, after `make setup`)::

    .venv/bin/python scripts/lip_sync_strip.py                    # runs `parity run` on the built-in demo in a temp folder
    .venv/bin/python scripts/lip_sync_strip.py --run parity-out   # or uses a demo run folder you already have

The run's frames (frames/*.png, or its dump) and its dump's crop boxes and templates give the mouth's motion (`harness/verdict/lip_sync.py`: how much
darker the mouth box is than its template) picks the frames: the most closed, the most open, and the one halfway.
Below the three crops, the loudness of the speech (log RMS per frame, grey) and the mouth's motion (red) over the
clip, with the three frames marked. The demo is seeded, so running it again gives the same picture.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TILE = 176  # px of each crop
PLOT_HEIGHT = 96
COLOURS = 96


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a `parity run` folder of the built-in demo (default: run it)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "lip-sync-strip.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="parity-strip-") as scratch:
        run = args.run if args.run is not None else demo_run(Path(scratch) / "run")
        strip = make_strip(run)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(strip[:, :, ::-1]).quantize(colors=COLOURS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1000:.0f} KB)")


def demo_run(out: Path) -> Path:
    """`parity run` on the built-in demo (every frame written as PNG)."""
    parity = Path(sys.executable).with_name("parity")
    command = [str(parity) if parity.exists() else "parity", "run", "--out", str(out), "--no-compare"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"lip_sync_strip.py: {' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return out


def make_strip(run: Path) -> np.ndarray:
    from synctalk_parity.cache import cache_folder
    from synctalk_parity.harness.verdict.dump import Dump
    from synctalk_parity.harness.verdict.lip_sync import audio_envelope, mouth_motion
    from synctalk_parity.reference.audio import load_audio
    from synctalk_parity.reference.dataset import open_dataset
    from synctalk_parity.reference.demo import make_demo

    demo = make_demo(cache_folder("demo"))
    dataset = open_dataset(demo.dataset_dir)
    dump = Dump.open(run / "dump")
    count = dump.frame_count
    pngs = [run / "frames" / f"{i:05d}.png" for i in range(count)]
    if all(p.is_file() for p in pngs):  # every frame, lossless
        frames = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in pngs]
    elif set(dump.frames("frame.output")) >= set(range(count)):
        frames = [dump.frame("frame.output", i) for i in range(count)]
    else:
        sys.exit(f"lip_sync_strip.py: {run} holds neither frames/*.png nor frame.output for every frame in dump/")
    boxes = [tuple(int(v) for v in dump.frame("frame.crop_box", i)) for i in range(count)]
    templates = [dataset.templates[int(dump.frame("frame.template_index", i))].read_image() for i in range(count)]
    motion = mouth_motion(frames, boxes, templates)
    envelope = audio_envelope(load_audio(demo.audio_path), count)
    order = np.argsort(motion)
    closed, opened = int(order[0]), int(order[-1])
    half = int(np.argmin(np.abs(motion - (motion[closed] + motion[opened]) / 2)))
    picks = [("closed", closed), ("half open", half), ("open", opened)]
    tiles = []
    for label, index in picks:
        x0, y0, x1, y1 = boxes[index]
        tile = cv2.resize(frames[index][y0:y1, x0:x1], (TILE, TILE), interpolation=cv2.INTER_AREA)
        cv2.rectangle(tile, (0, TILE - 20), (TILE, TILE), (255, 255, 255), -1)
        cv2.putText(tile, f"{label}, frame {index}", (6, TILE - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (40, 40, 40), 1, cv2.LINE_AA)
        tiles.append(tile)
    plot = draw_plot(envelope, motion, [index for _, index in picks], width=TILE * len(tiles))
    return np.vstack([np.hstack(tiles), plot])


def draw_plot(envelope: np.ndarray, motion: np.ndarray, marks: list[int], width: int) -> np.ndarray:
    """The loudness (grey) and the mouth's motion (red), each scaled to the plot's height, with the picked frames marked."""
    plot = np.full((PLOT_HEIGHT, width, 3), 255, np.uint8)
    margin = 6
    xs = np.linspace(margin, width - margin, len(envelope))

    def line(values: np.ndarray, colour: tuple[int, int, int]) -> None:
        low, high = np.percentile(values, 1), np.percentile(values, 99)
        ys = PLOT_HEIGHT - 16 - (np.clip(values, low, high) - low) / max(high - low, 1e-9) * (PLOT_HEIGHT - 28)
        points = np.stack([xs, ys], axis=1).round().astype(np.int32)
        cv2.polylines(plot, [points], False, colour, 1, cv2.LINE_AA)

    for index in marks:
        x = round(float(xs[index]))
        cv2.line(plot, (x, 4), (x, PLOT_HEIGHT - 14), (235, 200, 160), 1)
    line(envelope, (150, 150, 150))
    line(motion, (40, 40, 200))
    cv2.putText(plot, "speech loudness", (margin, PLOT_HEIGHT - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (120, 120, 120), 1, cv2.LINE_AA)
    cv2.putText(plot, "mouth opening (darker than the template)", (width // 3, PLOT_HEIGHT - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.38,
                (40, 40, 200), 1, cv2.LINE_AA)
    return plot


if __name__ == "__main__":
    main()
