"""Hard placement rules, one small function each, evaluated per region.

Each policy answers one question about one region (is it allowed, does it
satisfy residency, is there GPU room, is its grid under the ceiling) and
returns a `PolicyResult` whose reason and message end up verbatim in the
`Placed` condition when a region is excluded. Keeping them separate makes
each rule testable on its own and the exclusion messages precise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from smallfleet.core.placement.regions import RegionTable
from smallfleet.core.placement.signals import CarbonReading
from smallfleet.core.spec import Placement, Resources

# Exclusion reasons, as listed in the CRD's status.placement.excluded[].reason.
REASON_OK: Final = "Feasible"
REASON_NOT_ALLOWED: Final = "NotAllowed"
REASON_RESIDENCY: Final = "Residency"
REASON_NO_CAPACITY: Final = "NoCapacity"
REASON_ABOVE_CEILING: Final = "AboveMaxIntensity"
REASON_NO_SIGNAL: Final = "NoSignal"
UNBOUNDED: Final = 1 << 30  # CPU models: the scheduler, not placement, packs them


@dataclass(frozen=True)
class PolicyResult:
    ok: bool
    reason: str
    message: str


OK: Final = PolicyResult(True, REASON_OK, "")


@dataclass(frozen=True)
class NodeCapacity:
    """GPU room on one node, built by the runtime from the Node and the pods bound to it."""

    name: str
    region: str  # label topology.kubernetes.io/region
    gpu_product: str | None  # label nvidia.com/gpu.product
    allocatable_gpus: int  # status.allocatable["nvidia.com/gpu"]
    requested_gpus: int  # sum of nvidia.com/gpu requests of non-terminal pods on the node
    cpu_only: bool = False  # no GPU on this node

    @property
    def free_gpus(self) -> int:
        return max(0, self.allocatable_gpus - self.requested_gpus)


@dataclass(frozen=True)
class PlacementInput:
    """What placement needs to know about one SmallModel (or pipeline)."""

    name: str  # "namespace/name", used in messages
    placement: Placement
    resources: Resources
    replicas: int = 1  # replicas that must fit in each chosen region


@dataclass(frozen=True)
class CurrentPlacement:
    regions: tuple[str, ...]
    since: datetime  # when the model last changed regions (or was first placed)
    held_replicas: tuple[tuple[str, int], ...] = ()  # region -> this model's running replicas there

    def held(self, region: str) -> int:
        return sum(n for r, n in self.held_replicas if r == region)


@dataclass(frozen=True)
class PolicyContext:
    regions: RegionTable
    capacity: Sequence[NodeCapacity]
    signals: Mapping[str, CarbonReading]
    current: CurrentPlacement | None
    now: datetime


Policy = Callable[[PlacementInput, str, PolicyContext], PolicyResult]


def allowed_region(model: PlacementInput, region: str, ctx: PolicyContext) -> PolicyResult:
    allowed = model.placement.regions
    if not allowed or region in allowed:
        return OK
    return PolicyResult(
        False, REASON_NOT_ALLOWED, f"not in spec.placement.regions [{', '.join(allowed)}]"
    )


def residency(model: PlacementInput, region: str, ctx: PolicyContext) -> PolicyResult:
    want = model.placement.residency
    if not want:
        return OK
    have = ctx.regions.jurisdictions(region)
    if want in have:
        return OK
    where = ", ".join(have) if have else "unknown jurisdiction"
    return PolicyResult(False, REASON_RESIDENCY, f"residency {want} required, region is in {where}")


def replicas_that_fit(
    resources: Resources, region: str, nodes: Sequence[NodeCapacity], held: int = 0
) -> int:
    """How many replicas of this shape the region can run: whole replicas per node, plus those already running.

    `held` (this model's own running replicas, whose GPUs are already in
    `requested_gpus`) counts only while the region still has suitable nodes.
    """
    if resources.gpus == 0:
        return UNBOUNDED if any(n.region == region for n in nodes) else 0
    want = (resources.gpu_product or "").lower()
    matching = [
        n
        for n in nodes
        if n.region == region
        and not n.cpu_only
        and (not want or (n.gpu_product or "").lower() == want)
    ]
    if not matching:
        return 0
    return held + sum(n.free_gpus // resources.gpus for n in matching)


def gpu_capacity(model: PlacementInput, region: str, ctx: PolicyContext) -> PolicyResult:
    res = model.resources
    held = ctx.current.held(region) if ctx.current else 0
    fit = replicas_that_fit(res, region, ctx.capacity, held)
    if fit >= model.replicas:
        return OK
    in_region = [n for n in ctx.capacity if n.region == region]
    if not in_region:
        return PolicyResult(False, REASON_NO_CAPACITY, "no nodes in this region")
    if res.gpus == 0:
        return PolicyResult(False, REASON_NO_CAPACITY, "no nodes in this region")
    product = res.gpu_product or "any GPU"
    matching = [
        n
        for n in in_region
        if not n.cpu_only
        and (not res.gpu_product or (n.gpu_product or "").lower() == res.gpu_product.lower())
    ]
    free = sum(n.free_gpus for n in matching)
    return PolicyResult(
        False,
        REASON_NO_CAPACITY,
        f"{fit} of {model.replicas} replicas fit ({res.gpus} x {product} each; "
        f"{free} free on {len(matching)} matching nodes)",
    )


def intensity_ceiling(model: PlacementInput, region: str, ctx: PolicyContext) -> PolicyResult:
    ceiling = model.placement.max_intensity
    if ceiling is None:
        return OK
    reading = ctx.signals.get(region)
    if reading is None or not reading.usable or reading.intensity is None:
        return PolicyResult(
            False, REASON_NO_SIGNAL, f"no carbon signal to check the ceiling of {ceiling:g} g/kWh"
        )
    if reading.kind == "index":
        return PolicyResult(
            False,
            REASON_NO_SIGNAL,
            f"only a relative index from {reading.provider}; the ceiling needs gCO2eq/kWh",
        )
    if reading.intensity > ceiling:
        return PolicyResult(
            False,
            REASON_ABOVE_CEILING,
            f"{reading.intensity:.0f} gCO2eq/kWh ({reading.provider}) is above the ceiling of {ceiling:g}",
        )
    return OK


def latency_penalty(model: PlacementInput, region: str) -> float:
    """The spec's per-region penalty in gCO2eq/kWh-equivalents, added to the region's score."""
    return sum(p for r, p in model.placement.latency_penalty if r == region)


# Order matters only for which reason is reported: the cheapest, least
# surprising rule first.
CHAIN: Final[tuple[Policy, ...]] = (allowed_region, residency, gpu_capacity, intensity_ceiling)


def evaluate(model: PlacementInput, region: str, ctx: PolicyContext) -> PolicyResult:
    for policy in CHAIN:
        result = policy(model, region, ctx)
        if not result.ok:
            return result
    return OK
