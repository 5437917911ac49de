"""Table-driven tests of the PT3 maths in ``workflows.gaps``."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from typing import Any

import pytest

from workflows.gaps import (
    TARGET_BY_TIER,
    GapReport,
    Status,
    ZipYield,
    allocate_evenly,
    build_gap_report,
    rank_candidate_zips,
    sample_evenly_by_zip,
    target_for_tier,
)

PULLED = {"75001": 10_000, "75002": 10_000, "75010": 10_000}
CLEANED = {"75001": 5_000, "75002": 2_000, "75010": 4_000}  # 11,000: 4,000 short of 15,000
APPROVED = ["75001", "75002", "75010", "75003", "75009", "75011", "75020", "75100", "75500"]


@pytest.mark.parametrize(("tier", "expected"), [(100, 15_000), (200, 30_000)])
def test_target_for_tier(tier: int, expected: int) -> None:
    assert target_for_tier(tier) == expected == TARGET_BY_TIER[tier]


@pytest.mark.parametrize("tier", [0, 150, -100, 300])
def test_target_for_tier_rejects(tier: int) -> None:
    with pytest.raises(ValueError, match="allowed tiers: 100, 200"):
        target_for_tier(tier)


@pytest.mark.parametrize(
    ("available", "target", "expected"),
    [
        ({"a": 2, "b": 10, "c": 10}, 11, {"a": 2, "b": 5, "c": 4}),
        ({"a": 3, "b": 3, "c": 3}, 9, {"a": 3, "b": 3, "c": 3}),
        ({"a": 3, "b": 3, "c": 3}, 4, {"a": 2, "b": 1, "c": 1}),
        ({"a": 3, "b": 3, "c": 3}, 100, {"a": 3, "b": 3, "c": 3}),
        ({"a": 1, "b": 100, "c": 100, "d": 2}, 10, {"a": 1, "b": 4, "c": 3, "d": 2}),
        ({"z": 5, "a": 6}, 5, {"z": 2, "a": 3}),  # the ZIP with more rows gets the remainder
        ({"a": 0, "b": 7}, 3, {"a": 0, "b": 3}),
        ({"a": 4, "b": 4}, 0, {"a": 0, "b": 0}),
        ({"a": 5}, 10, {"a": 5}),
        ({}, 10, {}),
    ],
)
def test_allocate_evenly(available: dict[str, int], target: int, expected: dict[str, int]) -> None:
    assert allocate_evenly(available, target) == expected


@pytest.mark.parametrize(("available", "target"), [({"a": 1}, -1), ({"a": -1}, 1)])
def test_allocate_evenly_rejects(available: dict[str, int], target: int) -> None:
    with pytest.raises(ValueError):
        allocate_evenly(available, target)


def _check_allocation(available: Mapping[str, int], target: int, quota: Mapping[str, int]) -> None:
    assert quota.keys() == available.keys()
    assert sum(quota.values()) == min(target, sum(available.values()))
    assert all(0 <= quota[z] <= available[z] for z in available)
    unsaturated = [quota[z] for z in available if quota[z] < available[z]]
    if unsaturated:  # a ZIP short of rows gets all of them; every other ZIP is level or level+1
        assert max(quota.values()) <= min(unsaturated) + 1


def test_allocate_evenly_invariants() -> None:
    rng = random.Random(20260115)
    for case in range(400):
        zips = [f"{75000 + n:05d}" for n in rng.sample(range(1000), rng.randint(0, 8))]
        available = {
            z: rng.choice([0, 1, 2, rng.randint(0, 50), rng.randint(0, 5000)]) for z in zips
        }
        total = sum(available.values())
        for target in {0, 1, case, total // 2, total - 1, total, total + 7}:
            if target < 0:
                continue
            quota = allocate_evenly(available, target)
            _check_allocation(available, target, quota)
            reordered = dict(reversed(list(available.items())))
            assert allocate_evenly(reordered, target) == quota


def test_sample_evenly_by_zip() -> None:
    rows = {"02134": ["a1", "a2"], "75001": [f"b{n}" for n in range(10)], "75002": []}
    sample = sample_evenly_by_zip(rows, 7)
    assert sample == {"02134": ["a1", "a2"], "75001": ["b0", "b1", "b2", "b3", "b4"], "75002": []}
    assert sample_evenly_by_zip(rows, 100) == {z: list(r) for z, r in rows.items()}
    assert sample_evenly_by_zip({}, 5) == {}


def test_sample_evenly_by_zip_invariants() -> None:
    rng = random.Random(7)
    for _ in range(200):
        rows_by_zip = {
            f"{rng.randint(1000, 99999):05d}": tuple(range(rng.randint(0, 40)))
            for _ in range(rng.randint(1, 6))
        }
        available = {z: len(r) for z, r in rows_by_zip.items()}
        for target in range(sum(available.values()) + 2):
            sample = sample_evenly_by_zip(rows_by_zip, target)
            _check_allocation(available, target, {z: len(s) for z, s in sample.items()})
            assert all(list(rows_by_zip[z][: len(s)]) == s for z, s in sample.items())


@pytest.mark.parametrize(
    ("candidates", "yields", "expected"),
    [
        (
            ["75003", "75009", "75011", "75020", "75500"],
            [ZipYield("75001", 100, 50), ZipYield("75002", 100, 20), ZipYield("75010", 100, 40)],
            ["75009", "75011", "75003", "75020", "75500"],
        ),
        (["75020", "2134", "bad", "75003"], [], ["02134", "75003", "75020"]),
        (["75020", "75003"], [ZipYield("75021", 0, 0)], ["75020", "75003"]),
        ([], [ZipYield("75001", 10, 5)], []),
    ],
)
def test_rank_candidate_zips(
    candidates: list[str], yields: list[ZipYield], expected: list[str]
) -> None:
    assert rank_candidate_zips(candidates, yields) == expected


@pytest.mark.parametrize(
    ("pulled", "cleaned", "ratio"),
    [(100, 25, 0.25), (3, 1, 1 / 3), (0, 0, None), (0, 5, None)],
)
def test_zip_yield_ratio(pulled: int, cleaned: int, ratio: float | None) -> None:
    zip_yield = ZipYield("75001", pulled, cleaned)
    assert zip_yield.ratio == ratio
    assert zip_yield.to_json()["yield"] == (None if ratio is None else round(ratio, 4))


@pytest.mark.parametrize(
    ("tier", "cleaned", "status", "gap", "upsell"),
    [
        (100, 11_000, "below_target", 4_000, False),
        (100, 14_999, "below_target", 1, False),
        (100, 15_000, "on_target", 0, False),
        (100, 15_001, "above_target", -1, True),
        (200, 15_001, "below_target", 14_999, False),
        (200, 45_000, "above_target", -15_000, True),
        (100, 0, "below_target", 15_000, False),
    ],
)
def test_status(tier: int, cleaned: int, status: Status, gap: int, upsell: bool) -> None:
    report = build_gap_report(tier=tier, pulled_by_zip={}, cleaned_by_zip={"75001": cleaned})
    assert (report.status, report.gap, report.upsell) == (status, gap, upsell)
    assert report.cleaned_count == cleaned
    assert report.target == TARGET_BY_TIER[tier]


@pytest.mark.parametrize(
    ("cleaned", "zips_needed"),
    [(14_999, 1), (14_000, 1), (13_999, 2), (11_000, 4), (0, 15)],
)
def test_one_zip_per_thousand_missing(cleaned: int, zips_needed: int) -> None:
    report = build_gap_report(tier=100, pulled_by_zip={}, cleaned_by_zip={"75001": cleaned})
    [suggestion] = report.suggestions
    assert suggestion["kind"] == "add_zips"
    assert suggestion["zips_needed"] == zips_needed
    assert suggestion["candidate_zips"] == []


def _kinds(report: GapReport) -> list[str]:
    return [suggestion["kind"] for suggestion in report.suggestions]


def test_below_target_names_nearest_candidates() -> None:
    report = build_gap_report(
        tier=100, pulled_by_zip=PULLED, cleaned_by_zip=CLEANED, approved_zips=APPROVED
    )
    assert report.status == "below_target"
    assert _kinds(report) == ["add_zips"]
    add_zips = report.suggestions[0]
    assert add_zips["kind"] == "add_zips"
    assert add_zips["zips_needed"] == 4
    assert add_zips["candidate_zips"] == ["75009", "75011", "75003", "75020"]
    assert "4,000 leads missing" in add_zips["message"]
    assert report.sample_quota_by_zip == {}


@pytest.mark.parametrize(
    ("rows", "rate", "estimate"),
    [(1_200, None, 1_200), (1_200, 0.5, 600), (999, 0.25, 249), (1, 0.0, 0)],
)
def test_relax_home_value_cap(rows: int, rate: float | None, estimate: int) -> None:
    report = build_gap_report(
        tier=100,
        pulled_by_zip=PULLED,
        cleaned_by_zip=CLEANED,
        rows_in_relaxed_value_band=rows,
        relaxed_band_pass_rate=rate,
    )
    assert _kinds(report) == ["add_zips", "relax_home_value_cap"]
    relax = report.suggestions[1]
    assert relax["kind"] == "relax_home_value_cap"
    assert (relax["new_cap"], relax["rows_in_band"]) == (1_000_000, rows)
    assert relax["estimated_additional_leads"] == estimate


@pytest.mark.parametrize("rows", [None, 0])
def test_no_relax_suggestion_without_rows(rows: int | None) -> None:
    report = build_gap_report(
        tier=100, pulled_by_zip=PULLED, cleaned_by_zip=CLEANED, rows_in_relaxed_value_band=rows
    )
    assert _kinds(report) == ["add_zips"]


@pytest.mark.parametrize(
    ("approved", "secondary", "kinds", "candidates"),
    [
        (
            [*PULLED, "75003"],
            ["OK", "NM", "OK"],
            ["add_zips", "add_counties", "add_secondary_states"],
            ["75003"],
        ),
        ([*PULLED, "75003"], [], ["add_zips", "add_counties"], ["75003"]),
        (
            list(PULLED),
            ["NM"],
            ["add_zips", "add_counties", "add_secondary_states", "alert_head_of_fulfilment"],
            [],
        ),
        ([], [], ["add_zips", "add_counties", "alert_head_of_fulfilment"], []),
        (None, ["NM"], ["add_zips"], []),  # approved ZIPs unknown: nothing to conclude
    ],
)
def test_shortfall_suggestions(
    approved: list[str] | None, secondary: list[str], kinds: list[str], candidates: list[str]
) -> None:
    report = build_gap_report(
        tier=100,
        pulled_by_zip=PULLED,
        cleaned_by_zip=CLEANED,
        approved_zips=approved,
        secondary_states=secondary,
    )
    assert _kinds(report) == kinds
    add_zips = report.suggestions[0]
    assert add_zips["kind"] == "add_zips"
    assert add_zips["candidate_zips"] == candidates
    for suggestion in report.suggestions:
        if suggestion["kind"] == "add_secondary_states":
            assert suggestion["states"] == sorted(set(secondary))


def test_pulled_zips_and_zip_normalisation() -> None:
    report = build_gap_report(
        tier=100,
        pulled_by_zip={"02134": 5_000},
        cleaned_by_zip={"02134": 2_000},
        approved_zips=["2134", "02135", "2136.0", "02199"],
        pulled_zips=["02134", "02135"],  # 02135 was searched but returned no rows
    )
    add_zips = report.suggestions[0]
    assert add_zips["kind"] == "add_zips"
    assert add_zips["candidate_zips"] == ["02136", "02199"]


def test_above_target_samples_evenly_and_flags_upsell() -> None:
    cleaned = {"75001": 12_000, "75002": 1_000, "75003": 7_001}
    report = build_gap_report(tier=100, pulled_by_zip=cleaned, cleaned_by_zip=cleaned)
    assert (report.status, report.upsell, report.gap) == ("above_target", True, -5_001)
    assert report.suggestions == ()
    assert report.sample_quota_by_zip == {"75001": 7_000, "75002": 1_000, "75003": 7_000}


def test_to_json_is_serialisable() -> None:
    report = build_gap_report(
        tier=100,
        pulled_by_zip={"75001": 3, "75002": 0},
        cleaned_by_zip={"75001": 1, "75005": 4},
        approved_zips=["75001", "75002", "75006"],
        rows_in_relaxed_value_band=10,
    )
    payload: dict[str, Any] = json.loads(json.dumps(report.to_json()))
    assert payload["tier"] == 100
    assert payload["target"] == 15_000
    assert payload["cleaned_count"] == 5
    assert payload["gap"] == 14_995
    assert payload["status"] == "below_target"
    assert payload["upsell"] is False
    assert payload["zip_yields"] == [
        {"zip": "75001", "pulled": 3, "cleaned": 1, "yield": 0.3333},
        {"zip": "75002", "pulled": 0, "cleaned": 0, "yield": None},
        {"zip": "75005", "pulled": 0, "cleaned": 4, "yield": None},
    ]
    assert [s["kind"] for s in payload["suggestions"]] == [
        "add_zips",
        "relax_home_value_cap",
        "add_counties",
    ]
    assert payload["suggestions"][0]["candidate_zips"] == ["75006"]
    assert payload["sample_quota_by_zip"] == {}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tier": 150},
        {"pulled_by_zip": {"75001": -1}},
        {"cleaned_by_zip": {"75001": -1}},
        {"rows_in_relaxed_value_band": -5},
        {"relaxed_band_pass_rate": 1.5},
        {"relaxed_band_pass_rate": -0.1},
    ],
)
def test_build_gap_report_rejects(kwargs: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {"tier": 100, "pulled_by_zip": {}, "cleaned_by_zip": {}}
    with pytest.raises(ValueError):
        build_gap_report(**(arguments | kwargs))
