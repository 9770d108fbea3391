"""Listed objects that no handler acts on pass kopf's start-up gate (smallfleet.handlers.gate)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import kopf
import pytest
from kopf._cogs.aiokits import aiotoggles
from kopf._cogs.structs import bodies, ephemera, patches, references
from kopf._core.actions import lifecycles
from kopf._core.engines import indexing, posting
from kopf._core.intents import causes
from kopf._core.reactor import inventory, processing

import smallfleet.handlers.operator  # noqa: F401  (registers every handler)
from smallfleet.core.render.children import LABEL_OWNER_KIND, LABEL_OWNER_NAME
from smallfleet.handlers import gate, storage, streams
from smallfleet.handlers.base import (
    CHILD_RESOURCES,
    DEPLOYMENTS,
    GRPCROUTES,
    HTTPROUTES,
    MANAGED,
    MODELS,
    PIPELINES,
    POOLS,
    QUEUED_OWNERS,
    SMALL_MODEL,
    registry,
)

PODS = ("", "v1", "pods")
NODES = ("", "v1", "nodes")
LABELS = {**MANAGED, LABEL_OWNER_KIND: SMALL_MODEL, LABEL_OWNER_NAME: "m"}


def resource(group: str, version: str, plural: str) -> references.Resource:
    return references.Resource(group=group, version=version, plural=plural)


@pytest.fixture(autouse=True, scope="module")
def installed() -> None:
    assert gate.install()
    assert gate.install()  # idempotent: wrapped once


def test_kopf_runs_the_wrapped_processor() -> None:
    assert getattr(processing.process_resource_event, gate.PATCHED, False)
    inner = vars(processing.process_resource_event)["__wrapped__"]
    assert not getattr(inner, gate.PATCHED, False)


@pytest.mark.parametrize("kind", [*CHILD_RESOURCES, PODS, NODES], ids=lambda k: k[2])
def test_no_change_or_spawn_handler_acts_on_a_listed_child(kind: tuple[str, str, str]) -> None:
    assert not gate.acts_on_listing(registry, resource(*kind))


@pytest.mark.parametrize("kind", [MODELS, PIPELINES, POOLS], ids=lambda k: k[2])
def test_owners_have_handlers_that_act_on_a_listing(kind: tuple[str, str, str]) -> None:
    assert gate.acts_on_listing(registry, resource(*kind))


@pytest.mark.parametrize(
    ("kind", "held"), [(MODELS, False), (PIPELINES, False), (POOLS, True)], ids=lambda k: str(k)
)
def test_owners_that_only_queue_keys_pass_and_pools_wait(
    kind: tuple[str, str, str], held: bool
) -> None:
    assert gate.holds(registry, resource(*kind), QUEUED_OWNERS) is held
    assert gate.holds(registry, resource(*kind), ()) is True


def test_the_queued_owners_change_handlers_only_queue_keys() -> None:
    """What lets them pass: a handler that read the indices would run on part of the fleet."""
    from smallfleet.handlers import models, pipelines

    queued = {f"{group}/{plural}" for group, plural in QUEUED_OWNERS}
    assert queued == {f"{MODELS[0]}/{MODELS[2]}", f"{PIPELINES[0]}/{PIPELINES[2]}"}
    for module in (models, pipelines):
        for fn in vars(module).values():
            if callable(fn) and fn.__name__.endswith(("_create", "_update", "_resume")):
                code = fn.__code__
                assert set(code.co_names) <= {"enqueue", "SMALL_MODEL", "MODEL_PIPELINE"}, fn


def _matched(kind: tuple[str, str, str], type: str | None, obj: dict[str, Any]) -> list[Any]:
    body = bodies.Body(obj)
    cause = causes.WatchingCause(
        logger=logging.getLogger("test"),
        indices={},
        memo=ephemera.Memo(),
        resource=resource(*kind),
        patch=patches.Patch(),
        body=body,
        type=type,
        event={"type": type, "object": obj},
    )
    return list(registry._watching.get_handlers(cause))


TROUBLED_POD: dict[str, Any] = {
    "metadata": {"name": "m-0", "namespace": "ns", "uid": "u", "labels": LABELS},
    "spec": {"nodeName": "n"},
    "status": {
        "phase": "Pending",
        "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "x"}
        ],
    },
}


def _child(plural: str) -> dict[str, Any]:
    return {"metadata": {"name": "m", "namespace": "ns", "uid": plural, "labels": LABELS}}


# Each kind with the event of it that its handler does act on: so the test can fail.
EVENTS: list[tuple[tuple[str, str, str], str, dict[str, Any]]] = [
    (PODS, "MODIFIED", TROUBLED_POD),
    (DEPLOYMENTS, "DELETED", _child("deployments")),
    (HTTPROUTES, "MODIFIED", _child("httproutes")),
    (GRPCROUTES, "MODIFIED", _child("grpcroutes")),
    (NODES, "DELETED", {"metadata": {"name": "n", "uid": "n"}}),
]


@pytest.mark.parametrize(("kind", "acted", "obj"), EVENTS, ids=lambda v: str(v)[:20])
def test_no_event_handler_matches_a_listed_object(
    kind: tuple[str, str, str], acted: str, obj: dict[str, Any]
) -> None:
    assert _matched(kind, acted, obj), "the handler no longer acts on its event"
    assert _matched(kind, None, obj) == []


# kopf's own processor, with a shut gate: an index and an event handler on pods, and a
# kind with a change handler.
OWNERS = ("example.com", "v1", "owners")
QUEUED = ("example.com", "v1", "queued")


class Cluster:
    def __init__(self) -> None:
        self.registry = kopf.OperatorRegistry()
        self.indexed: list[str] = []
        self.events: list[str | None] = []
        self.resumed: list[str] = []

        @kopf.index(*PODS, registry=self.registry)
        def names(name: str, **_: Any) -> str:
            self.indexed.append(name)
            return name

        @kopf.on.event(*PODS, registry=self.registry)
        def event(type: str | None, **_: Any) -> None:
            self.events.append(type)

        @kopf.on.update(*OWNERS, registry=self.registry)
        def update(**_: Any) -> None:
            pass

        @kopf.on.resume(*QUEUED, registry=self.registry)
        @kopf.on.create(*QUEUED, registry=self.registry)
        async def queue(name: str, **_: Any) -> None:
            self.resumed.append(name)

        self.indexers = indexing.OperatorIndexers()
        self.indexers.ensure(self.registry._indexing.get_all_handlers())
        self.memories = inventory.ResourceMemories()
        self.gate = aiotoggles.ToggleSet(all)

    async def process(
        self, kind: tuple[str, str, str], type: str | None, name: str
    ) -> tuple[asyncio.Task[Any], aiotoggles.Toggle]:
        toggle = await self.gate.make_toggle(name=name)
        obj = {"metadata": {"name": name, "namespace": "ns", "uid": name}}
        event = {"type": type, "object": obj}
        if type is None:
            await gate.PACER.admit(event)  # as the wrapped watch stream does
        call: Callable[..., Any] = processing.process_resource_event
        settings = kopf.OperatorSettings()
        settings.persistence.progress_storage = storage.PROGRESS  # no patch through the API
        settings.persistence.diffbase_storage = storage.DIFFBASE
        task = asyncio.create_task(
            call(
                lifecycle=lifecycles.all_at_once,
                indexers=self.indexers,
                registry=self.registry,
                settings=settings,
                memories=self.memories,
                memobase=ephemera.Memo(),
                resource=resource(*kind),
                raw_event=event,
                event_queue=asyncio.Queue[posting.K8sEvent](),
                resource_indexed=toggle,
                operator_indexed=self.gate,
                no_throttling=True,
            )
        )
        self.event = event
        return task, toggle

    def counted(self) -> bool:
        return id(self.event) in gate.PACER._held


def test_a_listed_pod_is_indexed_and_passes_the_shut_gate() -> None:
    async def scenario() -> Cluster:
        cluster = Cluster()
        blocker = await cluster.gate.make_toggle(name="another kind still listing")
        task, toggle = await cluster.process(PODS, None, "p-0")
        assert cluster.counted()
        await asyncio.wait_for(task, timeout=5)
        assert not cluster.counted()
        assert toggle not in cluster.gate._toggles  # marked indexed: the gate waits on it no more
        assert blocker in cluster.gate._toggles and not cluster.gate.is_on()
        return cluster

    cluster = asyncio.run(scenario())
    assert cluster.indexed == ["p-0"]
    # kopf's event pass ran before the gate opened: why smallfleet's event handlers ignore
    # listings (test_no_event_handler_matches_a_listed_object).
    assert cluster.events == [None]


@pytest.mark.parametrize(
    ("kind", "type"), [(PODS, "MODIFIED"), (OWNERS, None)], ids=["watched pod", "listed owner"]
)
def test_others_wait_until_the_gate_opens(kind: tuple[str, str, str], type: str | None) -> None:
    async def scenario() -> Cluster:
        cluster = Cluster()
        blocker = await cluster.gate.make_toggle(name="another kind still listing")
        task, toggle = await cluster.process(kind, type, "x-0")
        await asyncio.sleep(0.2)
        assert not task.done()
        assert toggle not in cluster.gate._toggles  # indexed, and waiting
        assert not cluster.counted()  # parked: the pacer lets the lists go on
        if kind == OWNERS:
            task.cancel()  # past the gate its handler would patch the object through the API
            with pytest.raises(asyncio.CancelledError):
                await task
            return cluster
        await cluster.gate.drop_toggle(blocker)
        await asyncio.wait_for(task, timeout=5)
        return cluster

    cluster = asyncio.run(scenario())
    assert cluster.events == ([] if kind == OWNERS else ["MODIFIED"])


class Opened:
    """A fresh `gate.OPENING` whose one hook records whether kopf's gate was open when called."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.opening = gate.Opening()
        self.calls: list[bool] = []
        monkeypatch.setattr(gate, "OPENING", self.opening)

    def hook_on(self, cluster: Cluster) -> None:
        self.opening.hooks.append(lambda: self.calls.append(cluster.gate.is_on()))

    async def called(self) -> None:
        for _ in range(50):
            if self.calls:
                return
            await asyncio.sleep(0.02)


