"""Parsing Triton's /metrics and turning two scrapes into load.

The recorded texts in data/ are real scrapes of tritonserver 2.51 (from the
nvidia-pytriton 0.7.0 wheel) serving the python-backend all-MiniLM-L6-v2
embedder with dynamic batching (max batch 8) on CPU: idle after start, busy
under 24 concurrent clients, and after the clients stopped.
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smallfleet.core import tritonmetrics as tm

DATA = Path(__file__).parent / "data"
IDLE = (DATA / "triton_metrics_idle.txt").read_text()
BUSY = (DATA / "triton_metrics_busy.txt").read_text()
AFTER = (DATA / "triton_metrics_after.txt").read_text()

GPU_TEXT = """\
# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="embedder",version="1"} 100
nv_inference_request_success{model="embedder",version="2"} 50
nv_inference_request_success{model="ranker",version="1"} 7
# HELP nv_inference_request_failure Number of failed inference requests, all batch sizes
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{model="embedder",reason="REJECTED",version="1"} 3
nv_inference_request_failure{model="embedder",reason="BACKEND",version="1"} 2
# HELP nv_inference_pending_request_count Instantaneous number of pending requests awaiting execution per-model.
# TYPE nv_inference_pending_request_count gauge
nv_inference_pending_request_count{model="embedder",version="1"} 4
nv_inference_pending_request_count{model="embedder",version="2"} 1
# HELP nv_gpu_utilization GPU utilization rate [0.0 - 1.0)
# TYPE nv_gpu_utilization gauge
nv_gpu_utilization{gpu_uuid="GPU-aaaa"} 0.5
nv_gpu_utilization{gpu_uuid="GPU-bbbb"} 0.7
# HELP nv_gpu_power_usage GPU power usage in watts
# TYPE nv_gpu_power_usage gauge
nv_gpu_power_usage{gpu_uuid="GPU-aaaa"} 143.2
# HELP nv_gpu_memory_used_bytes GPU used memory, in bytes
# TYPE nv_gpu_memory_used_bytes gauge
nv_gpu_memory_used_bytes{gpu_uuid="GPU-aaaa"} 1.5e9
"""


def test_recorded_scrape_has_every_counter() -> None:
    busy = tm.parse(BUSY)
    assert set(busy) == {("minilm-l6", "1")}
    snap = busy["minilm-l6", "1"]
    assert snap.request_success == 815
    assert snap.inference_count == 815
    assert snap.exec_count == 123
    assert snap.pending == 16
    assert snap.queue_duration_us == 81654083
    assert snap.compute_infer_duration_us == 33913616
    assert snap.request_duration_us > snap.queue_duration_us
    assert snap.gpus == ()  # a CPU server exposes no GPU metrics


def test_recorded_idle_is_all_zero() -> None:
    snap = tm.model_snapshot(IDLE, "minilm-l6")
    assert snap is not None
    assert snap.request_success == snap.inference_count == snap.pending == 0


def test_rates_from_recorded_scrapes() -> None:
    busy = tm.model_snapshot(BUSY, "minilm-l6")
    after = tm.model_snapshot(AFTER, "minilm-l6")
    assert busy is not None and after is not None
    sample = tm.rates(busy, after, 2.0)
    assert sample.requests_per_second == pytest.approx((1321 - 815) / 2.0)
    assert sample.inferences_per_second == pytest.approx((1321 - 815) / 2.0)
    assert sample.batch_size == pytest.approx((1321 - 815) / (204 - 123))
    assert 1.0 < sample.batch_size <= 8.0  # dynamic batching formed real batches
    assert sample.queue_ms_per_request == pytest.approx(
        (133770317 - 81654083) / (1321 - 815) / 1000.0
    )
    assert sample.compute_ms_per_request > 0
    assert sample.pending_requests == 0  # the clients had stopped
    assert sample.gpu_utilization is None


def test_versions_failures_and_gpus() -> None:
    parsed = tm.parse(GPU_TEXT)
    assert set(parsed) == {("embedder", "1"), ("embedder", "2"), ("ranker", "1")}
    assert parsed["embedder", "1"].request_failure == 5  # reasons add up
    snap = tm.model_snapshot(GPU_TEXT, "embedder")
    assert snap is not None
    assert (snap.request_success, snap.request_failure, snap.pending) == (150, 5, 5)
    assert [g.uuid for g in snap.gpus] == ["GPU-aaaa", "GPU-bbbb"]
    assert snap.gpus[0] == tm.GpuStats("GPU-aaaa", 0.5, 143.2, 1.5e9)
    assert snap.gpus[1].power_watts is None
    assert tm.model_snapshot(GPU_TEXT, "absent") is None
    sample = tm.rates(tm.TritonSnapshot(model="embedder"), snap, 10.0)
    assert sample.gpu_utilization == pytest.approx(60.0)
    assert sample.failures_per_second == pytest.approx(0.5)


@pytest.mark.parametrize(
    "text",
    [
        'nv_inference_count{model="m",version="1"} NaN\n',
        'nv_inference_count{model="m",version="1"} -4\n',
        "nv_inference_count 3\n",  # no model label
        'nv_inference_count{model="m" 3\n',  # broken label set
        "this is not an exposition\n",
    ],
)
def test_bad_text_is_refused(text: str) -> None:
    with pytest.raises(tm.MetricsParseError):
        tm.parse(text)


def test_counter_reset_reads_from_zero() -> None:
    before = tm.TritonSnapshot(
        model="m", request_success=1000, inference_count=4000, exec_count=500
    )
    restarted = tm.TritonSnapshot(model="m", request_success=30, inference_count=90, exec_count=10)
    sample = tm.rates(before, restarted, 10.0)
    assert sample.requests_per_second == pytest.approx(3.0)
    assert sample.inferences_per_second == pytest.approx(9.0)
    assert sample.batch_size == pytest.approx(9.0)


def test_rates_refuse_a_non_positive_interval() -> None:
    snap = tm.TritonSnapshot(model="m")
    with pytest.raises(ValueError):
        tm.rates(snap, snap, 0.0)


def test_merge_adds_rates_and_weighs_means() -> None:
    a = tm.LoadSample(100, 100, 20, 10.0, 4.0, 3, 40.0)
    b = tm.LoadSample(300, 300, 30, 30.0, 8.0, 5, 80.0)
    m = tm.merge([a, b], expected_replicas=3)
    assert m is not None
    assert m.inferences_per_second == 400
    assert m.queue_ms_per_request == pytest.approx((10 * 100 + 30 * 300) / 400)
    assert m.compute_ms_per_request == pytest.approx((4 * 100 + 8 * 300) / 400)
    assert m.pending_requests == 8
    assert m.gpu_utilization == pytest.approx(60.0)
    assert (m.replicas, m.expected_replicas, m.complete) == (2, 3, False)
    assert m.batch_size == pytest.approx(8.0)
    assert tm.merge([]) is None


def test_demand_carries_its_counting_noise() -> None:
    prev = tm.TritonSnapshot(model="m", request_success=0, inference_count=0)
    cur = tm.TritonSnapshot(model="m", request_success=3000, inference_count=3000)
    one = tm.rates(prev, cur, 30.0)  # 3,000 arrivals in 30 s: 100/s, variance 3,000 / 30^2
    assert one.demand_variance == pytest.approx(100 / 30)
    assert one.demand_stddev == pytest.approx((100 / 30) ** 0.5)
    both = tm.merge([one, one])
    assert both is not None and both.demand_variance == pytest.approx(2 * 100 / 30)


counter_values = st.floats(0, 1e12, allow_nan=False)
snapshots = st.builds(
    tm.TritonSnapshot,
    model=st.just("m"),
    request_success=counter_values,
    request_failure=counter_values,
    inference_count=counter_values,
    exec_count=counter_values,
    request_duration_us=counter_values,
    queue_duration_us=counter_values,
    compute_input_duration_us=counter_values,
    compute_infer_duration_us=counter_values,
    compute_output_duration_us=counter_values,
    pending=st.floats(0, 1e6),
)


@given(snapshots, snapshots, st.floats(0.001, 3600))
def test_rates_are_never_negative(
    prev: tm.TritonSnapshot, cur: tm.TritonSnapshot, s: float
) -> None:
    sample = tm.rates(prev, cur, s)
    for f in fields(sample):
        value = getattr(sample, f.name)
        assert value is None or value >= 0, f.name


@given(snapshots, st.floats(0.001, 3600))
def test_no_change_is_no_load(snap: tm.TritonSnapshot, s: float) -> None:
    sample = tm.rates(snap, snap, s)
    assert sample.requests_per_second == sample.inferences_per_second == 0
    assert sample.pending_requests == snap.pending


@given(snapshots, snapshots, st.floats(0.001, 3600))
def test_merge_of_one_is_itself(prev: tm.TritonSnapshot, cur: tm.TritonSnapshot, s: float) -> None:
    sample = tm.rates(prev, cur, s)
    merged = tm.merge([sample])
    assert merged is not None
    assert merged.inferences_per_second == sample.inferences_per_second
    assert merged.pending_requests == sample.pending_requests
    if sample.requests_per_second > 0:
        assert merged.queue_ms_per_request == pytest.approx(sample.queue_ms_per_request)
    assert replace(merged, queue_ms_per_request=0, compute_ms_per_request=0) == replace(
        sample, queue_ms_per_request=0, compute_ms_per_request=0
    )


def test_demand_counts_the_growing_queue() -> None:
    prev = tm.TritonSnapshot(model="m", request_success=100, inference_count=400, pending=2)
    cur = tm.TritonSnapshot(model="m", request_success=200, inference_count=800, pending=12)
    sample = tm.rates(prev, cur, 10.0)
    assert sample.inferences_per_second == pytest.approx(40.0)
    # 10 more requests waiting, 4 inferences each, over 10 s.
    assert sample.demand == pytest.approx(44.0)


def test_demand_of_recorded_draining_queue() -> None:
    busy = tm.model_snapshot(BUSY, "minilm-l6")
    after = tm.model_snapshot(AFTER, "minilm-l6")
    assert busy is not None and after is not None
    sample = tm.rates(busy, after, 2.0)
    assert sample.demand == pytest.approx((1321 - 815 - 16) / 2.0)  # the 16 pending were served
