"""The operator's kopf handlers, all registered in one registry (`smallfleet run` runs it).

When to act lives in the handler modules, what to do in `smallfleet.control`:
`indices` (what kopf keeps from its watches), `lifecycle` (start-up and
shut-down), `models` and `pipelines` (the custom resources) and `children`
(Deployments and pods reporting back). The modules do not import each other;
import-linter holds them independent.
"""

from __future__ import annotations

from smallfleet.control.runtime import Runtime, peering_leader
from smallfleet.handlers import children, indices, lifecycle, models, pipelines, pools
from smallfleet.handlers.base import CHILD_RESOURCES, MANAGED_SELECTOR, QUEUED_OWNERS, registry

__all__ = [
    "CHILD_RESOURCES",
    "MANAGED_SELECTOR",
    "QUEUED_OWNERS",
    "Runtime",
    "children",
    "indices",
    "lifecycle",
    "models",
    "peering_leader",
    "pipelines",
    "pools",
    "registry",
]
