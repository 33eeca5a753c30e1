"""The Markdown report, for pull requests: a verdict per run, the per-stage table, failures verbatim, timing and benchmarks."""

from __future__ import annotations

from typing import Any

from ..harness.verdict.types import Timing
from .view import (
    BENCH_COLUMNS,
    MEMORY_COLUMNS,
    PORT_BENCH_COLUMNS,
    STAGE_COLUMNS,
    SUMMARY_COLUMNS,
    Run,
    bench_row,
    headline_parts,
    is_numeric_column,
    machine_text,
    memory_growth_text,
    memory_rows,
    port_bench_rows,
    port_bench_text,
    stage_row,
    summary_row,
)

VERDICT_MARK = {"PASS": "✅ PASS", "FAIL": "❌ FAIL", "NOT COMPARED": "➖ NOT COMPARED"}


def render(runs: list[Run]) -> str:
    """The whole report: a summary table across runs (when more than one), then one section per run."""
    lines = ["# Parity report", ""]
    if len(runs) > 1:
        lines += ["## Summary", "", *table(SUMMARY_COLUMNS, [summary_row(run) for run in runs]), ""]
    for run in runs:
        lines += run_section(run, level=2 if len(runs) > 1 else 1)
    return "\n".join(lines).rstrip() + "\n"


def run_section(run: Run, level: int) -> list[str]:
    """One run: headline verdict, inputs, stages, failures, diagnoses, timing, benchmark."""
    heading = "#" * (level + 1)
    lines = [f"{'#' * level} {cell(run.label)}", "", headline(run), ""] if level > 1 else [headline(run), ""]
    lines += _inputs(run)
    if run.stages:
        lines += [f"{heading} Stages", "", *table(STAGE_COLUMNS, [stage_row(stage) for stage in run.stages]), ""]
    if run.failures:
        lines += [f"{heading} Failures", ""]
        for stage, text in run.failures:
            lines += [f"**{cell(stage)}**", "", *fenced(text), ""]
    if run.port_lines():
        lines += [f"{heading} The port's own output", ""]
        lines += [f"- **{cell(what)}**: {cell(text)}" for what, text in run.port_lines()]
        lines += [""]
    if run.lip_sync is not None:
        lines += [f"{heading} Lip sync", "", cell(run.lip_sync.summary()), ""]
        windows = [w for w in run.lip_sync.windows if w.score is not None]
        if windows:
            rows = [[f"{w.start}..{w.start + w.frames - 1}", f"{w.offset_frames:+d}" if w.offset_frames is not None else "-", f"{w.score:.2f}"]
                    for w in windows]
            lines += [*table(("frames", "offset (frames)", "score"), rows), ""]
    if run.diagnoses:
        lines += [f"{heading} Diagnoses", ""]
        lines += [f"- **{cell(d.name)}** ({cell(d.stage or 'all stages')}): {cell(d.message)}" for d in run.diagnoses]
        lines += [""]
    if run.timing:
        lines += [f"{heading} Timing", "", *_timing(run.timing), ""]
    if run.bench and run.bench.port:
        machine = machine_text(run.bench)
        lines += [f"{heading} The port beside our pipeline", ""] + ([f"Machine: {cell(machine)}", ""] if machine else [])
        lines += [*(f"- {cell(line)}" for line in port_bench_text(run.bench.port)), ""]
        if port_bench_rows(run.bench.port):
            lines += [*table(PORT_BENCH_COLUMNS, port_bench_rows(run.bench.port)), ""]
    if run.bench and run.bench.rows:
        machine = machine_text(run.bench)
        lines += [f"{heading} Benchmark", ""] + ([f"Machine: {cell(machine)}", ""] if machine else [])
        lines += [*table(BENCH_COLUMNS, [bench_row(row) for row in run.bench.rows]), ""]
        if memory_rows(run.bench):
            growth = memory_growth_text(run.bench)
            lines += [f"{heading} Memory by video length", "", *table(MEMORY_COLUMNS, memory_rows(run.bench)), ""]
            lines += [f"Growth from the shortest to the longest run: {cell(growth)}", ""] if growth else []
    return lines


def headline(run: Run) -> str:
    """"**✅ PASS** — onnxruntime fp32, 12 stages" or the FAIL line naming the first divergent stage and diagnoses."""
    first = f"**{VERDICT_MARK[run.verdict]}** — {cell(run.backend)}" + (f" {cell(run.precision)}" if run.precision != "-" else "")
    return "; ".join([first, *headline_parts(run, code=lambda name: f"`{name}`", text=cell)])


def table(columns: tuple[str, ...] | list[str], rows: list[list[str]]) -> list[str]:
    """A GitHub Markdown table; cells are escaped; columns of numbers are right-aligned."""
    header = "| " + " | ".join(cell(c) for c in columns) + " |"
    rule = "|" + "|".join(" ---: " if is_numeric_column([row[i] for row in rows]) else " --- " for i in range(len(columns))) + "|"
    return [header, rule, *("| " + " | ".join(cell(value) for value in row) + " |" for row in rows)]


def cell(text: Any) -> str:
    """Text safe inside a table cell or a line: pipes escaped, newlines folded, Markdown/HTML specials escaped."""
    value = str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")
    for special in ("<", ">", "*", "`"):
        value = value.replace(special, "\\" + special)
    return value


def fenced(text: str) -> list[str]:
    """A code block that shows `text` verbatim, whatever backticks it holds."""
    fence = "```"
    while fence in text:
        fence += "`"
    return [fence + "text", text, fence]


def _inputs(run: Run) -> list[str]:
    result, inputs, comparison = run.result, run.result.inputs, run.comparison
    facts: list[tuple[str, Any]] = [("command", f"parity {result.command}"), ("created", result.created or None), ("run folder", str(run.run_dir))]
    if inputs:
        facts += [("dataset", "built-in demo" if inputs.demo else inputs.dataset), ("audio", inputs.audio), ("frames", inputs.frames)]
        facts += [(f"weights: {key}", value) for key, value in (inputs.weights or {}).items()]
    if comparison is not None:
        gate = comparison.gate
        facts += [("reference", comparison.reference), ("candidate", comparison.candidate),
                  ("gate", f"{gate.precision or '-'} ({gate.file or 'built-in tolerances'})"),
                  ("not compared", run.not_compared)]
    return [f"- {name}: {cell(value)}" for name, value in facts if value is not None] + [""]


def _timing(timing: Timing) -> list[str]:
    frames = timing.frames
    lines = [f"**{timing.fps:.2f} frames/s**" + (f" over {frames} frames" if frames is not None else ""), ""]
    seconds = timing.seconds
    if seconds:
        rows = [[name, f"{value:.3f}", f"{value / frames * 1000:.1f}" if frames else "-"] for name, value in seconds.items()]
        lines += table(("stage or phase", "seconds", "ms per frame"), rows)
    return lines
