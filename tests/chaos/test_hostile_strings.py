"""Hostile strings are data, and secrets never leave their variables.

Client names, a campaign name and Cole CSV cells full of SQL metacharacters, quotes,
backslashes, format placeholders and non-ASCII text go through the CLI and PT1-PT5 on a real
worker; they are stored and shown verbatim (``clients list --json``, ``runs --json``,
``job --json``, agent_runs input and output, raw_leads, the campaign's new name).

The worker runs at DEBUG level with three secrets: a database URL with a password, an
EmailBison API key (which the stand-in echoes back in an HTML 502 page once) and a Slack
webhook URL (whose stand-in refuses every post, echoing the URL path). None of them may
appear in any worker log line, CLI output or error, or anywhere in agent_runs and the jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from tests.chaos.harness import ChaosRun, CliResult, free_port, pipeline_registry, record, run_cli
from tests.fix_db import subprocess_env
from workflows.cole import export_dir
from workflows.standins.emailbison_server import LocalEmailBison
from workflows.standins.synthetic import generate_exports, write_export
from workflows.windows import evergreen_name, upload_date_for_window, windows_for_month

pytestmark = pytest.mark.chaos

MONTH = "2026-03"
ZIPS = ("75001", "75002", "75006", "73003")
MAIN_CLIENT = "Robert'); DROP TABLE clients; --"
CLIENTS = (
    MAIN_CLIENT,
    '"Quoted" \\back\\slash %s %(name)s {} {0} $1 ? ; /* */',
    "Zoë Ñandú 北京 🚀 O'Neil & \u202eevil\u200b",
    "-- ; DELETE FROM agent_runs; SELECT '1' = '1",
)
CAMPAIGN_PREFIX = 'Evergreen \'; DROP TABLE campaigns; -- "x" \\ %s {} 🚀'
HOSTILE_CELLS = {
    "first_name": "Robert'); DROP TABLE raw_leads;--",
    "last_name": 'O"Brien \\ %s {} $$',
    "address_1": '1 "Main", Apt {0}; %(x)s ✓',
    "city": "Zürich\u00a0🚀",
}


class SlackStandIn:
    """Refuses every webhook post with a 500 page that echoes the (secret) path."""

    def __init__(self) -> None:
        self.posts = 0
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                stand_in.posts += 1
                body = f"<html>no_service for {self.path}</html>".encode()
                self.send_response(500)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @contextlib.contextmanager
    def running(self) -> Iterator[str]:
        self.thread.start()
        try:
            yield f"http://127.0.0.1:{self.server.server_address[1]}"
        finally:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(timeout=10)


def with_credentials(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


async def test_hostile_strings_and_secrets(database_url: str, tmp_path: Path) -> None:
    role = f"chaos_{secrets.token_hex(4)}"
    password = f"pw-{secrets.token_hex(12)}"
    api_key = f"ebk-{secrets.token_hex(16)}"
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as admin:
        await admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
    slack = SlackStandIn()
    try:
        with slack.running() as slack_base:
            await _campaign(database_url, tmp_path, role, password, api_key, slack, slack_base)
    finally:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as admin:
            await admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            await admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


async def _campaign(
    database_url: str,
    tmp_path: Path,
    role: str,
    password: str,
    api_key: str,
    slack: SlackStandIn,
    slack_base: str,
) -> None:
    hook_token = secrets.token_hex(12)
    webhook = f"{slack_base}/services/T0CHAOS/B0CHAOS/{hook_token}"
    secret_url = with_credentials(database_url, role, password)
    inbox = tmp_path / "inbox"
    generate_exports(
        inbox, client=MAIN_CLIENT, month=MONTH, states=["TX", "OK"], zips=ZIPS, rows=600, seed=9
    )
    hostile_row = {
        "first_name": HOSTILE_CELLS["first_name"],
        "last_name": HOSTILE_CELLS["last_name"],
        "address_1": HOSTILE_CELLS["address_1"],
        "city": HOSTILE_CELLS["city"],
        "state": "TX",
        "zip": "75001",
        "cell_phone_number": "2145550199",
        "email_address": "bobby.tables@example.com",
        "purchase_date": "03/09/2019",
        "home_value": "$310,000",
        "head_household": "Y",
        "income": "",
        "date_of_birth": "",
    }
    write_export(
        export_dir(inbox, MAIN_CLIENT, MONTH) / "hostile.csv", [list(hostile_row.values())]
    )

    year, month = (int(p) for p in MONTH.split("-"))
    first_window = windows_for_month(year, month)[0]
    previous_window = windows_for_month(year, month - 1)[-1]
    campaign_name = evergreen_name(previous_window, prefix=CAMPAIGN_PREFIX)
    upload_date: date = upload_date_for_window(first_window)

    outputs: list[tuple[str, CliResult]] = []
    bison = LocalEmailBison()
    base_url = bison.start()
    try:
        bison.add_workspace(api_key)
        campaign_id = bison.add_campaign(api_key, campaign_name)
        env = subprocess_env(
            secret_url,
            ORCHESTRATOR_COLE_INBOX=str(inbox),
            ORCHESTRATOR_SLACK_WEBHOOK_URL=webhook,
            ORCHESTRATOR_LOG_LEVEL="DEBUG",
            ORCHESTRATOR_DEFAULT_RETRY_DELAY="1",
            ORCHESTRATOR_EMAILBISON_ALLOW_HTTP_LOOPBACK="1",
            EMAILBISON_KEY_CHAOS=api_key,
        )

        adds = []
        for name in CLIENTS:
            args = ["clients", "add", f"--name={name}", "--tier=100", "--states=TX,OK"]
            args.append("--zips=" + ",".join(ZIPS))
            if name == MAIN_CLIENT:
                args += [
                    f"--emailbison-url={base_url}",
                    "--emailbison-key-env=EMAILBISON_KEY_CHAOS",
                    f"--campaign-id={campaign_id}",
                ]
            adds.append(run_cli(env, *args))
        for name, result in zip(CLIENTS, await asyncio.gather(*adds), strict=True):
            outputs.append((f"clients add {name}", result))
            assert result.code == 0, (name, result)
        listed = await run_cli(env, "clients", "list", "--json")
        outputs.append(("clients list --json", listed))
        assert listed.code == 0, listed
        assert sorted(c["name"] for c in json.loads(listed.stdout)) == sorted(CLIENTS)
        text_list = await run_cli(env, "clients", "list")
        outputs.append(("clients list", text_list))
        for name in CLIENTS:
            assert name in text_list.stdout, name

        async with ChaosRun(
            database_url, tmp_path, worker_env=env, registry=pipeline_registry()
        ) as run:
            stored = {r["name"] for r in await run.db.rows("SELECT name FROM clients")}
            assert stored == set(CLIENTS)
            run.workers.start()
            payload: dict[str, Any] = {"client": MAIN_CLIENT, "month": MONTH}
            jobs: dict[str, int] = {}
            for workflow in ("pt1", "pt2", "pt3", "pt4"):
                if workflow == "pt4":  # the stand-in echoes the key in an error page, once
                    bison.fail_next(
                        502,
                        body=f"<html>upstream: Authorization: Bearer {api_key}</html>",
                        path_contains="create-or-update",
                    )
                jobs[workflow] = await run.orch.enqueue_workflow(workflow, payload)
                await _wait_done(run, jobs[workflow])
            jobs["pt5"] = await run.orch.enqueue_workflow(
                "pt5", {"client": MAIN_CLIENT, "upload_date": upload_date.isoformat()}
            )
            await _wait_done(run, jobs["pt5"])

            raw = await run.db.rows(
                "SELECT first_name, last_name, address_1, city FROM raw_leads"
                " WHERE email_address = 'bobby.tables@example.com'"
            )
            assert [dict(r) for r in raw] == [HOSTILE_CELLS]
            inputs = await run.db.rows(
                "SELECT DISTINCT input ->> 'client' AS client FROM agent_runs"
                " WHERE job_id = ANY(%s)",
                [list(jobs.values())],
            )
            assert [r["client"] for r in inputs] == [MAIN_CLIENT]
            outputs_db = await run.db.rows(
                "SELECT output ->> 'client' AS client FROM agent_runs WHERE status = 'succeeded'"
            )
            assert {r["client"] for r in outputs_db} == {MAIN_CLIENT}
            update = await run.db.one("SELECT old_name, new_name FROM evergreen_updates")
            assert update["old_name"] == campaign_name
            assert update["new_name"] == evergreen_name(first_window, prefix=CAMPAIGN_PREFIX)
            assert bison.campaign(api_key, campaign_id)["name"] == update["new_name"]
            pt4_runs = await run.db.rows(
                "SELECT status::text AS status, error FROM agent_runs WHERE job_id = %s"
                " ORDER BY id",
                [jobs["pt4"]],
            )
            assert [r["status"] for r in pt4_runs] == ["retrying", "succeeded"]
            assert "HTTP 502" in pt4_runs[0]["error"]["message"]

            for name, args in {
                "runs --json": ["runs", "--json", "--limit", "100"],
                "runs": ["runs", "--limit", "100"],
                "job --json": ["job", str(jobs["pt1"]), "--json"],
                "job pt5 --json": ["job", str(jobs["pt5"]), "--json"],
                "status --json": ["status", "--json"],
                "db-url": ["db-url"],
                "workflows": ["workflows"],
            }.items():
                result = await run_cli(env, *args)
                outputs.append((name, result))
                assert result.code == 0, (name, result)
            shown = json.loads(dict(outputs)["runs --json"].stdout)
            assert {r["output"]["client"] for r in shown if r["output"]} == {MAIN_CLIENT}
            job = json.loads(dict(outputs)["job --json"].stdout)
            assert job["job"]["payload"]["client"] == MAIN_CLIENT
            job5 = json.loads(dict(outputs)["job pt5 --json"].stdout)
            names = [c["old_name"] for r in job5["runs"] for c in r["output"]["campaigns"]]
            assert names == [campaign_name]

            unreachable = with_credentials(
                f"postgresql://127.0.0.1:{free_port()}/chaos", role, password
            )
            down = await run_cli({**env, "ORCHESTRATOR_DATABASE_URL": unreachable}, "status")
            outputs.append(("status, database down", down))
            assert down.code == 2 and "cannot reach the database" in down.stderr, down

            run.workers.stop_all()
            logs = run.workers.logs()
            rows: list[str] = []
            for query in (
                "SELECT row_to_json(r)::text AS t FROM agent_runs r",
                "SELECT row_to_json(j)::text AS t FROM procrastinate_jobs j",
                "SELECT row_to_json(e)::text AS t FROM procrastinate_events e",
                "SELECT row_to_json(c)::text AS t FROM clients c",
            ):
                rows += [r["t"] for r in await run.db.rows(query)]
            table_text = "\n".join(rows)
    finally:
        bison.stop()

    haystacks = {"worker logs": logs, "database": table_text}
    for name, result in outputs:
        haystacks[f"`orchestrator {name}` stdout"] = result.stdout
        haystacks[f"`orchestrator {name}` stderr"] = result.stderr
    secret_values = {
        "database password": password,
        "EmailBison key": api_key,
        "Slack webhook URL": webhook,
        "Slack webhook path": hook_token,
    }
    leaks = [
        f"{secret} in {where}"
        for where, text in haystacks.items()
        for secret, value in secret_values.items()
        if value in text
    ]
    record(
        "6 hostile strings + secrets",
        hostile_clients=len(CLIENTS),
        pipeline_jobs=len(jobs),
        slack_posts_refused=slack.posts,
        log_lines=logs.count("\n"),
        texts_scanned=len(haystacks),
        chars_scanned=sum(len(t) for t in haystacks.values()),
        leaks=len(leaks),
    )
    assert slack.posts >= len(jobs), "the webhook was not used for every step"
    assert "Slack notification refused" in logs
    assert " DEBUG " in logs, "the workers did not log at DEBUG level"
    assert not leaks, leaks


async def _wait_done(run: ChaosRun, job_id: int) -> None:
    for _ in range(600):
        state = await run.db.value(
            "SELECT status::text FROM procrastinate_jobs WHERE id = %s", [job_id]
        )
        if state not in ("todo", "doing"):
            break
        await asyncio.sleep(0.1)
    runs = await run.db.rows(
        "SELECT attempt, status::text AS status, error ->> 'message' AS error FROM agent_runs"
        " WHERE job_id = %s ORDER BY id",
        [job_id],
    )
    assert state == "succeeded", (job_id, state, [dict(r) for r in runs])
