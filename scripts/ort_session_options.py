"""ONNX Runtime session options side by side, model-only: U-Net batch-1 frames/s of one export under each option set.

    .venv/bin/python scripts/ort_session_options.py EXPORT_DIR [--frames 16] [--rounds 4]

Every session is created and warmed up first; then each round runs `--frames` batch-1 U-Net frames, each
frame once on every option set in an order that rotates frame by frame (A B C, B C A, ...), so a busy moment
of a shared machine falls on all of them (`--frames` is rounded up to a multiple of the option sets, so each
takes every place in the order equally); a round's frames/s per option set is its frames over the sum of
its run times. Prints, per option set, the median frames/s and its ratio to the toolkit's session
(`backends/onnxruntime.py`: default graph optimizations, intra-op spinning off), pair by pair within a round
(median, min..max), then one JSON line. Inputs: the built-in demo's U-Net inputs (its audio windows from the export's encoder).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

BASELINE = "toolkit"


def option_sets(which: str) -> dict[str, dict]:
    """name -> {"level", "config" (session config entries), "mode", "inter"}; "toolkit" is what backends/onnxruntime.py
    does. Spinning stays off in all but "ort-default": interleaved frame by frame, a spinning session's threads
    would also slow the session run after it."""
    off = {"session.intra_op.allow_spinning": "0"}
    all_ = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sets = {
        BASELINE: {"level": all_, "config": off},
        "toolkit again (A/A control)": {"level": all_, "config": off},
        "ort-default (spinning on)": {"level": all_, "config": {}},
        "extended (no layout/NCHWc)": {"level": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "config": off},
        "layout level": {"level": ort.GraphOptimizationLevel.ORT_ENABLE_LAYOUT, "config": off},
        "dynamic_block_base 4": {"level": all_, "config": {**off, "session.dynamic_block_base": "4"}},
        "denormal as zero": {"level": all_, "config": {**off, "session.set_denormal_as_zero": "1"}},
        "parallel inter-op 2": {"level": all_, "config": off, "mode": ort.ExecutionMode.ORT_PARALLEL, "inter": 2},
    }
    if which == "all":
        return sets
    chosen = [name.strip() for name in which.split(",")]
    return {name: sets[name] for name in dict.fromkeys([BASELINE, "toolkit again (A/A control)", *chosen])}


def session(path: Path, spec: dict) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = spec["level"]
    for key, value in spec["config"].items():
        options.add_session_config_entry(key, value)
    if "mode" in spec:
        options.execution_mode = spec["mode"]
    if "inter" in spec:
        options.inter_op_num_threads = spec["inter"]
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def inputs(export: Path, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Real U-Net inputs: the built-in demo's first frames (16 at most, cycled), their audio windows from the
    export's own audio encoder."""
    from synctalk_parity.harness.inputs import demo_clip, network_inputs

    encoder = ort.InferenceSession(str(export / "audio_encoder.onnx"), providers=["CPUExecutionProvider"])
    images, audio, _ = network_inputs(*demo_clip(), lambda windows: encoder.run(None, {"mel_window": windows})[0], min(frames, 16))
    pick = np.arange(frames) % len(images)
    return np.ascontiguousarray(images[pick]), np.ascontiguousarray(audio[pick])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", type=Path, help="export folder holding unet.onnx (parity export, or the cache's)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--only", default="all", help="comma-separated option-set names (the toolkit's is always in)")
    args = parser.parse_args()
    images, audio = inputs(args.export, args.frames)
    specs = option_sets(args.only)
    sessions = {name: session(args.export / "unet.onnx", spec) for name, spec in specs.items()}
    for s in sessions.values():  # warm-up
        for i in range(2):
            s.run(["mouth"], {"image": images[i : i + 1], "audio": audio[i : i + 1]})
    names = list(sessions)
    frames = -(-args.frames // len(names)) * len(names)  # a multiple of the sets: each takes every place in the order equally
    images, audio = inputs(frames)
    fps: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.rounds):
        seconds = dict.fromkeys(names, 0.0)
        for i in range(frames):
            shift = i % len(names)
            for name in names[shift:] + names[:shift]:
                feed = {"image": images[i : i + 1], "audio": audio[i : i + 1]}
                start = time.perf_counter()
                sessions[name].run(["mouth"], feed)
                seconds[name] += time.perf_counter() - start
        for name in names:
            fps[name].append(frames / seconds[name])
    report = {}
    for name in names:
        ratios = [a / b for a, b in zip(fps[name], fps[BASELINE], strict=True)]
        report[name] = {"fps_median": statistics.median(fps[name]), "fps": fps[name], "ratio_median": statistics.median(ratios),
                        "ratio_min": min(ratios), "ratio_max": max(ratios)}
        print(f"{name:28s} {report[name]['fps_median']:6.2f} fps  x{report[name]['ratio_median']:.3f} "
              f"({report[name]['ratio_min']:.3f}..{report[name]['ratio_max']:.3f}) vs {BASELINE}")
    print(json.dumps({"onnxruntime": ort.__version__, "frames": frames, "rounds": args.rounds, "results": report}))


if __name__ == "__main__":
    main()
