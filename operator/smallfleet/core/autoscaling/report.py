"""What status says about scaling when the operator does not scale: a function of the mode alone."""

from __future__ import annotations

from typing import Final

from smallfleet.core import conditions as c
from smallfleet.core.status import Derived

EXTERNAL: Final = {
    "hpa": "replicas are set by the HorizontalPodAutoscaler",
    "keda": "replicas are set by the KEDA ScaledObject",
}
# status.scaling fields only the operator's own autoscaler reports.
OPERATOR_FIELDS: Final = (
    "desiredReplicas",
    "currentReplicas",
    "readyReplicas",
    "effectiveMaxReplicas",
    "pendingReplicas",
    "lastDecision",
)


def fixed_scaling(mode: str) -> Derived | None:
    """`scaling` and ScalingActive for modes `hpa`, `keda` and `none`; None for `operator`.

    Written with the rest of the status by the one status writer, so a model
    that the operator does not scale costs no status write of its own.
    Fields of the operator mode are cleared (a desired count nobody acts on
    would mislead).
    """
    if mode == "operator":
        return None
    message = EXTERNAL.get(mode)
    if message is None:
        cond = c.Condition(c.SCALING_ACTIVE, "False", c.REASON_FIXED_REPLICAS, "scaling mode none")
    else:
        cond = c.Condition(c.SCALING_ACTIVE, "False", c.REASON_EXTERNAL_SCALER, message)
    return Derived((cond,), {"scaling": {**dict.fromkeys(OPERATOR_FIELDS), "mode": mode}})
