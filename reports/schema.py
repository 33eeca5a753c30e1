"""What `report.json` holds (its JSON Schema, built on result.json's) and the read-only view of a run that the
report writers render.

Reports read only result.json (`harness.verdict.result`: its schema, its reader): a run folder is
whatever `parity run`, `parity compare` or `parity bench` left there.

`report.json` (written by `parity report`) combines runs:
`{"schema": "synctalk-parity/report", "schema_version": 1, "created": ISO-8601, "runs": [result.json + "run_dir"]}`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ParityError
from ..harness.verdict.result import RESULT_SCHEMA, SCHEMA_VERSION, read_result

REPORT_SCHEMA_NAME = "synctalk-parity/report"

REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://synctalk-parity/schemas/report-1.json",
    "title": "synctalk-parity combined report (report.json)",
    "type": "object",
    "required": ["schema", "schema_version", "runs"],
    "properties": {
        "schema": {"const": REPORT_SCHEMA_NAME},
        "schema_version": {"const": SCHEMA_VERSION},
        "created": {"type": "string"},
        "runs": {
            "type": "array",
            "items": {
                "allOf": [
                    {"$ref": "#/$defs/result"},
                    {"type": "object", "required": ["run_dir"], "properties": {"run_dir": {"type": "string"}}},
                ]
            },
        },
    },
    "$defs": {"result": {k: v for k, v in RESULT_SCHEMA.items() if not k.startswith("$")}, **RESULT_SCHEMA["$defs"]},
}


@dataclass(frozen=True)
class Run:
    """One run folder and its validated result.json, with the accessors the report writers share."""

    run_dir: Path
    result: dict[str, Any]
    label: str  # unique among the runs of one report: the backend, plus the precision or a number if needed

    @property
    def backend(self) -> str:
        return (self.result.get("backend") or {}).get("name") or _bench_backends(self.result) or "no backend"

    @property
    def precision(self) -> str:
        return (self.result.get("backend") or {}).get("precision") or "-"

    @property
    def comparison(self) -> dict[str, Any] | None:
        return self.result.get("comparison")

    @property
    def verdict(self) -> str:
        """PASS, FAIL, or NOT COMPARED (a run without a comparison, e.g. a benchmark)."""
        if self.comparison is None:
            return "NOT COMPARED"
        return "PASS" if self.comparison.get("passed") else "FAIL"

    @property
    def stages(self) -> list[dict[str, Any]]:
        return list((self.comparison or {}).get("stages") or [])

    @property
    def diagnoses(self) -> list[dict[str, Any]]:
        return list((self.comparison or {}).get("diagnoses") or [])

    @property
    def first_divergent_stage(self) -> str | None:
        return (self.comparison or {}).get("first_divergent_stage")

    @property
    def failed_stages(self) -> list[tuple[str, str]]:
        """(stage, failure text) for every stage that failed its gate, in contract order."""
        return [(stage["stage"], failure_text(stage)) for stage in self.stages if not stage.get("passed")]

    @property
    def problems(self) -> list[str]:
        """Failures of the comparison as a whole (frame counts differ, ...), not of one stage."""
        return list((self.comparison or {}).get("problems") or [])

    @property
    def failures(self) -> list[tuple[str, str]]:
        """("comparison", problem) for each whole-comparison problem, then (stage, failure text) per failed stage."""
        return [("comparison", problem) for problem in self.problems] + self.failed_stages

    @property
    def coverage(self) -> str | None:
        """"13 of 13 stages, 249 of 249 frames compared" as the comparison wrote it; None without one."""
        return (self.comparison or {}).get("coverage")

    @property
    def not_compared(self) -> str | None:
        """"reference only: audio.pcm; candidate only: ..." for stages in one dump only; None when all were compared."""
        found = (self.comparison or {}).get("not_compared") or {}
        parts = [f"{side.replace('_', ' ')}: {', '.join(stages)}" for side, stages in found.items() if stages]
        return "; ".join(parts) or None

    @property
    def port(self) -> dict[str, Any] | None:
        """What `parity compare` found judging a port's own output (alignment, regions, encoding, sound, simulation)."""
        return self.result.get("port")

    def port_lines(self) -> list[tuple[str, str]]:
        """(what, text) lines about a judged port, for the reports; empty for other runs."""
        port = self.port or {}
        lines = []
        if port.get("kind"):
            lines.append(("candidate", f"{port['kind']}: {port.get('candidate', '')}"))
        if port.get("alignment"):
            lines.append(("alignment", port["alignment"]["summary"]))
        psnr = (port.get("regions") or {}).get("psnr") or {}
        if psnr:
            shown = ", ".join(f"{REGION_LABELS[name]} {metric_text(value, 'db')} dB" for name, value in psnr.items() if name in REGION_LABELS)
            lines.append(("PSNR by region", shown))
        if port.get("lossy"):
            lines.append(("encoding", port["lossy"]["text"]))
        if port.get("audio_track"):
            lines.append(("sound track", port["audio_track"]["text"]))
        simulation = port.get("simulation") or {}
        for finding in simulation.get("findings") or []:
            lines.append((f"simulated: {finding['name']}", f"{finding['description']}; {finding['evidence']}"))
        if simulation:
            lines.append(("simulation", "explained" if simulation.get("explained") else "not fully explained: " + "; ".join(simulation.get("unexplained") or [])))
        return lines

    @property
    def timing(self) -> dict[str, Any] | None:
        return self.result.get("timing")

    @property
    def bench(self) -> dict[str, Any] | None:
        return self.result.get("bench")

    def path(self, relative: str) -> Path:
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


