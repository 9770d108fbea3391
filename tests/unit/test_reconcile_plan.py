"""The pure reconcile plan: what to look at, what to change, and make-before-break."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from smallfleet.core.reconcile import (
    CHILDREN_LABEL,
    fingerprint,
    needs_comparing,
    plan_reconcile,
    removable,
    stamped,
)
from smallfleet.core.render import ServerPlan, plan_for_model, render_children
from smallfleet.core.spec import parse_small_model
from smallfleet.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
OWNER = {
    "apiVersion": "serving.smallfleet.io/v1alpha1",
    "kind": "SmallModel",
    "metadata": {"name": "minilm-embedder", "namespace": "ns", "uid": "u1"},
}


def plan() -> ServerPlan:
    (doc,) = [d for d in yaml.safe_load_all((EXAMPLES / "minilm-embedder.yaml").read_text()) if d]
    doc["metadata"]["namespace"] = "ns"
    return plan_for_model(parse_small_model(doc), Settings())


def desired(regions: dict[str, int]) -> list[dict[str, Any]]:
    return stamped(render_children(plan(), owner=OWNER, regions=regions))


def running(obj: dict[str, Any], *, ready: bool = True) -> dict[str, Any]:
    """A Deployment as the API server returns it once rolled out (or not yet ready)."""
    out = copy.deepcopy(obj)
    n = int(out["spec"]["replicas"])
    out["metadata"]["generation"] = 1
    out["status"] = {
        "observedGeneration": 1,
        "replicas": n,
        "updatedReplicas": n,
        "readyReplicas": n if ready else 0,
        "availableReplicas": n if ready else 0,
    }
    return out


def deployments(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == "Deployment"]


def test_every_deployment_carries_the_fingerprint_of_the_other_children() -> None:
    objs = desired({"eu-north-1": 1})
    mark = fingerprint(objs)
    assert all(d["metadata"]["labels"][CHILDREN_LABEL] == mark for d in deployments(objs))
    assert fingerprint(desired({"eu-north-1": 1})) == mark  # deterministic
    assert fingerprint(deployments(objs)) != mark  # it covers the other children


@pytest.mark.parametrize(
    ("generation", "observed_generation", "same_mark", "have_deployments", "want"),
    [
        (1, 0, True, False, False),  # a first reconcile: nothing to prune, names are checked
        (2, 1, True, True, True),  # the spec changed
        (1, 1, True, True, False),  # a resync or restart with nothing changed
        (1, 1, False, True, True),  # the rendering changed (an operator upgrade)
        (1, 1, True, False, True),  # a Deployment is gone: look at everything
    ],
)
def test_other_children_are_compared_only_when_they_may_differ(
    generation: int, observed_generation: int, same_mark: bool, have_deployments: bool, want: bool
) -> None:
    objs = desired({"eu-north-1": 1})
    seen = [running(d) for d in deployments(objs)] if have_deployments else []
    if not same_mark:
        for d in seen:
            d["metadata"]["labels"][CHILDREN_LABEL] = "0" * 16
    assert (
        needs_comparing(objs, seen, generation=generation, observed_generation=observed_generation)
        is want
    )


def test_a_settled_model_plans_nothing() -> None:
    objs = desired({"eu-north-1": 1})
    observed = [running(o) if o["kind"] == "Deployment" else copy.deepcopy(o) for o in objs]
    work = plan_reconcile(plan(), objs, observed, complete=True)
    assert (work.changes, work.delete, work.held) == ((), (), ())
    assert work.expected == {"minilm-embedder-eu-north-1"}
    only_watched = plan_reconcile(plan(), objs, deployments(observed), complete=False)
    assert (only_watched.changes, only_watched.delete) == ((), ())


def test_a_move_keeps_the_old_region_until_the_new_one_serves() -> None:
    old = [running(d) for d in deployments(desired({"eu-west-1": 1}))]
    objs = desired({"eu-north-1": 1})
    first = plan_reconcile(plan(), objs, old, complete=False)
    assert [ch.action for ch in first.changes] == ["create"]
    assert first.delete == () and first.held == ("minilm-embedder-eu-west-1",)

    starting = old + [running(d, ready=False) for d in deployments(objs)]
    assert plan_reconcile(plan(), objs, starting, complete=False).delete == ()

    serving = old + [running(d) for d in deployments(objs)]
    done = plan_reconcile(plan(), objs, serving, complete=False)
    assert [d["metadata"]["name"] for d in done.delete] == ["minilm-embedder-eu-west-1"]
    assert done.held == ()


@given(
    ready=st.lists(st.booleans(), min_size=1, max_size=3),
    stale=st.integers(min_value=0, max_value=3),
)
def test_nothing_goes_while_a_wanted_region_does_not_serve(ready: list[bool], stale: int) -> None:
    wanted = [running(d, ready=r) for d, r in zip(_named("new", len(ready)), ready, strict=True)]
    old = [running(d) for d in _named("old", stale)]
    names = frozenset(d["metadata"]["name"] for d in wanted)
    gone = removable(wanted + old, names)
    if all(ready):
        assert sorted(gone) == sorted(d["metadata"]["name"] for d in old)
    else:
        assert gone == []
    # A wanted Deployment being changed right now never serves yet.
    assert removable(wanted + old, names, changing=names) == []


def _named(prefix: str, n: int) -> list[dict[str, Any]]:
    base = deployments(desired({"eu-north-1": 1}))[0]
    out = []
    for i in range(n):
        d = copy.deepcopy(base)
        d["metadata"]["name"] = f"{prefix}-{i}"
        d["metadata"]["labels"]["serving.smallfleet.io/region"] = f"{prefix}-region-{i}"
        out.append(d)
    return out
