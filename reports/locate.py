"""The HTML page of `parity locate`: the verdict, a plot of error through the network (inline SVG, log scale), the
keep-fp32 advice and one row per layer; rendered from the `LocateResult` (what `locate.json` holds), every text escaped."""

from __future__ import annotations

import math
from html import escape
from typing import Any

from ..harness.locate.types import KeepAdvice, LayerError, LocateResult
from .html import CSS, PAGE

PLOT_FLOOR = 1e-9  # errors below this (exact layers) are drawn on the floor of the log scale


def render_locate(result: LocateResult) -> str:
    """The whole page for one locate result."""
    layers = result.layers
    verdict = "PASS" if result.passed else "FAIL"
    title = f"parity locate — {result.network} {verdict}"
    body = [f"<h1>{escape(title)}</h1>",
            f'<div class="verdict {"pass" if verdict == "PASS" else "fail"}">{escape(verdict_line(result))}</div>',
            _facts(result),
            "<h2>Error through the network</h2>",
            f"<figure>{error_plot_svg(layers, result.first_introducing_name)}<figcaption>max |diff| relative to each "
            "layer's range: propagated (the artifact run whole) and introduced (the layer alone, on PyTorch's inputs); "
            "dashed: the layer tolerance</figcaption></figure>"]
    if result.advice is not None:
        body.append("<h2>Keep in fp32</h2>" + _advice(result.advice))
    if result.notes:
        body.append("<h2>Notes</h2><ul>" + "".join(f"<li>{escape(str(n))}</li>" for n in result.notes) + "</ul>")
    body.append("<h2>Layers</h2>" + _layer_table(layers))
    return PAGE.format(title=escape(title), css=CSS, body="\n".join(body))


def verdict_line(result: LocateResult) -> str:
    """One line: pass, or the first layer that introduces error, or the output's miss when no layer is at fault."""
    where = f"{result.network} ({result.backend}, {result.precision}, {result.samples} samples)"
    layer = result.first_introducing
    if layer is not None:
        return (f"FAIL {where}: first layer that introduces error: {layer.name} ({layer.op}): adds {_number(layer.introduced_rel)} "
                f"of its range (tolerance {_number(layer.tolerance_rel)}), its inputs carried {_number(layer.inputs_rel)}")
    if not result.output_passed:
        largest = max((item.introduced_rel for item in result.layers), default=0.0)
        line = (f"FAIL {where}: no layer adds more than its tolerance (each at most {_number(largest)} of its range), but the "
                f"output misses its gate: max |diff| {_number(result.output_max_abs)} > {_number(result.output_tolerance)}, "
                "the error accumulated over layers")
        advice = result.advice
        if advice is not None and advice.passed and advice.keep_fp32:
            by_batch = advice.verification.get("max_abs_diff_by_batch") or {}
            verified = f"; verified by export: {', '.join(f'batch {b} {_number(d)}' for b, d in by_batch.items())}" if by_batch else ""
            line += (f"; responsible: {', '.join(advice.keep_fp32)} (kept fp32, the output is within "
                     f"{_number(advice.max_abs)}{verified})")
        elif advice is not None:
            line += f"; {advice.note}"
        else:
            worst = sorted(result.layers, key=lambda item: -_float(item.introduced_max_abs))[:3]
            line += f"; largest additions: {', '.join(item.name for item in worst)}"
        return line
    return (f"PASS {where}: no layer adds more than its tolerance; output max |diff| {_number(result.output_max_abs)} "
            f"<= {_number(result.output_tolerance)}")


