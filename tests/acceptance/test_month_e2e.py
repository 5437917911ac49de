"""A month end to end through the real CLI: clients add, run-month, a worker process, run-week.

The local EmailBison stand-in runs in this test process; the worker subprocess reaches it over
127.0.0.1 with the workspace key exported under the env var named on the client.
"""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.fix_db import subprocess_env
from workflows.standins.emailbison_server import LocalEmailBison
from workflows.standins.synthetic import generate_exports
from workflows.windows import evergreen_name, upload_date_for_window, windows_for_month

ROOT = Path(__file__).resolve().parents[2]
CLIENT = "Prairie & Pine Insurance"
MONTH = "2027-03"
KEY_ENV = "EMAILBISON_KEY_E2E"
ZIPS_FILE = "75001\n75002, 75006\n73003 73008\n75010\n"
WORKFLOWS = ("pt1", "pt2", "pt3", "pt4")


def orchestrator(
    env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``orchestrator ARGS`` (the installed console script) to completion."""
    script = Path(sys.executable).with_name("orchestrator")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "orchestrator"]
    return subprocess.run(
        [*command, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout.strip().splitlines()[-1]


def query(database_url: str, sql: str, params: Any = None) -> list[dict[str, Any]]:
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        return list(conn.execute(sql, params).fetchall())


@pytest.fixture
def bison() -> Iterator[LocalEmailBison]:
    server = LocalEmailBison()
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Worker:
    """``orchestrator worker`` as a subprocess, its output in a file; stopped by pid."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "orchestrator", "worker", "--concurrency", "2"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def wait_for_jobs(
    database_url: str, workflows: tuple[str, ...], worker: Worker, timeout: float = 60
) -> dict[str, int]:
    """Wait until each workflow has a succeeded job; fail on a failed one. Returns job ids."""
    deadline = time.monotonic() + timeout
    while True:
        rows = query(
            database_url,
            "SELECT id, task_name, status::text AS status FROM procrastinate_jobs"
            " WHERE task_name = ANY(%s) ORDER BY id",
            [list(workflows)],
        )
        failed = [r for r in rows if r["status"] == "failed"]
        assert not failed, f"{failed}\n{worker.output()}"
        done = {r["task_name"]: r["id"] for r in rows if r["status"] == "succeeded"}
        if set(done) >= set(workflows):
            return done
        assert worker.process.poll() is None, f"worker exited:\n{worker.output()}"
        assert time.monotonic() < deadline, f"timed out: {rows}\n{worker.output()}"
        time.sleep(0.1)


