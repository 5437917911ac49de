"""``python -m bench [--quick] [--only enqueue,throughput,...] [--growth-rows N]``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Sequence

from bench import (
    dashboard,
    enqueue,
    fleet,
    growth,
    ingest,
    latency,
    limits,
    pipeline,
    throughput,
)
from bench.harness import Bench, progress
from bench.report import Result, render_table, write_results
from orchestrator._gc import tune_for_worker

Family = Callable[[Bench], Awaitable[list[Result]]]
FAMILIES: dict[str, Family] = {
    "enqueue": enqueue.run,
    "throughput": throughput.run,
    "latency": latency.run,
    "pipeline": pipeline.run,
    "ingest": ingest.run,
    "growth": growth.run,
    "dashboard": dashboard.run,
    "limits": limits.run,
    "fleet": fleet.run,
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Benchmarks, each beside a same-run baseline."
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (under two minutes)")
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 when a goal is missed"
    )
    parser.add_argument(
        "--only",
        default=",".join(FAMILIES),
        help=f"comma-separated families (default: all of {', '.join(FAMILIES)})",
    )
    parser.add_argument(
        "--growth-rows",
        type=int,
        default=None,
        help="finished jobs and agent_runs rows for the growth family "
        "(default 1,000,000; 20,000 with --quick)",
    )
    args = parser.parse_args(argv)
    args.families = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(args.families) - set(FAMILIES))
    if unknown or not args.families:
        parser.error(f"unknown family {', '.join(unknown)}; choose from {', '.join(FAMILIES)}")
    if args.growth_rows is None:
        args.growth_rows = 20_000 if args.quick else 1_000_000
    if args.growth_rows < 1:
        parser.error("--growth-rows must be positive")
    return args


async def run(args: argparse.Namespace) -> int:
    bench = Bench(quick=args.quick, growth_rows=args.growth_rows)
    # The stand-ins serve from this process: the worker's collector tuning keeps them from
    # pausing tens of milliseconds to walk the objects the families keep alive.
    tune_for_worker()
    started = time.monotonic()
    results: list[Result] = []
    crashed: list[str] = []
    await asyncio.to_thread(bench.start)
    try:
        for name in args.families:
            family_started = time.monotonic()
            progress(f"{name} ...")
            try:
                results.extend(await FAMILIES[name](bench))
            except Exception:  # one broken family must not cost the others' figures
                logging.getLogger("bench").exception("benchmark family %s failed", name)
                crashed.append(name)
                continue
            progress(f"{name} done in {time.monotonic() - family_started:.1f} s")
        machine = await asyncio.to_thread(bench.machine)
    finally:
        await asyncio.to_thread(bench.close)
    print(render_table(results))
    print()
    print(
        f"machine: {machine['cpu_count']} x {machine['cpu_model']}, Python {machine['python']}, "
        f"PostgreSQL {machine['postgres_server_version']} ({machine['database']}); "
        f"{time.monotonic() - started:.0f} s"
    )
    path = write_results(
        results,
        machine,
        {"quick": args.quick, "families": args.families, "growth_rows": args.growth_rows},
    )
    print(f"results: {path}")
    if crashed:
        print(f"FAILED to run: {', '.join(crashed)} (see the errors above)")
        return 1
    missed = [f"{r.family}: {r.name}" for r in results if r.passed is False]
    return 1 if args.strict and missed else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
