"""Dynamic batching on a real Triton server: the default a user gets against batching turned off.

smallfleet renders `dynamic_batching` for every model that can batch unless
the spec turns it off (DESIGN.md: on a GPU it was the largest single lever).
This measures what it does here, on the real server and the real embedder:
the `minilm-l6` test SmallModel (all-MiniLM-L6-v2 int8 behind the python
backend, on CPU, maxBatchSize 32) rendered by `smallfleet.core.render` with
its `dynamicBatching` replaced by what a spec that does not mention it gets
(`DynamicBatching()`, the CRD's defaults: the row "default"), and with
`dynamicBatching.enabled: false` (the row "off"). The test manifest's own
2 ms queue delay is not what users get, so it is not what is measured;
`SMALLFLEET_BATCHING_DELAYS_US=0,2000` adds one row per listed queue delay,
to compare candidates for the default.

Each configuration runs in its own server, all started before the first
cell. Closed-loop clients send one sentence per request over HTTP at
concurrency 1, 8 and 32; the cells are interleaved (every repeat measures
each concurrency on every server in turn, the order rotating per repeat) so
that load from other processes on a shared machine falls on all
configurations alike, and the table reports the median over
`SMALLFLEET_BATCHING_REPEATS` repeats (default 3) of completed sentences per
second, p50 and p99 latency. The verdicts compare the default with "off":
never worse in throughput at any concurrency, at least 2x at concurrency 32,
each judged by the median over repeats of the ratio within a repeat (the two
cells ran seconds apart, so the ratio cancels the machine's load of that
moment better than the ratio of two medians does).

Every cell is bounded in requests and in seconds. On a shared two-core CPU
the figures are noisy and much smaller than on a GPU; read the ratios.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "tests" / "triton")]

import numpy as np  # noqa: E402
import tritonclient.http as httpclient  # noqa: E402
from triton_harness import (  # noqa: E402
    TritonEnv,
    TritonServer,
    load_manifests,
    parse_all,
    prepare_env,
    serve_directory,
    serve_plan,
)

from smallfleet.core.render import plan_for_model  # noqa: E402
from smallfleet.core.spec import DynamicBatching, SmallModelSpec  # noqa: E402
from smallfleet.settings import Settings  # noqa: E402

CONCURRENCY: Final = (1, 8, 32)
WARMUP_SECONDS: Final = 1.0
SECONDS_PER_CELL: Final = 4.0
REPEATS: Final = int(os.environ.get("SMALLFLEET_BATCHING_REPEATS", "3"))
EXTRA_DELAYS_US: Final = tuple(
    int(x) for x in os.environ.get("SMALLFLEET_BATCHING_DELAYS_US", "").split(",") if x.strip()
)
# The verdicts: batching must never lose throughput, and must at least double it at 32.
NEVER_WORSE: Final = 1.0
GAIN_AT_32: Final = 2.0
MAX_REQUESTS_PER_CELL: Final = 20_000
REQUEST_TIMEOUT_SECONDS: Final = 30.0
SENTENCES: Final = tuple(
    f"{subject} {verb} {thing} near the {place}."
    for subject in ("A child", "The engineer", "An old dog", "My neighbour")
    for verb in ("reads", "fixes", "watches")
    for thing in ("a book", "the engine", "the rain")
    for place in ("river", "station")
)


@dataclasses.dataclass(frozen=True)
class Cell:
    batching: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    mean_batch: float  # inferences per model execution, from Triton's statistics

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def drive(
    url: str, concurrency: int, seconds: float, max_requests: int
) -> tuple[list[float], int, float]:
    """Closed loop: `concurrency` clients, each sending its next request when the last returns."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    budget = [max_requests]
    deadline = time.monotonic() + seconds

    def worker(offset: int) -> None:
        nonlocal errors
        client = httpclient.InferenceServerClient(
            url, connection_timeout=REQUEST_TIMEOUT_SECONDS, network_timeout=REQUEST_TIMEOUT_SECONDS
        )
        i = offset
        try:
            while time.monotonic() < deadline:
                with lock:
                    if budget[0] <= 0:
                        return
                    budget[0] -= 1
                text = SENTENCES[i % len(SENTENCES)]
                i += concurrency
                tensor = httpclient.InferInput("TEXT", [1, 1], "BYTES")
                tensor.set_data_from_numpy(np.array([[text.encode()]], dtype=object))
                started = time.perf_counter()
                try:
                    client.infer("minilm-l6", [tensor])
                except Exception:
                    with lock:
                        errors += 1
                    continue
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
        finally:
            client.close()

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 2 * REQUEST_TIMEOUT_SECONDS)
    return latencies, errors, time.monotonic() - started


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def counts(server: TritonServer) -> tuple[int, int]:
    """Triton's (inference_count, execution_count) of the model: their ratio is the batch size."""
    status, body = server.get("/v2/models/minilm-l6/stats")
    if status != 200:
        raise RuntimeError(f"statistics answered {status}: {body!r}")
    stats = json.loads(body)["model_stats"][0]
    return int(stats["inference_count"]), int(stats["execution_count"])


def measure_cell(server: TritonServer, label: str, concurrency: int) -> Cell:
    url = server.http_url.removeprefix("http://")
    drive(url, concurrency, WARMUP_SECONDS, MAX_REQUESTS_PER_CELL)
    before = counts(server)
    latencies, errors, seconds = drive(url, concurrency, SECONDS_PER_CELL, MAX_REQUESTS_PER_CELL)
    after = counts(server)
    executions = after[1] - before[1]
    return Cell(
        batching=label,
        concurrency=concurrency,
        requests=len(latencies),
        errors=errors,
        seconds=seconds,
        p50_ms=1000 * statistics.median(latencies) if latencies else float("nan"),
        p99_ms=1000 * percentile(latencies, 0.99),
        mean_batch=(after[0] - before[0]) / executions if executions else 0.0,
    )


