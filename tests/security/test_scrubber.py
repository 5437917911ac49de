"""One scrubber that knows every secret: settings, .env, URLs parsed without a regex, keys
read at run time, in their escaped, percent-encoded and base64 forms, in every log format and
in every CLI message."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator._log import JsonFormatter, TextFormatter
from orchestrator._redaction import SecretScrubber, redact_url, register_secret

ROOT = Path(__file__).resolve().parents[2]
ODD_PASSWORDS = ["pa/ss#word?x1", "with space 99", 'quo"te\\back', "ünïcødé-pw", "wr%ngpw"]


@pytest.mark.parametrize("password", ODD_PASSWORDS)
def test_a_database_password_of_any_shape_is_found_in_its_url(password: str) -> None:
    url = f"postgresql://app:{password}@db.internal:5432/jobs"
    scrub = SecretScrubber([url])
    text = f"connecting to {url} failed; password {password!r}; json {json.dumps(password)}"
    assert password not in scrub(text)
    assert json.dumps(password)[1:-1] not in scrub(text)
    assert password not in redact_url(url)


def test_percent_encoded_and_decoded_forms_are_both_masked() -> None:
    scrub = SecretScrubber(["postgresql://app:p%40ss%2Fw0rd@db/jobs"])
    assert "p@ss/w0rd" not in scrub("password p@ss/w0rd")
    assert "p%40ss%2Fw0rd" not in scrub("token p%40ss%2Fw0rd")


def test_basic_auth_of_url_credentials_echoed_by_a_server_is_masked() -> None:
    scrub = SecretScrubber(["https://user:hunter22@api.example/x"])
    header = "Basic " + base64.b64encode(b"user:hunter22").decode()
    assert "hunter22" not in scrub(header)
    assert base64.b64encode(b"user:hunter22").decode().rstrip("=") not in scrub(header)


def test_a_key_with_a_trailing_newline_is_masked_without_it() -> None:
    scrub = SecretScrubber(["sk-live-abcdef123456\n"])
    assert "sk-live-abcdef123456" not in scrub("Authorization: Bearer sk-live-abcdef123456")


def test_secrets_registered_at_run_time_reach_every_scrubber() -> None:
    scrub = SecretScrubber()
    register_secret("client-key-7f3a9b2c\n")
    assert "client-key-7f3a9b2c" not in scrub("sent client-key-7f3a9b2c")


def test_dotenv_values_are_known(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text(
        "ORCHESTRATOR_SLACK_WEBHOOK_URL=https://hooks.example/T0/B0/s3cr3tvalue\n"
        "ORCHESTRATOR_DATABASE_URL=postgresql://u:dotenvpw42@h/d\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    scrub = SecretScrubber.from_environment()
    assert "s3cr3tvalue" not in scrub("posting to https://hooks.example/T0/B0/s3cr3tvalue")
    assert "dotenvpw42" not in scrub("password dotenvpw42")


@pytest.mark.parametrize("secret", ['quo"te\\back-123', "ünïcødé-secret", "plain-secret-1"])
@pytest.mark.parametrize("formatter_class", [JsonFormatter, TextFormatter])
def test_log_lines_never_carry_a_secret_in_any_encoding(
    secret: str, formatter_class: type[JsonFormatter] | type[TextFormatter]
) -> None:
    formatter = formatter_class(SecretScrubber([secret]))
    record = logging.makeLogRecord(
        {"msg": "failed with %s", "args": (secret,), "levelname": "ERROR", "name": "t"}
    )
    record.__dict__["error_message"] = f"key={secret}"
    line = formatter.format(record)
    for form in (secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]):
        assert form not in line


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _env(url: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env["ORCHESTRATOR_DATABASE_URL"] = url
    env["ORCHESTRATOR_CONNECT_TIMEOUT"] = "2"
    return env


@pytest.mark.parametrize("password", ODD_PASSWORDS)
def test_the_cli_never_prints_a_database_password(password: str) -> None:
    url = f"postgresql://app:{password}@127.0.0.1:1/jobs"
    for args in (["status"], ["db-url"]):
        result = _cli(*args, env=_env(url))
        output = result.stdout + result.stderr
        assert password not in output, (args, output)
        assert "Traceback" not in output


def test_a_url_of_another_database_gets_one_line_without_the_password() -> None:
    result = _cli("status", env=_env("mysql://root:topsecret9@127.0.0.1/app"))
    assert result.returncode == 2
    assert "topsecret9" not in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert "ORCHESTRATOR_DATABASE_URL: a mysql:// URL" in result.stderr
