"""The reconcile plan: desired children and observed ones in, what to apply, delete and report out.

`control.reconcile` gathers the facts (the spec's rendering, the children
its watches hold, the regions placement chose) and executes what this module
decides; nothing here reads or writes the cluster. Three rules live here and
nowhere else:

- **What to look at.** Every child is watched, but only the Deployments
  change between reconciles (replicas, rollouts); the other children change
  only with the spec or with the operator's rendering. Their rendering is
  fingerprinted in a label on each Deployment, so a resync or a restart
  compares them (a few milliseconds of decoding and diffing per model) only
  when the spec's generation or that fingerprint says they may differ.
- **What to change.** `plan.plan_changes` diffs desired against observed, so
  an unchanged child costs nothing.
- **Make-before-break.** A Deployment no longer wanted (an old region) goes
  only once every wanted Deployment has rolled out and serves its replicas,
  the same rule (`placement.moves.plan_move`) that finishes a move later.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from smallfleet.core import status as st
from smallfleet.core.placement.moves import plan_move
from smallfleet.core.plan import Change, plan_changes
from smallfleet.core.render.children import LABEL_REGION
from smallfleet.core.render.serverplan import ServerPlan

# A label, not an annotation: the API server counts a Deployment's annotation change as a
# new generation (a rollout to kstatus), a label change not.
CHILDREN_LABEL: Final = "serving.smallfleet.io/children"
DEPLOYMENT: Final = "Deployment"


@dataclass(frozen=True)
class ReconcilePlan:
    """One reconcile's work: applies in order, deletions allowed now, and what status expects."""

    changes: tuple[Change, ...]  # create and update, in creation order
    delete: tuple[dict[str, Any], ...]  # stale children that may go now
    held: tuple[str, ...]  # stale Deployments kept serving until the new ones are ready
    expected: frozenset[str]  # the Deployments that should exist
    digest: str | None  # the artifact digest status reports as verified (one model)
    floor: int  # ready replicas per Deployment below which the resource does not serve


def fingerprint(desired: Sequence[Mapping[str, Any]]) -> str:
    """A short hash of every desired child that is not a Deployment."""
    others = sorted(
        json.dumps(o, sort_keys=True, separators=(",", ":"))
        for o in desired
        if o["kind"] != DEPLOYMENT
    )
    return hashlib.sha256("\n".join(others).encode()).hexdigest()[:16]


def stamped(desired: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The desired children, each Deployment labelled with the fingerprint of the others."""
    mark = fingerprint(desired)
    out: list[dict[str, Any]] = []
    for obj in desired:
        if obj["kind"] != DEPLOYMENT:
            out.append(dict(obj))
            continue
        meta = dict(obj["metadata"])
        meta["labels"] = {**(meta.get("labels") or {}), CHILDREN_LABEL: mark}
        out.append({**obj, "metadata": meta})
    return out


def needs_comparing(
    desired: Sequence[Mapping[str, Any]],
    deployments: Sequence[Mapping[str, Any]],
    *,
    generation: int,
    observed_generation: int,
) -> bool:
    """Whether the children other than Deployments must be compared: they may differ from `desired`.

    Not on a first reconcile (`observed_generation` 0: the caller passes
    whatever the index already holds, often nothing, and creating checks
    each name anyway); always after a spec change; else only when a
    Deployment's fingerprint of the other children is not the desired one
    (the operator's rendering changed, or a Deployment is new).
    """
    if observed_generation == 0:
        return False
    if observed_generation != generation or not deployments:
        return True
    mark = fingerprint(desired)
    return any(
        ((d.get("metadata") or {}).get("labels") or {}).get(CHILDREN_LABEL) != mark
        for d in deployments
    )


def floor(plan: ServerPlan) -> int:
    """Ready replicas per Deployment below which the resource does not serve as specified."""
    # A scale-to-zero minimum still needs one replica once the autoscaler asks for any.
    return max(1, plan.scaling.min_replicas)


def verified_digest(plan: ServerPlan) -> str | None:
    digests = sorted({m.artifact.digest for m in plan.models if m.artifact is not None})
    return digests[0] if len(digests) == 1 else None


def _region(deployment: Mapping[str, Any]) -> str:
    return str(((deployment.get("metadata") or {}).get("labels") or {}).get(LABEL_REGION) or "")


def removable(
    deployments: Sequence[Mapping[str, Any]],
    wanted: frozenset[str],
    changing: frozenset[str] = frozenset(),
) -> list[str]:
    """Names of the unwanted Deployments that may be deleted now (make-before-break).

    A wanted Deployment serves once it has rolled out its current template
    with every desired replica ready; one created or changed right now
    (`changing`) does not serve yet, and one not observed at all neither.
    """
    ready: dict[str, int] = {}
    target: list[str] = []
    stale: dict[str, str] = {}
    for d in deployments:
        name = str(d["metadata"]["name"])
        region = _region(d) or name
        if name in wanted:
            s = st.deployment_state(d)
            serves = name not in changing and s.rollout_done and s.ready >= s.desired
            ready[region] = 1 if serves else 0
            target.append(region)
        else:
            stale[region] = name
            ready.setdefault(region, 0)
    if not stale or len(target) < len(wanted):
        return []
    step = plan_move(ready, target, required_ready=1)
    return sorted(stale[r] for r in step.delete if r in stale)


def plan_reconcile(
    plan: ServerPlan,
    desired: Sequence[dict[str, Any]],
    observed: Sequence[dict[str, Any]],
    *,
    complete: bool,
) -> ReconcilePlan:
    """What one reconcile does.

    `desired`: the rendered (and `stamped`) children. `observed`: this
    owner's children as known; `complete` says whether every kind was given
    or only the Deployments were, in which case the other kinds are left as
    they are (`needs_comparing` said they are current).
    """
    considered = [o for o in desired if complete or o["kind"] == DEPLOYMENT]
    changes: list[Change] = []
    stale: list[dict[str, Any]] = []
    for change in plan_changes(considered, observed):
        if change.action in ("create", "update"):
            changes.append(change)
        elif change.action == "delete" and (complete or change.obj["kind"] == DEPLOYMENT):
            stale.append(change.obj)
    wanted = frozenset(str(d["metadata"]["name"]) for d in desired if d["kind"] == DEPLOYMENT)
    changing = frozenset(
        str(ch.obj["metadata"]["name"]) for ch in changes if ch.obj["kind"] == DEPLOYMENT
    )
    deployments = [o for o in observed if o["kind"] == DEPLOYMENT]
    may_go = set(removable(deployments, wanted, changing))
    delete = tuple(o for o in stale if o["kind"] != DEPLOYMENT or o["metadata"]["name"] in may_go)
    held = tuple(
        sorted(
            str(o["metadata"]["name"])
            for o in stale
            if o["kind"] == DEPLOYMENT and o["metadata"]["name"] not in may_go
        )
    )
    return ReconcilePlan(
        changes=tuple(changes),
        delete=delete,
        held=held,
        expected=wanted,
        digest=verified_digest(plan),
        floor=floor(plan),
    )
