"""The view model the report writers share: the runs of a report as typed results (`ResultDocument`, read and checked
by `harness.verdict.result.read_result`), their labels, and the text of every table cell.

Reports read only result.json: a run folder is whatever `parity run`, `parity compare` or `parity bench` left there.
`report.json` (written by `parity report`) combines runs; its JSON Schema is generated from `ReportDocument`:
`{"schema": "synctalk-parity/report", "schema_version": 2, "created": ISO-8601, "runs": [result.json + "run_dir"]}`.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final, Literal

from ..errors import ParityError
from ..harness.verdict.result import SCHEMA_VERSION, ResultDocument, json_schema, read_result
from ..harness.verdict.types import (
    PSNR_IDENTICAL,
    BenchResult,
    BenchRow,
    Comparison,
    Diagnosis,
    LipSync,
    PortBench,
    PortVerdict,
    Spread,
    StageResult,
    Timing,
)

REPORT_SCHEMA_NAME: Final = "synctalk-parity/report"


@dataclass(kw_only=True)
class ReportRun(ResultDocument):
    """One run of a report: its result.json, and its folder relative to the report's."""

    run_dir: str


@dataclass(kw_only=True)
class ReportDocument:
    """report.json: the runs of one report."""

    schema: Literal["synctalk-parity/report"] = REPORT_SCHEMA_NAME
    schema_version: Literal[2] = SCHEMA_VERSION
    created: str = ""
    runs: list[ReportRun] = field(default_factory=list)


@functools.cache
def report_schema() -> dict[str, Any]:
    """report.json's JSON Schema, generated from `ReportDocument` on first use."""
    return json_schema(ReportDocument, "https://synctalk-parity/schemas/report-2.json", "synctalk-parity combined report (report.json)")



@dataclass(frozen=True)
class Run:
    """One run folder and its validated result.json, with the accessors the report writers share."""

    run_dir: Path
    result: ResultDocument
    label: str  # unique among the runs of one report: the backend, plus the precision or a number if needed

    @property
    def backend(self) -> str:
        return (self.result.backend.name if self.result.backend else None) or _bench_backends(self.result) or "no backend"

    @property
    def precision(self) -> str:
        return (self.result.backend.precision if self.result.backend else None) or "-"

    @property
    def comparison(self) -> Comparison | None:
        return self.result.comparison

    @property
    def verdict(self) -> str:
        """PASS, FAIL, or NOT COMPARED (a run without a comparison, e.g. a benchmark)."""
        if self.comparison is None:
            return "NOT COMPARED"
        return "PASS" if self.comparison.passed else "FAIL"

    @property
    def stages(self) -> list[StageResult]:
        return list(self.comparison.stages) if self.comparison is not None else []

    @property
    def diagnoses(self) -> list[Diagnosis]:
        return list(self.comparison.diagnoses) if self.comparison is not None else []

    @property
    def first_divergent_stage(self) -> str | None:
        return self.comparison.first_divergent_stage if self.comparison is not None else None

    @property
    def failed_stages(self) -> list[tuple[str, str]]:
        """(stage, failure text) for every stage that failed its gate, in contract order."""
        return [(stage.stage, failure_text(stage)) for stage in self.stages if not stage.passed]

    @property
    def problems(self) -> list[str]:
        """Failures of the comparison as a whole (frame counts differ, ...), not of one stage."""
        return list(self.comparison.problems) if self.comparison is not None else []

    @property
    def failures(self) -> list[tuple[str, str]]:
        """("comparison", problem) for each whole-comparison problem, then (stage, failure text) per failed stage."""
        return [("comparison", problem) for problem in self.problems] + self.failed_stages

    @property
    def coverage(self) -> str | None:
        """"13 of 13 stages, 249 of 249 frames compared"; None without a comparison."""
        return self.comparison.coverage if self.comparison is not None else None

    @property
    def not_compared(self) -> str | None:
        """"reference only: audio.pcm; candidate only: ..." for stages in one dump only; None when all were compared."""
        found = self.comparison.not_compared if self.comparison is not None else {}
        parts = [f"{side.replace('_', ' ')}: {', '.join(stages)}" for side, stages in found.items() if stages]
        return "; ".join(parts) or None

    @property
    def port(self) -> PortVerdict | None:
        """What `parity compare` found judging a port's own output (alignment, regions, encoding, sound, simulation)."""
        return self.result.port

    def port_lines(self) -> list[tuple[str, str]]:
        """(what, text) lines about a judged port, for the reports; empty for other runs."""
        port = self.port
        if port is None:
            return []
        lines = []
        for difference in port.differences:
            share = f" ({difference.explains:.0%} of the error)" if difference.explains is not None else ""
            where = f" (PORTING.md: {difference.porting_section})" if difference.porting_section else ""
            lines.append(("differs", f"{difference.title}{share}: {difference.evidence}; fix: {difference.fix}{where}"))
        lines.append(("candidate", f"{port.kind}: {port.candidate}"))
        if port.alignment:
            lines.append(("alignment", port.alignment.summary))
        if port.sources:
            lines.append(("sources", port.sources.text))
        if port.regions:
            psnr = port.regions.psnr
            shown = ", ".join(f"{label} {metric_text(getattr(psnr, name), 'db')} dB" for name, label in REGION_LABELS.items()
                              if getattr(psnr, name) is not None)
            lines.append(("PSNR by region", shown))
        if port.lossy:
            lines.append(("encoding", port.lossy.text))
        if port.codec:
            lines.append(("codec noise", port.codec.text))
            if port.codec.colour:
                lines.append(("colour", port.codec.colour))
        if port.audio_track:
            lines.append(("sound track", port.audio_track.text))
        if port.simulation:
            for finding in port.simulation.findings:
                what = ("simulated: " if finding.status == "named" else "partial, not named: ") + finding.name + (f" ({finding.mistake})" if finding.mistake and finding.mistake != finding.name else "")
                lines.append((what, f"{finding.description}; {finding.evidence}" + (f"; fix: {finding.fix}" if finding.fix else "")))
            simulation = port.simulation
            lines.append(("simulation", "explained" if simulation.explained else "not fully explained: " + "; ".join(simulation.unexplained)))
        return lines

    @property
    def lip_sync(self) -> LipSync | None:
        """The mouth's motion against the reference's (or the audio's), from the output frames."""
        return self.result.lip_sync

    @property
    def timing(self) -> Timing | None:
        return self.result.timing

    @property
    def bench(self) -> BenchResult | None:
        return self.result.bench

    def path(self, relative: str | Path) -> Path:
        """A path written in result.json, resolved against the run folder."""
        return self.run_dir / relative


