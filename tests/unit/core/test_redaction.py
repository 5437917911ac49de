"""Secrets kept out of URLs, payloads and free text (no database)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from orchestrator._redaction import MASK, SecretScrubber, redact_payload, redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://app:s3cret@db:5432/jobs", "postgresql://app:***@db:5432/jobs"),
        (
            "postgres://app:s3cret@db/jobs?sslmode=require",
            "postgres://app:***@db/jobs?sslmode=require",
        ),
        ("postgresql+psycopg://u:p%40ss@h/d", "postgresql+psycopg://u:***@h/d"),
        (
            "postgresql://postgres:@/postgres?host=/tmp/x",
            "postgresql://postgres:***@/postgres?host=/tmp/x",
        ),
        ("postgresql://app@db/jobs", "postgresql://app@db/jobs"),
        ("postgresql://db/jobs", "postgresql://db/jobs"),
        ("postgresql:///jobs?host=/run/pg", "postgresql:///jobs?host=/run/pg"),
        (
            "host=db user=app password=s3cret dbname=jobs",
            "host=db user=app password=*** dbname=jobs",
        ),
        ("host=db password = 's3 cret' dbname=jobs", "host=db password = *** dbname=jobs"),
        ("PASSWORD=s3cret", "PASSWORD=***"),
        (
            "postgresql://db/jobs?user=a&password=s3cret&sslmode=require",
            "postgresql://db/jobs?user=a&password=***&sslmode=require",
        ),
        (
            "could not connect to postgresql://a:b1b2b3@h:1/d: refused",
            "could not connect to postgresql://a:***@h:1/d: refused",
        ),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert "s3cret" not in redact_url(url)


def test_redact_payload_masks_secret_keys_recursively() -> None:
    payload: dict[str, Any] = {
        "client": "acme",
        "api_key": "k-123",
        "nested": {"password": "x", "month": "2026-03", "deeper": {"Authorization": "Bearer t"}},
        "items": [{"token": "t1", "name": "a"}, {"client_secret": "s", "name": "b"}, "plain"],
        "apiKey": "camel",
        "private-key": "pem",
    }
    redacted = redact_payload(payload)
    assert redacted == {
        "client": "acme",
        "api_key": MASK,
        "nested": {"password": MASK, "month": "2026-03", "deeper": {"Authorization": MASK}},
        "items": [{"token": MASK, "name": "a"}, {"client_secret": MASK, "name": "b"}, "plain"],
        "apiKey": MASK,
        "private-key": MASK,
    }
    assert payload["api_key"] == "k-123"  # the input is not modified
    assert payload["nested"]["password"] == "x"


def test_redact_payload_keeps_empty_values_and_env_var_names() -> None:
    payload = {"api_key": None, "token": "", "api_key_env": "DEBOUNCE_API_KEY", "n": 3}
    assert redact_payload(payload) == payload


def test_redact_payload_extra_keys_are_case_insensitive() -> None:
    payload = {"Webhook": "https://hooks/abc", "client": "acme"}
    assert redact_payload(payload, ["webhook"]) == {"Webhook": MASK, "client": "acme"}
    assert redact_payload(payload, frozenset({"CLIENT"}))["client"] == MASK


def test_redact_payload_masks_secret_values_and_keeps_scalars() -> None:
    assert redact_payload({"x": SecretStr("hidden")}) == {"x": MASK}
    assert redact_payload(("a", {"password": "p"})) == ["a", {"password": MASK}]
    assert redact_payload(5) == 5
    assert redact_payload(None) is None


def test_scrubber_replaces_known_secrets() -> None:
    scrub = SecretScrubber(["supersecret", "short", "", "another-secret-value"])
    text = "token supersecret and another-secret-value but short stays"
    assert scrub(text) == "token *** and *** but short stays"


def test_scrubber_learns_the_password_of_a_url_secret() -> None:
    scrub = SecretScrubber(["postgresql://app:hunter22@db/jobs"])
    assert scrub("auth failed for password hunter22") == "auth failed for password ***"
    assert scrub("at postgresql://app:hunter22@db/jobs") == "at ***"  # the URL is a secret too
    assert scrub("at postgresql://other:hunter22@db2/x") == "at postgresql://other:***@db2/x"


def test_scrubber_replaces_longer_secrets_first() -> None:
    scrub = SecretScrubber(["abcdef", "abcdefghij"])
    assert scrub("x abcdefghij y") == "x *** y"


def test_scrubber_always_redacts_urls() -> None:
    assert SecretScrubber()("postgresql://u:pw@h/d") == "postgresql://u:***@h/d"


def test_scrubber_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_API_KEY", "env-key-value-1")
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.example/T0/B0/xyz")
    monkeypatch.setenv("HARMLESS_SETTING", "visible-value")
    scrub = SecretScrubber.from_environment([SecretStr("from-settings"), None])
    text = "env-key-value-1 https://hooks.example/T0/B0/xyz visible-value from-settings"
    assert scrub(text) == "*** *** visible-value ***"


@pytest.mark.parametrize(
    ("key", "masked"),
    [
        ("api_key", True),
        ("password", True),
        ("client_secret", True),
        ("x-auth", True),
        ("Authorization", True),
        ("access_token", True),
        ("author", False),
        ("passenger", False),
        ("tokens_used", False),
        ("emailbison_key_env", False),
        ("authority_name", False),
    ],
)
def test_secret_keys_are_whole_words(key: str, masked: bool) -> None:
    assert (redact_payload({key: "v"})[key] == "***") is masked