def error_plot_svg(layers: list[LayerError], first: str | None) -> str:
    """Propagated and introduced relative error per layer, log scale, the tolerance dashed, the first introducing
    layer marked."""
    width, height, left, right, top, bottom = 900, 300, 60, 12, 12, 34
    count = max(len(layers), 2)
    values = [_float(v) for layer in layers for v in (layer.propagated_rel, layer.introduced_rel, layer.tolerance_rel)]
    finite = [v for v in values if math.isfinite(v) and v > 0] or [1.0]
    low = math.floor(math.log10(max(min(finite), PLOT_FLOOR)))
    high = math.ceil(math.log10(max(finite))) + (1 if max(values, default=0) == math.inf else 0)
    high = max(high, low + 1)

    def x(index: float) -> float:
        return left + (width - left - right) * index / (count - 1)

    def y(value: float) -> float:
        if not math.isfinite(value):
            return top
        exponent = math.log10(max(value, 10.0 ** low))
        return top + (height - top - bottom) * (high - exponent) / (high - low)

    shapes = [f'<rect class="plot-area" x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}"/>']
    for exponent in range(low, high + 1):
        shapes.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y(10.0 ** exponent):.1f}" y2="{y(10.0 ** exponent):.1f}"/>')
        shapes.append(f'<text x="{left - 4}" y="{y(10.0 ** exponent) + 4:.1f}" text-anchor="end">1e{exponent}</text>')
    if layers:
        tolerance = _float(layers[0].tolerance_rel)
        shapes.append(f'<line class="threshold" x1="{left}" x2="{width - right}" y1="{y(tolerance):.1f}" y2="{y(tolerance):.1f}"/>')
    for key, css in (("propagated_rel", "series"), ("introduced_rel", "series-introduced")):
        points = " ".join(f"{x(i):.1f},{y(_float(getattr(layer, key))):.1f}" for i, layer in enumerate(layers))
        shapes.append(f'<polyline class="{css}" points="{points}"><title>{escape(key)}</title></polyline>')
    for i, layer in enumerate(layers):
        if layer.name == first:
            shapes.append(f'<circle class="nan-mark" cx="{x(i):.1f}" cy="{y(_float(layer.introduced_rel)):.1f}" r="5">'
                          f'<title>{escape(layer.name)}</title></circle>')
            shapes.append(f'<text class="threshold-label" x="{min(x(i) + 8, width - 200):.1f}" y="{top + 14}">{escape(layer.name)}</text>')
    shapes.append(f'<text x="{(left + width - right) / 2:.0f}" y="{height - 4}" text-anchor="middle" class="muted-svg">layer (network order, {len(layers)} layers)</text>')
    style = "<style>.series-introduced { fill: none; stroke: #e07b00; stroke-width: 1.4; stroke-dasharray: 3 2; }</style>"
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'role="img" aria-label="error through the network">{style}{"".join(shapes)}</svg>')


def _facts(result: LocateResult) -> str:
    rows = [("artifact", result.artifact), ("backend", result.backend), ("precision", result.precision),
            ("inputs", result.inputs), ("output max |diff|", f"{_number(result.output_max_abs)} (gate {_number(result.output_tolerance)})"),
            ("copy with extra outputs vs artifact", _number(result.instrumented_output_diff)),
            ("time", f"{_float(result.seconds):.1f} s")]
    return "<table>" + "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in rows) + "</table>"


def _advice(advice: KeepAdvice) -> str:
    kept = ", ".join(advice.keep_fp32) or "(nothing)"
    lines = [f"<p><b>{escape(kept)}</b>: output max |diff| {_number(advice.max_abs)} "
             f"(whole network fp16: {_number(advice.baseline_max_abs)}; gate {_number(advice.tolerance)}; "
             f"{advice.evaluations} conversions tried){'' if advice.passed else ' — does not pass'}</p>"]
    verification = advice.verification
    if verification:
        by_batch = verification.get("max_abs_diff_by_batch") or {}
        shown = ", ".join(f"batch {b}: {_number(d)}" for b, d in by_batch.items()) or escape(str(verification.get("failure")))
        lines.append(f"<p>verified by export: {escape(shown)} ({'passes' if verification.get('passed') else 'fails'})</p>")
    if advice.note:
        lines.append(f"<p>{escape(advice.note)}</p>")
    return "".join(lines)


def _layer_table(layers: list[LayerError]) -> str:
    head = ("#", "layer", "op", "range", "propagated max |diff|", "propagated rel", "cosine", "introduced rel", "inputs rel", "result")
    rows = []
    for layer in layers:
        cells = (str(layer.index), layer.name, layer.op, _number(layer.range), _number(layer.propagated_max_abs),
                 _number(layer.propagated_rel), f"{_float(layer.propagated_cosine):.6f}", _number(layer.introduced_rel),
                 _number(layer.inputs_rel), "over" if layer.over else "ok")
        css = ' class="fail"' if layer.over else ""
        rows.append(f"<tr{css}>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    return "<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>"


def _float(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _number(value: Any) -> str:
    number = _float(value)
    if math.isnan(number):
        return "nan"
    if math.isinf(number):
        return "inf" if number > 0 else "-inf"
    return f"{number:.3g}"
