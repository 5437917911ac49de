"""``orchestrator demo``: one synthetic month through PT1 → PT4 and a PT5, on a real worker.

Nothing to configure: the database is the embedded server unless ``ORCHESTRATOR_DATABASE_URL``
is set; a database named ``orchestrator_demo`` is (re)created on it, so your own data is never
touched and the demo can run again and again. It generates deterministic Cole exports with
real-world messiness, starts the *local stand-in* EmailBison server on 127.0.0.1, starts
``orchestrator worker`` as a subprocess, runs the month and the first week's evergreen update,
and prints job counts, runs per workflow, the gap report and the campaign's new name.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql

from orchestrator import Orchestrator, Settings, migrate, resolve_database_url, with_database
from workflows.clients import ClientSpec, add_client
from workflows.schedules import month_chain_payload, month_dedupe_key, week_dedupe_key
from workflows.standins.emailbison_server import LocalEmailBison
from workflows.standins.synthetic import generate_exports
from workflows.windows import (
    SCHEDULE_TIMEZONE,
    evergreen_name,
    format_month,
    renewal_month_for_run,
    upload_date_for_window,
    windows_for_month,
)

DEMO_DATABASE = "orchestrator_demo"
"""Default name of the demo database; ``ORCHESTRATOR_DEMO_DATABASE`` overrides it (tests)."""
CLIENT = "Lone Star & Sooner Home Agency"
KEY_ENV = "EMAILBISON_KEY_DEMO"
STATES = ("TX", "OK", "NJ")
PULLED_ZIPS = (
    "75001", "75002", "75006", "75007", "75010", "75013", "75019", "75023",
    "73003", "73008", "73012", "73013", "73020",
    "07001", "07002", "07003", "07008",
)  # fmt: skip
UNPULLED_ZIPS = ("75024", "75025", "75028", "73025", "73034", "07010", "07011")
TIMEOUT_S = 100.0


def demo_database() -> str:
    return os.environ.get("ORCHESTRATOR_DEMO_DATABASE") or DEMO_DATABASE


def say(text: str = "") -> None:
    print(text, flush=True)


async def run_demo(settings: Settings, *, rows: int) -> int:
    started = time.monotonic()
    logging.getLogger("alembic").setLevel(logging.WARNING)
    server_url = resolve_database_url(settings)
    database_url = _fresh_database(server_url)
    say(f"demo database: {demo_database()} (recreated)")
    migrate(database_url)
    run_day = datetime.now(ZoneInfo(SCHEDULE_TIMEZONE)).date()
    month = format_month(*renewal_month_for_run(run_day))
    work, inbox = _prepare_inbox(settings, month, rows)

    api_key = secrets.token_hex(16)
    bison = LocalEmailBison()
    base_url = bison.start()
    bison.add_workspace(api_key)
    year, mon = (int(p) for p in month.split("-"))
    first = windows_for_month(year, mon)[0]
    previous = windows_for_month(*_previous_month(year, mon))[-1]
    evergreen = bison.add_campaign(api_key, evergreen_name(previous))
    hnw = bison.add_campaign(api_key, evergreen_name(previous, prefix="Evergreen HNW"))
    for n in range(20):
        bison.add_campaign(api_key, f"Spring promo {n + 1}", status="paused")
    say(f"local EmailBison stand-in: {base_url} (campaign {evergreen!r} + HNW twin {hnw!r})")

    orch = Orchestrator(settings, database_url=database_url)
    await orch.open()
    worker: subprocess.Popen[bytes] | None = None
    log_path = work / "worker.log"
    try:
        async with orch.transaction() as conn:
            await add_client(
                conn,
                ClientSpec(
                    name=CLIENT,
                    tier=100,
                    licensed_states=["TX", "OK", "NJ", "AR"],
                    approved_zips=[*PULLED_ZIPS, *UNPULLED_ZIPS],
                    emailbison_url=base_url,
                    emailbison_key_env=KEY_ENV,
                ),
            )
        worker = _start_worker(database_url, inbox, api_key, log_path)
        say(f"worker started (pid {worker.pid}, log {log_path})")
        say("")
        month_job = await orch.enqueue_workflow(
            "pt1",
            month_chain_payload(CLIENT, month),
            dedupe_key=month_dedupe_key(CLIENT, month),
        )
        say(f"run-month {month}: PT1 job {month_job} enqueued (PT2, PT3, PT4 follow on success)")
        reported: set[int] = set()
        ok = await _wait_for(orch, {"pt1", "pt2", "pt3", "pt4"}, worker, reported)
        if ok:
            upload_date = upload_date_for_window(first)
            week_job = await orch.enqueue_workflow(
                "pt5",
                {"client": CLIENT, "upload_date": upload_date.isoformat()},
                dedupe_key=week_dedupe_key(CLIENT, upload_date),
            )
            say(f"run-week {upload_date}: PT5 job {week_job} enqueued")
            ok = await _wait_for(orch, {"pt5"}, worker, reported)
        await _summary(orch, bison, api_key, [evergreen, hnw])
    finally:
        if worker is not None:
            _stop_worker(worker)
        await orch.close()
        bison.stop()
    say("")
    say(f"demo {'finished' if ok else 'FAILED'} in {time.monotonic() - started:.1f} s")
    name = demo_database()
    say(f"the {name} database stays for inspection until the next demo, e.g.:")
    if settings.database_url is None:
        say(f"  ORCHESTRATOR_EMBEDDED_DATABASE={name} .venv/bin/orchestrator runs")
    else:
        say(f"  ORCHESTRATOR_DATABASE_URL=<your server>/{name} orchestrator runs")
    if not ok:
        say(f"worker log: {log_path}")
    return 0 if ok else 1


def _prepare_inbox(settings: Settings, month: str, rows: int) -> tuple[Path, Path]:
    work = Path(settings.data_dir).resolve() / "demo"
    inbox = work / "cole_inbox"
    shutil.rmtree(inbox, ignore_errors=True)
    files = generate_exports(
        inbox, client=CLIENT, month=month, states=STATES, zips=PULLED_ZIPS, rows=rows, seed=2026
    )
    say(f"synthetic Cole exports: {len(files)} files, {rows} rows, renewal month {month}")
    return work, inbox


def _previous_month(year: int, month: int) -> tuple[int, int]:
    return (year - 1, 12) if month == 1 else (year, month - 1)


def _fresh_database(server_url: str) -> str:
    name = demo_database()
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(server_url, name)


def _start_worker(
    database_url: str, inbox: Path, api_key: str, log_path: Path
) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        {
            "ORCHESTRATOR_DATABASE_URL": database_url,
            "ORCHESTRATOR_COLE_INBOX": str(inbox),
            "ORCHESTRATOR_POLL_INTERVAL": "0.2",
            # The EmailBison stand-in listens on plain http on 127.0.0.1.
            "ORCHESTRATOR_EMAILBISON_ALLOW_HTTP_LOOPBACK": "1",
            KEY_ENV: api_key,
        }
    )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "worker", "--concurrency", "2"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _stop_worker(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


async def _wait_for(
    orch: Orchestrator,
    workflows: set[str],
    worker: subprocess.Popen[bytes],
    reported: set[int],
) -> bool:
    """Wait until each of ``workflows`` has a completed job; False on a failure or timeout."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        async with orch.transaction() as conn:
            cursor = await conn.execute(
                """
                SELECT run_id, job_id, workflow, attempt, status, duration_s, error_type,
                       error_message
                  FROM orchestrator_runs WHERE status <> 'running' ORDER BY run_id
                """
            )
            runs = await cursor.fetchall()
        for run in runs:
            if run["run_id"] in reported:
                continue
            reported.add(run["run_id"])
            error = f"  {run['error_type']}: {run['error_message']}" if run["error_type"] else ""
            say(
                f"  {run['workflow']} job {run['job_id']} attempt {run['attempt']}: "
                f"{run['status']} in {float(run['duration_s']):.2f} s{error}"
            )
        status = await orch.queue_status()
        done = {w for w, c in status.by_workflow.items() if c.completed}
        if any(status.by_workflow[w].failed for w in workflows if w in status.by_workflow):
            return False
        if workflows <= done:
            return True
        if worker.poll() is not None:
            say(f"worker exited with code {worker.returncode}")
            return False
        await asyncio.sleep(0.2)
    say(f"timed out after {TIMEOUT_S:.0f} s")
    return False


