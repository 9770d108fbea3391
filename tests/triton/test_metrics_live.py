"""Triton's live /metrics, read the way the operator reads it.

The server is the `triton_server` fixture (the canonical `minilm-l6` plan,
dynamic batching on, rendered by smallfleet). Requests are counted exactly,
so the parser's counters and rates must match what was sent.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import tritonclient.http as httpclient
from triton_harness import TritonServer

from smallfleet.core import tritonmetrics as tm
from smallfleet.metricsource import DirectSource, PrometheusSource, scrape

MODEL = "minilm-l6"


def send(server: TritonServer, requests: int, clients: int = 1) -> None:
    """`requests` single-sentence inferences from `clients` threads; raises if any fails."""
    errors: list[BaseException] = []
    per_client = [
        requests // clients + (1 if i < requests % clients else 0) for i in range(clients)
    ]

    def run(n: int) -> None:
        client = httpclient.InferenceServerClient(server.http_url.removeprefix("http://"))
        tensor = httpclient.InferInput("TEXT", [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[b"a sentence to embed"]], dtype=object))
        try:
            for _ in range(n):
                client.infer(MODEL, [tensor])
        except BaseException as e:  # re-raised in the caller
            errors.append(e)
        finally:
            client.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in per_client]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "clients did not finish within 120 s"
    assert not errors, errors


def snapshot(server: TritonServer) -> tm.TritonSnapshot:
    snap = tm.model_snapshot(scrape(server.metrics_url, 5.0), MODEL)
    assert snap is not None, f"{MODEL} missing from {server.metrics_url}"
    return snap


def test_live_counters_count_what_was_sent(triton_server: TritonServer) -> None:
    before = snapshot(triton_server)
    send(triton_server, 40, clients=4)
    after = snapshot(triton_server)
    assert after.request_success - before.request_success == 40
    assert after.inference_count - before.inference_count == 40
    executions = after.exec_count - before.exec_count
    assert 1 <= executions <= 40
    assert after.request_failure == before.request_failure
    assert after.queue_duration_us > before.queue_duration_us
    assert after.compute_infer_duration_us > before.compute_infer_duration_us
    assert after.pending == 0
    assert after.gpus == ()  # a CPU server


def test_live_rates_and_batching(triton_server: TritonServer) -> None:
    before = snapshot(triton_server)
    t0 = time.monotonic()
    send(triton_server, 96, clients=12)
    seconds = time.monotonic() - t0
    sample = tm.rates(before, snapshot(triton_server), seconds)
    assert sample.requests_per_second * seconds == pytest.approx(96)
    # Twelve clients at once give the dynamic batcher company: batches larger than one.
    assert sample.batch_size > 1.0, sample
    assert sample.queue_ms_per_request > 0
    assert sample.compute_ms_per_request > 0
    assert sample.demand == sample.inferences_per_second  # nothing left pending


def test_direct_source_against_the_live_server(triton_server: TritonServer) -> None:
    source = DirectSource(port=triton_server.metrics_port, window=60.0)
    assert source.sample("live", MODEL, ["127.0.0.1"]) is None  # first scrape: no rate yet
    send(triton_server, 20, clients=2)
    sample = source.sample("live", MODEL, ["127.0.0.1"])
    assert sample is not None
    assert sample.complete
    assert sample.requests_per_second > 0
    assert sample.inferences_per_second > 0


def test_prometheus_source_unreachable_is_none(triton_server: TritonServer) -> None:
    # Triton's metrics port is not a Prometheus API: the answer is "unknown", not a crash.
    assert PrometheusSource(f"http://127.0.0.1:{triton_server.metrics_port}").query("up") is None
