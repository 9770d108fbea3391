"""Where the autoscaler's load samples come from: Triton pods directly, or Prometheus.

The default needs nothing installed: the operator scrapes each ready Triton
pod's metrics port (8002) itself, keeps the previous scrape per pod and turns
each pair into rates (`smallfleet.core.tritonmetrics`), then adds the replicas up.
Per-pod rates, not rates of a sum, because a pod that leaves or restarts
would otherwise look like a counter reset of the whole model.

Where a Prometheus already scrapes Triton (`Settings.prometheus_url`),
`PrometheusSource` asks its HTTP API (`/api/v1/query`) instead.

A scrape that fails is a missing replica in the sample, never an exception:
the decision then refuses to scale down on it. Both sources use only the
standard library's urllib, with a timeout on every request.
"""

from __future__ import annotations

import json
import logging
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

from smallfleet.core.autoscaling import ScalerState, ScalingDecision, decide
from smallfleet.core.spec import Scaling
from smallfleet.core.tritonmetrics import (
    LoadSample,
    MetricsParseError,
    TritonSnapshot,
    load_queries,
    merge,
    model_snapshot,
    pod_regex,
    rates,
)
from smallfleet.settings import Settings

log = logging.getLogger(__name__)

TRITON_METRICS_PORT: Final = 8002
DEFAULT_TIMEOUT: Final = 2.0
# Rates over the last 30 s of scrapes (taken every few seconds): measured on real traces
# (bench/autoscaling.py), 5-s rates chase bursts and over-provision, 60-s rates react late.
DEFAULT_RATE_WINDOW: Final = 30.0
MAX_PARALLEL_SCRAPES: Final = 16
MAX_BODY_BYTES: Final = 8 * 1024 * 1024


class ScrapeError(Exception):
    """A metrics endpoint did not answer with a usable body."""


def scrape(url: str, timeout: float = DEFAULT_TIMEOUT) -> str:
    """GET one metrics endpoint and return its text; ScrapeError on any failure."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body: bytes = response.read(MAX_BODY_BYTES + 1)
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise ScrapeError(f"{url}: {e}") from e
    if len(body) > MAX_BODY_BYTES:
        raise ScrapeError(f"{url}: response larger than {MAX_BODY_BYTES} bytes")
    return body.decode("utf-8", errors="replace")


def metrics_url(pod_ip: str, port: int = TRITON_METRICS_PORT) -> str:
    host = f"[{pod_ip}]" if ":" in pod_ip else pod_ip
    return f"http://{host}:{port}/metrics"


@dataclass(frozen=True)
class _Seen:
    at: float
    snapshot: TritonSnapshot


class DirectSource:
    """Scrapes Triton pods and remembers each pod's previous counters.

    Call `sample(key, model, pod_ips)` once per scrape interval per model:
    `key` names the series (for example "namespace/name"), `model` is the
    Triton model name, `pod_ips` the IPs of the model's ready pods. Each
    pod's rate runs from its oldest scrape within `window` seconds to now.
    The first scrape of a pod only records it; it counts from the second.
    Call `forget(key)` when a model is deleted.
    """

    def __init__(
        self,
        *,
        port: int = TRITON_METRICS_PORT,
        timeout: float = DEFAULT_TIMEOUT,
        window: float = DEFAULT_RATE_WINDOW,
        fetch: Callable[[str, float], str] = scrape,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._port = port
        self._timeout = timeout
        self._fetch = fetch
        self._clock = clock
        self._window = window
        self._seen: dict[tuple[str, str], list[_Seen]] = {}

    def _one(self, ip: str) -> str | None:
        try:
            return self._fetch(metrics_url(ip, self._port), self._timeout)
        except ScrapeError as e:
            log.debug("scrape failed: %s", e)
            return None

    def texts(self, pod_ips: Sequence[str]) -> dict[str, str | None]:
        """One scrape of each pod, in parallel; None where a pod did not answer."""
        if not pod_ips:
            return {}
        workers = min(MAX_PARALLEL_SCRAPES, len(pod_ips))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return dict(zip(pod_ips, pool.map(self._one, pod_ips), strict=True))

    def sample_from(
        self, key: str, model: str, texts: Mapping[str, str | None], now: float | None = None
    ) -> LoadSample | None:
        """The model's load from scrapes already taken (several models may share pods)."""
        at = self._clock() if now is None else now
        per_pod: list[LoadSample] = []
        for ip, text in texts.items():
            if text is None:
                continue
            try:
                snap = model_snapshot(text, model)
            except MetricsParseError as e:
                log.debug("unreadable metrics from %s: %s", ip, e)
                continue
            if snap is None:
                continue
            history = self._seen.get((key, ip), [])
            within = [h for h in history if h.at >= at - self._window]
            # Scrapes sparser than the window: the rate runs from the previous one.
            base = within[0] if within else (history[-1] if history else None)
            if base is not None and at > base.at:
                per_pod.append(rates(base.snapshot, snap, at - base.at))
            self._seen[key, ip] = [*within, _Seen(at, snap)]
        for stale in [k for k in self._seen if k[0] == key and k[1] not in texts]:
            del self._seen[stale]
        return merge(per_pod, expected_replicas=len(texts))

    def sample(self, key: str, model: str, pod_ips: Sequence[str]) -> LoadSample | None:
        """Scrape the model's ready pods now and return the load since the previous call."""
        return self.sample_from(key, model, self.texts(pod_ips))

    def forget(self, key: str) -> None:
        for k in [k for k in self._seen if k[0] == key]:
            del self._seen[k]


