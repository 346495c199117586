"""The command line's first contact: `--version`, a bare `orchestrator`, and a pipe closed early."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli.app import main

REPO = Path(__file__).resolve().parents[3]


def test_version_prints_the_installed_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"orchestrator {version('cropd-orchestrator')}"


def test_a_bare_orchestrator_prints_its_help_not_an_error(capsys):
    assert main([]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("usage: orchestrator") and "sweep" in captured.out and "report" in captured.out
    assert captured.err == ""


def test_a_reader_that_closes_the_pipe_early_ends_the_command_quietly():
    # `orchestrator plan SPEC | head -1`: head exits after one line. Here the reader closes the pipe
    # before the command has written anything (Python's start alone takes longer than closing).
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "plan", str(REPO / "search_spaces" / "quickstart.yaml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        env=env,
    )
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141, stderr  # 128 + SIGPIPE, as a shell reports `cat` cut short
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr


def test_the_package_lists_its_public_names_for_completion():
    import orchestrator

    names = dir(orchestrator)
    assert set(orchestrator.__all__) <= set(names)
    assert all(callable(getattr(orchestrator, name)) for name in orchestrator.__all__)


def test_results_help_names_every_table_its_sql_can_read(capsys):
    with pytest.raises(SystemExit):
        main(["results", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "`trials`" in text and "`epochs`" in text and "`examples`" in text  # examples was missing
