"""Console pages and ``/metrics`` that cost the same at a million jobs and runs.

Measured by ``python -m bench --only dashboard`` with 1,000,000 finished jobs and runs:

- ``/metrics`` read all of ``agent_runs`` at every scrape (~1.7 s at a million). Now
  ``orchestrator_run_counts`` keeps, per workflow, outcome and duration bucket, the number of
  *finished* attempts, how many were first attempts, and their total duration, maintained by
  triggers on ``agent_runs`` in the same transaction as the change. Running attempts are not
  counted there (they are few, and read live through the ``agent_runs_running`` index), so
  starting an attempt writes nothing extra; finishing one adds one counter upsert. Counters
  are spread over 16 rows per key, picked by backend pid, so worker processes finishing jobs
  at the same time do not queue on one row lock (the same scheme as ``orchestrator_job_counts``).
  Any later change of a finished row (an abandoned attempt turned ``failed`` by the abandon
  limit) moves its count from the old key to the new one.
- ``orchestrator_run_duration_bucket(started, finished)`` is the histogram's bucket rule, in
  one place: ``width_bucket`` over the bounds ``orchestrator._dashboard.metrics`` reports
  (a unit test checks the two agree).
- The jobs page's dedupe-key filter had only procrastinate's index on *waiting* jobs' locks;
  ``orchestrator_jobs_dedupe_key`` indexes every job's key (newest first), so the filter
  finds a finished job's key at once.

The trigger functions are ``SECURITY DEFINER`` with a pinned ``search_path`` (as in 0006): a
worker role writes ``agent_runs`` and never needs write access to the counters.

Revision ID: 0011_console_at_scale
Revises: 0010_fencing_pipeline
"""

from alembic import op

revision = "0011_console_at_scale"
down_revision = "0010_fencing_pipeline"
branch_labels = None
depends_on = None

COUNTER_FUNCTIONS = (
    "orchestrator_count_run_change()",
    "orchestrator_count_run_rows()",
    "orchestrator_reset_run_counts()",
)


