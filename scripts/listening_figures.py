"""Measure what the listening test weights hear, with the real pipeline: the figures of docs/listening-weights.md.

Usage (from the repository root, after `make setup`; the figures in the docs used sanders-mini, its talk_hb.wav
to make the weights and the golden 10 s clip as speech)::

    .venv/bin/python scripts/listening_figures.py --dataset DS --calibration DS/talk_hb.wav --speech talk_hb_10s.wav
    .venv/bin/python scripts/listening_figures.py ... --weights W     # or a folder written by `parity weights`

1. Hearing: `parity run` (the production pipeline, `--dump-every 1`, no comparison) on sanders-mini with the golden
   10 s speech clip and with 10 s of silence, 100 frames each: the mouth box's PSNR between the two runs, frame by
   frame (25th percentile, median, most different frame).
2. Motion follows speech: lip sync of the speech run against the audio's loudness (`harness/verdict/lip_sync.py`: the
   mouth box's darkening against its template, frame by frame, against the mean log-mel of each frame's 40 ms).
3. Each audio-path hypothesis of the simulation catalogue (`harness/ports/simulate.py`: the audio front end and the
   U-Net audio input), applied alone: the mouth box's PSNR against the reference over `--sample` frames spread over
   the clip's first 100 (MSE pooled over them), on the frames it changes for the STFT padding (the clip's last ones).

Prints a Markdown table and writes the figures as JSON (`--json`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FRAMES = 100


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, required=True, help="SyncTalk dataset folder (the docs: sanders-mini)")
    parser.add_argument("--speech", type=Path, required=True, help="speech clip the runs and hypotheses use (the docs: the golden talk_hb_10s.wav)")
    parser.add_argument("--calibration", type=Path, help="speech the weights are made for (the docs: the dataset's talk_hb.wav)")
    parser.add_argument("--weights", type=Path, help="folder with unet_328_ave.pth and audio_visual_encoder.pth (default: made for --dataset and --calibration)")
    parser.add_argument("--sample", type=int, default=20, help="frames per hypothesis (default 20)")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--skip-runs", action="store_true", help="only the hypotheses (no pipeline runs)")
    args = parser.parse_args()
    from synctalk_parity.reference.listening_weights import listening_weights

    if args.weights is None and args.calibration is None:
        parser.error("give --weights W, or --calibration WAV to make the weights for --dataset")
    if args.weights:
        unet, encoder = args.weights / "unet_328_ave.pth", args.weights / "audio_visual_encoder.pth"
    else:
        began = time.perf_counter()
        unet, encoder = listening_weights(args.dataset, args.calibration, note=print)
        print(f"weights: {unet.parent} ({time.perf_counter() - began:.0f} s)")
    figures: dict = {"weights": str(unet.parent)}
    if not args.skip_runs:
        figures["hearing"] = hearing(unet, encoder, args.dataset, args.speech)
        print(json.dumps(figures["hearing"], indent=1))
    figures["hypotheses"] = hypotheses(unet, encoder, args.sample, args.dataset, args.speech)
    print(table(figures["hypotheses"]))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return 0


def hearing(unet: Path, encoder: Path, dataset_path: Path, speech_wav: Path) -> dict:
    """Speech against silence through `parity run`, and how the speech run's mouth follows the loudness."""
    import soundfile

    from synctalk_parity.harness.pipeline.run import RunRequest, run
    from synctalk_parity.harness.verdict.dump import Dump
    from synctalk_parity.harness.verdict.lip_sync import audio_envelope, measure_lip_sync, mouth_motion
    from synctalk_parity.reference.audio import load_audio
    from synctalk_parity.reference.dataset import open_dataset
    from synctalk_parity.reference.frames import mouth_box

    with tempfile.TemporaryDirectory() as folder:
        silence = Path(folder) / "silence.wav"
        pcm = load_audio(speech_wav)
        soundfile.write(silence, np.zeros_like(pcm), 16000, subtype="PCM_16")
        dumps = {}
        for name, wav in (("speech", speech_wav), ("silence", silence)):
            began = time.perf_counter()
            run(RunRequest(Path(folder) / name, dataset=dataset_path, audio=wav, unet=unet, audio_encoder=encoder, frames=FRAMES, dump_every=1,
                           compare=False, save_frames=False))
            print(f"parity run on {name}: {time.perf_counter() - began:.0f} s")
            dumps[name] = Dump.open(Path(folder) / name / "dump")
        dataset = open_dataset(dataset_path)
        psnrs, outputs, boxes, templates = [], [], [], []
        for i in range(FRAMES):
            speech, quiet = dumps["speech"].frame("frame.output", i), dumps["silence"].frame("frame.output", i)
            box = tuple(int(v) for v in dumps["speech"].frame("frame.crop_box", i))
            x0, y0, x1, y1 = mouth_box(box)  # type: ignore[arg-type]
            diff = speech[y0:y1, x0:x1].astype(np.float64) - quiet[y0:y1, x0:x1]
            psnrs.append(10 * math.log10(255**2 / max(np.mean(diff**2), 1e-10)))
            outputs.append(speech)
            boxes.append(box)
            templates.append(dataset.templates[int(dumps["speech"].frame("frame.template_index", i))].read_image())
    sync = measure_lip_sync(mouth_motion(outputs, boxes, templates), envelope=audio_envelope(pcm, FRAMES))
    return {"frames": FRAMES, "psnr_p25": round(float(np.percentile(psnrs, 25)), 1), "psnr_median": round(float(np.median(psnrs)), 1),
            "psnr_min": round(float(np.min(psnrs)), 1),
            "lip_sync_vs_audio": {"offset_frames": sync.offset_frames, "score": sync.score, "windows": [(w.start, w.offset_frames, w.score) for w in sync.windows]}}


