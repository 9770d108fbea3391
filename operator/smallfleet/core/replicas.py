"""How many replicas a region's server runs: one rule for render, placement and scaling."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from smallfleet.core.spec import Scaling


def clamp(scaling: Scaling, replicas: int) -> int:
    """`replicas` within the spec's minReplicas..maxReplicas."""
    return max(scaling.min_replicas, min(scaling.max_replicas, replicas))


def replicas_to_run(
    scaling: Scaling, deployments: Sequence[Mapping[str, Any]], decided: int | None = None
) -> int:
    """What an autoscaler decided, else what the Deployments run now, else the minimum; clamped.

    Re-applying the spec must not undo a scale the operator's autoscaler,
    an HPA or KEDA made, and a spec change of the bounds takes effect at once.
    """
    if decided is not None:
        return clamp(scaling, decided)
    observed = [
        int((d.get("spec") or {}).get("replicas") or 0)
        for d in deployments
        if (d.get("spec") or {}).get("replicas") is not None
    ]
    return clamp(scaling, max(observed) if observed else scaling.min_replicas)
