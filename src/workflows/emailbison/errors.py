"""Errors raised by :class:`~workflows.emailbison.client.EmailBisonClient`.

Every class is also an orchestrator type, so a workflow can let them escape and the job is
failed at once (permanent) or retried with backoff (retryable)::

    EmailBisonError (WorkflowError)             any EmailBison failure; has status_code
    ├── EmailBisonPermanentError (PermanentError)
    │   ├── EmailBisonAuthError                 401/403: bad key or another workspace
    │   ├── EmailBisonNotFound                  404: "Record not found"
    │   └── EmailBisonValidationError           422 with Laravel ``errors``
    │       └── LeadValidationError             422 from a lead upsert; offending lead indices
    └── EmailBisonRetryableError (RetryableError)   408/429/5xx, timeouts, broken bodies

Messages name the method, the path, the status and a short body excerpt; they never contain
the API key (bodies are redacted before they are quoted). ``status_code`` is ``None`` when no
response arrived (timeout, connection error) and ``200`` for a ``{"success": false}`` answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from orchestrator import PermanentError, RetryableError, WorkflowError

__all__ = [
    "EmailBisonAuthError",
    "EmailBisonError",
    "EmailBisonNotFound",
    "EmailBisonPermanentError",
    "EmailBisonRetryableError",
    "EmailBisonValidationError",
    "LeadValidationError",
    "nothing_done",
]

_LEAD_KEY = re.compile(r"^leads\.(\d+)(?:\.(.+))?$")


class EmailBisonError(WorkflowError):
    """The EmailBison API call failed."""

    status_code: int | None = None
    method: str = ""
    path: str = ""


class EmailBisonPermanentError(EmailBisonError, PermanentError):
    """EmailBison refused the request; sending it again will not help."""

    def __init__(
        self,
        message: str | None = None,
        *,
        status_code: int | None = None,
        method: str = "",
        path: str = "",
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.method = method
        self.path = path


class EmailBisonRetryableError(EmailBisonError, RetryableError):
    """EmailBison could not answer properly this time; a later attempt may succeed."""

    def __init__(
        self,
        message: str | None = None,
        *,
        status_code: int | None = None,
        method: str = "",
        path: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status_code = status_code
        self.method = method
        self.path = path


class EmailBisonAuthError(EmailBisonPermanentError):
    """The API key was refused (401) or may not touch this resource (403)."""


class EmailBisonNotFound(EmailBisonPermanentError):
    """The resource does not exist in this workspace (404)."""


class EmailBisonValidationError(EmailBisonPermanentError):
    """EmailBison rejected the request body (422).

    ``errors`` is Laravel's field map, e.g. ``{"lead_ids.3": ["The selected ... is invalid."]}``;
    empty when the body carried none.
    """

    def __init__(
        self,
        message: str | None = None,
        *,
        errors: Mapping[str, Sequence[str]] | None = None,
        status_code: int | None = 422,
        method: str = "",
        path: str = "",
    ) -> None:
        super().__init__(message, status_code=status_code, method=method, path=path)
        self.errors: dict[str, list[str]] = {k: list(v) for k, v in (errors or {}).items()}


class LeadValidationError(EmailBisonValidationError):
    """A lead upsert was rejected (422); nothing in that request was written.

    Use :attr:`invalid_indices` to drop the offending leads and send the rest again::

        try:
            await client.upsert_leads(batch)
        except LeadValidationError as exc:
            bad = exc.invalid_indices
            good = [lead for i, lead in enumerate(batch) if i not in bad]
            await client.upsert_leads(good)

    An empty :attr:`invalid_indices` means the whole request was refused (e.g. too many leads).
    """

    @property
    def errors_by_index(self) -> dict[int, dict[str, list[str]]]:
        """Errors per lead index (position in the request), then per field.

        ``leads.3.email`` becomes ``{3: {"email": [...]}}``; a key naming a lead but no field
        (``leads.3``) is filed under the field ``""``.
        """
        result: dict[int, dict[str, list[str]]] = {}
        for key, messages in self.errors.items():
            match = _LEAD_KEY.match(key)
            if match is None:
                continue
            field = match.group(2) or ""
            result.setdefault(int(match.group(1)), {}).setdefault(field, []).extend(messages)
        return result

    @property
    def invalid_indices(self) -> frozenset[int]:
        """Positions (0-based, in the request) of the leads EmailBison complained about."""
        return frozenset(self.errors_by_index)


def nothing_done(exc: BaseException) -> bool:
    """Whether ``exc`` proves EmailBison did *not* carry the request out.

    True for an answered refusal (any 4xx, including 429, or a 200 reporting
    ``success: false``); false when no answer came (timeout, connection lost), for a 5xx and
    for a 2xx with a broken body: after those the request may have been carried out.

    >>> nothing_done(EmailBisonNotFound("GET /api/campaigns/9: HTTP 404", status_code=404))
    True
    >>> nothing_done(EmailBisonRetryableError("POST /api/leads: no answer in time"))
    False
    """
    if not isinstance(exc, EmailBisonError) or exc.status_code is None:
        return False
    if 400 <= exc.status_code < 500:
        return True
    return isinstance(exc, EmailBisonPermanentError) and exc.status_code < 300
