"""The operator's /metrics endpoint and OTLP trace export, against real local servers."""

from __future__ import annotations

import socket
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from smallfleet import telemetry


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        body: bytes = resp.read()
        return body.decode()


def test_metrics_endpoint_serves_reconcile_metrics() -> None:
    port = free_port()
    telemetry.serve_metrics(port, addr="127.0.0.1")
    with telemetry.reconcile_timer("SmallModel", "ns", "tiny") as rec:
        rec.result = "ok"
    with pytest.raises(RuntimeError), telemetry.reconcile_timer("SmallModel", "ns", "tiny"):
        raise RuntimeError("boom")
    telemetry.ERRORS.labels(kind="SmallModel", error_class="transient").inc()
    text = scrape(port)
    assert 'smallfleet_reconcile_total{kind="SmallModel",result="ok"}' in text
    assert 'smallfleet_reconcile_total{kind="SmallModel",result="error"}' in text
    assert 'smallfleet_reconcile_duration_seconds_count{kind="SmallModel"}' in text
    assert 'smallfleet_errors_total{error_class="transient",kind="SmallModel"}' in text
    assert "process_resident_memory_bytes" in text


def test_metrics_listen_on_loopback_unless_told_otherwise() -> None:
    port = free_port()
    telemetry.serve_metrics(port)
    assert "process_resident_memory_bytes" in scrape(port)
    # Another loopback address can take the same port: the server holds 127.0.0.1 only,
    # not the wildcard (a wildcard listener would make this bind fail).
    with socket.socket() as sock:
        sock.bind(("127.0.0.2", port))


@pytest.mark.parametrize(
    ("addr", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8081/healthz"),
        ("10.4.0.17", "http://10.4.0.17:8081/healthz"),
        ("fd00::17", "http://[fd00::17]:8081/healthz"),
    ],
)
def test_health_url_brackets_ipv6(addr: str, url: str) -> None:
    assert telemetry.health_url(addr, 8081) == url


def test_record_state_counts_resources() -> None:
    telemetry.record_state("ModelPipeline", "a", "p1", "Ready")
    telemetry.record_state("ModelPipeline", "a", "p2", "Stalled")
    telemetry.record_state("ModelPipeline", "a", "p2", "Ready")
    telemetry.record_state("ModelPipeline", "a", "p3", "Reconciling")
    telemetry.record_state("ModelPipeline", "a", "p3", None)

    def value(cond: str) -> float | None:
        return telemetry.REGISTRY.get_sample_value(
            "smallfleet_resources", {"kind": "ModelPipeline", "condition": cond}
        )

    assert value("Ready") == 2
    assert value("Stalled") == 0
    assert value("Reconciling") == 0


def test_extra_gauges_are_shared_and_typed() -> None:
    g = telemetry.gauge("test_region_intensity", "gCO2eq/kWh by region.", ["region"])
    assert telemetry.gauge("test_region_intensity", "again", ["region"]) is g
    g.labels(region="eu-north").set(31.5)
    assert (
        telemetry.REGISTRY.get_sample_value(
            "smallfleet_test_region_intensity", {"region": "eu-north"}
        )
        == 31.5
    )
    with pytest.raises(ValueError, match="already registered"):
        telemetry.counter("test_region_intensity", "clash")


def test_span_is_a_no_op_without_an_endpoint() -> None:
    assert telemetry.setup_tracing({}) is False
    with telemetry.span("nothing", a=1):
        pass
    assert not telemetry.tracing_enabled()


class _Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, bytes]] = []  # noqa: RUF012 - shared by the server's handler instances

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        _Collector.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def otlp_collector() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_spans_reach_an_otlp_http_endpoint(
    otlp_collector: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_collector)
    _Collector.received.clear()
    assert telemetry.setup_tracing() is True
    try:
        with telemetry.reconcile_timer("SmallModel", "ns", "traced"), telemetry.span("kube apply"):
            pass
    finally:
        telemetry.shutdown_tracing()
    names = []
    for path, body in _Collector.received:
        assert path == "/v1/traces"
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                names += [sp.name for sp in ss.spans]
    assert "reconcile SmallModel" in names
    assert "kube apply" in names