class PrometheusSource:
    """Instant queries against a Prometheus HTTP API (`GET /api/v1/query`)."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._base = url.rstrip("/")
        self._timeout = timeout

    def query(self, promql: str) -> float | None:
        """The value of an instant query: a scalar, or the sum of a vector.

        None when Prometheus is unreachable, answers with an error, or the
        vector is empty (no series matched) — never an exception.
        """
        url = f"{self._base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            body = json.loads(scrape(url, self._timeout))
        except (ScrapeError, json.JSONDecodeError) as e:
            log.debug("prometheus query failed: %s", e)
            return None
        return _value(body)

    def sample(
        self, model: str, labels: Mapping[str, str], ready_replicas: int, window: str = "1m"
    ) -> LoadSample | None:
        """One model's load, from Prometheus' copy of Triton's metrics.

        `labels` select the model's pods as Prometheus labels them (see
        `tritonmetrics.promql`). None when the rates are unknown.
        """
        values = {k: self.query(q) for k, q in load_queries(model, labels, window).items()}
        ips = values["inferences_per_second"]
        rps = values["requests_per_second"]
        if ips is None or rps is None:
            return None
        answered = values["replicas"]
        return LoadSample(
            inferences_per_second=ips,
            requests_per_second=rps,
            executions_per_second=values["executions_per_second"] or 0.0,
            queue_ms_per_request=values["queue_ms_per_request"] or 0.0,
            compute_ms_per_request=values["compute_ms_per_request"] or 0.0,
            pending_requests=values["pending_requests"] or 0.0,
            gpu_utilization=values["gpu_utilization"],
            replicas=int(answered) if answered is not None else 0,
            expected_replicas=ready_replicas,
            failures_per_second=values["failures_per_second"] or 0.0,
            demand_variance=max(ips, 0.0) / _window_seconds(window),
        )


def _window_seconds(window: str) -> float:
    """A PromQL range ("30s", "1m", "1h") in seconds."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    if len(window) < 2 or window[-1] not in units or not window[:-1].isdigit():
        raise ValueError(f"unsupported range {window!r}: want a whole number of s, m or h")
    return int(window[:-1]) * units[window[-1]]


def _number(raw: object) -> float | None:
    # Prometheus encodes sample values as strings ("1.5", "NaN", "+Inf").
    try:
        value = float(str(raw))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _value(body: object) -> float | None:
    if not isinstance(body, dict) or body.get("status") != "success":
        return None
    data = body.get("data")
    if not isinstance(data, dict):
        return None
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        return _number(result[1])
    if kind == "vector" and isinstance(result, list):
        numbers = [
            _number(item["value"][1])
            for item in result
            if isinstance(item, dict) and isinstance(item.get("value"), list)
        ]
        known = [n for n in numbers if n is not None]
        return sum(known) if known else None
    return None


class ScalingLoop:
    """The operator's autoscaler for `scaling.mode: operator`: sample, decide, remember.

    Keep one per operator process. For each SmallModel or ModelPipeline in
    operator mode, call `step` every `Settings.scrape_interval_seconds` with
    the ready pods of its Deployment; write `decision.desired` to the scale
    subresource when `decision.changed`; call `forget(key)` when the resource
    is deleted. Everything it remembers is in memory and rebuilds itself
    after a restart (see `smallfleet.core.autoscaling.decision`).

    With `Settings.prometheus_url` set it asks Prometheus (series labelled
    with `namespace` and `pod`); otherwise it scrapes each pod's port 8002.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        direct: DirectSource | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._direct = direct or DirectSource(clock=clock)
        self._prometheus = (
            PrometheusSource(settings.prometheus_url) if settings.prometheus_url else None
        )
        self._clock = clock
        self._states: dict[tuple[str, str], ScalerState] = {}

    def step(
        self,
        key: str,
        scaling: Scaling,
        *,
        models: Sequence[str],
        pod_ips: Sequence[str],
        current_replicas: int,
        namespace: str = "",
        deployment: str = "",
        carbon_intensity: float | None = None,
        max_batch_size: int = 0,
    ) -> ScalingDecision:
        """One decision for one server: the largest of its models' decisions.

        `key` names the resource ("namespace/name"); `models` are the Triton
        models whose load counts (a pipeline's steps, not its ensemble);
        `namespace` and `deployment` select the pods' series in Prometheus.
        """
        if not models:
            raise ValueError("a scaling step needs at least one model")
        now = self._clock()
        texts = None if self._prometheus else self._direct.texts(pod_ips)
        decisions: list[ScalingDecision] = []
        for model in models:
            if self._prometheus is not None:
                labels = {"namespace": namespace, "pod=~": pod_regex(deployment)}
                sample = self._prometheus.sample(model, labels, ready_replicas=len(pod_ips))
            else:
                sample = self._direct.sample_from(f"{key}/{model}", model, texts or {}, now)
            state = self._states.get((key, model), ScalerState())
            decision, self._states[key, model] = decide(
                scaling,
                state,
                sample,
                now,
                current_replicas,
                carbon_intensity,
                max_batch_size=max_batch_size,
            )
            decisions.append(decision)
        return max(decisions, key=lambda d: d.desired)

    def forget(self, key: str) -> None:
        for k in [k for k in self._states if k[0] == key]:
            del self._states[k]
            self._direct.forget(f"{key}/{k[1]}")
