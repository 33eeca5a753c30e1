"""`parity bench --port`: a port's own command beside `parity run --no-compare` on the same inputs, then its verdict.

    result = bench_port(PortBenchRequest("./port --audio {audio} --dataset {dataset} --out {out}", repeats=3))

The two commands run alternately (port, ours, port, ours, ...), each as a whole process, each into a fresh
temporary folder. Every process is measured from outside (`measure_process`), the same way for both:

- wall: spawn to exit;
- CPU: user + system time of that child and the processes it waited for (`os.wait4`);
- peak RSS: the child's `ru_maxrss` from the same `wait4`. Linux carries a process's peak across exec, so a
  child forked by the bench (hundreds of MB with numpy and onnxruntime loaded) would read at least the
  bench's size; the child is therefore started by a small launcher process (`python -I -S`, a few MB), and
  what is reported is at least the launcher's own peak (`launcher_mb` in the JSON), which is small;
- first frame: the modification time of the first frame file the process wrote (`frames/00000.png` for
  ours; the oldest image file in `{out}` for the port) minus the spawn time (wall clock): time to first frame
  from process start, start-up included. Renaming a folder keeps its files' mtimes, so the run's write into a
  temporary folder and rename does not move it.

Ratios are port over ours, pair by pair (the port's run i over our run i), reported as median and min..max.
The port's frames from its last run are then judged by the port judge (`judge_port.py`, what `parity compare
PORT_OUTPUT --dataset --audio --unet --audio-encoder` does) against the reference of the same inputs.
A port command that fails or writes no frames is reported as such (`failure`), never judged as a pass.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from ...errors import ParityError
from ..inputs import resolve_inputs
from ..verdict.types import PortBench, PortBenchVerdict, PortPair, ProcessRun

PLACEHOLDERS = ("{out}", "{dataset}", "{audio}")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
PORT_OUTPUT = "port-output"  # in --out: what the port wrote in its last run (judged)
PORT_VERDICT = "port-verdict"  # in --out: the verdict's own folder (result.json, candidate dump)

# The launcher: starts argv[2:] (posix_spawn), waits for it with wait4, writes what it measured as JSON to argv[1],
# and exits with the child's status. Only os, sys, time and json are imported: its peak RSS is a few MB.
LAUNCHER = r"""
import json, os, sys, time
report, argv = sys.argv[1], sys.argv[2:]
def peak_mb():
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
launcher_mb = peak_mb()
started = time.time()
clock = time.perf_counter()
try:
    pid = os.posix_spawnp(argv[0], argv, os.environ)
except OSError as exc:
    with open(report, "w") as out:
        json.dump({"error": f"{argv[0]}: {exc.strerror}", "started": started}, out)
    sys.exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - clock
code = os.waitstatus_to_exitcode(status)
with open(report, "w") as out:
    json.dump({"started": started, "wall_s": wall, "user_s": usage.ru_utime, "sys_s": usage.ru_stime,
               "maxrss": usage.ru_maxrss, "launcher_mb": launcher_mb, "returncode": code}, out)
sys.exit(code if 0 <= code < 256 else 1)
"""


def measure_process(command: list[str], out: Path, frames_dir: Path | None = None, env: dict[str, str] | None = None,
                    log: Path | None = None, stdout: Path | None = None) -> ProcessRun:
    """Run `command` to its end as a whole process; its stderr goes to `log` (default: discarded), and its stdout
    too unless `stdout` names a file of its own.

    The first frame is the oldest image file in `frames_dir` (default `out`, searched recursively)."""
    with tempfile.TemporaryDirectory(prefix="parity-measure-") as scratch:
        report = Path(scratch) / "measured.json"
        log_path = log or Path(scratch) / "log.txt"
        with open(log_path, "wb") as sink, open(stdout or os.devnull, "wb") as own_stdout:
            import subprocess

            subprocess.run([sys.executable, "-I", "-S", "-c", LAUNCHER, str(report), *command], stdin=subprocess.DEVNULL,
                           stdout=sink if stdout is None else own_stdout, stderr=sink,
                           env=env if env is not None else dict(os.environ), check=False)
        measured: dict[str, Any] = json.loads(report.read_text()) if report.is_file() else {"error": "the launcher did not report"}
        tail = _last_line(log_path)
    if "wall_s" not in measured:
        return ProcessRun(127, 0.0, 0.0, 0.0, 0.0, 0.0, None, 0, error=measured.get("error"))
    maxrss = measured["maxrss"] / (1024 * 1024) if sys.platform == "darwin" else measured["maxrss"] / 1024  # bytes / kB
    files = _frame_files(frames_dir or out)
    first = min((f.stat().st_mtime for f in files), default=None)
    code = measured["returncode"]
    return ProcessRun(code, measured["wall_s"], measured["user_s"] + measured["sys_s"], measured["user_s"], measured["sys_s"],
                      maxrss, None if first is None else first - measured["started"], len(files), measured["launcher_mb"],
                      error=None if code == 0 else (tail or f"exit status {code}"))


def parse_port_command(text: str) -> list[str]:
    """The port's command as argv (shell-like quoting, no shell); a one-line error without `{out}`."""
    if "{out}" not in text:
        raise ParityError(f"--port {text!r}: the command must contain {{out}}, the folder its frames go to "
                          "(e.g. --port \"./port --audio {audio} --dataset {dataset} --out {out}\")")
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise ParityError(f"--port {text!r}: {exc}") from None
    if not argv:
        raise ParityError("--port: the command is empty")
    return argv


