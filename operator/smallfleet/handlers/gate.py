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
and drops the body. Owners (SmallModels, ModelPipelines, ServingPools)
still wait, as do all later events of every kind while the gate is shut.
`install` wraps kopf's `processing.process_resource_event`; if kopf no
longer has it, or its registry lacks the parts used here, kopf is left as
it is, with a warning.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Final

from kopf._core.intents import registries
from kopf._core.reactor import processing

log = logging.getLogger(__name__)

PATCHED: Final = "_smallfleet_listing_passes"


class Passed:
    """kopf's gate as a listed object that no handler acts on sees it.

    Marking the object indexed goes to the gate; waiting for the gate does
    not wait.
    """

    def __init__(self, gate: Any) -> None:
        self._gate = gate

    async def drop_toggle(self, toggle: Any) -> None:
        await self._gate.drop_toggle(toggle)

    async def wait_for(self, value: bool) -> None:
        return None

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


def passes(kwargs: Mapping[str, Any]) -> bool:
    """Whether this call of kopf's processor may skip the wait at the gate."""
    event = kwargs.get("raw_event")
    return (
        kwargs.get("operator_indexed") is not None
        and isinstance(event, Mapping)
        and event.get("type") is None
        and not acts_on_listing(kwargs.get("registry"), kwargs.get("resource"))
    )


Processor = Callable[..., Coroutine[Any, Any, Any]]


def _wrap(process: Processor) -> Processor:
    @functools.wraps(process)
    async def process_resource_event(*args: Any, **kwargs: Any) -> Any:
        if passes(kwargs):
            kwargs["operator_indexed"] = Passed(kwargs["operator_indexed"])
        return await process(*args, **kwargs)

    setattr(process_resource_event, PATCHED, True)
    return process_resource_event


def _compatible() -> bool:
    """kopf's registry still tells change and spawn handlers apart by resource."""
    try:
        probe: Any = registries.OperatorRegistry()
        return callable(probe._changing.has_handlers) and callable(probe._spawning.has_handlers)
    except AttributeError:
        return False


def install() -> bool:
    """Let listed objects that no handler acts on pass the gate; False (and a warning) if not."""
    process = getattr(processing, "process_resource_event", None)
    if process is None or not callable(process) or not _compatible():
        log.warning(
            "kopf's processing has changed; every listed object waits at the start-up gate "
            "with its body, which raises the memory a restart needs"
        )
        return False
    if not getattr(process, PATCHED, False):
        processing.process_resource_event = _wrap(process)
    return True
