"""Status views: the answers of ``orchestrator status`` and ``runs``, one SELECT away.

- ``orchestrator_jobs``: every workflow job with its BullMQ-style state
  (waiting, delayed, active, completed, failed, cancelled).
- ``orchestrator_queue_status``: job counts per workflow, plus a ``*`` row with the totals.
- ``orchestrator_runs``: agent_runs with their duration.

Maintenance tasks (``orchestrator.*``) are not workflow jobs and are left out.

Revision ID: 0002_status_views
Revises: 0001_agent_runs
"""

from alembic import op

revision = "0002_status_views"
down_revision = "0001_agent_runs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE VIEW orchestrator_jobs AS
        SELECT j.id AS job_id,
               j.task_name AS workflow,
               j.queue_name AS queue,
               CASE
                   WHEN j.status = 'todo' AND j.scheduled_at > now() THEN 'delayed'
                   WHEN j.status = 'todo' THEN 'waiting'
                   WHEN j.status = 'doing' THEN 'active'
                   WHEN j.status = 'succeeded' THEN 'completed'
                   WHEN j.status = 'failed' THEN 'failed'
                   ELSE 'cancelled'
               END AS state,
               j.status::text AS procrastinate_status,
               j.attempts,
               j.priority,
               j.scheduled_at,
               j.queueing_lock AS dedupe_key,
               j.args -> 'payload' AS payload,
               j.worker_id
          FROM procrastinate_jobs j
         WHERE j.task_name NOT LIKE 'orchestrator.%';

        COMMENT ON VIEW orchestrator_jobs IS
            'Workflow jobs with a BullMQ-style state (waiting ... cancelled)';

        CREATE VIEW orchestrator_queue_status AS
        SELECT COALESCE(workflow, '*') AS workflow,
               count(*) FILTER (WHERE state = 'waiting')   AS waiting,
               count(*) FILTER (WHERE state = 'delayed')   AS delayed,
               count(*) FILTER (WHERE state = 'active')    AS active,
               count(*) FILTER (WHERE state = 'completed') AS completed,
               count(*) FILTER (WHERE state = 'failed')    AS failed,
               count(*) FILTER (WHERE state = 'cancelled') AS cancelled
          FROM orchestrator_jobs
         GROUP BY GROUPING SETS ((workflow), ());

        COMMENT ON VIEW orchestrator_queue_status IS
            'Job counts per workflow (and * for all), like BullMQ getJobCounts()';

        CREATE VIEW orchestrator_runs AS
        SELECT r.id AS run_id, r.job_id, r.workflow, r.attempt, r.status::text AS status,
               r.started_at, r.finished_at,
               EXTRACT(EPOCH FROM (COALESCE(r.finished_at, clock_timestamp()) - r.started_at))
                   AS duration_s,
               r.worker, r.queue,
               r.error ->> 'type' AS error_type,
               r.error ->> 'message' AS error_message,
               r.input, r.output
          FROM agent_runs r;

        COMMENT ON VIEW orchestrator_runs IS 'agent_runs with durations, newest first by run_id';
        """
    )


def downgrade() -> None:
    op.execute(
        "DROP VIEW orchestrator_runs; DROP VIEW orchestrator_queue_status; "
        "DROP VIEW orchestrator_jobs;"
    )
