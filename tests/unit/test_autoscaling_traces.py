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


def test_twitter_later_days_do_not_overlap_the_first() -> None:
    rows = [f"1980-09-25 00:00:00,{i}" for i in range(3 * 24 * 60)]
    text = TWITTER_HEADER + "\n".join(rows) + "\n"
    later = load_traces.twitter_days(text, first=2, days=1)
    assert later[0] == 24 * 60 and len(later) == 24 * 60
    assert not set(later) & set(load_traces.twitter_days(text, days=1))


# The benchmark's queueing model, shared by every policy it compares ----------------------


def test_queue_waits_grow_with_load_and_the_slo_breaks_near_87_percent() -> None:
    from bench import autoscaling as bench

    waits = [bench.queue_waits(float(r)) for r in range(0, 100, 5)]
    assert waits == sorted(waits)
    assert waits[0] == (0.0, 0.0)

    def p99_latency(rate: float) -> float:
        return bench.EXEC_SECONDS + bench.queue_waits(rate)[1]

    assert p99_latency(bench.TARGET) < bench.SLO_P99_SECONDS  # the owner's target meets the SLO
    assert p99_latency(0.9 * bench.SERVICE_RATE) > bench.SLO_P99_SECONDS
    assert bench.queue_waits(bench.SERVICE_RATE) == (float("inf"), float("inf"))


def test_an_overloaded_second_violates_and_leaves_a_backlog() -> None:
    from bench import autoscaling as bench

    fleet = bench.Fleet(replicas=2)
    assert not fleet.tick(0, 150)  # 75% of capacity
    assert fleet.tick(1, 250)  # 125%: no steady state
    assert fleet.backlog == 50
    assert fleet.snapshot().pending >= 50
