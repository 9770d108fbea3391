"""kopf's start-up gate notifies its waiters on flips only (smallfleet.handlers.toggles)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

import pytest
from kopf._cogs.aiokits import aiotoggles

from smallfleet.handlers import toggles


@pytest.fixture(autouse=True, scope="module")
def installed() -> None:
    assert toggles.install()
    assert toggles.install()  # idempotent


class Counted:
    """A waiter for one state of the set that counts how often it was woken to check."""

    def __init__(self, toggleset: aiotoggles.ToggleSet, state: bool) -> None:
        self.checks = 0
        self.toggleset, self.state = toggleset, state

    def ready(self) -> bool:
        self.checks += 1
        return self.toggleset.is_on() == self.state

    async def wait(self) -> None:
        async with self.toggleset._condition:
            await self.toggleset._condition.wait_for(self.ready)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_the_gate_wakes_its_waiters_once_when_the_last_object_is_indexed() -> None:
    async def scenario() -> tuple[list[int], bool]:
        gate = aiotoggles.ToggleSet(all)
        objects = [await gate.make_toggle(name=f"object-{i}") for i in range(500)]
        waiters = [Counted(gate, True) for _ in range(50)]
        tasks = [asyncio.create_task(w.wait()) for w in waiters]
        await _settle()
        for toggle in objects[:-1]:
            await gate.drop_toggle(toggle)
            await _settle()
        shut = not any(t.done() for t in tasks)
        await gate.drop_toggle(objects[-1])
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
        return [w.checks for w in waiters], shut

    checks, shut_until_last = asyncio.run(scenario())
    assert shut_until_last
    # One check on entering, one on the flip; kopf's own ToggleSet made 500 here.
    assert max(checks) <= 2, checks


async def _make(ts: aiotoggles.ToggleSet, held: list[aiotoggles.Toggle], on: bool) -> None:
    held.append(await ts.make_toggle(on))


async def _drop(ts: aiotoggles.ToggleSet, held: list[aiotoggles.Toggle]) -> None:
    await ts.drop_toggle(held.pop(0))


async def _drop_all(ts: aiotoggles.ToggleSet, held: list[aiotoggles.Toggle]) -> None:
    await ts.drop_toggles(list(held))
    held.clear()


@pytest.mark.parametrize(
    ("fn", "setup", "steps", "wait_for", "released_after"),
    [
        # all(): an empty set is on; one off toggle shuts it; dropping the last opens it again.
        (all, [], [("make", False)], False, 1),
        (all, [], [("make", True), ("make", False)], False, 2),
        (all, [("make", False), ("make", False)], [("drop",), ("drop",)], True, 2),
        (all, [("make", False), ("make", False)], [("drop_all",)], True, 1),
        # any(): an empty set is off; one on toggle turns it on; dropping the last turns it off.
        (any, [], [("make", False), ("make", True)], True, 2),
        (any, [("make", True), ("make", True)], [("drop",), ("drop",)], False, 2),
        (any, [("make", True), ("make", False)], [("drop_all",)], False, 1),
    ],
)
def test_a_waiter_for_a_state_is_released_at_the_step_that_flips_to_it(
    fn: Callable[[Iterable[object]], bool],
    setup: list[tuple[object, ...]],
    steps: list[tuple[object, ...]],
    wait_for: bool,
    released_after: int,
) -> None:
    async def scenario() -> int | None:
        ts = aiotoggles.ToggleSet(fn)
        held: list[aiotoggles.Toggle] = []

        async def apply(step: tuple[object, ...]) -> None:
            if step[0] == "make":
                await _make(ts, held, bool(step[1]))
            elif step[0] == "drop":
                await _drop(ts, held)
            else:
                await _drop_all(ts, held)

        for step in setup:
            await apply(step)
        assert ts.is_on() != wait_for, "the waiter must start unsatisfied"
        waiter = asyncio.create_task(Counted(ts, wait_for).wait())
        await _settle()
        for n, step in enumerate(steps, 1):
            await apply(step)
            await _settle()
            if waiter.done():
                return n
        waiter.cancel()
        return None

    assert asyncio.run(scenario()) == released_after


def test_a_member_turned_on_still_wakes_the_set_waiters() -> None:
    """Members notify on their own (kopf's Toggle.turn_to): the gate opens without a drop."""

    async def scenario() -> bool:
        ts = aiotoggles.ToggleSet(all)
        toggle = await ts.make_toggle(False)
        waiter = asyncio.create_task(Counted(ts, True).wait())
        await _settle()
        await toggle.turn_to(True)
        await asyncio.wait_for(waiter, timeout=5)
        return True

    assert asyncio.run(scenario())
