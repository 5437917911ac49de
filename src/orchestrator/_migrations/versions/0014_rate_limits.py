"""Shared rate limits: one row per provider instance, a token bucket every worker draws from.

``orchestrator_rate_limits`` holds, per key (``emailbison:https://bison.example``,
``debounce``), the configured ``rate`` (grants a second) and ``burst``, and the bucket's state
as a *theoretical arrival time* (``tat``, the GCRA form of a token bucket: the bucket is full
when ``tat <= now``; every grant pushes ``tat`` one interval further). A grant is one
``INSERT ... ON CONFLICT DO UPDATE`` on this row: it *reserves* the next free slots, so
waiters are served in the order they asked, whichever process or host they run in.
``blocked_until`` is set from a provider's ``Retry-After`` and holds back every grant of the
key until then. ``minute``/``minute_grants``/``last_minute_grants`` count grants per clock
minute for ``orchestrator status`` at no extra cost; ``throttled`` counts the 429s reported.

The view ``orchestrator_rate_limit_status`` shows each bucket as an operator reads it
(tokens now, seconds until the next free slot, blocked until).

Safe to apply again over itself (``IF NOT EXISTS``, ``OR REPLACE``): a database stamped one
revision behind is migrated, not broken.

Revision ID: 0014_rate_limits
Revises: 0013_ingest_functions
"""

from alembic import op

revision = "0014_rate_limits"
down_revision = "0013_ingest_functions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS orchestrator_rate_limits (
            key                text PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 300),
            rate               double precision NOT NULL CHECK (rate > 0),
            burst              double precision NOT NULL CHECK (burst >= 1),
            tat                timestamptz NOT NULL,
            blocked_until      timestamptz,
            updated_at         timestamptz NOT NULL,
            granted            bigint NOT NULL DEFAULT 0,
            throttled          bigint NOT NULL DEFAULT 0,
            minute             timestamptz NOT NULL,
            minute_grants      bigint NOT NULL DEFAULT 0,
            last_minute_grants bigint NOT NULL DEFAULT 0
        );
        COMMENT ON TABLE orchestrator_rate_limits IS
            'Shared rate limits (token buckets as GCRA) for providers used by every worker';
        COMMENT ON COLUMN orchestrator_rate_limits.tat IS
            'theoretical arrival time: the bucket is full when tat <= now';
        COMMENT ON COLUMN orchestrator_rate_limits.blocked_until IS
            'no grant before this time (a provider answered 429 with Retry-After)';

        CREATE OR REPLACE VIEW orchestrator_rate_limit_status AS
        SELECT key, rate, burst,
               least(burst, greatest(0.0,
                   burst - extract(epoch FROM greatest(tat, now()) - now()) * rate))
                   ::double precision AS tokens,
               greatest(0.0, extract(epoch FROM
                   greatest(tat - make_interval(secs => (burst - 1) / rate),
                            coalesce(blocked_until, now()), now()) - now()))::double precision
                   AS next_grant_in_s,
               CASE WHEN blocked_until > now() THEN blocked_until END AS blocked_until,
               CASE WHEN minute = date_trunc('minute', now()) THEN minute_grants ELSE 0 END
                   AS grants_this_minute,
               CASE WHEN minute = date_trunc('minute', now()) THEN last_minute_grants
                    WHEN minute = date_trunc('minute', now()) - interval '1 minute'
                    THEN minute_grants ELSE 0 END AS grants_last_minute,
               granted, throttled, updated_at AS last_grant_at
          FROM orchestrator_rate_limits;
        COMMENT ON VIEW orchestrator_rate_limit_status IS
            'Shared rate limits now: tokens available, wait for the next grant, 429 blocks';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP VIEW orchestrator_rate_limit_status;
        DROP TABLE orchestrator_rate_limits;
        """
    )
