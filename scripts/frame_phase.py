"""The frame phase as issue 24 measures it: `parity run --no-compare`'s whole-process rate from a short and a long run,
beside plain ONNX Runtime model-only (a default `InferenceSession`, in a process of its own) on the same U-Net export.

    .venv/bin/python scripts/frame_phase.py --dataset DS --audio SPEECH.wav --unet U.pth --audio-encoder E.pth \
        [--rounds 10] [--short 25] [--long 249] [--calls 200] [--warmup 20] [-- more parity run options]

First one untimed `parity run --frames SHORT` (it makes the export when the cache lacks it, and its result.json names the
export folder and the stream count). Then each round runs four processes, in an order that rotates round by round, so a
busy moment of a shared machine falls on each in turn:
- `parity run --no-compare --frames SHORT` and `--frames LONG`, timed whole (start-up included). The pipeline's rate is
  (LONG - SHORT) / (t_LONG - t_SHORT): the start-up, the audio and the last frames' tail are in both and cancel.
- plain ONNX Runtime on that export's `unet.onnx`: `InferenceSession` with default options on the CPU, `--warmup` batch-1
  calls untimed, then `--calls` timed inside its process (random inputs of the export's shapes).
- the same calls the pipeline's way: the toolkit's own session (`backends/onnxruntime.py`: spinning off), as many calls
  at once as the run used (result.json's `streams`), each on its share of the CPUs.
The ratio is taken round by round (pipeline rate over plain ORT's rate in the same round). Prints each round, the median
ratio with its quartiles and range, and the rounds at 0.9x or more (the issue's target), and splits it in two: the
network the pipeline's way against plain ORT, and the pipeline against its own network (what the work outside the
network costs); then one JSON line.
Compare ratios only; frames/s from two machines, or two days of one shared machine, do not compare.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 0.9  # issue 24: the end-to-end rate at least 0.9x plain ORT model-only

# the U-Net model-only, batch 1, random inputs of the export's shapes: STREAMS 0 is plain ORT (a default session, one call
# at a time); otherwise the pipeline's way (the toolkit's own session, backends/onnxruntime.py, STREAMS calls at once on
# the threads the backend gives each)
MODEL_ONLY = """
import sys, threading, time
import numpy as np
path, warmup, calls, streams = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if streams == 0:
    import onnxruntime as ort
    session, streams = ort.InferenceSession(path, providers=["CPUExecutionProvider"]), 1
else:
    from synctalk_parity.backends.onnxruntime import create_session, unet_session_threads
    session = create_session(path, "unet", "CPUExecutionProvider", unet_session_threads(streams, None))
rng = np.random.default_rng(0)
feeds = {i.name: rng.random([d if isinstance(d, int) else 1 for d in i.shape], dtype=np.float32) for i in session.get_inputs()}
def calls_of(count):
    for _ in range(count):
        session.run(None, feeds)
