"""Make-before-break region moves, as a pure plan.

A model moving from a dirty region to a clean one must never stop serving:
the new region's Deployment is created first, and an old region's Deployment
is deleted only once every target region has its ready replicas. The runtime
calls `plan_move` on every reconcile with what it observes, applies `create`,
deletes `delete`, and calls again later; repeated calls converge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class MovePlan:
    keep: tuple[str, ...]  # target regions that already have a Deployment (apply as usual)
    create: tuple[str, ...]  # target regions without a Deployment: create now
    delete: tuple[str, ...]  # old regions whose Deployment may be deleted now
    waiting: tuple[str, ...]  # old regions kept serving until the target regions are ready
    not_ready: tuple[str, ...]  # target regions still short of their ready replicas

    @property
    def complete(self) -> bool:
        return not (self.create or self.delete or self.waiting or self.not_ready)


def plan_move(
    existing_ready: Mapping[str, int],
    target: Sequence[str],
    required_ready: int = 1,
) -> MovePlan:
    """Plan one step of a move.

    `existing_ready`: region -> ready replicas of this model's Deployment, for
    every region that has one. `target`: the decided regions (empty when no
    region is feasible: nothing is deleted then). `required_ready`: ready
    replicas a target region needs before old regions may go (at least 1).
    """
    need = max(1, required_ready)
    tgt = tuple(dict.fromkeys(target))
    keep = tuple(r for r in tgt if r in existing_ready)
    create = tuple(r for r in tgt if r not in existing_ready)
    not_ready = tuple(r for r in tgt if existing_ready.get(r, 0) < need)
    old = tuple(sorted(r for r in existing_ready if r not in tgt))
    if not tgt or not_ready:
        return MovePlan(keep, create, (), old, not_ready)
    return MovePlan(keep, create, old, (), ())
