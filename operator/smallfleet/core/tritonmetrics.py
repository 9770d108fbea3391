"""Triton's Prometheus exposition, parsed into typed values, and rates between two scrapes.

The autoscaler decides from what Triton itself counts, not from CPU or memory
of the pod: Triton knows how long each request waited in its scheduler queue,
how many requests are pending and how large the batches it actually formed
were. Everything it exposes on its metrics port (8002) is cumulative counters
plus a few gauges, so a useful signal is always the difference of two scrapes
divided by the time between them. This module does both halves without I/O:
`parse` turns one scrape's text into one `TritonSnapshot` per model version,
`rates` turns two snapshots into a `LoadSample`, and `merge` adds the samples
of the replicas of one Deployment into the sample the decision works on.

Counters restart at zero when a Triton process restarts. A counter that went
down between two scrapes is read as "restarted, then counted up to its current
value", which is what Prometheus' own `rate()` does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final

from prometheus_client.parser import text_string_to_metric_families

# Per-model counters (cumulative since the server started) and their snapshot fields.
COUNTERS: Final[Mapping[str, str]] = {
    "nv_inference_request_success": "request_success",
    "nv_inference_request_failure": "request_failure",
    "nv_inference_count": "inference_count",
    "nv_inference_exec_count": "exec_count",
    "nv_inference_request_duration_us": "request_duration_us",
    "nv_inference_queue_duration_us": "queue_duration_us",
    "nv_inference_compute_input_duration_us": "compute_input_duration_us",
    "nv_inference_compute_infer_duration_us": "compute_infer_duration_us",
    "nv_inference_compute_output_duration_us": "compute_output_duration_us",
}
PENDING: Final = "nv_inference_pending_request_count"
GPU_UTILIZATION: Final = "nv_gpu_utilization"  # 0.0-1.0 per GPU
GPU_POWER: Final = "nv_gpu_power_usage"  # watts per GPU
GPU_MEMORY_USED: Final = "nv_gpu_memory_used_bytes"


class MetricsParseError(ValueError):
    """The text is not a Prometheus text exposition."""


@dataclass(frozen=True)
class GpuStats:
    """One GPU as Triton reports it (only on servers that see a GPU)."""

    uuid: str
    utilization: float | None = None  # fraction 0.0-1.0
    power_watts: float | None = None
    memory_used_bytes: float | None = None


@dataclass(frozen=True)
class TritonSnapshot:
    """One model version's counters from one scrape of one Triton server.

    Durations are cumulative microseconds; counts are cumulative; `pending` is
    the gauge at scrape time. `gpus` are the GPUs of the server that served it.
    """

    model: str
    version: str = ""
    request_success: float = 0.0
    request_failure: float = 0.0  # all failure reasons together
    inference_count: float = 0.0  # inferences, each row of a batch counts
    exec_count: float = 0.0  # batch executions
    request_duration_us: float = 0.0
    queue_duration_us: float = 0.0
    compute_input_duration_us: float = 0.0
    compute_infer_duration_us: float = 0.0
    compute_output_duration_us: float = 0.0
    pending: float = 0.0
    gpus: tuple[GpuStats, ...] = ()


@dataclass(frozen=True)
class LoadSample:
    """The load on one model over one interval, summed over the replicas that answered.

    `replicas` is how many servers contributed; `expected_replicas` how many
    ready ones the caller asked about. A sample with `complete` False misses
    some replicas: it may show overload but can never prove underload.
    """

    inferences_per_second: float
    requests_per_second: float
    executions_per_second: float
    queue_ms_per_request: float  # mean time a request waited in Triton's scheduler queue
    compute_ms_per_request: float  # mean input + infer + output time per request
    pending_requests: float  # summed over replicas, at the end of the interval
    gpu_utilization: float | None  # percent 0-100, mean over the GPUs seen; None without GPUs
    replicas: int = 1
    expected_replicas: int = 1
    failures_per_second: float = 0.0
    # Inferences asked for, not only served: served plus the growth of the pending queue.
    # None where unknown (then `demand` is the served rate).
    demand_inferences_per_second: float | None = None
    # The counting noise of `demand`, in (inferences/s)^2: a count of N arrivals over T seconds
    # is Poisson, variance N, so its rate N/T has variance N/T^2 = rate/T. It tells the
    # decision how far the true rate may lie above the one measured (0: unknown).
    demand_variance: float = 0.0

    @property
    def demand(self) -> float:
        """Inferences per second that arrived: what the replicas must serve to keep up."""
        if self.demand_inferences_per_second is None:
            return self.inferences_per_second
        return self.demand_inferences_per_second

    @property
    def demand_stddev(self) -> float:
        """One standard error of `demand` from counting noise alone (0 when unknown)."""
        return math.sqrt(max(self.demand_variance, 0.0))

    @property
    def batch_size(self) -> float:
        """Achieved batch size: inferences per execution (0 when idle)."""
        if self.executions_per_second <= 0:
            return 0.0
        return self.inferences_per_second / self.executions_per_second

    @property
    def complete(self) -> bool:
        return self.replicas >= self.expected_replicas


def _family_samples(text: str) -> Iterable[tuple[str, Mapping[str, str], float]]:
    try:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                # The parser names counter samples `<family>_total` (OpenMetrics style)
                # whether or not Triton wrote the suffix; Triton's own names are the family's.
                name = family.name if s.name == f"{family.name}_total" else s.name
                yield name, s.labels, float(s.value)
    except (ValueError, TypeError, IndexError) as e:
        raise MetricsParseError(f"not a Prometheus text exposition: {e}") from e


def parse(text: str) -> dict[tuple[str, str], TritonSnapshot]:
    """Every model version in one scrape, keyed by (model, version).

    Unknown metrics are ignored (Triton adds some per release); NaN and
    negative values of known counters are refused, because a decision built on
    them would be silently wrong.
    """
    fields: dict[tuple[str, str], dict[str, float]] = {}
    gpus: dict[str, dict[str, float]] = {}
    for name, labels, value in _family_samples(text):
        if name in COUNTERS or name == PENDING:
            if math.isnan(value) or value < 0:
                raise MetricsParseError(f"{name}{dict(labels)} has invalid value {value}")
            model = labels.get("model")
            if model is None:
                raise MetricsParseError(f"{name} has no model label")
            key = (model, labels.get("version", ""))
            attr = COUNTERS.get(name, "pending")
            per_model = fields.setdefault(key, {})
            # Failures come once per reason label: add them up.
            per_model[attr] = per_model.get(attr, 0.0) + value
        elif name in (GPU_UTILIZATION, GPU_POWER, GPU_MEMORY_USED):
            uuid = labels.get("gpu_uuid", "")
            gpus.setdefault(uuid, {})[name] = value
    gpu_stats = tuple(
        GpuStats(
            uuid=uuid,
            utilization=v.get(GPU_UTILIZATION),
            power_watts=v.get(GPU_POWER),
            memory_used_bytes=v.get(GPU_MEMORY_USED),
        )
        for uuid, v in sorted(gpus.items())
    )
    return {
        key: TritonSnapshot(model=key[0], version=key[1], gpus=gpu_stats, **values)
        for key, values in fields.items()
    }


def model_snapshot(text: str, model: str) -> TritonSnapshot | None:
    """The named model's counters in one scrape, all its versions added; None when absent."""
    found = [s for (m, _), s in parse(text).items() if m == model]
    if not found:
        return None
    return combine_versions(found)


