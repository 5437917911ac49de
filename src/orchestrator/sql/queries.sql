-- The orchestrator's own SQL, one named block per query (loaded by orchestrator.queries).

-- start_attempt --
-- Record a new attempt as 'running' unless the job already succeeded (a re-run after a crash
-- that happened between our commit and procrastinate's status update). Attempts left
-- 'running' by a dead worker become 'abandoned'.
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
           AND r.id > COALESCE((SELECT max(f.id) FROM agent_runs f
                                 WHERE f.job_id = %(job_id)s AND f.status = 'failed'), 0))
           AS failures,
       (SELECT count(*) FROM abandoned) AS abandoned;

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
           'message', %(message)s,
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
   AND r.finished_at < now() - make_interval(secs => %(reconcile_after)s);

-- abandoned_count_of_job --
SELECT count(*) AS n FROM agent_runs WHERE job_id = %(job_id)s AND status = 'abandoned';

-- queue_status --
SELECT workflow, waiting, delayed, active, completed, failed, cancelled
  FROM orchestrator_queue_status
 ORDER BY workflow = '*', workflow;

-- list_runs --
SELECT run_id, job_id, workflow, attempt, status, started_at, finished_at, duration_s,
       worker, error_type, error_message, output
  FROM orchestrator_runs
 WHERE (%(workflow)s::text IS NULL OR workflow = %(workflow)s)
   AND (%(status)s::text IS NULL OR status = %(status)s)
   AND (%(job_id)s::bigint IS NULL OR job_id = %(job_id)s)
 ORDER BY run_id DESC
 LIMIT %(limit)s;

-- get_job --
SELECT job_id, workflow, queue, state, procrastinate_status, attempts, priority, scheduled_at,
       dedupe_key, payload
  FROM orchestrator_jobs
 WHERE job_id = %(job_id)s;

-- waiting_job_by_dedupe_key --
SELECT id FROM procrastinate_jobs WHERE queueing_lock = %(key)s AND status = 'todo';

-- retry_failed_job --
-- Put a failed or cancelled job back in the queue, due now, with a fresh retry budget.
UPDATE procrastinate_jobs
   SET status = 'todo', scheduled_at = NULL, attempts = attempts + 1, worker_id = NULL
 WHERE id = %(job_id)s AND status IN ('failed', 'cancelled', 'aborted')
RETURNING id;

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
