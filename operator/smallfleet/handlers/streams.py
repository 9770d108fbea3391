"""Watched objects reach kopf without their managedFields, pods and nodes projected.

Every object the operator watches arrives with `metadata.managedFields`:
the server-side apply record of which manager set which field, one entry
per manager, each a tree of the fields it owns. Neither kopf nor smallfleet
reads it from a watched object (the indices drop it, kopf's diff base drops
it; conflicts are explained from a fresh GET). Yet it is a large part of
every body, and at a restart kopf holds every watched object's body at its
start-up gate until all kinds are indexed, so the restart's memory peak is
the sum of those bodies.

Pods and nodes are also cut to what the operator reads of them
(`core.projections`): every pod in the cluster is watched, for GPU capacity.

`install` wraps kopf's `infinite_watch`, the one stream that every listed
and watched event passes through, so this happens before the event is
queued. It also hands kopf each listed object only when the pacer of
`handlers.gate` has room. If kopf no longer has that function, it leaves kopf as it is and
says so.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any, Final

from kopf._cogs.clients import watching

from smallfleet.core import projections
from smallfleet.handlers import gate

log = logging.getLogger(__name__)

PATCHED: Final = "_smallfleet_slim"
DROPPED: Final = "managedFields"
OBJECT_EVENTS: Final = frozenset({None, "ADDED", "MODIFIED", "DELETED"})

Projection = Callable[[Mapping[str, Any]], dict[str, Any]]
PROJECTIONS: Final[Mapping[tuple[str, str], Projection]] = {
    ("", "pods"): projections.pod,
    ("", "nodes"): projections.node,
}


def slim_event(event: Any, project: Projection | None = None) -> Any:
    """The event with its object's managedFields dropped and the object projected.

    The event is changed in place (it is the stream's own); bookmarks and
    errors pass as they are.
    """
    if not isinstance(event, dict) or event.get("type") not in OBJECT_EVENTS:
        return event
    obj = event.get("object")
    if isinstance(obj, dict):
        meta = obj.get("metadata")
        if isinstance(meta, dict):
            meta.pop(DROPPED, None)
        if project is not None:
            event["object"] = project(obj)
    return event


def projection(resource: Any) -> Projection | None:
    """The projection for a kopf resource, by its API group and plural."""
    return PROJECTIONS.get(
        (str(getattr(resource, "group", "")), str(getattr(resource, "plural", "")))
    )


def _wrap(
    stream: Callable[..., AsyncGenerator[Any, None]],
) -> Callable[..., AsyncGenerator[Any, None]]:
    @functools.wraps(stream)
    async def slimmed(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, None]:
        project = projection(kwargs.get("resource"))
        paced = gate.installed()  # else nothing would release what the pacer counts
        # Closed with this one, so kopf's own clean-up (its watch's response) runs now.
        async with contextlib.aclosing(stream(*args, **kwargs)) as events:
            async for event in events:
                event = slim_event(event, project)
                if paced and gate.listed(event):
                    await gate.PACER.admit(event)
                yield event

    setattr(slimmed, PATCHED, True)
    return slimmed


def install() -> bool:
    """Drop managedFields from every event kopf watches; False (and a warning) if it cannot."""
    stream = getattr(watching, "infinite_watch", None)
    if stream is None or not callable(stream):
        log.warning(
            "kopf's watching.infinite_watch is gone; watched objects keep their managedFields, "
            "which raises the memory a restart needs"
        )
        return False
    if not getattr(stream, PATCHED, False):
        watching.infinite_watch = _wrap(stream)
    return True
