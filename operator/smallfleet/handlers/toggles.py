"""kopf's start-up gate, without waking every waiting worker for every object.

Until every object of every indexed kind is in its indices, kopf holds the
worker of each watched object at one gate (`operator_indexed`: a ToggleSet
with one toggle per object not yet indexed). kopf's ToggleSet notifies every
waiter each time a toggle is made or dropped, and each waiter wakes only to
find the gate still shut. A restart lists every object at once, so that is
a wake-up per waiting worker per listed object: quadratic in the fleet. At
1,000 SmallModels (about 6,000 watched objects) a restart spent 47 s of CPU
with about 40% of the samples in those wake-ups, while every waiting worker
held its object's body.

A set's state (any or all of its toggles on) changes only when its
membership changes or a member flips, and a member that flips notifies on
its own (`Toggle.turn_to`). So `make_toggle` and `drop_toggle(s)` here
notify only when the set's state flips. Waiters wait for a state of the
set, so none misses a change; the rest of kopf is untouched. `install`
replaces the three methods on kopf's class; if kopf's ToggleSet no longer
has the parts they use, it leaves kopf as it is and says so.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Final

from kopf._cogs.aiokits import aiotoggles

log = logging.getLogger(__name__)

PATCHED: Final = "_smallfleet_flip_only"


async def make_toggle(
    self: aiotoggles.ToggleSet, __val: bool = False, *, name: str | None = None
) -> aiotoggles.Toggle:
    toggle = aiotoggles.Toggle(__val, name=name, condition=self._condition)
    async with self._condition:
        before = self.is_on()
        self._toggles.add(toggle)
        if self.is_on() != before:
            self._condition.notify_all()
    return toggle


async def drop_toggle(self: aiotoggles.ToggleSet, toggle: aiotoggles.Toggle) -> None:
    async with self._condition:
        before = self.is_on()
        self._toggles.discard(toggle)
        if self.is_on() != before:
            self._condition.notify_all()


async def drop_toggles(self: aiotoggles.ToggleSet, toggles: Iterable[aiotoggles.Toggle]) -> None:
    async with self._condition:
        before = self.is_on()
        self._toggles.difference_update(toggles)
        if self.is_on() != before:
            self._condition.notify_all()


def _compatible() -> bool:
    """kopf's ToggleSet still keeps a set of toggles under one asyncio Condition."""
    try:
        probe: Any = aiotoggles.ToggleSet(all)
        return isinstance(probe._toggles, set) and hasattr(probe._condition, "notify_all")
    except (AttributeError, TypeError):
        return False


def install() -> bool:
    """Make kopf's ToggleSet notify on flips only; False (and a warning) if it cannot."""
    cls: Any = aiotoggles.ToggleSet
    if getattr(cls, PATCHED, False):
        return True
    if not _compatible():
        log.warning(
            "kopf's ToggleSet has changed; its start-up gate wakes every waiting worker per "
            "object, which costs CPU quadratic in the fleet at a restart"
        )
        return False
    cls.make_toggle = make_toggle
    cls.drop_toggle = drop_toggle
    cls.drop_toggles = drop_toggles
    setattr(cls, PATCHED, True)
    return True
