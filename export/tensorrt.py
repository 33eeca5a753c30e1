"""TensorRT export: the TensorRT-ready ONNX, the exact build command, and (with TensorRT and a GPU) checked engines.

Engines are specific to one GPU and TensorRT version, so this export always writes what the target
machine needs to build them (`unet.onnx`, `audio_encoder.onnx`, `BUILD.md`, `build_engines.sh`),
then builds and checks the engines only where TensorRT and a CUDA GPU are present. Elsewhere it
raises `ExportUnfinished`, and `export_models` keeps the folder as `tensorrt-<precision>.unbuilt/`.

TensorRT (10.x Python API) and torch CUDA are imported lazily; this module imports without them.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shlex
import stat
from pathlib import Path

import numpy as np
import torch

from ..errors import ParityError
from ..models.specs import ExportSpec, spec_for
from . import ExportUnfinished
from .check_inputs import CheckInputs, inputs_for
from .manifest import MANIFEST_NAME, ArtifactRecord, write_manifest

BUILD_SCRIPT = "build_engines.sh"
BUILD_NOTES = "BUILD.md"
ONNX_PRECISION = "fp32"  # TensorRT lowers an fp32 ONNX to fp16 itself (--fp16); it is not given an fp16 ONNX
LIBRARIES = ("tensorrt", "polygraphy", "onnx")


def export(unet, audio_encoder, out_dir: Path, precision: str, check: CheckInputs | None = None) -> list[ArtifactRecord]:
    """Write the TensorRT-ready ONNX and build command into `out_dir`; build and check engines (on `check`, else the
    specs' example inputs) if possible."""
    from . import onnx as onnx_export

    out_dir = Path(out_dir)
    onnx_records = onnx_export.export(unet, audio_encoder, out_dir, ONNX_PRECISION, check=check)
    specs = [spec_for(unet), spec_for(audio_encoder)]
    write_build_files(out_dir, specs, precision)

    missing = missing_runtime()
    if missing:
        _write_unbuilt_manifest(out_dir, precision, onnx_records)
        raise ExportUnfinished(
            missing,
            "the TensorRT-ready ONNX and the build command",
            f"run {BUILD_SCRIPT} there on the target machine (see {BUILD_NOTES})",
            out_dir,
        )
    return _build_and_check(unet, audio_encoder, out_dir, precision, onnx_records, check)


def missing_runtime() -> str | None:
    """None when TensorRT imports and a CUDA GPU is visible, else one line: which is missing and how to get it."""
    problems = []
    try:
        import tensorrt  # noqa: F401
    except ModuleNotFoundError:
        problems.append("TensorRT is not installed (pip install tensorrt, TensorRT 10, on a machine with an NVIDIA GPU and CUDA 12)")
    except (ImportError, OSError) as exc:
        problems.append(f"TensorRT is installed but does not import ({_first_line(exc)}; reinstall it matching this CUDA)")
    if not torch.cuda.is_available():
        if torch.version.cuda is None:
            problems.append(f"no CUDA GPU: this torch {torch.__version__} is a CPU build (use a CUDA build of torch on a machine with an NVIDIA GPU)")
        else:
            problems.append("no CUDA GPU is visible (torch.cuda.is_available() is False; check the NVIDIA driver and CUDA_VISIBLE_DEVICES)")
    return "; ".join(problems) or None


def profile_shapes(spec: ExportSpec) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """The optimization profile: per input (min, opt, max) shapes for batch 1..`spec.max_batch`, tuned for the largest."""
    return {t.name: (t.batched(1), t.batched(spec.max_batch), t.batched(spec.max_batch)) for t in spec.inputs}


def trtexec_command(spec: ExportSpec, precision: str) -> str:
    """The `trtexec` line that builds `<network>.engine` from `<network>.onnx` with the batch profile."""
    shapes = profile_shapes(spec)

    def flag(which: int) -> str:
        return ",".join(f"{name}:{'x'.join(map(str, triple[which]))}" for name, triple in shapes.items())

    parts = [
        "trtexec",
        f"--onnx={spec.name}.onnx",
        f"--saveEngine={spec.name}.engine",
        f"--minShapes={flag(0)}",
        f"--optShapes={flag(1)}",
        f"--maxShapes={flag(2)}",
    ]
    return " ".join(parts + (["--fp16"] if precision == "fp16" else []))


def polygraphy_command(spec: ExportSpec, precision: str) -> str:
    """The equivalent `polygraphy convert` line (pip install polygraphy; needs TensorRT too)."""
    shapes = profile_shapes(spec)

    def flag(which: int) -> str:
        return " ".join(shlex.quote(f"{name}:[{','.join(map(str, triple[which]))}]") for name, triple in shapes.items())

    parts = [
        f"polygraphy convert {spec.name}.onnx --convert-to trt -o {spec.name}.engine",
        f"--trt-min-shapes {flag(0)}",
        f"--trt-opt-shapes {flag(1)}",
        f"--trt-max-shapes {flag(2)}",
    ]
    return " ".join(parts + (["--fp16"] if precision == "fp16" else []))


def write_build_files(out_dir: Path, specs: list[ExportSpec], precision: str) -> None:
    """Write `build_engines.sh` (trtexec) and `BUILD.md` (what, where, how) into `out_dir`."""
    trtexec = [trtexec_command(s, precision) for s in specs]
    script = out_dir / BUILD_SCRIPT
    script.write_text(
        "#!/bin/sh\n"
        f"# Build the synctalk-parity TensorRT engines ({precision}) on the machine that will run them.\n"
        "# Needs trtexec (TensorRT 10, NVIDIA GPU). See BUILD.md.\n"
        "set -eu\n"
        'cd "$(dirname "$0")"\n' + "".join(line + "\n" for line in trtexec)
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    (out_dir / BUILD_NOTES).write_text(_build_notes(specs, precision, trtexec))


class EngineRunner:
    """One deserialized TensorRT engine and its execution context; runs numpy batches through torch CUDA buffers.

    Batches larger than the engine's profile maximum are split. Needs TensorRT and a CUDA GPU.
    """

    def __init__(self, engine_bytes: bytes, label: str = "engine"):
        import tensorrt as trt

        self._trt = trt
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = self._runtime.deserialize_cuda_engine(engine_bytes)
        if self._engine is None:
            raise ParityError(f"{label}: TensorRT could not load it (built by another TensorRT version or for another GPU?); rebuild it on this machine")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self.inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.max_batch = min(self._engine.get_tensor_profile_shape(n, 0)[2][0] for n in self.inputs)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Inputs by name `(B, ...)` to outputs by name `(B, ...)` float32."""
        batch = len(feeds[self.inputs[0]])
        chunks = [
            self._run_chunk({name: feeds[name][start : start + self.max_batch] for name in self.inputs})
            for start in range(0, batch, self.max_batch)
        ]
        return {name: np.concatenate([chunk[name] for chunk in chunks]) for name in self.outputs}

    def _run_chunk(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        buffers = {}
        for name in self.inputs:
            tensor = torch.from_numpy(np.ascontiguousarray(feeds[name])).to("cuda", self._torch_dtype(name))
            self._context.set_input_shape(name, tuple(tensor.shape))
            buffers[name] = tensor
        for name in self.outputs:
            shape = tuple(self._context.get_tensor_shape(name))
            buffers[name] = torch.empty(shape, dtype=self._torch_dtype(name), device="cuda")
        for name, tensor in buffers.items():
            self._context.set_tensor_address(name, tensor.data_ptr())
        stream = torch.cuda.current_stream()
        if not self._context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        stream.synchronize()
        return {name: buffers[name].float().cpu().numpy() for name in self.outputs}

    def _torch_dtype(self, name: str) -> torch.dtype:
        dtypes = {self._trt.DataType.FLOAT: torch.float32, self._trt.DataType.HALF: torch.float16}
        return dtypes[self._engine.get_tensor_dtype(name)]


def build_engine(onnx_path: Path, spec: ExportSpec, precision: str) -> bytes:
    """A serialized engine for `onnx_path` with the batch profile of `spec` (TensorRT 10 API)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ParityError(f"{onnx_path}: TensorRT's ONNX parser rejected it: {errors}")
    config = builder.create_builder_config()
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name, (low, opt, high) in profile_shapes(spec).items():
        profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ParityError(f"{onnx_path}: TensorRT could not build an engine (run {trtexec_command(spec, precision)} --verbose to see why)")
    return bytes(serialized)


def _build_and_check(unet, audio_encoder, out_dir: Path, precision: str, onnx_records: list[ArtifactRecord],
                     given: CheckInputs | None = None) -> list[ArtifactRecord]:
    """Build both engines, run them on the check inputs, compare with PyTorch; raise naming every failure."""
    import tensorrt as trt

    records, failures = [], []
    for model in (unet, audio_encoder):
        spec = spec_for(model)
        engine_file = out_dir / f"{spec.name}.engine"
        engine_file.write_bytes(build_engine(out_dir / f"{spec.name}.onnx", spec, precision))
        check = _check_engine(model, spec, engine_file, precision, given)
        if not check["passed"]:
            failures.append(f"{spec.name}: max |diff| {check['max_abs_diff']:.3g} > {check['tolerance']:g}")
        onnx_record = next(r for r in onnx_records if r.network == spec.name)
        records.append(
            dataclasses.replace(
                onnx_record,
                file=engine_file.name,
                check=check,
                sha256="",
                extra={
                    "built_from": onnx_record.file,
                    "profile": {name: [list(s) for s in shapes] for name, shapes in profile_shapes(spec).items()},
                    "tensorrt": trt.__version__,
                    "gpu": torch.cuda.get_device_name(),
                    "build_command": trtexec_command(spec, precision),
                },
            )
        )
    if failures:
        raise ParityError(f"TensorRT {precision} engines differ from PyTorch: {'; '.join(failures)}")
    return records


def _check_engine(model, spec: ExportSpec, engine_file: Path, precision: str, given: CheckInputs | None = None) -> dict:
    """Max |diff| of the engine vs eager PyTorch on the ONNX export's check inputs (`given`, else the spec's example inputs)."""
    source, inputs = inputs_for(spec, given)
    model = copy.deepcopy(model).to("cpu", torch.float32).eval()
    with torch.inference_mode():
        expected = model(*(torch.from_numpy(np.asarray(x, dtype=np.float32)) for x in inputs)).numpy()
    runner = EngineRunner(engine_file.read_bytes(), str(engine_file))
    got = runner.run(dict(zip(spec.input_names, inputs)))[spec.output_names[0]]
    diff = float(np.max(np.abs(got - expected)))
    tolerance = spec.tolerance(precision)
    return {
        "method": "TensorRT engine vs eager PyTorch (CPU, fp32)",
        "inputs": source,
        "batch": len(inputs[0]),
        "max_abs_diff": diff,
        "tolerance": tolerance,
        "passed": bool(diff <= tolerance),  # False for NaN too
    }


def _write_unbuilt_manifest(out_dir: Path, precision: str, onnx_records: list[ArtifactRecord]) -> None:
    """A manifest describing the ONNX files only, saying plainly that no engine was built."""
    write_manifest(out_dir, "tensorrt", precision, onnx_records, LIBRARIES)
    path = out_dir / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    manifest["engines"] = "not built"
    manifest["onnx_precision"] = ONNX_PRECISION
    manifest["build"] = f"run {BUILD_SCRIPT} on the target machine (see {BUILD_NOTES})"
    path.write_text(json.dumps(manifest, indent=2) + "\n")


def _build_notes(specs: list[ExportSpec], precision: str, trtexec: list[str]) -> str:
    polygraphy = [polygraphy_command(s, precision) for s in specs]
    rows = "\n".join(
        f"| `{s.name}.onnx` | {_tensor_list(s.inputs)} | {_tensor_list(s.outputs)} | 1..{s.max_batch} |" for s in specs
    )
    return f"""# TensorRT engines ({precision}): build them on the target machine

A TensorRT engine only runs on the GPU model and TensorRT version that built it, so this folder
holds what that machine needs: the TensorRT-ready ONNX (opset 17, fp32, dynamic batch axis) and the
build commands. `manifest.json` describes the ONNX files; `"engines": "not built"` until you build.

| file | inputs | outputs | batch profile |
|---|---|---|---|
{rows}

Requirements: an NVIDIA GPU, CUDA 12, TensorRT 10 (`trtexec`, or `pip install tensorrt`).

## Build with trtexec (`sh {BUILD_SCRIPT}` runs exactly this, in this folder)

```sh
{chr(10).join(trtexec)}
```

## Or with Polygraphy (`pip install polygraphy tensorrt`)

```sh
{chr(10).join(polygraphy)}
```

## Or with this toolkit, which also checks the engines against PyTorch

On the GPU machine, re-run `parity export` for format `tensorrt` at precision `{precision}`: it
builds the same engines, compares them with PyTorch (max |diff| within
{specs[0].tolerance(precision):g}) and writes a `tensorrt-{precision}/` folder with a manifest of the engines.
"""


def _tensor_list(tensors) -> str:
    return ", ".join(f"`{t.name}` (B, {', '.join(map(str, t.shape))})" for t in tensors)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
