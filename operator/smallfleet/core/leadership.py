"""Which replica leads: kopf's peering records, read by kopf's own rule.

kopf's peering is not leader election by itself: an operator pauses while a
live peer of higher *or equal* priority exists, so replicas that all keep
the default priority pause each other and none works. Each replica
therefore takes a distinct random priority; the highest live one runs.
kopf pauses only its event handlers, not the operator's background work
(resync, carbon refresh, placement, autoscaling), so that work asks the same
question of the same records before it acts: two replicas must never both
scale or move a model.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Mapping
from typing import Any, Final

# kopf's default lifetime of a peer's record, in seconds, when a record names none.
DEFAULT_LIFETIME_SECONDS: Final = 60
MAX_PRIORITY: Final = 2**31 - 1


def random_priority() -> int:
    """A priority for this replica; a tie (1 in 2**31) only pauses both until one restarts."""
    return 1 + secrets.randbelow(MAX_PRIORITY)


def _alive(record: Mapping[str, Any], now: dt.datetime) -> bool:
    seen_text = record.get("lastseen")
    if not isinstance(seen_text, str):
        return True  # kopf reads a record without a time as seen just now
    try:
        seen = dt.datetime.fromisoformat(seen_text)
    except ValueError:
        return True
    if seen.tzinfo is None:
        seen = seen.replace(tzinfo=dt.UTC)
    lifetime = record.get("lifetime", DEFAULT_LIFETIME_SECONDS)
    seconds = lifetime if isinstance(lifetime, int) else DEFAULT_LIFETIME_SECONDS
    return seen + dt.timedelta(seconds=seconds) > now


def leads(peers: Mapping[str, Any] | None, identity: str, priority: int, now: dt.datetime) -> bool:
    """Whether the replica `identity` runs, given a peering object's `status`.

    Not until its own record is there (kopf has not decided either); then
    only while no other live peer has the same or a higher priority.
    """
    if not peers or identity not in peers:
        return False
    for other, record in peers.items():
        if other == identity or not isinstance(record, Mapping):
            continue
        theirs = record.get("priority", 0)
        if _alive(record, now) and isinstance(theirs, int) and theirs >= priority:
            return False
    return True