@pytest.mark.slow
def test_a_month_through_the_cli_and_a_worker_process(
    database_url: str, bison: LocalEmailBison, tmp_path: Path
) -> None:
    key = f"eb-{secrets.token_hex(12)}"
    bison.add_workspace(key)
    year, month = 2027, 3
    first_window = windows_for_month(year, month)[0]
    evergreen = bison.add_campaign(key, evergreen_name(windows_for_month(year, 2)[-1]))
    hnw = bison.add_campaign(
        key, evergreen_name(windows_for_month(year, 2)[-1], prefix="Evergreen HNW")
    )
    inbox = tmp_path / "cole_inbox"
    files = generate_exports(
        inbox,
        client=CLIENT,
        month=MONTH,
        states=("TX", "OK"),
        zips=("75001", "75002", "75006", "73003", "73008"),
        rows=1_500,
        seed=3,
    )
    zips_file = tmp_path / "zips.txt"
    zips_file.write_text(ZIPS_FILE, encoding="utf-8")
    env = subprocess_env(
        database_url,
        ORCHESTRATOR_COLE_INBOX=str(inbox),
        ORCHESTRATOR_EMAILBISON_ALLOW_HTTP_LOOPBACK="1",  # the stand-in is http on 127.0.0.1
        **{KEY_ENV: key},
    )

    added = orchestrator(
        env,
        "clients",
        "add",
        "--name",
        CLIENT,
        "--tier",
        "100",
        "--states",
        "TX,ok",
        "--zips-file",
        str(zips_file),
        "--emailbison-url",
        bison.base_url,
        "--emailbison-key-env",
        KEY_ENV,
        "--campaign-id",
        str(evergreen),
        "--hnw-campaign-id",
        str(hnw),
    )
    assert added.returncode == 0, added.stderr
    assert f"client {CLIENT!r} added" in added.stdout
    listed = orchestrator(env, "clients", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [client] = json.loads(listed.stdout)
    assert (client["name"], client["tier"], client["licensed_states"]) == (
        CLIENT,
        100,
        ["OK", "TX"],
    )
    assert client["approved_zips"] == ["73003", "73008", "75001", "75002", "75006", "75010"]
    assert client["emailbison_key_env"] == KEY_ENV
    assert key not in listed.stdout

    started = orchestrator(env, "run-month", CLIENT, MONTH)
    assert started.returncode == 0, started.stderr
    pt1_job = int(last_line(started))

    worker = Worker(env, tmp_path / "worker.log")
    try:
        month_jobs = wait_for_jobs(database_url, WORKFLOWS, worker)
        assert month_jobs["pt1"] == pt1_job

        monday = upload_date_for_window(first_window)
        week = orchestrator(env, "run-week", CLIENT, monday.isoformat())
        assert week.returncode == 0, week.stderr
        pt5_job = int(last_line(week))
        assert wait_for_jobs(database_url, ("pt5",), worker)["pt5"] == pt5_job
    finally:
        code = worker.stop()
    assert code == 0, worker.output()
    assert key not in worker.log.read_text(errors="replace")

    status = orchestrator(env, "status", "--json")
    assert status.returncode == 0, status.stderr
    by_workflow = json.loads(status.stdout)["by_workflow"]
    for name in (*WORKFLOWS, "pt5"):
        assert by_workflow[name]["completed"] >= 1, by_workflow
    runs = orchestrator(env, "runs", "--json", "--limit", "100")
    assert runs.returncode == 0, runs.stderr
    ours = {**month_jobs, "pt5": pt5_job}
    mine = [r for r in json.loads(runs.stdout) if r["job_id"] in ours.values()]
    assert sorted((r["workflow"], r["status"], r["attempt"]) for r in mine) == [
        (name, "succeeded", 1) for name in (*WORKFLOWS, "pt5")
    ]
    assert key not in runs.stdout

    [files_loaded] = query(database_url, "SELECT count(*) AS n FROM cole_files")
    assert files_loaded["n"] == len(files)
    [counts] = query(database_url, "SELECT raw_rows, cleaned FROM monthly_counts")
    assert 0 < counts["cleaned"] < counts["raw_rows"] < 1_500
    [gap] = query(database_url, "SELECT status, upsell, report FROM gap_reports")
    assert (gap["status"], gap["upsell"]) == ("below_target", False)
    assert gap["report"]["cleaned_count"] == counts["cleaned"]
    windows = query(
        database_url,
        "SELECT list_name, lead_count, uploaded, rejected, completed_at IS NOT NULL AS done"
        " FROM renewal_windows ORDER BY window_index",
    )
    assert [w["list_name"] for w in windows] == [
        "March 1st - 7th renewals",
        "March 8th - 14th renewals",
        "March 15th - 21st renewals",
        "March 22nd - 31st renewals",
    ]
    assert all(w["done"] and w["uploaded"] == w["lead_count"] for w in windows)
    assert sum(w["lead_count"] for w in windows) == counts["cleaned"]
    [uploaded] = query(
        database_url, "SELECT count(*) AS n FROM uploaded_leads WHERE status = 'uploaded'"
    )
    assert uploaded["n"] == len(bison.leads(key)) == counts["cleaned"]

    updates = query(
        database_url,
        "SELECT campaign_id, segment, attached, new_name, status FROM evergreen_updates"
        " ORDER BY segment",
    )
    new_names = [
        "Evergreen, Last Upload: March 1\u20137",
        "Evergreen HNW, Last Upload: March 1\u20137",
    ]
    assert [(u["campaign_id"], u["new_name"], u["status"]) for u in updates] == [
        (evergreen, new_names[0], "updated"),
        (hnw, new_names[1], "updated"),
    ]
    assert bison.campaign(key, evergreen)["name"] == new_names[0]
    assert bison.campaign(key, hnw)["name"] == new_names[1]
    attached = len(bison.attached_lead_ids(key, evergreen)) + len(bison.attached_lead_ids(key, hnw))
    assert attached == windows[0]["uploaded"] == sum(u["attached"] for u in updates)


@pytest.mark.parametrize(
    ("override", "flag", "secret"),
    [
        (["--tier", "150"], "--tier", None),
        (["--states", "TX,XX"], "--states", None),
        (["--emailbison-key-env", "sk-live-4f9a8b7c6d5e"], "--emailbison-key-env", "sk-live-4f9a"),
    ],
    ids=["tier", "state", "key-not-a-name"],
)
def test_clients_add_refuses_invalid_input_naming_the_flag(
    database_url: str, override: list[str], flag: str, secret: str | None
) -> None:
    args = {"--name": "Refused Agency", "--tier": "100", "--states": "TX"}
    for flag, value in zip(override[::2], override[1::2], strict=True):
        args[flag] = value
    flat = [part for pair in args.items() for part in pair]

    result = orchestrator(subprocess_env(database_url), "clients", "add", *flat)

    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"orchestrator: invalid client: {flag}: ")
    if secret is not None:
        assert secret not in result.stderr + result.stdout
    assert query(database_url, "SELECT count(*) AS n FROM clients") == [{"n": 0}]


def test_run_week_refuses_a_day_that_is_not_a_monday(database_url: str) -> None:
    result = orchestrator(subprocess_env(database_url), "run-week", CLIENT, "2027-02-09")

    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "upload_date" in result.stderr and "Tuesday" in result.stderr
    assert query(database_url, "SELECT count(*) AS n FROM procrastinate_jobs") == [{"n": 0}]
