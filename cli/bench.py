"""The `parity bench` command: model-only, end-to-end and reference frames/s per backend and batch, as a table and result.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from ..errors import ParityError


def register(app: typer.Typer) -> None:
    app.command(name="bench")(bench_command)


def bench_command(
    backend: Annotated[str | None, typer.Option(help="Backends to measure, comma-separated. Default: torch,onnxruntime; with --port: the one `parity run` uses by default.", show_default=False)] = None,
    batch: Annotated[str | None, typer.Option(help="U-Net batch sizes, comma-separated. Default: 1,4,8; with --port: the backend's choice.", show_default=False)] = None,
    frames: Annotated[int | None, typer.Option(help="Frames per timed pass (model-only and end-to-end). Default: 32; with --port: ours writes the first N frames and the verdict judges N (the port's command must write N too). Default there: the whole clip.", show_default=False)] = None,
    repeats: Annotated[int, typer.Option(help="Timed passes after the warm-up; median, min and max are reported. With --port: timed pairs (port, ours).")] = 3,
    reference_frames: Annotated[int, typer.Option("--reference-frames", help="Frames of the eager reference loop (it is slow).")] = 8,
    memory: Annotated[bool, typer.Option("--memory", help="Also measure peak RSS of end-to-end runs of 100 and 400 frames (slow).")] = False,
    verdict: Annotated[bool, typer.Option("--verdict", help="Also time the first verdict: `parity run` as a whole process with the reference cache empty and then warm, beside `parity run --no-compare` (alternated, --repeats times; slow).")] = False,
    dataset: Annotated[Path | None, typer.Option(help="SyncTalk dataset for end-to-end runs (default: the built-in demo).")] = None,
    audio: Annotated[Path | None, typer.Option(help="Audio for end-to-end runs, with --dataset.")] = None,
    models: Annotated[Path | None, typer.Option(help="Export folder written by `parity export`.")] = None,
    unet: Annotated[Path | None, typer.Option(help="U-Net checkpoint. Default: the demo weights.")] = None,
    audio_encoder: Annotated[Path | None, typer.Option("--audio-encoder", help="Audio encoder checkpoint.")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for result.json (and reports). Default: parity-bench.", show_default=False)] = None,
    report: Annotated[str | None, typer.Option(help="Also write reports into --out: md,html,json,junit (or all).")] = None,
    provider: Annotated[str | None, typer.Option(help="ONNX Runtime execution provider for the onnxruntime rows: cpu, cuda, tensorrt, coreml. Default: cpu.", show_default=False)] = None,
    device: Annotated[str | None, typer.Option(help="torch device for the torch rows: cpu, cuda, cuda:N. Default: cpu.", show_default=False)] = None,
    streams: Annotated[int | None, typer.Option(help="U-Net calls in flight at once for the onnxruntime rows (see `parity run --streams`). Default: the backend's choice.", show_default=False)] = None,
    port: Annotated[str | None, typer.Option(help="A port's own command, run alternately with `parity run --no-compare` on the same inputs, then judged from the frames it wrote: {out} is replaced by a fresh folder for its frames (required), {dataset} and {audio} by the inputs.", show_default=False)] = None,
    warmup: Annotated[int, typer.Option(help="With --port: untimed pairs (port, ours) before the timed ones; with --calibrate-streams: untimed runs.")] = 1,
    calibrate_streams: Annotated[bool, typer.Option("--calibrate-streams", help="Instead: time `parity run --no-compare` with 1, 2, 4, ... U-Net calls at once (up to the CPUs; --frames, default 100, --repeats times, alternated) and keep the fastest count in the cache: onnxruntime on the CPU then runs that many by default on this machine.")] = False,
) -> None:
    """Frames/s of each backend: the networks alone, the whole pipeline, and the eager reference loop; or, with
    --port, a port's own command beside ours: wall, CPU, peak RSS, time to first frame, and the port's verdict."""
    from .view import console

    if calibrate_streams:
        if port is not None or memory or verdict:
            raise ParityError("--calibrate-streams measures the stream count alone; run it without --port, --memory and --verdict")
        if out is not None or report is not None or device is not None:
            raise ParityError("--calibrate-streams keeps its result in the cache and writes no result.json; leave out --out, --report and --device")
        _calibrate(console, backend or "onnxruntime", batch, 100 if frames is None else frames, repeats, warmup, dataset, audio, models,
                   unet, audio_encoder, provider, streams)
        return
    out = Path("parity-bench") if out is None else out
    if port is not None:
        if memory:
            raise ParityError("--memory measures our pipeline alone; run it without --port")
        _bench_port(console, port, backend, batch, frames, repeats, warmup, dataset, audio, models, unet, audio_encoder, out,
                    report, provider, device, streams)
        return
    _bench(console, backend or DEFAULT_BACKENDS, batch or DEFAULT_BATCHES, 32 if frames is None else frames, repeats,
           reference_frames, memory, dataset, audio, models, unet, audio_encoder, out, report, provider, device, streams, verdict)


DEFAULT_BACKENDS = "torch,onnxruntime"
DEFAULT_BATCHES = "1,4,8"


def _bench(console, backend, batch, frames, repeats, reference_frames, memory, dataset, audio, models, unet,
           audio_encoder, out, report, provider=None, device=None, streams=None, verdict=False) -> None:
    from ..harness.bench.measure import BenchRequest, bench, write_bench_result

    formats = None
    if report is not None:
        from ..reports import parse_formats

        formats = parse_formats(report)
    request = BenchRequest(
        backends=_names(backend), batches=_sizes(batch), frames=frames, repeats=repeats, dataset=dataset, audio=audio,
        unet=unet, audio_encoder=audio_encoder, models=models, reference_frames=reference_frames, memory=memory,
        provider=provider, device=device, streams=streams, verdict=verdict,
    )
    with console.status("measuring the eager reference loop...") as status:
        result = bench(request, on_row=lambda row: status.update(f"measured {row.backend} batch {row.batch} {row.mode}..."))
    console.print(f"machine: {result.machine}", highlight=False)
    if result.sgemm_gflops:
        readings = ", ".join(f"{value:.0f}" for value in result.sgemm_readings)
        console.print(f"sgemm peak: {result.sgemm_gflops:.0f} GFLOP/s (float32 matmul, the best of readings {readings}; "
                      "a row's GFLOP/s % is its share of it)", highlight=False)
    if result.gpu_sgemm_gflops:
        console.print(f"GPU sgemm peak: {result.gpu_sgemm_gflops:.0f} GFLOP/s ({result.gpu}; torch float32 matmul, IEEE fp32; "
                      "the GFLOP/s % of rows on the GPU is their share of it)", highlight=False)
    from .view import print_table

    print_table(console, bench_table(result))
    for line in start_up_lines(result) + verdict_lines(result):
        console.print(line, highlight=False)
    for backend_name in dict.fromkeys(m.backend for m in result.memory):
        rows = " vs ".join(f"{m.frames} frames {m.peak_rss_mb:.0f} MB" for m in result.memory if m.backend == backend_name)
        console.print(f"memory {backend_name}: peak RSS {rows} ({result.growth_mb(backend_name):+.0f} MB)", highlight=False)
    path = write_bench_result(result, out)
    console.print(f"[green]wrote[/] {path}", highlight=False)
    if formats:
        from ..reports import write_reports

        written = write_reports([out], formats, out)
        console.print(f"reports: {', '.join(str(p) for p in written)}", highlight=False)


def _calibrate(console, backend, batch, frames, repeats, warmup, dataset, audio, models, unet, audio_encoder, provider, streams) -> None:
    from ..harness.bench.calibrate import BATCH, calibrate_streams
    from ..harness.bench.measure import BenchRequest
    from .view import print_table

    if batch is not None and _sizes(batch) != [BATCH]:
        raise ParityError(f"--calibrate-streams measures at batch {BATCH}, the CPU provider's; leave --batch out")
    request = BenchRequest(backends=_names(backend), batches=[BATCH], frames=frames, repeats=repeats, dataset=dataset, audio=audio,
                           unet=unet, audio_encoder=audio_encoder, models=models, provider=provider, streams=streams)

    def on_run(repeat: int, count: int, fps: float | None) -> None:
        which = "warm-up" if repeat < 0 else f"repeat {repeat + 1} of {repeats}"
        calls = f"{count} U-Net call{'s' if count > 1 else ''} at once"
        status.update(f"{which}: timing {calls}..." if fps is None else f"{which}: {calls}, {fps:.2f} frames/s")

    with console.status("calibrating the U-Net streams...") as status:
        calibration = calibrate_streams(request, warmup=warmup, on_run=on_run)
    table = Table(title=f"parity run --no-compare, {frames} frames, steady frames/s", title_justify="left")
    for column in ("U-Net calls at once", "frames/s", "range", "over 1"):
        table.add_column(column, justify="right")
    medians = calibration.medians
    for count, values in sorted(calibration.fps.items()):
        mark = " (kept)" if count == calibration.streams else ""
        table.add_row(f"{count}{mark}", f"{medians[count]:.2f}", f"{min(values):.2f}..{max(values):.2f}", f"{medians[count] / medians[1]:.2f}x")
    print_table(console, table)
    if calibration.within_noise:
        console.print("the ranges overlap: the counts differ by less than this machine's readings move; more --repeats "
                      "(or --frames) tell them apart", highlight=False, soft_wrap=True)
    console.print(f"kept {calibration.streams} in {calibration.path}: `parity run --backend onnxruntime` on this machine now runs "
                  f"{calibration.streams} U-Net call{'s' if calibration.streams > 1 else ''} at once unless --streams says otherwise",
                  highlight=False, soft_wrap=True)


MODE_LABELS = {"end-to-end": "e2e", "end-to-end-video": "e2e video", "model-default-session": "plain ORT"}
TABLE_LEGEND = ("b: U-Net batch; fps: steady frames/s (median of the repeats; range: min..max); x mod, x ref: fps over the same backend's "
                "model-only fps and over the eager reference loop; plain ORT: model-only on the same export with ONNX Runtime's "
                "default session options, one call at a time, timed alternately with model; x dflt: fps over it; whole: fps over "
                "the whole frame phase, start-up included; "
                "GFLOP/s: the U-Net's achieved and its share of the sgemm peak; MB: peak RSS; e2e: parity run --no-compare (PNG frames, video, dump); e2e video: the video only")


def start_up_lines(result) -> list[str]:
    """Per e2e row: `parity run --no-compare` as a whole process, from its start (medians of the repeats)."""
    lines = []
    for row in result.rows:
        if row.mode == "end-to-end" and row.process_wall_s is not None:
            first = "-" if row.process_first_frame_s is None else f"{row.process_first_frame_s:.2f} s"
            lines.append(f"parity run {row.backend} batch {row.batch}: first frame {first} after process start, "
                         f"whole process {row.process_wall_s:.2f} s")
    return lines


def verdict_lines(result) -> list[str]:
    """Per --verdict row: time to the first verdict, cold and warm reference cache, beside the run alone (medians)."""
    from statistics import median

    lines = []
    for row in result.verdict:
        run, cold, warm = median(row.run_s), median(row.cold_s), median(row.warm_s)
        spread = lambda values: f"{min(values):.1f}..{max(values):.1f}"
        lines.append(f"first verdict {row.backend} batch {row.batch}, {row.frames} frames: reference not cached {cold:.1f} s "
                     f"({cold / run:.2f}x the run; {spread(row.cold_s)}), cached {warm:.1f} s ({warm / run:.2f}x; {spread(row.warm_s)}), "
                     f"the run alone (--no-compare) {run:.1f} s ({spread(row.run_s)}); {len(row.run_s)} alternated repeats, whole processes")
    return lines


def bench_table(result) -> Table:
    """Fits 80 columns; TABLE_LEGEND, its caption, explains the short headers."""
    table = Table(box=box.SIMPLE_HEAD, padding=0, show_edge=False, caption=TABLE_LEGEND, caption_justify="left", caption_style="dim")
    for column in ("backend", "b", "mode", "fps", "range", "x mod", "x dflt", "x ref", "whole", "GFLOP/s", "MB"):
        table.add_column(column, justify="left" if column in ("backend", "mode") else "right")
    ratio = lambda value: "" if value is None else f"{value:.2f}x"
    for row in result.rows:
        table.add_row(
            row.backend.removesuffix("-reference"), str(row.batch), MODE_LABELS.get(row.mode, row.mode), f"{row.fps_median:.2f}",
            f"{row.fps_min:.2f}..{row.fps_max:.2f}", ratio(row.ratio_to_model), ratio(row.ratio_to_default_session),
            ratio(row.ratio_to_reference),
            "" if row.whole_run_fps is None else f"{row.whole_run_fps:.2f}",
            _gflops(row),
            "" if row.peak_rss_mb is None else f"{row.peak_rss_mb:.0f}",
        )
    return table


def _gflops(row) -> str:
    """"174 59%": the U-Net's achieved GFLOP/s and its share of the measured sgemm peak."""
    if row.unet_gflops is None:
        return ""
    return f"{row.unet_gflops:.0f}" + ("" if row.peak_share is None else f" {row.peak_share:.0%}")


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _sizes(text: str) -> list[int]:
    try:
        return [int(size) for size in text.split(",") if size.strip()]
    except ValueError:
        raise ParityError(f"--batch: expected comma-separated integers like 1,4,8, got {text!r}") from None


