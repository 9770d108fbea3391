"""The apply plan: create, update, noop and delete, judged only on fields the operator sets."""

from __future__ import annotations

import copy
from typing import Any, Final

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from render_fixtures import GPU_ONNX

from smallfleet.core.plan import first_difference, format_path, plan_changes
from smallfleet.core.render import plan_for_model, render_children
from smallfleet.settings import Settings

CHILDREN: Final = render_children(
    plan_for_model(GPU_ONNX, Settings()), owner=None, regions={"eu-north-1": 2, "eu-west-1": 1}
)


def _as_served(obj: dict[str, Any]) -> dict[str, Any]:
    """What the API server hands back: defaults, server-set metadata, canonical quantities."""
    out = copy.deepcopy(obj)
    meta = out["metadata"]
    meta.update(
        uid="9d0b4ad5-7f83-4d6c-9c3c-3b1d1f1f0001",
        resourceVersion="4711",
        generation=3,
        creationTimestamp="2026-01-01T00:00:00Z",
        managedFields=[{"manager": "smallfleet", "operation": "Apply"}],
    )
    meta.setdefault("annotations", {})["deployment.kubernetes.io/revision"] = "2"
    if out["kind"] == "Deployment":
        pod = out["spec"]["template"]["spec"]
        pod.update(
            restartPolicy="Always", dnsPolicy="ClusterFirst", schedulerName="default-scheduler"
        )
        for c in pod["containers"] + pod["initContainers"]:
            c.update(terminationMessagePath="/dev/termination-log", imagePullPolicy="IfNotPresent")
            req = c["resources"]["requests"]
            for k, v in list(req.items()):
                req[k] = str(v)  # quantities come back as strings
        pod["containers"][0]["resources"]["requests"]["cpu"] = "2000m"
        pod["containers"][0]["resources"]["limits"]["memory"] = "4096Mi"
        out["status"] = {"replicas": 2, "readyReplicas": 2}
    if out["kind"] == "Service":
        out["spec"].update(clusterIP="127.2.0.9", clusterIPs=["127.2.0.9"], sessionAffinity="None")
    return out


def test_nothing_to_do_when_the_cluster_holds_what_we_render() -> None:
    changes = plan_changes(CHILDREN, [_as_served(c) for c in CHILDREN])
    assert [(c.action, c.reason) for c in changes] == [("noop", "up to date")] * len(CHILDREN)


def test_everything_is_created_into_an_empty_cluster_in_dependency_order() -> None:
    changes = plan_changes(list(reversed(CHILDREN)), [])
    assert {c.action for c in changes} == {"create"}
    kinds = [c.obj["kind"] for c in changes]
    assert kinds.index("ConfigMap") < kinds.index("Deployment") < kinds.index("PodDisruptionBudget")


def _edit(kind: str, path: tuple[str | int, ...], value: Any) -> list[dict[str, Any]]:
    observed = [_as_served(c) for c in CHILDREN]
    target = next(o for o in observed if o["kind"] == kind)
    cur: Any = target
    for part in path[:-1]:
        cur = cur[part]
    if value is None:
        del cur[path[-1]]
    else:
        cur[path[-1]] = value
    return observed


@pytest.mark.parametrize(
    ("kind", "path", "value", "reason"),
    [
        ("Deployment", ("spec", "replicas"), 5, "spec.replicas: want 2, have 5"),
        (
            "Deployment",
            ("spec", "template", "spec", "containers", 0, "image"),
            "triton:old",
            "spec.template.spec.containers[0].image",
        ),
        (
            "Deployment",
            ("metadata", "labels", "serving.smallfleet.io/region"),
            None,
            "metadata.labels['serving.smallfleet.io/region']",
        ),
        ("ConfigMap", ("data", "minilm.config.pbtxt"), "stale", "data['minilm.config.pbtxt']"),
        ("Service", ("spec", "ports", 2), None, "spec.ports"),
        (
            "Deployment",
            ("spec", "template", "spec", "containers", 0, "resources", "requests", "memory"),
            "8Gi",
            "resources.requests.memory",
        ),
    ],
)
def test_update_names_the_first_field_that_differs(
    kind: str, path: tuple[str | int, ...], value: Any, reason: str
) -> None:
    changes = plan_changes(CHILDREN, _edit(kind, path, value))
    updates = [c for c in changes if c.action == "update"]
    assert len(updates) == 1 and updates[0].obj["kind"] == kind
    assert reason in updates[0].reason
    assert len([c for c in changes if c.action == "noop"]) == len(CHILDREN) - 1


