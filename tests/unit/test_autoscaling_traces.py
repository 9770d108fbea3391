"""Deriving the benchmark's load series from the traces' CSV files (no download here)."""

from __future__ import annotations

from hack import load_traces

AZURE = """\
arrived_at,num_prefill_tokens,num_decode_tokens
0.1,100,20
0.9,50,10
1.5,80,30
3.99,10,5
"""

TWITTER_HEADER = "timestamp,count\n"


def test_azure_arrivals_per_second() -> None:
    assert load_traces.azure_per_second(AZURE) == [2, 1, 0, 1]


def test_twitter_first_days_only() -> None:
    rows = [f"1980-09-25 {i // 60:02d}:{i % 60:02d}:00,{i}.5" for i in range(3 * 24 * 60)]
    text = TWITTER_HEADER + "\n".join(rows) + "\n"
    series = load_traces.twitter_days(text, days=2)
    assert len(series) == 2 * 24 * 60
    assert series[:2] == [0.5, 1.5]