def load_runs(run_dirs: list[Path]) -> list[Run]:
    """Read and validate result.json of each run folder; labels are made unique across them."""
    if not run_dirs:
        raise ParityError("no run folder given: pass one or more folders written by `parity run`, `compare` or `bench`")
    folders = [Path(run_dir).parent if Path(run_dir).is_file() else Path(run_dir) for run_dir in run_dirs]  # result.json itself
    results = [(folder, read_result(Path(given))) for folder, given in zip(folders, run_dirs)]
    labels = _unique_labels(results)
    return [Run(run_dir, result, label) for (run_dir, result), label in zip(results, labels)]


def report_document(runs: list[Run], run_dirs: list[str], created: str) -> ReportDocument:
    """The runs as one report.json document, each with its folder as given (relative to the report's)."""
    return ReportDocument(created=created, runs=[ReportRun(**{f.name: getattr(run.result, f.name) for f in fields(ResultDocument)}, run_dir=where)
                                                 for run, where in zip(runs, run_dirs)])


def metric_text(value: float | int | None, kind: str = "float") -> str:
    """A metric for a table cell: "-" where it does not apply, "inf"/"NaN" for non-finite values."""
    if value is None or isinstance(value, bool):
        return "-"
    x = float(value)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if kind == "percent":
        return f"{x * 100:.2f}%" if 0 < x < 1 else f"{x * 100:.0f}%"
    if kind == "db":  # PSNR is at most PSNR_IDENTICAL (identical data)
        return f"{x:.2f}" if x < PSNR_IDENTICAL else f"{x:.0f}"
    if kind == "ratio":  # SSIM, cosine: near 1 the digits that matter are the last ones
        if x == 1:
            return "1"
        if x < 0.9999:
            return f"{x:.4f}"
        text = f"{x:.8f}".rstrip("0")
        return f"1-{1 - x:.0e}" if text.endswith(".") else text  # closer to 1 than 8 digits show
    if kind == "int":
        return str(int(x))
    if x == 0:
        return "0"
    return f"{x:.3g}" if abs(x) < 1e-3 or abs(x) >= 1e4 else f"{x:.4g}"


