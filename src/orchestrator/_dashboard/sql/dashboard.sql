-- The operations console's queries, one named block each (loaded by dashboard.queries).
-- Every page runs them in a read-only transaction with a statement_timeout, so a huge table
-- makes a page say "too slow" instead of hanging it. Lists use keyset pagination on ids.

-- queue_counts --
SELECT workflow, waiting, delayed, active, completed, failed, cancelled
  FROM orchestrator_queue_status
 ORDER BY workflow = '*', workflow;

-- oldest_waiting --
-- Per workflow, the waiting job that has waited longest and since when: the later of its
-- due time and its last transition to 'todo' (creation, retry scheduling).
SELECT DISTINCT ON (j.task_name)
       j.task_name AS workflow, j.id AS job_id,
       GREATEST(j.scheduled_at, e.at) AS since,
       EXTRACT(EPOCH FROM now() - GREATEST(j.scheduled_at, e.at)) AS age_s
  FROM procrastinate_jobs j
  LEFT JOIN LATERAL (
        SELECT max(at) AS at FROM procrastinate_events
         WHERE job_id = j.id AND type IN ('deferred', 'deferred_for_retry', 'retried')) e ON TRUE
 WHERE j.status = 'todo' AND (j.scheduled_at IS NULL OR j.scheduled_at <= now())
   AND j.task_name NOT LIKE 'orchestrator.%%'
 ORDER BY j.task_name, GREATEST(j.scheduled_at, e.at) NULLS LAST, j.id;

-- throughput --
-- Finished attempts per workflow over the last hour and day.
SELECT workflow,
       count(*) FILTER (WHERE status = 'succeeded' AND finished_at > now() - interval '1 hour')
           AS succeeded_1h,
       count(*) FILTER (WHERE status IN ('failed', 'retrying', 'abandoned')
                          AND finished_at > now() - interval '1 hour') AS failed_1h,
       count(*) FILTER (WHERE status = 'succeeded') AS succeeded_24h,
       count(*) FILTER (WHERE status IN ('failed', 'retrying', 'abandoned')) AS failed_24h,
       avg(EXTRACT(EPOCH FROM finished_at - started_at))
           FILTER (WHERE status = 'succeeded') AS avg_duration_s
  FROM agent_runs
 WHERE started_at > now() - interval '24 hours' AND finished_at IS NOT NULL
 GROUP BY workflow
 ORDER BY workflow;

-- workers --
-- Workers with their heartbeat age and the workflow jobs each is running.
SELECT w.id AS worker_id, w.last_heartbeat,
       EXTRACT(EPOCH FROM now() - w.last_heartbeat) AS heartbeat_age_s,
       j.id AS job_id, j.task_name AS workflow, r.run_id, r.attempt, r.started_at,
       r.worker AS worker_label, r.progress
  FROM procrastinate_workers w
  LEFT JOIN procrastinate_jobs j
         ON j.worker_id = w.id AND j.status = 'doing' AND j.task_name NOT LIKE 'orchestrator.%%'
  LEFT JOIN LATERAL (
        SELECT id AS run_id, attempt, started_at, worker, progress FROM agent_runs
         WHERE job_id = j.id AND status = 'running' ORDER BY id DESC LIMIT 1) r ON TRUE
 ORDER BY w.id, j.id;

-- rate_limits --
-- The shared rate limits (migration 0014): one row per provider key, as operators read them.
SELECT key, rate, burst, tokens, next_grant_in_s, blocked_until, grants_this_minute,
       grants_last_minute, granted, throttled, last_grant_at
  FROM orchestrator_rate_limit_status
 ORDER BY key
 LIMIT 100;

-- job_window_floor --
-- The lowest id among the newest %(window)s jobs below %(before)s (NULL: fewer remain). Filters
-- no index answers (workflow, a finished state, payload keys, free text) look only at jobs
-- from here up, so a filter that matches little never reads the whole table; the page links
-- on to the next window.
SELECT id FROM procrastinate_jobs
 WHERE %(before)s::bigint IS NULL OR id < %(before)s
 ORDER BY id DESC
OFFSET %(window)s - 1 LIMIT 1;

