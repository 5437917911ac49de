"""The ledger of non-idempotent external calls: an intent before the call, an outcome after.

Exactly-once ends at the database's edge. For a call that is not safe to repeat (an upload,
an attach, a rename, rows pushed to a webhook) a workflow records its *intent* — committed on
its own, while the attempt holds its lease — before making the call, and its *outcome*
(``done`` or ``failed``) once the answer is in. An intent whose attempt ended without an
outcome is *in doubt*: the call may or may not have happened. The next attempt finds it
(:meth:`CallLedger.calls`), learns what happened (reads the remote state, or repeats the call
as an upsert once) and *resolves* it, recording what it found. ``orchestrator job ID`` lists
the calls still in doubt. Example::

    async with ctx.external_call("emailbison.attach", f"campaign:{cid}", {"ids": n}) as call:
        await api.attach_leads(cid, ids)
        call.outcome = {"attached": n}

Leaving the block normally records ``done`` with :attr:`CallHandle.outcome`; an exception
leaves the intent in doubt, unless the request never left (the lease check or a stop request
refused it) or ``refused(exc)`` says the answer proves nothing was done: then ``failed``.

Calls may run concurrently (several asyncio tasks, each in its own ``external_call`` block):
the ledger writes on pool connections of its own, never on the workflow's transaction, and
"a request is leaving" marks only the calls open in the sending task (a context variable,
inherited by the tasks a block starts), so one task's request does not put another task's
unsent call in doubt.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from orchestrator._lease import Lease
from orchestrator._queries import QUERIES

Pool = AsyncConnectionPool[psycopg.AsyncConnection[DictRow]]

logger = logging.getLogger("orchestrator.external_calls")

CALL_STATES = ("intent", "done", "failed")

#: The calls open in the running task (and the tasks it started): a request made there may
#: be any of them.
_open_here: contextvars.ContextVar[tuple[CallHandle, ...]] = contextvars.ContextVar(
    "orchestrator_open_calls", default=()
)


@dataclass(frozen=True)
class ExternalCall:
    """One recorded external call of a job."""

    id: int
    job_id: int
    run_id: int
    kind: str
    key: str
    state: str
    request: dict[str, Any]
    outcome: dict[str, Any] | None
    created_at: datetime.datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ExternalCall:
        return cls(
            id=int(row["id"]),
            job_id=int(row["job_id"]),
            run_id=int(row["run_id"]),
            kind=str(row["kind"]),
            key=str(row["key"]),
            state=str(row["state"]),
            request=dict(row["request"] or {}),
            outcome=None if row["outcome"] is None else dict(row["outcome"]),
            created_at=row["created_at"],
        )

    @property
    def is_intent(self) -> bool:
        return self.state == "intent"


@dataclass
class CallHandle:
    """An external call in progress (see :meth:`CallLedger.call`)."""

    call: ExternalCall
    outcome: dict[str, Any] = field(default_factory=dict)
    #: A request passed the lease check while the call was open (it may have been received).
    sent: bool = False
    _failed: bool = False

    def failed(self, outcome: Mapping[str, Any] | None = None) -> None:
        """Record the call as ``failed`` (the answer proves nothing was done) on leaving."""
        self._failed = True
        if outcome is not None:
            self.outcome = dict(outcome)


class CallLedger:
    """The external calls of one attempt (and the earlier attempts of its job)."""

    def __init__(self, pool: Pool, lease: Lease, *, job_id: int, run_id: int) -> None:
        self.pool = pool
        self.lease = lease
        self.job_id = job_id
        self.run_id = run_id
        self.open: list[CallHandle] = []

    async def intent(
        self, kind: str, key: str, request: Mapping[str, Any] | None = None
    ) -> ExternalCall:
        """Record and commit the intent; :class:`FencedAttempt` if the lease is lost."""
        if self.lease.fenced:
            await self.lease.confirm()  # raises
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                QUERIES["record_intent"],
                {
                    "run_id": self.run_id,
                    "kind": kind,
                    "key": key,
                    "request": Jsonb(dict(request or {})),
                },
            )
            row = await cursor.fetchone()
        if row is None:
            raise self.lease.fence("crash recovery re-queued the job before this call")
        return ExternalCall.from_row(row)

    async def outcome(
        self, call: ExternalCall, outcome: Mapping[str, Any] | None, *, failed: bool = False
    ) -> bool:
        """Record the answer to ``call``; ``False`` if another attempt resolved it first."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                QUERIES["record_outcome"],
                {
                    "id": call.id,
                    "state": "failed" if failed else "done",
                    "outcome": Jsonb(dict(outcome or {})),
                },
            )
            return await cursor.fetchone() is not None

    async def resolve(
        self, call: ExternalCall, outcome: Mapping[str, Any], *, failed: bool = False
    ) -> bool:
        """Resolve an earlier attempt's call in doubt with what this attempt found.

        ``False`` if it was resolved already; :class:`FencedAttempt` if the lease is lost.
        """
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                QUERIES["resolve_call"],
                {
                    "id": call.id,
                    "run_id": self.run_id,
                    "state": "failed" if failed else "done",
                    "outcome": Jsonb(dict(outcome)),
                },
            )
            row = await cursor.fetchone()
        assert row is not None
        if not row["held"]:
            raise self.lease.fence("crash recovery re-queued the job before a resolution")
        logger.info(
            "job %s: %s call %s (%s) from run %s resolved: %s",
            self.job_id,
            call.kind,
            call.id,
            call.key,
            call.run_id,
            dict(outcome),
            extra={"event": "external_call.resolved", "job_id": self.job_id, "call_id": call.id},
        )
        return bool(row["resolved"])

    async def calls(self, kind: str | None = None) -> list[ExternalCall]:
        """The job's recorded calls (every attempt), oldest first."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(QUERIES["job_calls"], {"job_id": self.job_id, "kind": kind})
            return [ExternalCall.from_row(row) for row in await cursor.fetchall()]

    def mark_sent(self) -> None:
        """A request is leaving: every call open in this task may now have happened."""
        for handle in _open_here.get():
            if handle in self.open:
                handle.sent = True

    @asynccontextmanager
    async def call(
        self,
        kind: str,
        key: str,
        request: Mapping[str, Any] | None = None,
        *,
        refused: Callable[[BaseException], bool] | None = None,
    ) -> AsyncIterator[CallHandle]:
        """Intent, then the block (the call), then the outcome (see the module docstring)."""
        handle = CallHandle(await self.intent(kind, key, request))
        self.open.append(handle)
        token = _open_here.set((*_open_here.get(), handle))
        try:
            yield handle
        except BaseException as exc:
            self.open.remove(handle)
            _forget(token)
            not_sent = not handle.sent
            if handle._failed or not_sent or (refused is not None and refused(exc)):
                detail = {**handle.outcome, "error": type(exc).__name__, "message": str(exc)}
                if not_sent:
                    detail["not_sent"] = True
                try:
                    await self.outcome(handle.call, detail, failed=True)
                except (psycopg.Error, PoolTimeout):
                    logger.warning("could not record the failure of call %s", handle.call.id)
            raise
        self.open.remove(handle)
        _forget(token)
        await self.outcome(handle.call, handle.outcome, failed=handle._failed)


def _forget(token: contextvars.Token[tuple[CallHandle, ...]]) -> None:
    # ValueError: left in another context than entered (a generator closed elsewhere).
    with contextlib.suppress(ValueError):
        _open_here.reset(token)
