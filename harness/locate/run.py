"""`parity locate` as a library call: which artifact, which PyTorch weights, which inputs; the result and its files.

    outcome = locate(LocateRequest(network="audio_encoder", models=Path("exports/onnx-fp16"), audio_encoder=ENC))
    outcome.result.passed, outcome.written

The artifact is a network of an ONNX export folder (`--models`), or, without one, the network converted here in
memory as `parity export` converts it (`precision`, `keep_fp32`), without the export-time gate, so an fp16
conversion that misses its gate can be located too. A Core ML export folder is located on `coreml-emulated`
(`coreml.locate_coreml`); TensorRT engines are not located (TensorRT does not run here).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ...atomic import write_text_atomically
from ...errors import ParityError
from ...precision import checked_precision
from ..inputs import Inputs, demo_check_inputs, resolve_inputs
from ..verdict.result import from_json, json_schema, json_text, parse_json
from ..verdict.validate import validate
from .types import LocateResult

NETWORKS = ("unet", "audio_encoder")
RESULT_NAME = "locate.json"
KEEP_NAME = "keep_fp32.json"


@dataclass
class LocateRequest:
    network: str
    models: Path | None = None  # an export folder (or the folder `parity export --out` wrote into)
    precision: str | None = None  # without --models: the conversion's precision (default fp32)
    keep_fp32: list[str] | None = None  # without --models: layers the fp16 conversion keeps fp32 (None: nothing)
    unet: Path | None = None
    audio_encoder: Path | None = None
    mode: str = "ave"
    dump: Path | None = None
    dataset: Path | None = None
    audio: Path | None = None
    frames: int | None = None
    start_frame: int = 0
    advise: bool = True  # fp16: search a keep-fp32 set when the network misses its gate
    out: Path = Path("parity-locate")


@dataclass
class LocateOutcome:
    result: LocateResult
    written: list[Path] = field(default_factory=list)
    keep_file: Path | None = None


def check_locate_request(request: LocateRequest) -> None:
    """Validate the options before any work."""
    if request.network not in NETWORKS:
        raise ParityError(f"--network {request.network!r}: use unet or audio_encoder")
    if request.dump is not None and request.dataset is not None:
        raise ParityError("pass --dump or --dataset/--audio, not both: one source of inputs")
    if request.frames is not None and request.frames < 1:
        raise ParityError(f"--frames must be at least 1, got {request.frames}")
    if request.models is not None and (request.precision is not None or request.keep_fp32 is not None):
        raise ParityError("--precision and --keep-fp32 choose how locate converts the network itself; with --models the export's own are used")
    if request.precision is not None:
        checked_precision(request.precision)
    if request.keep_fp32 is not None and (request.precision or "fp32") != "fp16":
        raise ParityError("--keep-fp32 applies to an fp16 conversion: add --precision fp16")


def locate(request: LocateRequest, progress=None) -> LocateOutcome:
    """Locate the divergence of one network's artifact, search a keep-fp32 set for fp16, write the result files."""
    from ...models import load_models
    from .core import locate_onnx

    check_locate_request(request)
    start = time.perf_counter()
    say = progress or (lambda _text: None)
    # weights not given: the demo weights, as every command takes them; the clip given, else the demo's (not on a dump)
    inputs = resolve_inputs(request.dataset, request.audio, request.unet, request.audio_encoder, clip=request.dump is None,
                            networks=(request.network,), mode=request.mode, note=say)
    unet, encoder, labels = load_models(inputs.unet, inputs.audio_encoder, request.mode)
    torch_model = unet if request.network == "unet" else encoder
    notes = [f"no --{flag} given: compared with {labels[key]}" for flag, key, path in
             (("unet", "unet", request.unet), ("audio-encoder", "audio_encoder", request.audio_encoder))
             if path is None and key == request.network]
    kind, artifact, onnx_model, precision = _artifact(request, torch_model)
    say(f"inputs for {request.network}")
    samples = _samples(request, inputs, encoder)
    say(f"locating {samples.count} {'frames' if request.network == 'unet' else 'mel windows'} through {artifact}")
    batch = 1 if request.network == "unet" else 16
    if kind == "coreml":
        from .coreml import locate_coreml

        result = locate_coreml(torch_model, artifact, samples, precision, batch=batch)
    else:
        result = locate_onnx(torch_model, artifact, samples, precision, onnx_model=onnx_model, batch=batch)
    result.notes[:0] = notes
    if result.layers and result.layers[0].introduced_rel > 0.5:
        result.notes.append(f"the first layer already differs by {result.layers[0].introduced_rel:.2g} of its range: "
                            "are these the weights the artifact was exported from? (--unet / --audio-encoder)")
    outcome = LocateOutcome(result)
    if precision == "fp16" and request.advise and result.backend != "onnxruntime":
        result.notes.append("keep-fp32 search: implemented for ONNX fp16 (parity export --keep-fp32); not for Core ML programs yet")
    elif precision == "fp16" and request.advise:
        if result.output_passed and result.first_introducing is None:
            result.notes.append("keep-fp32 search not needed: the network passes its fp16 gate")
        else:
            from .advice import keep_fp32_search, write_keep_file

            say("searching the smallest keep-fp32 set (each step converts and runs the network)")
            # judged on what `parity export` checks too: the demo's inputs
            result.advice = keep_fp32_search(torch_model, samples.arrays, result, check=demo_check_inputs(encoder))
            if result.advice.passed and result.advice.keep_fp32:
                outcome.keep_file = write_keep_file(Path(request.out) / KEEP_NAME, result.advice, result)
    result.seconds = time.perf_counter() - start
    outcome.written = [write_result(result, Path(request.out))]
    if outcome.keep_file is not None:
        outcome.written.append(outcome.keep_file)
    return outcome