-- unfinished_job_ids --
-- The newest %(window)s unfinished jobs below %(before)s, through procrastinate's index on them.
SELECT id FROM procrastinate_jobs
 WHERE status IN ('todo', 'doing') AND (%(before)s::bigint IS NULL OR id < %(before)s)
 ORDER BY id DESC
 LIMIT %(window)s;

-- list_jobs --
-- Newest first, keyset-paginated on job id, with the latest attempt of each job. The dedupe
-- key filter reads its own index (migration 0011); a live state (waiting, delayed, active)
-- looks only %(among)s the unfinished jobs found by unfinished_job_ids.
SELECT j.job_id, j.workflow, j.state, j.attempts, j.priority, j.scheduled_at, j.dedupe_key,
       j.payload, r.run_id, r.status AS run_status, r.started_at, r.finished_at,
       r.progress, r.error ->> 'type' AS error_type, r.error ->> 'message' AS error_message
  FROM orchestrator_jobs j
  LEFT JOIN LATERAL (
        SELECT id AS run_id, status::text AS status, started_at, finished_at, progress, error
          FROM agent_runs WHERE job_id = j.job_id ORDER BY id DESC LIMIT 1) r ON TRUE
 WHERE (%(workflow)s::text IS NULL OR j.workflow = %(workflow)s)
   AND (%(state)s::text IS NULL OR j.state = %(state)s)
   AND (%(dedupe_key)s::text IS NULL OR j.dedupe_key = %(dedupe_key)s)
   AND (%(contains)s::jsonb IS NULL OR j.payload @> %(contains)s::jsonb)
   AND (%(search)s::text IS NULL OR j.payload::text ILIKE %(search)s)
   AND (%(before)s::bigint IS NULL OR j.job_id < %(before)s)
   AND (%(floor)s::bigint IS NULL OR j.job_id >= %(floor)s)
   AND (%(among)s::bigint[] IS NULL OR j.job_id = ANY(%(among)s::bigint[]))
 ORDER BY j.job_id DESC
 LIMIT %(limit)s;

-- job --
SELECT job_id, workflow, queue, state, procrastinate_status, attempts, priority, scheduled_at,
       dedupe_key, payload, worker_id
  FROM orchestrator_jobs
 WHERE job_id = %(job_id)s;

-- job_runs --
-- Every attempt of a job, oldest first, with the wait before the next attempt started.
SELECT r.id AS run_id, r.attempt, r.status::text AS status, r.worker, r.queue, r.started_at,
       r.finished_at,
       EXTRACT(EPOCH FROM COALESCE(r.finished_at, now()) - r.started_at) AS duration_s,
       EXTRACT(EPOCH FROM lead(r.started_at) OVER (ORDER BY r.id) - r.finished_at)
           AS wait_before_next_s,
       r.error, r.input, r.output, r.progress
  FROM agent_runs r
 WHERE r.job_id = %(job_id)s
 ORDER BY r.id;

-- job_events --
SELECT type::text AS type, at FROM procrastinate_events WHERE job_id = %(job_id)s ORDER BY id;

