-- The pipeline board's queries (workflows.board), one named block each.

-- clients --
SELECT id, name, tier, active, licensed_states FROM clients
 WHERE (%(client_id)s::int IS NULL OR id = %(client_id)s)
 ORDER BY active DESC, lower(name), id;

-- month_facts --
-- Per client and renewal month: what each step left in the pipeline tables.
WITH months AS (
    SELECT client_id, month FROM cole_files WHERE client_id = ANY(%(clients)s)
    UNION SELECT client_id, month FROM monthly_counts WHERE client_id = ANY(%(clients)s)
    UNION SELECT client_id, month FROM renewal_windows WHERE client_id = ANY(%(clients)s)
)
SELECT m.client_id, m.month,
       f.files, f.rows_pulled, f.people, f.bad_rows,
       c.raw_rows, c.cleaned, c.texas_hnw, c.head_of_household,
       g.target, g.cleaned_count, g.gap, g.status AS gap_status, g.upsell,
       w.windows, w.windows_done, w.leads, w.uploaded, w.rejected,
       e.windows_attached, e.last_name, e.last_upload
  FROM months m
  LEFT JOIN LATERAL (
        SELECT count(*) AS files, sum(row_count) AS rows_pulled, sum(new_people) AS people,
               sum(bad_row_count) AS bad_rows
          FROM cole_files WHERE client_id = m.client_id AND month = m.month) f ON TRUE
  LEFT JOIN monthly_counts c ON c.client_id = m.client_id AND c.month = m.month
  LEFT JOIN gap_reports g ON g.client_id = m.client_id AND g.month = m.month
  LEFT JOIN LATERAL (
        SELECT count(*) AS windows, count(*) FILTER (WHERE completed_at IS NOT NULL)
                   AS windows_done,
               sum(lead_count) AS leads, sum(uploaded) AS uploaded, sum(rejected) AS rejected
          FROM renewal_windows WHERE client_id = m.client_id AND month = m.month) w ON TRUE
  LEFT JOIN LATERAL (
        SELECT count(DISTINCT u.window_id) AS windows_attached,
               (array_agg(u.new_name ORDER BY u.upload_date DESC, u.segment))[1] AS last_name,
               max(u.upload_date) AS last_upload
          FROM evergreen_updates u JOIN renewal_windows rw ON rw.id = u.window_id
         WHERE rw.client_id = m.client_id AND rw.month = m.month) e ON TRUE
 ORDER BY m.client_id, m.month;

-- recent_runs --
-- The latest attempt of each workflow per client and month (or upload date), among the
-- newest ``per_workflow`` attempts of each workflow (read through the (workflow, id) index,
-- so the board costs the same with millions of runs; older months keep their figures).
-- The newest attempt of each group is found by hashing narrow rows (workflow, client,
-- period), then only those few attempts are read in full: sorting the wide rows by their
-- text keys cost twice as much, and joining back before filtering by client made the
-- planner scan the whole table for that client.
WITH latest AS (
    (SELECT id, workflow, input ->> 'client' AS client,
            COALESCE(input ->> 'month', input ->> 'upload_date') AS period
       FROM agent_runs WHERE workflow = 'pt1' ORDER BY id DESC LIMIT %(per_workflow)s)
    UNION ALL
    (SELECT id, workflow, input ->> 'client' AS client,
            COALESCE(input ->> 'month', input ->> 'upload_date') AS period
       FROM agent_runs WHERE workflow = 'pt2' ORDER BY id DESC LIMIT %(per_workflow)s)
    UNION ALL
    (SELECT id, workflow, input ->> 'client' AS client,
            COALESCE(input ->> 'month', input ->> 'upload_date') AS period
       FROM agent_runs WHERE workflow = 'pt3' ORDER BY id DESC LIMIT %(per_workflow)s)
    UNION ALL
    (SELECT id, workflow, input ->> 'client' AS client,
            COALESCE(input ->> 'month', input ->> 'upload_date') AS period
       FROM agent_runs WHERE workflow = 'pt4' ORDER BY id DESC LIMIT %(per_workflow)s)
    UNION ALL
    (SELECT id, workflow, input ->> 'client' AS client,
            COALESCE(input ->> 'month', input ->> 'upload_date') AS period
       FROM agent_runs WHERE workflow = 'pt5' ORDER BY id DESC LIMIT %(per_workflow)s)
), newest AS (
    SELECT max(id) AS id FROM latest
     WHERE %(client)s::text IS NULL OR client = %(client)s
     GROUP BY workflow, client, period
)
SELECT r.workflow, r.input ->> 'client' AS client, r.input ->> 'month' AS month,
       r.input ->> 'upload_date' AS upload_date, r.job_id, r.id AS run_id,
       r.status::text AS status, r.progress, r.error ->> 'type' AS error_type, r.started_at,
       r.finished_at
  FROM newest JOIN agent_runs r ON r.id = newest.id
 ORDER BY r.id;

-- live_jobs --
-- Jobs waiting or running now (their runs may not exist yet).
SELECT j.id AS job_id, j.task_name AS workflow, j.status::text AS status, j.attempts,
       j.scheduled_at, j.args -> 'payload' ->> 'client' AS client,
       j.args -> 'payload' ->> 'month' AS month,
       j.args -> 'payload' ->> 'upload_date' AS upload_date
  FROM procrastinate_jobs j
 WHERE j.status IN ('todo', 'doing')
   AND j.task_name IN ('pt1', 'pt2', 'pt3', 'pt4', 'pt5')
   AND (%(client)s::text IS NULL OR j.args -> 'payload' ->> 'client' = %(client)s)
 ORDER BY j.id;

-- evergreen_history --
SELECT u.upload_date, u.segment, u.campaign_id, u.attached, u.old_name, u.new_name, u.status,
       u.updated_at, rw.list_name
  FROM evergreen_updates u LEFT JOIN renewal_windows rw ON rw.id = u.window_id
 WHERE u.client_id = %(client_id)s
 ORDER BY u.upload_date DESC, u.segment
 LIMIT 50;

-- client_jobs --
-- The client's jobs among the newest %(window)s jobs (no index covers the payload's client:
-- a client with no recent job must not make the page read the whole history).
SELECT j.id AS job_id, j.task_name AS workflow, j.status::text AS status, j.attempts,
       j.args -> 'payload' AS payload
  FROM procrastinate_jobs j
 WHERE j.args -> 'payload' @> jsonb_build_object('client', %(client)s::text)
   AND j.task_name NOT LIKE 'orchestrator.%%'
   AND j.id >= COALESCE((SELECT id FROM procrastinate_jobs
                          ORDER BY id DESC OFFSET %(window)s - 1 LIMIT 1), 0)
 ORDER BY j.id DESC
 LIMIT 50;
