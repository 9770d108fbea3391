"""Autoscaling from Triton's own metrics: a pure decision, called on a timer by the operator.

See `smallfleet.core.autoscaling.decision` for the algorithm and how to call it;
the metrics come from `smallfleet.metricsource` (I/O) through
`smallfleet.core.tritonmetrics` (pure).
"""

from smallfleet.core.autoscaling.decision import (
    Recommendation,
    ScalerState,
    ScalingDecision,
    decide,
    effective_max,
)

__all__ = ["Recommendation", "ScalerState", "ScalingDecision", "decide", "effective_max"]