def _artifact(request: LocateRequest, torch_model):
    """(format, path or label, the in-memory ONNX model or None, precision) of the artifact to locate."""
    from ...export.manifest import artifact_path, find_export, read_manifest

    if request.models is None:
        from ...export.onnx import to_onnx
        from ...models.specs import spec_for

        precision = request.precision or "fp32"
        keep = request.keep_fp32
        model, _ = to_onnx(torch_model, spec_for(torch_model), precision, keep or ())
        kept = f", keep-fp32 {', '.join(keep)}" if keep else (", nothing kept fp32" if precision == "fp16" else "")
        return "onnx", f"{request.network}.onnx ({precision}{kept}; converted here as parity export converts it)", model, precision
    folder, _note = find_export(request.models, None)
    manifest = read_manifest(folder)
    fmt = str(manifest.get("format"))
    if fmt not in ("onnx", "coreml"):
        where = "TensorRT engines are not located: TensorRT does not run here" if fmt == "tensorrt" else f"format {fmt!r} is not located"
        raise ParityError(f"{folder}: {where}; pass an onnx or coreml export folder")
    path = artifact_path(folder, request.network)
    record = next(r for r in manifest["artifacts"] if r["network"] == request.network)
    extra = record.get("extra", {})
    if fmt == "coreml":  # what the program computes in: a network kept FLOAT32 in an fp16 export is located as fp32
        return "coreml", path, None, "fp16" if extra.get("compute_precision") == "FLOAT16" else "fp32"
    return "onnx", path, None, extra.get("precision", manifest.get("precision", "fp32"))


def _samples(request: LocateRequest, inputs: Inputs, encoder):
    from .inputs import samples_from_clip, samples_from_dump

    if request.dump is not None:
        return samples_from_dump(request.dump, request.network, request.frames)
    assert inputs.dataset is not None and inputs.audio is not None  # no dump: a clip, given or the demo's
    label = "the built-in demo" if inputs.demo else f"{inputs.dataset} + {inputs.audio.name}"
    return samples_from_clip(inputs.dataset, inputs.audio, request.network, encoder, request.frames, label, request.start_frame)


def write_result(result: LocateResult, out: Path) -> Path:
    """`out/locate.json`: the result as the verdict's codec writes it (non-finite numbers by name)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / RESULT_NAME
    write_text_atomically(path, json_text(result))
    return path


def locate_schema() -> dict:
    """The JSON Schema of locate.json, generated from `LocateResult`."""
    return json_schema(LocateResult, "https://synctalk-parity/schemas/locate-2.json", "synctalk-parity locate result (locate.json)")


def read_result(path: Path) -> LocateResult:
    """A locate.json (or the folder holding it) as its `LocateResult`, checked against its schema; ParityError naming the file."""
    path = Path(path) / RESULT_NAME if Path(path).is_dir() else Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ParityError(f"{path}: cannot read it ({exc}); pass a locate.json written by `parity locate`") from None
    document = parse_json(text, path)
    validate(document, locate_schema(), path, "locate.json")
    return from_json(document, LocateResult)
