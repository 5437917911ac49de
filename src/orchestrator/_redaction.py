"""Keeping secrets out of logs, errors and agent_runs.

Three layers: URLs lose their password (:func:`redact_url`); payloads lose the values of
secret-looking keys (:func:`redact_payload`); free text (error messages, tracebacks) loses any
known secret value (:class:`SecretScrubber`, fed from the settings and from environment
variables whose names look like keys, tokens or passwords).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

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
    redacted = re.sub(r"(://[^:/@?#\s]*:)[^@/?#\s]*@", r"\1***@", url)
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


class SecretScrubber:
    """Replaces every known secret value in a text with ``***``."""

    MIN_LENGTH = 6

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        for secret in secrets:
            if secret and len(secret) >= self.MIN_LENGTH:
                self._secrets.add(secret)
                url_password = re.search(r"://[^:/@]*:([^@/]+)@", secret)
                if url_password and len(url_password.group(1)) >= self.MIN_LENGTH:
                    self._secrets.add(url_password.group(1))

    @classmethod
    def from_environment(cls, settings_secrets: Iterable[SecretStr | None] = ()) -> SecretScrubber:
        values = [s.get_secret_value() for s in settings_secrets if s is not None]
        values += [v for k, v in os.environ.items() if SECRET_ENV_RE.search(k.upper())]
        return cls(values)

    def __call__(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, MASK)
        return redact_url(text)
