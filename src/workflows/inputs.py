"""Input models shared by the pipeline workflows (validated at enqueue time)."""

from __future__ import annotations

from datetime import date
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from workflows.windows import format_month, parse_month


class ClientMonth(BaseModel):
    """``{client, month: "YYYY-MM"}``; ``chain`` enqueues the next step when this one succeeds.

    Unknown fields are refused (``push_to_cly`` is a typo, not an option to ignore).
    """

    model_config = ConfigDict(extra="forbid")

    client: str = Field(min_length=1, max_length=200)
    month: str
    chain: bool = False

    @field_validator("month")
    @classmethod
    def _month(cls, value: str) -> str:
        year, month = parse_month(value)
        return format_month(year, month)

    @property
    def first_day(self) -> date:
        year, month = parse_month(self.month)
        return date(year, month, 1)

    @property
    def year_month(self) -> tuple[int, int]:
        return parse_month(self.month)


class HasClient(Protocol):
    client: str


def client_lock(data: HasClient) -> str:
    """The lock every PT1-PT5 job of one client shares: one step per client at a time.

    >>> client_lock(ClientMonth(client=" Acme Insurance ", month="2027-01"))
    'client:Acme Insurance'
    """
    return f"client:{data.client.strip()}"