async def _summary(
    orch: Orchestrator, bison: LocalEmailBison, api_key: str, campaign_ids: list[int]
) -> None:
    status = await orch.queue_status()
    say("")
    say("job counts (orchestrator status):")
    say("  workflow  " + "  ".join(f"{s:>9}" for s in status.total.as_dict()))
    for name, job_counts in sorted(status.by_workflow.items()):
        say(f"  {name:<8}  " + "  ".join(f"{v:>9}" for v in job_counts.as_dict().values()))
    async with orch.transaction() as conn:
        cursor = await conn.execute(
            """
            SELECT workflow, count(*) AS runs, count(*) FILTER (WHERE status = 'succeeded')
                       AS succeeded, round(sum(duration_s)::numeric, 2) AS seconds
              FROM orchestrator_runs GROUP BY workflow ORDER BY workflow
            """
        )
        per_workflow = await cursor.fetchall()
        cursor = await conn.execute("SELECT report FROM gap_reports")
        gap = await cursor.fetchone()
        cursor = await conn.execute(
            "SELECT list_name, lead_count, uploaded, rejected FROM renewal_windows "
            "ORDER BY window_index"
        )
        windows = await cursor.fetchall()
        cursor = await conn.execute("SELECT * FROM monthly_counts")
        counts = await cursor.fetchone()
    say("")
    say("agent_runs per workflow:")
    for row in per_workflow:
        say(
            f"  {row['workflow']}: {row['runs']} run(s), {row['succeeded']} succeeded, "
            f"{row['seconds']} s"
        )
    if counts is not None:
        say("")
        say(
            f"PT2 counts: {counts['raw_rows']} raw → {counts['head_of_household']} head of "
            f"household → {counts['cleaned']} cleaned ({counts['texas_hnw']} Texas HNW); "
            f"dropped: {counts['over_value_cap']} over $900k, {counts['bad_fields']} bad fields, "
            f"{counts['email_invalid']} invalid emails"
        )
    if gap is not None:
        _gap_summary(gap["report"])
    if windows:
        say("")
        say("PT4 renewal windows:")
        for w in windows:
            say(
                f"  {w['list_name']}: {w['lead_count']} leads, {w['uploaded']} uploaded, "
                f"{w['rejected']} rejected"
            )
    say("")
    say("evergreen campaigns in EmailBison now:")
    for campaign_id in campaign_ids:
        campaign = bison.campaign(api_key, campaign_id)
        attached = len(bison.attached_lead_ids(api_key, campaign_id))
        say(f"  #{campaign_id} {campaign['name']!r} ({attached} leads attached)")


def _gap_summary(report: dict[str, Any]) -> None:
    say("")
    say(
        f"PT3 gap report: {report['cleaned_count']} cleaned vs target {report['target']} "
        f"(tier {report['tier']}): {report['status'].replace('_', ' ')}, gap {report['gap']}"
    )
    for suggestion in report.get("suggestions", []):
        say(f"  - {suggestion.get('message', suggestion.get('kind'))}")
