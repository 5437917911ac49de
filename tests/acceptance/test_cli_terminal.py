"""The command line at a terminal: --version, help with examples, and no traceback when the
reader of the output goes away or the person presses Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator._cli import build_parser
from tests.fix_cli import ROOT, embedded_data_dir, embedded_env, one_line, run_cli
from tests.fix_db import subprocess_env

SCRIPT = Path(sys.executable).with_name("orchestrator")


def test_version_and_help_with_examples(database_url: str) -> None:
    env = subprocess_env(database_url)
    version = run_cli("--version", env=env, console_script=True)
    assert (version.returncode, version.stdout.split()[0]) == (0, "orchestrator")
    helped = run_cli("--help", env=env)
    assert helped.returncode == 0
    assert 'orchestrator run-month "Acme Insurance" 2027-01' in helped.stdout
    assert "orchestrator psql" in helped.stdout
    for command in ("retry", "runs", "enqueue", "worker", "clients", "run-month"):
        text = run_cli(command, "--help", env=env).stdout
        assert "examples:" in text, command


def test_every_option_has_help() -> None:
    parser = build_parser()
    missing = []
    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        for name, sub in action.choices.items():  # type: ignore[union-attr]
            for option in sub._actions:
                if option.help is None and option.dest != "help":
                    missing.append(f"{name} {option.option_strings or option.dest}")
    assert missing == []


def test_a_closed_pipe_ends_quietly(database_url: str) -> None:
    reader = subprocess.Popen(
        [str(SCRIPT), "migrate", "--sql"],
        cwd=ROOT,
        env=subprocess_env(database_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert reader.stdout is not None and reader.stderr is not None
    first = reader.stdout.readline()
    reader.stdout.close()  # like `| head -1`
    code = reader.wait(timeout=60)
    stderr = reader.stderr.read().decode()
    reader.stderr.close()
    assert first.strip() == b"BEGIN;"
    assert (code, stderr) == (141, "")


@pytest.mark.slow
def _wait_for_the_embedded_start(data_dir: Path, process: subprocess.Popen[str]) -> None:
    """Until the CLI takes the data dir's start lock (it is then past Python's own start-up,
    whose imports a signal would interrupt with the interpreter's traceback, not ours)."""
    deadline = time.monotonic() + 60
    while not (data_dir / "pgdata.lock").exists():
        assert process.poll() is None, "the CLI ended before starting the embedded server"
        assert time.monotonic() < deadline, "the CLI never started the embedded server"
        time.sleep(0.01)


def test_ctrl_c_while_the_embedded_server_starts_prints_one_line() -> None:
    interrupted = 0
    for delay in (0.0, 0.4, 1.0):
        with embedded_data_dir() as data_dir:
            process = subprocess.Popen(
                [str(SCRIPT), "status"],
                cwd=ROOT,
                env=embedded_env(data_dir),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,  # its own process group, like a terminal's job
            )
            _wait_for_the_embedded_start(data_dir, process)
            time.sleep(delay)
            os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does: the whole group
            out, err = process.communicate(timeout=60)
        assert "Traceback" not in out + err, err
        if process.returncode == 130:
            interrupted += 1
            assert err.strip().splitlines()[-1] == "orchestrator: interrupted", err
        else:
            assert process.returncode == 0, err
    assert interrupted


def test_options_that_override_settings_are_checked_before_anything_runs(
    database_url: str,
) -> None:
    env = subprocess_env(database_url)
    assert one_line(run_cli("runs", "--limit", "0", env=env)) == (
        "orchestrator: --limit 0: expected a number of runs, at least 1"
    )
    assert one_line(run_cli("retry", env=env)) == (
        "orchestrator: give a job id, or --workflow for every failed job of a workflow"
    )
    assert one_line(run_cli("retry", "--workflow", "noop", "--since", "someday", env=env)) == (
        "orchestrator: --since 'someday': expected a duration back from now (2h, 3d) or an ISO "
        "date or time (2026-11-28, 2026-11-28T09:00-06:00)"
    )
