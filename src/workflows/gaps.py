"""PT3 maths: compare a client-month's cleaned leads with its package target.

The gap report is what the fulfilment team reads after each monthly run, so it is a plain,
JSON-serialisable value built from plain counts: the PT3 workflow gathers the counts from the
database and this module decides, without I/O, what they mean and what to do next.

* Below target: suggest about one more ZIP per 1,000 missing leads (naming the client's
  approved-but-not-pulled ZIPs nearest numerically to its best-yielding pulled ZIPs), relaxing
  the home-value cap to $1M when rows in ($900k, $1M] exist, and - when the approved ZIPs cannot
  cover the need - more counties and secondary licensed states; with no ZIP left at all, alert
  the head of fulfilment.
* Above target: flag an upsell and give an even per-ZIP sample quota
  (see :func:`allocate_evenly` / :func:`sample_evenly_by_zip`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypedDict, TypeVar

from workflows.formatting import normalize_zip

T = TypeVar("T")
Status = Literal["below_target", "on_target", "above_target"]

TARGET_BY_TIER: Final[Mapping[int, int]] = {100: 15_000, 200: 30_000}
"""Cleaned, verified contacts needed per month, by package tier (replies per month)."""
LEADS_PER_ADDITIONAL_ZIP: Final = 1_000
"""Rule of thumb: one more ZIP code for about every 1,000 missing leads."""


class AddZipsSuggestion(TypedDict):
    kind: Literal["add_zips"]
    message: str
    zips_needed: int
    candidate_zips: list[str]


class RelaxHomeValueSuggestion(TypedDict):
    kind: Literal["relax_home_value_cap"]
    message: str
    new_cap: int
    rows_in_band: int
    estimated_additional_leads: int


class AddCountiesSuggestion(TypedDict):
    kind: Literal["add_counties"]
    message: str


class AddSecondaryStatesSuggestion(TypedDict):
    kind: Literal["add_secondary_states"]
    message: str
    states: list[str]


class AlertHeadOfFulfilmentSuggestion(TypedDict):
    kind: Literal["alert_head_of_fulfilment"]
    message: str


Suggestion = (
    AddZipsSuggestion
    | RelaxHomeValueSuggestion
    | AddCountiesSuggestion
    | AddSecondaryStatesSuggestion
    | AlertHeadOfFulfilmentSuggestion
)


def target_for_tier(tier: int) -> int:
    """Monthly lead target of a package tier: ``100`` -> 15,000, ``200`` -> 30,000."""
    try:
        return TARGET_BY_TIER[tier]
    except KeyError:
        allowed = ", ".join(str(t) for t in sorted(TARGET_BY_TIER))
        raise ValueError(f"unknown package tier {tier!r}; allowed tiers: {allowed}") from None


@dataclass(frozen=True, slots=True)
class ZipYield:
    """Raw rows pulled for a ZIP, rows left after cleaning, and their ratio."""

    zip: str
    pulled: int
    cleaned: int

    @property
    def ratio(self) -> float | None:
        """``cleaned / pulled``; ``None`` when nothing was pulled."""
        return self.cleaned / self.pulled if self.pulled else None

    def to_json(self) -> dict[str, Any]:
        ratio = self.ratio
        return {
            "zip": self.zip,
            "pulled": self.pulled,
            "cleaned": self.cleaned,
            "yield": None if ratio is None else round(ratio, 4),
        }


@dataclass(frozen=True, slots=True)
class GapReport:
    """The PT3 verdict for one client-month; ``to_json()`` gives a JSON-ready dict."""

    tier: int
    target: int
    cleaned_count: int
    zip_yields: tuple[ZipYield, ...]
    suggestions: tuple[Suggestion, ...] = ()
    sample_quota_by_zip: Mapping[str, int] = field(default_factory=dict)
    """Per-ZIP rows to keep when above target (empty otherwise); sums to ``target``."""

    @property
    def gap(self) -> int:
        """Missing leads (``target - cleaned``); negative when above target."""
        return self.target - self.cleaned_count

    @property
    def status(self) -> Status:
        if self.gap > 0:
            return "below_target"
        return "on_target" if self.gap == 0 else "above_target"

    @property
    def upsell(self) -> bool:
        """More leads than the package needs: the client could buy a bigger tier."""
        return self.gap < 0

    def to_json(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "target": self.target,
            "cleaned_count": self.cleaned_count,
            "gap": self.gap,
            "status": self.status,
            "upsell": self.upsell,
            "zip_yields": [zip_yield.to_json() for zip_yield in self.zip_yields],
            "suggestions": [dict(suggestion) for suggestion in self.suggestions],
            "sample_quota_by_zip": dict(self.sample_quota_by_zip),
        }


def allocate_evenly(available_by_zip: Mapping[str, int], target: int) -> dict[str, int]:
    """Split ``target`` rows across ZIPs as evenly as their available rows allow.

    Water-filling: every ZIP gets ``min(available, level)`` or ``level + 1``; ZIPs with
    fewer rows than their share give the leftover to the others. The total is exactly
    ``min(target, sum(available))``. The ``+ 1`` remainders go to the ZIPs with the most
    rows available, ties broken by ZIP, so the result is deterministic.

    >>> allocate_evenly({"a": 2, "b": 10, "c": 10}, 11)
    {'a': 2, 'b': 5, 'c': 4}
    """
    if target < 0:
        raise ValueError(f"target must be >= 0, got {target}")
    if any(count < 0 for count in available_by_zip.values()):
        raise ValueError("available row counts must be >= 0")
    remaining = min(target, sum(available_by_zip.values()))
    quota = dict.fromkeys(available_by_zip, 0)
    by_size = sorted(available_by_zip.items(), key=lambda item: (item[1], item[0]))
    for position, (zip_code, available) in enumerate(by_size):
        open_zips = len(by_size) - position
        if available * open_zips <= remaining:
            quota[zip_code] = available
            remaining -= available
            continue
        level, extra = divmod(remaining, open_zips)
        uncapped = [z for z, _ in sorted(by_size[position:], key=lambda item: (-item[1], item[0]))]
        for rank, zip_uncapped in enumerate(uncapped):
            quota[zip_uncapped] = level + (1 if rank < extra else 0)
        break
    return quota


def sample_evenly_by_zip(rows_by_zip: Mapping[str, Sequence[T]], target: int) -> dict[str, list[T]]:
    """Keep ``min(target, total)`` rows spread evenly across ZIPs (see :func:`allocate_evenly`).

    Each ZIP keeps its *first* rows in the given order, so order rows beforehand (e.g. by a
    hash of their dedupe key) for an unbiased yet repeatable sample. Every input ZIP is a key
    of the result, possibly with an empty list.
    """
    quota = allocate_evenly({zip_code: len(rows) for zip_code, rows in rows_by_zip.items()}, target)
    return {zip_code: list(rows[: quota[zip_code]]) for zip_code, rows in rows_by_zip.items()}


def _zip_number(zip_code: str) -> int | None:
    normalized = normalize_zip(zip_code)
    return None if normalized is None else int(normalized)


def rank_candidate_zips(candidates: Collection[str], zip_yields: Sequence[ZipYield]) -> list[str]:
    """Order candidate ZIPs by numeric distance to the best-yielding pulled ZIPs.

    "Best-yielding" means a yield at or above the median of pulled ZIPs (all pulled ZIPs when
    no yield is known). Ties, and everything when nothing was pulled, go by ZIP ascending.
    Candidates are normalised with ``normalize_zip``; invalid ones are left out.
    """
    with_ratio = [(zy.zip, zy.ratio) for zy in zip_yields if zy.ratio is not None]
    if with_ratio:
        median = statistics.median(ratio for _, ratio in with_ratio)
        anchors = [_zip_number(z) for z, ratio in with_ratio if ratio >= median]
    else:
        anchors = [_zip_number(zy.zip) for zy in zip_yields]
    anchor_numbers = [number for number in anchors if number is not None]
    normalized = sorted({z for z in (normalize_zip(c) for c in candidates) if z is not None})

    def distance(zip_code: str) -> int:
        number = int(zip_code)
        return min((abs(number - a) for a in anchor_numbers), default=0)

    return sorted(normalized, key=lambda z: (distance(z), z))


def build_gap_report(
    *,
    tier: int,
    pulled_by_zip: Mapping[str, int],
    cleaned_by_zip: Mapping[str, int],
    approved_zips: Collection[str] | None = None,
    pulled_zips: Collection[str] | None = None,
    rows_in_relaxed_value_band: int | None = None,
    relaxed_band_pass_rate: float | None = None,
    secondary_states: Collection[str] = (),
) -> GapReport:
    """Build the PT3 report from plain counts.

    ``pulled_by_zip``: raw rows per ZIP (PT1); ``cleaned_by_zip``: rows per ZIP left after PT2.
    ``approved_zips``: all ZIPs the client approved (``None`` = unknown: ZIP candidates are
    not named and neither the shortfall suggestions nor the alert are given).
    ``pulled_zips``: ZIPs already searched (default: the keys of ``pulled_by_zip``, so a ZIP
    searched with zero results should be passed here too).
    ``rows_in_relaxed_value_band``: rows dropped only because their value is in
    ($900,000, $1,000,000] (pass ``None`` when not computed, e.g. for Texas clients whose
    expensive homes go to the HNW segment); the estimate multiplies it by
    ``relaxed_band_pass_rate`` (e.g. the email pass rate) when given, else it is an upper bound.
    ``secondary_states``: other states the client is licensed in but not yet searching.

    >>> report = build_gap_report(tier=100, pulled_by_zip={"75001": 40_000},
    ...                           cleaned_by_zip={"75001": 12_500}, approved_zips=["75001"])
    >>> report.gap, [s["kind"] for s in report.suggestions]
    (2500, ['add_zips', 'add_counties', 'alert_head_of_fulfilment'])
    """
    target = target_for_tier(tier)
    counts = [*pulled_by_zip.values(), *cleaned_by_zip.values(), rows_in_relaxed_value_band or 0]
    if any(count < 0 for count in counts):
        raise ValueError("row counts must be >= 0")
    if relaxed_band_pass_rate is not None and not 0.0 <= relaxed_band_pass_rate <= 1.0:
        raise ValueError(f"pass rate must be within [0, 1], got {relaxed_band_pass_rate}")
    zip_yields = tuple(
        ZipYield(z, pulled_by_zip.get(z, 0), cleaned_by_zip.get(z, 0))
        for z in sorted({*pulled_by_zip, *cleaned_by_zip})
    )
    cleaned_count = sum(cleaned_by_zip.values())
    gap = target - cleaned_count
    if gap < 0:
        quota = allocate_evenly(dict(cleaned_by_zip), target)
        return GapReport(tier, target, cleaned_count, zip_yields, (), quota)
    if gap == 0:
        return GapReport(tier, target, cleaned_count, zip_yields)

    suggestions: list[Suggestion] = []
    zips_needed = math.ceil(gap / LEADS_PER_ADDITIONAL_ZIP)
    candidates: list[str] = []
    if approved_zips is not None:
        pulled = {normalize_zip(z) for z in (pulled_by_zip if pulled_zips is None else pulled_zips)}
        candidates = rank_candidate_zips(
            [z for z in approved_zips if normalize_zip(z) not in pulled], zip_yields
        )[:zips_needed]
    named = f": {', '.join(candidates)}" if candidates else ""
    suggestions.append(
        AddZipsSuggestion(
            kind="add_zips",
            message=f"{gap:,} leads missing: add about {zips_needed} adjacent ZIP(s){named}",
            zips_needed=zips_needed,
            candidate_zips=candidates,
        )
    )
    if rows_in_relaxed_value_band:
        rate = 1.0 if relaxed_band_pass_rate is None else relaxed_band_pass_rate
        estimate = math.floor(rows_in_relaxed_value_band * rate)
        suggestions.append(
            RelaxHomeValueSuggestion(
                kind="relax_home_value_cap",
                message=(
                    f"raise the home-value cap to $1,000,000: {rows_in_relaxed_value_band:,} rows "
                    f"in ($900,000, $1,000,000], about {estimate:,} more leads"
                ),
                new_cap=1_000_000,
                rows_in_band=rows_in_relaxed_value_band,
                estimated_additional_leads=estimate,
            )
        )
    if approved_zips is not None and len(candidates) < zips_needed:
        suggestions.append(
            AddCountiesSuggestion(
                kind="add_counties",
                message=(
                    f"only {len(candidates)} approved ZIP(s) left for {zips_needed} needed: "
                    "ask the client to approve more counties"
                ),
            )
        )
        if secondary_states:
            states = sorted(set(secondary_states))
            suggestions.append(
                AddSecondaryStatesSuggestion(
                    kind="add_secondary_states",
                    message=f"search secondary licensed states: {', '.join(states)}",
                    states=states,
                )
            )
        if not candidates:
            suggestions.append(
                AlertHeadOfFulfilmentSuggestion(
                    kind="alert_head_of_fulfilment",
                    message=f"no approved ZIPs left and {gap:,} leads missing",
                )
            )
    return GapReport(tier, target, cleaned_count, zip_yields, tuple(suggestions))
