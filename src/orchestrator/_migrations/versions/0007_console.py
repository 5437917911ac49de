"""Operations console: run progress, change notifications, alert de-duplication.

- ``agent_runs.progress``: ``{"done", "total", "note", "at"}`` written by a running workflow
  through ``ctx.progress()`` (on a short autocommit connection of its own, never in the job's
  transaction), shown as a bar by the dashboard and by ``orchestrator runs``.
  The ``orchestrator_runs`` view gains the column.
- ``orchestrator_changed`` notifications: one per transaction that changed ``agent_runs`` or
  a procrastinate job's status (statement-level triggers with a constant payload, which
  PostgreSQL folds into one notification per transaction). The dashboard listens and pushes a
  refresh to open pages, at most once a second. Procrastinate's own insert trigger already
  announces new jobs on ``procrastinate_any_queue_v1``.
- ``orchestrator_alerts``: one row per alert sent (kind + key), so an alert goes out once
  even when several workers sweep at the same time.

Revision ID: 0007_console
Revises: 0006_job_args_limits
"""

from alembic import op

revision = "0007_console"
down_revision = "0006_job_args_limits"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE agent_runs ADD COLUMN progress jsonb;
        COMMENT ON COLUMN agent_runs.progress IS
            '{"done", "total", "note", "at"} reported by the running workflow (ctx.progress)';

        CREATE FUNCTION orchestrator_notify_change() RETURNS trigger
            LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('orchestrator_changed', TG_TABLE_NAME);
            RETURN NULL;
        END;
        $$;

        CREATE TRIGGER orchestrator_runs_changed
            AFTER INSERT OR UPDATE ON agent_runs
            FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_notify_change();
        CREATE TRIGGER orchestrator_jobs_changed
            AFTER UPDATE OF status ON procrastinate_jobs
            FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_notify_change();

        CREATE OR REPLACE VIEW orchestrator_runs AS
        SELECT r.id AS run_id, r.job_id, r.workflow, r.attempt, r.status::text AS status,
               r.started_at, r.finished_at,
               EXTRACT(EPOCH FROM (COALESCE(r.finished_at, now()) - r.started_at)) AS duration_s,
               r.worker, r.queue,
               r.error ->> 'type' AS error_type,
               r.error ->> 'message' AS error_message,
               r.input, r.output, r.progress
          FROM agent_runs r;

        CREATE TABLE orchestrator_alerts (
            id      bigserial PRIMARY KEY,
            kind    text NOT NULL,
            key     text NOT NULL,
            job_id  bigint,
            message text NOT NULL,
            sent_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (kind, key)
        );
        COMMENT ON TABLE orchestrator_alerts IS
            'Alerts already sent (failed jobs, retry storms, stalled workers): one per kind+key';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE orchestrator_alerts;
        DROP VIEW orchestrator_runs;
        CREATE VIEW orchestrator_runs AS
        SELECT r.id AS run_id, r.job_id, r.workflow, r.attempt, r.status::text AS status,
               r.started_at, r.finished_at,
               EXTRACT(EPOCH FROM (COALESCE(r.finished_at, now()) - r.started_at)) AS duration_s,
               r.worker, r.queue,
               r.error ->> 'type' AS error_type,
               r.error ->> 'message' AS error_message,
               r.input, r.output
          FROM agent_runs r;
        COMMENT ON VIEW orchestrator_runs IS 'agent_runs with durations, newest first by run_id';
        DROP TRIGGER orchestrator_jobs_changed ON procrastinate_jobs;
        DROP TRIGGER orchestrator_runs_changed ON agent_runs;
        DROP FUNCTION orchestrator_notify_change();
        ALTER TABLE agent_runs DROP COLUMN progress;
        """
    )