def _bench_port(console, port, backend, batch, frames, repeats, warmup, dataset, audio, models, unet, audio_encoder, out,
                report, provider, device, streams=None) -> None:
    from ..harness.bench.measure import write_port_bench_result
    from ..harness.bench.port import PortBenchRequest, bench_port

    formats = None
    if report is not None:
        from ..reports import parse_formats

        formats = parse_formats(report)
    names = _names(backend) if backend else []
    sizes = _sizes(batch) if batch else []
    if len(names) > 1 or len(sizes) > 1:
        raise ParityError("--port runs one pipeline of ours beside the port: pass one --backend and one --batch (or none)")
    request = PortBenchRequest(port, repeats=repeats, warmup=warmup, frames=frames, dataset=dataset, audio=audio, unet=unet,
                               audio_encoder=audio_encoder, models=models, backend=names[0] if names else None,
                               batch=sizes[0] if sizes else None, provider=provider, device=device, streams=streams, out=out)

    def running(side: str, index: int | None) -> None:
        what = "judging the port's frames" if side == "verdict" else f"{side}: {'warm-up' if index is None else f'run {index + 1} of {repeats}'}"
        status.update(f"{what}...")

    with console.status("starting...") as status:
        result = bench_port(request, on_run=running)
    path = write_port_bench_result(result, out)
    print_port_bench(console, result)
    console.print(f"[green]wrote[/] {path}", highlight=False)
    if formats:
        from ..reports import write_reports

        written = write_reports([out], formats, out)
        console.print(f"reports: {', '.join(str(p) for p in written)}", highlight=False)
    if not result.passed:
        raise typer.Exit(1)