def test_omitted_replicas_never_trigger_an_update() -> None:
    desired = copy.deepcopy(CHILDREN)
    for d in desired:
        if d["kind"] == "Deployment":
            del d["spec"]["replicas"]  # an HPA owns the scale
    observed = _edit("Deployment", ("spec", "replicas"), 7)
    assert {c.action for c in plan_changes(desired, observed)} == {"noop"}


def test_stale_children_are_reported_for_deletion_but_foreign_objects_are_not() -> None:
    observed = [_as_served(c) for c in CHILDREN]
    old_region = copy.deepcopy(next(o for o in observed if o["kind"] == "Deployment"))
    old_region["metadata"]["name"] = "minilm-us-east-1"
    foreign = copy.deepcopy(old_region)
    foreign["metadata"]["name"] = "hand-made"
    foreign["metadata"]["labels"]["app.kubernetes.io/managed-by"] = "Helm"
    changes = plan_changes(CHILDREN, [*observed, old_region, foreign])
    deletes = [c for c in changes if c.action == "delete"]
    assert [(c.obj["metadata"]["name"], c.reason) for c in deletes] == [
        ("minilm-us-east-1", "no longer desired")
    ]
    assert changes[-1].action == "delete"


def test_apps_version_change_is_the_same_object() -> None:
    observed = [_as_served(c) for c in CHILDREN]
    for o in observed:
        if o["kind"] == "PodDisruptionBudget":
            o["apiVersion"] = "policy/v1beta1"
    assert {c.action for c in plan_changes(CHILDREN, observed)} == {"noop"}


@pytest.mark.parametrize(
    ("desired", "observed", "difference"),
    [
        ({"a": "1"}, {"a": "1000m"}, ("a",)),  # only resource maps compare as quantities
        ({"requests": {"cpu": "1"}}, {"requests": {"cpu": "1000m"}}, None),
        ({"limits": {"memory": "1Gi"}}, {"limits": {"memory": "1073741824"}}, None),
        ({"limits": {"nvidia.com/gpu": 1}}, {"limits": {"nvidia.com/gpu": "1"}}, None),
        ({"emptyDir": {"sizeLimit": "512Mi"}}, {"emptyDir": {"sizeLimit": "0.5Gi"}}, None),
        ({"target": {"averageValue": "100000"}}, {"target": {"averageValue": "100k"}}, None),
        ({"target": {"value": "1500m"}}, {"target": {"value": "1.5"}}, None),
        ({"x": 1}, {"x": 1.0}, None),
        ({"x": True}, {"x": 1}, ("x",)),
        ({"x": {}}, {}, None),
        ({"x": []}, {"x": None}, None),
        ({"x": [1, 2]}, {"x": [2, 1]}, ("x", 0)),
        ({"x": [1]}, {"x": [1, 2]}, ("x",)),
        ({"x": {"y": 1}}, {"x": {"y": 1, "z": 2}}, None),
    ],
)
def test_first_difference(
    desired: dict[str, Any], observed: dict[str, Any], difference: tuple[str | int, ...] | None
) -> None:
    assert first_difference(desired, observed) == difference


def test_format_path() -> None:
    assert format_path(("spec", "template", "metadata", "labels", "a.b/c", "x", 0)) == (
        "spec.template.metadata.labels['a.b/c'].x[0]"
    )
    assert format_path(()) == "."


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=200)
@given(json_values, st.dictionaries(st.text(max_size=4), json_values, max_size=3))
def test_an_object_never_differs_from_itself_plus_extra_fields(
    value: Any, extra: dict[str, Any]
) -> None:
    assert first_difference(value, value) is None
    if isinstance(value, dict):
        assert first_difference(value, {**extra, **value}) is None
