"""Status answers that stay fast with millions of finished jobs and runs.

Measured by ``python -m bench --only growth``: with 1,000,000 finished jobs and agent_runs
rows, ``orchestrator status`` counted every job on each call and ``orchestrator runs`` read
and sorted the whole run history. Now:

- ``orchestrator_job_counts`` keeps the number of *finished* jobs per task and status
  (succeeded, failed, cancelled, aborted), maintained by triggers on ``procrastinate_jobs``
  in the same transaction as the change. Waiting, delayed and active jobs are still counted
  live, through procrastinate's partial index on ``todo``/``doing`` jobs, so they are exact
  and the hot path (a job being fetched) writes nothing extra; a job finishing adds one
  counter update. Counters are spread over 8 rows per (task, status), picked by backend pid,
  so concurrent workers do not queue on one row lock.
- ``orchestrator_queue_status`` reads those counters plus the live counts (same columns and
  numbers as before).
- ``orchestrator_runs`` computes the duration of a running attempt with ``now()`` instead of
  ``clock_timestamp()``: a volatile function kept the view from being merged into the query,
  so ``ORDER BY run_id DESC LIMIT 20`` scanned and sorted the whole table.
- agent_runs gets indexes in the order ``list_runs`` reads (newest run id first) for each
  filter: by workflow, by status, by both. The ``(workflow, started_at)`` and
  ``(status, started_at)`` indexes, which no query used, are dropped.

Revision ID: 0004_status_at_scale
Revises: 0003_pipeline_tables
"""

from alembic import op

revision = "0004_status_at_scale"
down_revision = "0003_pipeline_tables"
branch_labels = None
depends_on = None

OLD_QUEUE_STATUS_VIEW = """
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
"""

RUNS_VIEW = """
CREATE OR REPLACE VIEW orchestrator_runs AS
SELECT r.id AS run_id, r.job_id, r.workflow, r.attempt, r.status::text AS status,
       r.started_at, r.finished_at,
       EXTRACT(EPOCH FROM (COALESCE(r.finished_at, {clock}) - r.started_at)) AS duration_s,
       r.worker, r.queue,
       r.error ->> 'type' AS error_type,
       r.error ->> 'message' AS error_message,
       r.input, r.output
  FROM agent_runs r;
COMMENT ON VIEW orchestrator_runs IS 'agent_runs with durations, newest first by run_id';
"""