def hypotheses(unet_path: Path, encoder_path: Path, sample: int, dataset_path: Path, speech: Path) -> list[dict]:
    """Each audio-path hypothesis alone against the reference, on the mouth box."""
    from synctalk_parity.backends import create_backend, default_backend
    from synctalk_parity.backends.base import ModelSource
    from synctalk_parity.harness.ports.simulate import HYPOTHESES, Simulator, Variant
    from synctalk_parity.reference.audio import load_audio
    from synctalk_parity.reference.dataset import open_dataset
    from synctalk_parity.reference.frames import mouth_box

    backend = create_backend(default_backend(), ModelSource(unet=unet_path, audio_encoder=encoder_path))  # as parity run runs them
    backend.load()
    simulator = Simulator(open_dataset(dataset_path), load_audio(speech), backend.generate, backend.encode_audio)
    reference = Variant()
    total = simulator.frame_count(reference)
    spread = [int(i) for i in np.linspace(0, FRAMES - 1, sample).round()]
    rows = []
    for hypothesis in HYPOTHESES:
        if hypothesis.category not in ("audio front end", "U-Net audio input"):
            continue
        variant = hypothesis(reference)
        frames = spread
        if hypothesis.name == "stft_other_pad_mode":  # only the first and last two mel frames change: the clip's last frames
            count = simulator.frame_count(variant)
            frames = list(range(min(total, count) - 10, min(total, count)))
        began = time.perf_counter()
        theirs = simulator.frames(variant, frames)
        ours = simulator.frames(reference, frames)
        squared, pixels = 0.0, 0
        per_frame = []
        for i in frames:
            x0, y0, x1, y1 = mouth_box(simulator.box(reference, i))
            diff = theirs[i][y0:y1, x0:x1].astype(np.float64) - ours[i][y0:y1, x0:x1]
            squared += float(np.sum(diff**2))
            pixels += diff.size
            per_frame.append(10 * math.log10(255**2 / max(float(np.mean(diff**2)), 1e-10)))
        pooled = 10 * math.log10(255**2 / max(squared / pixels, 1e-10))
        rows.append({"hypothesis": hypothesis.name, "category": hypothesis.category, "frames": f"{frames[0]}..{frames[-1]} ({len(frames)})",
                     "psnr": round(min(pooled, 100.0), 1), "worst_frame_psnr": round(min(min(per_frame), 100.0), 1),
                     "seconds": round(time.perf_counter() - began, 1)})
        print(rows[-1], flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| hypothesis | frames | mouth box PSNR (pooled) | most changed frame | below 40 dB |", "|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| `{row['hypothesis']}` | {row['frames']} | {row['psnr']:.1f} dB | {row['worst_frame_psnr']:.1f} dB | "
                     f"{'yes' if row['psnr'] < 40 else 'no'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
