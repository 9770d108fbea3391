"""How many Triton replicas a model needs, from Triton's own load signals.

The algorithm is the one Kubernetes' HorizontalPodAutoscaler uses, so that
people who know the HPA can predict it, with the differences a Triton fleet
needs:

1. A raw recommendation from the chosen metric. Metrics that add up over
   replicas (`pendingRequests`, `inferencesPerSecond`) need
   `total / target` replicas, where the inference rate is demand: the
   inferences served plus the growth of Triton's pending queue, so that a
   saturated server does not hide how far behind it is. Metrics that are
   averages (`queueTime`, `gpuUtilization`) need `ready * value / target`.
   The tolerance band is asymmetric, unlike the HPA's: the count rises to
   `ceil(need)` only when the value exceeds the target by more than
   `tolerance`, and falls only to a count that leaves three eighths of the
   tolerance as headroom (`ceil(need / (1 - 0.375 * tolerance))`), so that
   the count it falls to is not already at the edge of the band.
2. A rise must last. Besides the sample, the scaler keeps an exponentially
   weighted moving average of the need (time constant
   `DEMAND_SMOOTHING_SECONDS`, 60 s). The count rises only when the average
   is above the band too, and then to what the lower of the two needs. A
   surge — the sample above target by more than `SURGE_TOLERANCES` (2.5)
   times the tolerance — rises at once, so a real step is not delayed.
   Falls need no average: the scale-down window (rule 4) already waits for
   the highest recommendation of its span. Replayed on the five-day daily
   cycle of bench/autoscaling.py, rises on the sample alone followed
   minute-to-minute noise — each one undone minutes later by a fall — so
   half the tolerance had to be kept as headroom, and still the count
   changed direction 234 times (8 reversals within two minutes) with 0.74x
   the HPA's over-provisioning; with rises confirmed by the average: 84
   direction changes, no such reversal, 0.33x. The price is time spent
   between 10% and 25% above target while a moderate rise proves itself
   (2.3 of 120 hours there, the HPA 0.5), with less time under capacity
   than the HPA. Confirming falls by the average as well, or predicting
   from the average's slope, only added replicas there. A partial sample
   may raise the average, never lower it.
3. Queue time that dynamic batching absorbs is not load. Triton holds a
   request in its queue on purpose while it forms a batch, so a queue time
   above target is a reason to scale up only when the server is actually
   behind: the pending requests per ready replica are at least one full
   batch (`max_batch_size`, or 1 when the model does not batch) or the
   batches it forms are already full. Otherwise the recommendation holds
   the current count (reason `QueueAbsorbedByBatching`).
4. Stabilisation over the recommendation history: scale up to the lowest
   recommendation of the scale-up window, down to the highest of the
   scale-down window. With the defaults (0 s up, 120 s down) that is "up at
   once, down only after two quiet minutes".
5. Step limits per decision (`maxScaleUpStep`, `maxScaleDownStep`), then the
   bounds: `[minReplicas, maxReplicas]`, where a carbon cap lowers the upper
   bound to `carbonCap.maxReplicas` (never below `minReplicas`) while the
   region's grid intensity is above `carbonCap.aboveIntensity`.

Missing or stale metrics never scale down: with no sample the count holds;
with a sample from only some replicas the count may rise but not fall.

How the operator calls it: keep one `ScalerState` per SmallModel (start from
`ScalerState()`; after a restart that is all there is to rebuild — the
history refills within one scale-down window, and until then the model can
only scale up, which is the safe direction). Every scrape interval
(`Settings.scrape_interval_seconds`), build a `LoadSample` with
`smallfleet.metricsource`, call `decide`, keep the returned state, and write
`decision.desired` to the scale subresource when it differs from
`decision.current`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Final

from smallfleet.core.spec import Scaling
from smallfleet.core.tritonmetrics import LoadSample

# Reasons (CamelCase) carried in the decision, for status.scaling and Events.
SCALED_UP: Final = "ScaledUp"
SCALED_DOWN: Final = "ScaledDown"
WITHIN_TOLERANCE: Final = "WithinTolerance"
STABLE: Final = "Stable"
STABILIZING: Final = "StabilizingScaleDown"
METRICS_MISSING: Final = "MetricsMissing"
METRICS_PARTIAL: Final = "MetricsPartial"
QUEUE_ABSORBED: Final = "QueueAbsorbedByBatching"
BOUNDED: Final = "BoundedByLimits"
CARBON_CAPPED: Final = "CarbonCapped"
TRANSIENT: Final = "TransientLoad"

# Scaling down keeps this fraction of the tolerance as headroom below target (see above).
SCALE_DOWN_HEADROOM: Final = 0.375
# Time constant of the moving average that confirms a rise (rule 2 above).
DEMAND_SMOOTHING_SECONDS: Final = 60.0
# A sample this many tolerances above target scales up without waiting for the average.
SURGE_TOLERANCES: Final = 2.5

METRIC_UNITS: Final = {
    "queueTime": "ms per request",
    "pendingRequests": "pending requests per replica",
    "inferencesPerSecond": "inferences/s per replica",
    "gpuUtilization": "% GPU utilisation",
}


@dataclass(frozen=True)
class Recommendation:
    at: float  # seconds, same clock as `now`
    replicas: int


@dataclass(frozen=True)
class ScalerState:
    """What one model's scaler remembers between decisions (in memory only)."""

    recommendations: tuple[Recommendation, ...] = ()
    started: bool = False
    # Moving average of the need in replicas, and when it was last updated.
    average_need: float | None = None
    average_at: float = 0.0