def substitute(argv: list[str], out: Path, dataset: Path, audio: Path) -> list[str]:
    """`{out}`, `{dataset}` and `{audio}` replaced in every argument."""
    values = {"{out}": str(out), "{dataset}": str(dataset), "{audio}": str(audio)}
    replaced = []
    for arg in argv:
        for name, value in values.items():
            arg = arg.replace(name, value)
        replaced.append(arg)
    return replaced


@dataclass
class PortBenchRequest:
    command: str  # the port's command line with {out} (and optionally {dataset}, {audio})
    repeats: int = 3
    warmup: int = 1  # untimed pairs first (caches, exports, the OS's file cache)
    frames: int | None = None  # ours writes the first N frames, and the verdict judges the first N; None: the whole clip
    dataset: Path | None = None
    audio: Path | None = None
    unet: Path | None = None
    audio_encoder: Path | None = None
    models: Path | None = None
    backend: str | None = None  # ours: `parity run --backend` (None: its default)
    batch: int | None = None
    provider: str | None = None
    device: str | None = None
    streams: int | None = None
    out: Path = Path("parity-bench")  # the verdict goes to out/port-verdict
    cache: Path | None = None
    simulate: bool = True


@dataclass
class PortBenchResult(PortBench):
    """What `bench_port` measured (`PortBench`, which result.json holds), with the port's verdict as judged in memory."""

    judged: Any = None  # judge_port.PortResult: the port's verdict
    verdict_dir: Path | None = None

    @property
    def passed(self) -> bool:
        return self.to_record().passed

    def to_record(self) -> PortBench:
        """What result.json holds of it (`bench.port`): the verdict in brief."""
        verdict = None
        if self.judged is not None:
            comparison = self.judged.comparison
            verdict = PortBenchVerdict(bool(comparison), self.judged.kind, comparison.first_divergent_stage, comparison.coverage,
                                       [d.name for d in comparison.diagnoses], str(self.judged.result_path))
        return replace(PortBench(**{f.name: getattr(self, f.name) for f in fields(PortBench)}), pairs=list(self.pairs), verdict=verdict)


