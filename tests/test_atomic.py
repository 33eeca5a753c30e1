"""atomic.py: a folder or file appears complete or not at all."""

import os

import pytest

from synctalk_parity.atomic import building, write_text_atomically


def test_a_finished_folder_replaces_the_old_one(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with building(final) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(f".out.{os.getpid()}.") and tmp.name.endswith(".partial") and list(tmp.iterdir()) == []
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]


def test_a_failed_folder_leaves_the_old_one_and_no_partial(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(KeyboardInterrupt), building(final) as tmp:
        (tmp / "half.txt").write_text("half")
        raise KeyboardInterrupt  # an interrupted run, not only errors
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (final / "old.txt").read_text() == "old" and not (final / "half.txt").exists()


def test_text_is_written_whole(tmp_path):
    path = tmp_path / "result.json"
    write_text_atomically(path, "{}\n")
    write_text_atomically(path, '{"a": 1}\n')
    assert path.read_text() == '{"a": 1}\n' and sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_a_folder_left_by_a_killed_writer_is_removed_by_the_next_build(tmp_path):
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    abandoned = tmp_path / f".out.{gone}.abc123.partial"
    abandoned.mkdir()
    alive = tmp_path / f".out.{os.getpid()}.def456.partial"  # a writer still at work (this process)
    alive.mkdir()
    with building(tmp_path / "out") as tmp:
        (tmp / "new.txt").write_text("new")
    assert not abandoned.exists() and alive.exists() and (tmp_path / "out" / "new.txt").is_file()


def test_a_ctrl_c_that_something_swallowed_still_stops_the_publish(tmp_path):
    """The CLI records SIGINT (`arm_interrupts`): a KeyboardInterrupt caught on the way (as C code clearing the errors it
    meets while importing does) must not let a run finish and publish its output as complete."""
    import contextlib
    import signal

    from synctalk_parity.atomic import arm_interrupts, writing

    before = signal.getsignal(signal.SIGINT)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("previous run")
    try:
        arm_interrupts()
        with contextlib.suppress(KeyboardInterrupt):  # swallowed
            signal.raise_signal(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt), building(tmp_path / "out") as tmp:
            (tmp / "new.txt").write_text("a run that went on")
        with pytest.raises(KeyboardInterrupt), writing(tmp_path / "result.json") as path:
            path.write_text("{}")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and [p.name for p in (tmp_path / "out").iterdir()] == ["old.txt"]
        arm_interrupts()  # the next command starts with nothing recorded
        write_text_atomically(tmp_path / "result.json", "{}\n")
        assert (tmp_path / "result.json").read_text() == "{}\n"
    finally:
        signal.signal(signal.SIGINT, before)
