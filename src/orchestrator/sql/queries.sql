-- The orchestrator's own SQL, one named block per query (loaded by orchestrator.queries).

-- start_attempt --
-- Record a new attempt as 'running' unless the job already succeeded (a re-run after a crash
-- that happened between our commit and procrastinate's status update). The row is the
-- attempt's lease; ``worker_id`` names the worker whose heartbeat keeps it. Attempts still
-- 'running' can only be attempts that ended without recording their outcome (the database was
-- out of reach: crash recovery marks those of dead workers before re-queueing), so they become
-- 'abandoned' as OutcomeNotRecorded, which the abandon limit does not count.
-- Run on its own (autocommit) and committed without waiting for the WAL flush
-- (synchronous_commit off for this transaction only): a server crash can lose at most this
-- bookkeeping row, never an effect, and the job transaction's synchronous commit flushes it
-- anyway. It saves one disk flush per attempt.
WITH abandoned AS (
    UPDATE agent_runs
       SET status = 'abandoned',
           finished_at = clock_timestamp(),
           error = jsonb_build_object(
               'type', 'OutcomeNotRecorded',
               'message', 'the attempt ended without recording its outcome (database unreachable)',
               'traceback', NULL)
     WHERE job_id = %(job_id)s AND status = 'running'
    RETURNING id
), done AS (
    SELECT id FROM agent_runs WHERE job_id = %(job_id)s AND status = 'succeeded'
), inserted AS (
    INSERT INTO agent_runs (job_id, workflow, attempt, input, worker, queue, worker_id)
    SELECT %(job_id)s, %(workflow)s, %(attempt)s, %(input)s, %(worker)s, %(queue)s,
           %(worker_id)s
     WHERE NOT EXISTS (SELECT 1 FROM done)
    RETURNING id
)
SELECT (SELECT id FROM inserted) AS run_id,
       (SELECT id FROM done) AS succeeded_run_id,
       -- failures in the current retry cycle: a 'failed' or 'cancelled' row closes a cycle (a
       -- manual retry afterwards starts a fresh one)
       (SELECT count(*) FROM agent_runs r
         WHERE r.job_id = %(job_id)s AND r.status = 'retrying'
           -- an attempt cut short by a worker shutdown is not the job's failure
           AND COALESCE(r.error ->> 'type', '') NOT IN
               ('ShutdownAbort', 'WorkerStopping', 'LeaseExpired', 'ConnectionLost')
           AND r.id > COALESCE((SELECT max(f.id) FROM agent_runs f
                                 WHERE f.job_id = %(job_id)s
                                   AND f.status IN ('failed', 'cancelled')), 0))
           AS failures,
       -- attempts cut off from the database in the current cycle (bounded separately)
       (SELECT count(*) FROM agent_runs r
         WHERE r.job_id = %(job_id)s
           AND r.error ->> 'type' IN ('ConnectionLost', 'OutcomeNotRecorded')
           AND r.id > COALESCE((SELECT max(f.id) FROM agent_runs f
                                 WHERE f.job_id = %(job_id)s
                                   AND f.status IN ('failed', 'cancelled')), 0))
           AS connection_losses,
       (SELECT count(*) FROM abandoned) AS abandoned,
       set_config('synchronous_commit', 'off', true) AS commit_mode;

-- finish_success --
-- A successful attempt's record and its job's end, in one statement run inside the workflow's
-- own transaction: effects, record and job status commit together or not at all, and a
-- job's success costs one round trip instead of two transactions. Only while the attempt
-- holds its lease (row 'running'): a fenced attempt's success is refused (run_id NULL) and
-- its transaction rolled back. The job is ended here only if it is still the one this worker
-- fetched ('doing' with that attempts count, as guarded_finish_job); otherwise (a run outside
-- a worker) job_finished is false and procrastinate's own update follows. The job row is
-- locked before the run row (the uncorrelated sub-select is evaluated before the UPDATE
-- locks its row), the order crash recovery takes them in.
WITH job AS (
    SELECT id FROM procrastinate_jobs
     WHERE id = %(job_id)s AND status = 'doing' AND attempts = %(attempts)s
       FOR UPDATE
), run AS (
    UPDATE agent_runs
       SET status = 'succeeded', output = %(output)s, finished_at = clock_timestamp(),
           error = NULL
     WHERE id = %(run_id)s AND status = 'running'
       AND (SELECT count(*) FROM job) >= 0
    RETURNING id
)
SELECT (SELECT id FROM run) AS run_id,
       (SELECT count(*)
          FROM (SELECT procrastinate_finish_job_v1(job.id, 'succeeded', false)
                  FROM job WHERE EXISTS (SELECT 1 FROM run)) AS finished) = 1 AS job_finished;

-- finish_failure --
-- Only while the attempt holds its lease; no row back means the attempt was fenced.
UPDATE agent_runs
   SET status = %(status)s, error = %(error)s, finished_at = clock_timestamp()
 WHERE id = %(run_id)s AND status = 'running'
RETURNING id;

-- record_fenced --
-- A fenced attempt that learned it was fenced says so on its (already abandoned) row.
UPDATE agent_runs
   SET error = jsonb_build_object(
           'type', 'Fenced',
           'message', %(message)s::text,
           'fenced_as', error ->> 'type',
           'traceback', NULL)
 WHERE id = %(run_id)s AND status = 'abandoned'
   AND COALESCE(error ->> 'type', '') <> 'Fenced';

-- lease --
-- Is the attempt's row still 'running', and for how long does its worker's last heartbeat
-- keep the lease (NULL: no worker bounds it; 0: the worker row is gone)?
SELECT r.status::text AS status,
       CASE WHEN r.worker_id IS NULL THEN NULL
            WHEN w.id IS NULL THEN 0
            ELSE EXTRACT(EPOCH FROM (w.last_heartbeat
                                     + make_interval(secs => %(stalled_after)s) - now()))
       END AS remaining_s
  FROM agent_runs r
  LEFT JOIN procrastinate_workers w ON w.id = r.worker_id
 WHERE r.id = %(run_id)s;

-- hold_lease --
-- In the job's transaction, just before it commits: lock the attempt's row (crash recovery's
-- fence waits for this commit, or this finds the row fenced) and count the committed step.
UPDATE agent_runs SET steps = steps + 1
 WHERE id = %(run_id)s AND status = 'running'
RETURNING id;

-- heartbeat --
-- The worker's heartbeat, sent by orchestrator worker itself as well (procrastinate stops its
-- own when a shutdown begins, while jobs may still be draining).
UPDATE procrastinate_workers SET last_heartbeat = now() WHERE id = %(worker_id)s;

