"""A client's EmailBison key is read only from an ``EMAILBISON_KEY_*`` variable (or secret file)
and sent only to an https EmailBison origin (plain http to loopback when allowed).

The exfiltration attempt: a client row whose key variable names a setting
(``ORCHESTRATOR_DATABASE_URL``, ``DATABASE_URL``, ...) and whose URL is a capture server on
127.0.0.1 that records every Authorization header. The rules are checked by
``clients add/update`` (errors name the flag) and again when PT4/PT5 use a row, which may
have been written with SQL.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from orchestrator import Orchestrator
from tests import fix_db
from tests.fix_cli import cli, rows
from tests.fix_db import subprocess_env
from tests.fix_pipeline import (
    StubRequest,
    StubServer,
    make_leads,
    run_job,
    seed_leads,
    stub_server,
)
from tests.security._pipeline import add_client_row, everything_recorded, open_pipeline
from workflows.clients import ClientSpec, get_client, list_clients
from workflows.commands import describe_client_error
from workflows.emailbison.workspace import (
    ALLOW_HTTP_SETTING,
    UnsafeWorkspaceConfig,
    check_emailbison_url,
    emailbison_key,
    read_key,
)
from workflows.settings import pipeline_settings

MONTH = "2026-08"
CLIENT = "Acme Insurance"
GOOD_KEY_ENV = "EMAILBISON_KEY_ACME_SECURITY_TEST"


def unauthorised(request: StubRequest) -> tuple[int, Any]:
    return 401, {"message": "Unauthenticated."}


@pytest.fixture
def capture() -> Iterator[StubServer]:
    """An HTTP server on 127.0.0.1 recording every request (and its Authorization header)."""
    with stub_server(unauthorised) as server:
        yield server


@pytest.fixture
def canary() -> str:
    return f"canary{secrets.token_hex(8)}"


@pytest.fixture
async def pipeline(database_url: str, tmp_path: Path) -> AsyncIterator[Orchestrator]:
    async with open_pipeline(
        database_url, tmp_path / "inbox", emailbison_allow_http_loopback=True
    ) as orch:
        yield orch


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch, database_url: str, canary: str) -> None:
    """The worker's environment holds secrets besides client keys, as in production."""
    monkeypatch.setenv("ORCHESTRATOR_DATABASE_URL", database_url)
    monkeypatch.setenv("DATABASE_URL", f"postgresql://app:{canary}@db.internal/app")
    monkeypatch.setenv("PGPASSWORD", canary)
    monkeypatch.setenv("ACME_EMAILBISON_KEY", canary)  # a key under the old, unprefixed name


async def seeded_client(orch: Orchestrator, **columns: Any) -> None:
    """A client row written with SQL plus cleaned leads, so PT4 gets as far as EmailBison."""
    await add_client_row(orch, name=CLIENT, **columns)
    async with orch.pool.connection() as conn:
        client = await get_client(conn, CLIENT)
    await seed_leads(orch, client, MONTH, make_leads([3, 2, 0, 0]))


def authorizations(server: StubServer) -> list[str]:
    return [r.headers.get("authorization", "") for r in server.requests]


# -- the rules --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["EMAILBISON_KEY_ACME", "EMAILBISON_KEY_ACME_2", "EMAILBISON_KEY_9LIVES"]
)
def test_key_variables_named_for_the_purpose_are_accepted(name: str) -> None:
    assert ClientSpec(name="A", tier=100, emailbison_key_env=name).emailbison_key_env == name


