"""kopf's bookkeeping in memory (`handlers.storage`): the essences it compares stay kopf's own."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kopf
import yaml
from hypothesis import given, settings
from hypothesis import strategies as s

from smallfleet.handlers import storage
from smallfleet.handlers.operator import registry

CRDS = Path(__file__).resolve().parents[2] / "crds"

_text = s.text("abcxyz-./", min_size=1, max_size=12)
_values = s.recursive(
    s.none() | s.booleans() | s.integers(-5, 5) | _text,
    lambda inner: s.lists(inner, max_size=3) | s.dictionaries(_text, inner, max_size=3),
    max_leaves=12,
)


def _body(kind: str, spec: Any, labels: Any, annotations: Any, status: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": "m",
        "namespace": "ns",
        "uid": "u-1",
        "generation": 3,
        "resourceVersion": "17",
        "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
    }
    if labels is not None:
        meta["labels"] = labels
    if annotations is not None:
        meta["annotations"] = annotations
    body = {"apiVersion": "serving.smallfleet.io/v1alpha1", "kind": kind, "metadata": meta}
    if spec is not None:
        body["spec"] = spec
    if status is not None:
        body["status"] = status
    return body


@settings(max_examples=200, deadline=None)
@given(
    kind=s.sampled_from(sorted(storage.COMPARED_KINDS)),
    spec=s.none() | s.dictionaries(_text, _values, max_size=4),
    labels=s.none() | s.dictionaries(_text, _text, max_size=3),
    annotations=s.none()
    | s.dictionaries(
        _text
        | s.just("kubectl.kubernetes.io/last-applied-configuration")
        | s.just("smallfleet.io/last-handled-configuration"),
        _text,
        max_size=3,
    ),
    status=s.none() | s.dictionaries(_text, _values, max_size=3),
)
def test_the_compared_kinds_get_kopfs_own_essence(
    kind: str, spec: Any, labels: Any, annotations: Any, status: Any
) -> None:
    body = _body(kind, spec, labels, annotations, status)
    before = copy.deepcopy(body)
    kopfs = kopf.AnnotationsDiffBaseStorage(prefix=storage.PREFIX, key="last-handled-configuration")
    ours = storage.MemoryDiffBaseStorage()
    assert ours.build(body=kopf.Body(body)) == kopfs.build(body=kopf.Body(body))
    assert body == before  # nothing of the event's body is changed or shared
    essence = ours.build(body=kopf.Body(body))
    if spec:
        essence["spec"]["mutated"] = True
        assert "mutated" not in body["spec"]


def test_an_extra_field_is_built_the_way_kopf_builds_it() -> None:
    body = _body("SmallModel", {"a": 1}, {"x": "y"}, None, {"phase": "p"})
    kopfs = kopf.AnnotationsDiffBaseStorage(prefix=storage.PREFIX, key="last-handled-configuration")
    fields = [("status", "phase")]
    got = storage.MemoryDiffBaseStorage().build(body=kopf.Body(body), extra_fields=fields)
    assert got == kopfs.build(body=kopf.Body(body), extra_fields=fields)
    assert got["status"] == {"phase": "p"}


def test_kinds_without_create_or_update_handlers_get_an_empty_essence() -> None:
    for kind in ("Deployment", "Pod", "Node", "HTTPRoute"):
        body = _body(kind, {"replicas": 1}, {"a": "b"}, None, {"ready": 1})
        assert storage.MemoryDiffBaseStorage().build(body=kopf.Body(body)) == {}


def test_the_compared_kinds_are_those_with_changing_handlers() -> None:
    kinds = {}
    for path in CRDS.glob("*.yaml"):
        names = yaml.safe_load(path.read_text())["spec"]["names"]
        kinds[names["plural"]] = names["kind"]
    changing = {
        kinds.get(str(h.selector.any_name), str(h.selector.any_name))
        for h in registry._changing.get_all_handlers()
        if h.selector is not None
    }
    assert changing == storage.COMPARED_KINDS
