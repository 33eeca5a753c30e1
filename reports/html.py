"""The HTML report: one self-contained page (no external resources) with the verdict, the stage table, a PSNR plot
per frame stage (inline SVG), the worst frame side by side with its amplified difference and a heat map (PNG as
data: URIs), timing and benchmarks. Every text from result.json is escaped.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

import cv2
import numpy as np

from ..harness.verdict.types import PSNR_IDENTICAL, LipSync, StageResult, Timing
from .view import (
    BENCH_COLUMNS,
    MEMORY_COLUMNS,
    PORT_BENCH_COLUMNS,
    REGION_LABELS,
    STAGE_COLUMNS,
    SUMMARY_COLUMNS,
    Run,
    bench_row,
    headline_parts,
    is_numeric_column,
    machine_text,
    memory_growth_text,
    memory_rows,
    metric_text,
    port_bench_rows,
    port_bench_text,
    stage_row,
    summary_row,
)

DIFF_GAIN = 8  # the amplified difference shows |reference - candidate| x 8
DISPLAY_WIDTH = 640  # wider frames are shown scaled down (differences max-pooled so none disappears)
ZOOM_WIDTH = 320  # the zoom on the region that differs is shown at about this width
IDENTICAL_PSNR = PSNR_IDENTICAL  # PSNR's cap, which identical data gets: at it a frame is plotted as identical


def render(runs: list[Run]) -> str:
    """The whole page."""
    title = "Parity report — " + ", ".join(f"{run.label} {run.verdict}" for run in runs)
    body = ["<h1>Parity report</h1>"]
    if len(runs) > 1:
        body.append(_section("Summary", _table(SUMMARY_COLUMNS, [summary_row(run) for run in runs],
                                                 verdict_column=SUMMARY_COLUMNS.index("verdict")), "summary"))
    body += [run_section(run, index) for index, run in enumerate(runs)]
    return PAGE.format(title=escape(title), css=CSS, body="\n".join(body))


def run_section(run: Run, index: int) -> str:
    """One run: verdict banner, facts, stages, failures, diagnoses, plots, worst frame, timing, benchmark."""
    parts = [f'<div class="verdict {_verdict_class(run.verdict)}">{escape(_headline(run))}</div>', _facts(run)]
    if run.stages:
        parts.append(_section("Stages", _table(STAGE_COLUMNS, [stage_row(stage) for stage in run.stages],
                                                     verdict_column=STAGE_COLUMNS.index("result")), level=3))
    if run.failures:
        blocks = [f"<h4>{escape(stage)}</h4><pre>{escape(text)}</pre>" for stage, text in run.failures]
        parts.append(_section("Failures", "\n".join(blocks), level=3))
    if run.diagnoses:
        items = [f"<li><b>{escape(d.name)}</b> <span class=\"muted\">({escape(d.stage or 'all stages')})</span>: "
                 f"{escape(d.message)}</li>" for d in run.diagnoses]
        parts.append(_section("Diagnoses", f"<ul>{''.join(items)}</ul>", level=3))
    if run.port:
        parts.append(_section("The port's own output", _port(run), level=3))
    if run.lip_sync is not None:
        parts.append(_section("Lip sync", _lip_sync(run.lip_sync), level=3))
    if run.comparison is not None:
        parts.append(_section("PSNR per frame", _psnr_plots(run), level=3))
        parts.append(_section("Worst frame", _worst_frame(run), level=3))
    if run.timing:
        parts.append(_section("Timing", _timing(run.timing), level=3))
    if run.bench and run.bench.port:
        machine = machine_text(run.bench)
        intro = f'<p class="muted">Machine: {escape(machine)}</p>' if machine else ""
        facts = "".join(f"<li>{escape(line)}</li>" for line in port_bench_text(run.bench.port))
        table_html = _table(PORT_BENCH_COLUMNS, port_bench_rows(run.bench.port)) if port_bench_rows(run.bench.port) else ""
        parts.append(_section("The port beside our pipeline", f"{intro}<ul>{facts}</ul>{table_html}", level=3))
    if run.bench and run.bench.rows:
        machine = machine_text(run.bench)
        intro = f'<p class="muted">Machine: {escape(machine)}</p>' if machine else ""
        rows = [bench_row(row) for row in run.bench.rows]
        tables = "".join(_table([BENCH_COLUMNS[i] for i in part], [[row[i] for i in part] for row in rows]) for part in BENCH_PARTS)
        parts.append(_section("Benchmark", intro + tables, level=3))
        if memory_rows(run.bench):
            growth = memory_growth_text(run.bench)
            note = f"<p>Growth from the shortest to the longest run: {escape(growth)}</p>" if growth else ""
            parts.append(_section("Memory by video length", _table(MEMORY_COLUMNS, memory_rows(run.bench)) + note, level=3))
    return _section(run.label, "\n".join(parts), f"run-{index}", level=2)


def _port(run: Run) -> str:
    """Which candidate file is which frame, PSNR per region over the clip, encoding, sound, simulation findings."""
    rows = "".join(f"<tr><th>{escape(what)}</th><td>{escape(text)}</td></tr>" for what, text in run.port_lines())
    parts = [f'<table class="facts">{rows}</table>']
    port = run.port
    if port is None:
        return parts[0]
    if port.regions:
        for name, label in REGION_LABELS.items():
            series = getattr(port.regions.per_frame, name)
            if series:
                parts.append(f"<figure>{psnr_plot_svg(label, list(port.regions.frames), series, None)}<figcaption>{escape(label)}: PSNR per frame</figcaption></figure>")
    if port.sources and port.sources.frames:
        rings = "; orange rings: the mouth pasted into another template's crop box" if port.sources.boxes_other else ""
        parts.append(f"<figure>{template_plot_svg(port.sources.frames, port.sources.scheduled, port.sources.templates, port.sources.boxes_other)}"
                     f"<figcaption>template of each output frame: the schedule's (grey) and the one recovered from the port's frame "
                     f"(blue){rings}; {escape(port.sources.text)}</figcaption></figure>")
    worst = port.worst_mouth
    if worst:
        images = []
        for name, label in (("reference", "reference"), ("candidate", "candidate"), ("simulation", "best simulation"),
                            ("difference", "candidate - simulation, x8")):
            path = run.path(worst.files[name])
            if path.is_file():
                images.append((label, path.read_bytes()))
        if images:
            parts.append(f"<p>Mouth box of the least-explained sampled frame — {escape(worst.note)}</p>" + _gallery(images, pixelated=True))
    mapping = port.alignment.mapping if port.alignment else {}
    if mapping:
        shown = list(mapping.items())
        cells = ", ".join(f"{number} &rarr; {index}" for number, index in shown[:12]) + (", &hellip;" if len(shown) > 12 else "")
        parts.append(f'<p class="muted">candidate frame number &rarr; reference frame: {cells}</p>')
    return "\n".join(parts)


def template_plot_svg(frames: list[int], scheduled: list[int], recovered: list[int], other_box: Sequence[int] = ()) -> str:
    """Template index against output frame: the schedule's as a grey line, the recovered one as blue dots, ringed in
    orange where the frame's mouth was pasted into another template's crop box (`other_box`)."""
    width, height, left, right, top, bottom = 540, 170, 44, 12, 8, 30
    x0, x1 = min(frames), max(frames)
    high = max(max(scheduled), max(recovered), 1)

    def x(frame: float) -> float:
        return left + (frame - x0) / ((x1 - x0) or 1) * (width - left - right)

    def y(template: float) -> float:
        return top + (1 - template / high) * (height - top - bottom)

    line = " ".join(f"{x(f):.1f},{y(t):.1f}" for f, t in zip(frames, scheduled))
    dots = "".join(f'<circle cx="{x(f):.1f}" cy="{y(t):.1f}" r="2" fill="#1f6feb"/>' for f, t in zip(frames, recovered))
    ringed = set(other_box)
    dots += "".join(f'<circle class="other-box" cx="{x(f):.1f}" cy="{y(t):.1f}" r="4.5" fill="none" stroke="#d9822b" stroke-width="1.5"/>'
                    for f, t in zip(frames, recovered) if f in ringed)
    axes = (f'<text x="4" y="{y(high) + 4:.1f}" font-size="10">{high}</text><text x="4" y="{y(0) + 4:.1f}" font-size="10">0</text>'
            f'<text x="{left}" y="{height - 8}" font-size="10">frame {x0}</text><text x="{width - right - 60}" y="{height - 8}" font-size="10">frame {x1}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="templates per frame">'
            f'<polyline fill="none" stroke="#999" stroke-width="1.5" points="{line}"/>{dots}{axes}</svg>')


def psnr_plot_svg(stage: str, frames: list[int], psnr: Sequence[float | None], threshold: float | None) -> str:
    """A line chart of PSNR (dB) against frame index, with the gate's minimum as a dashed line. Identical frames
    (PSNR infinite or at the 100 dB cap) sit in a band marked ≥100 above the scale; NaN frames are red marks at the bottom."""
    width, height, left, right, top, bottom = 540, 190, 44, 12, 8, 30
    values = [_identical_as_inf(v) for v in psnr]
    finite = [v for v in values if v is not None and math.isfinite(v)]
    has_infinite = any(v == math.inf for v in values)
    band = 26 if has_infinite else 0  # the identical row above the dB scale
    scale = finite + ([threshold] if threshold is not None else [])
    low, high = math.floor(min(scale, default=0.0) - 1.0), math.ceil(max(scale, default=1.0) + 1.0)
    x0, x1 = (min(frames), max(frames)) if frames else (0, 1)

    def x(frame: float) -> float:
        return left + (frame - x0) / ((x1 - x0) or 1) * (width - left - right)

    def y(db: float) -> float:
        if db == math.inf:
            return top + band / 2
        return top + band + (high - max(low, min(high, db))) / (high - low) * (height - top - band - bottom)

    shapes = [f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" class="plot-area"/>']
    if has_infinite:
        shapes.append(f'<line x1="{left}" x2="{width - right}" y1="{top + band}" y2="{top + band}" class="grid"/>'
                      f'<text x="{left - 6}" y="{y(math.inf) + 4:.1f}" text-anchor="end">≥{IDENTICAL_PSNR:g}</text>')
    for tick in _ticks(low, high, 5):
        shapes.append(f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" class="grid"/>'
                      f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>')
    for tick in _ticks(x0, x1, 8, integer=True):
        shapes.append(f'<text x="{x(tick):.1f}" y="{height - 15}" text-anchor="middle">{tick:g}</text>')
    if threshold is not None:
        shapes.append(f'<line x1="{left}" x2="{width - right}" y1="{y(threshold):.1f}" y2="{y(threshold):.1f}" class="threshold"/>'
                      f'<text x="{width - right - 4}" y="{y(threshold) - 4:.1f}" text-anchor="end" class="threshold-label">gate {threshold:g} dB</text>')
    points = [(x(frame), y(value)) for frame, value in zip(frames, values) if value is not None and not math.isnan(value)]
    if len(points) > 1:
        shapes.append(f'<polyline points="{" ".join(f"{px:.1f},{py:.1f}" for px, py in points)}" class="series"/>')
    shapes += [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.2" class="dot"/>' for px, py in points]
    shapes += [f'<rect x="{x(frame) - 2:.1f}" y="{height - bottom - 6}" width="4" height="6" class="nan-mark"/>'
               for frame, value in zip(frames, values) if value is not None and math.isnan(value)]
    shapes.append(f'<text x="{(left + width - right) / 2:.0f}" y="{height - 2}" text-anchor="middle" class="muted-svg">frame</text>')
    label = escape(f"PSNR in dB per frame of {stage}", quote=True)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'role="img" aria-label="{label}"><title>{label}</title>{"".join(shapes)}</svg>')


def _lip_sync(sync: LipSync) -> str:
    text = f"<p>{escape(sync.summary())}</p>"
    if not sync.candidate_motion:
        return text
    other = "the reference's mouth" if sync.against == "reference" else "the audio's loudness"
    scored = bool(sync.window_scores)
    below = (f" Below: the sync score of each {sync.windows[0].frames}-frame window at its best offset (labelled in frames); the dashed "
             "line is the clip's score." if scored else " No window is scored (not measured: see above).")
    caption = (f"{'Above: t' if scored else 'T'}he mouth's motion (high-passed darkening of the mouth box against its template) of the candidate and of "
               f"{other}, frame by frame.{below}")
    return text + f"<figure>{lip_sync_svg(sync)}<figcaption>{escape(caption)}</figcaption></figure>"


def lip_sync_svg(sync: LipSync) -> str:
    """The lip sync over the clip: the candidate's and the reference's (or the audio's) high-passed motion, each scaled
    to its own range (the audio's units differ), and below it each window's score (0..1, bars spanning the window,
    its offset written on it) with the clip's score dashed; without a scored window (not measured), the motion only."""
    scored = bool(sync.window_scores)
    width, left, right, top = 640, 44, 12, 8
    motion_h, gap, score_h, bottom = (120, 22, 90, 30) if scored else (120, 0, 0, 30)
    height = top + motion_h + gap + score_h + bottom
    count = max(len(sync.candidate_motion), len(sync.reference_motion), 2)

    def x(frame: float) -> float:
        return left + frame / (count - 1) * (width - left - right)

    def line(values: list[float], css: str) -> str:
        finite = [v for v in values if math.isfinite(v)]
        if len(finite) < 2:
            return ""
        scale = max(abs(v) for v in finite) or 1.0
        mid = top + motion_h / 2
        points = " ".join(f"{x(i):.1f},{mid - v / scale * (motion_h / 2 - 4):.1f}" for i, v in enumerate(values) if math.isfinite(v))
        return f'<polyline points="{points}" class="{css}"/>'

    score_top = top + motion_h + gap

    def y_score(value: float) -> float:
        return score_top + (1 - max(-0.2, min(1.0, value))) / 1.2 * score_h

    shapes = [f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{motion_h}" class="plot-area"/>',
              f'<line x1="{left}" x2="{width - right}" y1="{top + motion_h / 2}" y2="{top + motion_h / 2}" class="grid"/>',
              line(sync.reference_motion, "sync-reference"), line(sync.candidate_motion, "series"),
              f'<text x="{left + 6}" y="{top + 12}" class="sync-candidate-label">candidate</text>',
              f'<text x="{left + 70}" y="{top + 12}" class="sync-reference-label">{"reference" if sync.against == "reference" else "audio loudness"}</text>']
    if scored:  # the score panel, its windows and the clip's dashed score; without a scored window, none of it
        shapes.append(f'<rect x="{left}" y="{score_top}" width="{width - left - right}" height="{score_h}" class="plot-area"/>')
        for tick in (0.0, 0.5, 1.0):
            shapes.append(f'<line x1="{left}" x2="{width - right}" y1="{y_score(tick):.1f}" y2="{y_score(tick):.1f}" class="grid"/>'
                          f'<text x="{left - 6}" y="{y_score(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>')
        for window in sync.windows:
            if window.score is None:
                continue
            x0, x1 = x(window.start), x(window.start + window.frames - 1)
            y = y_score(window.score)
            shapes.append(f'<rect x="{x0:.1f}" y="{y:.1f}" width="{max(1.0, x1 - x0):.1f}" height="{max(0.0, y_score(-0.2) - y):.1f}" class="sync-window"/>')
            if window.offset_frames is not None:
                shapes.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{max(score_top + 10, y - 3):.1f}" text-anchor="middle">{window.offset_frames:+d}</text>')
        if sync.score is not None:
            shapes.append(f'<line x1="{left}" x2="{width - right}" y1="{y_score(sync.score):.1f}" y2="{y_score(sync.score):.1f}" class="threshold"/>')
    for tick in _ticks(0, count - 1, 8, integer=True):
        shapes.append(f'<text x="{x(tick):.1f}" y="{height - 15}" text-anchor="middle">{tick:g}</text>')
    shapes.append(f'<text x="{(left + width - right) / 2:.0f}" y="{height - 2}" text-anchor="middle" class="muted-svg">frame</text>')
    label = escape(f"lip sync over the clip: {sync.summary()}", quote=True)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'role="img" aria-label="{label}"><title>{label}</title>{"".join(shapes)}</svg>')


@dataclass
class WorstFramePanels:
    """The worst frame's pictures, PNG-encoded for display, and what they show."""

    reference: bytes
    candidate: bytes
    difference: bytes  # |reference - candidate| x DIFF_GAIN
    heat_map: bytes  # per-pixel max |diff| over channels, colour-mapped from 0 to max_abs
    max_abs: int
    pixels_differing: int
    pixels: int
    scale: int  # shown at 1/scale
    zoom: tuple[bytes, bytes, bytes] | None  # reference, candidate, difference around the region that differs
    zoom_box: tuple[int, int, int, int] | None  # x0, y0, x1, y1 in frame pixels


def worst_frame_panels(reference: np.ndarray, candidate: np.ndarray) -> WorstFramePanels:
    """Side-by-side pictures of two same-sized BGR frames: both frames, the amplified difference, a heat map, a zoom."""
    diff = np.abs(reference.astype(np.int16) - candidate.astype(np.int16)).astype(np.uint8)
    per_pixel = diff.max(axis=2)
    scale = max(1, math.ceil(reference.shape[1] / DISPLAY_WIDTH))
    max_abs = int(per_pixel.max())
    heat = cv2.applyColorMap(_scaled_for_heat(_max_pool(per_pixel, scale), max_abs), cv2.COLORMAP_INFERNO)
    amplified = np.clip(_max_pool(diff, scale).astype(np.int32) * DIFF_GAIN, 0, 255).astype(np.uint8)
    box = _difference_box(per_pixel)
    zoom: tuple[bytes, bytes, bytes] | None = None
    if box is not None:
        x0, y0, x1, y1 = box
        factor = max(1, ZOOM_WIDTH // max(1, x1 - x0))
        crops = (reference[y0:y1, x0:x1], candidate[y0:y1, x0:x1], np.clip(diff[y0:y1, x0:x1].astype(np.int32) * DIFF_GAIN, 0, 255).astype(np.uint8))
        enlarged = [_png(cv2.resize(crop, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)) for crop in crops]
        zoom = (enlarged[0], enlarged[1], enlarged[2])
    return WorstFramePanels(
        reference=_png(_shrink(reference, scale)),
        candidate=_png(_shrink(candidate, scale)),
        difference=_png(amplified),
        heat_map=_png(heat),
        max_abs=max_abs,
        pixels_differing=int(np.count_nonzero(per_pixel)),
        pixels=int(per_pixel.size),
        scale=scale,
        zoom=zoom,
        zoom_box=box,
    )


def _headline(run: Run) -> str:
    return "; ".join([f"{run.verdict} — {run.backend}" + (f" {run.precision}" if run.precision != "-" else ""), *headline_parts(run)])


def _facts(run: Run) -> str:
    result, inputs, comparison = run.result, run.result.inputs, run.comparison
    facts: list[tuple[str, Any]] = [("command", f"parity {result.command}"), ("created", result.created or None), ("run folder", str(run.run_dir))]
    if inputs:
        facts += [("dataset", "built-in demo" if inputs.demo else inputs.dataset), ("audio", inputs.audio), ("frames", inputs.frames)]
    if comparison is not None:
        gate = comparison.gate
        facts += [("reference", comparison.reference), ("candidate", comparison.candidate),
                  ("gate", f"{gate.precision or '-'} ({gate.file or 'built-in tolerances'})"),
                  ("not compared", run.not_compared)]
    rows = "".join(f"<dt>{escape(name)}</dt><dd>{escape(str(value))}</dd>" for name, value in facts if value is not None)
    return f'<dl class="facts">{rows}</dl>'


def _psnr_plots(run: Run) -> str:
    """A plot per frame stage with a PSNR series; stages identical on every frame are named in one line instead."""
    figures, identical = [], []
    for stage in run.stages:
        series = stage.per_frame
        frames, psnr = (series.frames, series.psnr) if series else ([], [])
        values = [_identical_as_inf(v) for v in psnr]
        if stage.per != "frame" or not frames or len(psnr) != len(frames) or all(v is None for v in values):
            continue
        if all(v == math.inf for v in values):
            identical.append(stage.stage)
            continue
        caption = _plot_caption(stage, values)
        figures.append(f"<figure>{psnr_plot_svg(stage.stage, frames, psnr, _psnr_threshold(stage))}"
                       f"<figcaption>{escape(caption)}</figcaption></figure>")
    parts = []
    if identical:
        parts.append(f"<p>Identical on every frame (PSNR ≥ {IDENTICAL_PSNR:g} dB): {escape(', '.join(identical))}.</p>")
    if figures:
        parts.append(f'<div class="plots">{"".join(figures)}</div>')
    return "\n".join(parts) or '<p class="muted">No per-frame PSNR in this result (no image stage was compared frame by frame).</p>'


def _identical_as_inf(value: float | None) -> float | None:
    return math.inf if value is not None and value >= IDENTICAL_PSNR else value


def _plot_caption(stage: StageResult, values: list[float | None]) -> str:
    worst = min((v for v in values if v is not None), key=lambda v: math.inf if math.isnan(v) else v)
    notes = [f"{stage.stage} — {'pass' if stage.passed else 'FAIL'}, lowest {metric_text(worst, 'db')} dB"]
    identical = sum(v == math.inf for v in values)
    not_a_number = sum(v is not None and math.isnan(v) for v in values)
    if identical:
        notes.append(f"{identical} identical frame(s) (≥ {IDENTICAL_PSNR:g} dB)")
    if not_a_number:
        notes.append(f"{not_a_number} frame(s) with NaN (red marks)")
    return "; ".join(notes)


def _worst_frame(run: Run) -> str:
    worst = run.comparison.worst_frame if run.comparison is not None else None
    if not worst:
        return '<p class="muted">No worst frame recorded in result.json: the comparison found no frame images to show.</p>'
    paths = [run.path(worst.reference_png), run.path(worst.candidate_png)]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        return f'<p class="warn">Worst frame {worst.index}: image not found: {escape(", ".join(missing))}.</p>'
    reference, candidate = (cv2.imread(str(path), cv2.IMREAD_COLOR) for path in paths)
    unreadable = [str(path) for path, image in zip(paths, (reference, candidate)) if image is None]
    if unreadable or reference is None or candidate is None:
        return f'<p class="warn">Worst frame {worst.index}: not a readable image: {escape(", ".join(unreadable))}.</p>'
    if reference.shape != candidate.shape:
        note = f"Worst frame {worst.index}: sizes differ (reference {reference.shape[1]}x{reference.shape[0]}, candidate {candidate.shape[1]}x{candidate.shape[0]}); no difference image."
        images = [("reference", _png(reference)), ("candidate", _png(candidate))]
        return f'<p class="warn">{escape(note)}</p>' + _gallery(images)
    panels = worst_frame_panels(reference, candidate)
    share = panels.pixels_differing / panels.pixels
    summary = (f"Frame {worst.index}: {panels.pixels_differing:,} of {panels.pixels:,} pixels differ ({share:.2%}); "
               f"largest channel difference {panels.max_abs}."
               + (f" Shown at 1/{panels.scale} size; differences are max-pooled so none disappears." if panels.scale > 1 else ""))
    small = reference.shape[1] < DISPLAY_WIDTH // 2  # shown larger than it is: keep the pixels sharp
    html = [f"<p>{escape(summary)}</p>",
            _gallery([("reference", panels.reference), ("candidate", panels.candidate)], pixelated=small),
            _gallery([(f"|difference| × {DIFF_GAIN}", panels.difference), (f"heat map of |difference| (0 … {panels.max_abs})", panels.heat_map)],
                     pixelated=small),
            _heat_legend(panels.max_abs)]
    if panels.zoom is not None and panels.zoom_box is not None:
        x0, y0, x1, y1 = panels.zoom_box
        html.append(f"<h4>Zoom on the region that differs (x {x0}–{x1}, y {y0}–{y1})</h4>")
        html.append(_gallery(list(zip(("reference", "candidate", f"|difference| × {DIFF_GAIN}"), panels.zoom)), pixelated=True))
    return "\n".join(html)


def _timing(timing: Timing) -> str:
    frames = timing.frames
    head = f'<p><span class="big">{timing.fps:.2f}</span> frames/s' + (f" over {frames} frames" if frames is not None else "") + "</p>"
    seconds = timing.seconds
    rows = [[name, f"{value:.3f}", f"{value / frames * 1000:.1f}" if frames else "-"] for name, value in seconds.items()]
    return head + (_table(("stage or phase", "seconds", "ms per frame"), rows) if rows else "")


def _table(columns: tuple[str, ...] | list[str], rows: list[list[str]], verdict_column: int | None = None) -> str:
    numeric = [is_numeric_column([row[i] for row in rows]) for i in range(len(columns))]
    head = "".join(f'<th class="{"num" if numeric[i] else "text"}">{escape(c)}</th>' for i, c in enumerate(columns))
    body = []
    for row in rows:
        verdict = row[verdict_column] if verdict_column is not None else ""
        css = ' class="failed"' if verdict in ("FAIL",) else ""
        cells = "".join(f'<td class="{_cell_class(i, value, verdict_column, numeric[i])}">{_breakable(value) if not numeric[i] else escape(value)}</td>'
                        for i, value in enumerate(row))
        body.append(f"<tr{css}>{cells}</tr>")
    return f'<table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _breakable(text: str) -> str:
    """`text` escaped, with a line-break opportunity after each `.`, `_` or `/` that a letter follows: a narrow column
    breaks "frame.template_index" at the dot, not mid-word (the CSS breaks anywhere only where that is not enough)."""
    return re.sub(r"([._/])(?=[A-Za-z])", r"\1<wbr>", escape(text))


def _cell_class(index: int, value: str, verdict_column: int | None, numeric: bool) -> str:
    if index == verdict_column:
        return "verdict-cell " + _verdict_class(value.upper())
    return "num" if numeric else ("name" if index == 0 else "text")


def _section(title: str, content: str, anchor: str | None = None, level: int = 2) -> str:
    ident = f' id="{escape(anchor, quote=True)}"' if anchor else ""
    return f"<section{ident}><h{level}>{escape(title)}</h{level}>\n{content}\n</section>"


def _gallery(images: list[tuple[str, bytes]], pixelated: bool = False) -> str:
    """Pictures side by side, each scaled to its share of the width (one picture: half the width); `pixelated` keeps
    small pictures' pixels sharp when they are shown larger."""
    style = ' class="pixelated"' if pixelated else ""
    figures = [f'<figure><img{style} alt="{escape(caption, quote=True)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'
               f"<figcaption>{escape(caption)}</figcaption></figure>" for caption, data in images]
    return f'<div class="gallery{" single" if len(images) == 1 else ""}">{"".join(figures)}</div>'


def _heat_legend(max_abs: int) -> str:
    ramp = cv2.applyColorMap(np.linspace(0, 255, 256, dtype=np.uint8).reshape(1, 256), cv2.COLORMAP_INFERNO)[0]
    stops = ", ".join(f"rgb({r},{g},{b}) {i / 255:.0%}" for i, (b, g, r) in enumerate(ramp) if i % 32 == 0 or i == 255)
    return (f'<div class="legend"><span>0</span><span class="ramp" style="background: linear-gradient(to right, {stops})"></span>'
            f"<span>{max_abs}</span></div>")


def _verdict_class(verdict: str) -> str:
    return {"PASS": "pass", "FAIL": "fail"}.get(verdict, "neutral")


def _psnr_threshold(stage: StageResult) -> float | None:
    """The gate's minimum PSNR for a stage, whatever the gate file calls it (psnr_min, min_psnr, psnr)."""
    for key, value in stage.tolerance.items():
        if "psnr" in key.lower() and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


def _ticks(low: float, high: float, count: int, integer: bool = False) -> list[float]:
    span = (high - low) or 1.0
    raw = span / max(1, count)
    step = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 5, 10):
        if raw <= step * multiple:
            step *= multiple
            break
    if integer:
        step = max(1.0, round(step))
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step) + 1)]


