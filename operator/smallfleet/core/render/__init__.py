"""Pure rendering: typed specs → server plans → Triton config and Kubernetes children.

No I/O and no Kubernetes client: the same functions serve the operator, the
`smallfleet render` command and the tests, so what a person previews is what
the operator applies.
"""

from smallfleet.core.render.children import (
    UNPLACED,
    common_labels,
    render_children,
    selector_labels,
)
from smallfleet.core.render.serverplan import (
    EnsembleStep,
    ModelEntry,
    ServerPlan,
    plan_for_model,
    plan_for_pipeline,
)
from smallfleet.core.render.triton import model_repository, triton_args, triton_config

__all__ = [
    "UNPLACED",
    "EnsembleStep",
    "ModelEntry",
    "ServerPlan",
    "common_labels",
    "model_repository",
    "plan_for_model",
    "plan_for_pipeline",
    "render_children",
    "selector_labels",
    "triton_args",
    "triton_config",
]
