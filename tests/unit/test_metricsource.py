"""Metric sources against local HTTP servers on 127.0.0.1.

The Prometheus side speaks the documented `/api/v1/query` JSON
(https://prometheus.io/docs/prometheus/latest/querying/api/); the direct side
serves recorded scrapes of a real Triton server.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from smallfleet.core.autoscaling import ScalingDecision
from smallfleet.core.spec import Scaling
from smallfleet.core.tritonmetrics import load_queries
from smallfleet.metricsource import (
    DirectSource,
    PrometheusSource,
    ScalingLoop,
    ScrapeError,
    metrics_url,
    scrape,
)
from smallfleet.settings import Settings

DATA = Path(__file__).parent / "data"
Handler = Callable[[str, dict[str, list[str]]], tuple[int, str]]


class _Server:
    def __init__(self, handle: Handler) -> None:
        self.handle = handle
        self.queries: list[str] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parsed = urllib.parse.urlparse(self.path)
                params = urllib.parse.parse_qs(parsed.query)
                outer.queries.extend(params.get("query", []))
                status, body = outer.handle(parsed.path, params)
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Callable[[Handler], _Server]]:
    started: list[_Server] = []

    def start(handle: Handler) -> _Server:
        s = _Server(handle)
        started.append(s)
        return s

    yield start
    for s in started:
        s.close()


def vector(*values: str) -> str:
    return json.dumps(
        {
            "status": "success",
            "data": {
                "resultType": "vector",
                "result": [
                    {"metric": {"pod": f"p{i}"}, "value": [1700000000.0, v]}
                    for i, v in enumerate(values)
                ],
            },
        }
    )


@pytest.mark.parametrize(
    ("status", "body", "want"),
    [
        (200, vector("1.5"), 1.5),
        (200, vector("1.5", "2.5"), 4.0),
        (200, vector(), None),
        (200, vector("NaN"), None),
        (200, vector("+Inf", "3"), 3.0),
        (
            200,
            json.dumps({"status": "success", "data": {"resultType": "scalar", "result": [1, "7"]}}),
            7.0,
        ),
        (
            400,
            json.dumps({"status": "error", "errorType": "bad_data", "error": "parse error"}),
            None,
        ),
        (200, "not json", None),
        (503, "", None),
    ],
)
def test_prometheus_query(
    server: Callable[[Handler], _Server], status: int, body: str, want: float | None
) -> None:
    s = server(lambda path, params: (status, body) if path == "/api/v1/query" else (404, ""))
    assert PrometheusSource(s.url + "/").query("up") == want
    assert s.queries == ["up"]


def test_prometheus_unreachable_is_none() -> None:
    # A port nothing listens on: connection refused, no exception.
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    assert PrometheusSource(f"http://127.0.0.1:{port}", timeout=1.0).query("up") is None


def test_prometheus_sample_asks_every_query(server: Callable[[Handler], _Server]) -> None:
    labels = {"namespace": "ns", "pod=~": "m-eu-.*"}
    queries = load_queries("m", labels)
    answers = {
        queries["inferences_per_second"]: "400",
        queries["requests_per_second"]: "100",
        queries["executions_per_second"]: "50",
        queries["queue_ms_per_request"]: "12.5",
        queries["pending_requests"]: "6",
        queries["replicas"]: "2",
    }

    def handle(path: str, params: dict[str, list[str]]) -> tuple[int, str]:
        q = params["query"][0]
        return 200, vector(answers[q]) if q in answers else vector()

    s = server(handle)
    sample = PrometheusSource(s.url).sample("m", labels, ready_replicas=3)
    assert sample is not None
    assert sample.inferences_per_second == 400
    assert sample.batch_size == 8
    assert sample.queue_ms_per_request == 12.5
    assert sample.pending_requests == 6
    assert sample.gpu_utilization is None
    assert (sample.replicas, sample.expected_replicas, sample.complete) == (2, 3, False)
    assert sample.demand_variance == pytest.approx(400 / 60)  # counted over the 1m range
    assert set(s.queries) == set(queries.values())


def test_prometheus_sample_without_rates_is_none(server: Callable[[Handler], _Server]) -> None:
    s = server(lambda path, params: (200, vector()))
    assert PrometheusSource(s.url).sample("m", {}, ready_replicas=1) is None


def test_scrape_errors_are_scrape_errors(server: Callable[[Handler], _Server]) -> None:
    s = server(lambda path, params: (500, "boom"))
    with pytest.raises(ScrapeError):
        scrape(s.url + "/metrics", 1.0)


def test_metrics_url() -> None:
    assert metrics_url("127.1.0.4") == "http://127.1.0.4:8002/metrics"
    assert metrics_url("fd00::1", 9000) == "http://[fd00::1]:9000/metrics"


def test_direct_source_rates_per_pod_and_sums(server: Callable[[Handler], _Server]) -> None:
    """Two pods serving recorded real scrapes; one of them stops answering."""
    texts = {name: (DATA / f"triton_metrics_{name}.txt").read_text() for name in ("busy", "after")}
    phase = {"a": "busy", "b": "busy"}
    down: set[str] = set()

    def make(pod: str) -> Handler:
        def handle(path: str, params: dict[str, list[str]]) -> tuple[int, str]:
            if pod in down:
                return 503, "unavailable"
            return 200, texts[phase[pod]]

        return handle

    pods = {"a": server(make("a")), "b": server(make("b"))}
    clock = [100.0]

    def fetch(url: str, timeout: float) -> str:
        # Pods here are named "a" and "b", each a local server on its own port.
        pod = url.split("//")[1].split(":")[0]
        return scrape(f"{pods[pod].url}/metrics", timeout)

    source = DirectSource(fetch=fetch, clock=lambda: clock[0])
    assert source.sample("ns/m", "minilm-l6", ["a", "b"]) is None  # first scrape: no rate yet
    phase.update(a="after", b="after")
    clock[0] += 2.0
    sample = source.sample("ns/m", "minilm-l6", ["a", "b"])
    assert sample is not None
    assert sample.complete
    one_pod = (1321 - 815) / 2.0
    assert sample.inferences_per_second == pytest.approx(2 * one_pod)
    # Two pods' counts over 2 s each: Poisson variances add, rate/T per pod.
    assert sample.demand_variance == pytest.approx(2 * sample.demand / 2 / 2.0)
    assert sample.batch_size == pytest.approx((1321 - 815) / (204 - 123))

    down.add("b")
    clock[0] += 2.0
    partial = source.sample("ns/m", "minilm-l6", ["a", "b"])
    assert partial is not None
    assert (partial.replicas, partial.expected_replicas, partial.complete) == (1, 2, False)
    # The rate runs from the oldest scrape within the window: both intervals, 4 s.
    assert partial.inferences_per_second == pytest.approx((1321 - 815) / 4.0)

    down.add("a")
    assert source.sample("ns/m", "minilm-l6", ["a", "b"]) is None
    assert source.sample("ns/m", "absent-model", ["a"]) is None
    source.forget("ns/m")
    assert source.sample("ns/m", "minilm-l6", []) is None


def test_direct_source_window(server: Callable[[Handler], _Server]) -> None:
    """With a window shorter than the interval the rate spans the last interval only."""
    counts = iter([100, 200, 200, 200])

    def handle(path: str, params: dict[str, list[str]]) -> tuple[int, str]:
        n = next(counts)
        return 200, f'nv_inference_count{{model="m",version="1"}} {n}\n'

    s = server(handle)
    clock = [0.0]
    source = DirectSource(
        window=1.0,
        fetch=lambda url, timeout: scrape(s.url + "/metrics", timeout),
        clock=lambda: clock[0],
    )
    rates_seen = []
    for _ in range(4):
        sample = source.sample("k", "m", ["p"])
        rates_seen.append(None if sample is None else sample.inferences_per_second)
        clock[0] += 10.0
    assert rates_seen == [None, 10.0, 0.0, 0.0]


def _triton_text(models: dict[str, tuple[float, float]]) -> str:
    """Triton-style exposition: per model (cumulative inferences, pending)."""
    lines = ["# TYPE nv_inference_count counter"]
    lines += [f'nv_inference_count{{model="{m}",version="1"}} {c}' for m, (c, _) in models.items()]
    lines += ["# TYPE nv_inference_request_success counter"]
    lines += [
        f'nv_inference_request_success{{model="{m}",version="1"}} {c}'
        for m, (c, _) in models.items()
    ]
    lines += ["# TYPE nv_inference_pending_request_count gauge"]
    lines += [
        f'nv_inference_pending_request_count{{model="{m}",version="1"}} {p}'
        for m, (_, p) in models.items()
    ]
    return "\n".join(lines) + "\n"


def test_scaling_loop_direct(server: Callable[[Handler], _Server]) -> None:
    """Two models on one server: the busier one decides; first scrape holds."""
    counts = {"retrieve": (0.0, 0.0), "rerank": (0.0, 0.0)}
    s = server(lambda path, params: (200, _triton_text(counts)))
    clock = [0.0]
    direct = DirectSource(
        fetch=lambda url, timeout: scrape(s.url + "/metrics", timeout), clock=lambda: clock[0]
    )
    loop = ScalingLoop(Settings(), direct=direct, clock=lambda: clock[0])
    scaling = Scaling(min_replicas=1, max_replicas=10, metric="inferencesPerSecond", target=10.0)

    def step() -> ScalingDecision:
        return loop.step(
            "ns/rag",
            scaling,
            models=["retrieve", "rerank"],
            pod_ips=["127.0.0.1"],
            current_replicas=1,
        )

    first = step()
    assert (first.desired, first.reason) == (1, "MetricsMissing")
    counts.update(retrieve=(50.0, 0.0), rerank=(300.0, 0.0))
    clock[0] = 10.0
    busy = step()
    assert busy.desired == 3  # rerank: 30 inferences/s over a target of 10 per replica
    assert busy.value == pytest.approx(30.0)
    loop.forget("ns/rag")
    assert step().reason == "MetricsMissing"  # forgotten: starts over


def test_scaling_loop_prometheus(server: Callable[[Handler], _Server]) -> None:
    def handle(path: str, params: dict[str, list[str]]) -> tuple[int, str]:
        q = params["query"][0]
        if q.startswith("sum(rate(nv_inference_count{"):
            return 200, vector("45")
        if q.startswith("sum(rate(nv_inference_request_success{"):
            return 200, vector("45")
        if q.startswith("count(count by (pod)"):
            return 200, vector("2")
        return 200, vector()

    s = server(handle)
    loop = ScalingLoop(Settings(prometheus_url=s.url), clock=lambda: 0.0)
    scaling = Scaling(min_replicas=1, max_replicas=10, metric="inferencesPerSecond", target=10.0)
    decision = loop.step(
        "ns/m",
        scaling,
        models=["m"],
        pod_ips=["127.1.0.1", "127.1.0.2"],
        current_replicas=2,
        namespace="ns",
        deployment="m-eu-west-1",
    )
    assert decision.desired == 5
    assert any('pod=~"m-eu-west-1-[a-z0-9]+-[a-z0-9]+"' in q for q in s.queries)
    assert any('namespace="ns"' in q for q in s.queries)
