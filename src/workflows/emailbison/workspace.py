"""Where a client's EmailBison key may come from, and where it may be sent.

A client row names an environment variable (or secret file) holding its EmailBison key and
the URL the key is sent to, as ``Authorization: Bearer <key>``. Whoever may run
``clients add/update`` (or write the row with SQL) chooses both, so without limits the worker
would read *any* variable — ``ORCHESTRATOR_DATABASE_URL`` included — and send it to any
server. The rules, checked when a client is written and again before every use:

* the key variable is named ``EMAILBISON_KEY_<NAME>`` (:data:`KEY_ENV_PREFIX`, upper-case
  letters, digits and ``_``); a secret file in ``ORCHESTRATOR_SECRETS_DIR`` bears the same
  name. Nothing else can be named, so no ``ORCHESTRATOR_*`` setting and no other secret;
* the URL is ``https://host[:port][/path]`` with no user info, query or fragment; plain
  ``http://`` only to ``127.0.0.1``, ``localhost`` or ``::1`` and only when
  ``ORCHESTRATOR_EMAILBISON_ALLOW_HTTP_LOOPBACK`` is on (local stand-ins: tests, the demo);
* a key value is used without surrounding whitespace or new lines.

Errors never quote a refused variable name (it may be a key pasted by mistake) nor a value.

Usage::

    check_key_env("EMAILBISON_KEY_ACME")                      # returns it, or ValueError
    url = check_emailbison_url("https://mail.acme.example/", allow_http_loopback=False)
    key = read_key("EMAILBISON_KEY_ACME", secrets_dir)        # None when not found
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from orchestrator import PermanentError, Settings, register_secret
from workflows._http import EventHooks, Pacer
from workflows.emailbison.client import EmailBisonClient
from workflows.key_lookup import read_client_key
from workflows.settings import pipeline_settings

if TYPE_CHECKING:
    from workflows.clients import Client

KEY_ENV_PREFIX = "EMAILBISON_KEY_"
"""Every client key variable (and secret file) name starts with this."""
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
"""The only hosts plain http may reach, and only with the setting on."""
SETTINGS_PREFIX = str(Settings.model_config.get("env_prefix") or "ORCHESTRATOR_")
"""The orchestrator's own variables: never a client key."""
ALLOW_HTTP_SETTING = f"{SETTINGS_PREFIX}EMAILBISON_ALLOW_HTTP_LOOPBACK"

_KEY_ENV_RE = re.compile(rf"{KEY_ENV_PREFIX}[A-Z0-9][A-Z0-9_]{{0,99}}")


class ClientConfigError(PermanentError):
    """A client's configuration is incomplete or invalid."""


class UnsafeWorkspaceConfig(PermanentError):
    """A client's key variable or EmailBison URL breaks the rules above; nothing was sent."""


def check_key_env(name: str) -> str:
    """Return ``name`` if it may name a client's key, else raise ``ValueError``.

    >>> check_key_env("EMAILBISON_KEY_ACME")
    'EMAILBISON_KEY_ACME'
    """
    if name.upper().startswith(SETTINGS_PREFIX) or not _KEY_ENV_RE.fullmatch(name):
        raise ValueError(
            f"must be the NAME of the variable or secret file holding the key, "
            f"{KEY_ENV_PREFIX}<NAME> in upper-case letters, digits and _ "
            f"(e.g. {KEY_ENV_PREFIX}ACME); never the key itself nor another setting"
        )
    return name


def normalize_emailbison_url(url: str) -> str:
    """Return the URL without a trailing ``/`` if its form is allowed, else raise
    ``ValueError``: https (or http to a loopback host), a host, no user info, query,
    fragment, backslash, whitespace or control character. Whether http is switched on is
    :func:`check_emailbison_url`'s question.

    >>> normalize_emailbison_url(" https://mail.acme.example/ ")
    'https://mail.acme.example'
    """
    value = url.strip().rstrip("/")
    hint = "must be the instance's https origin, e.g. https://mail.example.com"
    if any(ch.isspace() or not ch.isprintable() for ch in value) or "\\" in value:
        raise ValueError(f"{hint} (no spaces, control characters or backslashes)")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise ValueError(hint) from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(hint)
    if "@" in parts.netloc:
        raise ValueError(f"{hint}, without user name or password")
    if "?" in value or "#" in value:
        raise ValueError(f"{hint}, without query or fragment")
    if scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError(f"{hint}; plain http is only for a stand-in on 127.0.0.1/localhost/::1")
    return value


