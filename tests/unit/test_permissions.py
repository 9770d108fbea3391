"""Least privilege, proven offline: the code's uses = `permissions.USED` = the chart's RBAC.

Three sides are compared. The code: what kopf watches and patches (read
from the handler registry), the kinds `render` emits for every way a model
can scale (each applied, looked up and deleted), and the client calls the
control layer makes (read from its source). The table in smallfleet.kube.permissions. And the rules
`helm template` renders in each value set. A chart rule nobody uses, a use
the chart does not grant, and a use the table forgot each fail here, naming
the (apiGroup, resource, verb). tests/e2e/test_permissions.py repeats the
proof against a real API server's audit log.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
from pathlib import Path
from typing import Any, Final

import pytest
from hack.check_chart import VALUE_SETS, render
from render_fixtures import CPU_PYTHON, GPU_ONNX, PIPELINE, PIPELINE_MODELS

import smallfleet.control
from smallfleet.core.pools.render import render_pool
from smallfleet.core.pools.spec import parse_serving_pool
from smallfleet.core.render import plan_for_model, plan_for_pipeline, render_children
from smallfleet.core.spec import Expose, GatewayRef, GRPCExpose, Scaling
from smallfleet.handlers.operator import registry
from smallfleet.kube import Rejected, kind_info
from smallfleet.kube.client import KindInfo, require
from smallfleet.kube.permissions import (
    ALL,
    CHILD_VERBS,
    CLUSTER,
    NAMESPACED,
    USED,
    needed,
    triples,
)
from smallfleet.settings import Settings

Triple = tuple[str, str, str]
OWNERS: Final = (
    ("serving.smallfleet.io/v1alpha1", "SmallModel"),
    ("serving.smallfleet.io/v1alpha1", "ModelPipeline"),
    ("serving.smallfleet.io/v1alpha1", "ServingPool"),
)
CONTROL: Final = Path(smallfleet.control.__file__).parent


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def _of(api_version: str, kind: str, verbs: tuple[str, ...], sub: str = "") -> set[Triple]:
    info = kind_info(api_version, kind)
    resource = f"{info.plural}/{sub}" if sub else info.plural
    return {(_group(api_version), resource, v) for v in verbs}


# -- the code ---------------------------------------------------------------------------------


def kopf_uses() -> set[Triple]:
    """What kopf asks of the API server for the registered handlers."""
    out: set[Triple] = set()
    groups = (registry._indexing, registry._watching, registry._changing)
    for handlers in groups:
        for handler in handlers.get_all_handlers():
            selector = handler.selector
            assert selector is not None and selector.any_name, handler
            resource = str(selector.any_name)
            out |= {(selector.group or "", resource, v) for v in ("list", "watch")}
    for handler in registry._changing.get_all_handlers():
        # Progress and last-handled annotations (and finalizers) are merge patches.
        out.add((handler.selector.group or "", str(handler.selector.any_name), "patch"))
    out.add(("", "events", "create"))  # kopf posts its warnings as core/v1 Events
    return out


def rendered_children() -> list[dict[str, Any]]:
    settings = Settings(triton_image="triton:1", operator_image="smallfleet:1")
    owner = {
        "apiVersion": "serving.smallfleet.io/v1alpha1",
        "kind": "SmallModel",
        "name": "m",
        "uid": "u",
    }
    out: list[dict[str, Any]] = []
    for mode in ("operator", "hpa", "keda", "none"):
        spec = dataclasses.replace(
            GPU_ONNX, scaling=Scaling(mode=mode, min_replicas=1, max_replicas=3, target=5.0)
        )
        out += render_children(plan_for_model(spec, settings), owner=owner, regions={"r": 1})
    out += render_children(plan_for_model(CPU_PYTHON, settings), owner=owner, regions={"": 1})
    exposed = dataclasses.replace(
        CPU_PYTHON, expose=Expose(GatewayRef("gw"), grpc=GRPCExpose(enabled=True))
    )
    out += render_children(plan_for_model(exposed, settings), owner=owner, regions={"": 1})
    pipeline = plan_for_pipeline(PIPELINE, PIPELINE_MODELS, settings)
    out += render_children(pipeline, owner={**owner, "kind": "ModelPipeline"}, regions={"r": 1})
    pool = parse_serving_pool({"metadata": {"name": "p", "namespace": "n"}, "spec": {}})
    out += render_pool(
        pool,
        servers=1,
        owner={"metadata": {"name": "p", "uid": "u"}},
        triton_image="triton:1",
        agent_image="smallfleet:1",
    )
    return out


def children_uses() -> set[Triple]:
    """Each rendered kind: applied (patch, create when new), looked up, pruned, deleted."""
    out: set[Triple] = set()
    blocking = False
    for child in rendered_children():
        out |= _of(child["apiVersion"], child["kind"], CHILD_VERBS)
        refs = child["metadata"].get("ownerReferences") or []
        blocking |= any(r.get("blockOwnerDeletion") for r in refs)
    if blocking:
        # OwnerReferencesPermissionEnforcement: setting blockOwnerDeletion needs this.
        for api_version, kind in OWNERS:
            out |= _of(api_version, kind, ("update",), "finalizers")
    return out


# Client methods with the RBAC verb (and subresource) each needs.
METHOD_VERBS: Final[dict[str, tuple[tuple[str, ...], str]]] = {
    "apply": (("patch", "create"), ""),
    "get": (("get",), ""),
    "list_objects": (("list",), ""),
    "delete": (("delete",), ""),
    "patch": (("patch",), ""),
    "patch_status": (("patch",), "status"),
    "scale": (("patch",), "scale"),
    "event": (("create",), ""),
}


def control_calls() -> list[tuple[str, str | None, str | None]]:
    """(method, apiVersion, kind) of every `….kube.METHOD(…)` call in the control layer.

    apiVersion and kind are the string literals of the first two arguments, or
    None where the call passes them in variables (the reconciler's generic
    calls on its children and owners).
    """
    out: list[tuple[str, str | None, str | None]] = []
    for path in sorted(CONTROL.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            target = node.func.value
            named_kube = (isinstance(target, ast.Attribute) and target.attr == "kube") or (
                isinstance(target, ast.Name) and target.id == "kube"
            )
            if not named_kube:
                continue
            lits = [
                a.value if isinstance(a, ast.Constant) and isinstance(a.value, str) else None
                for a in node.args[:2]
            ]
            lits += [None] * (2 - len(lits))
            out.append((node.func.attr, lits[0], lits[1]))
    return out


def client_uses() -> set[Triple]:
    out: set[Triple] = set()
    children = {(c["apiVersion"], c["kind"]) for c in rendered_children()}
    for method, api_version, kind in control_calls():
        assert method in METHOD_VERBS, (
            f"the control layer calls Kube.{method}: add it to METHOD_VERBS"
        )
        verbs, sub = METHOD_VERBS[method]
        if method == "scale":
            out |= _of("apps/v1", "Deployment", verbs, sub)
        elif method == "event":
            out |= _of("v1", "Event", verbs)
        elif api_version is not None and kind is not None:
            out |= _of(api_version, kind, verbs, sub)
        elif api_version == "kopf.dev/v1":
            # Peering: KopfPeering or ClusterKopfPeering by install mode.
            for info in (
                kind_info("kopf.dev/v1", "KopfPeering"),
                kind_info("kopf.dev/v1", "ClusterKopfPeering"),
            ):
                out |= _of(info.api_version, info.kind, verbs, sub)
        else:
            # Generic calls: on the children, and (status, re-reads) on the owners.
            targets = (
                children
                if method in ("apply", "delete", "list_objects")
                else children | set(OWNERS)
            )
            if method == "patch_status":
                targets = set(OWNERS)
            for av, k in targets:
                out |= _of(av, k, verbs, sub)
    return out


def peering_uses() -> set[Triple]:
    """kopf's peering: it watches the peering objects and patches its heartbeat into them."""
    out: set[Triple] = set()
    for kind in ("KopfPeering", "ClusterKopfPeering"):
        out |= _of("kopf.dev/v1", kind, ("list", "watch", "patch"))
    return out


