"""IndexFacts over packed index values: what a reader gets back is the object, as its own copy."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from smallfleet.control.facts import CHILD_INDICES, INDEX_NAMES, IndexFacts, StaticFacts, pack
from smallfleet.handlers import indices
from smallfleet.handlers.base import CHILD_RESOURCES
from smallfleet.handlers.operator import registry

KEY = ("SmallModel", "default", "m")


def _deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "m-eu", "namespace": "default", "uid": "u1", "labels": {"a": "é"}},
        "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "triton"}]}}},
        "status": {"readyReplicas": 2, "conditions": [{"type": "Available", "status": "True"}]},
    }


def test_a_packed_object_reads_back_equal_and_smaller() -> None:
    dep = _deployment()
    packed = pack(dep)
    assert isinstance(packed, bytes)
    assert len(packed) < len(json.dumps(dep))
    facts = IndexFacts()
    facts.attach({"child_deployments": {KEY: [packed]}})
    assert facts.deployments(KEY) == [dep]


def test_a_reader_gets_a_copy_of_its_own() -> None:
    facts = IndexFacts()
    facts.attach(
        {
            "child_deployments": {KEY: [pack(_deployment())]},
            "smallmodels": {KEY: [pack({"kind": "SmallModel", "metadata": {"name": "m"}})]},
        }
    )
    first = facts.deployments(KEY)[0]
    first["spec"]["replicas"] = 9
    assert facts.deployments(KEY)[0]["spec"]["replicas"] == 2
    owner = facts.owner(KEY)
    assert owner is not None
    owner["metadata"]["name"] = "changed"
    assert (facts.owner(KEY) or {})["metadata"]["name"] == "m"


def test_a_packed_owner_being_deleted_is_not_known() -> None:
    facts = IndexFacts()
    gone = {"metadata": {"name": "m", "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    facts.attach({"smallmodels": {KEY: [pack(gone)]}})
    assert facts.owner(KEY) is None
    assert facts.resources() == [KEY]


def test_unpacked_values_still_read_as_they_are() -> None:
    """Indices that keep plain dicts (nodes, GPU pods) are read unchanged."""
    node = {"metadata": {"name": "n1"}}
    facts = IndexFacts()
    facts.attach({"cluster_nodes": {None: [node]}})
    assert facts.nodes() == [node]


def _child(kind: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name, "namespace": "default"}}


def test_other_children_come_from_every_child_index_but_the_deployments() -> None:
    others = {
        index: {KEY: [pack(_child(index, f"m-{i}"))]} for i, index in enumerate(CHILD_INDICES)
    }
    facts = IndexFacts()
    facts.attach({**others, "child_deployments": {KEY: [pack(_deployment())]}})
    found = facts.other_children(KEY)
    assert sorted(o["kind"] for o in found) == sorted(CHILD_INDICES)
    assert facts.other_children(("SmallModel", "default", "other")) == []


def test_every_registered_index_reaches_the_facts() -> None:
    """An index kopf keeps but `INDEX_NAMES` lacks would be kept and never read."""
    registered = {h.id for h in registry._indexing.get_all_handlers()}
    assert registered == set(INDEX_NAMES)


def test_a_child_is_indexed_under_its_owner_whole_but_managed_fields() -> None:
    fns = {h.id: h.fn for h in registry._indexing.get_all_handlers()}
    assert all(fns[index] is indices.child_object for index in CHILD_INDICES)
    fn, index = indices.child_object, CHILD_INDICES[0]
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "m-config",
            "namespace": "default",
            "managedFields": [{"manager": "smallfleet"}],
            "labels": {
                "serving.smallfleet.io/owner-kind": "SmallModel",
                "serving.smallfleet.io/owner-name": "m",
            },
        },
        "data": {"config.pbtxt": "name: 'm'"},
    }
    got = asyncio.run(fn(body=body, namespace="default", labels=body["metadata"]["labels"]))
    assert list(got) == [KEY]
    facts = IndexFacts()
    facts.attach({index: {KEY: [got[KEY]]}})
    (kept,) = facts.other_children(KEY)
    assert kept["data"] == body["data"]
    assert "managedFields" not in kept["metadata"]
    unowned = {**body, "metadata": {"name": "x", "namespace": "default", "labels": {}}}
    assert asyncio.run(fn(body=unowned, namespace="default", labels={})) is None


def test_every_child_index_watches_with_the_managed_label_selector() -> None:
    """`smallfleet run` puts the selector on each of CHILD_RESOURCES: unrelated objects stay out."""
    for handler in registry._indexing.get_all_handlers():
        if not handler.id.startswith("child_") or handler.id == "child_pods":
            continue
        selector = handler.selector
        assert selector is not None
        watched = (selector.group or "", selector.version or "", str(selector.any_name))
        assert watched in CHILD_RESOURCES, handler.id


def _pod(phase: str, ready: bool, triton_running: bool, owner: str = "m") -> dict[str, Any]:
    labels = {
        "serving.smallfleet.io/owner-kind": "SmallModel",
        "serving.smallfleet.io/owner-name": owner,
    }
    return {
        "metadata": {"name": f"{owner}-pod", "namespace": "default", "uid": "u", "labels": labels},
        "status": {
            "phase": phase,
            "podIP": "127.0.0.9",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [
                {"name": "triton", "state": {"running": {}} if triton_running else {"waiting": {}}}
            ],
        },
    }


@pytest.mark.parametrize(
    ("phase", "ready", "running", "waits"),
    [
        ("Running", False, True, True),  # Triton runs, pod unready: only Triton can say why
        ("Running", True, True, False),  # serving
        ("Running", False, False, False),  # Triton not started yet
        ("Pending", False, False, False),
    ],
)
def test_only_owners_of_pods_waiting_on_triton_are_indexed(
    phase: str, ready: bool, running: bool, waits: bool
) -> None:
    pod = _pod(phase, ready, running)
    labels = pod["metadata"]["labels"]
    got = asyncio.run(indices.triton_waiting(body=pod, namespace="default", labels=labels))
    assert (got is not None) == waits
    facts = IndexFacts()
    facts.attach({"triton_waiting": got or {}})
    assert facts.waiting_on_triton() == ([KEY] if waits else [])
    static = StaticFacts(
        pod_list={KEY: [pod], ("SmallModel", "default", "n"): [_pod("Running", True, True, "n")]}
    )
    assert static.waiting_on_triton() == ([KEY] if waits else [])
    unowned = {**pod, "metadata": {**pod["metadata"], "labels": {}}}
    assert asyncio.run(indices.triton_waiting(body=unowned, namespace="default", labels={})) is None