@pytest.mark.parametrize(
    "name",
    [
        "ORCHESTRATOR_DATABASE_URL",
        "ORCHESTRATOR_DEBOUNCE_API_KEY",
        "orchestrator_database_url",
        "DATABASE_URL",
        "PGPASSWORD",
        "AWS_SECRET_ACCESS_KEY",
        "PATH",
        "ACME_EMAILBISON_KEY",
        "emailbison_key_acme",
        "EMAILBISON_KEY_",
        "EMAILBISON_KEY_ACME-1",
        "EMAILBISON_KEY_../../etc/passwd",
        "sk-live-4f9a8b7c6d5e",
    ],
)
def test_any_other_variable_is_refused_without_quoting_it(name: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ClientSpec(name="A", tier=100, emailbison_key_env=name)

    message = describe_client_error(caught.value)
    assert message.startswith("--emailbison-key-env: ")
    assert "EMAILBISON_KEY_<NAME>" in message
    assert name not in message.replace("EMAILBISON_KEY_<NAME>", "").replace("_ACME)", ")")


@pytest.mark.parametrize(
    ("url", "stored"),
    [
        ("https://mail.acme.example", "https://mail.acme.example"),
        (" https://mail.acme.example/ ", "https://mail.acme.example"),
        ("https://mail.acme.example:8443", "https://mail.acme.example:8443"),
        ("https://mail.acme.example/bison", "https://mail.acme.example/bison"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://localhost:9", "http://localhost:9"),
        ("http://[::1]:9", "http://[::1]:9"),
    ],
)
def test_https_origins_and_loopback_stand_ins_are_accepted(url: str, stored: str) -> None:
    assert ClientSpec(name="A", tier=100, emailbison_url=url).emailbison_url == stored


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://mail.acme.example", "plain http is only for a stand-in"),
        ("http://127.0.0.2:80", "plain http is only for a stand-in"),
        ("https://user:pass@mail.acme.example", "without user name or password"),
        ("https://token@mail.acme.example", "without user name or password"),
        ("https://mail.acme.example/?next=https://x", "without query or fragment"),
        ("https://mail.acme.example?", "without query or fragment"),
        ("https://mail.acme.example/#top", "without query or fragment"),
        ("https://evil.example\\@mail.acme.example", "backslashes"),
        ("https://mail.acme .example", "no spaces"),
        ("https://mail.acme.example:99999", "https origin"),
        ("ftp://mail.acme.example", "https origin"),
        ("mail.acme.example", "https origin"),
        ("https://", "https origin"),
    ],
)
def test_other_urls_are_refused(url: str, reason: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ClientSpec(name="A", tier=100, emailbison_url=url)

    message = describe_client_error(caught.value)
    assert message.startswith("--emailbison-url: ")
    assert reason in message
    assert "pass@" not in message and "token@" not in message


def test_plain_http_needs_the_loopback_setting() -> None:
    with pytest.raises(ValueError, match=ALLOW_HTTP_SETTING):
        check_emailbison_url("http://127.0.0.1:9", allow_http_loopback=False)
    assert check_emailbison_url("http://127.0.0.1:9/", allow_http_loopback=True) == (
        "http://127.0.0.1:9"
    )
    # off unless turned on
    assert pipeline_settings(fix_db.settings_for_tests()).emailbison_allow_http_loopback is False


def test_key_values_are_stripped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, canary: str
) -> None:
    monkeypatch.setenv("EMAILBISON_KEY_ENV_SIDE", f"  {canary}\r\n")
    (tmp_path / "EMAILBISON_KEY_FILE_SIDE").write_text(f"\n{canary}-file\n")
    monkeypatch.delenv("EMAILBISON_KEY_FILE_SIDE", raising=False)

    assert read_key("EMAILBISON_KEY_ENV_SIDE", None) == canary
    assert read_key("EMAILBISON_KEY_FILE_SIDE", tmp_path) == f"{canary}-file"
    (tmp_path / "db_password").write_text(canary)
    with pytest.raises(ValueError):
        read_key("db_password", tmp_path)  # other secret files cannot be named


# -- clients add/update refuse, naming the flag -----------------------------------------------


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (("https://mail.acme.example", "ORCHESTRATOR_DATABASE_URL"), "--emailbison-key-env"),
        (("https://admin:hunter2@mail.acme.example", GOOD_KEY_ENV), "--emailbison-url"),
        (("http://127.0.0.1:9", GOOD_KEY_ENV), ALLOW_HTTP_SETTING),
    ],
    ids=["setting-as-key", "user-info", "http-without-setting"],
)
def test_clients_add_refuses_naming_the_flag(
    database_url: str, flags: tuple[str, str], expected: str
) -> None:
    url, key_env = flags
    args = ["clients", "add", "--name", CLIENT, "--tier", "100", "--emailbison-url", url]
    args += ["--emailbison-key-env", key_env]

    result = cli(database_url, *args)

    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("orchestrator: invalid client: "), lines
    assert expected in lines[0]
    assert "hunter2" not in result.stderr and "ORCHESTRATOR_DATABASE_URL" not in result.stderr
    assert rows(database_url, "SELECT count(*) AS n FROM clients") == [{"n": 0}]