def check_emailbison_url(url: str, *, allow_http_loopback: bool) -> str:
    """:func:`normalize_emailbison_url`, and plain http only when ``allow_http_loopback``
    (``ORCHESTRATOR_EMAILBISON_ALLOW_HTTP_LOOPBACK``) is on."""
    value = normalize_emailbison_url(url)
    if urlsplit(value).scheme.lower() == "http" and not allow_http_loopback:
        raise ValueError(
            f"plain http (a local stand-in) is refused unless {ALLOW_HTTP_SETTING}=1; "
            "use the https origin"
        )
    return value


def check_workspace(
    client: str, url: str, key_env: str, *, allow_http_loopback: bool
) -> tuple[str, str]:
    """Both rules for a client about to use its workspace: ``(url, key_env)`` or
    :class:`UnsafeWorkspaceConfig` naming the client and the flag to fix (the row may have
    been written with SQL, bypassing ``clients add/update``)."""
    try:
        key_env = check_key_env(key_env)
    except ValueError as exc:
        raise UnsafeWorkspaceConfig(
            f"client {client!r}: EmailBison key variable refused (--emailbison-key-env {exc})"
        ) from None
    try:
        url = check_emailbison_url(url, allow_http_loopback=allow_http_loopback)
    except ValueError as exc:
        raise UnsafeWorkspaceConfig(
            f"client {client!r}: EmailBison URL refused (--emailbison-url {exc})"
        ) from None
    return url, key_env


def read_key(name: str, secrets_dir: Path | None) -> str | None:
    """The key in environment variable ``name`` or else in ``<secrets_dir>/<name>``, without
    surrounding whitespace; ``None`` when neither holds one. ``name`` must have passed
    :func:`check_key_env` (it is checked again: it becomes a file name)."""
    check_key_env(name)
    value = os.environ.get(name, "").strip()
    if not value and secrets_dir is not None:
        path = Path(secrets_dir) / name
        if path.is_file():
            value = path.read_text(encoding="utf-8").strip()
    return value or None


def emailbison_key(client: Client, engine_settings: Settings) -> str:
    """The client's EmailBison API key, read now from the environment, the ``.env`` file or
    a secret file (in that order, see :mod:`workflows.key_lookup`).

    The key variable and the URL are checked first (see :mod:`workflows.emailbison.workspace`):
    the row may have been written with SQL. The error names the variable, never a value.
    """
    settings = pipeline_settings(engine_settings)
    if not client.emailbison_url or not client.emailbison_key_env:
        raise ClientConfigError(
            f"client {client.name!r} has no EmailBison workspace configured "
            "(--emailbison-url and --emailbison-key-env)"
        )
    _, name = check_workspace(
        client.name,
        client.emailbison_url,
        client.emailbison_key_env,
        allow_http_loopback=settings.emailbison_allow_http_loopback,
    )
    value, places = read_client_key(name, settings)
    if not value:
        raise ClientConfigError(
            f"EmailBison key for client {client.name!r} not found: looked in " + ", ".join(places)
        )
    register_secret(value)  # masked in every log line, error and agent_runs row
    return value


def emailbison_api(
    client: Client,
    engine_settings: Settings,
    event_hooks: EventHooks | None = None,
    *,
    rate_limit: Pacer | None = None,
) -> EmailBisonClient:
    """An EmailBison client for this client's workspace, key read now, settings applied.

    Use it as ``async with emailbison_api(client, ctx.settings, ctx.http_hooks,
    rate_limit=emailbison_limit(ctx, client.emailbison_url)) as api: ...`` (the hooks refuse
    every request once the attempt is fenced; the limit is the instance's, shared by every
    worker). Without ``rate_limit`` the rate setting paces this client alone.
    """
    settings = pipeline_settings(engine_settings)
    key = emailbison_key(client, settings)
    assert client.emailbison_url is not None
    return EmailBisonClient(
        client.emailbison_url,
        key,
        max_requests_per_second=settings.emailbison_rate_limit,
        timeout=settings.emailbison_timeout,
        event_hooks=event_hooks,
        rate_limit=rate_limit,
    )