def number(value: Any) -> float | None:
    """A metric as a float (non-finite names become inf/nan); None where it does not apply."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}.get(value)
    return float(value)


def metric_text(value: Any, kind: str = "float") -> str:
    """A metric for a table cell: "-" where it does not apply, "inf" for identical images' PSNR."""
    x = number(value)
    if x is None:
        return "-"
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if kind == "percent":
        return f"{x * 100:.2f}%" if 0 < x < 1 else f"{x * 100:.0f}%"
    if kind == "db":  # writers cap PSNR at 100 dB for identical data
        return f"{x:.2f}" if x < 100 else f"{x:.0f}"
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


_NUMBER = re.compile(r"^[-+]?(\d[\d,]*(\.\d+)?([eE][-+]?\d+)?|inf|NaN)(%|x|\.\.[\d.]+|/\d+)?$")

REGION_LABELS = {"mouth": "mouth box", "crop_rest": "rest of the crop box", "outside": "outside the crop box"}

STAGE_COLUMNS = ("stage", "frames", "max |diff|", "mean |diff|", "p99", "identical", "PSNR dB", "SSIM", "cosine", "NaN/Inf", "result")


def stage_row(stage: dict[str, Any]) -> list[str]:
    """The cells of one stage in the per-stage table (STAGE_COLUMNS), as text."""
    nan, inf = stage.get("nan"), stage.get("inf")
    return [
        stage["stage"],
        metric_text(stage.get("frames_compared"), "int") if stage.get("per") == "frame" else "clip",
        metric_text(stage.get("max_abs")),
        metric_text(stage.get("mean_abs")),
        metric_text(stage.get("p99")),
        metric_text(stage.get("identical"), "percent"),
        metric_text(stage.get("psnr"), "db"),
        metric_text(stage.get("ssim"), "ratio"),
        metric_text(stage.get("cosine"), "ratio"),
        "-" if nan is None and inf is None else f"{nan or 0}/{inf or 0}",
        stage_verdict(stage),
    ]


BENCH_COLUMNS = ("backend", "mode", "batch", "fps median", "fps min..max", "repeats", "x model", "x default session", "x reference",
                 "whole-run fps", "first frame s", "U-Net GFLOP/s", "sgemm peak %", "peak RSS MB",
                 "process: first frame s", "process: wall s")