def test_a_listed_owner_that_only_queues_passes_and_the_work_waits_for_the_gate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened = Opened(monkeypatch)
    monkeypatch.setattr(gate, "QUEUED", {("example.com", "queued")})

    async def scenario() -> Cluster:
        cluster = Cluster()
        opened.hook_on(cluster)
        blocker = await cluster.gate.make_toggle(name="another kind still listing")
        task, _ = await cluster.process(QUEUED, None, "q-0")
        await asyncio.wait_for(task, timeout=5)
        assert not cluster.counted()
        assert cluster.resumed == ["q-0"]  # its handler ran: it queued a key
        await asyncio.sleep(0.1)
        assert opened.calls == []  # the work that key waits for has not started
        await cluster.gate.drop_toggle(blocker)
        await opened.called()
        task, _ = await cluster.process(QUEUED, None, "q-1")  # the same gate: one call only
        await asyncio.wait_for(task, timeout=5)
        await asyncio.sleep(0.05)
        return cluster

    asyncio.run(scenario())
    assert opened.calls == [True]


def test_with_nothing_to_list_the_first_object_created_opens_the_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened = Opened(monkeypatch)

    async def scenario() -> None:
        cluster = Cluster()
        opened.hook_on(cluster)
        task, _ = await cluster.process(PODS, "ADDED", "p-new")
        await asyncio.wait_for(task, timeout=5)
        await opened.called()

    asyncio.run(scenario())
    assert opened.calls == [True]