def print_port_bench(console, result) -> None:
    """Both commands, the speed table (port, ours, port/ours pair by pair), then the port's verdict."""
    from .view import print_table

    console.print(f"port: {' '.join(result.port_argv)}", highlight=False, soft_wrap=True)
    console.print(f"ours: {' '.join(result.ours_argv)}", highlight=False, soft_wrap=True)
    if result.pairs:
        print_table(console, port_bench_table(result))
    if result.failure:
        console.print(f"[red]FAIL[/]: {result.failure}; no verdict", highlight=False, soft_wrap=True)
        return
    from .compare import _print_port, _print_verdict

    _print_port(result.judged)
    _print_verdict(result.judged.comparison, "")
    console.print(f"verdict: {result.judged.result_path}", highlight=False, soft_wrap=True)


PORT_LEGEND = ("whole processes, port and ours alternately; median (min..max) over the pairs; port/ours: the ratio pair by "
               "pair; CPU: user+sys; first frame: process start to its first frame file")


def port_bench_table(result) -> Table:
    """Per metric: the port's, ours and port/ours pair by pair, each as median (min..max)."""
    from ..reports.view import PORT_BENCH_COLUMNS, port_bench_rows

    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), show_edge=False, caption=PORT_LEGEND, caption_justify="left", caption_style="dim")
    for column in PORT_BENCH_COLUMNS:
        table.add_column(column, justify="left" if not column else "right")
    for row in port_bench_rows(result.to_record()):
        table.add_row(*row)
    return table
