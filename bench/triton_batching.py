"""Dynamic batching on a real Triton server: the rendered default against batching turned off.

smallfleet renders `dynamic_batching` for every model that can batch unless
the spec turns it off (DESIGN.md: on a GPU it was the largest single lever).
This measures what it does here, on the real server and the real embedder:
the `minilm-l6` test SmallModel (all-MiniLM-L6-v2 int8 behind the python
backend, on CPU) rendered twice by `smallfleet.core.render`, once as written and
once with `dynamicBatching.enabled: false`, each driven by closed-loop
clients sending one sentence per request over HTTP at concurrency 1, 8 and
32. Figures: completed sentences per second, p50 and p99 latency.

Every cell is bounded in requests and in seconds. On a shared two-core CPU
the figures are noisy and much smaller than on a GPU; read the ratios.
"""

from __future__ import annotations

import dataclasses
import json
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
SECONDS_PER_CELL: Final = 6.0
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


def measure(env: TritonEnv, spec: SmallModelSpec, label: str, workdir: Path) -> list[Cell]:
    plan = plan_for_model(spec, Settings())
    server = serve_plan(env, plan, workdir / label)
    url = server.http_url.removeprefix("http://")
    cells = []
    try:
        for concurrency in CONCURRENCY:
            drive(url, concurrency, WARMUP_SECONDS, MAX_REQUESTS_PER_CELL)
            before = counts(server)
            latencies, errors, seconds = drive(
                url, concurrency, SECONDS_PER_CELL, MAX_REQUESTS_PER_CELL
            )
            after = counts(server)
            executions = after[1] - before[1]
            cells.append(
                Cell(
                    batching=label,
                    concurrency=concurrency,
                    requests=len(latencies),
                    errors=errors,
                    seconds=seconds,
                    p50_ms=1000 * statistics.median(latencies) if latencies else float("nan"),
                    p99_ms=1000 * percentile(latencies, 0.99),
                    mean_batch=(after[0] - before[0]) / executions if executions else 0.0,
                )
            )
    finally:
        server.stop()
    return cells


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
        on = models["minilm-l6"]
        off = dataclasses.replace(
            on,
            triton=dataclasses.replace(on.triton, dynamic_batching=DynamicBatching(enabled=False)),
        )
        batching = on.triton.dynamic_batching
        print(
            f"rendered: max_batch_size {on.triton.max_batch_size}, "
            f"max_queue_delay {batching.max_queue_delay_microseconds} us; "
            f"{SECONDS_PER_CELL:g} s per cell (at most {MAX_REQUESTS_PER_CELL} requests)"
        )
        cells = measure(env, on, "on", Path(tmp)) + measure(env, off, "off", Path(tmp))
    print(
        f"{'batching':>8} {'concurrency':>11} {'requests':>8} {'errors':>6} {'seq/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'mean batch':>10}"
    )
    for c in cells:
        print(
            f"{c.batching:>8} {c.concurrency:>11} {c.requests:>8} {c.errors:>6} "
            f"{c.throughput:>8.1f} {c.p50_ms:>8.1f} {c.p99_ms:>8.1f} {c.mean_batch:>10.1f}"
        )
    by = {(c.batching, c.concurrency): c for c in cells}
    for n in CONCURRENCY:
        a, b = by[("on", n)], by[("off", n)]
        if b.throughput > 0 and a.p99_ms > 0:
            print(
                f"concurrency {n:>2}: batching gives {a.throughput / b.throughput:.2f}x throughput, "
                f"p99 {b.p99_ms / a.p99_ms:.2f}x lower"
            )
    print(f"(ran in {time.monotonic() - started:.1f} s)")
    return 1 if any(c.requests == 0 or c.errors for c in cells) else 0


if __name__ == "__main__":
    sys.exit(main())
