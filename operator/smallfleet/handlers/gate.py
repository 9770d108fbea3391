"""Listed objects that no handler acts on pass kopf's start-up gate once indexed.

At start-up kopf lists every watched kind, indexes each listed object, and
then holds the object's worker at one gate (`operator_indexed`) until every
object of every kind is indexed, so that no handler runs on incomplete
indices. Each waiting worker keeps its event's body, so a restart holds the
body of every watched object at once: at 1,000 SmallModels about 6,000
objects, and most of the restart's memory peak.

Most of them wait for nothing. A child Deployment, ConfigMap, Service,
budget or route, a pod or a node has index functions and event handlers
but no create, update, resume or delete handler and no daemon, and
smallfleet's event handlers do not act on a listing: the owner's resume
handler covers what a listed child says (`tests/unit/test_kopf_gate.py`
checks that no event handler matches a listed object of these kinds). For
such a listed object the gate only delays a pass that runs no handler.

So a listing event of a kind without kopf change or spawn handlers is
indexed, marks itself indexed, and goes on without waiting; its worker ends
and drops the body. All later events of every kind still wait while the
gate is shut.

SmallModels and ModelPipelines have change handlers, but these only put the
object's key on the reconcile queue (`control.workqueue`), and the queue's
threads, not the handlers, read the indices. So their listed objects pass
too (`install(queued=...)`), and the reconcile queue and the periodic
passes start only when kopf's gate opens (`install(opened=...)`, called on
kopf's event loop when every watched kind is indexed): the same wait as
before, for keys instead of bodies. ServingPools, whose handlers talk to
their servers at once, and any kind with a daemon or timer, still wait.

Even so, a list arrives faster than kopf indexes it: each listed object
gets a worker task at once, and the tasks take turns, so every listed
object of every kind would be in kopf's hands at the same moment. `Pacer`
bounds that: the watch stream (`handlers.streams`) hands kopf the next
listed object only while fewer than `PACE` are between the list and their
index, and one stops counting when its processing ends or when it parks at
the gate. With pages of `handlers.main.LIST_CHUNK` objects, what a restart
holds at once is then about a page per kind, `PACE` objects and the owners
at the gate, rather than everything listed.

`install` wraps kopf's `processing.process_resource_event`; if kopf no
longer has it (with the arguments used here), or its registry lacks the
parts used here, kopf is left as it is, with a warning, and the caller
starts its queue at once, since every owner then waits at kopf's gate.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Callable, Collection, Coroutine, Mapping
from typing import Any, Final

from kopf._core.intents import registries
from kopf._core.reactor import processing

log = logging.getLogger(__name__)

PATCHED: Final = "_smallfleet_listing_passes"
# Listed objects between their list and their index at once, over every kind.
PACE: Final = 200
# A listed object that never reaches kopf's processor (its watcher stopped) must not stall
# the lists after it for longer than this.
PACE_WAIT_S: Final = 5.0


class Pacer:
    """Listed objects handed to kopf and not yet indexed: at most `bound` at once.

    Objects are counted by identity: kopf passes the event it read from the
    stream to its processor as the same dict.
    """

    def __init__(self, bound: int = PACE, wait_s: float = PACE_WAIT_S) -> None:
        self.bound = bound
        self.wait_s = wait_s
        self._held: set[int] = set()
        self._room: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self._held)

    async def admit(self, event: Mapping[str, Any]) -> None:
        """Wait for room, then count the event as in kopf's hands.

        No room for `wait_s` means no listed object got indexed meanwhile,
        where each takes milliseconds: those counted were lost on the way
        (a watcher stopped), so the count starts again.
        """
        if len(self._held) >= self.bound:
            room = self._event()
            room.clear()
            try:
                await asyncio.wait_for(room.wait(), self.wait_s)
            except TimeoutError:
                log.debug("%d listed objects not indexed in %.0f s", len(self._held), self.wait_s)
                self._held.clear()
        self._held.add(id(event))

    def release(self, event: Any) -> None:
        """The event's object is indexed (or gone): it no longer counts."""
        held = self._held
        if held and id(event) in held:
            held.discard(id(event))
            if self._room is not None and len(held) < self.bound:
                self._room.set()

    def _event(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        if self._room is None or self._loop is not loop:
            self._room, self._loop = asyncio.Event(), loop
        return self._room


PACER: Final = Pacer()


class Gate:
    """kopf's gate as a listed object sees it: it stops counting for the pacer once indexed.

    Marking the object indexed goes to the gate. Waiting for the gate waits
    only if a handler may act on the object (`hold`).
    """

    def __init__(self, gate: Any, event: Any, hold: bool, pacer: Pacer) -> None:
        self._gate = gate
        self._event = event
        self._hold = hold
        self._pacer = pacer

    async def drop_toggle(self, toggle: Any) -> None:
        await self._gate.drop_toggle(toggle)

    async def wait_for(self, value: bool) -> None:
        self._pacer.release(self._event)
        if self._hold:
            await self._gate.wait_for(value)

    def is_on(self) -> bool:
        return bool(self._gate.is_on())


def acts_on_listing(registry: Any, resource: Any) -> bool:
    """Whether kopf may run a handler for a listed object of this kind beyond its indices.

    Change handlers (create, update, resume, delete) and daemons or timers
    do. Event handlers are smallfleet's own, and none acts on a listing.
    """
    return bool(
        registry._changing.has_handlers(resource=resource)
        or registry._spawning.has_handlers(resource=resource)
    )


def holds(registry: Any, resource: Any, queued: Collection[tuple[str, str]]) -> bool:
    """Whether a listed object of this kind waits at the gate with its body.

    A kind in `queued` (by API group and plural) has change handlers that
    only queue a key for work that starts once the gate opens; it waits
    only if it has a daemon or timer.
    """
    if (str(getattr(resource, "group", "")), str(getattr(resource, "plural", ""))) in queued:
        return bool(registry._spawning.has_handlers(resource=resource))
    return acts_on_listing(registry, resource)


class Opening:
    """Calls `hooks` once when a kopf gate opens: every watched kind is indexed.

    kopf makes one gate per run; it is first seen here with the first event
    of any kind: a listed object, long before the gate can open, or, where
    nothing was there to list, the first object created afterwards.
    """

    def __init__(self) -> None:
        self.hooks: list[Callable[[], None]] = []
        self._seen: int | None = None
        self._task: asyncio.Task[None] | None = None

    def watch(self, gate: Any) -> None:
        if self._seen == id(gate) or not self.hooks:
            return
        self._seen = id(gate)
        self._task = asyncio.get_running_loop().create_task(self._opened(gate))

    async def _opened(self, gate: Any) -> None:
        await gate.wait_for(True)
        for hook in self.hooks:
            try:
                hook()
            except Exception:  # one failing hook must not keep the others from running
                log.exception("a hook on kopf's opened start-up gate failed")


OPENING: Final = Opening()
QUEUED: Final[set[tuple[str, str]]] = set()


def listed(event: Any) -> bool:
    """Whether a watch event is a listed object (kopf's initial or repeated list)."""
    return isinstance(event, Mapping) and event.get("type") is None and "object" in event


Processor = Callable[..., Coroutine[Any, Any, Any]]


def _wrap(process: Processor) -> Processor:
    @functools.wraps(process)
    async def process_resource_event(*args: Any, **kwargs: Any) -> Any:
        event = kwargs.get("raw_event")
        gate = kwargs.get("operator_indexed")
        if gate is not None:
            OPENING.watch(gate)  # every event: a cluster may have no object to list
        if gate is not None and listed(event):
            hold = holds(kwargs.get("registry"), kwargs.get("resource"), QUEUED)
            kwargs["operator_indexed"] = Gate(gate, event, hold, PACER)
        try:
            return await process(*args, **kwargs)
        finally:
            PACER.release(event)

    setattr(process_resource_event, PATCHED, True)
    return process_resource_event


ARGUMENTS: Final = frozenset({"raw_event", "registry", "resource", "operator_indexed"})


def _compatible(process: Processor) -> bool:
    """kopf's processor takes the arguments used here; its registry tells handlers apart."""
    try:
        if not ARGUMENTS.issubset(inspect.signature(process).parameters):
            return False
        probe: Any = registries.OperatorRegistry()
        return callable(probe._changing.has_handlers) and callable(probe._spawning.has_handlers)
    except (AttributeError, TypeError, ValueError):
        return False


def installed() -> bool:
    """Whether kopf's processor is wrapped here, so that it releases what the pacer counts."""
    return bool(getattr(processing.process_resource_event, PATCHED, False))


def install(
    queued: Collection[tuple[str, str]] = (), opened: Callable[[], None] | None = None
) -> bool:
    """Let listed objects that no handler acts on pass the gate; False (and a warning) if not.

    `queued`: the kinds (API group, plural) whose change handlers only queue
    keys, to pass as well; `opened`: called on kopf's event loop when its gate
    opens, to start the work those keys wait for. Neither is kept when this
    answers False.
    """
    process = getattr(processing, "process_resource_event", None)
    if process is None or not callable(process) or not _compatible(process):
        log.warning(
            "kopf's processing has changed; every listed object waits at the start-up gate "
            "with its body, which raises the memory a restart needs"
        )
        return False
    if not getattr(process, PATCHED, False):
        processing.process_resource_event = _wrap(process)
    QUEUED.update(queued)
    if opened is not None and opened not in OPENING.hooks:
        OPENING.hooks.append(opened)
    return True
