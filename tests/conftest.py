"""Shared fixtures: the golden outputs of the original script and the real dataset (skipped when absent), the
cache the session shares, and the small U-Net of the plumbing tests.

The cache: every test of a session uses one cache, the one every command uses ($SYNCTALK_PARITY_CACHE, else
~/.cache/synctalk-parity; CI points it at an empty folder), pinned in the environment for the session so that
subprocesses use it too. What is slow to make is made there once per cache, not once per test: the demo weights
(`demo_weights_files`, ~30 s) and the golden exports (`golden_export`, 15-40 s each). A test that must see an
empty cache (a reference computed, then reused; `parity cache --clear`) takes `fresh_cache`: a folder of its own
holding copies of the demo inputs and the demo weights only.

The small U-Net (`small_weights`): SyncTalk's architecture, module names and input/output shapes at width 8
(1/4 of every channel count, 1/12 of the work), seeded, untrained. For plumbing only (exit codes, caches, atomic
writes, batching, reports): its output is nearly constant, so nothing that measures fidelity or speed uses it.

The order: modules are collected heaviest first, by the seconds `module_seconds.json` holds for each (measured on a
whole run; `scripts/module_seconds.py` refreshes it), so the two workers of `make test` take the long modules first and
finish together.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from synctalk_parity.allocator import tune_allocator
from synctalk_parity.cache import CACHE_ENV, cache_root

from .golden_files import golden_check_inputs, golden_dir, golden_weights

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two pytest-xdist workers on two cores: each worker's PyTorch (and the commands its tests start, which inherit
    # this) computes on one thread, so the workers do not oversubscribe the cores (set before torch is imported).
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, "1")

tune_allocator()  # as every command does (synctalk_parity/allocator.py): the tests that run the networks in this process

SHARED_HINT = "../shared is not beside this checkout (a fresh clone); CI has it"
SMALL_WIDTH = 8
MODULE_SECONDS = Path(__file__).with_name("module_seconds.json")
UNMEASURED_SECONDS_PER_TEST = 1.0  # a module not in MODULE_SECONDS counts this much a test


# ----- the order the modules go to the workers -------------------------------------------------------


@pytest.hookimpl(trylast=True)  # after `-m`, `-k` and `--deselect` have taken their tests out
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The heaviest modules first (`heaviest_modules_first`). `make test` runs two pytest-xdist workers with `--dist
    loadfile --no-loadscope-reorder`: each module whole on one worker, handed out in this order (a worker is handed
    the next module when two or fewer of its tests are left to run). Heaviest first, the last modules handed out are
    short and the two workers finish together (docs/testing.md). Each worker collects, and orders, the same way."""
    items[:] = heaviest_modules_first(items, json.loads(MODULE_SECONDS.read_text())["seconds"])


def heaviest_modules_first(items: Sequence, seconds: dict[str, float]) -> list:
    """`items` (anything with a pytest `nodeid`) grouped by module, the modules in descending order of `seconds` (their
    measured seconds; one not measured counts `UNMEASURED_SECONDS_PER_TEST` a test), ties in their collected order; each
    module's items in their own order."""
    modules: dict[str, list] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::")[0], []).append(item)
    order = sorted(modules.items(),  # stable: ties keep their collected order
                   key=lambda entry: -seconds.get(entry[0], UNMEASURED_SECONDS_PER_TEST * len(entry[1])))
    return [item for _, module_items in order for item in module_items]


@pytest.fixture(scope="session")
def golden() -> Path:
    root = golden_dir()
    if root is None:
        pytest.skip(f"golden outputs not found: {SHARED_HINT}")
    return root


@pytest.fixture(scope="session")
def sanders(golden: Path) -> Path:
    """The real SyncTalk dataset sanders-mini (100 frames 1280x720)."""
    path = golden.parent / "datasets" / "sanders-mini"
    if not (path / "full_body_img").is_dir():
        pytest.skip(f"dataset sanders-mini not found: {SHARED_HINT}")
    return path


# ----- the cache the session shares -----------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def session_cache() -> Iterator[Path]:
    """The cache of the whole session ($SYNCTALK_PARITY_CACHE, else the default), pinned in the environment."""
    root = cache_root()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(root))
        yield root