def is_numeric_column(values: list[str]) -> bool:
    """True when every cell of a table column is a number (maybe with %, x, a range or a count) or a placeholder."""
    numbers = [value for value in values if value not in ("-", "clip")]
    return bool(numbers) and all(_NUMBER.match(value) for value in numbers)


_NUMBER = re.compile(r"^[-+]?(\d[\d,]*(\.\d+)?([eE][-+]?\d+)?|1-\de-\d+|inf|NaN)(%|x|\.\.[\d.]+|/\d+)?$")  # 1-8e-12: a ratio near 1

REGION_LABELS = {"mouth": "mouth box", "crop_rest": "rest of the crop box", "outside": "outside the crop box"}

STAGE_COLUMNS = ("stage", "frames", "max |diff|", "mean |diff|", "p99", "identical", "PSNR dB", "SSIM", "cosine", "NaN/Inf", "result")


def stage_row(stage: StageResult) -> list[str]:
    """The cells of one stage in the per-stage table (STAGE_COLUMNS), as text."""
    return [
        stage.stage,
        metric_text(stage.frames_compared, "int") if stage.per == "frame" else "clip",
        metric_text(stage.max_abs),
        metric_text(stage.mean_abs),
        metric_text(stage.p99),
        metric_text(stage.identical, "percent"),
        metric_text(stage.psnr, "db"),
        metric_text(stage.ssim, "ratio"),
        metric_text(stage.cosine, "ratio"),
        f"{stage.nan}/{stage.inf}",
        stage_verdict(stage),
    ]


BENCH_COLUMNS = ("backend", "mode", "batch", "fps median", "fps min..max", "repeats", "x model", "x default session", "x reference",
                 "whole-run fps", "first frame s", "U-Net GFLOP/s", "sgemm peak %", "peak RSS MB",
                 "process: first frame s", "process: wall s")


def machine_text(bench: BenchResult) -> str | None:
    """The machine the benchmark ran on, with its measured sgemm peak when there is one."""
    machine = bench.machine
    if machine and bench.sgemm_gflops:
        machine = f"{machine}; sgemm peak {bench.sgemm_gflops:.0f} GFLOP/s ({bench.sgemm or 'float32 matmul'})"
    if machine and bench.gpu_sgemm_gflops:
        machine = f"{machine}; GPU {bench.gpu}: sgemm peak {bench.gpu_sgemm_gflops:.0f} GFLOP/s, the peak of rows on the GPU"
    return machine


def bench_row(row: BenchRow) -> list[str]:
    """The cells of one benchmark row (BENCH_COLUMNS), as text."""
    optional = lambda value, form: "-" if value is None else form.format(value)
    return [
        row.backend,
        row.mode,
        metric_text(row.batch, "int"),
        f"{row.fps_median:.2f}",
        f"{row.fps_min:.2f}..{row.fps_max:.2f}",
        metric_text(row.repeats, "int"),
        optional(row.ratio_to_model, "{:.2f}x"),
        optional(row.ratio_to_default_session, "{:.2f}x"),
        optional(row.ratio_to_reference, "{:.2f}x"),
        optional(row.whole_run_fps, "{:.2f}"),
        optional(row.first_frame_s, "{:.2f}"),
        optional(row.unet_gflops, "{:.1f}"),
        optional(row.peak_share, "{:.0%}"),
        optional(row.peak_rss_mb, "{:.0f}"),
        optional(row.process_first_frame_s, "{:.2f}"),
        optional(row.process_wall_s, "{:.2f}"),
    ]


PORT_BENCH_COLUMNS = ("", "port", "ours", "port/ours")
PORT_BENCH_METRICS = (("wall_s", "wall s", "{:.2f}"), ("cpu_s", "CPU s (user+sys)", "{:.2f}"), ("peak_rss_mb", "peak RSS MB", "{:.0f}"),
                      ("first_frame_s", "first frame s (from process start)", "{:.2f}"))


def port_bench_rows(port: PortBench | None) -> list[list[str]]:
    """`parity bench --port`: per metric, the port's, ours and port/ours pair by pair, as "median (min..max)"."""
    if port is None or not port.pairs:
        return []

    def spread(value: Spread | None, form: str) -> str:
        if value is None:
            return "-"
        return f"{form.format(value.median)} ({form.format(value.min)}..{form.format(value.max)})"

    sides = port.port, port.ours, port.ratio
    return [[label, spread(sides[0][key], form), spread(sides[1][key], form), spread(sides[2][key], "{:.2f}x")]
            for key, label, form in PORT_BENCH_METRICS]


