"""Run folders as `parity run` / `compare` / `bench` leave them, for the report tests: result.json following the
contract (written with its one codec: a non-finite number by name, PSNR of identical frames here "Infinity") and
worst-frame PNGs.

The report writers only read result.json and the PNGs it names, so these folders are all they need.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from synctalk_parity.harness.verdict.result import json_text

CLIP_STAGES = ("audio.pcm", "audio.mel", "audio.windows", "audio.features")
FRAME_STAGES = ("frame.template_index", "frame.crop_box", "frame.crop_328", "frame.unet_audio", "frame.unet_input",
                "frame.unet_output", "frame.mouth", "frame.pasted_region", "frame.output")
IMAGE_STAGES = ("frame.crop_328", "frame.mouth", "frame.pasted_region", "frame.output")
FRAMES = list(range(12))
WORST_FRAME = 7
UNET_FAILURE = ("frame.unet_output: frame 7, element (1, 161, 170): reference 0.8125, candidate 0.7734 "
                "(|diff| 0.0391 > atol 0.002 + rtol 0.01 x |reference|); 2,113 of 307,200 elements (0.69%) outside")
OUTPUT_FAILURE = "frame.output: frame 7: PSNR 38.41 dB < 45 dB; worst pixel (412, 655, 2): reference 131, candidate 117"


def stage_metrics(stage: str, passed: bool = True, failure: str | None = None, worse_from: int | None = None) -> dict:
    """A StageResult as result.json holds it; frames from `worse_from` on differ more."""
    per = "clip" if stage.startswith("audio.") else "frame"
    image = stage in IMAGE_STAGES
    psnr_series = [math.inf if worse_from is None or frame < 3 else (52.0 - frame if frame < worse_from else 38.4 + (frame - worse_from) * 0.3)
                   for frame in FRAMES]
    finite = [value for value in psnr_series if math.isfinite(value)]
    return {
        "stage": stage,
        "per": per,
        "frames_compared": 0 if per == "clip" else len(FRAMES),
        "max_abs": 0.0 if passed and image else (14.0 if image else (0.0391 if not passed else 3.1e-6)),
        "mean_abs": 0.0 if passed and image else (0.21 if image else (0.0012 if not passed else 4.2e-7)),
        "p99": 0.0 if passed and image else (3.0 if image else 2.2e-6),
        "identical": 1.0 if passed and image else 0.9312,
        "psnr": (min(finite) if finite else math.inf) if image or stage == "frame.unet_output" else None,
        "ssim": (0.9987 if not passed else 1.0) if image else None,
        "cosine": 0.99999994 if stage in ("audio.features", "frame.unet_audio") else None,
        "nan": 0,
        "inf": 0,
        "passed": passed,
        "failure": failure,
        "worst": {"frame": None if per == "clip" else WORST_FRAME, "index": [1, 161, 170], "reference": 0.8125, "candidate": 0.7734},
        "tolerance": {"atol": 0.002, "rtol": 0.01, "psnr_min": 45.0} if per == "frame" else {"atol": 1e-4, "rtol": 1e-3},
        "per_frame": None if per == "clip" else {
            "frames": FRAMES,
            "psnr": psnr_series if image or stage == "frame.unet_output" else [None] * len(FRAMES),
            "max_abs": [0.0 if value == math.inf else 14.0 for value in psnr_series],
        },
    }


def result_document(command: str = "run", backend: str | None = "onnxruntime", precision: str = "fp32",
                    comparison: dict | None = None, timing: dict | None = None, bench: dict | None = None) -> dict:
    return {
        "schema": "synctalk-parity/result",
        "schema_version": 2,
        "command": command,
        "created": "2026-11-21T23:40:00+00:00",
        "backend": None if backend is None else {"name": backend, "precision": precision, "describe": {"providers": ["CPUExecutionProvider"]}},
        "inputs": {"dataset": "datasets/sanders-mini", "audio": "talk_hb_10s.wav", "weights": {"unet": "unet_328.pth", "audio_encoder": "audio_visual_encoder.pth"},
                   "frames": len(FRAMES), "demo": False},
        "comparison": comparison,
        "timing": timing,
        "bench": bench,
    }


def passing_result(backend: str = "onnxruntime", precision: str = "fp32") -> dict:
    comparison = {
        "reference": "../reference-cache/3f9a/dump",
        "candidate": "dump",
        "passed": True,
        "first_divergent_stage": None,
        "gate": {"precision": precision, "file": None},
        "frame_count": {"reference": len(FRAMES), "candidate": len(FRAMES)},
        "stages": [stage_metrics(stage) for stage in (*CLIP_STAGES, *FRAME_STAGES)],
        "diagnoses": [],
        "worst_frame": None,
    }
    timing = {"frames": len(FRAMES), "fps": 11.43, "seconds": {"audio": 0.21, "frame.unet_output": 0.84, "frames": 1.05}}
    return result_document("run", backend, precision, comparison, timing)


def failing_result(backend: str = "onnxruntime", precision: str = "fp16") -> dict:
    failing = {"frame.unet_output": UNET_FAILURE, "frame.mouth": "frame.mouth: frame 7: 1,204 pixels differ by up to 14 (tolerance 1)",
               "frame.pasted_region": "frame.pasted_region: frame 7: 1,204 pixels differ by up to 14 (tolerance 1)",
               "frame.output": OUTPUT_FAILURE}
    stages = [stage_metrics(stage) for stage in CLIP_STAGES]
    stages += [stage_metrics(stage, stage not in failing, failing.get(stage), worse_from=WORST_FRAME if stage in failing else None)
               for stage in FRAME_STAGES]
    comparison = {
        "reference": "../reference-cache/3f9a/dump",
        "candidate": "dump",
        "passed": False,
        "first_divergent_stage": "frame.unet_output",
        "gate": {"precision": precision, "file": "gates/ci.toml"},
        "frame_count": {"reference": len(FRAMES), "candidate": len(FRAMES)},
        "stages": stages,
        "diagnoses": [{"name": "fp16_overflow", "stage": "frame.unet_output",
                       "message": "U-Net output saturates at 1.0 in 0.7% of elements in fp16: keep the last conv in fp32 (<keep_io_types>)"}],
        "worst_frame": {"index": WORST_FRAME, "reference_png": "worst/reference_00007.png", "candidate_png": "worst/candidate_00007.png"},
    }
    timing = {"frames": len(FRAMES), "fps": 19.8, "seconds": {"audio": 0.18, "frame.unet_output": 0.41, "frames": 0.61}}
    bench = {"machine": "2-core x86_64, no GPU", "rows": [
        {"backend": "torch", "batch": 1, "mode": "reference", "fps_median": 2.01, "fps_min": 1.95, "fps_max": 2.06, "repeats": 5,
         "unet_gflops": 19.6, "peak_rss_mb": 812.0, "ratio_to_reference": 1.0},
        {"backend": "onnxruntime", "batch": 4, "mode": "model", "fps_median": 11.7, "fps_min": 11.2, "fps_max": 11.9, "repeats": 5,
         "unet_gflops": 114.3, "peak_rss_mb": 655.5, "ratio_to_reference": 5.82, "load_average": 1.9, "peak_share": 0.389},
        {"backend": "onnxruntime", "batch": 4, "mode": "end-to-end", "fps_median": 10.3, "fps_min": 10.1, "fps_max": 10.4,
         "repeats": 5, "unet_gflops": 100.6, "peak_rss_mb": 1020.0, "ratio_to_reference": 5.12, "ratio_to_model": 0.88,
         "whole_run_fps": 9.71, "first_frame_s": 0.42, "process_first_frame_s": 1.84, "process_wall_s": 9.3},
    ], "memory": [{"backend": "onnxruntime", "batch": 4, "frames": 50, "peak_rss_mb": 640.2},
                  {"backend": "onnxruntime", "batch": 4, "frames": 400, "peak_rss_mb": 643.9}],
       "memory_growth_mb": {"onnxruntime": 643.9 - 640.2}}
    return result_document("run", backend, precision, comparison, timing, bench)


def bench_result() -> dict:
    return result_document("bench", None, comparison=None, timing=None, bench=failing_result()["bench"])


def worst_frames(height: int = 720, width: int = 1280) -> tuple[np.ndarray, np.ndarray]:
    """A reference frame (a face-like drawing) and a candidate whose mouth region differs by up to 14."""
    ys, xs = np.mgrid[0:height, 0:width]
    reference = np.stack([(xs * 200 // width + 30), (ys * 180 // height + 40), np.full_like(xs, 150)], axis=2).astype(np.uint8)
    cv2.circle(reference, (width // 2, height // 2), height // 3, (120, 160, 220), -1)
    cv2.ellipse(reference, (width // 2, height // 2 + height // 6), (width // 14, height // 28), 0, 0, 360, (60, 40, 170), -1)
    candidate = reference.copy()
    rng = np.random.default_rng(7)
    y0, y1, x0, x1 = height // 2 + height // 9, height // 2 + height // 4, width // 2 - width // 12, width // 2 + width // 12
    noise = rng.integers(-14, 15, (y1 - y0, x1 - x0, 3))
    candidate[y0:y1, x0:x1] = np.clip(candidate[y0:y1, x0:x1].astype(int) + noise, 0, 255).astype(np.uint8)
    return reference, candidate


def write_run(folder: Path, result: dict, with_worst_pngs: bool = True) -> Path:
    """A run folder: result.json (non-finite numbers by name: "Infinity" for identical PSNR) and the worst-frame PNGs it names."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "result.json").write_text(json_text(result))
    worst = (result.get("comparison") or {}).get("worst_frame")
    if worst and with_worst_pngs:
        reference, candidate = worst_frames()
        (folder / "worst").mkdir(exist_ok=True)
        cv2.imwrite(str(folder / worst["reference_png"]), reference)
        cv2.imwrite(str(folder / worst["candidate_png"]), candidate)
    return folder


@pytest.fixture
def passing_run(tmp_path) -> Path:
    return write_run(tmp_path / "run-onnxruntime-fp32", passing_result())


@pytest.fixture
def failing_run(tmp_path) -> Path:
    return write_run(tmp_path / "run-onnxruntime-fp16", failing_result())


@pytest.fixture
def bench_run(tmp_path) -> Path:
    return write_run(tmp_path / "bench", bench_result())