def combine_versions(snapshots: Sequence[TritonSnapshot]) -> TritonSnapshot:
    """Add the versions of one model served by one server into one snapshot."""
    first = snapshots[0]
    totals = {
        attr: sum(getattr(s, attr) for s in snapshots) for attr in (*COUNTERS.values(), "pending")
    }
    return replace(first, version="", **totals)


def _delta(prev: float, cur: float) -> float:
    return cur - prev if cur >= prev else cur


def rates(prev: TritonSnapshot, cur: TritonSnapshot, seconds: float) -> LoadSample:
    """The load between two scrapes of the same server, `seconds` apart.

    If any counter went down the server restarted in between; then every
    counter is read from zero, as Prometheus' `rate()` does.
    """
    if seconds <= 0:
        raise ValueError(f"interval must be positive, got {seconds}")
    restarted = any(getattr(cur, a) < getattr(prev, a) for a in COUNTERS.values())
    base = TritonSnapshot(model=prev.model) if restarted else prev
    d = {a: _delta(getattr(base, a), getattr(cur, a)) for a in COUNTERS.values()}
    requests = d["request_success"] + d["request_failure"]
    compute_us = (
        d["compute_input_duration_us"]
        + d["compute_infer_duration_us"]
        + d["compute_output_duration_us"]
    )
    utils = [g.utilization for g in cur.gpus if g.utilization is not None]
    # Requests that joined the queue but were not served yet are load too; a queue that
    # drains means the replicas served more than arrived.
    per_request = d["inference_count"] / requests if requests else 1.0
    queued = cur.pending - (0.0 if restarted else prev.pending)
    demand = max(0.0, d["inference_count"] + queued * per_request) / seconds
    return LoadSample(
        inferences_per_second=d["inference_count"] / seconds,
        requests_per_second=requests / seconds,
        executions_per_second=d["exec_count"] / seconds,
        queue_ms_per_request=(d["queue_duration_us"] / requests / 1000.0) if requests else 0.0,
        compute_ms_per_request=(compute_us / requests / 1000.0) if requests else 0.0,
        pending_requests=cur.pending,
        gpu_utilization=(100.0 * sum(utils) / len(utils)) if utils else None,
        failures_per_second=d["request_failure"] / seconds,
        demand_inferences_per_second=demand,
        demand_variance=demand / seconds,
    )


