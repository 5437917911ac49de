-- The orchestrator's own SQL, one named block per query (loaded by orchestrator.queries).

-- start_attempt --
-- Record a new attempt as 'running' unless the job already succeeded (a re-run after a crash
-- that happened between our commit and procrastinate's status update). Attempts left
-- 'running' by a dead worker become 'abandoned'.
-- Run on its own (autocommit) and committed without waiting for the WAL flush
-- (synchronous_commit off for this transaction only): a server crash can lose at most this
-- bookkeeping row, never an effect, and the job transaction's synchronous commit flushes it
-- anyway. It saves one disk flush per attempt.
WITH abandoned AS (
    UPDATE agent_runs
       SET status = 'abandoned',
           finished_at = clock_timestamp(),
           error = jsonb_build_object(
               'type', 'WorkerLost',
               'message', 'the attempt stopped without recording an outcome (worker lost)',
               'traceback', NULL)
     WHERE job_id = %(job_id)s AND status = 'running'
    RETURNING id
), done AS (
    SELECT id FROM agent_runs WHERE job_id = %(job_id)s AND status = 'succeeded'
), inserted AS (
    INSERT INTO agent_runs (job_id, workflow, attempt, input, worker, queue)
    SELECT %(job_id)s, %(workflow)s, %(attempt)s, %(input)s, %(worker)s, %(queue)s
     WHERE NOT EXISTS (SELECT 1 FROM done)
    RETURNING id
)
SELECT (SELECT id FROM inserted) AS run_id,
       (SELECT id FROM done) AS succeeded_run_id,
       -- failures in the current retry budget: a 'failed' row closes a budget (a manual
       -- retry afterwards starts a fresh one)
       (SELECT count(*) FROM agent_runs r
         WHERE r.job_id = %(job_id)s AND r.status = 'retrying'
           -- an attempt cut short by a worker shutdown is not the job's failure
           AND COALESCE(r.error ->> 'type', '') <> 'ShutdownAbort'
           AND r.id > COALESCE((SELECT max(f.id) FROM agent_runs f
                                 WHERE f.job_id = %(job_id)s AND f.status = 'failed'), 0))
           AS failures,
       (SELECT count(*) FROM abandoned) AS abandoned,
       set_config('synchronous_commit', 'off', true) AS commit_mode;

-- finish_success --
-- Runs inside the workflow's own transaction: the record and the effects commit together.
-- An attempt marked 'abandoned' by crash recovery may still finish: its success counts once.
UPDATE agent_runs
   SET status = 'succeeded', output = %(output)s, finished_at = clock_timestamp(), error = NULL
 WHERE id = %(run_id)s AND status IN ('running', 'abandoned')
RETURNING id;

-- finish_failure --
UPDATE agent_runs
   SET status = %(status)s, error = %(error)s, finished_at = clock_timestamp()
 WHERE id = %(run_id)s AND status IN ('running', 'abandoned');

-- abandon_runs_of_job --
UPDATE agent_runs
   SET status = 'abandoned',
       finished_at = clock_timestamp(),
       error = jsonb_build_object(
           'type', 'WorkerLost',
           'message', %(message)s::text,  -- jsonb_build_object cannot infer the type
           'traceback', NULL)
 WHERE job_id = %(job_id)s AND status = 'running';

-- job_has_success --
SELECT EXISTS (SELECT 1 FROM agent_runs WHERE job_id = %(job_id)s AND status = 'succeeded')
    AS succeeded;

-- stalled_jobs --
-- Jobs in 'doing' whose worker is gone (pruned) or silent for longer than the threshold.
SELECT j.id, j.task_name, j.attempts, j.worker_id
  FROM procrastinate_jobs j
  LEFT JOIN procrastinate_workers w ON w.id = j.worker_id
 WHERE j.status = 'doing'
   AND (w.id IS NULL
        OR w.last_heartbeat < now() - make_interval(secs => %(stalled_after)s));

-- doing_jobs_with_recorded_outcome --
-- Jobs still 'doing' although their latest attempt recorded an outcome a while ago: the
-- final status update failed. The recorded outcome says what procrastinate should have done.
SELECT j.id, j.task_name, r.status::text AS run_status, r.finished_at, r.error
  FROM procrastinate_jobs j
  JOIN LATERAL (
        SELECT status, finished_at, error
          FROM agent_runs
         WHERE job_id = j.id
         ORDER BY (status = 'succeeded') DESC, id DESC
         LIMIT 1) r ON TRUE
 WHERE j.status = 'doing'
   AND r.status IN ('succeeded', 'failed', 'retrying', 'cancelled')
   AND r.finished_at < now() - make_interval(secs => %(reconcile_after)s)
   -- not fetched again since: a next attempt that has not written its 'running' row yet
   AND NOT EXISTS (
        SELECT 1 FROM procrastinate_events e
         WHERE e.job_id = j.id AND e.type = 'started' AND e.at > r.finished_at);

-- abandoned_count_of_job --
SELECT count(*) AS n FROM agent_runs WHERE job_id = %(job_id)s AND status = 'abandoned';

-- queue_status --
SELECT workflow, waiting, delayed, active, completed, failed, cancelled
  FROM orchestrator_queue_status
 ORDER BY workflow = '*', workflow;

-- list_runs --
-- Newest runs first, optionally by workflow, status and job. One branch per filter
-- combination, each reading its own agent_runs index in run id order and stopping after
-- ``limit`` rows; the branches whose filters were not given are skipped when the query
-- starts (their conditions only involve parameters), so the prepared plan psycopg reuses
-- after a few calls is as fast as a fresh one, at any table size.
SELECT r.run_id, r.job_id, r.workflow, r.attempt, r.status, r.client, r.month,
       r.started_at, r.finished_at, r.duration_s, r.worker, r.error_type, r.error_message,
       r.retry_in_s, r.error_traceback, r.output, r.progress
  FROM (
        (SELECT id FROM agent_runs
          WHERE %(job_id)s::bigint IS NULL AND %(workflow)s::text IS NULL
            AND %(status)s::text IS NULL
          ORDER BY id DESC LIMIT %(limit)s)
        UNION ALL
        (SELECT id FROM agent_runs
          WHERE %(job_id)s::bigint IS NULL AND %(status)s::text IS NULL
            AND workflow = %(workflow)s
          ORDER BY id DESC LIMIT %(limit)s)
        UNION ALL
        (SELECT id FROM agent_runs
          WHERE %(job_id)s::bigint IS NULL AND %(workflow)s::text IS NULL
            AND status = %(status)s::agent_run_status
          ORDER BY id DESC LIMIT %(limit)s)
        UNION ALL
        (SELECT id FROM agent_runs
          WHERE %(job_id)s::bigint IS NULL
            AND workflow = %(workflow)s AND status = %(status)s::agent_run_status
          ORDER BY id DESC LIMIT %(limit)s)
        UNION ALL
        (SELECT id FROM agent_runs
          WHERE job_id = %(job_id)s
            AND (%(workflow)s::text IS NULL OR workflow = %(workflow)s)
            AND (%(status)s::text IS NULL OR status = %(status)s::agent_run_status)
          ORDER BY id DESC LIMIT %(limit)s)
       ) AS picked
  JOIN orchestrator_runs r ON r.run_id = picked.id
 ORDER BY r.run_id DESC;

-- get_job --
SELECT job_id, workflow, queue, state, procrastinate_status, attempts, priority, scheduled_at,
       dedupe_key, payload
  FROM orchestrator_jobs
 WHERE job_id = %(job_id)s;

-- unfinished_job_by_dedupe_key --
-- The waiting, delayed or running job holding a dedupe key (procrastinate's queueing lock
-- only keeps a second *waiting* job out; a running one must be found too). Reads only the
-- jobs in todo/doing through procrastinate's partial index on them.
SELECT id AS job_id,
       CASE WHEN status = 'doing' THEN 'active'
            WHEN scheduled_at > now() THEN 'delayed'
            ELSE 'waiting' END AS state
  FROM procrastinate_jobs
 WHERE status IN ('todo', 'doing') AND queueing_lock = %(key)s
 ORDER BY status = 'doing' DESC, id
 LIMIT 1;

-- jobs_to_retry --
-- Failed (or cancelled) jobs of one workflow, optionally only those whose last attempt
-- finished at or after ``since``: the candidates of a bulk ``orchestrator retry``.
SELECT j.job_id, j.dedupe_key
  FROM orchestrator_jobs j
 WHERE j.workflow = %(workflow)s AND j.state = %(state)s
   AND (%(since)s::timestamptz IS NULL
        OR (SELECT max(r.finished_at) FROM agent_runs r WHERE r.job_id = j.job_id)
           >= %(since)s::timestamptz)
 ORDER BY j.job_id;

-- waiting_job_by_dedupe_key --
SELECT id FROM procrastinate_jobs WHERE queueing_lock = %(key)s AND status = 'todo';

-- retry_failed_job --
-- Put a failed or cancelled job back in the queue, due now, with a fresh retry budget.
-- ``attempts`` already counts every run (procrastinate adds one when a run ends), so it is
-- left alone: the next run is attempt attempts + 1. abort_requested is cleared (a job
-- cancelled while waiting keeps it set, and procrastinate forbids it on 'todo' jobs); workers
-- are woken with the notification procrastinate's own insert trigger sends, since their
-- listener parses every payload as JSON.
WITH retried AS (
    UPDATE procrastinate_jobs
       SET status = 'todo', scheduled_at = NULL, worker_id = NULL, abort_requested = false
     WHERE id = %(job_id)s AND status IN ('failed', 'cancelled', 'aborted')
    RETURNING id, queue_name
)
SELECT id,
       pg_notify('procrastinate_queue_v1#' || queue_name, payload),
       pg_notify('procrastinate_any_queue_v1', payload)
  FROM retried,
       LATERAL (SELECT json_build_object('type', 'job_inserted', 'job_id', id)::text) AS n(payload);

-- prune_finished_jobs --
-- Finished jobs (and, by cascade, their events) whose last event is older than their
-- retention: workflow jobs after the retention period, the orchestrator's own maintenance
-- jobs (recovery sweeps every few seconds) after an hour. agent_runs are not touched.
DELETE FROM procrastinate_jobs
 WHERE id IN (
    SELECT j.id FROM procrastinate_jobs j
     WHERE j.status IN ('succeeded', 'failed', 'cancelled', 'aborted')
       AND (SELECT max(e.at) FROM procrastinate_events e WHERE e.job_id = j.id)
           < now() - CASE WHEN j.task_name LIKE 'orchestrator.%%' THEN interval '1 hour'
                          ELSE make_interval(hours => %(retention_hours)s) END
     LIMIT %(batch)s);

-- record_progress --
-- A running attempt's progress (ctx.progress), on a short autocommit connection of its own.
UPDATE agent_runs SET progress = %(progress)s WHERE id = %(run_id)s AND status = 'running';
