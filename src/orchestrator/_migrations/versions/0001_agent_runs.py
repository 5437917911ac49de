"""agent_runs: one row per attempt of a workflow job.

Rows are never deleted with their job: procrastinate's jobs are pruned after the retention
period, the run history stays. ``job_id`` therefore has no foreign key.

Revision ID: 0001_agent_runs
Revises: pc_03_04_00_50
"""

from alembic import op

revision = "0001_agent_runs"
down_revision = "pc_03_04_00_50"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TYPE agent_run_status AS ENUM
            ('running', 'succeeded', 'failed', 'retrying', 'abandoned', 'cancelled');

        CREATE TABLE agent_runs (
            id          bigserial PRIMARY KEY,
            job_id      bigint NOT NULL,
            workflow    text NOT NULL,
            attempt     integer NOT NULL CHECK (attempt >= 1),
            status      agent_run_status NOT NULL DEFAULT 'running',
            input       jsonb NOT NULL DEFAULT '{}'::jsonb,
            output      jsonb,
            error       jsonb,
            started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
            finished_at timestamptz,
            worker      text,
            queue       text,
            CHECK ((status = 'running') = (finished_at IS NULL))
        );

        COMMENT ON TABLE agent_runs IS
            'One row per attempt of a workflow job (orchestrator). Kept when jobs are pruned.';
        COMMENT ON COLUMN agent_runs.error IS
            '{"type", "message", "traceback"} of a failed attempt';

        -- A job succeeds at most once: a re-run after a crash finds this row and stops.
        CREATE UNIQUE INDEX agent_runs_one_success_per_job
            ON agent_runs (job_id) WHERE status = 'succeeded';
        CREATE INDEX agent_runs_job_attempt ON agent_runs (job_id, attempt);
        CREATE INDEX agent_runs_running ON agent_runs (job_id) WHERE status = 'running';
        CREATE INDEX agent_runs_workflow_started ON agent_runs (workflow, started_at DESC);
        CREATE INDEX agent_runs_status_started ON agent_runs (status, started_at DESC);
        CREATE INDEX agent_runs_started ON agent_runs (started_at DESC);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE agent_runs; DROP TYPE agent_run_status;")