-- guarded_finish_job --
-- procrastinate's finish, applied only to the job this worker fetched: still 'doing' with the
-- attempts count it had when fetched. A job crash recovery re-queued meanwhile (and perhaps
-- gave to another worker) is left alone.
WITH owned AS (
    SELECT id FROM procrastinate_jobs
     WHERE id = %(job_id)s AND status = 'doing' AND attempts = %(attempts)s
       FOR UPDATE
)
SELECT count(*) AS applied
  FROM (SELECT procrastinate_finish_job_v1(id, %(status)s::procrastinate_job_status,
                                           %(delete_job)s)
          FROM owned) AS f;

-- guarded_retry_job --
WITH owned AS (
    SELECT id FROM procrastinate_jobs
     WHERE id = %(job_id)s AND status = 'doing' AND attempts = %(attempts)s
       FOR UPDATE
)
SELECT count(*) AS applied
  FROM (SELECT procrastinate_retry_job_v2(id, %(retry_at)s, %(new_priority)s,
                                          %(new_queue_name)s, %(new_lock)s)
          FROM owned) AS f;

-- lock_stalled_job --
-- Recovery, in one transaction per job: the job, locked, if it is still 'doing' under a worker
-- that is gone or silent (the worker may have come back since the sweep listed it).
SELECT j.id, j.attempts, j.worker_id
  FROM procrastinate_jobs j
  LEFT JOIN procrastinate_workers w ON w.id = j.worker_id
 WHERE j.id = %(job_id)s AND j.status = 'doing'
   AND (w.id IS NULL
        OR w.last_heartbeat < now() - make_interval(secs => %(stalled_after)s))
   FOR UPDATE OF j;

-- lock_cut_off_job --
-- The job of an attempt this process ran and could not record (the database went away),
-- locked, if nobody moved it on since.
SELECT id, attempts FROM procrastinate_jobs
 WHERE id = %(job_id)s AND status = 'doing' AND attempts = %(attempts)s
   FOR UPDATE;