def median_cell(cells: list[Cell]) -> Cell:
    """The median of each figure over the repeats of one (configuration, concurrency)."""
    first = cells[0]
    return Cell(
        batching=first.batching,
        concurrency=first.concurrency,
        requests=sum(c.requests for c in cells),
        errors=sum(c.errors for c in cells),
        seconds=sum(c.seconds for c in cells),
        p50_ms=statistics.median(c.p50_ms for c in cells),
        p99_ms=statistics.median(c.p99_ms for c in cells),
        mean_batch=statistics.median(c.mean_batch for c in cells),
    )


def median_throughput(cells: list[Cell]) -> float:
    return statistics.median(c.throughput for c in cells)


def measure(
    env: TritonEnv, specs: dict[str, SmallModelSpec], workdir: Path
) -> dict[str, list[Cell]]:
    """Every (configuration, concurrency) cell REPEATS times, interleaved across servers."""
    servers: dict[str, TritonServer] = {}
    cells: dict[str, list[Cell]] = {}
    try:
        for label, spec in specs.items():
            servers[label] = serve_plan(env, plan_for_model(spec, Settings()), workdir / label)
        labels = list(servers)
        for repeat in range(REPEATS):
            for concurrency in CONCURRENCY:
                shift = repeat % len(labels)
                for label in labels[shift:] + labels[:shift]:
                    cell = measure_cell(servers[label], label, concurrency)
                    cells.setdefault(f"{label}/{concurrency}", []).append(cell)
    finally:
        for server in servers.values():
            server.stop()
    return cells


def with_batching(spec: SmallModelSpec, batching: DynamicBatching) -> SmallModelSpec:
    return dataclasses.replace(
        spec, triton=dataclasses.replace(spec.triton, dynamic_batching=batching)
    )


def main() -> int:
    started = time.monotonic()
    env = prepare_env()
    print(
        "== Triton dynamic batching: minilm-l6 (python backend, CPU), one sentence per request =="
    )
    with serve_directory(env.artifacts) as url, tempfile.TemporaryDirectory() as tmp:
        docs = load_manifests(
            "minilm-l6", ARTIFACTS_URL=url, BACKEND_ENV=str(env.execution_env_path)
        )
        models, _ = parse_all(docs)
        written = models["minilm-l6"]
        default = DynamicBatching()
        specs = {
            "default": with_batching(written, default),
            "off": with_batching(written, DynamicBatching(enabled=False)),
        }
        for delay in EXTRA_DELAYS_US:
            specs[f"{delay}us"] = with_batching(
                written, DynamicBatching(max_queue_delay_microseconds=delay)
            )
        print(
            f"default: max_batch_size {written.triton.max_batch_size} (the model's), "
            f"max_queue_delay {default.max_queue_delay_microseconds} us (the spec default); "
            f"{SECONDS_PER_CELL:g} s per cell (at most {MAX_REQUESTS_PER_CELL} requests), "
            f"median of {REPEATS} interleaved repeats"
        )
        raw = measure(env, specs, Path(tmp))
    print(
        f"{'batching':>8} {'concurrency':>11} {'requests':>8} {'errors':>6} {'seq/s':>8} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'mean batch':>10}"
    )
    for label in specs:
        for n in CONCURRENCY:
            c = median_cell(raw[f"{label}/{n}"])
            print(
                f"{c.batching:>8} {c.concurrency:>11} {c.requests:>8} {c.errors:>6} "
                f"{median_throughput(raw[f'{label}/{n}']):>8.1f} {c.p50_ms:>8.1f} "
                f"{c.p99_ms:>8.1f} {c.mean_batch:>10.1f}"
            )
    verdicts = []
    for label in [s for s in specs if s != "off"]:
        for n in CONCURRENCY:
            on, off = raw[f"{label}/{n}"], raw[f"{'off'}/{n}"]
            ratio = median_throughput(on) / max(median_throughput(off), 1e-9)
            # Each repeat measured both cells back to back: the ratio within a repeat cancels
            # the machine's load of that moment better than the ratio of the medians.
            paired = statistics.median(
                a.throughput / max(b.throughput, 1e-9) for a, b in zip(on, off, strict=True)
            )
            p99 = median_cell(off).p99_ms / max(median_cell(on).p99_ms, 1e-9)
            print(
                f"{label:>8} at concurrency {n:>2}: {ratio:.2f}x the throughput of no batching "
                f"(median of per-repeat ratios {paired:.2f}x), p99 {p99:.2f}x lower"
            )
            if label == "default":
                goal = GAIN_AT_32 if n == 32 else NEVER_WORSE
                verdicts.append(
                    f"concurrency {n}: {'met' if paired >= goal else 'NOT met'}: "
                    f"default batching >= {goal:g}x no batching "
                    f"({paired:.2f}x, median of per-repeat ratios)"
                )
    print("targets:")
    for v in verdicts:
        print(f"  {v}")
    print(f"(ran in {time.monotonic() - started:.1f} s)")
    cells = [c for group in raw.values() for c in group]
    return 1 if any(c.requests == 0 or c.errors for c in cells) else 0


if __name__ == "__main__":
    sys.exit(main())