def port_bench_text(port: PortBench | None) -> list[str]:
    """The commands and the outcome of `parity bench --port`, one line each."""
    if port is None:
        return []
    lines = [f"port: {port.command}", f"ours: {' '.join(port.ours_argv)}",
             f"{len(port.pairs)} timed pairs, port and ours alternately, whole processes"]
    if port.failure:
        lines.append(f"FAIL: {port.failure}; no verdict")
    return lines


MEMORY_COLUMNS = ("backend", "batch", "frames", "peak RSS MB")


def memory_rows(bench: BenchResult) -> list[list[str]]:
    """The cells of the memory table (MEMORY_COLUMNS): peak RSS by video length."""
    return [[row.backend, metric_text(row.batch, "int"), str(row.frames), f"{row.peak_rss_mb:.0f}"] for row in bench.memory]


def memory_growth_text(bench: BenchResult) -> str | None:
    """"onnxruntime +3 MB, torch +1 MB" from the shortest to the longest run; None when not measured."""
    growth = {name: value for name, value in bench.memory_growth_mb.items() if value is not None}
    return ", ".join(f"{name} {value:+.0f} MB" for name, value in growth.items()) or None


def headline_parts(run: Run, code: Callable[[str], str] = str, text: Callable[[str], str] = str) -> list[str]:
    """The pieces of a run's one-line verdict after its label: stages within tolerance, coverage, first divergent
    stage, problems, diagnoses; names go through `code` (Markdown backticks), free text through `text` (escaping)."""
    parts = []
    if run.comparison is not None:
        judged = [stage for stage in run.stages if not stage.skipped]
        parts.append(f"{len(judged) - len(run.failed_stages)}/{len(judged)} stages within tolerance")
        if run.coverage:
            parts.append(text(run.coverage))
    if run.first_divergent_stage:
        parts.append(f"first divergent stage {code(run.first_divergent_stage)}")
    parts += [text(problem) for problem in run.problems]
    if run.diagnoses:
        parts.append("diagnoses: " + ", ".join(code(d.name) for d in run.diagnoses))
    return parts


def stage_verdict(stage: StageResult) -> str:
    """pass, FAIL, MISSING (required, absent: a failure) or "not provided" (absent, allowed by the gate: skipped)."""
    if stage.status == "missing":
        return "MISSING"
    if stage.status == "not provided":
        return "not provided"
    return "pass" if stage.passed else "FAIL"


def failure_text(stage: StageResult) -> str:
    """The failure message of a failed stage, verbatim; a generic line when the writer gave none."""
    return stage.failure or f"{stage.stage}: failed its tolerance {stage.tolerance}"


def summary_row(run: Run) -> list[str]:
    """One run in the cross-run summary (SUMMARY_COLUMNS)."""
    return [
        run.label,
        run.backend,
        run.precision,
        run.verdict,
        run.first_divergent_stage or "-",
        f"{len(run.failed_stages)}/{len(run.stages)}" if run.comparison is not None else "-",
        ", ".join(d.name for d in run.diagnoses) or "-",
        "-" if run.timing is None else f"{run.timing.fps:.2f}",
    ]


SUMMARY_COLUMNS = ("run", "backend", "precision", "verdict", "first divergent stage", "failed stages", "diagnoses", "frames/s")


def _bench_backends(result: ResultDocument) -> str | None:
    rows = result.bench.rows if result.bench else []
    return ", ".join(dict.fromkeys(row.backend for row in rows)) or None


def _unique_labels(results: list[tuple[Path, ResultDocument]]) -> list[str]:
    def label(result: ResultDocument, detail: bool) -> str:
        name = result.backend.name if result.backend else result.command
        return f"{name}-{result.backend.precision}" if detail and result.backend and result.backend.precision else name

    plain = [label(result, False) for _, result in results]
    labels = [label(result, plain.count(p) > 1) for (_, result), p in zip(results, plain)]
    seen: dict[str, int] = {}
    unique = []
    for text in labels:
        seen[text] = seen.get(text, 0) + 1
        unique.append(text if labels.count(text) == 1 else f"{text}-{seen[text]}")
    return unique
