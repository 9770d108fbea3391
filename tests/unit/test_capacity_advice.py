"""Capacity advice and the fleet plan from Kubernetes objects: the placer's and the CLI's path.

The operator's gauge and `smallfleet capacity-advice` must give the same
figures from the same objects, and the fleet's own servers must not count
as room taken (the plan may hand any model's GPUs to another).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_placement_runtime import NOW, SETTINGS, node, owner, plan, signals

from smallfleet.advice import advise
from smallfleet.cli import main
from smallfleet.core.placement import PlacementInput
from smallfleet.core.placement.evaluate import fleet_entry, joint_plan
from smallfleet.core.placement.fleet import HOURS_PER_WEEK, model_watts

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def gpu_pod(owner_name: str, node_name: str, gpus: int = 1) -> dict[str, Any]:
    return {
        "kind": "Pod",
        "metadata": {
            "namespace": "ns",
            "name": f"{owner_name}-pod",
            "labels": {
                "serving.smallfleet.io/owner-kind": "SmallModel",
                "serving.smallfleet.io/owner-name": owner_name,
            },
        },
        "spec": {
            "nodeName": node_name,
            "containers": [{"resources": {"requests": {"nvidia.com/gpu": str(gpus)}}}],
        },
    }


def test_the_fleet_plan_counts_the_fleets_own_servers_as_free_room() -> None:
    nodes = [
        node("north", "eu-north-1", "NVIDIA-A10G", 1),
        node("us", "us-east-1", "NVIDIA-A10G", 4),
    ]
    # The model's own server holds north's only GPU; the plan may still put it there.
    entry = fleet_entry(("SmallModel", "ns", "m"), plan(), owner(["eu-north-1"]), (), NOW)
    fleet = joint_plan(
        [entry], nodes, [gpu_pod("m", "north")], signals(eu_north_1=40, us_east_1=400),
        SETTINGS, NOW,
    )  # fmt: skip
    assert fleet.targets == {("SmallModel", "ns", "m"): ("eu-north-1",)}
    assert fleet.moves == 0
    # North is full with the fleet in it: one more GPU there would take nothing
    # from us-east-1 (nobody is there), so the advice is 0 everywhere.
    assert {(a.region, a.grams_per_week) for a in fleet.advice} == {
        ("eu-north-1", 0.0),
        ("us-east-1", 0.0),
    }
    # A second model that must go to us-east-1 makes one more north GPU worth its move.
    other = fleet_entry(("SmallModel", "ns", "n"), plan(), owner(), (), NOW)
    both = joint_plan(
        [entry, other], nodes, [], signals(eu_north_1=40, us_east_1=400), SETTINGS, NOW
    )
    north = next(a for a in both.advice if a.region == "eu-north-1")
    assert north.grams_per_week > 0
    watts = model_watts(PlacementInput("ns/n", other.plan.placement, other.plan.resources, 1), 1.2)
    assert north.grams_per_week == pytest.approx(watts / 1000 * (400 - 40) * HOURS_PER_WEEK)


def test_cli_prints_the_advice_for_the_examples() -> None:
    nodes = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            node("fr", "eu-west-3", "NVIDIA-L4", 1) | {"kind": "Node"},
            node("de", "eu-central-1", "NVIDIA-L4", 8) | {"kind": "Node"},
        ],
    }
    docs: list[Any] = [nodes]
    for path in sorted(EXAMPLES.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    out, err = io.StringIO(), io.StringIO()
    rc = advise(docs, ["eu-west-3=60", "eu-central-1=450"], SETTINGS, out, err)
    assert rc == 0, err.getvalue()
    lines = out.getvalue().splitlines()
    assert "kgCO2e/week per GPU" in lines[1]
    # Paris has one L4 for the L4 models: one more there saves a model's move from Frankfurt.
    fr = lines[2].split()
    assert fr[:3] == ["eu-west-3", "NVIDIA-L4", "60"] and float(fr[3]) > 0
    de = lines[3].split()
    assert de[:3] == ["eu-central-1", "NVIDIA-L4", "450"] and float(de[3]) == 0.0


def test_cli_refuses_a_malformed_intensity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "nodes.yaml"
    f.write_text(yaml.safe_dump(node("fr", "eu-west-3", "NVIDIA-L4", 1) | {"kind": "Node"}))
    assert main(["capacity-advice", str(f), "--intensity", "eu-west-3"]) == 2
    assert "expected REGION=G" in capsys.readouterr().err
    assert main(["capacity-advice", str(f)]) == 0
    assert "eu-west-3" in capsys.readouterr().out
