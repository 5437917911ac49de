"""The console in a real headless Chromium, as an operator uses it.

The real ``orchestrator dashboard`` and ``orchestrator worker`` run in subprocesses against a
fresh database; a small month runs against the local EmailBison stand-in (slowed down, so
PT4 is seen while it runs). Checked: the run-month action from a client's page, the pipeline
board filling in live (server-sent events, no reload), a progress bar during PT4, a failed
job's traceback, the retry button retrying it, and a hostile client name shown as text.
Screenshots go to a temporary directory; with ``ORCHESTRATOR_WRITE_SCREENSHOTS=1`` they
replace the README's pictures in ``docs/screenshots/`` (done by hand when the pages change,
so a test run never dirties the tree).

Needs Debian's ``chromium`` (``apt-get install chromium``) and Playwright for Python; without
them the test is skipped with the reason, unless ``ORCHESTRATOR_REQUIRE_BROWSER=1`` (CI),
which makes it fail.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fix_cli import ROOT, Process, cli, free_port, rows, run_rows
from tests.fix_db import subprocess_env
from workflows.standins.emailbison_server import LocalEmailBison
from workflows.standins.synthetic import generate_exports
from workflows.windows import evergreen_name, windows_for_month

DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = (
    os.environ.get("ORCHESTRATOR_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
)
CLIENT = "Prairie & Pine Insurance"
HOSTILE = "<script>alert(1)</script>"
MONTH = "2027-03"
KEY_ENV = "EMAILBISON_KEY_BROWSER"


def _browser_missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install playwright)"
    return None


def screenshot_dir(tmp_path: Path) -> Path:
    """``docs/screenshots`` when asked (``ORCHESTRATOR_WRITE_SCREENSHOTS=1``), else a temp dir."""
    if os.environ.get("ORCHESTRATOR_WRITE_SCREENSHOTS") == "1":
        return DOCS_SCREENSHOTS
    folder = tmp_path / "screenshots"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = _browser_missing()
    if reason is not None:
        if os.environ.get("ORCHESTRATOR_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser tests required (ORCHESTRATOR_REQUIRE_BROWSER=1): {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def _wait_http(url: str, process: Process, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        assert process.poll() is None, process.output()
        assert time.monotonic() < deadline, f"{url} never answered\n{process.output()}"
        time.sleep(0.1)


def _job_state(database_url: str, job_id: int) -> str:
    found = rows(
        database_url, "SELECT status::text AS s FROM procrastinate_jobs WHERE id = %s", [job_id]
    )
    return str(found[0]["s"])


@pytest.mark.slow
def test_an_operator_watches_a_month_and_retries_a_failure(
    browser: Any, database_url: str, tmp_path: Path
) -> None:
    shots = screenshot_dir(tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with LocalEmailBison() as bison:
        key = f"eb-{secrets.token_hex(12)}"
        bison.add_workspace(key)
        evergreen = bison.add_campaign(key, evergreen_name(windows_for_month(2027, 2)[-1]))
        inbox = tmp_path / "cole_inbox"
        generate_exports(
            inbox,
            client=CLIENT,
            month=MONTH,
            states=("TX", "OK"),
            zips=("75001", "75002", "75006", "73003", "73008"),
            rows=1_500,
            seed=5,
        )
        env = subprocess_env(
            database_url,
            ORCHESTRATOR_COLE_INBOX=str(inbox),
            ORCHESTRATOR_EMAILBISON_ALLOW_HTTP_LOOPBACK="1",  # the stand-in is http on loopback
            **{KEY_ENV: key},
        )
        for args in (
            [
                "--name",
                CLIENT,
                "--tier",
                "100",
                "--states",
                "TX,OK",
                "--emailbison-url",
                bison.base_url,
                "--emailbison-key-env",
                KEY_ENV,
                "--campaign-id",
                str(evergreen),
            ],
            ["--name", HOSTILE, "--tier", "200", "--states", "TX"],
        ):
            added = cli(database_url, "clients", "add", *args, env=env)
            assert added.returncode == 0, added.stderr
        [client_row] = rows(database_url, "SELECT id FROM clients WHERE name = %s", [CLIENT])

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        dashboard = Process(
            [*_orchestrator(), "dashboard", "--port", str(port)], env, tmp_path / "dashboard.log"
        )
        worker = Process(
            [*_orchestrator(), "worker", "--concurrency", "2"], env, tmp_path / "worker.log"
        )
        with dashboard, worker:
            _wait_http(f"{base}/readyz", dashboard)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            dialogs: list[str] = []

            def on_dialog(dialog: Any) -> None:
                dialogs.append(dialog.message)
                dialog.dismiss()

            page.on("dialog", on_dialog)
            console_errors: list[str] = []
            page.on(
                "console",
                lambda message: (
                    console_errors.append(message.text) if message.type == "error" else None
                ),
            )

            # -- start the month from the client's page (action + confirmation step)
            bison.slow_seconds = 0.6  # PT4 takes a few seconds: its progress shows
            page.goto(f"{base}/board/clients/{client_row['id']}")
            page.fill("input[name=month]", MONTH)
            page.click("text=Run month (PT1 → PT4)")
            page.wait_for_selector("text=Run month (PT1 → PT4)?")
            page.click("button[data-action=confirm]")
            page.wait_for_selector(f"text=started for {CLIENT} {MONTH}")

            # -- the board fills in by itself while PT4 uploads
            page.goto(f"{base}/board")
            pt4 = ".step-active:has(.name:text-is('PT4'))"
            page.wait_for_selector(f"{pt4} progress", timeout=90_000)
            bar = page.inner_text(f"{pt4} .progress-text")
            assert "leads" in bar, bar
            page.screenshot(path=str(shots / "board-pt4-progress.png"), full_page=True)
            page.wait_for_selector("text=windows 4/4", timeout=90_000)
            bison.slow_seconds = 0.0
            assert page.get_by_text(HOSTILE, exact=True).is_visible()
            page.screenshot(path=str(shots / "board.png"), full_page=True)

            # -- a job that fails: PT5 for a window no PT4 prepared
            week = cli(database_url, "run-week", CLIENT, "2027-06-07", env=env)
            assert week.returncode == 0, week.stderr
            failing = int(week.stdout.strip().splitlines()[-1])
            deadline = time.monotonic() + 60
            while _job_state(database_url, failing) != "failed":
                assert time.monotonic() < deadline, worker.output()
                time.sleep(0.2)
            page.goto(f"{base}/jobs/{failing}")
            page.wait_for_selector("text=Traceback (most recent call last)")
            assert page.is_visible("text=was never prepared")
            page.screenshot(path=str(shots / "job-failed.png"), full_page=True)

            page.goto(f"{base}/failures")
            page.wait_for_selector(f"input[name=job_id][value='{failing}']")
            page.screenshot(path=str(shots / "failures.png"), full_page=True)

            # -- retry it from the job page
            page.goto(f"{base}/jobs/{failing}")
            page.click("button[data-action=retry]")
            page.wait_for_selector("text=Send these jobs back to the queue")
            page.click("button[data-action=confirm]")
            page.wait_for_selector("text=queued again")
            deadline = time.monotonic() + 60
            while len(run_rows(database_url, failing)) < 2:
                assert time.monotonic() < deadline, worker.output()
                time.sleep(0.2)

            page.goto(f"{base}/")
            page.wait_for_selector("text=Jobs by workflow")
            page.screenshot(path=str(shots / "overview.png"), full_page=True)
            page.goto(f"{base}/jobs/{failing}")
            page.wait_for_selector("text=attempt 2")
            page.close()

        assert dialogs == [], dialogs  # the hostile name never ran as script
        assert not [e for e in console_errors if "Content Security Policy" in e], console_errors
        assert key not in dashboard.output()


def _orchestrator() -> list[str]:
    import sys

    return [sys.executable, "-m", "orchestrator"]
