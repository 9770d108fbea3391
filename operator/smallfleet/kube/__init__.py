"""The one place that talks to the Kubernetes API.

Everything else in the operator works on plain dicts and frozen values; this
package turns them into server-side applies, status patches, Events and
lists, and turns the API server's answers into two kinds of error that the
handlers treat differently: `Rejected` (the object is wrong, retrying cannot
help: report it) and `Transient` (conflict, throttling, a server or network
hiccup: retry with backoff).
"""

from smallfleet.kube.client import (
    FIELD_MANAGER,
    KINDS,
    PIPELINE_FIELD_MANAGER,
    Kube,
    KubeError,
    NotFound,
    Rejected,
    Transient,
    kind_info,
)

__all__ = [
    "FIELD_MANAGER",
    "KINDS",
    "PIPELINE_FIELD_MANAGER",
    "Kube",
    "KubeError",
    "NotFound",
    "Rejected",
    "Transient",
    "kind_info",
]