@contextlib.contextmanager
def one_maker(session_cache: Path, what: str) -> Iterator[None]:
    """Held while a session fixture makes `what` in the session cache. Under pytest-xdist (`make test` runs two
    workers) each worker runs the session fixtures; with an empty cache both would make the same demo weights or export
    at once (safe: the cache publishes by rename, but twice the work on 2 cores). This inter-process lock (a file in
    the temporary folder, named after the cache and `what`) lets one worker make it while the other waits, then finds it."""
    name = hashlib.sha1(f"{session_cache.resolve()}\0{what}".encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"synctalk-parity-tests-{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def demo_weights_files(session_cache: Path) -> tuple[Path, Path]:
    """The demo weights `(unet_328_ave.pth, audio_visual_encoder.pth)`, made once per cache (~30 s on 2 cores)."""
    from synctalk_parity.cache import cache_folder
    from synctalk_parity.reference.demo import make_demo
    from synctalk_parity.reference.demo_weights import demo_weights

    with pytest.MonkeyPatch.context() as patch, one_maker(session_cache, "demo weights"):  # in the session's cache, whatever a test set around this call
        patch.setenv(CACHE_ENV, str(session_cache))
        make_demo(cache_folder("demo"))  # the demo inputs (reused when there), which fresh caches copy too
        return demo_weights()


def seed_cache(folder: Path, demo_weights_files: tuple[Path, Path]) -> Path:
    """Make `folder` a cache holding copies of the session cache's demo inputs and demo weights, and nothing else.
    Copies, not links: a test may damage or clear its cache without touching the session's."""
    weights_entry = demo_weights_files[0].parent
    session = weights_entry.parent.parent
    shutil.copytree(session / "demo", folder / "demo", dirs_exist_ok=True)
    shutil.copytree(weights_entry, folder / "weights" / weights_entry.name, dirs_exist_ok=True)
    return folder


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_weights_files) -> Path:
    """`<tmp_path>/cache`: a cache of this test's own, set in the environment, holding copies of the demo inputs and
    the demo weights and nothing else (no reference, export or mel)."""
    folder = seed_cache(tmp_path / "cache", demo_weights_files)
    monkeypatch.setenv(CACHE_ENV, str(folder))
    return folder


@pytest.fixture(scope="session")
def seeded_session_cache(tmp_path_factory, demo_weights_files) -> Path:
    """`<basetemp>/cache`: one empty cache for the tests that share theirs across a module or the session (a
    reference computed by the first run, reused by the next), seeded with the demo inputs and demo weights."""
    return seed_cache(tmp_path_factory.getbasetemp() / "cache", demo_weights_files)


# ----- exports of the golden weights, made once per cache ------------------------------------------------


@pytest.fixture(scope="session")
def golden_export(session_cache: Path, tmp_path_factory) -> Callable[[str, str], Path]:
    """`golden_export(fmt, precision)`: the golden checkpoints exported by `export_models` (with its export-time
    checks on the golden inputs) into the session cache, as a backend exports checkpoints: once per cache, shared by
    the export and backend tests. Tests read these folders; one that alters an export works on a copy.

    The cache keys an export by what decides its bytes, not by the inputs its check ran on: a command that exported
    the same weights first (a port-judging test, another pytest-xdist worker's) leaves an entry checked on the
    example inputs. Then the golden-checked export is made once more in a cache of the session's own."""
    from synctalk_parity.backends.base import ModelSource
    from synctalk_parity.backends.exports import cached_export
    from synctalk_parity.export.manifest import read_manifest

    weights = golden_weights()
    if weights is None:
        pytest.skip("golden folder absent (set SYNCTALK_PARITY_GOLDEN or place it at <repo>/../shared/golden)")

    def export(fmt: str, precision: str = "fp32") -> Path:
        source = ModelSource(unet=weights[0], audio_encoder=weights[1], precision=precision, check_inputs=golden_check_inputs)
        with pytest.MonkeyPatch.context() as patch, one_maker(session_cache, f"golden {fmt} {precision} export"):
            patch.setenv(CACHE_ENV, str(session_cache))
            folder = cached_export(source, fmt)
            if all((record.get("check") or {}).get("inputs", "golden") == "golden" for record in read_manifest(folder)["artifacts"]):
                return folder
            patch.setenv(CACHE_ENV, str(own_cache))
            return cached_export(source, fmt)

    own_cache = tmp_path_factory.mktemp("golden-exports")

    return export


# ----- the small U-Net of the plumbing tests -----------------------------------------------------------


@pytest.fixture(scope="session")
def small_weights(tmp_path_factory) -> tuple[Path, Path]:
    """`(unet.pth, audio_visual_encoder.pth)`: the small U-Net (width 8, seed 0) and the fixture audio encoder
    (seed 0), as original-layout checkpoints. Plumbing only: untrained, its output is nearly constant."""
    from synctalk_parity.models import fixture_audio_encoder, fixture_unet, save_audio_encoder, save_unet

    folder = tmp_path_factory.mktemp("small-weights")
    return (save_unet(fixture_unet(seed=0, width=SMALL_WIDTH), folder / "unet_328_ave_w8.pth"),
            save_audio_encoder(fixture_audio_encoder(seed=0), folder / "audio_visual_encoder.pth"))


@pytest.fixture(scope="session")
def small_weight_args(small_weights) -> list[str]:
    """`--unet <small U-Net> --audio-encoder <fixture encoder>` for a command line."""
    return ["--unet", str(small_weights[0]), "--audio-encoder", str(small_weights[1])]