def upgrade() -> None:
    op.execute(
        """
        -- No attempt may be recorded or finish between the initial count and the triggers.
        LOCK TABLE agent_runs IN SHARE ROW EXCLUSIVE MODE;

        CREATE FUNCTION orchestrator_run_duration_bucket(started timestamptz,
                                                         finished timestamptz)
            RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE
            -- the bounds of orchestrator._dashboard.metrics.DURATION_BUCKETS (a test checks)
            RETURN width_bucket(EXTRACT(EPOCH FROM finished - started)::float8,
                                ARRAY[0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600]::float8[]);
        COMMENT ON FUNCTION orchestrator_run_duration_bucket(timestamptz, timestamptz) IS
            'Histogram bucket of an attempt''s duration: width_bucket over the /metrics bounds';

        CREATE TABLE orchestrator_run_counts (
            workflow       text NOT NULL,
            status         agent_run_status NOT NULL,
            bucket         integer NOT NULL,
            shard          smallint NOT NULL,
            n              bigint NOT NULL,
            first_attempts bigint NOT NULL,
            duration_s     double precision NOT NULL,
            PRIMARY KEY (workflow, status, bucket, shard)
        );
        COMMENT ON TABLE orchestrator_run_counts IS
            'Finished agent_runs per workflow, status and duration bucket (sum over shard), '
            'kept by triggers';

        INSERT INTO orchestrator_run_counts
            (workflow, status, bucket, shard, n, first_attempts, duration_s)
        SELECT workflow, status, orchestrator_run_duration_bucket(started_at, finished_at), 0,
               count(*), count(*) FILTER (WHERE attempt = 1),
               COALESCE(sum(EXTRACT(EPOCH FROM finished_at - started_at)), 0)
          FROM agent_runs
         WHERE status <> 'running'
         GROUP BY 1, 2, 3;

        -- One row changed: its old key loses it (if it was counted), its new key gains it.
        CREATE FUNCTION orchestrator_count_run_change() RETURNS trigger
            LANGUAGE plpgsql AS $$
        BEGIN
            IF OLD.status <> 'running' THEN
                INSERT INTO orchestrator_run_counts AS c
                    (workflow, status, bucket, shard, n, first_attempts, duration_s)
                VALUES (OLD.workflow, OLD.status,
                        orchestrator_run_duration_bucket(OLD.started_at, OLD.finished_at),
                        pg_backend_pid() % 16, -1, -(OLD.attempt = 1)::int,
                        -EXTRACT(EPOCH FROM OLD.finished_at - OLD.started_at))
                ON CONFLICT (workflow, status, bucket, shard) DO UPDATE
                   SET n = c.n + EXCLUDED.n, first_attempts = c.first_attempts
                       + EXCLUDED.first_attempts, duration_s = c.duration_s + EXCLUDED.duration_s;
            END IF;
            IF NEW.status <> 'running' THEN
                INSERT INTO orchestrator_run_counts AS c
                    (workflow, status, bucket, shard, n, first_attempts, duration_s)
                VALUES (NEW.workflow, NEW.status,
                        orchestrator_run_duration_bucket(NEW.started_at, NEW.finished_at),
                        pg_backend_pid() % 16, 1, (NEW.attempt = 1)::int,
                        EXTRACT(EPOCH FROM NEW.finished_at - NEW.started_at))
                ON CONFLICT (workflow, status, bucket, shard) DO UPDATE
                   SET n = c.n + EXCLUDED.n, first_attempts = c.first_attempts
                       + EXCLUDED.first_attempts, duration_s = c.duration_s + EXCLUDED.duration_s;
            END IF;
            RETURN NULL;
        END;
        $$;

        -- Rows deleted by one statement (a clean-up): one upsert per key.
        CREATE FUNCTION orchestrator_count_run_rows() RETURNS trigger
            LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO orchestrator_run_counts AS c
                (workflow, status, bucket, shard, n, first_attempts, duration_s)
            SELECT workflow, status,
                   orchestrator_run_duration_bucket(started_at, finished_at),
                   pg_backend_pid() % 16, -count(*), -count(*) FILTER (WHERE attempt = 1),
                   -COALESCE(sum(EXTRACT(EPOCH FROM finished_at - started_at)), 0)
              FROM old_rows WHERE status <> 'running'
             GROUP BY 1, 2, 3
            ON CONFLICT (workflow, status, bucket, shard) DO UPDATE
               SET n = c.n + EXCLUDED.n, first_attempts = c.first_attempts
                   + EXCLUDED.first_attempts, duration_s = c.duration_s + EXCLUDED.duration_s;
            RETURN NULL;
        END;
        $$;

        CREATE FUNCTION orchestrator_reset_run_counts() RETURNS trigger
            LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM orchestrator_run_counts;
            RETURN NULL;
        END;
        $$;

        CREATE TRIGGER orchestrator_run_counts_update
            AFTER UPDATE OF status, workflow, attempt, started_at, finished_at ON agent_runs
            FOR EACH ROW
            WHEN ((OLD.status, OLD.workflow, OLD.attempt, OLD.started_at, OLD.finished_at)
                  IS DISTINCT FROM
                  (NEW.status, NEW.workflow, NEW.attempt, NEW.started_at, NEW.finished_at)
                  AND (OLD.status <> 'running' OR NEW.status <> 'running'))
            EXECUTE FUNCTION orchestrator_count_run_change();
        -- A row trigger with a WHEN clause, not a statement trigger: an attempt is recorded
        -- 'running' (counted by nobody), so the insert every job makes fires nothing at all.
        -- (A statement trigger with a transition table cost ~65 us of server time per job
        -- for an empty table.) Bulk inserts of finished rows pay one upsert a row.
        CREATE TRIGGER orchestrator_run_counts_insert
            AFTER INSERT ON agent_runs
            FOR EACH ROW WHEN (NEW.status <> 'running')
            EXECUTE FUNCTION orchestrator_count_run_change();
        CREATE TRIGGER orchestrator_run_counts_delete
            AFTER DELETE ON agent_runs
            REFERENCING OLD TABLE AS old_rows
            FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_count_run_rows();
        CREATE TRIGGER orchestrator_run_counts_truncate
            AFTER TRUNCATE ON agent_runs
            FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_reset_run_counts();

        CREATE INDEX orchestrator_jobs_dedupe_key ON procrastinate_jobs (queueing_lock, id DESC)
         WHERE queueing_lock IS NOT NULL;
        """
    )
    for function in COUNTER_FUNCTIONS:
        op.execute(f"ALTER FUNCTION {function} SECURITY DEFINER SET search_path = public, pg_temp")


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX orchestrator_jobs_dedupe_key;
        DROP TRIGGER orchestrator_run_counts_truncate ON agent_runs;
        DROP TRIGGER orchestrator_run_counts_delete ON agent_runs;
        DROP TRIGGER orchestrator_run_counts_insert ON agent_runs;
        DROP TRIGGER orchestrator_run_counts_update ON agent_runs;
        DROP FUNCTION orchestrator_reset_run_counts();
        DROP FUNCTION orchestrator_count_run_rows();
        DROP FUNCTION orchestrator_count_run_change();
        DROP TABLE orchestrator_run_counts;
        DROP FUNCTION orchestrator_run_duration_bucket(timestamptz, timestamptz);
        """
    )
