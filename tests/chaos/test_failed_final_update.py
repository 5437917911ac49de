"""Failed final status update: ending a job fails after its workflow succeeded.

A trigger in the test database makes the first ``doing -> succeeded`` update of chosen jobs
fail (the per-job sequence it advances is not transactional, so the failure happens exactly
once per job). A worker records a success and ends its job in one statement of the job's
own transaction (see ``orchestrator._runner``), so the failed update takes the success
record and the workflow's effects down with it: nothing of the attempt is committed, and the
attempt is retried like any failed one. Every job must end ``succeeded`` with its effect
written exactly once and one ``succeeded`` run, the failing jobs after one failed attempt
that names the injected error. (Before success and job end were one transaction, the job was
left ``doing`` with a committed success and reconciled by the recovery sweep; reconciling
jobs whose recorded outcome procrastinate never applied is tested in
``tests/integration/core/test_recovery.py``.)
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from tests.chaos.harness import DEFAULT_JOBS, ChaosRun, record
from tests.fix_db import subprocess_env

pytestmark = pytest.mark.chaos

SEED = 4242
WORKERS = 2
#: Share of the jobs whose final status update fails.
FAILING_SHARE = 0.1

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
    # the failed attempts are retried after 0.2 s, not the default 5 s
    env = subprocess_env(database_url, ORCHESTRATOR_DEFAULT_RETRY_DELAY="0.2")
    async with ChaosRun(database_url, tmp_path, worker_env=env) as run:
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
        attempts = await run.db.rows(
            "SELECT job_id, array_agg(status::text ORDER BY id) AS statuses,"
            "       array_agg(COALESCE(error ->> 'message', '') ORDER BY id) AS messages"
            "  FROM agent_runs WHERE job_id = ANY(%s) GROUP BY job_id",
            [failing],
        )
        logs = run.workers.logs()

        record(
            "4 failed final update",
            jobs=len(job_ids),
            workers=WORKERS,
            injected_failures=fired,
            retried=sum(len(r["statuses"]) > 1 for r in attempts),
            runs=counts.runs_by_status,
            wall_s=duration,
            drain_s=wait_s,
            jobs_per_s=len(job_ids) / duration,
        )
        assert fired == len(failing), f"only {fired} of {len(failing)} injected failures fired"
        assert "injected failure of the final status update" in logs
        assert len(attempts) == len(failing)
        for row in attempts:
            # the failed end rolled the success back: one failed attempt, then the success
            assert row["statuses"] == ["retrying", "succeeded"], row
            assert "injected failure of the final status update" in row["messages"][0], row
