"""`parity matrix --ray` on a real local Ray cluster: a head and two worker nodes (one declaring the `macos` custom
resource), in a network namespace of the test's own with only `lo` up, so every Ray listener binds 127.0.0.1.
Each cell runs on a node that has what it asks for; a cell needing what no node has is "not run" (Ray would leave
it pending forever); a worker process killed mid-cell is survived (the cell runs again, the report is complete).

The cluster is stopped by its process groups (never `ray stop`, which ends every Ray process on the machine).
Needs root (`unshare -n`) and Ray (`pip install synctalk-parity[ray]`); skipped otherwise. Bounded in time."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from synctalk_parity.harness.matrix.result import read_matrix

from .conftest import write_matrix_file

pytestmark = pytest.mark.slow
PORT = 6379  # free: the namespace is the test's own
START_TIMEOUT_S = 120
MATRIX_TIMEOUT_S = 600
BIN = Path(sys.executable).parent


def _skip_reason() -> str | None:
    if shutil.which("unshare") is None or shutil.which("nsenter") is None or shutil.which("ip") is None:
        return "needs unshare, nsenter and ip (util-linux, iproute2)"
    if not (BIN / "ray").is_file():
        return "needs Ray: pip install 'synctalk-parity[ray]'"
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        return "needs a network namespace of its own (unshare -n: root)"
    return None


class Cluster:
    """A Ray cluster inside a network namespace with only the loopback interface."""

    def __init__(self, root: Path, env: dict[str, str]):
        self.root, self.env = root, env
        self.processes: list[subprocess.Popen] = []
        # the namespace lives as long as this process; every command enters it with nsenter
        self.namespace = self._spawn(["unshare", "-n", "--", "sh", "-c", "ip link set lo up && exec sleep 3600"], "namespace", enter=False)
        deadline = time.monotonic() + 10
        while b"sleep" not in Path(f"/proc/{self.namespace.pid}/cmdline").read_bytes():
            assert time.monotonic() < deadline, "the network namespace did not come up"
            time.sleep(0.05)
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's Unix socket paths have a length limit

    def enter(self, command: list[str]) -> list[str]:
        return ["nsenter", "-t", str(self.namespace.pid), "-n", "--", *command]

    def _spawn(self, command: list[str], log: str, enter: bool = True) -> subprocess.Popen:
        with open(self.root / f"{log}.log", "wb") as out:
            process = subprocess.Popen(self.enter(command) if enter else command, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                       start_new_session=True)  # its own process group: stopped with os.killpg
        self.processes.append(process)
        return process

    def start(self, nodes: list[dict]) -> None:
        ray = str(BIN / "ray")
        common = ["--block", "--node-ip-address=127.0.0.1", "--num-gpus=0", "--object-store-memory=300000000", "--disable-usage-stats"]
        self._spawn([ray, "start", "--head", f"--port={PORT}", f"--temp-dir={self.temp_dir}", "--include-dashboard=false", "--num-cpus=1",
                     *common], "head")
        self._started("head")
        for index, node in enumerate(nodes):  # one at a time: nodes starting at once on 2 busy cores time out
            extra = [f"--resources={json.dumps(node['resources'])}"] if node.get("resources") else []
            self._spawn([ray, "start", f"--address=127.0.0.1:{PORT}", f"--num-cpus={node['cpus']}", *common, *extra], f"worker{index}")
            self._started(f"worker{index}")
        self.wait_for(1 + len(nodes))

    def _started(self, log: str) -> None:
        """Wait until `ray start` of `log` says its node runs."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while b"Ray runtime started" not in (self.root / f"{log}.log").read_bytes():
            assert self.processes[-1].poll() is None, f"{log} exited: {(self.root / f'{log}.log').read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"{log} did not start in {START_TIMEOUT_S} s"
            time.sleep(0.2)

    def wait_for(self, count: int) -> None:
        probe = (f"import ray, time\nray.init(address='127.0.0.1:{PORT}', logging_level='ERROR', log_to_driver=False)\n"
                 f"deadline = time.monotonic() + {START_TIMEOUT_S}\n"
                 f"while len([n for n in ray.nodes() if n['Alive']]) < {count} and time.monotonic() < deadline: time.sleep(0.5)\n"
                 "print(len([n for n in ray.nodes() if n['Alive']]))\n")
        done = subprocess.run(self.enter([sys.executable, "-c", probe]), capture_output=True, text=True, env=self.env, timeout=START_TIMEOUT_S + 60)
        alive = done.stdout.strip().splitlines()[-1:] or ["0"]
        assert alive == [str(count)], f"{alive} of {count} Ray nodes came up: {done.stderr[-2000:]}"

    def stop(self) -> None:
        for process in reversed(self.processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for process in reversed(self.processes):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def cell_task_processes() -> list[int]:
    """Ray worker processes running a matrix cell now (Ray titles a worker after the task it runs)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "cmdline").read_bytes().startswith(b"ray::cell_task"):
                    found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def ray_matrix(small_weights, tmp_path_factory, session_cache) -> Iterator[tuple[Path, subprocess.CompletedProcess, list[int]]]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("matrix-ray")
    unet, encoder = small_weights
    matrix = write_matrix_file(root / "matrix.toml", f"""
name = "on ray"
frames = 8
[speed]
frames = 2
repeats = 2
[[avatar]]
name = "small"
unet = "{unet}"
audio_encoder = "{encoder}"
[[backend]]
backend = "onnxruntime"
[[backend]]
backend = "torch"
[[backend]]
backend = "coreml"          # needs the macos resource: one worker node declares it
precisions = ["fp16"]
[[backend]]
backend = "tensorrt"        # needs a GPU and the tensorrt resource: no node has them
precisions = ["fp16"]
""")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "COLUMNS": "160"}
    cluster = Cluster(root, env)
    try:
        cluster.start([{"cpus": 1}, {"cpus": 1, "resources": {"macos": 1}}])
        out = root / "out"
        with open(root / "driver.log", "wb") as log:
            driver = subprocess.Popen(cluster.enter([str(BIN / "parity"), "matrix", str(matrix), "--out", str(out), "--ray", f"127.0.0.1:{PORT}"]),
                                      stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            cluster.processes.append(driver)
            killed = []
            deadline = time.monotonic() + MATRIX_TIMEOUT_S
            while driver.poll() is None and time.monotonic() < deadline:
                running = cell_task_processes()
                if running and not killed:
                    time.sleep(1.0)  # mid-cell: its inputs fetched, its run under way
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(running[0], signal.SIGKILL)
                        killed.append(running[0])
                time.sleep(0.2)
            assert driver.poll() is not None, f"the matrix did not finish in {MATRIX_TIMEOUT_S} s"
        output = (root / "driver.log").read_text()
        yield out, subprocess.CompletedProcess(driver.args, driver.returncode, output), killed
    finally:
        cluster.stop()


def test_the_matrix_completes_on_the_cluster(ray_matrix):
    out, driver, killed = ray_matrix
    assert driver.returncode == 0, driver.stdout[-3000:]
    matrix = read_matrix(out)
    assert matrix.complete and matrix.executor.kind == "ray" and matrix.executor.workers == 3
    assert {cell.id: cell.status for cell in matrix.cells} == {"small/onnxruntime-cpu/fp32": "passed", "small/torch-cpu/fp32": "passed",
                                                              "small/coreml/fp16": "not run", "small/tensorrt/fp16": "not run"}
    assert killed, "no cell task was seen running"


def test_each_cell_ran_on_a_node_that_has_what_it_needs(ray_matrix):
    out, _, _ = ray_matrix
    matrix = read_matrix(out)
    nodes = {node.node_id: node for node in matrix.executor.nodes}
    for cell_id in ("small/onnxruntime-cpu/fp32", "small/torch-cpu/fp32"):
        cell = matrix.cell(cell_id)
        assert cell is not None and cell.node is not None and cell.node.node_id in nodes
        assert cell.node.resources.get("CPU", 0) >= 1 and cell.node.address == "127.0.0.1"
        assert (out / cell.report).is_file() and not (out / cell.folder / "run" / "dump").exists()  # the dump stays on its node
    coreml = matrix.cell("small/coreml/fp16")
    assert coreml is not None and coreml.node is not None and coreml.node.resources.get("macos") == 1.0  # placed on the "Mac"
    assert "Core ML prediction needs macOS" in (coreml.reason or "")  # which is Linux here: it says so, never a pass
    assert matrix.executor.shipped_mb["results"] > 0


def test_a_cell_needing_what_no_node_has_is_not_run_instead_of_pending(ray_matrix):
    out, _, _ = ray_matrix
    cell = read_matrix(out).cell("small/tensorrt/fp16")
    assert cell is not None and cell.status == "not run" and cell.node is None
    assert (cell.reason or "").startswith("no node of the Ray cluster at 127.0.0.1:6379 has 1 CPU, 1 GPU, 1 tensorrt")


def test_a_worker_killed_mid_cell_is_survived(ray_matrix):
    out, driver, killed = ray_matrix
    assert len(killed) == 1
    matrix = read_matrix(out)
    retried = [cell for cell in matrix.cells if cell.attempts]
    assert len(retried) == 1 and retried[0].status == "passed", [(c.id, c.attempts) for c in matrix.cells]
    assert retried[0].attempts[0].error.startswith("the Ray worker process died")
    assert f"{retried[0].id}: the Ray worker process died" in driver.stdout
    assert "(raylet)" not in driver.stdout and "network_util" not in driver.stdout  # Ray's own messages: in ray-driver.log
    assert "A worker died or was killed" in (out / "ray-driver.log").read_text()
    assert not list(out.rglob("*.partial"))
