"""What the carbon refresh's joint plan holds per model: its entries, built as the placer builds them.

Each carbon refresh reads every placed model from the indices and hands the
fleet to `joint_plan` at once, so whatever an entry keeps is kept for the
whole fleet together. This rebuilds the entries of N bench SmallModels
(SMALLFLEET_JOINT_N, default 5,000), each owner and its rendered
Deployment decoded from JSON as the indices hand them out, and prints what
tracemalloc counts as held: entries that keep the owner and its
Deployments (as they did), against `fleet_entry`'s. Seconds, no cluster.

    .venv/bin/python bench/run.py joint_plan_memory
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tracemalloc
from typing import Any, Final

from _kube import small_model
from smallfleet.core.placement.evaluate import fleet_entry
from smallfleet.core.render import plan_for_model, render_children
from smallfleet.core.spec import parse_small_model
from smallfleet.settings import Settings

N: Final = int(os.environ.get("SMALLFLEET_JOINT_N", "5000"))
REGION: Final = "eu-west-1"


def _objects(n: int, settings: Settings) -> list[tuple[bytes, bytes]]:
    """Each model's owner and Deployment as JSON, with the status fields placement reads."""
    out = []
    for i in range(n):
        owner = small_model(i, "bench")
        owner["metadata"]["uid"] = f"uid-{i}"
        owner["status"] = {"placement": {"regions": [{"region": REGION}]}}
        plan = plan_for_model(parse_small_model(owner), settings)
        children = render_children(plan, owner=owner, regions={REGION: 1})
        deployment = next(c for c in children if c["kind"] == "Deployment")
        deployment["metadata"]["creationTimestamp"] = "2026-12-07T00:00:00Z"
        deployment["status"] = {
            "observedGeneration": 1,
            **dict.fromkeys(("replicas", "readyReplicas", "availableReplicas"), 1),
            "updatedReplicas": 1,
        }
        out.append((json.dumps(owner).encode(), json.dumps(deployment).encode()))
    return out


def _held(objects: list[tuple[bytes, bytes]], settings: Settings, whole: bool) -> float:
    now = dt.datetime.now(dt.UTC)
    tracemalloc.start()
    kept: list[Any] = []
    for owner_json, deployment_json in objects:
        owner, deployments = json.loads(owner_json), [json.loads(deployment_json)]
        plan = plan_for_model(parse_small_model(owner), settings)
        key = ("SmallModel", "bench", str(owner["metadata"]["name"]))
        if whole:
            kept.append((key, plan, owner, deployments))
        else:
            kept.append(fleet_entry(key, plan, owner, deployments, now))
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return held / 2**20


def main() -> int:
    settings = Settings()
    objects = _objects(N, settings)
    print(f"\n## The joint plan's entries for {N} SmallModels (tracemalloc)\n")
    print("| entries keep | MiB held | KiB per model |")
    print("|---|---:|---:|")
    for label, whole in (("the owner and its Deployments", True), ("`fleet_entry`", False)):
        mib = _held(objects, settings, whole)
        print(f"| {label} | {mib:.1f} | {mib * 1024 / N:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