def bench_port(request: PortBenchRequest, on_run: Any = None) -> PortBenchResult:
    """Port and ours alternately, `warmup` untimed pairs then `repeats` timed ones; then the verdict of the port's
    last frames. `on_run(side, index)` is called before each process (for a progress line)."""
    argv = parse_port_command(request.command)
    if request.repeats < 1 or request.warmup < 0:
        raise ParityError("--repeats must be at least 1 and --warmup at least 0")
    if request.frames is not None and request.frames < 1:
        raise ParityError(f"--frames must be at least 1, got {request.frames}")
    if shutil.which(argv[0]) is None:
        raise ParityError(f"--port: {argv[0]!r} is not a program found on PATH or at that path")
    # the clip given, else the demo's; the checkpoints go on to `parity run` and the verdict, which resolve them
    inputs = resolve_inputs(request.dataset, request.audio, request.unet, request.audio_encoder, networks=(), cache=request.cache)
    dataset, audio = inputs.dataset, inputs.audio
    assert dataset is not None and audio is not None
    env = {**os.environ}
    if request.cache is not None:
        env["SYNCTALK_PARITY_CACHE"] = str(request.cache)
    result = PortBenchResult(request.command, argv, _ours_argv(request, Path("{out}"), dataset, audio), str(dataset), str(audio),
                             request.frames)
    out = Path(request.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".bench-port-", dir=out) as scratch:  # beside out: the last frames move there
        root = Path(scratch)
        last_port_out = None
        for index in range(request.warmup + request.repeats):
            timed = index >= request.warmup
            port_out, ours_out = root / f"port-{index}", root / f"ours-{index}"
            port_out.mkdir()
            if on_run:
                on_run("port", index - request.warmup if timed else None)
            port = measure_process(substitute(argv, port_out, dataset, audio), port_out, env=env, log=root / f"port-{index}.log")
            failure = _port_failure(port, port_out)
            if failure:
                result.failure, result.failed_run = failure, port
                return result
            if on_run:
                on_run("ours", index - request.warmup if timed else None)
            ours_argv = _ours_argv(request, ours_out, dataset, audio)
            ours = measure_process(ours_argv, ours_out, frames_dir=ours_out / "frames", env=env, log=root / f"ours-{index}.log")
            if ours.returncode != 0:
                raise ParityError(f"our pipeline failed on these inputs ({' '.join(ours_argv)}): {ours.error}")
            shutil.rmtree(ours_out, ignore_errors=True)
            if last_port_out is not None:
                shutil.rmtree(last_port_out, ignore_errors=True)
            last_port_out = port_out
            if timed:
                result.pairs.append(PortPair(port, ours))
        assert last_port_out is not None
        kept = out / PORT_OUTPUT
        shutil.rmtree(kept, ignore_errors=True)
        last_port_out.rename(kept)  # what the verdict judged stays for a look
    if on_run:
        on_run("verdict", None)
    result.verdict_dir = out / PORT_VERDICT
    result.judged = _judge(request, _candidate(kept), dataset, audio, result.verdict_dir)
    return result


# ----- helpers ----------------------------------------------------------------------------------


def _ours_argv(request: PortBenchRequest, out: Path, dataset: Path, audio: Path) -> list[str]:
    return parity_run_command(out, dataset, audio, frames=request.frames, backend=request.backend, batch=request.batch,
                              provider=request.provider, device=request.device, streams=request.streams, unet=request.unet,
                              audio_encoder=request.audio_encoder, models=request.models)


def parity_run_command(out: Path, dataset: Path, audio: Path, **options: object) -> list[str]:
    """`parity run --no-compare` on these inputs, through the installed `parity` script when there is one; each
    option not None becomes `--name value` (underscores as dashes)."""
    script = Path(sys.executable).parent / "parity"
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "synctalk_parity.cli"]
    command += ["run", "--no-compare", "--out", str(out), "--dataset", str(dataset), "--audio", str(audio)]
    for name, value in options.items():
        if value is not None:
            command += [f"--{name.replace('_', '-')}", str(value)]
    return command


def _port_failure(run: ProcessRun, out: Path) -> str | None:
    if run.returncode != 0:
        return f"the port's command failed (exit status {run.returncode}): {run.error}"
    if not any(p.is_file() and p.suffix.lower() in (*IMAGE_SUFFIXES, ".mp4", ".mov", ".webm", ".npy", ".bin") for p in out.rglob("*")):
        return f"the port's command exited 0 but wrote nothing into {{out}} ({out}): no frames to judge"
    return None


def _candidate(out: Path) -> Path:
    """What to judge in the port's {out}: the folder itself, or the one video or the one subfolder it holds."""
    entries = [e for e in out.iterdir() if not e.name.startswith(".")]
    if any(e.is_file() and e.suffix.lower() in IMAGE_SUFFIXES for e in entries):
        return out
    videos = [e for e in entries if e.is_file() and e.suffix.lower() in (".mp4", ".mov", ".webm")]
    folders = [e for e in entries if e.is_dir()]
    if len(videos) == 1:
        return videos[0]
    if len(folders) == 1 and not videos:
        return _candidate(folders[0])
    return out


def _judge(request: PortBenchRequest, candidate: Path, dataset: Path, audio: Path, out: Path):
    from ..ports.judge import PortRequest, judge_port

    return judge_port(PortRequest(candidate, dataset, audio, unet=request.unet, audio_encoder=request.audio_encoder, out=out,
                                  simulate=request.simulate, frames=request.frames))


def _frame_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]


def _last_line(path: Path) -> str | None:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return None
    return lines[-1][:300] if lines else None
