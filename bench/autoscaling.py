"""Replay real load traces through smallfleet's scaler and an HPA-equivalent one, side by side.

The question is not "does the decision work" (the unit tests say so) but
"how does it behave against the Kubernetes default on real traffic". Each
trace drives a small capacity model of a Triton fleet: every ready replica
serves `SERVICE_RATE` inferences/s, requests beyond that wait in Triton's
queue, and a new replica serves only `STARTUP_SECONDS` after it was asked
for. The fleet keeps Triton's cumulative counters exactly as a server
exposes them, and both policies read them:

- smallfleet: `smallfleet.core.autoscaling.decide` with the spec defaults
  (tolerance 10%, scale-up window 0 s, scale-down window 120 s, steps 4 up /
  1 down), fed every 5 s by `smallfleet.metricsource.DirectSource` parsing
  the fleet's /metrics text, with rates over the last 30 s (so it sees
  demand: served inferences plus the growth of the queue).
- hpa: the HorizontalPodAutoscaler algorithm with Kubernetes' defaults
  (15 s sync, 10% tolerance, no scale-up window, 300 s scale-down window
  keeping the highest recommendation, scale-up limited to max(+100%, +4
  pods) per 15 s, scale-down by up to 100% per 15 s), reading the per-pod
  rate of `nv_inference_count` as a Prometheus metrics adapter serves it
  (`rate(...[1m])` over 15 s scrapes). Where the model simplifies, it
  favours the HPA: the adapter answers with the scrape of the same second
  (no staleness), and a starting pod is simply not counted, where the real
  controller counts a running pod without metrics as using nothing during
  a scale-up, which can only hold the count back; and the scale-up limit
  is the documented default policy pair, which allows at least what the
  controller's built-in max(2x, 4 pods) allows when an HPA sets no
  `behavior`. The readiness delays
  (`--horizontal-pod-autoscaler-initial-readiness-delay`, CPU
  initialisation period) apply to CPU metrics only, so the one delay
  modelled is the replica's own start (`STARTUP_SECONDS`, for every policy).
- hpa-demand: the same HPA algorithm fed smallfleet's 5-s demand signal at
  its 15 s sync, to separate what the policy does from what the signal does.

Figures per trace and policy: time from a load step until the decided and
until the ready replica count covers the new load at target; replica-seconds
above need (need: the 60-s mean load divided by the target); seconds under
capacity (60-s mean load above what ready replicas serve), seconds above the
band (60-s mean load per ready replica above target + 10%: hotter than asked
for, the price of not chasing every rise); direction changes
of the decided replica count (a move up after a move down or the reverse;
several moves the same way count as none), and flaps: reversals within 2
minutes of the move they undo, the oscillation a stabilisation window should
prevent. The "(need)" row counts the same for the need itself: how often the
load's own 60-s mean turns. The traces and their licenses are in bench/README.md;
`hack/load_traces.py` fetches them into the cache.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "operator"), str(ROOT)]

from hack import load_traces  # noqa: E402

from smallfleet.core.autoscaling import ScalerState, decide  # noqa: E402
from smallfleet.core.spec import Scaling  # noqa: E402
from smallfleet.core.tritonmetrics import TritonSnapshot, rates  # noqa: E402
from smallfleet.metricsource import DEFAULT_RATE_WINDOW, DirectSource  # noqa: E402

SERVICE_RATE: Final = 100.0  # inferences/s one replica serves at full load
TARGET: Final = 80.0  # inferences/s per replica the owner asks for (80% of capacity)
STARTUP_SECONDS: Final = 30  # Triton pod start and model load
MIN_REPLICAS: Final = 1
MAX_REPLICAS: Final = 60
BATCH: Final = 4.0  # inferences per execution, for the exec counter
SMALLFLEET_INTERVAL: Final = 5
HPA_SYNC: Final = 15
PROM_SCRAPE: Final = 15
PROM_WINDOW: Final = 60
HPA_TOLERANCE: Final = 0.1
HPA_DOWN_WINDOW: Final = 300
NEED_WINDOW: Final = 60
FLAP_SECONDS: Final = 120


@dataclass
class Fleet:
    """Ready and starting replicas, a fluid queue, and Triton's cumulative counters."""

    replicas: int
    starting: deque[int] = field(default_factory=deque)  # ready-at times of starting replicas
    backlog: float = 0.0
    served_total: float = 0.0
    queue_us_total: float = 0.0

    @property
    def desired(self) -> int:
        return self.replicas + len(self.starting)

    def scale_to(self, n: int, now: int) -> None:
        while self.desired < n:
            self.starting.append(now + STARTUP_SECONDS)
        while self.desired > n:
            if self.starting:
                self.starting.pop()  # the newest, least ready replica goes first
            else:
                self.replicas -= 1

    def tick(self, now: int, arrivals: float) -> None:
        while self.starting and self.starting[0] <= now:
            self.starting.popleft()
            self.replicas += 1
        capacity = self.replicas * SERVICE_RATE
        served = min(self.backlog + arrivals, capacity)
        self.backlog += arrivals - served
        self.served_total += served
        self.queue_us_total += self.backlog * 1e6

    def exposition(self) -> str:
        """The counters as Triton's /metrics text."""
        s = self.snapshot()
        labels = '{model="bench",version="1"}'
        return "".join(
            f"# TYPE {name} {kind}\n{name}{labels} {value:.17g}\n"
            for name, kind, value in (
                ("nv_inference_request_success", "counter", s.request_success),
                ("nv_inference_count", "counter", s.inference_count),
                ("nv_inference_exec_count", "counter", s.exec_count),
                ("nv_inference_queue_duration_us", "counter", s.queue_duration_us),
                ("nv_inference_pending_request_count", "gauge", s.pending),
            )
        )

    def snapshot(self) -> TritonSnapshot:
        return TritonSnapshot(
            model="bench",
            request_success=self.served_total,
            inference_count=self.served_total,
            exec_count=self.served_total / BATCH,
            queue_duration_us=self.queue_us_total,
            pending=self.backlog,
        )


