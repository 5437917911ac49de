"""Async client for the EmailBison REST API, one workspace per API key.

Only the calls the pipeline needs (PT4 upload, PT5 evergreen update). Failures are translated
once, here, into :mod:`workflows.emailbison.errors`, which are orchestrator
``PermanentError``/``RetryableError`` types::

    async with EmailBisonClient("https://dedi.emailbison.com", api_key) as bison:
        await bison.ensure_custom_variables(["renewal date", "home value"])
        stored = await bison.upsert_leads(leads)            # <= 500 per call
        [evergreen] = [c for c in await bison.find_campaigns("Evergreen") if ...]
        await bison.attach_leads(evergreen.id, [lead.id for lead in stored])
        await bison.rename_campaign(evergreen.id, "Evergreen, Last Upload: March 1-7")

Retry policy. EmailBison has no idempotency header, so the client retries inside a call only
what is certainly safe: a 429 (the request was not processed), up to ``retries_on_429`` times,
sleeping for ``Retry-After`` (or 1 s, 2 s, 4 s, ... without one). A ``Retry-After`` longer
than ``max_retry_sleep`` is not slept through: the call raises
:class:`EmailBisonRetryableError` with ``retry_after`` set, and the job is retried later by the
orchestrator. Everything else retryable (5xx, timeouts, broken bodies) is raised at once; the
job's retry is safe because uploads are upserts keyed by email and attaching twice is a no-op.

The API key lives only in the ``Authorization`` header; it is never part of a message, a log
line or ``repr()``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from workflows._http import (
    EventHooks,
    Pacer,
    RateLimiter,
    backoff_delay,
    excerpt,
    is_retryable_status,
    parse_retry_after,
    send_gate,
)
from workflows.emailbison.errors import (
    EmailBisonAuthError,
    EmailBisonNotFound,
    EmailBisonPermanentError,
    EmailBisonRetryableError,
    EmailBisonValidationError,
    LeadValidationError,
)
from workflows.emailbison.models import Campaign, LeadIn, LeadOut

__all__ = ["MAX_IDS_PER_ATTACH", "MAX_LEADS_PER_REQUEST", "EmailBisonClient"]

logger = logging.getLogger("workflows.emailbison")

#: EmailBison's documented limit for ``/api/leads/create-or-update/multiple``.
MAX_LEADS_PER_REQUEST = 500
#: Lead ids sent per ``attach-leads`` call (not documented; kept at the upload limit).
MAX_IDS_PER_ATTACH = 500
_T = TypeVar("_T")
_M = TypeVar("_M", LeadOut, Campaign)

#: Guard against a server whose pagination never ends.
_MAX_PAGES = 10_000


class EmailBisonClient:
    """An EmailBison workspace, reached with its ``api-user`` key.

    ``rate_limit`` paces every request of this client: a workflow passes the instance's
    shared limit (``ctx.rate_limit``, see :mod:`workflows.limits`), so every worker and every
    client on the instance share one rate, and a 429's ``Retry-After`` holds them all back.
    ``max_requests_per_second`` is a limit of this client alone, for use outside a workflow
    (no published limit exists; one third-party client assumes ~50/s). ``event_hooks`` go to
    httpx (a workflow passes ``ctx.http_hooks``: no request leaves once its attempt is
    fenced). ``transport`` is for tests.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        max_requests_per_second: float | None = None,
        retries_on_429: int = 3,
        max_retry_sleep: float = 30.0,
        event_hooks: EventHooks | None = None,
        rate_limit: Pacer | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if retries_on_429 < 0:
            raise ValueError("retries_on_429 must be >= 0")
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._retries_on_429 = retries_on_429
        self._max_retry_sleep = max_retry_sleep
        self._limiter: Pacer | None = rate_limit
        if rate_limit is None and max_requests_per_second is not None:
            self._limiter = RateLimiter(max_requests_per_second)
        self._http = httpx.AsyncClient(
            base_url=self._base_url,
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
            timeout=httpx.Timeout(timeout),
            transport=transport,
            follow_redirects=False,
            event_hooks=event_hooks,
        )

    def __repr__(self) -> str:
        return f"EmailBisonClient(base_url={self._base_url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool; the client cannot be used afterwards."""
        await self._http.aclose()

    # -- custom variables ---------------------------------------------------------------

    async def list_custom_variables(self) -> list[str]:
        """Names of the workspace's custom variables."""
        names: list[str] = []
        async for items in self._pages("/api/custom-variables", {}):
            names.extend(_field(item, "name", str, "/api/custom-variables") for item in items)
        return names

    async def create_custom_variable(self, name: str) -> None:
        """Create a custom variable; one that already exists counts as created.

        The "already exists" case is recognised by listing the variables after a 422, not by
        the wording of the message.
        """
        try:
            await self._request("POST", "/api/custom-variables", json={"name": name})
        except EmailBisonValidationError:
            wanted = name.casefold()
            if any(n.casefold() == wanted for n in await self.list_custom_variables()):
                return
            raise

    async def ensure_custom_variables(self, names: Iterable[str]) -> None:
        """Create whichever of ``names`` the workspace lacks (one list call, then creates)."""
        existing = {n.casefold() for n in await self.list_custom_variables()}
        for name in dict.fromkeys(names):
            if name.casefold() not in existing:
                await self.create_custom_variable(name)
                existing.add(name.casefold())

    # -- leads --------------------------------------------------------------------------

    async def upsert_leads(self, leads: Sequence[LeadIn | Mapping[str, Any]]) -> list[LeadOut]:
        """Create or update up to 500 leads, keyed by email (``existing_lead_behavior=patch``).

        A lead is a :class:`LeadIn`, or the JSON object :meth:`LeadIn.to_payload` would give
        for it, built by the caller from values it already trusts (PT4 sends 20 x 500 leads a
        second from database columns: building and dumping a model per lead and per custom
        variable took more CPU than the rest of a request).

        Returns the stored leads in EmailBison's order; match them to the input by email. A 422
        raises :class:`LeadValidationError` (nothing written) whose ``invalid_indices`` name
        the offending positions in ``leads``.
        """
        if len(leads) > MAX_LEADS_PER_REQUEST:
            raise ValueError(
                f"at most {MAX_LEADS_PER_REQUEST} leads per request, got {len(leads)}; "
                "split the batch"
            )
        if not leads:
            return []
        path = "/api/leads/create-or-update/multiple"
        body = await self._request(
            "POST",
            path,
            json={
                "leads": [
                    lead.to_payload() if isinstance(lead, LeadIn) else lead for lead in leads
                ],
                "existing_lead_behavior": "patch",
            },
            validation_error=LeadValidationError,
            answer=_Upserted,
        )
        if isinstance(body, _Upserted):
            return list(body.data)
        return [_model(LeadOut, item, path) for item in _data_list(body, path)]

    # -- campaigns ----------------------------------------------------------------------

    async def find_campaigns(self, search: str, *, status: str | None = None) -> list[Campaign]:
        """Every campaign whose name matches ``search``, across all pages.

        EmailBison's search is a loose match: filter the result by exact name yourself.
        """
        params: dict[str, str] = {"search": search}
        if status is not None:
            params["status"] = status
        found: list[Campaign] = []
        async for items in self._pages("/api/campaigns", params):
            found.extend(_model(Campaign, item, "/api/campaigns") for item in items)
        return found

    async def get_campaign(self, campaign_id: int) -> Campaign:
        """One campaign; :class:`EmailBisonNotFound` if this workspace has no such id."""
        path = f"/api/campaigns/{int(campaign_id)}"
        body = await self._request("GET", path)
        return _model(Campaign, _data(body), path)

    async def attach_leads(self, campaign_id: int, lead_ids: Sequence[int]) -> None:
        """Attach leads to a campaign, in calls of at most 500 ids (duplicates dropped).

        Attaching an already attached lead is harmless, so a failed call can be repeated
        whole. Leads take up to five minutes to show up in an active campaign.
        """
        ids = list(dict.fromkeys(int(i) for i in lead_ids))
        path = f"/api/campaigns/{int(campaign_id)}/leads/attach-leads"
        for start in range(0, len(ids), MAX_IDS_PER_ATTACH):
            chunk = ids[start : start + MAX_IDS_PER_ATTACH]
            await self._request("POST", path, json={"lead_ids": chunk})

    async def rename_campaign(self, campaign_id: int, name: str) -> None:
        """Rename a campaign (``PATCH /api/campaigns/{id}/update``)."""
        if not name.strip():
            raise ValueError("campaign name must not be blank")
        path = f"/api/campaigns/{int(campaign_id)}/update"
        await self._request("PATCH", path, json={"name": name})

    # -- transport ----------------------------------------------------------------------

    async def _pages(self, path: str, params: Mapping[str, str]) -> AsyncIterator[list[Any]]:
        """Yield the ``data`` list of each page of a Laravel paginated listing.

        The next page number is read from ``links.next`` (only its ``page`` parameter: the
        request always goes to our own base URL, so the key is never sent elsewhere) or from
        ``meta.current_page``/``meta.last_page``. An unpaginated answer is one page.
        """
        page = 1
        for _ in range(_MAX_PAGES):
            body = await self._request("GET", path, params={**params, "page": str(page)})
            yield _data_list(body, path)
            following = _next_page(body)
            if following is None or following <= page:
                return
            page = following
        raise EmailBisonPermanentError(f"GET {path}: more than {_MAX_PAGES} pages", path=path)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: object = None,
        params: Mapping[str, str] | None = None,
        validation_error: type[EmailBisonValidationError] = EmailBisonValidationError,
        answer: type[BaseModel] | None = None,
    ) -> Any:
        """Send one request (retrying 429s as documented) and return the decoded JSON, or
        the ``answer`` model read straight from a successful answer's bytes when it has that
        shape (anything else is decoded as usual, to fail with the error it deserves)."""
        attempt = 0
        # Built (the body serialised) before the rate limit's grant, not after: 500 leads take
        # milliseconds to encode, which would otherwise stand between the grant and the send.
        # orjson, not httpx's json.dumps: a 500-lead body took 8.5 ms to encode and its answer
        # 5.7 ms to decode with the standard library (0.6 and 3.1 ms with orjson), a third of
        # a PT4 worker's CPU at 20 uploads a second.
        if json is None:
            request = self._http.build_request(method, path, params=params)
        else:
            request = self._http.build_request(
                method, path, content=orjson.dumps(json), headers=_JSON_BODY, params=params
            )
        while True:
            if self._limiter is not None:
                await self._limiter.acquire()
                request.extensions.update(send_gate(self._limiter))
            try:
                response = await self._http.send(request)
            except httpx.TimeoutException as exc:
                raise EmailBisonRetryableError(
                    f"{method} {path}: no answer in time ({type(exc).__name__})",
                    method=method,
                    path=path,
                ) from exc
            except httpx.TransportError as exc:
                raise EmailBisonRetryableError(
                    f"{method} {path}: connection failed ({type(exc).__name__})",
                    method=method,
                    path=path,
                ) from exc
            if response.status_code == 429:
                delay = parse_retry_after(response.headers.get("Retry-After"))
                if delay is None:
                    delay = backoff_delay(attempt, base=1.0, cap=self._max_retry_sleep)
                if self._limiter is not None:
                    # Every request to the instance waits, not only this one (the next
                    # acquire() returns after the block).
                    await self._limiter.throttled(delay)
                if attempt < self._retries_on_429 and delay <= self._max_retry_sleep:
                    attempt += 1
                    logger.info(
                        "EmailBison %s %s: rate limited, retry %d/%d in %.2fs",
                        method,
                        path,
                        attempt,
                        self._retries_on_429,
                        delay,
                    )
                    if self._limiter is None:
                        await asyncio.sleep(delay)
                    continue
            return self._decode(method, path, response, validation_error, answer)

    def _decode(
        self,
        method: str,
        path: str,
        response: httpx.Response,
        validation_error: type[EmailBisonValidationError],
        answer: type[BaseModel] | None = None,
    ) -> Any:
        status = response.status_code
        where = f"{method} {path}"
        if 200 <= status < 300:
            if status == 204:
                return None
            if answer is not None:
                try:
                    return answer.model_validate_json(response.content)
                except ValidationError:
                    pass  # another shape: decoded below, and refused with the reason
            try:
                body = orjson.loads(response.content)
            except ValueError:
                quoted = excerpt(response.text, [self._api_key])
                raise EmailBisonRetryableError(
                    f"{where}: HTTP {status} with a body that is not JSON: {quoted!r}",
                    status_code=status,
                    method=method,
                    path=path,
                ) from None
            data = body.get("data") if isinstance(body, dict) else None
            if isinstance(data, dict) and data.get("success") is False:
                reason = excerpt(str(data.get("message", "")), [self._api_key])
                raise EmailBisonPermanentError(
                    f"{where}: EmailBison reported failure: {reason!r}",
                    status_code=status,
                    method=method,
                    path=path,
                )
            return body
        # Quoted only on failure: a 500-lead answer is ~200 kB to scan for nothing.
        quoted = excerpt(response.text, [self._api_key])
        message = f"{where}: HTTP {status}: {quoted!r}"
        context: dict[str, Any] = {"status_code": status, "method": method, "path": path}
        if is_retryable_status(status):
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise EmailBisonRetryableError(message, retry_after=retry_after, **context)
        if status in (401, 403):
            raise EmailBisonAuthError(message, **context)
        if status == 404:
            raise EmailBisonNotFound(message, **context)
        if status == 422:
            raise validation_error(
                message, errors=_laravel_errors(response, self._api_key), **context
            )
        raise EmailBisonPermanentError(message, **context)


