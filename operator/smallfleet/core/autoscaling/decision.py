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
   `ceil(need)` as soon as one sample exceeds the target by more than
   `tolerance`, and falls only to a count that leaves half the tolerance
   as headroom (`ceil(need / (1 - 0.5 * tolerance))`), mid-way between
   the target and the band's lower edge, so that the count it falls to is
   not already at the edge of the band. A fall is sized on the demand's
   upper confidence bound, not its estimate: the measured rate plus
   `CONFIDENCE_Z` standard errors of its counting noise (a count of N
   arrivals is Poisson, so the rate over T seconds has variance rate/T,
   which the sample carries as `demand_variance`). The bound matters where
   counts are small (a model at one or two replicas); at hundreds of
   requests per second it adds a few percent.
2. A fall waits while the load rises. Each recommendation keeps the need
   of its sample; a fall that the scale-down window (rule 5) would allow
   is held (reason `LoadRising`) while the current need is above the mean
   need of that window's samples: the load has turned up, and falling now
   would be undone minutes later. Rises are never held back by this: a rise
   that waited for confirmation (the moving-average rule this replaced) ran
   replicas past the SLO while it waited, on every trace of
   bench/autoscaling.py.
3. No reversal within a window. A rise is never undone within
   `scaleDownStabilizationSeconds` (rule 5 keeps the highest recommendation
   of that window), and, symmetrically, a rise within that window after a
   fall is held (reason `RiseHeldAfterScaleDown`) unless the fleet is
   behind: its queue grows, measured as demand above the served rate by
   more than `CONFIDENCE_Z` standard errors (without a demand measurement,
   pending requests per ready replica of at least one full batch). A fall
   was taken because the whole window's load fitted the smaller count, so
   a burst just after it that the replicas still serve is the kind of burst
   they were sized to absorb; a new replica asked for then would be ready
   only after a burst shorter than a pod's start had passed, and its fall
   two minutes later is the flap. A growing queue is not absorbed, so it
   still scales up at once.
4. Queue time that dynamic batching absorbs is not load. Triton holds a
   request in its queue on purpose while it forms a batch, so a queue time
   above target is a reason to scale up only when the server is actually
   behind: the pending requests per ready replica are at least one full
   batch (`max_batch_size`, or 1 when the model does not batch) or the
   batches it forms are already full. Otherwise the recommendation holds
   the current count (reason `QueueAbsorbedByBatching`).
5. Stabilisation over the recommendation history: scale up to the lowest
   recommendation of the scale-up window, down to the highest of the
   scale-down window. With the defaults (0 s up, 120 s down) that is "up at
   once, down only after two quiet minutes".
6. Step limits per decision (`maxScaleUpStep`, `maxScaleDownStep`), then the
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
`decision.current`. A restarted scaler forgets its last fall, so rule 3
starts again with the next one: it may rise at once, the safe direction.
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
RISING: Final = "LoadRising"
RISE_HELD: Final = "RiseHeldAfterScaleDown"

# A fall leaves this fraction of the tolerance as headroom below target: the count it falls
# to sits mid-way between the target and the band's lower edge (rule 1 above).
SCALE_DOWN_HEADROOM: Final = 0.5
# Standard errors of counting noise between a measured rate and the bound a decision trusts:
# a fall is sized on demand + 3 standard errors, and a queue counts as growing when demand
# exceeds the served rate by more than 3. For a Poisson count that is a one-sided 0.13%
# chance of reading noise as signal per sample: a statistical convention, not fitted.
CONFIDENCE_Z: Final = 3.0

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
    need: float | None = None  # the sample's need in replicas; None where the count was held