def machine_text(bench: dict[str, Any]) -> str | None:
    """The machine the benchmark ran on, with its measured sgemm peak when there is one."""
    machine = bench.get("machine")
    if machine and bench.get("sgemm_gflops"):
        machine = f"{machine}; sgemm peak {bench['sgemm_gflops']:.0f} GFLOP/s ({bench.get('sgemm') or 'float32 matmul'})"
    if machine and bench.get("gpu_sgemm_gflops"):
        machine = f"{machine}; GPU {bench.get('gpu')}: sgemm peak {bench['gpu_sgemm_gflops']:.0f} GFLOP/s, the peak of rows on the GPU"
    return machine


def bench_row(row: dict[str, Any]) -> list[str]:
    """The cells of one benchmark row (BENCH_COLUMNS), as text."""
    spread = "-" if row.get("fps_min") is None else f"{row['fps_min']:.2f}..{row.get('fps_max') or row['fps_min']:.2f}"
    return [
        row["backend"],
        row.get("mode") or "-",
        metric_text(row.get("batch"), "int"),
        f"{row['fps_median']:.2f}",
        spread,
        metric_text(row.get("repeats"), "int"),
        "-" if row.get("ratio_to_model") is None else f"{row['ratio_to_model']:.2f}x",
        "-" if row.get("ratio_to_default_session") is None else f"{row['ratio_to_default_session']:.2f}x",
        "-" if row.get("ratio_to_reference") is None else f"{row['ratio_to_reference']:.2f}x",
        "-" if row.get("whole_run_fps") is None else f"{row['whole_run_fps']:.2f}",
        "-" if row.get("first_frame_s") is None else f"{row['first_frame_s']:.2f}",
        "-" if row.get("unet_gflops") is None else f"{row['unet_gflops']:.1f}",
        "-" if row.get("peak_share") is None else f"{row['peak_share']:.0%}",
        "-" if row.get("peak_rss_mb") is None else f"{row['peak_rss_mb']:.0f}",
        "-" if row.get("process_first_frame_s") is None else f"{row['process_first_frame_s']:.2f}",
        "-" if row.get("process_wall_s") is None else f"{row['process_wall_s']:.2f}",
    ]


PORT_BENCH_COLUMNS = ("", "port", "ours", "port/ours")
PORT_BENCH_METRICS = (("wall_s", "wall s", "{:.2f}"), ("cpu_s", "CPU s (user+sys)", "{:.2f}"), ("peak_rss_mb", "peak RSS MB", "{:.0f}"),
                      ("first_frame_s", "first frame s (from process start)", "{:.2f}"))


def port_bench_rows(bench: dict[str, Any]) -> list[list[str]]:
    """`parity bench --port`: per metric, the port's, ours and port/ours pair by pair, as "median (min..max)"."""
    port = bench.get("port") or {}
    if not port.get("pairs"):
        return []

    def spread(value: dict[str, float] | None, form: str) -> str:
        if not value:
            return "-"
        return f"{form.format(value['median'])} ({form.format(value['min'])}..{form.format(value['max'])})"

    return [[label, spread((port.get("port") or {}).get(key), form), spread((port.get("ours") or {}).get(key), form),
             spread((port.get("ratio") or {}).get(key), "{:.2f}x")] for key, label, form in PORT_BENCH_METRICS]


def port_bench_text(bench: dict[str, Any]) -> list[str]:
    """The commands and the outcome of `parity bench --port`, one line each."""
    port = bench.get("port") or {}
    if not port:
        return []
    lines = [f"port: {port.get('command')}", f"ours: {' '.join(port.get('ours_argv') or [])}",
             f"{len(port.get('pairs') or [])} timed pairs, port and ours alternately, whole processes"]
    if port.get("failure"):
        lines.append(f"FAIL: {port['failure']}; no verdict")
    return lines


