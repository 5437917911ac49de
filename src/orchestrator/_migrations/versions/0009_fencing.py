"""Leases and the external-call ledger: nothing done twice at the edge.

- ``agent_runs.worker_id``: the procrastinate worker whose heartbeat keeps this attempt's
  lease. An attempt holds its job's lease while its row is ``running``; crash recovery fences
  it by marking the row ``abandoned`` (row-locked, so a step commit of the old attempt either
  happens before the fence or is refused).
- ``agent_runs.steps``: steps the attempt committed (``ctx.commit()``); with the attempt's
  finished external calls, it tells whether an attempt lost with its worker made progress
  (then it does not count toward the abandon limit).
- ``external_calls``: one row per non-idempotent external call, written as an *intent* (and
  committed) before the call is made and given its outcome (``done`` or ``failed``) after the
  answer. An intent whose attempt ended without an outcome is *in doubt*: a later attempt
  resolves it before acting again. Rows stay with ``agent_runs`` when jobs are pruned.

Revision ID: 0009_fencing
Revises: 0008_runs_view
"""

from alembic import op

revision = "0009_fencing"
down_revision = "0008_runs_view"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE agent_runs
            ADD COLUMN worker_id bigint,
            ADD COLUMN steps integer NOT NULL DEFAULT 0;
        COMMENT ON COLUMN agent_runs.worker_id IS
            'procrastinate worker whose heartbeat keeps the attempt''s lease (no FK: workers go)';
        COMMENT ON COLUMN agent_runs.steps IS 'steps the attempt committed (ctx.commit())';

        CREATE TABLE external_calls (
            id          bigserial PRIMARY KEY,
            job_id      bigint NOT NULL,
            run_id      bigint NOT NULL,
            workflow    text NOT NULL,
            kind        text NOT NULL,
            key         text NOT NULL,
            state       text NOT NULL DEFAULT 'intent'
                        CHECK (state IN ('intent', 'done', 'failed')),
            request     jsonb NOT NULL DEFAULT '{}'::jsonb,
            outcome     jsonb,
            created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
            finished_at timestamptz,
            CHECK ((state = 'intent') = (finished_at IS NULL))
        );
        COMMENT ON TABLE external_calls IS
            'Non-idempotent external calls: intent committed before the call, outcome after';
        CREATE INDEX external_calls_job ON external_calls (job_id, kind, id);
        CREATE INDEX external_calls_intents ON external_calls (job_id) WHERE state = 'intent';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE external_calls;
        ALTER TABLE agent_runs DROP COLUMN steps, DROP COLUMN worker_id;
        """
    )
