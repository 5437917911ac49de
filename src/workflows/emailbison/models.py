"""Value objects sent to and read from the EmailBison API.

Immutable pydantic models: what goes out (:class:`LeadIn`) is validated once when the workflow
builds it, and what comes back (:class:`LeadOut`, :class:`Campaign`) keeps only the fields the
pipeline uses, ignoring the many others EmailBison returns.

>>> lead = LeadIn(
...     first_name="Ann",
...     last_name="Lee",
...     email="ann@example.com",
...     custom_variables=[CustomVariable(name="renewal date", value="March 3rd")],
... )
>>> lead.to_payload()["custom_variables"]
[{'name': 'renewal date', 'value': 'March 3rd'}]
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Campaign", "CustomVariable", "LeadIn", "LeadOut"]


class CustomVariable(BaseModel):
    """One ``{name, value}`` pair; the variable must exist in the workspace first."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    value: str


class LeadIn(BaseModel):
    """A lead to create or update; EmailBison keys leads by ``email`` within a workspace.

    Standard fields are EmailBison's own (``title``, ``company``, ``notes``); everything else
    the pipeline carries (DOB, address, renewal date, home value, ...) goes in
    ``custom_variables``. Emails are not syntax-checked here: EmailBison is the judge, and its
    422 names the offending leads (see :class:`~workflows.emailbison.errors.LeadValidationError`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    first_name: str
    last_name: str
    email: str
    title: str | None = None
    company: str | None = None
    notes: str | None = None
    custom_variables: list[CustomVariable] = Field(default_factory=list)

    def to_payload(self) -> dict[str, Any]:
        """The JSON object sent for this lead: unset optional fields are left out, so a
        ``patch`` upsert does not blank what EmailBison already holds."""
        payload = self.model_dump(exclude_none=True)
        if not self.custom_variables:
            payload.pop("custom_variables", None)
        return payload


class LeadOut(BaseModel):
    """A lead as EmailBison stored it: its workspace-wide ``id`` and its ``email``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: int
    email: str


class Campaign(BaseModel):
    """A campaign's identity and state (``active``, ``paused``, ``draft``, ...)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: int
    name: str
    status: str = ""
    #: Leads attached, when the answer says (how a retry learns whether an attach happened).
    total_leads: int | None = None