MEMORY_COLUMNS = ("backend", "batch", "frames", "peak RSS MB")


def memory_rows(bench: dict[str, Any]) -> list[list[str]]:
    """The cells of the memory table (MEMORY_COLUMNS): peak RSS by video length."""
    return [[row["backend"], metric_text(row.get("batch"), "int"), str(row["frames"]), f"{row['peak_rss_mb']:.0f}"]
            for row in bench.get("memory") or []]


def memory_growth_text(bench: dict[str, Any]) -> str | None:
    """"onnxruntime +3 MB, torch +1 MB" from the shortest to the longest run; None when not measured."""
    growth = {name: value for name, value in (bench.get("memory_growth_mb") or {}).items() if value is not None}
    return ", ".join(f"{name} {value:+.0f} MB" for name, value in growth.items()) or None


def headline_parts(run: Run, code: Callable[[str], str] = str, text: Callable[[str], str] = str) -> list[str]:
    """The pieces of a run's one-line verdict after its label: stages within tolerance, coverage, first divergent
    stage, problems, diagnoses; names go through `code` (Markdown backticks), free text through `text` (escaping)."""
    parts = []
    if run.comparison is not None:
        judged = [stage for stage in run.stages if stage.get("status") != "not provided"]
        parts.append(f"{len(judged) - len(run.failed_stages)}/{len(judged)} stages within tolerance")
        if run.coverage:
            parts.append(text(run.coverage))
    if run.first_divergent_stage:
        parts.append(f"first divergent stage {code(run.first_divergent_stage)}")
    parts += [text(problem) for problem in run.problems]
    if run.diagnoses:
        parts.append("diagnoses: " + ", ".join(code(d["name"]) for d in run.diagnoses))
    return parts


def stage_verdict(stage: dict[str, Any]) -> str:
    """pass, FAIL, MISSING (required, absent: a failure) or "not provided" (absent, allowed by the gate: skipped)."""
    status = stage.get("status") or "compared"
    if status == "missing":
        return "MISSING"
    if status == "not provided":
        return "not provided"
    return "pass" if stage.get("passed") else "FAIL"


def failure_text(stage: dict[str, Any]) -> str:
    """The failure message of a failed stage, verbatim; a generic line when the writer gave none."""
    return stage.get("failure") or f"{stage['stage']}: failed its tolerance {stage.get('tolerance') or {}}"


def summary_row(run: Run) -> list[str]:
    """One run in the cross-run summary (SUMMARY_COLUMNS)."""
    timing = run.timing or {}
    return [
        run.label,
        run.backend,
        run.precision,
        run.verdict,
        run.first_divergent_stage or "-",
        f"{len(run.failed_stages)}/{len(run.stages)}" if run.comparison is not None else "-",
        ", ".join(d["name"] for d in run.diagnoses) or "-",
        "-" if timing.get("fps") is None else f"{timing['fps']:.2f}",
    ]


SUMMARY_COLUMNS = ("run", "backend", "precision", "verdict", "first divergent stage", "failed stages", "diagnoses", "frames/s")


def _bench_backends(result: dict[str, Any]) -> str | None:
    rows = (result.get("bench") or {}).get("rows") or []
    names = list(dict.fromkeys(row["backend"] for row in rows))
    return ", ".join(names) or None


def _unique_labels(results: list[tuple[Path, dict[str, Any]]]) -> list[str]:
    def label(result: dict[str, Any], detail: bool) -> str:
        backend = result.get("backend") or {}
        name = backend.get("name") or result.get("command", "run")
        return f"{name}-{backend['precision']}" if detail and backend.get("precision") else name

    plain = [label(result, False) for _, result in results]
    labels = [label(result, plain.count(p) > 1) for (_, result), p in zip(results, plain)]
    seen: dict[str, int] = {}
    unique = []
    for text in labels:
        seen[text] = seen.get(text, 0) + 1
        unique.append(text if labels.count(text) == 1 else f"{text}-{seen[text]}")
    return unique