-- abandon_runs_of_job --
-- Fence the job's running attempts. An attempt that began before the database server last
-- started lost its connection to that restart: ConnectionLost, which the abandon limit does
-- not count; the others were lost with their worker.
UPDATE agent_runs
   SET status = 'abandoned',
       finished_at = clock_timestamp(),
       error = CASE WHEN started_at < pg_postmaster_start_time() THEN
                   jsonb_build_object(
                       'type', 'ConnectionLost',
                       'message', 'the attempt lost its database connection to a server restart',
                       'traceback', NULL)
               ELSE
                   jsonb_build_object(
                       'type', 'WorkerLost',
                       'message', %(message)s::text,  -- jsonb_build_object cannot infer it
                       'traceback', NULL)
               END
 WHERE job_id = %(job_id)s AND status = 'running'
RETURNING id, error ->> 'type' AS kind;

-- abandon_cut_off_runs --
-- The job's attempt this worker lost track of with its connection (``run_id``), or all its
-- running attempts (``run_id`` NULL: the worker does not know which began).
UPDATE agent_runs
   SET status = 'abandoned',
       finished_at = clock_timestamp(),
       error = jsonb_build_object(
           'type', 'ConnectionLost',
           'message', 'the attempt lost its database connection; its worker re-queued the job',
           'traceback', NULL)
 WHERE job_id = %(job_id)s AND status = 'running'
   AND (%(run_id)s::bigint IS NULL OR id = %(run_id)s);

-- orphan_jobs --
-- Jobs the database shows 'doing' under this worker that it does not hold: their fetch's
-- answer was lost with its connection, or the attempt could neither start nor record its
-- end. Asked while no fetch is in flight in the worker's process.
SELECT id, attempts FROM procrastinate_jobs
 WHERE worker_id = %(worker_id)s AND status = 'doing'
   AND NOT (id = ANY(%(held)s::bigint[]));

-- lock_orphan_job --
-- One of them, locked, if it is still the worker's; unless its latest attempt recorded an
-- outcome since the fetch (the final status update failed): crash recovery's reconcile
-- applies that outcome.
SELECT j.id FROM procrastinate_jobs j
 WHERE j.id = %(job_id)s AND j.status = 'doing' AND j.worker_id = %(worker_id)s
   AND j.attempts = %(attempts)s
   AND NOT EXISTS (
        SELECT 1 FROM agent_runs r
         WHERE r.job_id = j.id AND r.status IN ('failed', 'retrying', 'cancelled')
           AND r.finished_at >= (SELECT max(e.at) FROM procrastinate_events e
                                  WHERE e.job_id = j.id AND e.type = 'started'))
   FOR UPDATE OF j;

-- job_has_success --
SELECT EXISTS (SELECT 1 FROM agent_runs WHERE job_id = %(job_id)s AND status = 'succeeded')
    AS succeeded;

-- stalled_jobs --
-- Jobs in 'doing' whose worker is gone (pruned) or silent for longer than the threshold.
-- A worker draining its jobs after SIGTERM keeps its heartbeat, so its jobs never show here.
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

-- abandoned_in_cycle --
-- Attempts lost with their worker in the job's current retry cycle (after its last 'failed'
-- or 'cancelled' row) that made no progress: the abandon limit. An attempt made progress if
-- it finished an external call, or — making none — committed a step: a resumed attempt skips
-- what is done, so a job whose attempts keep dying at the same point makes none, while random
-- kills of a long job do not count against it. Attempts cut off by a lost database connection
-- do not count either. ``new_counted``: how many of ``new`` (just abandoned) count.
SELECT count(*) AS n, max(r.id) AS last_id,
       count(*) FILTER (WHERE r.id = ANY(%(new)s::bigint[])) AS new_counted
  FROM agent_runs r
 WHERE r.job_id = %(job_id)s AND r.status = 'abandoned'
   AND COALESCE(r.error ->> 'type', '') NOT IN ('ConnectionLost', 'OutcomeNotRecorded')
   AND r.id > COALESCE((SELECT max(f.id) FROM agent_runs f
                         WHERE f.job_id = %(job_id)s AND f.status IN ('failed', 'cancelled')), 0)
   AND NOT EXISTS (SELECT 1 FROM external_calls c
                    WHERE c.job_id = r.job_id AND c.run_id = r.id AND c.state = 'done')
   AND (r.steps = 0 OR EXISTS (SELECT 1 FROM external_calls c
                                WHERE c.job_id = r.job_id AND c.run_id = r.id));