-- failures --
-- Jobs failed for good or waiting for a retry, found through their latest failed attempts
-- (the newest %(scan)s of each kind, through the agent_runs status index), one row per job,
-- grouped by error type: each group's size and the newest %(per_group)s jobs of it (with
-- %(error_type)s, only that group, from run id %(before)s down). Reading a bounded window of
-- attempts keeps the page's cost the same at any history size.
WITH recent AS (
    (SELECT id, job_id, error, finished_at FROM agent_runs
      WHERE status = 'failed' ORDER BY id DESC LIMIT %(scan)s)
    UNION ALL
    (SELECT id, job_id, error, finished_at FROM agent_runs
      WHERE status = 'retrying' ORDER BY id DESC LIMIT %(scan)s)
    UNION ALL
    (SELECT id, job_id, error, finished_at FROM agent_runs
      WHERE status = 'abandoned' ORDER BY id DESC LIMIT %(scan)s)
), latest AS (
    SELECT DISTINCT ON (job_id) job_id, id AS run_id,
           COALESCE(error ->> 'type', 'Unknown') AS error_type
      FROM recent ORDER BY job_id, id DESC
), failing AS (
    SELECT l.job_id, l.run_id, l.error_type,
           count(*) OVER w AS group_size,
           count(*) FILTER (WHERE pj.status = 'failed') OVER w AS group_failed,
           -- the position among the group's jobs shown from %(before)s down
           count(*) FILTER (WHERE %(before)s::bigint IS NULL OR l.run_id < %(before)s)
               OVER (w ORDER BY l.run_id DESC ROWS UNBOUNDED PRECEDING) AS rank
      FROM latest l
      JOIN procrastinate_jobs pj ON pj.id = l.job_id
     WHERE (pj.status = 'failed' OR (pj.status = 'todo' AND pj.attempts > 0))
       AND (%(error_type)s::text IS NULL OR l.error_type = %(error_type)s)
    WINDOW w AS (PARTITION BY l.error_type)
)
SELECT f.error_type, f.group_size, f.group_failed, j.job_id, j.workflow, j.state, j.attempts,
       j.scheduled_at, j.payload, f.run_id, r.finished_at, r.error ->> 'message' AS error_message
  FROM failing f
  JOIN orchestrator_jobs j ON j.job_id = f.job_id
  JOIN agent_runs r ON r.id = f.run_id
 WHERE f.rank <= %(per_group)s
   AND (%(before)s::bigint IS NULL OR f.run_id < %(before)s)
 ORDER BY f.group_size DESC, f.error_type, f.run_id DESC;

-- failures_beyond_scan --
-- Are there failed, retried or abandoned attempts older than the failures inbox looks at?
-- (Then its group sizes count only the newest ones.)
SELECT EXISTS (SELECT 1 FROM (SELECT id FROM agent_runs WHERE status = 'failed'
                               ORDER BY id DESC OFFSET %(scan)s LIMIT 1) f)
    OR EXISTS (SELECT 1 FROM (SELECT id FROM agent_runs WHERE status = 'retrying'
                               ORDER BY id DESC OFFSET %(scan)s LIMIT 1) r)
    OR EXISTS (SELECT 1 FROM (SELECT id FROM agent_runs WHERE status = 'abandoned'
                               ORDER BY id DESC OFFSET %(scan)s LIMIT 1) a) AS beyond;

-- metrics_runs --
-- Every attempt ever recorded (agent_runs is never pruned) by workflow, outcome and duration
-- bucket: finished ones from the counters the agent_runs triggers keep (migration 0011, a few
-- hundred rows at any history size), running ones live through the partial index on them
-- (bucket NULL: no duration yet).
SELECT workflow, status::text AS status, bucket, sum(n) AS n,
       sum(first_attempts) AS first_attempts, sum(duration_s) AS duration_sum
  FROM orchestrator_run_counts
 GROUP BY workflow, status, bucket
HAVING sum(n) <> 0
 UNION ALL
SELECT workflow, 'running', NULL, count(*), count(*) FILTER (WHERE attempt = 1), 0
  FROM agent_runs
 WHERE status = 'running'
 GROUP BY workflow;

-- metrics_queue_wait --
-- First attempts started in the last hour: seconds from enqueue (the 'deferred' event) to
-- start, per workflow.
SELECT r.workflow, count(*) AS n,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM r.started_at - e.at))
           AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM r.started_at - e.at))
           AS p95,
       max(EXTRACT(EPOCH FROM r.started_at - e.at)) AS max
  FROM agent_runs r
  JOIN LATERAL (SELECT min(at) AS at FROM procrastinate_events
                 WHERE job_id = r.job_id AND type = 'deferred') e ON e.at IS NOT NULL
 WHERE r.started_at > now() - interval '1 hour' AND r.attempt = 1
 GROUP BY r.workflow;

-- metrics_workers --
SELECT id AS worker_id, EXTRACT(EPOCH FROM now() - last_heartbeat) AS heartbeat_age_s
  FROM procrastinate_workers ORDER BY id;

-- metrics_waiting_first --
-- Jobs not started yet (enqueued, no attempt recorded), per workflow.
SELECT task_name AS workflow, count(*) AS n
  FROM procrastinate_jobs
 WHERE status = 'todo' AND attempts = 0 AND task_name NOT LIKE 'orchestrator.%%'
 GROUP BY task_name;

-- schema_version --
SELECT version_num FROM alembic_version;
