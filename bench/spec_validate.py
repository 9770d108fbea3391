"""How fast the API layer checks resources: spec parsing and `smallfleet validate`.

The operator parses every SmallModel on every reconcile and CI jobs validate
whole GitOps repositories, so both must stay cheap as fleets grow. Prints a
table; asserts nothing.
"""

from __future__ import annotations

import io
import statistics
import time
from pathlib import Path
from typing import Any, Final

import yaml

from smallfleet.core.spec import parse_model_pipeline, parse_small_model
from smallfleet.validate import check_files

ROOT: Final = Path(__file__).resolve().parent.parent


def _examples() -> tuple[dict[str, Any], dict[str, Any]]:
    model = yaml.safe_load((ROOT / "examples" / "minilm-embedder.yaml").read_text())
    docs = list(yaml.safe_load_all((ROOT / "examples" / "rag-pipeline.yaml").read_text()))
    pipeline = next(d for d in docs if d["kind"] == "ModelPipeline")
    return model, pipeline


def _per_call_us(fn: Any, arg: Any, n: int) -> tuple[float, float]:
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn(arg)
        runs.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(runs), min(runs)


def main() -> int:
    model, pipeline = _examples()
    rows = [
        ("parse_small_model (minilm-embedder)", *_per_call_us(parse_small_model, model, 500)),
        ("parse_model_pipeline (rag, 3 steps)", *_per_call_us(parse_model_pipeline, pipeline, 500)),
    ]
    print(f"{'operation':<44} {'median µs':>10} {'best µs':>10}")
    for name, med, best in rows:
        print(f"{name:<44} {med:>10.1f} {best:>10.1f}")

    text = (ROOT / "examples" / "minilm-embedder.yaml").read_text()
    big = ROOT / ".smallfleet" / "bench-validate.yaml"
    big.parent.mkdir(exist_ok=True)
    n = 1000
    big.write_text(
        "---\n".join(text.replace("name: minilm-embedder", f"name: m{i}") for i in range(n))
    )
    t0 = time.perf_counter()
    rc = check_files([str(big)], out=io.StringIO())
    dt = time.perf_counter() - t0
    print(
        f"smallfleet validate, {n} SmallModels in one file: {dt:.2f} s ({n / dt:.0f} resources/s, exit {rc})"
    )
    big.unlink()
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
