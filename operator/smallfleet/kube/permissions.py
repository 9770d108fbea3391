"""Every Kubernetes permission the operator uses, and why: the one table its RBAC must equal.

The Helm chart's Roles are checked against this table in both directions
(tests/unit/test_permissions.py renders them with `helm template`): a rule
the operator does not use is a right an attacker who steals its token gets
for free, and a use the chart does not grant is a 403 in production. The
table is also checked against the code (the kopf registry's watches, the
kinds `render` emits), and the end-to-end suite reads the API server's audit
log to prove the operator, running as the chart's ServiceAccount, asks for
nothing outside it and is never refused.

Adding a kind the operator manages is one line in `USED` (for example a
child StatefulSet: `_child("apps", "statefulsets", "...why...")`), then the
same rule in charts/smallfleet/templates/rbac.yaml; the tests name whichever
side is missing.

`scope` says where a namespaced install (`watchNamespace`) grants the rule:
`NAMESPACED` rules go into a Role in the watched namespace, `CLUSTER` rules
into the ClusterRole (nodes are cluster-scoped). `when` says in which install
modes the operator needs it at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Scope = Literal["namespaced", "cluster"]
# always; only when watching every namespace; only with leader election (peering) in
# that namespace mode.
When = Literal["always", "all-namespaces", "peering-all-namespaces", "peering-one-namespace"]

NAMESPACED: Final[Scope] = "namespaced"
CLUSTER: Final[Scope] = "cluster"

# What server-side apply needs: `patch`, plus `create` when the object is new (the API
# server checks create for an apply that creates). The reconciler reads a taken name's
# holder (`get`) and deletes what is no longer wanted; kopf watches (`list`, `watch`) every
# kind of a SmallModel's or ModelPipeline's children, which the reconciler diffs and prunes.
CHILD_VERBS: Final = ("get", "create", "patch", "delete")
WATCHED: Final = ("list", "watch")


@dataclass(frozen=True)
class Permission:
    """One RBAC rule the operator needs: group, resources, verbs, where and when."""

    group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    why: str
    scope: Scope = NAMESPACED
    when: When = "always"

    def triples(self) -> frozenset[tuple[str, str, str]]:
        return frozenset((self.group, r, v) for r in self.resources for v in self.verbs)


def _child(group: str, resource: str, why: str, *extra: str) -> Permission:
    """A kind the operator renders and applies (and, with `extra`, also watches or scales)."""
    return Permission(group, (resource,), tuple(sorted({*CHILD_VERBS, *extra})), why)


USED: Final[tuple[Permission, ...]] = (
    # -- the custom resources
    Permission(
        "serving.smallfleet.io",
        ("smallmodels", "modelpipelines", "servingpools"),
        ("get", "list", "patch", "watch"),
        "kopf watches them and patches its progress annotations and finalizers; "
        "the status writer re-reads one after a conflict",
    ),
    Permission(
        "serving.smallfleet.io",
        ("smallmodels/status", "modelpipelines/status", "servingpools/status"),
        ("patch",),
        "the one status writer (a merge patch with resourceVersion)",
    ),
    Permission(
        "serving.smallfleet.io",
        ("smallmodels/finalizers", "modelpipelines/finalizers", "servingpools/finalizers"),
        ("update",),
        "children carry blockOwnerDeletion owner references; API servers with the "
        "OwnerReferencesPermissionEnforcement admission plugin ask for this",
    ),
    # -- children (one line per kind)
    _child("apps", "deployments", "the Triton servers", *WATCHED),
    Permission(
        "apps", ("deployments/scale",), ("patch",), "the autoscaler's write (/scale, replicas)"
    ),
    _child("apps", "statefulsets", "a ServingPool's Triton servers, one ordinal per server"),
    _child("", "services", "one Service in front of a model's servers", *WATCHED),
    _child(
        "",
        "configmaps",
        "config.pbtxt files; also the optional region-zone map (get)",
        *WATCHED,
    ),
    _child("policy", "poddisruptionbudgets", "one budget per model", *WATCHED),
    _child("autoscaling", "horizontalpodautoscalers", "spec.scaling.mode hpa", *WATCHED),
    _child("keda.sh", "scaledobjects", "spec.scaling.mode keda", *WATCHED),
    _child(
        "gateway.networking.k8s.io",
        "httproutes",
        "spec.expose; their status is the gateway's answer (Exposed)",
        *WATCHED,
    ),
    _child("gateway.networking.k8s.io", "grpcroutes", "spec.expose with grpc.enabled", *WATCHED),
    # -- read only
    Permission(
        "",
        ("pods",),
        ("list", "watch"),
        "kopf indices: child pods' readiness and IPs, every GPU pod's node",
    ),
    Permission(
        "",
        ("events",),
        ("create",),
        "the operator's Events on condition flips and scaling, kopf's warnings",
    ),
    Permission(
        "", ("nodes",), ("list", "watch"), "placement reads regions and GPU capacity", CLUSTER
    ),
    Permission(
        "apiextensions.k8s.io",
        ("customresourcedefinitions",),
        ("list", "watch"),
        "kopf follows CRDs appearing and going when it watches every namespace "
        "(its scanning is off when namespaces are named)",
        CLUSTER,
        "all-namespaces",
    ),
    # -- leader election among replicas (kopf peering; the operator reads who leads)
    Permission(
        "kopf.dev",
        ("clusterkopfpeerings",),
        ("get", "list", "patch", "watch"),
        "kopf's peering when every namespace is watched",
        CLUSTER,
        "peering-all-namespaces",
    ),
    Permission(
        "kopf.dev",
        ("kopfpeerings",),
        ("get", "list", "patch", "watch"),
        "kopf's peering in the watched namespace",
        NAMESPACED,
        "peering-one-namespace",
    ),
)


def needed(*, all_namespaces: bool, peering: bool) -> list[Permission]:
    """The permissions an install mode needs."""
    wanted: set[When] = {"always"}
    if all_namespaces:
        wanted.add("all-namespaces")
        if peering:
            wanted.add("peering-all-namespaces")
    elif peering:
        wanted.add("peering-one-namespace")
    return [p for p in USED if p.when in wanted]


def triples(
    permissions: list[Permission] | tuple[Permission, ...],
) -> frozenset[tuple[str, str, str]]:
    """(apiGroup, resource, verb) of every permission given."""
    out: set[tuple[str, str, str]] = set()
    for p in permissions:
        out |= p.triples()
    return frozenset(out)


ALL: Final = triples(USED)


def audit_triple(
    verb: str, api_group: str, resource: str, subresource: str = ""
) -> tuple[str, str, str]:
    """The (apiGroup, resource, verb) an audited request needed, as RBAC names it."""
    return (api_group, f"{resource}/{subresource}" if subresource else resource, verb)
