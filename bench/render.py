"""How long the pure core takes per model: plan, render, diff, print.

A resync of a fleet renders and diffs every model's children, so these
per-object costs multiplied by the fleet size bound how fast the operator
can converge after a restart, before any API call is made.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "unit"))

from render_fixtures import GPU_ONNX, PIPELINE, PIPELINE_MODELS

from smallfleet.core.plan import plan_changes
from smallfleet.core.render import plan_for_model, plan_for_pipeline, render_children
from smallfleet.core.render.yamltext import dump
from smallfleet.settings import Settings

FLEET = 500
REPEATS = 3


def _time(fn: Callable[[], Any]) -> float:
    """Median CPU seconds of REPEATS runs of fn over the fleet (steadier than wall time on a shared machine)."""
    runs = []
    for _ in range(REPEATS):
        t0 = time.process_time()
        fn()
        runs.append(time.process_time() - t0)
    return statistics.median(runs)


def main() -> int:
    settings = Settings()
    models = [dataclasses.replace(GPU_ONNX, name=f"m{i}") for i in range(FLEET)]
    regions = {"eu-north-1": 2, "eu-west-1": 1}
    plans = [plan_for_model(m, settings) for m in models]
    children = [render_children(p, owner=None, regions=regions) for p in plans]
    observed = [[{**c, "status": {"x": 1}} for c in cs] for cs in children]
    pipelines = [dataclasses.replace(PIPELINE, name=f"p{i}") for i in range(FLEET)]

    rows = [
        ("plan_for_model", _time(lambda: [plan_for_model(m, settings) for m in models])),
        (
            "plan_for_pipeline (2 steps)",
            _time(lambda: [plan_for_pipeline(p, PIPELINE_MODELS, settings) for p in pipelines]),
        ),
        (
            "render_children (2 regions)",
            _time(lambda: [render_children(p, owner=None, regions=regions) for p in plans]),
        ),
        (
            "plan_changes (all up to date)",
            _time(lambda: [plan_changes(d, o) for d, o in zip(children, observed, strict=True)]),
        ),
        ("YAML dump (smallfleet render)", _time(lambda: [dump(cs) for cs in children])),
    ]
    print(f"{FLEET} models, median CPU time of {REPEATS} runs, one thread")
    print(f"{'step':<32}{'per model':>12}{'models/s':>12}")
    for name, seconds in rows:
        per = seconds / FLEET
        print(f"{name:<32}{per * 1e6:>10.0f}µs{1 / per:>12,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
