"""`parity locate`: inside one exported network, every layer against the PyTorch module that produced it; the first
layer that introduces error, named by its module path; for fp16, the layers to keep in fp32.

A thin typer layer over `harness.locate.run.locate`; the table is rendered with rich, the page by `reports.locate`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .view import console, print_table


def register(app: typer.Typer) -> None:
    app.command(name="locate")(locate_command)


def locate_command(
    network: Annotated[str, typer.Option(help="Which network: unet or audio_encoder.")] = "unet",
    models: Annotated[Path | None, typer.Option(help="ONNX export folder written by `parity export` (or the --out folder it wrote into). Omitted: the network is converted here from the checkpoints, as `parity export` converts it, without its export-time gate.")] = None,
    precision: Annotated[str | None, typer.Option(help="Without --models: fp32 or fp16 conversion. Default: fp32.", show_default=False)] = None,
    keep_fp32: Annotated[str | None, typer.Option("--keep-fp32", help="Without --models, fp16: layers to keep fp32 (comma-separated module paths, a keep_fp32.json, or 'none'). Default: none, the whole network fp16.", show_default=False)] = None,
    unet: Annotated[Path | None, typer.Option(help="U-Net checkpoint the export came from. Default: the demo weights.")] = None,
    audio_encoder: Annotated[Path | None, typer.Option("--audio-encoder", help="Audio encoder checkpoint the export came from. Default: the demo weights.")] = None,
    dump: Annotated[Path | None, typer.Option(help="Take the inputs from a run's dump (a dump folder, or a run folder holding dump/).")] = None,
    dataset: Annotated[Path | None, typer.Option(help="Dataset to make the inputs from, with --audio. Omitted with --dump: the built-in demo's.")] = None,
    audio: Annotated[Path | None, typer.Option(help="Audio to make the inputs from, with --dataset.")] = None,
    frames: Annotated[int | None, typer.Option(help="Frames (U-Net, default 4) or mel windows (audio encoder, default all) to compare.", show_default=False)] = None,
    advise: Annotated[bool, typer.Option("--advise/--no-advise", help="fp16: when the network misses its gate, search the smallest set of layers to keep fp32 and verify it by export.")] = True,
    rows: Annotated[int, typer.Option(help="Layers shown in the terminal (the worst by introduced error, and the first over its tolerance); every layer is in locate.json and locate.html.")] = 12,
    out: Annotated[Path, typer.Option(help="Folder for locate.json, locate.html and keep_fp32.json.")] = Path("parity-locate"),
) -> None:
    """Compare every layer of an exported network with PyTorch and name the first layer that introduces error.

    Exit 0 when no layer exceeds its tolerance and the output is within its gate, 1 otherwise, 2 on bad input.
    """
    from ..errors import GateFailure, ParityError
    from ..export.keep_fp32 import parse_keep_fp32
    from ..harness.locate.run import LocateRequest, check_locate_request, locate

    request = LocateRequest(network, models, precision, None if keep_fp32 is None else [], unet, audio_encoder, dump=dump,
                            dataset=dataset, audio=audio, frames=frames, advise=advise, out=out)
    check_locate_request(request)
    if keep_fp32 is not None:
        keep = parse_keep_fp32(keep_fp32)
        others = sorted(name for other, names in keep.items() if other != network for name in names)
        if others:
            raise ParityError(f"--keep-fp32 names {', '.join(others[:3])}, not a layer of the {network} (--network)")
        request.keep_fp32 = keep.get(network, [])
    outcome = locate(request, progress=lambda text: console.print(f"[dim]{text}...[/]", highlight=False, soft_wrap=True))
    result = outcome.result
    _print_layers(result, rows)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    if result.advice is not None:
        _print_advice(result.advice, outcome.keep_file)
    html = _write_page(result, out)
    from ..reports.locate import verdict_line

    line = verdict_line(result)
    console.print(f"[{'green' if result.passed else 'red'}]{line.split(' ', 1)[0]}[/] {line.split(' ', 1)[1]}", highlight=False, soft_wrap=True)
    console.print(f"wrote {', '.join(str(p) for p in [*outcome.written, html])} ({result.seconds:.1f} s)", highlight=False, soft_wrap=True)
    if not result:
        raise typer.Exit(GateFailure.exit_code)


LAYER_COLUMNS = ("#", "layer", "op", "max\n|diff|", "rel", "cosine", "intro\nrel", "result")
LAYER_LEGEND = ("max |diff|, rel, cosine: propagated, the artifact run whole; intro rel: introduced, the layer run alone on "
                "PyTorch's values of its inputs; rel: max |diff| over the range of the layer's PyTorch value")


def _print_layers(result, rows: int) -> None:
    from rich import box
    from rich.table import Table

    shown = {layer.index for layer in result.worst_introducing(rows)}
    first = result.first_introducing
    if first is not None:
        shown.add(first.index)
    shown.add(result.layers[-1].index)  # the network output
    table = Table(title=f"{result.network}: {len(result.layers)} layers, {rows} worst by introduced error",
                  title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), show_edge=False,
                  caption=LAYER_LEGEND, caption_justify="left", caption_style="dim")
    for name in LAYER_COLUMNS:  # a long module path folds; figures never do
        table.add_column(name, justify="left" if name in ("layer", "op", "result") else "right", no_wrap=name != "layer", overflow="fold")
    for layer in result.layers:
        if layer.index not in shown:
            continue
        mark = "[red]over[/]" if layer.over else "ok"
        if first is not None and layer.index == first.index:
            mark = "[bold red]first over[/]"
        table.add_row(str(layer.index), layer.name, layer.op, f"{layer.propagated_max_abs:.3g}", f"{layer.propagated_rel:.3g}",
                      f"{layer.propagated_cosine:.6f}", f"{layer.introduced_rel:.3g}", mark)
    print_table(console, table)


def _print_advice(advice, keep_file) -> None:
    kept = ", ".join(advice.keep_fp32) or "nothing"
    status = "[green]passes[/]" if advice.passed else "[red]does not pass[/]"
    console.print(f"keep fp32: {kept} -> output max |diff| {advice.max_abs:.3g} (whole network fp16: {advice.baseline_max_abs:.3g}; "
                  f"gate {advice.tolerance:g}) {status}, {advice.evaluations} conversions tried", highlight=False, soft_wrap=True)
    verification = advice.verification
    if verification:
        by_batch = verification.get("max_abs_diff_by_batch") or {}
        shown = ", ".join(f"batch {b}: {d:.3g}" for b, d in by_batch.items()) or str(verification.get("failure"))
        console.print(f"verified by export: {shown} ({'passes' if verification.get('passed') else 'fails'} the fp16 gate)", highlight=False, soft_wrap=True)
    if advice.note:
        console.print(advice.note, highlight=False, soft_wrap=True)
    if keep_file is not None:
        console.print(f"use it: parity export --format onnx --precision fp16 --keep-fp32 {keep_file}", highlight=False, soft_wrap=True)


def _write_page(result, out: Path) -> Path:
    from ..atomic import write_text_atomically
    from ..reports.locate import render_locate

    path = Path(out) / "locate.html"
    write_text_atomically(path, render_locate(result))
    return path