@dataclass(frozen=True)
class ScalerState:
    """What one model's scaler remembers between decisions (in memory only)."""

    recommendations: tuple[Recommendation, ...] = ()
    started: bool = False
    last_fall: float | None = None  # when this scaler last scaled down (rule 3)


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
        if scaling.metric == "pendingRequests":
            total, upper = sample.pending_requests, sample.pending_requests  # a gauge: no count
        else:
            total = sample.demand
            upper = total + CONFIDENCE_Z * sample.demand_stddev
        value = total / max(ready, 1)
        need = total / target
        upper_need = upper / target
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
        upper_need = need
    ratio = value / target
    if ratio > 1.0 + tol:
        if scaling.metric == "queueTime" and not (
            _full_batch_pending(sample, ready, max_batch_size)
            or (max_batch_size > 0 and sample.batch_size >= max_batch_size)
        ):
            return current, value, QUEUE_ABSORBED, need
        return _ceil(need), value, None, need
    if ratio >= 1.0:
        return current, value, WITHIN_TOLERANCE, need
    fewer = _ceil(upper_need / (1.0 - tol * SCALE_DOWN_HEADROOM))
    if fewer >= current:
        return current, value, WITHIN_TOLERANCE, need
    return fewer, value, None, need


def behind(sample: LoadSample, max_batch_size: int) -> bool:
    """Whether the fleet's queue grows: more arrives than the replicas serve (rule 3).

    Demand above the served rate by more than `CONFIDENCE_Z` standard errors
    of its counting noise; where the sample has no demand measurement (a
    Prometheus sample), pending requests per ready replica of at least one
    full batch.
    """
    if sample.demand_inferences_per_second is not None and sample.demand_variance > 0:
        growth = sample.demand - sample.inferences_per_second
        return growth > CONFIDENCE_Z * sample.demand_stddev
    return _full_batch_pending(sample, max(sample.expected_replicas, 1), max_batch_size)


def _full_batch_pending(sample: LoadSample, replicas: int, max_batch_size: int) -> bool:
    """At least one full batch (`max_batch_size`, 1 when not batching) pending per replica."""
    return sample.pending_requests / replicas >= max(max_batch_size, 1)


def down_history(
    history: tuple[Recommendation, ...], now: float, spec: Scaling
) -> list[Recommendation]:
    """The recommendations of the scale-down window."""
    return [r for r in history if r.at > now - spec.scale_down_stabilization_seconds]


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
    wanted = raw
    raw = _clamp(raw, lower, upper)
    window = max(spec.scale_up_stabilization_seconds, spec.scale_down_stabilization_seconds)
    kept = _seeded(state, now, window, _clamp(current, lower, upper))
    history = (*kept, Recommendation(now, raw, need if sample.complete else None))
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
    needs = [r.need for r in down_history(history, now, spec) if r.need is not None]
    # A hair of slack, so that a constant load's float mean does not read as a rise.
    rising = bool(needs) and need > math.fsum(needs) / len(needs) * (1 + 1e-9)
    if stabilized < current and rising:
        stabilized, hold = current, RISING
    desired = _clamp(
        stabilized, current - spec.max_scale_down_step, current + spec.max_scale_up_step
    )
    last_fall = state.last_fall
    if (
        desired > current
        and last_fall is not None
        and now - last_fall < spec.scale_down_stabilization_seconds
        and not behind(sample, max_batch_size)
    ):
        desired, hold = current, RISE_HELD
    if desired < current:
        last_fall = now
    new_state = replace(state, recommendations=history, started=True, last_fall=last_fall)
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
    elif hold == RISE_HELD:
        reason, message = (
            RISE_HELD,
            f"{shown} asks for {raw}, but this scaler fell to {current} "
            f"{now - (last_fall or now):.0f} s ago and the queue is not growing: holding "
            f"{current} for the {spec.scale_down_stabilization_seconds} s window",
        )
    elif hold == RISING:
        reason, message = (
            RISING,
            f"{shown} asks for {raw}, but it is above its mean over the "
            f"{spec.scale_down_stabilization_seconds} s scale-down window: "
            f"holding {current} while the load rises",
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
