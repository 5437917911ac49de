"""``orchestrator_runs`` with the traceback, the retry wait and the payload's client and month.

``orchestrator job`` shows every attempt's full error, the wait before the next attempt and
(``--traceback``) the stored traceback; ``orchestrator runs`` shows each run's client and
month. The new columns are appended (``CREATE OR REPLACE VIEW`` keeps the old ones in place):

- ``error_traceback``: the traceback the runner stored for a failed attempt;
- ``retry_in_s``: the wait before the next attempt, decided when this one failed;
- ``client`` and ``month``: the payload keys ``client`` and ``month`` (``upload_date`` when
  there is no month). They are the keys workflow inputs commonly use for "for whom" and
  "for when"; the engine knows no workflow, so a payload without them shows NULLs.

Revision ID: 0008_runs_view
Revises: 0007_console
"""

from alembic import op

revision = "0008_runs_view"
down_revision = "0007_console"
branch_labels = None
depends_on = None

COLUMNS_0007 = """
SELECT r.id AS run_id, r.job_id, r.workflow, r.attempt, r.status::text AS status,
       r.started_at, r.finished_at,
       EXTRACT(EPOCH FROM (COALESCE(r.finished_at, now()) - r.started_at)) AS duration_s,
       r.worker, r.queue,
       r.error ->> 'type' AS error_type,
       r.error ->> 'message' AS error_message,
       r.input, r.output, r.progress"""


def upgrade() -> None:
    op.execute(
        f"""
        CREATE OR REPLACE VIEW orchestrator_runs AS
        {COLUMNS_0007},
               r.error ->> 'traceback' AS error_traceback,
               (r.error ->> 'retry_in_s')::double precision AS retry_in_s,
               -- Common payload keys of workflow inputs ("for whom", "for when"); NULL when
               -- a workflow's input has none.
               r.input ->> 'client' AS client,
               COALESCE(r.input ->> 'month', r.input ->> 'upload_date') AS month
          FROM agent_runs r;
        COMMENT ON VIEW orchestrator_runs IS
            'agent_runs with durations, errors (traceback, retry wait) and the payload''s '
            'client and month, newest first by run_id';
        """
    )


def downgrade() -> None:
    op.execute(
        f"""
        DROP VIEW orchestrator_runs;
        CREATE VIEW orchestrator_runs AS
        {COLUMNS_0007}
          FROM agent_runs r;
        COMMENT ON VIEW orchestrator_runs IS 'agent_runs with durations, newest first by run_id';
        """
    )
