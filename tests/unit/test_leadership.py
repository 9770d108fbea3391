"""Which replica leads, from kopf peering records: kopf's own pause rule."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smallfleet.core import leadership

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
ME = "smallfleet-abc/1/x"


def record(priority: int, seen_ago: float = 5.0, lifetime: int = 60) -> dict[str, Any]:
    seen = NOW - dt.timedelta(seconds=seen_ago)
    return {"priority": priority, "lifetime": lifetime, "lastseen": seen.isoformat()}


CASES: list[tuple[str, dict[str, Any] | None, bool]] = [
    ("no peering status yet", None, False),
    ("not registered yet", {"other": record(1)}, False),
    ("alone", {ME: record(10)}, True),
    ("a lower peer waits", {ME: record(10), "other": record(9)}, True),
    ("a higher peer leads", {ME: record(10), "other": record(11)}, False),
    ("an equal peer pauses both, as kopf does", {ME: record(10), "other": record(10)}, False),
    ("a dead higher peer does not count", {ME: record(10), "other": record(11, 61)}, True),
    ("a peer's own lifetime decides", {ME: record(10), "other": record(11, 61, 120)}, False),
    (
        "a record without a time counts as fresh",
        {ME: record(10), "other": {"priority": 11}},
        False,
    ),
    (
        "a naive time is UTC",
        {ME: record(10), "other": {"priority": 11, "lastseen": "2026-11-26T11:59:30"}},
        False,
    ),
    ("garbage is ignored", {ME: record(10), "other": "x", "third": {"priority": "high"}}, True),
]


@pytest.mark.parametrize(
    ("peers", "want"), [(p, w) for _, p, w in CASES], ids=[i for i, _, _ in CASES]
)
def test_leads(peers: dict[str, Any] | None, want: bool) -> None:
    assert leadership.leads(peers, ME, 10, NOW) is want


@given(st.lists(st.integers(1, 5), min_size=1, max_size=6, unique=True))
def test_exactly_the_highest_of_distinct_live_priorities_leads(priorities: list[int]) -> None:
    peers = {f"p{p}": record(p) for p in priorities}
    leaders = [p for p in priorities if leadership.leads(peers, f"p{p}", p, NOW)]
    assert leaders == [max(priorities)]


def test_random_priorities_are_positive_and_vary() -> None:
    drawn = {leadership.random_priority() for _ in range(50)}
    assert all(1 <= p <= leadership.MAX_PRIORITY for p in drawn)
    assert len(drawn) > 45
