-- The alert sweep's queries (orchestrator.alerts), one named block each.

-- job_failed --
SELECT r.id, r.job_id, r.workflow, r.attempt, r.input, r.error ->> 'type' AS error_type,
       r.error ->> 'message' AS error_message
  FROM agent_runs r
 WHERE r.status = 'failed' AND r.finished_at > now() - interval '1 day'
   AND NOT EXISTS (SELECT 1 FROM orchestrator_alerts a
                    WHERE a.kind = 'job_failed' AND a.key = r.id::text)
 ORDER BY r.id LIMIT 100;

-- job_retrying --
SELECT r.id, r.job_id, r.workflow, r.attempt, r.input, r.error ->> 'type' AS error_type,
       r.error ->> 'message' AS error_message
  FROM agent_runs r
 WHERE r.status = 'retrying' AND r.attempt > %(retries)s
   AND r.finished_at > now() - interval '1 day'
   AND NOT EXISTS (SELECT 1 FROM orchestrator_alerts a
                    WHERE a.kind = 'job_retrying' AND a.key = r.job_id::text)
 ORDER BY r.id LIMIT 100;

-- worker_stalled --
SELECT w.id, EXTRACT(EPOCH FROM now() - w.last_heartbeat) AS silent_s
  FROM procrastinate_workers w
 WHERE w.last_heartbeat < now() - make_interval(secs => %(stalled_after)s)
   AND NOT EXISTS (SELECT 1 FROM orchestrator_alerts a
                    WHERE a.kind = 'worker_stalled' AND a.key = w.id::text)
 LIMIT 100;

-- record_alert --
-- Recorded before the hooks run: a second sweeper finds it and sends nothing.
INSERT INTO orchestrator_alerts (kind, key, job_id, message)
VALUES (%(kind)s, %(key)s, %(job_id)s, %(message)s)
ON CONFLICT (kind, key) DO NOTHING RETURNING id;