Policy = Callable[[int, Fleet], int | None]  # (second, fleet) -> new desired count or None


def smallfleet_policy() -> Policy:
    """The operator's loop: scrape every 5 s through DirectSource (30-s rates), then decide."""
    scaling = Scaling(
        min_replicas=MIN_REPLICAS,
        max_replicas=MAX_REPLICAS,
        metric="inferencesPerSecond",
        target=TARGET,
    )
    state = ScalerState()
    clock = [0.0]
    exposition = [""]
    source = DirectSource(
        window=DEFAULT_RATE_WINDOW,
        fetch=lambda url, timeout: exposition[0],
        clock=lambda: clock[0],
    )

    def step(now: int, fleet: Fleet) -> int | None:
        nonlocal state
        if now % SMALLFLEET_INTERVAL:
            return None
        clock[0] = float(now)
        exposition[0] = fleet.exposition()
        # The fleet's counters are one server's; a sample stands for its ready replicas.
        sample = source.sample("bench", "bench", ["127.0.0.1"])
        if sample is not None:
            sample = replace(sample, replicas=fleet.replicas, expected_replicas=fleet.replicas)
        decision, state = decide(scaling, state, sample, float(now), fleet.desired, None)
        return decision.desired

    return step


def hpa_policy(signal: str) -> Policy:
    """Kubernetes' HPA algorithm with its defaults; `signal` is "adapter" or "demand"."""
    scrapes: deque[tuple[int, float]] = deque()
    recommendations: deque[tuple[int, int]] = deque()
    prev: list[TritonSnapshot] = []

    def metric(now: int, fleet: Fleet) -> float | None:
        if signal == "demand":
            cur = fleet.snapshot()
            value = rates(prev[0], cur, HPA_SYNC).demand if prev else None
            prev[:] = [cur]
            return value
        window = [(t, v) for t, v in scrapes if t > now - PROM_WINDOW]
        if len(window) < 2:
            return None
        (t0, v0), (t1, v1) = window[0], window[-1]
        return (v1 - v0) / (t1 - t0)

    def step(now: int, fleet: Fleet) -> int | None:
        if now % PROM_SCRAPE == 0:
            scrapes.append((now, fleet.served_total))
            while scrapes and scrapes[0][0] <= now - 2 * PROM_WINDOW:
                scrapes.popleft()
        if now % HPA_SYNC:
            return None
        total = metric(now, fleet)
        current = fleet.desired
        if total is None or fleet.replicas == 0:
            return None
        ratio = total / fleet.replicas / TARGET
        raw = current if abs(ratio - 1) <= HPA_TOLERANCE else math.ceil(total / TARGET)
        raw = max(MIN_REPLICAS, min(MAX_REPLICAS, raw))
        recommendations.append((now, raw))
        while recommendations[0][0] <= now - HPA_DOWN_WINDOW:
            recommendations.popleft()
        stabilized = raw
        if raw < current:
            stabilized = min(current, max(r for _, r in recommendations))
        up_limit = max(2 * current, current + 4)
        return max(MIN_REPLICAS, min(MAX_REPLICAS, up_limit, stabilized))

    return step