def merge(samples: Sequence[LoadSample], expected_replicas: int | None = None) -> LoadSample | None:
    """One model's load over all its replicas: rates add, means weigh by requests.

    `expected_replicas` is the number of ready replicas the caller scraped
    (default: as many as there are samples). None when no replica answered.
    """
    if not samples:
        return None
    rps = sum(s.requests_per_second for s in samples)

    def weighted(attr: str) -> float:
        if rps <= 0:
            return 0.0
        return float(sum(getattr(s, attr) * s.requests_per_second for s in samples)) / rps

    utils = [s.gpu_utilization for s in samples if s.gpu_utilization is not None]
    return LoadSample(
        inferences_per_second=sum(s.inferences_per_second for s in samples),
        requests_per_second=rps,
        executions_per_second=sum(s.executions_per_second for s in samples),
        queue_ms_per_request=weighted("queue_ms_per_request"),
        compute_ms_per_request=weighted("compute_ms_per_request"),
        pending_requests=sum(s.pending_requests for s in samples),
        gpu_utilization=(sum(utils) / len(utils)) if utils else None,
        replicas=sum(s.replicas for s in samples),
        expected_replicas=(
            expected_replicas if expected_replicas is not None else sum(s.replicas for s in samples)
        ),
        failures_per_second=sum(s.failures_per_second for s in samples),
        demand_inferences_per_second=sum(s.demand for s in samples),
        demand_variance=sum(s.demand_variance for s in samples),  # independent counts add
    )


def _selector(labels: Mapping[str, str]) -> str:
    def quote(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"')

    parts = []
    for key, value in sorted(labels.items()):
        # A key ending in "=~" matches a regular expression (pods of one Deployment).
        if key.endswith("=~"):
            parts.append(f'{key[:-2]}=~"{quote(value)}"')
        else:
            parts.append(f'{key}="{quote(value)}"')
    return "{" + ",".join(parts) + "}"


def pod_regex(deployment: str) -> str:
    """The names of a Deployment's pods: `<deployment>-<replicaset hash>-<pod hash>`."""
    return f"{deployment}-[a-z0-9]+-[a-z0-9]+"


def promql(metric: str, model: str, labels: Mapping[str, str], window: str = "1m") -> str:
    """PromQL for one scaling metric of one model, over Prometheus' copy of Triton's metrics.

    `labels` narrows the series to the model's pods, as the scrape
    configuration labels them (typically `namespace` and `pod=~`, see
    `pod_regex`). The result is the total over pods for `pendingRequests`
    and `inferencesPerSecond`, and the mean for `queueTime` (ms per request)
    and `gpuUtilization` (percent), the same units `LoadSample` uses.
    """
    per_model = _selector({**labels, "model": model})
    per_pod = _selector(labels)
    if metric == "queueTime":
        return (
            f"sum(rate(nv_inference_queue_duration_us{per_model}[{window}])) / 1000"
            f" / clamp_min(sum(rate(nv_inference_request_success{per_model}[{window}])), 1e-9)"
        )
    if metric == "pendingRequests":
        return f"sum(nv_inference_pending_request_count{per_model})"
    if metric == "inferencesPerSecond":
        return f"sum(rate(nv_inference_count{per_model}[{window}]))"
    if metric == "gpuUtilization":
        return f"avg(nv_gpu_utilization{per_pod}) * 100"
    raise ValueError(f"unknown scaling metric {metric!r}")


def load_queries(model: str, labels: Mapping[str, str], window: str = "1m") -> dict[str, str]:
    """PromQL for every `LoadSample` field of one model (the Prometheus-backed source)."""
    per_model = _selector({**labels, "model": model})
    compute = " + ".join(
        f"sum(rate(nv_inference_compute_{p}_duration_us{per_model}[{window}]))"
        for p in ("input", "infer", "output")
    )
    requests = f"sum(rate(nv_inference_request_success{per_model}[{window}]))"
    return {
        "inferences_per_second": promql("inferencesPerSecond", model, labels, window),
        "requests_per_second": requests,
        "executions_per_second": f"sum(rate(nv_inference_exec_count{per_model}[{window}]))",
        "queue_ms_per_request": promql("queueTime", model, labels, window),
        "compute_ms_per_request": f"({compute}) / 1000 / clamp_min({requests}, 1e-9)",
        "pending_requests": promql("pendingRequests", model, labels, window),
        "gpu_utilization": promql("gpuUtilization", model, labels, window),
        "replicas": f"count(count by (pod) (nv_inference_count{per_model}))",
        "failures_per_second": f"sum(rate(nv_inference_request_failure{per_model}[{window}]))",
    }