def at_once(count):
    if streams == 1:
        return calls_of(count)
    workers = [threading.Thread(target=calls_of, args=(count // streams + (k < count % streams),)) for k in range(streams)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
at_once(warmup)
start = time.perf_counter()
at_once(calls)
print(calls / (time.perf_counter() - start))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--audio", required=True)
    parser.add_argument("--unet", required=True)
    parser.add_argument("--audio-encoder", required=True)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--short", type=int, default=25, help="frames of the short run (default 25)")
    parser.add_argument("--long", type=int, default=249, help="frames of the long run (default 249)")
    parser.add_argument("--calls", type=int, default=200, help="plain ORT's timed calls (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="plain ORT's untimed calls first (default 20)")
    parser.add_argument("--parity", default=str(Path(sys.executable).with_name("parity")), help="the parity command (default: beside this Python)")
    parser.add_argument("more", nargs="*", help="after --: more options for parity run (--streams 1, --no-save-frames, ...)")
    args = parser.parse_args()
    if args.rounds < 1 or not 0 < args.short < args.long or args.calls < 1 or args.warmup < 0:
        parser.error("needs --rounds >= 1, 0 < --short < --long, --calls >= 1 and --warmup >= 0")

    work = Path(tempfile.mkdtemp(prefix="frame-phase-"))
    try:
        common = [args.parity, "run", "--backend", "onnxruntime", "--dataset", args.dataset, "--audio", args.audio,
                  "--unet", args.unet, "--audio-encoder", args.audio_encoder, "--no-compare", *args.more]

        def parity_run(frames: int) -> float:
            out = work / f"run-{frames}"
            shutil.rmtree(out, ignore_errors=True)
            start = time.perf_counter()
            done = subprocess.run([*common, "--frames", str(frames), "--out", str(out)], capture_output=True, text=True)
            seconds = time.perf_counter() - start
            if done.returncode != 0:
                sys.exit(f"parity run --frames {frames} failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-500:]}")
            return seconds

        parity_run(args.short)  # untimed: makes the export if the cache lacks it
        result = json.loads((work / f"run-{args.short}" / "result.json").read_text())
        onnx = Path(result["backend"]["describe"]["export_dir"]) / "unet.onnx"
        if not onnx.is_file():
            sys.exit(f"{onnx}: the run's U-Net export is not there")

        streams = int(result["backend"]["describe"].get("streams", "1"))

        def model_only(streams: int) -> float:
            done = subprocess.run([sys.executable, "-c", MODEL_ONLY, str(onnx), str(args.warmup), str(args.calls), str(streams)],
                                  capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            if done.returncode != 0:
                sys.exit(f"ONNX Runtime model-only on {onnx} failed: {done.stderr.strip()[-500:]}")
            return float(done.stdout.split()[-1])

        steps = {"short": lambda: parity_run(args.short), "long": lambda: parity_run(args.long),
                 "ort": lambda: model_only(0), "ours": lambda: model_only(streams)}
        order = ["short", "long", "ort", "ours"]
        print(f"{args.rounds} rounds: parity run --no-compare at {args.short} and {args.long} frames; model-only "
              f"({args.calls} calls after {args.warmup}) on {onnx}: plain ORT (a default session) and the pipeline's way "
              f"({streams} calls at once)", flush=True)
        rounds = []
        for number in range(args.rounds):
            turn = order[number % len(order):] + order[:number % len(order)]
            got = {name: steps[name]() for name in turn}
            rate = (args.long - args.short) / (got["long"] - got["short"])
            rounds.append({"t_short": got["short"], "t_long": got["long"], "pipeline": rate, "plain_ort": got["ort"],
                           "pipeline_way": got["ours"], "ratio": rate / got["ort"]})
            print(f"round {number + 1}: {args.short} frames {got['short']:.2f} s, {args.long} frames {got['long']:.2f} s, "
                  f"pipeline {rate:.2f} frames/s, plain ORT {got['ort']:.2f}: {rate / got['ort']:.2f}x; "
                  f"the network the pipeline's way {got['ours']:.2f} ({got['ours'] / got['ort']:.2f}x plain ORT, "
                  f"the pipeline {rate / got['ours']:.2f}x of it)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ratios = [r["ratio"] for r in rounds]
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    met = sum(ratio >= TARGET for ratio in ratios)
    print(f"ratio: median {statistics.median(ratios):.2f}x, quartiles {quartiles[0]:.2f} and {quartiles[2]:.2f}, "
          f"range {min(ratios):.2f}..{max(ratios):.2f}; {met} of {len(ratios)} rounds at {TARGET}x or more")
    network = [r["pipeline_way"] / r["plain_ort"] for r in rounds]
    outside = [r["pipeline"] / r["pipeline_way"] for r in rounds]
    print(f"of which: the network the pipeline's way against plain ORT, median {statistics.median(network):.2f}x "
          f"({min(network):.2f}..{max(network):.2f}); the pipeline against its network, median "
          f"{statistics.median(outside):.2f}x ({min(outside):.2f}..{max(outside):.2f})")
    print(json.dumps({"median_ratio": statistics.median(ratios), "quartiles": [quartiles[0], quartiles[2]],
                      "range": [min(ratios), max(ratios)], "rounds": rounds, "export": str(onnx),
                      "parity_run": common[1:]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