@dataclass(frozen=True)
class Result:
    reaction_decided: float | None
    reaction_ready: float | None
    over_replica_seconds: float
    under_capacity_seconds: int
    above_band_seconds: int  # 60-s mean load per ready replica above target + tolerance
    direction_changes: int
    flaps: int  # reversals within FLAP_SECONDS of the previous move: oscillation
    replica_hours: float


def _moving_mean(values: Sequence[float], window: int) -> list[float]:
    out, acc, q = [], 0.0, deque[float]()
    for v in values:
        q.append(v)
        acc += v
        if len(q) > window:
            acc -= q.popleft()
        out.append(acc / len(q))
    return out


def direction_changes(counts: Sequence[int]) -> int:
    moves = [b - a for a, b in itertools.pairwise(counts) if b != a]
    return sum(1 for a, b in itertools.pairwise(moves) if (a > 0) != (b > 0))


def flaps(counts: Sequence[int]) -> int:
    """Reversals that come within FLAP_SECONDS of the move they undo (counts are per second)."""
    moves = [(t, b - a) for t, (a, b) in enumerate(itertools.pairwise(counts)) if b != a]
    return sum(
        1
        for (t0, a), (t1, b) in itertools.pairwise(moves)
        if (a > 0) != (b > 0) and t1 - t0 < FLAP_SECONDS
    )


def need_series(arrivals: Sequence[float]) -> list[int]:
    return [max(MIN_REPLICAS, math.ceil(m / TARGET)) for m in _moving_mean(arrivals, NEED_WINDOW)]


def simulate(arrivals: Sequence[float], policy: Policy, steps: Sequence[int]) -> Result:
    mean = _moving_mean(arrivals, NEED_WINDOW)
    start = max(MIN_REPLICAS, math.ceil(mean[0] / TARGET))
    fleet = Fleet(replicas=start)
    desired_seq: list[int] = []
    ready_seq: list[int] = []
    over = 0.0
    under = 0
    above_band = 0
    for now, a in enumerate(arrivals):
        fleet.tick(now, a)
        new = policy(now, fleet)
        if new is not None and new != fleet.desired:
            fleet.scale_to(new, now)
        desired_seq.append(fleet.desired)
        ready_seq.append(fleet.replicas)
        need = max(MIN_REPLICAS, math.ceil(mean[now] / TARGET))
        over += max(0, fleet.replicas - need)
        under += mean[now] > fleet.replicas * SERVICE_RATE
        above_band += mean[now] > fleet.replicas * TARGET * (1 + HPA_TOLERANCE)
    decided, ready = [], []
    for t0 in steps:
        plateau = sum(arrivals[t0 : t0 + 600]) / len(arrivals[t0 : t0 + 600])
        n = math.ceil(plateau / TARGET * (1 - HPA_TOLERANCE))
        d = next((t - t0 for t in range(t0, len(arrivals)) if desired_seq[t] >= n), None)
        r = next((t - t0 for t in range(t0, len(arrivals)) if ready_seq[t] >= n), None)
        decided.append(d)
        ready.append(r)
    changes = direction_changes(desired_seq)

    def avg(xs: list[int | None]) -> float | None:
        known = [x for x in xs if x is not None]
        return sum(known) / len(known) if known and len(known) == len(xs) else None

    return Result(
        reaction_decided=avg(decided) if steps else None,
        reaction_ready=avg(ready) if steps else None,
        over_replica_seconds=over,
        under_capacity_seconds=under,
        above_band_seconds=above_band,
        direction_changes=changes,
        flaps=flaps(desired_seq),
        replica_hours=sum(ready_seq) / 3600,
    )