def crd_scanning_uses() -> set[Triple]:
    """kopf follows CRDs when it watches every namespace (scanning is off for named ones)."""
    return {("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("list", "watch")}


@functools.cache
def code_uses() -> frozenset[Triple]:
    return frozenset(
        kopf_uses() | children_uses() | client_uses() | peering_uses() | crd_scanning_uses()
    )


# -- the table against the code ---------------------------------------------------------------


def test_the_table_holds_every_use_the_code_makes() -> None:
    missing = sorted(code_uses() - ALL)
    assert missing == [], (
        f"the code uses these, smallfleet.kube.permissions.USED lacks them: {missing}"
    )


def test_the_table_holds_nothing_the_code_does_not_use() -> None:
    unused = sorted(ALL - code_uses())
    assert unused == [], f"smallfleet.kube.permissions.USED lists uses no code makes: {unused}"


def test_the_derivation_sees_the_uses_it_claims_to() -> None:
    """Guards the guards: the scans above find the calls and kinds they are meant to."""
    calls = control_calls()
    assert {m for m, _, _ in calls} >= {
        "apply",
        "get",
        "delete",
        "patch_status",
        "scale",
        "event",
    }
    assert ("get", "v1", "ConfigMap") in calls
    kinds = {c["kind"] for c in rendered_children()}
    assert kinds >= {
        "Deployment",
        "Service",
        "ConfigMap",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ScaledObject",
    }
    assert ("", "nodes", "watch") in kopf_uses()
    assert ("apps", "deployments", "watch") in kopf_uses()


def test_no_rule_names_a_wildcard_or_a_secret() -> None:
    for p in USED:
        for value in (p.group, *p.resources, *p.verbs):
            assert "*" not in value, p
        assert "secrets" not in p.resources


# -- the client refuses what the table lacks --------------------------------------------------


def test_the_client_refuses_a_use_the_table_lacks_before_asking() -> None:
    secret = KindInfo("v1", "Secret", "secrets")
    with pytest.raises(Rejected) as raised:
        require(secret, ("get",))
    assert raised.value.status == 403
    assert "permissions.USED lacks get on secrets" in raised.value.message
    with pytest.raises(Rejected, match="lacks get on deployments/scale"):
        require(kind_info("apps/v1", "Deployment"), ("get",), "scale")
    with pytest.raises(Rejected, match="lacks update on deployments"):
        require(kind_info("apps/v1", "Deployment"), ("patch", "update"))


def test_the_client_allows_every_use_in_the_table() -> None:
    require(kind_info("apps/v1", "Deployment"), CHILD_VERBS)
    require(kind_info("apps/v1", "Deployment"), ("patch",), "scale")
    require(kind_info("serving.smallfleet.io/v1alpha1", "SmallModel"), ("patch",), "status")
    require(kind_info("v1", "Event"), ("create",))


# -- the table against the chart --------------------------------------------------------------


@functools.cache
def rendered(name: str) -> tuple[dict[str, Any], ...]:
    return tuple(render(*VALUE_SETS[name]))


def granted(objects: tuple[dict[str, Any], ...], kind: str) -> set[Triple]:
    out: set[Triple] = set()
    for role in (o for o in objects if o["kind"] == kind):
        for rule in role.get("rules") or []:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(key, []), (
                    f"{kind} {role['metadata']['name']}: wildcard in {rule}"
                )
            assert "nonResourceURLs" not in rule and "resourceNames" not in rule, rule
            out |= {
                (g, r, v)
                for g in rule["apiGroups"]
                for r in rule["resources"]
                for v in rule["verbs"]
            }
    return out


def _mode(name: str) -> tuple[bool, bool]:
    args = VALUE_SETS[name]
    sets = dict(a.split("=", 1) for a in args if "=" in a)
    namespaced = "watchNamespace" in sets or "watchNamespaces" in sets
    return not namespaced, int(sets.get("replicas", "1")) > 1


def _diff(what: str, have: set[Triple], want: frozenset[Triple]) -> list[str]:
    out = [f"{what} grants {t}, which the operator never uses" for t in sorted(have - want)]
    out += [f"{what} lacks {t}, which the operator uses" for t in sorted(want - have)]
    return out


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_the_chart_grants_exactly_the_table(value_set: str) -> None:
    all_namespaces, peering = _mode(value_set)
    use = needed(all_namespaces=all_namespaces, peering=peering)
    objects = rendered(value_set)
    cluster_role, role = granted(objects, "ClusterRole"), granted(objects, "Role")
    if all_namespaces:
        problems = _diff("the ClusterRole", cluster_role, triples(use))
        assert role == set(), "watching every namespace needs no Role"
    else:
        problems = _diff(
            "the ClusterRole", cluster_role, triples([p for p in use if p.scope == CLUSTER])
        )
        problems += _diff("the Role", role, triples([p for p in use if p.scope == NAMESPACED]))
    assert problems == [], "\n".join(problems)


def test_one_namespace_writes_nothing_cluster_wide() -> None:
    cluster_role = granted(rendered("one-namespace"), "ClusterRole")
    assert {v for _, _, v in cluster_role} <= {"get", "list", "watch"}
    assert {r for _, r, _ in cluster_role} == {"nodes"}


def test_several_namespaces_get_one_role_each_and_nothing_writable_cluster_wide() -> None:
    objects = rendered("several-namespaces")
    watched = {"models", "team-a", "team-b"}
    roles = {o["metadata"]["namespace"]: o for o in objects if o["kind"] == "Role"}
    bindings = {o["metadata"]["namespace"]: o for o in objects if o["kind"] == "RoleBinding"}
    assert set(roles) == set(bindings) == watched
    first = granted((roles["models"],), "Role")
    assert all(granted((r,), "Role") == first for r in roles.values())
    for binding in bindings.values():
        assert binding["roleRef"]["kind"] == "Role"
        assert [s["kind"] for s in binding["subjects"]] == ["ServiceAccount"]
    cluster_role = granted(objects, "ClusterRole")
    assert {v for _, _, v in cluster_role} <= {"get", "list", "watch"}
    (deployment,) = (o for o in objects if o["kind"] == "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert sorted(a.split("=", 1)[1] for a in args if a.startswith("--namespace=")) == sorted(
        watched
    )
    assert "--all-namespaces" not in args
    peerings = {o["metadata"].get("namespace") for o in objects if o["kind"] == "KopfPeering"}
    assert peerings == watched


def test_the_table_covers_every_install_mode_it_names() -> None:
    every_mode = set()
    for all_namespaces in (True, False):
        for peering in (True, False):
            every_mode |= set(needed(all_namespaces=all_namespaces, peering=peering))
    assert every_mode == set(USED)
