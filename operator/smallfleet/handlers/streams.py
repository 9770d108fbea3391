"""Watched objects reach kopf without their managedFields.

Every object the operator watches arrives with `metadata.managedFields`:
the server-side apply record of which manager set which field, one entry
per manager, each a tree of the fields it owns. Neither kopf nor smallfleet
reads it from a watched object (the indices drop it, kopf's diff base drops
it; conflicts are explained from a fresh GET). Yet it is a large part of
every body, and at a restart kopf holds every watched object's body at its
start-up gate until all kinds are indexed, so the restart's memory peak is
the sum of those bodies.

`install` wraps kopf's `infinite_watch`, the one stream that every listed
and watched event passes through, so the field is dropped before the event
is queued. If kopf no longer has that function, it leaves kopf as it is and
says so.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

from kopf._cogs.clients import watching

log = logging.getLogger(__name__)

PATCHED: Final = "_smallfleet_slim"
DROPPED: Final = "managedFields"


def slim_event(event: Any) -> Any:
    """The event with its object's managedFields dropped, in place; bookmarks as they are."""
    if isinstance(event, dict):
        obj = event.get("object")
        if isinstance(obj, dict):
            meta = obj.get("metadata")
            if isinstance(meta, dict):
                meta.pop(DROPPED, None)
    return event


def _wrap(stream: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    @functools.wraps(stream)
    async def slimmed(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async for event in stream(*args, **kwargs):
            yield slim_event(event)

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
