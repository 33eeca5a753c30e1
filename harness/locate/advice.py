"""Mixed-precision advice: the smallest set of layers to keep in fp32 so an fp16 network passes its fp16 gate.

The candidates are keep units (`export.onnx_layers.keep_units`: a conv + BatchNorm + ReLU block, a residual
block, or a lone op), ranked by the error their layers introduce (`parity locate`'s introduced error). The search
is greedy on measured results: each step converts the fp32 network to fp16 with the set so far plus one more of
the top-ranked candidates kept fp32, runs it on the inputs and keeps the candidate that lowers the network output's
max |diff| most, until the gate passes; then it drops every unit whose removal still passes. The set is verified
by exporting the network with it (`export.onnx.export_network`, whose export-time check is the gate at batch 1
and 4) and written where `parity export --keep-fp32` reads it.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...atomic import write_text_atomically
from ...errors import ParityError
from ...export.check_inputs import CHECK_BATCHES, CheckInputs, inputs_for
from ...export.onnx import export_network, to_fp16, to_onnx
from ...export.onnx_layers import graph_of, keep_units
from ...models.specs import spec_for
from ..verdict.metrics import max_abs
from .types import KeepAdvice, KeepStep, LocateResult

CANDIDATES_PER_STEP = 12  # top-ranked units tried at each greedy step
MAX_UNITS = 16  # the search gives up beyond this many units kept (that is no small keep-set)
KEEP_FILE_SCHEMA = "synctalk-parity/keep-fp32"


def keep_fp32_search(torch_model: nn.Module, samples: list[np.ndarray], located: LocateResult, verify: bool = True,
                     check: CheckInputs | None = None) -> KeepAdvice:
    """The smallest keep-fp32 set found for `torch_model` in fp16 on `samples` (plus the export check's inputs)."""
    from ...export.onnx_layers import session

    torch_model = torch_model.eval()
    spec = spec_for(torch_model)
    tolerance = spec.tolerance("fp16")
    fp32_model, _ = to_onnx(torch_model, spec, "fp32")
    graph = graph_of(torch_model, fp32_model)
    units = keep_units(graph)
    introduced = {layer.name: layer.introduced_rel for layer in located.layers}
    score = {unit: max(_finite(introduced.get(layer.name, 0.0)) for layer in layers) for unit, layers in units}
    ranked = sorted(score, key=lambda unit: -score[unit])
    nodes_of = {unit: [node for layer in layers for node in layer.nodes] for unit, layers in units}
    order = {unit: i for i, (unit, _) in enumerate(units)}
    cases = _cases(torch_model, spec, samples, check)
    evaluations = 0

    def error_with(kept: list[str]) -> float:
        nonlocal evaluations
        evaluations += 1
        converted = to_fp16(fp32_model, [node for unit in kept for node in nodes_of[unit]])
        run = session(converted)
        worst = 0.0
        for inputs, expected in cases:
            (actual,) = run.run(spec.output_names, dict(zip(spec.input_names, inputs)))
            worst = max(worst, max_abs(np.abs(actual.astype(np.float32) - expected)))
        return worst

    baseline = error_with([])
    kept: list[str] = []
    error = baseline
    steps: list[KeepStep] = []
    while error > tolerance and len(kept) < min(len(units), MAX_UNITS):
        tried = [(error_with([*kept, unit]), unit) for unit in [u for u in ranked if u not in kept][:CANDIDATES_PER_STEP]]
        best_error, best = min(tried, key=lambda pair: (pair[0], order[pair[1]]))
        if not best_error < error:  # no single unit helps: add the top-ranked one and go on
            best_error, best = next(pair for pair in tried if pair[1] == next(u for u in ranked if u not in kept))
        kept.append(best)
        error = best_error
        steps.append(KeepStep("add", best, best_error))
    if error <= tolerance:
        for unit in sorted(kept, key=lambda u: score[u]):  # least introduced error first
            without = [u for u in kept if u != unit]
            trial = error_with(without)
            if trial <= tolerance:
                kept, error = without, trial
                steps.append(KeepStep("drop", unit, trial))
    kept.sort(key=lambda unit: order[unit])
    advice = KeepAdvice(network=spec.name, keep_fp32=kept, passed=error <= tolerance, max_abs=error, baseline_max_abs=baseline,
                        tolerance=tolerance, evaluations=evaluations, steps=steps)
    if not advice.passed:
        advice.note = (f"no small keep-fp32 set passes: with {len(kept)} of {len(units)} units kept fp32 "
                       f"({', '.join(kept)}) the output still differs by {error:.3g}")
    elif not kept:
        advice.note = "the whole network passes its fp16 gate in fp16: nothing needs to stay fp32"
    if verify and advice.passed and kept:
        advice.verification = verify_keep_set(torch_model, kept, check)
    return advice


def verify_keep_set(torch_model: nn.Module, kept: list[str], check: CheckInputs | None = None) -> dict:
    """Export `torch_model` to fp16 ONNX keeping `kept` fp32 and return its export-time check (the fp16 gate at
    batch 1 and 4 on the export's check inputs `check`, as `parity export` is given them), or the failure."""
    with tempfile.TemporaryDirectory(prefix="parity-keep-fp32-") as folder:
        try:
            record = export_network(torch_model, Path(folder), "fp16", kept, check)
        except ParityError as exc:
            return {"passed": False, "failure": str(exc)}
    verified = dict(record.check)
    verified["keep_fp32_nodes"] = record.extra.get("keep_fp32_nodes", [])
    return verified


def write_keep_file(path: Path, advice: KeepAdvice, located: LocateResult) -> Path:
    """The keep-set as `parity export --keep-fp32 FILE` reads it."""
    document = {
        "schema": KEEP_FILE_SCHEMA,
        "keep_fp32": {advice.network: advice.keep_fp32},
        "found_by": f"parity locate on {located.artifact} ({located.inputs}, {located.samples} samples)",
        "max_abs": advice.max_abs,
        "baseline_max_abs": advice.baseline_max_abs,
        "tolerance": advice.tolerance,
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, json.dumps(document, indent=2) + "\n")
    return path


def _cases(torch_model: nn.Module, spec, samples: list[np.ndarray], check: CheckInputs | None) -> list[tuple[list[np.ndarray], np.ndarray]]:
    """(inputs, PyTorch output) to judge a keep-set on: the samples in batches of 4, and the export check's inputs at
    each of its batch sizes."""
    batches = [[a[i:i + 4] for a in samples] for i in range(0, len(samples[0]), 4)]
    _, checked = inputs_for(spec, check)
    batches += [[a[:batch] for a in checked] for batch in CHECK_BATCHES]
    cases = []
    with torch.inference_mode():
        for inputs in batches:
            arrays = [np.array(a, dtype=np.float32) for a in inputs]
            cases.append((arrays, torch_model(*(torch.from_numpy(a) for a in arrays)).numpy()))
    return cases


def _finite(value: float) -> float:
    return float("inf") if value != value else value
