"""Watched objects reach kopf without their managedFields (smallfleet.handlers.streams)."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncGenerator
from typing import Any

import pytest
from kopf._cogs.clients import watching
from kopf._cogs.structs import references
from kopf._core.reactor import queueing

from smallfleet.handlers import streams

POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "m-0",
        "namespace": "ns",
        "uid": "u-1",
        "resourceVersion": "7",
        "labels": {"app.kubernetes.io/managed-by": "smallfleet"},
        "managedFields": [
            {"manager": "kube-controller-manager", "fieldsV1": {"f:metadata": {}}},
            {"manager": "kubelet", "subresource": "status", "fieldsV1": {"f:status": {}}},
        ],
    },
    "spec": {"containers": [{"name": "triton"}]},
    "status": {"phase": "Running"},
}


@pytest.fixture(autouse=True, scope="module")
def installed() -> None:
    assert streams.install()
    assert streams.install()  # idempotent: wrapped once


def test_kopf_consumes_the_wrapped_stream() -> None:
    assert getattr(watching.infinite_watch, streams.PATCHED, False)
    assert vars(queueing)["watching"].infinite_watch is watching.infinite_watch
    inner = vars(watching.infinite_watch)["__wrapped__"]
    assert not getattr(inner, streams.PATCHED, False)


@pytest.mark.parametrize(
    "event",
    [
        {"type": None, "object": POD},  # listed
        {"type": "ADDED", "object": POD},
        {"type": "MODIFIED", "object": POD},
        {"type": "DELETED", "object": POD},
    ],
    ids=["listed", "added", "modified", "deleted"],
)
def test_an_event_loses_managed_fields_and_nothing_else(event: dict[str, Any]) -> None:
    event = copy.deepcopy(event)
    want = copy.deepcopy(event)
    del want["object"]["metadata"]["managedFields"]
    assert streams.slim_event(event) == want


@pytest.mark.parametrize(
    "event",
    [
        watching.Bookmark.LISTED,
        {"type": "ERROR", "object": {"kind": "Status", "code": 410}},
        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}},
        {"type": "ADDED", "object": None},
    ],
    ids=["kopf-bookmark", "error", "bookmark", "no-object"],
)
def test_other_events_pass_unchanged(event: Any) -> None:
    before = copy.deepcopy(event)
    assert streams.slim_event(event) == before


def test_the_wrapper_passes_every_event_and_its_arguments() -> None:
    seen: dict[str, Any] = {}

    async def stream(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, None]:
        seen.update(kwargs, args=args)
        yield {"type": None, "object": copy.deepcopy(POD)}
        yield watching.Bookmark.LISTED
        yield {"type": "MODIFIED", "object": copy.deepcopy(POD)}

    async def drain() -> list[Any]:
        return [e async for e in streams._wrap(stream)(settings="s", resource="r")]

    out = asyncio.run(drain())
    assert seen == {"settings": "s", "resource": "r", "args": ()}
    assert [e if isinstance(e, watching.Bookmark) else e["type"] for e in out] == [
        None,
        watching.Bookmark.LISTED,
        "MODIFIED",
    ]
    assert all("managedFields" not in e["object"]["metadata"] for e in out if isinstance(e, dict))


@pytest.mark.parametrize(
    ("group", "plural", "projected"),
    [
        ("", "pods", True),
        ("", "nodes", True),
        ("apps", "deployments", False),
        ("", "configmaps", False),
    ],
)
def test_pods_and_nodes_are_projected_by_resource(group: str, plural: str, projected: bool) -> None:
    body = copy.deepcopy(POD)
    body["spec"]["volumes"] = [{"name": "v", "emptyDir": {}}]
    body["status"]["images"] = [{"names": ["a"]}]

    async def stream(**_: Any) -> AsyncGenerator[Any, None]:
        yield {"type": "ADDED", "object": copy.deepcopy(body)}

    async def drain() -> list[Any]:
        resource = references.Resource(group=group, version="v1", plural=plural)
        return [e async for e in streams._wrap(stream)(resource=resource)]

    (event,) = asyncio.run(drain())
    obj = event["object"]
    assert "managedFields" not in obj["metadata"]
    trimmed = "volumes" not in obj["spec"] if plural == "pods" else "images" not in obj["status"]
    assert trimmed is projected


def test_closing_the_wrapper_closes_kopf_stream_now() -> None:
    closed: list[bool] = []

    async def stream(**_: Any) -> AsyncGenerator[Any, None]:
        try:
            while True:
                yield {"type": "ADDED", "object": copy.deepcopy(POD)}
        finally:
            closed.append(True)

    async def take_one() -> None:
        wrapped = streams._wrap(stream)()
        await anext(wrapped)
        await wrapped.aclose()
        assert closed == [True]

    asyncio.run(take_one())