def _seeded(state: ScalerState, now: float, window: float, current: int) -> list[Recommendation]:
    kept = [r for r in state.recommendations if r.at > now - window]
    if not state.started:
        # A fresh (or restarted) scaler counts the replicas it finds as a recommendation,
        # so it cannot scale down before one full window of evidence.
        kept.append(Recommendation(now, current))
    return kept


def _holding(state: ScalerState, spec: Scaling, now: float, current: int) -> ScalerState:
    """Without usable metrics, holding the current count is the recommendation."""
    window = max(spec.scale_up_stabilization_seconds, spec.scale_down_stabilization_seconds)
    kept = _seeded(state, now, window, current)
    return replace(state, recommendations=(*kept, Recommendation(now, current)), started=True)


def _averaged(state: ScalerState, need: float, now: float, complete: bool) -> float:
    """The moving average of the need after this sample.

    A partial sample only shows a lower bound of the need: it may raise the
    average, never lower it.
    """
    previous = state.average_need
    if previous is None or now < state.average_at:
        return need
    weight = 1.0 - math.exp(-(now - state.average_at) / DEMAND_SMOOTHING_SECONDS)
    updated = previous + weight * (need - previous)
    return updated if complete else max(previous, updated)


def _confirmed_rise(
    scaling: Scaling, raw: int, need: float, average: float, ready: int, current: int
) -> tuple[int, str | None]:
    """A rise the sample asks for, held back unless it is a surge or the average agrees."""
    per_replica = max(ready, 1)
    if raw <= current or need / per_replica > 1.0 + SURGE_TOLERANCES * scaling.tolerance:
        return raw, None
    if average / per_replica <= 1.0 + scaling.tolerance:
        return current, TRANSIENT
    return max(current, _ceil(min(need, average))), None


@dataclass(frozen=True)
class ScalingDecision:
    desired: int
    current: int
    reason: str  # CamelCase, one of the constants above
    message: str  # for people: why this count
    metric: str  # the spec's metric name
    value: float | None  # the metric as compared with the target (per replica where it applies)
    target: float
    recommendation: int | None  # before stabilisation and step limits; None without metrics
    effective_max: int
    capped_by_carbon: bool

    @property
    def changed(self) -> bool:
        return self.desired != self.current


