"""IndexFacts over packed index values: what a reader gets back is the object, as its own copy."""

from __future__ import annotations

import json
from typing import Any

from smallfleet.control.facts import IndexFacts, pack

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
    """Indices that keep plain dicts (nodes, GPU pods, routes) are read unchanged."""
    node = {"metadata": {"name": "n1"}}
    facts = IndexFacts()
    facts.attach({"cluster_nodes": {None: [node]}})
    assert facts.nodes() == [node]
