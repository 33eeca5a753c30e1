"""Exit codes CI can act on: 0 pass, 1 gate failed, 2 usage/input error, 3 internal error (traceback in a log),
130 interrupted; documented in `parity --help`."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from synctalk_parity.cli import app
from synctalk_parity.harness.verdict import judge

runner = CliRunner()


def _dump(tmp_path):
    """A folder the compare command takes for a dump (the broken judge never opens it)."""
    folder = tmp_path / "candidate"
    folder.mkdir()
    (folder / "manifest.json").write_text("{}")
    return str(folder)


def _broken(exc: BaseException):
    def judge_that_breaks(*args, **kwargs):
        raise exc

    return judge_that_breaks


def test_help_documents_the_exit_codes():
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "Exit codes: 0 every gate passes; 1 a gate fails; 2 a usage or input error; 3 an internal error" in result.output


def test_an_internal_error_exits_3_with_one_line_and_the_traceback_in_a_log(tmp_path, monkeypatch):
    monkeypatch.setattr(judge, "judge", _broken(ZeroDivisionError("division by zero in a comparison")))
    out = tmp_path / "out"
    result = runner.invoke(app, ["compare", _dump(tmp_path), "--out", str(out)])
    assert result.exit_code == 3
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "internal error (ZeroDivisionError: division by zero in a comparison)" in lines[0]
    log = out / "parity-error.log"
    assert str(log) in lines[0].replace("\n", "")
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "judge_that_breaks" in text and "parity compare" in text


def test_debug_prints_the_traceback_instead(tmp_path, monkeypatch):
    monkeypatch.setattr(judge, "judge", _broken(ZeroDivisionError("boom")))
    result = runner.invoke(app, ["--debug", "compare", _dump(tmp_path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 3
    assert not (tmp_path / "out" / "parity-error.log").exists()


def test_an_interruption_exits_130(tmp_path, monkeypatch):
    monkeypatch.setattr(judge, "judge", _broken(KeyboardInterrupt()))
    result = runner.invoke(app, ["compare", _dump(tmp_path)])
    assert result.exit_code == 130 and "interrupted" in result.output


@pytest.mark.parametrize(("args", "code"), [(["compare", "/nonexistent/dump"], 2), (["report"], 2)])
def test_usage_and_input_errors_exit_2(args, code):
    assert runner.invoke(app, args).exit_code == code


@pytest.mark.parametrize("command", [[], ["run"], ["bench"], ["cache"]])
def test_flags_show_no_type_hints(command):
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "--help" in result.output
    assert "<bool>" not in result.output
    if command == ["run"]:
        assert "<integer>" in result.output or "INTEGER" in result.output or "int" in result.output  # options with values keep theirs