def upgrade() -> None:
    op.execute(
        """
        -- No job may change state between the initial count and the triggers.
        LOCK TABLE procrastinate_jobs IN SHARE ROW EXCLUSIVE MODE;

        CREATE TABLE orchestrator_job_counts (
            task_name text NOT NULL,
            status    procrastinate_job_status NOT NULL,
            shard     smallint NOT NULL,
            n         bigint NOT NULL,
            PRIMARY KEY (task_name, status, shard)
        );
        COMMENT ON TABLE orchestrator_job_counts IS
            'Finished procrastinate jobs per task and status (sum over shard), kept by triggers';

        INSERT INTO orchestrator_job_counts (task_name, status, shard, n)
        SELECT task_name, status, 0, count(*)
          FROM procrastinate_jobs
         WHERE status NOT IN ('todo', 'doing')
         GROUP BY task_name, status;

        -- One finished job more or less (a job finishing, retried by hand, or deleted).
        CREATE FUNCTION orchestrator_count_job_change() RETURNS trigger
            LANGUAGE plpgsql AS $$
        BEGIN
            IF OLD.status NOT IN ('todo', 'doing') THEN
                INSERT INTO orchestrator_job_counts AS c (task_name, status, shard, n)
                VALUES (OLD.task_name, OLD.status, pg_backend_pid() % 8, -1)
                ON CONFLICT (task_name, status, shard) DO UPDATE SET n = c.n - 1;
            END IF;
            IF NEW.status NOT IN ('todo', 'doing') THEN
                INSERT INTO orchestrator_job_counts AS c (task_name, status, shard, n)
                VALUES (NEW.task_name, NEW.status, pg_backend_pid() % 8, 1)
                ON CONFLICT (task_name, status, shard) DO UPDATE SET n = c.n + 1;
            END IF;
            RETURN NULL;
        END;
        $$;

        -- Rows inserted or deleted in bulk (pruning): one counter update per task and status.
        CREATE FUNCTION orchestrator_count_job_rows() RETURNS trigger
            LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                INSERT INTO orchestrator_job_counts AS c (task_name, status, shard, n)
                SELECT task_name, status, pg_backend_pid() % 8, count(*)
                  FROM new_rows WHERE status NOT IN ('todo', 'doing')
                 GROUP BY task_name, status
                ON CONFLICT (task_name, status, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
            ELSE
                INSERT INTO orchestrator_job_counts AS c (task_name, status, shard, n)
                SELECT task_name, status, pg_backend_pid() % 8, -count(*)
                  FROM old_rows WHERE status NOT IN ('todo', 'doing')
                 GROUP BY task_name, status
                ON CONFLICT (task_name, status, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
            END IF;
            RETURN NULL;
        END;
        $$;

        CREATE FUNCTION orchestrator_reset_job_counts() RETURNS trigger
            LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM orchestrator_job_counts;
            RETURN NULL;
        END;
        $$;

        CREATE TRIGGER orchestrator_job_counts_update
            AFTER UPDATE OF status, task_name ON procrastinate_jobs
            FOR EACH ROW
            WHEN ((OLD.status, OLD.task_name) IS DISTINCT FROM (NEW.status, NEW.task_name)
                  AND (OLD.status NOT IN ('todo', 'doing') OR NEW.status NOT IN ('todo', 'doing')))
            EXECUTE FUNCTION orchestrator_count_job_change();
        CREATE TRIGGER orchestrator_job_counts_insert
            AFTER INSERT ON procrastinate_jobs
            REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_count_job_rows();
        CREATE TRIGGER orchestrator_job_counts_delete
            AFTER DELETE ON procrastinate_jobs
            REFERENCING OLD TABLE AS old_rows
            FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_count_job_rows();
        CREATE TRIGGER orchestrator_job_counts_truncate
            AFTER TRUNCATE ON procrastinate_jobs
            FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_reset_job_counts();

        DROP VIEW orchestrator_queue_status;
        CREATE VIEW orchestrator_queue_status AS
        WITH live AS (
            SELECT task_name AS workflow,
                   count(*) FILTER (WHERE status = 'todo'
                                      AND (scheduled_at IS NULL OR scheduled_at <= now()))
                       AS waiting,
                   count(*) FILTER (WHERE status = 'todo' AND scheduled_at > now()) AS delayed,
                   count(*) FILTER (WHERE status = 'doing') AS active
              FROM procrastinate_jobs
             WHERE status IN ('todo', 'doing') AND task_name NOT LIKE 'orchestrator.%'
             GROUP BY task_name
        ), finished AS (
            SELECT task_name AS workflow,
                   sum(n) FILTER (WHERE status = 'succeeded') AS completed,
                   sum(n) FILTER (WHERE status = 'failed') AS failed,
                   sum(n) FILTER (WHERE status NOT IN ('succeeded', 'failed')) AS cancelled
              FROM orchestrator_job_counts
             WHERE task_name NOT LIKE 'orchestrator.%'
             GROUP BY task_name
            HAVING sum(n) <> 0
        ), per_workflow AS (
            SELECT COALESCE(l.workflow, f.workflow) AS workflow,
                   COALESCE(l.waiting, 0) AS waiting,
                   COALESCE(l.delayed, 0) AS delayed,
                   COALESCE(l.active, 0) AS active,
                   COALESCE(f.completed, 0) AS completed,
                   COALESCE(f.failed, 0) AS failed,
                   COALESCE(f.cancelled, 0) AS cancelled
              FROM live l FULL JOIN finished f ON f.workflow = l.workflow
        )
        SELECT COALESCE(workflow, '*') AS workflow,
               COALESCE(sum(waiting), 0)::bigint AS waiting,
               COALESCE(sum(delayed), 0)::bigint AS delayed,
               COALESCE(sum(active), 0)::bigint AS active,
               COALESCE(sum(completed), 0)::bigint AS completed,
               COALESCE(sum(failed), 0)::bigint AS failed,
               COALESCE(sum(cancelled), 0)::bigint AS cancelled
          FROM per_workflow
         GROUP BY GROUPING SETS ((workflow), ());
        COMMENT ON VIEW orchestrator_queue_status IS
            'Job counts per workflow (and * for all), like BullMQ getJobCounts()';

        DROP INDEX agent_runs_workflow_started;
        DROP INDEX agent_runs_status_started;
        CREATE INDEX agent_runs_workflow_id ON agent_runs (workflow, id);
        CREATE INDEX agent_runs_status_id ON agent_runs (status, id);
        CREATE INDEX agent_runs_workflow_status_id ON agent_runs (workflow, status, id);
        """
    )
    op.execute(RUNS_VIEW.format(clock="now()"))


def downgrade() -> None:
    op.execute(RUNS_VIEW.format(clock="clock_timestamp()"))
    op.execute(
        """
        DROP INDEX agent_runs_workflow_status_id;
        DROP INDEX agent_runs_status_id;
        DROP INDEX agent_runs_workflow_id;
        CREATE INDEX agent_runs_workflow_started ON agent_runs (workflow, started_at DESC);
        CREATE INDEX agent_runs_status_started ON agent_runs (status, started_at DESC);

        DROP VIEW orchestrator_queue_status;
        """
        + OLD_QUEUE_STATUS_VIEW
        + """
        COMMENT ON VIEW orchestrator_queue_status IS
            'Job counts per workflow (and * for all), like BullMQ getJobCounts()';
        DROP TRIGGER orchestrator_job_counts_truncate ON procrastinate_jobs;
        DROP TRIGGER orchestrator_job_counts_delete ON procrastinate_jobs;
        DROP TRIGGER orchestrator_job_counts_insert ON procrastinate_jobs;
        DROP TRIGGER orchestrator_job_counts_update ON procrastinate_jobs;
        DROP FUNCTION orchestrator_reset_job_counts();
        DROP FUNCTION orchestrator_count_job_rows();
        DROP FUNCTION orchestrator_count_job_change();
        DROP TABLE orchestrator_job_counts;
        """
    )
