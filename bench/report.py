"""The results of a run: figures beside their baselines, the table, the JSON file.

A :class:`Result` is one figure with the baseline measured in the same run, the ratio between
them and the :class:`Goal` it is held to. Example::

    Result("enqueue", "batches of 1,000", 12_345.0, "jobs/s", baseline=15_000.0,
           baseline_name="procrastinate batch_defer_async", goal=Goal(10_000, at_least=True))
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Goal:
    """``value`` (or ``ratio`` when ``on_ratio``) must be at least / at most ``target``."""

    target: float
    at_least: bool
    on_ratio: bool = False

    def met(self, value: float, ratio: float | None) -> bool | None:
        subject = ratio if self.on_ratio else value
        if subject is None:
            return None
        return subject >= self.target if self.at_least else subject <= self.target

    def describe(self, unit: str) -> str:
        sign = "≥" if self.at_least else "≤"
        if self.on_ratio:
            return f"ratio {sign} {self.target:g}"
        return f"{sign} {format_value(self.target, unit)}"


@dataclass
class Result:
    """One measured figure beside its same-run baseline."""

    family: str
    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    goal: Goal | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    @property
    def passed(self) -> bool | None:
        return None if self.goal is None else self.goal.met(self.value, self.ratio)

    def as_json(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "baseline": self.baseline,
            "baseline_name": self.baseline_name,
            "ratio": self.ratio,
            "goal": None if self.goal is None else self.goal.describe(self.unit),
            "passed": self.passed,
            "note": self.note,
            "extra": self.extra,
        }


def format_value(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms"
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    if value >= 100:
        return f"{value:,.0f} {unit}"
    return f"{value:.1f} {unit}"


def render_table(results: Sequence[Result]) -> str:
    """The results as an aligned text table (also valid Markdown)."""
    header = ("benchmark", "measured", "baseline", "ratio", "goal", "result", "baseline is")
    rows = [header]
    for r in results:
        rows.append(
            (
                f"{r.family}: {r.name}",
                format_value(r.value, r.unit),
                "—" if r.baseline is None else format_value(r.baseline, r.unit),
                "—" if r.ratio is None else f"{r.ratio:.2f}",
                "—" if r.goal is None else r.goal.describe(r.unit),
                {True: "pass", False: "FAIL", None: "—"}[r.passed],
                r.baseline_name or "—",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    right = {1, 2, 3}

    def line(row: Sequence[str]) -> str:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        return "| " + " | ".join(cells) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(rows[0]), rule, *(line(row) for row in rows[1:])])


def write_results(
    results: Sequence[Result], machine: dict[str, Any], options: dict[str, Any]
) -> Path:
    """Write ``bench/results/<date>.json`` (``<date>-quick.json`` for a quick run)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    today = datetime.date.today().isoformat()
    path = RESULTS_DIR / (f"{today}-quick.json" if options.get("quick") else f"{today}.json")
    document = {
        "date": today,
        "finished_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "options": options,
        "machine": machine,
        "results": [r.as_json() for r in results],
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    return path
