"""The operator's own metrics and traces.

A platform team runs hundreds of models through one operator; when something
is slow or failing they look at Prometheus first and at traces second. The
metrics answer "how many reconciles, how long, which fail and why, how many
models are Ready or Stalled"; placement and autoscaling add their own gauges
(region intensity, grams CO2e per hour, desired replicas) through `gauge()`
so that everything lands on the one `/metrics` endpoint.

Traces are opt-in: when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, each reconcile
and each Kubernetes API call becomes a span exported over OTLP/HTTP;
otherwise `span()` costs one flag check.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter as Tally
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client import (
    GCCollector as _GC,
)
from prometheus_client import (
    PlatformCollector as _Platform,
)
from prometheus_client import (
    ProcessCollector as _Process,
)

NAMESPACE: Final = "smallfleet"
SERVICE_NAME: Final = "smallfleet-operator"
OTLP_ENV: Final = "OTEL_EXPORTER_OTLP_ENDPOINT"
STATES: Final = ("Ready", "Reconciling", "Stalled", "Unknown")

REGISTRY: Final = CollectorRegistry(auto_describe=True)
_Process(registry=REGISTRY)
_Platform(registry=REGISTRY)
_GC(registry=REGISTRY)

RECONCILES: Final = Counter(
    "reconcile",
    "Reconciles by resource kind and result (ok, stalled, retry, error).",
    ["kind", "result"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)
RECONCILE_SECONDS: Final = Histogram(
    "reconcile_duration_seconds",
    "Wall time of one reconcile, parse to status patch.",
    ["kind"],
    namespace=NAMESPACE,
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
ERRORS: Final = Counter(
    "errors",
    "Errors by resource kind and class (invalid_spec, rejected, transient, internal).",
    ["kind", "error_class"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)
API_CALLS: Final = Counter(
    "kube_api_calls",
    "Kubernetes API calls by verb and outcome (ok or HTTP status).",
    ["verb", "outcome"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)
RECONCILE_QUEUE: Final = Gauge(
    "reconcile_queue_depth",
    "SmallModels and ModelPipelines waiting for a reconcile (each counted once).",
    namespace=NAMESPACE,
    registry=REGISTRY,
)
RESOURCES: Final = Gauge(
    "resources",
    "SmallModels and ModelPipelines by kind and summary condition.",
    ["kind", "condition"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)

_lock = threading.Lock()
_states: dict[tuple[str, str, str], str] = {}
_tally: Tally[tuple[str, str]] = Tally()  # (kind, state) -> resources, kept with _states
_extra: dict[str, Any] = {}
_tracing = False


def record_state(kind: str, namespace: str, name: str, state: str | None) -> None:
    """Remember one resource's summary condition (None: it is gone) and refresh the gauge.

    The tally is kept as states change rather than recounted, so a status
    write costs the same in a fleet of ten thousand as in a fleet of ten.
    """
    with _lock:
        key = (kind, namespace, name)
        old = _states.pop(key, None)
        if old is not None:
            _tally[(kind, old)] -= 1
        if state is not None:
            _states[key] = state
            _tally[(kind, state)] += 1
        for st in STATES:
            RESOURCES.labels(kind=kind, condition=st).set(_tally.get((kind, st), 0))


def _metric(cls: type[Any], name: str, documentation: str, labelnames: Sequence[str]) -> Any:
    with _lock:
        existing = _extra.get(name)
        if existing is not None:
            if not isinstance(existing, cls):
                raise ValueError(f"metric {name} already registered as {type(existing).__name__}")
            return existing
        metric = cls(name, documentation, list(labelnames), namespace=NAMESPACE, registry=REGISTRY)
        _extra[name] = metric
        return metric


def gauge(name: str, documentation: str, labelnames: Sequence[str] = ()) -> Gauge:
    """A gauge named smallfleet_<name> on the operator's /metrics; the same object on every call."""
    result: Gauge = _metric(Gauge, name, documentation, labelnames)
    return result


def counter(name: str, documentation: str, labelnames: Sequence[str] = ()) -> Counter:
    """A counter named smallfleet_<name>_total on the operator's /metrics."""
    result: Counter = _metric(Counter, name, documentation, labelnames)
    return result


def serve_metrics(port: int, addr: str = "127.0.0.1") -> None:
    """Serve /metrics on `addr` (one address, loopback unless told) in a background thread."""
    start_http_server(port, addr=addr, registry=REGISTRY)


def health_url(addr: str, port: int) -> str:
    """The /healthz URL kopf's liveness endpoint listens on; IPv6 addresses in brackets."""
    host = f"[{addr}]" if ":" in addr else addr
    return f"http://{host}:{port}/healthz"


def setup_tracing(env: Mapping[str, str] | None = None) -> bool:
    """Export spans over OTLP/HTTP when the standard endpoint variable is set; True if on."""
    global _tracing
    e = os.environ if env is None else env
    if not e.get(OTLP_ENV):
        return False
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(
        resource=Resource.create({"service.name": e.get("OTEL_SERVICE_NAME", SERVICE_NAME)})
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _tracing = True
    return True


def shutdown_tracing() -> None:
    """Flush pending spans (on operator exit) and stop tracing."""
    global _tracing
    if not _tracing:
        return
    _tracing = False
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    shutdown = getattr(provider, "shutdown", None)
    if callable(shutdown):
        shutdown()


def tracing_enabled() -> bool:
    return _tracing


@contextmanager
def span(name: str, /, **attributes: str | int | float | bool) -> Iterator[None]:
    """A span around the block when tracing is on; nothing otherwise."""
    if not _tracing:
        yield
        return
    from opentelemetry import trace

    tracer = trace.get_tracer("smallfleet")
    with tracer.start_as_current_span(name, attributes=attributes):
        yield


class ReconcileRecord:
    """Set `result` inside a `reconcile_timer` block; the default is 'error' if it raises."""

    def __init__(self) -> None:
        self.result = "ok"


@contextmanager
def reconcile_timer(kind: str, namespace: str, name: str) -> Iterator[ReconcileRecord]:
    """Count, time and trace one reconcile."""
    record = ReconcileRecord()
    start = time.perf_counter()
    with span(f"reconcile {kind}", kind=kind, namespace=namespace, name=name):
        try:
            yield record
        except BaseException:
            record.result = "error" if record.result == "ok" else record.result
            raise
        finally:
            RECONCILE_SECONDS.labels(kind=kind).observe(time.perf_counter() - start)
            RECONCILES.labels(kind=kind, result=record.result).inc()