def _max_pool(image: np.ndarray, scale: int) -> np.ndarray:
    if scale == 1:
        return image
    height, width = image.shape[0] // scale * scale, image.shape[1] // scale * scale
    pooled = image[:height, :width].reshape(height // scale, scale, width // scale, scale, *image.shape[2:])
    return pooled.max(axis=(1, 3))


def _shrink(image: np.ndarray, scale: int) -> np.ndarray:
    if scale == 1:
        return image
    return cv2.resize(image, (image.shape[1] // scale, image.shape[0] // scale), interpolation=cv2.INTER_AREA)


def _scaled_for_heat(per_pixel: np.ndarray, max_abs: int) -> np.ndarray:
    if max_abs == 0:
        return np.zeros_like(per_pixel)
    return (per_pixel.astype(np.float32) * (255.0 / max_abs)).round().astype(np.uint8)


def _difference_box(per_pixel: np.ndarray, pad: int = 8) -> tuple[int, int, int, int] | None:
    """The padded box around the pixels that differ, when it is small enough that a zoom shows more; else None."""
    ys, xs = np.nonzero(per_pixel)
    if not len(xs):
        return None
    height, width = per_pixel.shape
    x0, y0 = max(0, int(xs.min()) - pad), max(0, int(ys.min()) - pad)
    x1, y1 = min(width, int(xs.max()) + 1 + pad), min(height, int(ys.max()) + 1 + pad)
    return (x0, y0, x1, y1) if (x1 - x0) * (y1 - y0) <= 0.25 * width * height else None


def _png(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", image)
    if not ok:  # cv2 encodes any uint8 image; a failure here is a bug
        raise RuntimeError(f"could not PNG-encode an image of shape {image.shape}")
    return encoded.tobytes()


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
{body}
<footer>synctalk-parity report · self-contained: every picture is embedded in this file</footer>
</body>
</html>
"""

BENCH_PARTS = (tuple(range(10)), (0, 1, 2, *range(10, 16)))  # the benchmark's 16 columns as two tables (speed; cost), to fit a page

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1d2330;
       max-width: 1200px; margin: 24px auto; padding: 0 20px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 16px; }
h2 { font-size: 21px; border-bottom: 2px solid #e3e6ec; padding-bottom: 4px; margin-top: 36px; }
h3 { font-size: 16px; margin: 22px 0 8px; color: #2d3a52; }
h4 { font-size: 14px; margin: 14px 0 6px; }
.verdict { font-size: 17px; font-weight: 600; padding: 10px 14px; border-radius: 6px; margin: 10px 0; }
.verdict.pass { background: #e5f6ea; color: #11652c; border-left: 6px solid #1f9d47; }
.verdict.fail { background: #fdeaea; color: #8c1515; border-left: 6px solid #d32f2f; }
.verdict.neutral { background: #eef1f5; color: #37425a; border-left: 6px solid #8a94a8; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 8px 0 4px; }
dl.facts dt { color: #5d6880; } dl.facts dd { margin: 0; word-break: break-all; }
table { border-collapse: collapse; margin: 6px 0 10px; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 9px; border-bottom: 1px solid #e3e6ec; }
td.num, td.verdict-cell { white-space: nowrap; } td.text, td.name { overflow-wrap: break-word; }
th { background: #f4f6f9; font-weight: 600; } th.num, td.num { text-align: right; } th.text, td.text { text-align: left; }
td.name { text-align: left; font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px; }
tr.failed td { background: #fff4f4; }
td.verdict-cell { text-align: center; font-weight: 700; } td.verdict-cell.pass { color: #1f9d47; } td.verdict-cell.fail { color: #d32f2f; }
pre { background: #f6f7f9; border: 1px solid #e3e6ec; padding: 8px 10px; white-space: pre-wrap; word-break: break-word; }
.muted { color: #6b7486; } .warn { color: #9a5b00; }
.big { font-size: 22px; font-weight: 700; }
figure { display: inline-block; margin: 6px 14px 10px 0; vertical-align: top; }
figcaption { color: #5d6880; font-size: 12.5px; margin-top: 3px; }
.gallery { display: flex; gap: 12px; align-items: flex-start; }
.gallery figure { flex: 1 1 0; min-width: 0; margin: 6px 0 10px; }
.gallery.single figure { flex: 0 1 50%; }
.gallery img { width: 100%; height: auto; border: 1px solid #d7dbe3; display: block; }
img.pixelated { image-rendering: pixelated; }
svg.plot { max-width: 100%; height: auto; font: 11px system-ui, "DejaVu Sans", sans-serif; fill: #5d6880; }
svg .plot-area { fill: #fbfcfd; stroke: #d7dbe3; } svg .grid { stroke: #e8ebf0; }
svg .series { fill: none; stroke: #2f6fdb; stroke-width: 1.6; } svg .dot { fill: #2f6fdb; }
svg .sync-reference { fill: none; stroke: #e08a1e; stroke-width: 1.3; } svg .sync-window { fill: #cfdcf5; stroke: #2f6fdb; stroke-width: 0.8; }
svg .sync-candidate-label { fill: #2f6fdb; } svg .sync-reference-label { fill: #e08a1e; }
svg .nan-mark { fill: #d32f2f; } svg .threshold { stroke: #d32f2f; stroke-dasharray: 5 4; } svg .threshold-label { fill: #d32f2f; } svg .muted-svg { fill: #8a94a8; }
.legend { display: flex; align-items: center; gap: 8px; color: #5d6880; font-size: 12px; margin: -4px 0 8px;
          justify-content: flex-end; width: 100%; }
.legend .ramp { display: inline-block; width: 240px; height: 10px; border: 1px solid #d7dbe3; }
footer { margin: 40px 0 10px; color: #8a94a8; font-size: 12px; }
"""
