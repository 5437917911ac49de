-- Shared rate limits (loaded by orchestrator._rate_limits). The bucket is kept as a GCRA
-- "theoretical arrival time" (tat): full when tat <= now, one interval (1 / rate) further
-- per grant, and a request may go at max(now, tat - (burst - 1) / rate).

-- rate_limit_grant --
-- Reserve %(n)s consecutive slots of the key's bucket, creating the row on first use; the
-- configured rate and burst are written too (settings are the source of truth). One
-- statement, its own short transaction, the row locked only for its duration. Returns, in
-- seconds from the database's clock: ``tat_s`` (the new tat, after these slots) and
-- ``start_s`` (no slot before this: the end of a 429 block, else 0); the caller spreads its
-- n slots from them (orchestrator._rate_limits.plan_slots).
WITH c AS (SELECT clock_timestamp() AS t)
INSERT INTO orchestrator_rate_limits AS r
       (key, rate, burst, tat, updated_at, granted, minute, minute_grants, last_minute_grants)
SELECT %(key)s, %(rate)s, %(burst)s, c.t + make_interval(secs => %(n)s / %(rate)s), c.t,
       %(n)s, date_trunc('minute', c.t), %(n)s, 0
  FROM c
ON CONFLICT (key) DO UPDATE SET
       rate = EXCLUDED.rate,
       burst = EXCLUDED.burst,
       tat = greatest(r.tat, EXCLUDED.updated_at, r.blocked_until)
             + make_interval(secs => %(n)s / EXCLUDED.rate),
       updated_at = EXCLUDED.updated_at,
       granted = r.granted + %(n)s,
       minute = EXCLUDED.minute,
       minute_grants = CASE WHEN r.minute = EXCLUDED.minute THEN r.minute_grants + %(n)s
                            ELSE %(n)s END,
       last_minute_grants = CASE WHEN r.minute = EXCLUDED.minute THEN r.last_minute_grants
                                 WHEN r.minute = EXCLUDED.minute - interval '1 minute'
                                 THEN r.minute_grants ELSE 0 END
RETURNING extract(epoch FROM tat - updated_at)::double precision AS tat_s,
          greatest(0.0, extract(epoch FROM coalesce(blocked_until, updated_at) - updated_at))
              ::double precision AS start_s;

-- rate_limit_throttled --
-- A provider answered 429 (Retry-After %(seconds)s): no grant of the key before then, for
-- every process, and no burst right after it (tat moves to the block's end plus the burst
-- tolerance, so slots restart one interval apart). Returns the block's remaining seconds.
UPDATE orchestrator_rate_limits
   SET blocked_until = greatest(blocked_until,
                                clock_timestamp() + make_interval(secs => %(seconds)s)),
       tat = greatest(tat, greatest(blocked_until,
                                    clock_timestamp() + make_interval(secs => %(seconds)s))
                           + make_interval(secs => (burst - 1) / rate)),
       throttled = throttled + 1
 WHERE key = %(key)s
RETURNING greatest(0.0, extract(epoch FROM blocked_until - clock_timestamp()))
              ::double precision AS blocked_s;

-- rate_limit_blocked_for --
-- Seconds the key stays blocked by a 429 (0 when not blocked): read by a waiter that slept
-- long for its slot, since a block set meanwhile voids the slot.
SELECT greatest(0.0, extract(epoch FROM blocked_until - clock_timestamp()))::double precision
           AS blocked_s
  FROM orchestrator_rate_limits
 WHERE key = %(key)s;

-- rate_limit_status --
-- Every shared limit as operators read it (the view documents the columns).
SELECT key, rate, burst, tokens, next_grant_in_s, blocked_until, grants_this_minute,
       grants_last_minute, granted, throttled, last_grant_at
  FROM orchestrator_rate_limit_status
 ORDER BY key;
