"""Failed final status update: a job's success is committed, procrastinate's update is not.

A trigger in the test database makes the first ``doing -> succeeded`` update of chosen jobs
fail (the per-job sequence it advances is not transactional, so the failure happens exactly
once per job). The worker stays alive and keeps heartbeating, so the job is not stalled: it
sits in ``doing`` with a ``succeeded`` agent_runs row. The recovery sweep must reconcile it
to ``succeeded`` ``ORCHESTRATOR_RECONCILE_AFTER`` seconds (1 s here) after the outcome was
recorded — without running the workflow again.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from tests.chaos.harness import DEFAULT_JOBS, ChaosRun, record

pytestmark = pytest.mark.chaos

SEED = 4242
WORKERS = 2
#: Share of the jobs whose final status update fails.
FAILING_SHARE = 0.1
#: From the committed success to the job marked succeeded: reconcile_after (1 s) + a sweep
#: (every 1 s) + margin for a loaded machine.
RECONCILE_BOUND = 10.0

FAULT_SQL = """
CREATE TABLE chaos_fail_finish (job_id bigint PRIMARY KEY);

CREATE FUNCTION chaos_fail_finish() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- nextval is not rolled back with the failed update: only the first one fails.
    IF NEW.status = 'succeeded' AND OLD.status = 'doing'
       AND EXISTS (SELECT 1 FROM chaos_fail_finish WHERE job_id = NEW.id)
       AND nextval(format('chaos_fail_finish_%s', NEW.id)::regclass) = 1 THEN
        RAISE EXCEPTION 'chaos: injected failure of the final status update of job %', NEW.id;
    END IF;
    RETURN NEW;
END;
$$;

-- Arm the fault for these jobs: one sequence each, advanced by the trigger.
CREATE FUNCTION chaos_fail_finish_of(ids bigint[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    job bigint;
BEGIN
    FOREACH job IN ARRAY ids LOOP
        EXECUTE format('CREATE SEQUENCE %I', 'chaos_fail_finish_' || job);
        INSERT INTO chaos_fail_finish VALUES (job);
    END LOOP;
END;
$$;

CREATE TRIGGER chaos_fail_finish BEFORE UPDATE OF status ON procrastinate_jobs
    FOR EACH ROW EXECUTE FUNCTION chaos_fail_finish();
"""


async def test_failed_final_status_update(database_url: str, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    async with ChaosRun(database_url, tmp_path) as run:
        await run.db.execute(FAULT_SQL)
        keys, job_ids = await run.enqueue_rows("finish", DEFAULT_JOBS, rng, sleep=(0.0, 0.02))
        failing = sorted(rng.sample(job_ids, int(len(job_ids) * FAILING_SHARE)))
        await run.db.execute("SELECT chaos_fail_finish_of(%s::bigint[])", [failing])

        started = time.monotonic()
        for _ in range(WORKERS):
            run.workers.start()
        wait_s = await run.wait_until_done(job_ids)
        duration = time.monotonic() - started
        run.workers.assert_survivors_alive()
        counts = await run.check_invariants(job_ids, keys)

        # pg_sequences.last_value stays NULL until nextval() was called: the trigger fired.
        fired = await run.db.value(
            "SELECT count(*) FROM pg_sequences WHERE sequencename LIKE 'chaos\\_fail\\_finish\\_%%'"
            " AND last_value IS NOT NULL"
        )
        reruns = await run.db.rows(
            "SELECT job_id, count(*) AS n FROM agent_runs WHERE job_id = ANY(%s)"
            " GROUP BY job_id HAVING count(*) <> 1",
            [failing],
        )
        delays = [
            float(r["delay"])
            for r in await run.db.rows(
                "SELECT extract(epoch FROM e.at - r.finished_at) AS delay"
                "  FROM agent_runs r JOIN procrastinate_events e"
                "    ON e.job_id = r.job_id AND e.type = 'succeeded'"
                " WHERE r.status = 'succeeded' AND r.job_id = ANY(%s)",
                [failing],
            )
        ]
        delays.sort()
        logs = run.workers.logs()

        record(
            "4 failed final update",
            jobs=len(job_ids),
            workers=WORKERS,
            injected_failures=fired,
            reconciled=len(delays),
            reconcile_s_p50=delays[len(delays) // 2] if delays else None,
            reconcile_s_max=delays[-1] if delays else None,
            runs=counts.runs_by_status,
            wall_s=duration,
            drain_s=wait_s,
            jobs_per_s=len(job_ids) / duration,
        )
        assert fired == len(failing), f"only {fired} of {len(failing)} injected failures fired"
        assert "injected failure of the final status update" in logs
        assert not reruns, f"reconciled jobs were run again: {reruns}"
        assert len(delays) == len(failing)
        assert delays[-1] <= RECONCILE_BOUND