def test_clients_update_refuses_and_loopback_http_is_taken_when_allowed(
    database_url: str,
) -> None:
    env = subprocess_env(database_url, **{ALLOW_HTTP_SETTING: "1"})
    added = cli(
        database_url,
        *["clients", "add", "--name", CLIENT, "--tier", "100"],
        *["--emailbison-url", "http://127.0.0.1:9", "--emailbison-key-env", GOOD_KEY_ENV],
        env=env,
    )
    assert added.returncode == 0, added.stderr

    updated = cli(
        database_url,
        *["clients", "update", "--name", CLIENT, "--emailbison-key-env", "DATABASE_URL"],
        env=env,
    )

    assert updated.returncode == 2, (updated.stdout, updated.stderr)
    assert "--emailbison-key-env" in updated.stderr
    [client] = rows(database_url, "SELECT emailbison_key_env FROM clients")
    assert client["emailbison_key_env"] == GOOD_KEY_ENV


# -- use time: rows written with SQL are refused before anything is sent ----------------------


@pytest.mark.usefixtures("secret_env")
@pytest.mark.parametrize(
    "key_env",
    ["ORCHESTRATOR_DATABASE_URL", "DATABASE_URL", "PGPASSWORD", "ACME_EMAILBISON_KEY"],
)
async def test_a_setting_named_as_key_is_never_sent(
    pipeline: Orchestrator,
    capture: StubServer,
    database_url: str,
    canary: str,
    key_env: str,
) -> None:
    await seeded_client(pipeline, emailbison_url=capture.url, emailbison_key_env=key_env)

    result = await run_job(pipeline, "pt4", {"client": CLIENT, "month": MONTH})

    assert result.status == "failed"
    assert result.run_statuses == ["failed"]
    assert result.error["type"] == "UnsafeWorkspaceConfig"
    assert "--emailbison-key-env" in result.error["message"]
    assert capture.requests == []
    sent = json.dumps([r.headers for r in capture.requests])
    assert database_url not in sent and canary not in sent
    assert canary not in everything_recorded(result)


@pytest.mark.parametrize(
    ("url", "allow_http", "expected"),
    [
        ("http://user:pw@127.0.0.1:{port}", True, "without user name or password"),
        ("http://127.0.0.1:{port}/?steal=1", True, "without query or fragment"),
        ("http://127.0.0.1:{port}", False, ALLOW_HTTP_SETTING),
    ],
    ids=["user-info", "query", "http-not-allowed"],
)
async def test_a_url_written_with_sql_is_refused_before_use(
    database_url: str,
    tmp_path: Path,
    capture: StubServer,
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    allow_http: bool,
    expected: str,
) -> None:
    monkeypatch.setenv(GOOD_KEY_ENV, "eb-key-for-a-stand-in")
    port = capture.url.rsplit(":", 1)[1]
    async with open_pipeline(
        database_url, tmp_path / "inbox", emailbison_allow_http_loopback=allow_http
    ) as orch:
        await seeded_client(
            orch, emailbison_url=url.format(port=port), emailbison_key_env=GOOD_KEY_ENV
        )

        result = await run_job(orch, "pt4", {"client": CLIENT, "month": MONTH})

    assert result.status == "failed"
    assert result.error["type"] == "UnsafeWorkspaceConfig"
    assert "--emailbison-url" in result.error["message"] and expected in result.error["message"]
    assert capture.requests == []


async def test_keys_are_sent_without_surrounding_whitespace(
    pipeline: Orchestrator, capture: StubServer, monkeypatch: pytest.MonkeyPatch, canary: str
) -> None:
    monkeypatch.setenv(GOOD_KEY_ENV, f"  {canary}\n")
    await seeded_client(pipeline, emailbison_url=capture.url, emailbison_key_env=GOOD_KEY_ENV)

    result = await run_job(pipeline, "pt4", {"client": CLIENT, "month": MONTH})

    assert result.status == "failed"  # the capture server answers 401
    assert authorizations(capture) == [f"Bearer {canary}"]


async def test_rows_breaking_the_rules_still_load_and_name_the_fix(
    pipeline: Orchestrator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACME_EMAILBISON_KEY", "eb-legacy")
    await add_client_row(
        pipeline,
        name=CLIENT,
        emailbison_url="http://mail.acme.example",
        emailbison_key_env="ACME_EMAILBISON_KEY",
    )
    async with pipeline.pool.connection() as conn:
        [client] = await list_clients(conn)  # one bad row does not hide every client

    with pytest.raises(UnsafeWorkspaceConfig, match="--emailbison-key-env"):
        emailbison_key(client, pipeline.settings)
