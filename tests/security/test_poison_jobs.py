"""Jobs that cannot crash a worker: limits hold for every way a job gets into the table, and
a job whose arguments are wrong fails with an agent_runs row saying why."""

from __future__ import annotations

import json

import psycopg
import pytest

from orchestrator import InvalidPayload, Orchestrator
from tests.fix_worker import fetch, running_worker, wait_for_status

INSERT_JOB = """
INSERT INTO procrastinate_jobs (queue_name, task_name, args)
VALUES ('default', %(task)s, %(args)s::jsonb) RETURNING id
"""


def _nested(depth: int) -> object:
    value: object = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


async def _insert(orch: Orchestrator, task: str, args: object) -> int:
    text = args if isinstance(args, str) else json.dumps(args)
    rows = await fetch(orch, INSERT_JOB, {"task": task, "args": text})
    return int(rows[0]["id"])


async def test_deeply_nested_arguments_are_refused_by_the_database(orch: Orchestrator) -> None:
    # ~6 KB of JSON nested 3,000 levels (built as text: Python's json cannot encode it)
    deep = '{"payload": ' + '{"a": ' * 3000 + '"leaf"' + "}" * 3000 + "}"
    with pytest.raises(psycopg.errors.CheckViolation, match="orchestrator_job_args_depth"):
        await _insert(orch, "write_row", deep)


async def test_the_depth_check_counts_levels_not_brackets(orch: Orchestrator) -> None:
    """The check's fast path asks whether anything sits 32 levels down; only then is the
    document walked, so wide documents and brackets inside strings are judged by depth."""
    # 33 levels of containers (the payload object holds a 32-deep chain): refused
    with pytest.raises(psycopg.errors.CheckViolation, match="orchestrator_job_args_depth"):
        await _insert(orch, "write_row", {"payload": _nested(32)})
    # exactly 32 levels (the args object, the payload, 30 more): accepted
    assert await _insert(orch, "write_row", {"payload": _nested(30)}) > 0
    # hundreds of brackets inside strings and many shallow containers: accepted
    wide = {"payload": {"text": "[{" * 500, "rows": [[i] for i in range(200)]}}
    assert await _insert(orch, "write_row", wide) > 0


async def test_oversized_arguments_and_absurd_attempts_are_refused(orch: Orchestrator) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match="orchestrator_job_args_size"):
        await _insert(orch, "write_row", {"payload": {"key": "x" * 1_100_000}})
    with pytest.raises(psycopg.errors.CheckViolation, match="orchestrator_job_attempts"):
        await _insert(orch, "write_row", {"payload": {"key": "k"}, "attempts": 100000})
    with pytest.raises(psycopg.errors.CheckViolation, match="orchestrator_job_attempts"):
        await _insert(orch, "write_row", {"payload": {"key": "k"}, "attempts": "many"})
    # within the limits, the same paths work
    assert await _insert(orch, "write_row", {"payload": {"key": "k"}, "attempts": 3}) > 0


async def test_enqueue_refuses_a_deep_payload_with_a_clear_message(orch: Orchestrator) -> None:
    with pytest.raises(InvalidPayload, match="nests deeper than 30 levels"):
        await orch.enqueue_workflow("write_row", {"key": "k", "extra": _nested(200)})


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ({}, "no 'payload' object"),
        ({"payload": "not an object"}, "no 'payload' object"),
        ({"payload": {"key": "k"}, "surprise": 1}, "unexpected job arguments: surprise"),
    ],
)
async def test_a_job_with_wrong_arguments_fails_once_with_the_reason(
    orch: Orchestrator, args: dict[str, object], reason: str
) -> None:
    bad = await _insert(orch, "write_row", args)
    good = await orch.enqueue_workflow("write_row", {"key": "after-the-bad-one"})
    async with running_worker(orch):
        await wait_for_status(orch, bad, "failed")
        await wait_for_status(orch, good, "succeeded")
    runs = await fetch(
        orch, "SELECT status, error FROM agent_runs WHERE job_id = %(id)s", {"id": bad}
    )
    assert [r["status"] for r in runs] == ["failed"]
    assert runs[0]["error"]["type"] == "InvalidPayload"
    assert reason in runs[0]["error"]["message"]