def effective_max(scaling: Scaling, carbon_intensity: float | None) -> tuple[int, bool]:
    """The upper bound now, and whether the carbon cap lowered it."""
    cap = scaling.carbon_cap
    if cap is None or carbon_intensity is None or carbon_intensity <= cap.above_intensity:
        return scaling.max_replicas, False
    capped = max(scaling.min_replicas, min(scaling.max_replicas, cap.max_replicas))
    return capped, capped < scaling.max_replicas


def _clamp(n: int, low: int, high: int) -> int:
    return max(low, min(high, n))


def _ceil(x: float) -> int:
    # Guard against 3.0000000000000004 becoming 4.
    return math.ceil(round(x, 9))


def _raw(
    scaling: Scaling, sample: LoadSample, current: int, max_batch_size: int
) -> tuple[int | None, float | None, str | None, float]:
    """Raw recommendation, the metric value shown to people, a holding reason if any, the need.

    The need is in replicas (0.0 where there is no recommendation).
    """
    ready = sample.expected_replicas
    target = scaling.target
    tol = scaling.tolerance
    if scaling.metric == "pendingRequests" or scaling.metric == "inferencesPerSecond":
        total = sample.pending_requests if scaling.metric == "pendingRequests" else sample.demand
        value = total / max(ready, 1)
        need = total / target
        if ready <= 0:
            return _ceil(need), value, None, need
    else:
        if ready <= 0:
            return None, None, METRICS_MISSING, 0.0
        if scaling.metric == "gpuUtilization":
            if sample.gpu_utilization is None:
                return None, None, METRICS_MISSING, 0.0
            value = sample.gpu_utilization
        else:
            value = sample.queue_ms_per_request
        need = ready * value / target
    ratio = value / target
    if ratio > 1.0 + tol:
        if scaling.metric == "queueTime":
            full_batch = max(max_batch_size, 1)
            behind = sample.pending_requests / ready >= full_batch or (
                max_batch_size > 0 and sample.batch_size >= max_batch_size
            )
            if not behind:
                return current, value, QUEUE_ABSORBED, need
        return _ceil(need), value, None, need
    if ratio >= 1.0:
        return current, value, WITHIN_TOLERANCE, need
    fewer = _ceil(need / (1.0 - tol * SCALE_DOWN_HEADROOM))
    if fewer >= current:
        return current, value, WITHIN_TOLERANCE, need
    return fewer, value, None, need