def test_kopf_is_left_as_it_is_when_its_processor_takes_other_arguments(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def process_resource_event(raw_event: Any, registry: Any, resource: Any) -> None:
        pass

    monkeypatch.setattr(processing, "process_resource_event", process_resource_event)
    opening = gate.Opening()
    monkeypatch.setattr(gate, "OPENING", opening)
    assert not gate.install(opened=lambda: None)
    assert processing.process_resource_event is process_resource_event
    assert opening.hooks == []
    assert "start-up gate" in caplog.text


def test_kopf_is_left_as_it_is_when_it_changed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delattr(processing, "process_resource_event")
    assert not gate.install()
    assert "start-up gate" in caplog.text


def test_the_pacer_waits_for_room_that_a_release_makes() -> None:
    async def scenario() -> None:
        pacer = gate.Pacer(bound=2, wait_s=5)
        a, b, c = ({"type": None, "object": {"n": i}} for i in range(3))
        await pacer.admit(a)
        await pacer.admit(b)
        third = asyncio.create_task(pacer.admit(c))
        await asyncio.sleep(0.05)
        assert not third.done() and len(pacer) == 2
        pacer.release(a)
        await asyncio.wait_for(third, timeout=1)
        assert len(pacer) == 2
        pacer.release({"type": "MODIFIED", "object": {}})  # never counted
        assert len(pacer) == 2

    asyncio.run(scenario())


def test_counts_lost_on_the_way_stall_the_lists_for_a_while_only() -> None:
    async def scenario() -> float:
        pacer = gate.Pacer(bound=1, wait_s=0.2)
        lost, next_one = {"type": None, "object": {}}, {"type": None, "object": {}}
        await pacer.admit(lost)
        started = asyncio.get_running_loop().time()
        await asyncio.wait_for(pacer.admit(next_one), timeout=2)
        assert len(pacer) == 1  # the count started again
        return asyncio.get_running_loop().time() - started

    assert asyncio.run(scenario()) >= 0.2


def test_the_watch_stream_hands_on_listed_objects_only_with_room(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gate, "PACER", gate.Pacer(bound=2, wait_s=5))
    listed = [{"type": None, "object": {"metadata": {"name": f"p-{i}"}}} for i in range(3)]
    watched = {"type": "MODIFIED", "object": {"metadata": {"name": "p-0"}}}

    async def inner(**_: Any) -> Any:
        for event in [*listed, watched]:
            yield event

    async def scenario() -> None:
        stream = streams._wrap(inner)(resource=resource(*DEPLOYMENTS))
        got = [await anext(stream), await anext(stream)]
        third = asyncio.create_task(anext(stream))
        await asyncio.sleep(0.05)
        assert not third.done()
        gate.PACER.release(got[0])
        assert await asyncio.wait_for(third, timeout=1) is listed[2]
        assert await asyncio.wait_for(anext(stream), timeout=1) is watched  # never waits
        await stream.aclose()

    asyncio.run(scenario())


def test_the_stream_counts_nothing_when_kopf_could_not_be_wrapped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inner_process = vars(processing.process_resource_event)["__wrapped__"]
    monkeypatch.setattr(processing, "process_resource_event", inner_process)
    monkeypatch.setattr(gate, "PACER", gate.Pacer(bound=1, wait_s=5))
    listed = [{"type": None, "object": {"metadata": {"name": f"p-{i}"}}} for i in range(3)]

    async def inner(**_: Any) -> Any:
        for event in listed:
            yield event

    async def scenario() -> list[Any]:
        stream = streams._wrap(inner)(resource=resource(*DEPLOYMENTS))
        got = [await asyncio.wait_for(anext(stream), timeout=1) for _ in listed]
        await stream.aclose()
        return got

    assert asyncio.run(scenario()) == listed
    assert len(gate.PACER) == 0
