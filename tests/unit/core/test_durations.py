"""Human durations for the CLI (table-driven)."""

from __future__ import annotations

import pytest

from orchestrator._durations import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("1.5", 1.5),
        ("30", 30.0),
        ("30s", 30.0),
        ("250ms", 0.25),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("2d", 172800.0),
        ("1h30m", 5400.0),
        ("1m30s", 90.0),
        ("1d2h3m4s", 93784.0),
        ("1.5h", 5400.0),
        ("1m500ms", 60.5),
        (" 30S ", 30.0),
        ("1h 30m", 5400.0),
        ("0s", 0.0),
    ],
)
def test_valid_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty duration"),
        ("   ", "empty duration"),
        ("-5", "finite number >= 0"),
        ("nan", "finite number >= 0"),
        ("inf", "finite number >= 0"),
        ("5x", "invalid duration"),
        ("m5", "invalid duration"),
        ("5 minutes", "invalid duration"),
        ("1h-30m", "invalid duration"),
        ("s", "invalid duration"),
        ("1h30", "invalid duration"),
        ("-5s", "invalid duration"),
    ],
)
def test_invalid_durations_name_the_accepted_forms(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_duration(text)
    if message == "invalid duration":
        assert repr(text) in str(info.value)
        assert "30s" in str(info.value)