def traces() -> dict[str, tuple[list[float], list[int]]]:
    """Each trace as arrivals per second, with the seconds where load steps up."""
    series = load_traces.ensure()
    azure = [float(x) for x in series["azure_conv_requests_per_second"]]  # type: ignore[attr-defined]
    minutes = [float(x) for x in series["twitter_counts_per_minute_days_1_5"]]  # type: ignore[attr-defined]
    # A step: the Azure arrivals (their real burstiness) at 40x, then 120x, then 40x again.
    step = [a * (120.0 if 600 <= t < 1800 else 40.0) for t, a in enumerate(azure[:3000])]
    # A noisy plateau: the whole Azure hour at 100x (mean ~550 requests/s).
    plateau = [a * 100.0 for a in azure]
    # A daily cycle: five days of per-minute counts as requests/s (x10), held within each minute.
    diurnal = [m * 10.0 for m in minutes for _ in range(60)]
    return {
        "step (Azure x40 -> x120 -> x40)": (step, [600]),
        "noisy plateau (Azure x100)": (plateau, []),
        "diurnal (daily cycle, 5 days)": (diurnal, []),
    }


def _fmt(x: float | None, unit: str = "") -> str:
    return "-" if x is None else f"{x:,.0f}{unit}"


def main() -> int:
    started = time.monotonic()
    policies: dict[str, Callable[[], Policy]] = {
        "smallfleet": smallfleet_policy,
        "hpa": lambda: hpa_policy("adapter"),
        "hpa-demand": lambda: hpa_policy("demand"),
    }
    print("== autoscaling: smallfleet vs the HPA algorithm with Kubernetes defaults ==")
    print(
        f"capacity model: {SERVICE_RATE:g} inferences/s per replica, target {TARGET:g}, "
        f"new replica ready after {STARTUP_SECONDS} s"
    )
    print(
        "over replica-s: ready replicas above need (60-s mean load / target), summed per second; "
        "under-cap s: seconds the 60-s mean load exceeds what ready replicas serve"
    )
    print(
        "above band s: seconds the 60-s mean load per ready replica exceeds the target by more "
        f"than the {HPA_TOLERANCE:.0%} tolerance (hotter than asked, not yet under capacity)"
    )
    print(
        f"dir changes: reversals of the decided count (up after down or down after up); "
        f"flaps: reversals within {FLAP_SECONDS} s of the move they undo; "
        "(need): the same counts for the need itself"
    )
    header = (
        f"{'trace':32} {'policy':11} {'react decided':>13} {'react ready':>11} "
        f"{'over replica-s':>14} {'under-cap s':>11} {'above band s':>12} {'dir changes':>11} {'flaps':>5} "
        f"{'replica-h':>9}"
    )
    verdicts: list[str] = []
    for name, (arrivals, steps) in traces().items():
        print(header)
        results = {p: simulate(arrivals, make(), steps) for p, make in policies.items()}
        for p, r in results.items():
            print(
                f"{name:32} {p:11} {_fmt(r.reaction_decided, ' s'):>13} "
                f"{_fmt(r.reaction_ready, ' s'):>11} {_fmt(r.over_replica_seconds):>14} "
                f"{r.under_capacity_seconds:>11,} {r.above_band_seconds:>12,} "
                f"{r.direction_changes:>11} {r.flaps:>5} "
                f"{r.replica_hours:>9,.1f}"
            )
        print(
            f"{name:32} {'(need)':11} {'':>13} {'':>11} {'':>14} {'':>11} {'':>12} "
            f"{direction_changes(need_series(arrivals)):>11} {flaps(need_series(arrivals)):>5} "
            f"{sum(need_series(arrivals)) / 3600:>9,.1f}"
        )
        sf, hpa = results["smallfleet"], results["hpa"]
        checks = [
            (
                "reaction <= 1/3 of HPA",
                sf.reaction_decided is not None
                and hpa.reaction_decided is not None
                and sf.reaction_decided * 3 <= hpa.reaction_decided,
            ),
            (
                "over-provisioning <= 1/2 of HPA",
                sf.over_replica_seconds * 2 <= hpa.over_replica_seconds,
            ),
            ("under-capacity <= HPA", sf.under_capacity_seconds <= hpa.under_capacity_seconds),
            ("direction changes <= HPA", sf.direction_changes <= hpa.direction_changes),
            ("flaps (reversals within 2 min) <= HPA", sf.flaps <= hpa.flaps),
        ]
        if not steps:
            checks = checks[1:]  # no load step in this trace: no reaction time to compare
        verdicts += [f"{name}: {'met' if ok else 'NOT met'}: {what}" for what, ok in checks]
        print()
    print("targets:")
    for v in verdicts:
        print(f"  {v}")
    print(f"(ran in {time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
