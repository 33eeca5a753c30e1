"""Make the README's two pictures: the HTML report of a demo run, and one demo output frame, both small.

Usage (from the repository root, after `make setup`; needs headless Chromium: Debian `apt-get install chromium`)::

    .venv/bin/python scripts/screenshot.py                      # runs `parity run` on the demo in a temp folder
    .venv/bin/python scripts/screenshot.py --run parity-out     # or uses a run folder you already have

It writes `docs/report.png` (the top of report.html rendered by headless Chromium at a fixed window
size, downscaled and quantized to a 64-colour palette: under ~150 KB) and `docs/demo-frame.png` (one
output frame from the run's frames/, downscaled to 224 px wide). The demo is seeded and Chromium runs
with a fixed window, scale and virtual-time budget, so running it again gives the same pictures, apart
from the report header's run folder and time (and the fonts installed).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
WINDOW = (1280, 2190)  # Chromium's window (CSS pixels): the report's header, stages, PSNR plots and worst frame
REPORT_WIDTH = 800  # px of docs/report.png
REPORT_COLOURS = 64
FRAME_WIDTH = 224  # px of docs/demo-frame.png
FRAME_INDEX = 12  # the demo output frame shown (any would do; fixed so the picture is the same every time)
REPORT_LIMIT = 150_000  # bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="an existing `parity run` folder holding report.html and frames/ (default: run the demo)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="folder for report.png and demo-frame.png (default: docs/)")
    args = parser.parse_args()
    chromium = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    if chromium is None:
        sys.exit("screenshot.py: headless Chromium not found (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="parity-screenshot-") as scratch:
        run = args.run if args.run is not None else demo_run(Path(scratch) / "run")
        report = run / "report.html"
        if not report.is_file():
            sys.exit(f"screenshot.py: {report} not found; run `parity run --report html --out {run}` first")
        args.out.mkdir(parents=True, exist_ok=True)
        shot = Path(scratch) / "shot.png"
        render(chromium, report, shot, Path(scratch))
        write_report_png(shot, args.out / "report.png")
        write_frame_png(run / "frames", args.out / "demo-frame.png")
    for name in ("report.png", "demo-frame.png"):
        path = args.out / name
        print(f"wrote {path} ({path.stat().st_size / 1000:.0f} KB)")


def demo_run(out: Path) -> Path:
    """`parity run` on the built-in demo (it writes report.html by default for the demo)."""
    parity = Path(sys.executable).with_name("parity")
    command = [str(parity) if parity.exists() else "parity", "run", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"screenshot.py: {' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return out


def render(chromium: str, page: Path, shot: Path, scratch: Path) -> None:
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
               "--force-device-scale-factor=1", f"--user-data-dir={scratch / 'chromium-profile'}", "--virtual-time-budget=5000",
               f"--screenshot={shot}", f"--window-size={WINDOW[0]},{WINDOW[1]}", page.resolve().as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=scratch)
    if done.returncode != 0 or not shot.is_file():
        sys.exit(f"screenshot.py: Chromium failed on {page}:\n{done.stderr[-2000:]}")


def write_report_png(shot: Path, target: Path) -> None:
    """Downscale (area) to REPORT_WIDTH and quantize to a palette; refuse a blank page or an oversized file."""
    image = cv2.imread(str(shot), cv2.IMREAD_COLOR)
    if image is None or float(image.std()) < 10:
        sys.exit(f"screenshot.py: {shot} is blank; the report did not render")
    height = round(image.shape[0] * REPORT_WIDTH / image.shape[1])
    small = cv2.resize(image, (REPORT_WIDTH, height), interpolation=cv2.INTER_AREA)
    rgb = Image.fromarray(np.ascontiguousarray(small[:, :, ::-1]))
    rgb.quantize(colors=REPORT_COLOURS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(target, optimize=True)
    if target.stat().st_size > REPORT_LIMIT:
        print(f"screenshot.py: warning: {target} is {target.stat().st_size / 1000:.0f} KB, over {REPORT_LIMIT / 1000:.0f} KB")


def write_frame_png(frames: Path, target: Path) -> None:
    files = sorted(frames.glob("*.png"))
    if not files:
        sys.exit(f"screenshot.py: no frames in {frames}; run without --no-save-frames")
    frame = cv2.imread(str(files[min(FRAME_INDEX, len(files) - 1)]), cv2.IMREAD_COLOR)
    height = round(frame.shape[0] * FRAME_WIDTH / frame.shape[1])
    cv2.imwrite(str(target), cv2.resize(frame, (FRAME_WIDTH, height), interpolation=cv2.INTER_AREA), [cv2.IMWRITE_PNG_COMPRESSION, 9])


if __name__ == "__main__":
    main()
