"""Status conditions: the fixed vocabulary that kstatus, Flux, Argo CD and `kubectl wait` read.

Conditions, not a phase machine: each type answers one question (is it serving? is
the operator still working on it? is it stuck until a person acts?). Every type and
reason lives here so that handlers, tests and the Argo CD health script agree, and
`set_condition` is the only writer, so `lastTransitionTime` moves only on a flip.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

Status = Literal["True", "False", "Unknown"]

# Condition types.
READY: Final = "Ready"
RECONCILING: Final = "Reconciling"
STALLED: Final = "Stalled"
PLACED: Final = "Placed"
ARTIFACT_VERIFIED: Final = "ArtifactVerified"
CARBON_SIGNAL_STALE: Final = "CarbonSignalStale"
SCALING_ACTIVE: Final = "ScalingActive"
# spec.expose: whether the gateway accepted the routes. Beside Ready, never part of it: a
# model serves inside the cluster whether or not a gateway routes to it.
EXPOSED: Final = "Exposed"

TYPES: Final = (
    READY,
    RECONCILING,
    STALLED,
    PLACED,
    ARTIFACT_VERIFIED,
    CARBON_SIGNAL_STALE,
    SCALING_ACTIVE,
    EXPOSED,
)

# Reasons (CamelCase, as the API conventions ask).
REASON_AVAILABLE: Final = "Available"  # every Triton workload has its minimum of ready replicas
REASON_PROGRESSING: Final = "Progressing"  # children applied, rollout not finished
REASON_APPLYING: Final = "Applying"  # the operator is applying a new generation
REASON_INVALID_SPEC: Final = (
    "InvalidSpec"  # the spec fails a semantic check the CRD schema cannot express
)
REASON_MISSING_MODEL: Final = (
    "MissingModel"  # a pipeline step names a SmallModel that does not exist
)
REASON_MODEL_NOT_READY: Final = "ModelNotReady"  # a pipeline step's SmallModel is itself not valid
REASON_UNSCHEDULABLE: Final = "Unschedulable"  # the scheduler cannot place the Triton pods
REASON_ARTIFACT_FAILED: Final = (
    "ArtifactFailed"  # `smallfleet fetch` refused the artifact (digest, scheme, source)
)
REASON_MODEL_LOAD_FAILED: Final = "ModelLoadFailed"  # Triton could not load the model
REASON_APPLY_FAILED: Final = "ApplyFailed"  # the API server refused a child object
REASON_NAME_CONFLICT: Final = (
    "NameConflict"  # a child's name is taken by an object this resource does not own
)
REASON_ROLLOUT_FAILED: Final = "RolloutFailed"  # the Deployment exceeded its progress deadline
REASON_PLACED: Final = "Placed"
REASON_NO_FEASIBLE_REGION: Final = "NoFeasibleRegion"
REASON_MOVING: Final = "Moving"  # make-before-break move in progress
REASON_VERIFIED: Final = "DigestVerified"
REASON_PENDING: Final = "Pending"
REASON_SIGNAL_FRESH: Final = "SignalFresh"
REASON_SIGNAL_STALE: Final = "SignalStale"
REASON_OPERATOR_SCALING: Final = "OperatorScaling"
REASON_EXTERNAL_SCALER: Final = "ExternalScaler"  # HPA or KEDA owns replicas
REASON_FIXED_REPLICAS: Final = "FixedReplicas"  # scaling mode none: the spec's count
REASON_RECONCILED: Final = "Reconciled"
# Pools: a model loaded into a shared server of a ServingPool.
REASON_LOADED: Final = "Loaded"  # the pool server's Triton reports the model READY
REASON_LOADING: Final = "Loading"  # fetching the artifact or loading it into a pool server
REASON_POOL_MISSING: Final = "PoolMissing"  # spec.serving.pool names no ServingPool
REASON_POOL_FULL: Final = "PoolFull"  # no server of the pool has room, and it may not grow
REASON_NOT_POOLABLE: Final = "NotPoolable"  # the pool's servers cannot hold this model at all
REASON_SERVERS_READY: Final = "ServersReady"  # a pool's servers all report ready
REASON_SERVERS_STARTING: Final = "ServersStarting"
# Exposure through Gateway API routes (a refusal carries the gateway controller's own reason).
REASON_ROUTES_ACCEPTED: Final = "RoutesAccepted"  # every route Accepted with ResolvedRefs
REASON_ROUTES_PENDING: Final = "RoutesPending"  # no gateway controller has answered yet


@dataclass(frozen=True)
class Condition:
    type: str
    status: Status
    reason: str
    message: str


def set_condition(
    conditions: Sequence[Mapping[str, Any]],
    new: Condition,
    *,
    now: str,
    observed_generation: int,
) -> list[dict[str, Any]]:
    """Return a copy of `conditions` with `new` merged in.

    `lastTransitionTime` moves only when the status flips; reason, message and
    observedGeneration always follow the latest observation.
    """
    out: list[dict[str, Any]] = []
    found = False
    for existing in conditions:
        if existing.get("type") != new.type:
            out.append(dict(existing))
            continue
        found = True
        flipped = existing.get("status") != new.status
        out.append(
            {
                "type": new.type,
                "status": new.status,
                "reason": new.reason,
                "message": new.message,
                "observedGeneration": observed_generation,
                "lastTransitionTime": now if flipped else existing.get("lastTransitionTime", now),
            }
        )
    if not found:
        out.append(
            {
                "type": new.type,
                "status": new.status,
                "reason": new.reason,
                "message": new.message,
                "observedGeneration": observed_generation,
                "lastTransitionTime": now,
            }
        )
    order = {t: i for i, t in enumerate(TYPES)}
    out.sort(key=lambda c: order.get(str(c.get("type")), len(order)))
    return out


def get_condition(conditions: Sequence[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    for c in conditions:
        if c.get("type") == type_:
            return c
    return None