def decide(
    spec: Scaling,
    state: ScalerState,
    sample: LoadSample | None,
    now: float,
    current_replicas: int,
    carbon_intensity: float | None,
    *,
    max_batch_size: int = 0,
) -> tuple[ScalingDecision, ScalerState]:
    """One scaling decision for one model, and the state to keep for the next.

    `sample` is the load since the previous scrape (None when no replica
    answered); `now` is a monotonic clock in seconds; `current_replicas` is
    the Deployment's spec.replicas; `carbon_intensity` is the region's
    gCO2eq/kWh (None when unknown: the carbon cap then does not apply);
    `max_batch_size` is the model's Triton max batch size (0: not batching),
    used to tell batching delay from backlog.
    """
    upper, capped = effective_max(spec, carbon_intensity)
    lower = spec.min_replicas
    current = current_replicas

    def done(
        desired: int,
        reason: str,
        message: str,
        value: float | None,
        rec: int | None,
        new_state: ScalerState,
    ) -> tuple[ScalingDecision, ScalerState]:
        bounded = _clamp(desired, lower, upper)
        if bounded != desired:
            if capped and bounded < desired and spec.carbon_cap is not None:
                reason = CARBON_CAPPED
                message = (
                    f"{message}; capped at {upper} while grid intensity {carbon_intensity:g} "
                    f"> {spec.carbon_cap.above_intensity:g} gCO2eq/kWh"
                )
            else:
                reason, message = BOUNDED, f"{message}; bounded to [{lower}, {upper}]"
        return (
            ScalingDecision(
                desired=bounded,
                current=current,
                reason=reason,
                message=message,
                metric=spec.metric,
                value=value,
                target=spec.target,
                recommendation=rec,
                effective_max=upper,
                capped_by_carbon=capped,
            ),
            new_state,
        )

    if sample is None:
        return done(
            current,
            METRICS_MISSING,
            "no replica answered the metrics scrape; holding the replica count",
            None,
            None,
            _holding(state, spec, now, _clamp(current, lower, upper)),
        )
    raw, value, hold, need = _raw(spec, sample, current, max_batch_size)
    if raw is None:
        return done(
            current,
            METRICS_MISSING,
            f"metric {spec.metric} is not available; holding the replica count",
            None,
            None,
            _holding(state, spec, now, _clamp(current, lower, upper)),
        )
    if not sample.complete and raw < current:
        return done(
            current,
            METRICS_PARTIAL,
            f"{sample.replicas} of {sample.expected_replicas} replicas answered; "
            "not scaling down on partial metrics",
            value,
            raw,
            _holding(state, spec, now, _clamp(current, lower, upper)),
        )
    average = _averaged(state, need, now, sample.complete)
    state = replace(state, average_need=average, average_at=now)
    raw, held = _confirmed_rise(spec, raw, need, average, sample.expected_replicas, current)
    hold = held or hold
    wanted = raw
    raw = _clamp(raw, lower, upper)
    window = max(spec.scale_up_stabilization_seconds, spec.scale_down_stabilization_seconds)
    kept = _seeded(state, now, window, _clamp(current, lower, upper))
    history = (*kept, Recommendation(now, raw))
    up_window = [
        r.replicas for r in history if r.at > now - spec.scale_up_stabilization_seconds
    ] or [raw]
    down_window = [
        r.replicas for r in history if r.at > now - spec.scale_down_stabilization_seconds
    ] or [raw]
    up_rec = min([*up_window, raw])
    down_rec = max([*down_window, raw])
    stabilized = current
    if current < up_rec:
        stabilized = up_rec
    elif current > down_rec:
        stabilized = down_rec
    desired = _clamp(
        stabilized, current - spec.max_scale_down_step, current + spec.max_scale_up_step
    )
    new_state = replace(state, recommendations=history, started=True)
    unit = METRIC_UNITS[spec.metric]
    shown = f"{spec.metric} {value:.3g} {unit} (target {spec.target:g})"
    if desired > current:
        reason, message = SCALED_UP, f"{shown}: {current} -> {desired}"
    elif desired < current:
        reason, message = SCALED_DOWN, f"{shown}: {current} -> {desired}"
    elif hold == QUEUE_ABSORBED:
        reason, message = (
            QUEUE_ABSORBED,
            f"{shown}, but pending requests fit in one batch and batches are not full: "
            "the wait is dynamic batching, not backlog",
        )
    elif hold == TRANSIENT:
        per_replica = average / max(sample.expected_replicas, 1) * spec.target
        reason, message = (
            TRANSIENT,
            f"{shown}, but its {DEMAND_SMOOTHING_SECONDS:g} s average {per_replica:.3g} is not "
            f"more than {spec.tolerance:.0%} above target: holding {current} until the rise lasts",
        )
    elif hold == WITHIN_TOLERANCE:
        reason, message = WITHIN_TOLERANCE, f"{shown} is within {spec.tolerance:.0%} of target"
    elif raw < current:
        reason, message = (
            STABILIZING,
            f"{shown} asks for {raw}; holding {current} for the "
            f"{spec.scale_down_stabilization_seconds} s scale-down window",
        )
    else:
        reason, message = STABLE, f"{shown}: {current} replicas fit"
    if wanted > upper and desired == upper:
        if capped and spec.carbon_cap is not None:
            reason = CARBON_CAPPED
            message = (
                f"{shown} asks for {wanted}; capped at {upper} while grid intensity "
                f"{carbon_intensity:g} > {spec.carbon_cap.above_intensity:g} gCO2eq/kWh"
            )
        else:
            reason, message = BOUNDED, f"{shown} asks for {wanted}; at maxReplicas {upper}"
    elif wanted < lower and desired == lower and current < lower:
        reason, message = BOUNDED, f"{shown} asks for {wanted}; raised to minReplicas {lower}"
    return done(desired, reason, message, value, raw, new_state)