-- fail_abandoned_run --
-- The attempt that reached the abandon limit becomes the job's 'failed' row, saying why.
UPDATE agent_runs
   SET status = 'failed',
       error = jsonb_build_object(
           'type', 'AbandonLimit',
           'message', %(message)s::text,
           'lost_as', error ->> 'type',
           'traceback', NULL)
 WHERE id = %(run_id)s;

-- requeue_job_now --
SELECT procrastinate_retry_job_v2(%(job_id)s, now(), NULL, NULL, NULL);

-- finish_job_now --
SELECT procrastinate_finish_job_v1(%(job_id)s, %(status)s::procrastinate_job_status, false);

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

-- record_intent --
-- The intent of an external call, committed before the call is made, only while the attempt
-- holds its lease (the run row locked FOR SHARE: recovery's fence waits for this commit).
INSERT INTO external_calls (job_id, run_id, workflow, kind, key, request)
SELECT r.job_id, r.id, r.workflow, %(kind)s, %(key)s, %(request)s
  FROM agent_runs r
 WHERE r.id = %(run_id)s AND r.status = 'running'
   FOR SHARE
RETURNING id, job_id, run_id, kind, key, state, request, outcome, created_at;

-- record_outcome --
-- The answer to an attempt's own call (recorded even by a fenced attempt: it is the truth).
-- A call another attempt resolved meanwhile keeps that resolution.
UPDATE external_calls
   SET state = %(state)s, outcome = %(outcome)s, finished_at = clock_timestamp()
 WHERE id = %(id)s AND state = 'intent'
RETURNING id;

-- resolve_call --
-- An earlier attempt's call in doubt, resolved by the attempt holding the job's lease.
WITH lease AS (
    SELECT id FROM agent_runs WHERE id = %(run_id)s AND status = 'running' FOR SHARE
), resolved AS (
    UPDATE external_calls
       SET state = %(state)s,
           outcome = %(outcome)s || jsonb_build_object('resolved_by_run', %(run_id)s::bigint),
           finished_at = clock_timestamp()
     WHERE id = %(id)s AND state = 'intent' AND EXISTS (SELECT 1 FROM lease)
    RETURNING id
)
SELECT (SELECT count(*) FROM lease) AS held, (SELECT count(*) FROM resolved) AS resolved;

-- job_calls --
SELECT id, job_id, run_id, kind, key, state, request, outcome, created_at
  FROM external_calls
 WHERE job_id = %(job_id)s AND (%(kind)s::text IS NULL OR kind = %(kind)s)
 ORDER BY id;

-- job_external_calls --
-- A job's external calls for ``orchestrator job``: an intent whose attempt is over (its row no
-- longer 'running') is in doubt — nobody knows whether the call happened.
SELECT c.id, c.run_id, r.attempt, c.kind, c.key, c.state,
       (c.state = 'intent' AND r.status IS DISTINCT FROM 'running') AS in_doubt,
       c.created_at, c.finished_at
  FROM external_calls c
  LEFT JOIN agent_runs r ON r.id = c.run_id
 WHERE c.job_id = %(job_id)s
 ORDER BY c.id;

-- lock_dedupe_key --
-- Serialises enqueues sharing a dedupe key until the enqueuing transaction ends, so that the
-- look-up below and the insert after it cannot interleave with another enqueue's.
SELECT pg_advisory_xact_lock(hashtextextended('orchestrator.dedupe:' || %(key)s, 0));

-- active_job_by_dedupe_key --
-- The job holding a dedupe key that is still waiting or running (the running one first),
-- other than the job doing the enqueue (a chain step passing its key on).
SELECT id, task_name, status::text AS status
  FROM procrastinate_jobs
 WHERE queueing_lock = %(key)s AND status IN ('todo', 'doing')
   AND id IS DISTINCT FROM %(exclude)s::bigint
 ORDER BY status = 'doing' DESC, id
 LIMIT 1;

-- quiet_change_triggers --
-- A worker's connection: its writes to agent_runs and job statuses do not notify from the
-- triggers (migration 0011); the worker process notifies, batched (orchestrator._changes).
SELECT set_config('orchestrator.notify_changes', 'off', false);

-- notify_change --
-- What the triggers would have sent, once for a batch of a worker's changes.
SELECT pg_notify('orchestrator_changed', 'worker');
