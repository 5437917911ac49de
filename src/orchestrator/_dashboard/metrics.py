"""``/metrics``: Prometheus text, read from the database at scrape time.

Nothing is counted in process memory: every figure comes from the database, so any number
of console processes answer the same. The attempt counters and the duration histogram cover
all of ``agent_runs`` (kept forever, so its totals only grow) without reading it: triggers
keep ``orchestrator_run_counts`` (migration 0011) as attempts finish, and a scrape sums that
small table, so it costs the same at a thousand or a million runs. A snapshot is reused for
:data:`CACHE_S` seconds, so several scrapers cost one set of queries.

=============================================  =====================================================
``orchestrator_jobs_enqueued_total``           jobs per workflow: first attempts recorded + jobs
                                               not started yet (a job cancelled before it ever ran
                                               drops out once pruned)
``orchestrator_attempts_total``                attempts per workflow and outcome (succeeded,
                                               failed, retrying, abandoned, cancelled, running)
``orchestrator_attempts_abandoned_total``      attempts a lost worker left behind, per workflow
``orchestrator_attempt_duration_seconds``      histogram of finished attempts' durations
``orchestrator_queue_wait_seconds``            enqueue → first start, jobs started in the last
                                               hour (p50, p95, max), per workflow
``orchestrator_jobs``                          jobs per workflow and state (queue depth: waiting,
                                               delayed, active; and finished ones)
``orchestrator_oldest_waiting_seconds``        age of the oldest waiting job, per workflow
``orchestrator_worker_heartbeat_age_seconds``  seconds since each worker's last heartbeat
``orchestrator_workers``                       registered workers
``orchestrator_database_up``                   1 when the last scrape could read the database
=============================================  =====================================================
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from orchestrator._dashboard.data import Conn, _rows
from orchestrator._status import STATES

#: Upper bounds (seconds) of the duration histogram; the database's
#: ``orchestrator_run_duration_bucket`` counts with the same bounds (migration 0011).
DURATION_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)
CACHE_S = 5.0


@dataclass
class Snapshot:
    """Everything one scrape reports."""

    up: bool = True
    runs: list[dict[str, Any]] = field(default_factory=list)
    durations: dict[str, dict[float, int]] = field(default_factory=dict)
    queue_wait: list[dict[str, Any]] = field(default_factory=list)
    counts: list[dict[str, Any]] = field(default_factory=list)
    oldest: list[dict[str, Any]] = field(default_factory=list)
    workers: list[dict[str, Any]] = field(default_factory=list)
    not_started: dict[str, int] = field(default_factory=dict)


async def read_snapshot(conn: Conn) -> Snapshot:
    snap = Snapshot()
    runs: dict[tuple[str, str], dict[str, Any]] = {}
    for row in await _rows(conn, "metrics_runs"):
        key = (row["workflow"], row["status"])
        total = runs.setdefault(
            key,
            {
                "workflow": key[0],
                "status": key[1],
                "n": 0,
                "first_attempts": 0,
                "duration_sum": 0.0,
            },
        )
        total["n"] += int(row["n"])
        total["first_attempts"] += int(row["first_attempts"])
        total["duration_sum"] += float(row["duration_sum"])
        if row["bucket"] is not None:
            # bucket k holds durations in [bound k-1, bound k): counted for every bound >= k
            by_bound = snap.durations.setdefault(row["workflow"], {})
            for index, bound in enumerate(DURATION_BUCKETS):
                if int(row["bucket"]) <= index:
                    by_bound[bound] = by_bound.get(bound, 0) + int(row["n"])
    snap.runs = list(runs.values())
    snap.queue_wait = list(await _rows(conn, "metrics_queue_wait"))
    snap.counts = [r for r in await _rows(conn, "queue_counts") if r["workflow"] != "*"]
    snap.oldest = list(await _rows(conn, "oldest_waiting"))
    snap.workers = list(await _rows(conn, "metrics_workers"))
    snap.not_started = {
        r["workflow"]: int(r["n"]) for r in await _rows(conn, "metrics_waiting_first")
    }
    return snap


class SnapshotCollector(Collector):
    """Turns a :class:`Snapshot` into metric families (prometheus-client's custom collector)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        up = GaugeMetricFamily(
            "orchestrator_database_up", "1 when the database answered this scrape"
        )
        up.add_metric([], 1.0 if snap.up else 0.0)
        yield up
        if not snap.up:
            return

        enqueued = CounterMetricFamily(
            "orchestrator_jobs_enqueued",
            "Workflow jobs enqueued: first attempts recorded plus jobs not started yet",
            labels=["workflow"],
        )
        attempts = CounterMetricFamily(
            "orchestrator_attempts",
            "Attempts by workflow and outcome",
            labels=["workflow", "outcome"],
        )
        abandoned = CounterMetricFamily(
            "orchestrator_attempts_abandoned",
            "Attempts left without an outcome by a lost worker",
            labels=["workflow"],
        )
        first: dict[str, int] = dict(snap.not_started)
        finished: dict[str, tuple[int, float]] = {}
        abandoned_by: dict[str, int] = {}
        for row in snap.runs:
            workflow, status, n = row["workflow"], row["status"], int(row["n"])
            attempts.add_metric([workflow, status], n)
            first[workflow] = first.get(workflow, 0) + int(row["first_attempts"])
            if status == "abandoned":
                abandoned_by[workflow] = abandoned_by.get(workflow, 0) + n
            if status != "running":
                count, total = finished.get(workflow, (0, 0.0))
                finished[workflow] = (count + n, total + float(row["duration_sum"]))
        for workflow, n in sorted(first.items()):
            enqueued.add_metric([workflow], n)
        for workflow in sorted({*abandoned_by, *finished}):
            abandoned.add_metric([workflow], abandoned_by.get(workflow, 0))
        yield enqueued
        yield attempts
        yield abandoned

        histogram = HistogramMetricFamily(
            "orchestrator_attempt_duration_seconds",
            "Durations of finished attempts",
            labels=["workflow"],
        )
        for workflow, (count, total) in sorted(finished.items()):
            by_bound = snap.durations.get(workflow, {})
            buckets = [(_le(b), float(by_bound.get(b, 0))) for b in DURATION_BUCKETS]
            buckets.append(("+Inf", float(count)))
            histogram.add_metric([workflow], buckets, sum_value=total)
        yield histogram

        wait = GaugeMetricFamily(
            "orchestrator_queue_wait_seconds",
            "Enqueue to first start of jobs started in the last hour",
            labels=["workflow", "stat"],
        )
        for row in snap.queue_wait:
            for stat in ("p50", "p95", "max"):
                wait.add_metric([row["workflow"], stat], float(row[stat] or 0.0))
        yield wait

        depth = GaugeMetricFamily(
            "orchestrator_jobs", "Workflow jobs by state", labels=["workflow", "state"]
        )
        for row in snap.counts:
            for state in STATES:
                depth.add_metric([row["workflow"], state], float(row[state]))
        yield depth

        oldest = GaugeMetricFamily(
            "orchestrator_oldest_waiting_seconds",
            "Age of the oldest waiting job",
            labels=["workflow"],
        )
        for row in snap.oldest:
            oldest.add_metric([row["workflow"]], max(0.0, float(row["age_s"] or 0.0)))
        yield oldest

        heartbeat = GaugeMetricFamily(
            "orchestrator_worker_heartbeat_age_seconds",
            "Seconds since a worker's last heartbeat",
            labels=["worker_id"],
        )
        for row in snap.workers:
            heartbeat.add_metric([str(row["worker_id"])], float(row["heartbeat_age_s"]))
        yield heartbeat
        workers = GaugeMetricFamily("orchestrator_workers", "Registered workers")
        workers.add_metric([], float(len(snap.workers)))
        yield workers


def _le(bound: float) -> str:
    return f"{bound:g}" if bound != int(bound) else f"{bound:.1f}"


def render(snapshot: Snapshot) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    return generate_latest(registry)


class MetricsCache:
    """The last rendered scrape, reused for ``ttl`` seconds."""

    def __init__(self, ttl: float = CACHE_S) -> None:
        self.ttl = ttl
        self._body: bytes | None = None
        self._at = 0.0
        self._lock = asyncio.Lock()

    async def get(self, read: Any) -> bytes:
        async with self._lock:
            if self._body is None or time.monotonic() - self._at > self.ttl:
                try:
                    snapshot = await read()
                except Exception:
                    snapshot = Snapshot(up=False)
                    self._body, self._at = render(snapshot), 0.0
                    return self._body
                self._body, self._at = render(snapshot), time.monotonic()
            return self._body