_JSON_BODY = {"Content-Type": "application/json"}


class _Upserted(BaseModel):
    """An upsert's usual answer, ``{"data": [lead, ...]}``, validated from its bytes in one
    pass that keeps each lead's ``id`` and ``email`` only: a 500-lead answer (~330 kB) took
    6.3 ms to decode and validate lead by lead, 2.6 ms this way."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    data: list[LeadOut]


def _laravel_errors(response: httpx.Response, secret: str) -> dict[str, list[str]]:
    """The ``errors`` map of a Laravel 422 body (``secret`` redacted); empty if malformed."""
    try:
        body = orjson.loads(response.content)
    except ValueError:
        return {}
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, dict):
        return {}
    result: dict[str, list[str]] = {}
    for key, messages in errors.items():
        items = messages if isinstance(messages, list) else [messages]
        result[str(key)] = [str(m).replace(secret, "***") for m in items]
    return result


def _next_page(body: Any) -> int | None:
    if not isinstance(body, dict):
        return None
    links = body.get("links")
    if isinstance(links, dict) and isinstance(links.get("next"), str):
        try:
            return int(httpx.URL(links["next"]).params["page"])
        except (KeyError, ValueError, httpx.InvalidURL):
            pass
    meta = body.get("meta")
    if isinstance(meta, dict):
        current, last = meta.get("current_page"), meta.get("last_page")
        if isinstance(current, int) and isinstance(last, int) and current < last:
            return current + 1
    return None


def _data(body: Any) -> Any:
    return body["data"] if isinstance(body, dict) and "data" in body else body


def _unexpected(path: str, detail: str) -> EmailBisonPermanentError:
    return EmailBisonPermanentError(f"{path}: unexpected response shape: {detail}", path=path)


def _data_list(body: Any, path: str) -> list[Any]:
    data = _data(body)
    if not isinstance(data, list):
        raise _unexpected(path, f"expected a list under 'data', got {type(data).__name__}")
    return data


def _field(item: Any, name: str, kind: type[_T], path: str) -> _T:
    value = item.get(name) if isinstance(item, dict) else None
    if not isinstance(value, kind):
        raise _unexpected(path, f"item without a {kind.__name__} {name!r}")
    return value


def _model(model: type[_M], item: Any, path: str) -> _M:
    try:
        return model.model_validate(item)
    except ValidationError as exc:
        raise _unexpected(
            path, f"{exc.error_count()} invalid field(s) for {model.__name__}"
        ) from None
