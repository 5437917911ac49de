"""Clients: the insurance agents whose leads flow through PT1-PT5.

A client row holds the package tier, licensed states, approved ZIP codes, the EmailBison
workspace URL and the *name* of the environment variable (or secret file) holding its API key
— never the key itself. :func:`emailbison_key` reads the key at run time.

Example::

    client = await get_client(conn, "Acme Insurance")
    key = emailbison_key(client, settings)   # from $ACME_EMAILBISON_KEY or a secret file
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow
from pydantic import BaseModel, Field, field_validator

from orchestrator import PermanentError, Settings
from workflows._http import EventHooks
from workflows.emailbison import EmailBisonClient
from workflows.formatting import normalize_state, normalize_zip
from workflows.settings import pipeline_settings

ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class ClientNotFound(PermanentError):
    """No client with that name."""


class ClientConfigError(PermanentError):
    """A client's configuration is incomplete or invalid."""


class ClientSpec(BaseModel):
    """What an operator gives to create or update a client (validated, normalised)."""

    name: str = Field(min_length=1, max_length=200)
    tier: int
    licensed_states: list[str] = Field(default_factory=list)
    approved_zips: list[str] = Field(default_factory=list)
    emailbison_url: str | None = None
    emailbison_key_env: str | None = None
    evergreen_campaign_id: int | None = Field(default=None, ge=1)
    evergreen_hnw_campaign_id: int | None = Field(default=None, ge=1)
    active: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value

    @field_validator("tier")
    @classmethod
    def _tier(cls, value: int) -> int:
        if value not in (100, 200):
            raise ValueError("must be 100 or 200 (replies per month)")
        return value

    @field_validator("licensed_states")
    @classmethod
    def _states(cls, values: list[str]) -> list[str]:
        out = []
        for value in values:
            state = normalize_state(value)
            if state is None:
                raise ValueError(f"{value!r} is not a US state code")
            out.append(state)
        return sorted(set(out))

    @field_validator("approved_zips")
    @classmethod
    def _zips(cls, values: list[str]) -> list[str]:
        out = []
        for value in values:
            zip_code = normalize_zip(value)
            if zip_code is None:
                raise ValueError(f"{value!r} is not a ZIP code")
            out.append(zip_code)
        return sorted(set(out))

    @field_validator("emailbison_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be the instance origin, e.g. https://mail.example.com")
        return value

    @field_validator("emailbison_key_env")
    @classmethod
    def _key_env(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not ENV_NAME_RE.match(value):
            raise ValueError(
                "must be the NAME of an environment variable or secret file "
                "(letters, digits, _), not the key itself"
            )
        return value


class Client(ClientSpec):
    id: int


def parse_zip_list(text: str) -> list[str]:
    """ZIPs separated by commas, spaces or new lines (a ``--zips-file`` may hold thousands)."""
    return [part for part in re.split(r"[\s,;]+", text) if part]


async def add_client(conn: AsyncConnection[DictRow], spec: ClientSpec) -> Client:
    cursor = await conn.execute(
        """
        INSERT INTO clients (name, tier, licensed_states, approved_zips, emailbison_url,
                             emailbison_key_env, evergreen_campaign_id,
                             evergreen_hnw_campaign_id, active)
        VALUES (%(name)s, %(tier)s, %(licensed_states)s, %(approved_zips)s, %(emailbison_url)s,
                %(emailbison_key_env)s, %(evergreen_campaign_id)s,
                %(evergreen_hnw_campaign_id)s, %(active)s)
        ON CONFLICT (name) DO NOTHING
        RETURNING *
        """,
        spec.model_dump(),
    )
    row = await cursor.fetchone()
    if row is None:
        raise ClientConfigError(f"client {spec.name!r} already exists (use 'clients update')")
    return _client(row)


async def update_client(
    conn: AsyncConnection[DictRow], name: str, changes: dict[str, Any]
) -> Client:
    current = await get_client(conn, name)
    spec = ClientSpec.model_validate({**current.model_dump(exclude={"id"}), **changes})
    cursor = await conn.execute(
        """
        UPDATE clients
           SET name = %(name)s, tier = %(tier)s, licensed_states = %(licensed_states)s,
               approved_zips = %(approved_zips)s, emailbison_url = %(emailbison_url)s,
               emailbison_key_env = %(emailbison_key_env)s,
               evergreen_campaign_id = %(evergreen_campaign_id)s,
               evergreen_hnw_campaign_id = %(evergreen_hnw_campaign_id)s,
               active = %(active)s, updated_at = now()
         WHERE id = %(id)s
        RETURNING *
        """,
        {**spec.model_dump(), "id": current.id},
    )
    row = await cursor.fetchone()
    assert row is not None
    return _client(row)


async def get_client(conn: AsyncConnection[DictRow], name: str) -> Client:
    cursor = await conn.execute("SELECT * FROM clients WHERE name = %s", [name.strip()])
    row = await cursor.fetchone()
    if row is None:
        raise ClientNotFound(f"no client named {name!r} (see 'orchestrator clients list')")
    return _client(row)


async def list_clients(
    conn: AsyncConnection[DictRow], *, active_only: bool = False
) -> list[Client]:
    cursor = await conn.execute(
        "SELECT * FROM clients WHERE (NOT %s OR active) ORDER BY name", [active_only]
    )
    return [_client(row) for row in await cursor.fetchall()]


def _client(row: DictRow) -> Client:
    return Client.model_validate(
        {k: v for k, v in row.items() if k not in ("created_at", "updated_at")}
    )


def emailbison_key(client: Client, engine_settings: Settings) -> str:
    """The client's EmailBison API key, read now from its env var or secret file.

    The error names the variable, never a value.
    """
    settings = pipeline_settings(engine_settings)
    if not client.emailbison_url or not client.emailbison_key_env:
        raise ClientConfigError(
            f"client {client.name!r} has no EmailBison workspace configured "
            "(--emailbison-url and --emailbison-key-env)"
        )
    name = client.emailbison_key_env
    value = os.environ.get(name)
    if not value and settings.secrets_dir is not None:
        path = Path(settings.secrets_dir) / name
        if path.is_file():
            value = path.read_text(encoding="utf-8").strip()
    if not value:
        where = f"environment variable {name}"
        if settings.secrets_dir is not None:
            where += f" or secret file {Path(settings.secrets_dir) / name}"
        raise ClientConfigError(f"EmailBison key for client {client.name!r} not found: {where}")
    return value


def emailbison_api(
    client: Client, engine_settings: Settings, event_hooks: EventHooks | None = None
) -> EmailBisonClient:
    """An EmailBison client for this client's workspace, key read now, settings applied.

    Use it as ``async with emailbison_api(client, ctx.settings, ctx.http_hooks) as api: ...``
    (the hooks refuse every request once the attempt is fenced).
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
    )


def states_of(clients: Sequence[Client]) -> set[str]:
    return {state for client in clients for state in client.licensed_states}
