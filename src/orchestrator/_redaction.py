"""Keeping secrets out of logs, errors and agent_runs.

Three layers: URLs lose their password (:func:`redact_url`); payloads lose the values of
secret-looking keys (:func:`redact_payload`); free text (error messages, tracebacks) loses any
known secret value (:class:`SecretScrubber`, fed from the settings and from environment
variables whose names look like keys, tokens or passwords).
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus, unquote

from pydantic import SecretStr

MASK = "***"
#: A key is secret when its last word is one of these (``api_key``, ``clientSecret`` after
#: lower-casing, ``x-auth``), so ``author``, ``passenger`` or ``tokens_used`` stay visible.
SECRET_KEY_RE = re.compile(
    r"(^|[_\-. ])(pass|password|passwd|secret|token|api[_-]?key|apikey|auth|authorization"
    r"|credentials?|private[_-]?key|access[_-]?key|secret[_-]?key)$"
    r"|^(clientsecret|apitoken|accesstoken|authtoken|bearertoken)$",
    re.IGNORECASE,
)
SECRET_ENV_RE = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|PASS|AUTH|WEBHOOK|WEBHOOK_URL)$")


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (URL and key=value forms).

    >>> redact_url("postgresql://app:s3cret@db:5432/jobs")
    'postgresql://app:***@db:5432/jobs'
    """
    redacted = url
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", url):  # a whole URL: any password shape
        credentials = url_credentials(url)
        if credentials is not None:
            user, password = credentials
            redacted = url.replace(f"{user}:{password}@", f"{user}:***@", 1)
    redacted = re.sub(r"(://[^:/@?#\s]*:)[^@\s]*@", r"\1***@", redacted)
    return re.sub(r"(password\s*=\s*)('[^']*'|[^\s&]+)", r"\1***", redacted, flags=re.I)


def redact_payload(value: Any, extra_keys: Iterable[str] = ()) -> Any:
    """A copy of a JSON-like value with secret-looking keys masked, recursively.

    >>> redact_payload({"client": "acme", "api_key": "k-123", "nested": {"password": "x"}})
    {'client': 'acme', 'api_key': '***', 'nested': {'password': '***'}}
    """
    extra = {k.lower() for k in extra_keys}
    return _redact(value, extra)


def _redact(value: Any, extra: set[str]) -> Any:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            key_text = str(key)
            if key_text.lower() in extra or (
                SECRET_KEY_RE.search(key_text) and not key_text.lower().endswith("_env")
            ):
                out[key_text] = MASK if item not in (None, "") else item
            else:
                out[key_text] = _redact(item, extra)
        return out
    if isinstance(value, list | tuple):
        return [_redact(item, extra) for item in value]
    if isinstance(value, SecretStr):
        return MASK
    return value


def url_credentials(url: str) -> tuple[str, str] | None:
    """``(user, password)`` of a URL, found without a URL parser so that passwords holding
    ``/``, ``#``, ``?``, spaces or invalid percent-encoding are still found.

    >>> url_credentials("postgresql://app:p/a#ss word@db:5432/jobs")
    ('app', 'p/a#ss word')
    """
    _scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return None
    userinfo = rest.rpartition("@")[0]
    user, colon, password = userinfo.partition(":")
    if not colon or not password:
        return None
    return user, password


def secret_variants(secret: str) -> set[str]:
    """The forms a secret takes in text: as is, stripped, JSON-escaped, percent-encoded and
    percent-decoded, base64; for a URL also its password and ``user:password`` in base64 (an
    HTTP Basic header echoed by a server)."""
    variants: set[str] = set()
    stripped = secret.strip()
    for value in {secret, stripped}:
        if not value:
            continue
        variants.add(value)
        variants.add(json.dumps(value)[1:-1])
        variants.add(json.dumps(value, ensure_ascii=False)[1:-1])
        variants.add(quote(value, safe=""))
        variants.add(quote_plus(value))
        variants.add(base64.b64encode(value.encode()).decode().rstrip("="))
    credentials = url_credentials(stripped)
    if credentials is not None:
        user, password = credentials
        for candidate in {password, unquote(password)}:
            variants |= secret_variants(candidate)
        pair = f"{unquote(user)}:{unquote(password)}"
        variants.add(base64.b64encode(pair.encode()).decode().rstrip("="))
    return variants


#: Secrets learned by this process at run time (e.g. a client's API key read by a workflow);
#: every :class:`SecretScrubber` masks them too. See :func:`register_secret`.
_RUNTIME_SECRETS: set[str] = set()


def register_secret(value: str | SecretStr | None) -> None:
    """Make every scrubber of this process mask ``value`` (and its encoded forms) from now on.

    Plugins call it for secrets they read at run time, e.g. an API key from a secret file.
    """
    if value is None:
        return
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    if len(text.strip()) >= SecretScrubber.MIN_LENGTH:
        _RUNTIME_SECRETS.update(
            v for v in secret_variants(text) if len(v) >= SecretScrubber.MIN_LENGTH
        )


class SecretScrubber:
    """Replaces every known secret value (and its encoded forms) in a text with ``***``."""

    MIN_LENGTH = 6

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        for secret in secrets:
            if secret and len(secret.strip()) >= self.MIN_LENGTH:
                self._secrets.update(
                    v for v in secret_variants(secret) if len(v) >= self.MIN_LENGTH
                )

    @classmethod
    def from_environment(
        cls, settings_secrets: Iterable[SecretStr | str | None] = ()
    ) -> SecretScrubber:
        """Secrets from the settings given, the environment's secret-looking variables and
        the ``.env`` file's, and the database URL wherever it is set."""
        values = [
            s.get_secret_value() if isinstance(s, SecretStr) else s
            for s in settings_secrets
            if s is not None
        ]
        environment = {**_dotenv_values(), **os.environ}
        values += [
            v
            for k, v in environment.items()
            if SECRET_ENV_RE.search(k.upper()) or k.upper().endswith("DATABASE_URL")
        ]
        return cls(values)

    def __call__(self, text: str) -> str:
        for secret in sorted(self._secrets | _RUNTIME_SECRETS, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, MASK)
        return redact_url(text)


def _dotenv_values(path: str = ".env") -> dict[str, str]:
    """The ``.env`` file's values (the settings read it too), or nothing."""
    try:
        from dotenv import dotenv_values
    except ImportError:  # pragma: no cover - pydantic-settings depends on python-dotenv
        return {}
    if not os.path.isfile(path):
        return {}
    return {k: v for k, v in dotenv_values(path).items() if v}
