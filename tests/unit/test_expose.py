"""spec.expose: parsing (with the CRD's rules), the routes it renders, and the Exposed condition."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from render_fixtures import CPU_PYTHON, PIPELINE, PIPELINE_MODELS

from smallfleet.core import conditions as c
from smallfleet.core import status as st
from smallfleet.core.plan import plan_changes
from smallfleet.core.pools.packing import Demand
from smallfleet.core.pools.plan import Model
from smallfleet.core.pools.plan import _status as pooled_status
from smallfleet.core.pools.spec import parse_serving_pool
from smallfleet.core.render import plan_for_model, plan_for_pipeline, render_children
from smallfleet.core.render.routes import route_manifests
from smallfleet.core.spec import (
    MSG_EXPOSE_NOTHING,
    MSG_EXPOSE_POOLED,
    Expose,
    GatewayRef,
    GRPCExpose,
    HTTPExpose,
    SpecError,
    parse_model_pipeline,
    parse_small_model,
)
from smallfleet.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = Settings(triton_image="triton:1", operator_image="smallfleet:1")
OWNER = {
    "apiVersion": "serving.smallfleet.io/v1alpha1",
    "kind": "SmallModel",
    "name": "m",
    "uid": "u",
}


def example(name: str, kind: str = "SmallModel") -> dict[str, Any]:
    docs = yaml.safe_load_all((ROOT / "examples" / name).read_text())
    found: dict[str, Any] = next(d for d in docs if d and d["kind"] == kind)
    return found


# --------------------------------------------------------------------------- spec


def test_expose_parses_with_the_crd_defaults() -> None:
    obj = example("cpu-classifier.yaml")
    obj["spec"]["expose"] = {"gateway": {"name": "public"}}
    spec = parse_small_model(obj)
    assert spec.expose == Expose(GatewayRef("public"), (), HTTPExpose(True, None), GRPCExpose())


def test_expose_parses_every_field() -> None:
    obj = example("cpu-classifier.yaml")
    obj["spec"]["expose"] = {
        "gateway": {"name": "gw", "namespace": "infra", "sectionName": "https"},
        "hostnames": ["a.example.com", "*.b.example.com"],
        "http": {"pathPrefix": "/models/x"},
        "grpc": {"enabled": True, "sectionName": "grpc", "hostnames": ["g.example.com"]},
    }
    assert parse_small_model(obj).expose == Expose(
        GatewayRef("gw", "infra", "https"),
        ("a.example.com", "*.b.example.com"),
        HTTPExpose(True, "/models/x"),
        GRPCExpose(True, "grpc", ("g.example.com",)),
    )


def test_a_pipeline_parses_expose_too() -> None:
    obj = example("rag-pipeline.yaml", "ModelPipeline")
    obj["spec"]["expose"] = {"gateway": {"name": "public"}}
    assert parse_model_pipeline(obj).expose == Expose(GatewayRef("public"))
    del obj["spec"]["expose"]
    assert parse_model_pipeline(obj).expose is None


@pytest.mark.parametrize(
    ("expose", "serving", "path", "message"),
    [
        (
            {"gateway": {"name": "g"}, "http": {"enabled": False}},
            None,
            "spec.expose",
            MSG_EXPOSE_NOTHING,
        ),
        ({"gateway": {"name": "g"}}, {"pool": "shared"}, "spec.expose", MSG_EXPOSE_POOLED),
        (
            {"gateway": {"name": "g"}, "hostnames": ["Bad_Host"]},
            None,
            "spec.expose.hostnames[0]",
            "",
        ),
        ({"gateway": {"name": "g"}, "http": {"pathPrefix": "no-slash"}}, None, "pathPrefix", ""),
        ({"hostnames": ["a.example.com"]}, None, "spec.expose.gateway", "Required"),
    ],
)
def test_bad_expose_is_refused_as_the_api_server_would(
    expose: dict[str, Any], serving: dict[str, Any] | None, path: str, message: str
) -> None:
    obj = example("cpu-classifier.yaml")
    obj["spec"]["expose"] = expose
    if serving is not None:
        obj["spec"]["serving"] = serving
    with pytest.raises(SpecError) as err:
        parse_small_model(obj)
    assert any(path in e.path and message in e.message for e in err.value.errors), err.value


# --------------------------------------------------------------------------- render

META = {"name": "m", "namespace": "ns", "labels": {"app.kubernetes.io/managed-by": "smallfleet"}}


def plan_with(expose: Expose | None) -> Any:
    return plan_for_model(dataclasses.replace(CPU_PYTHON, expose=expose), SETTINGS)


@pytest.mark.parametrize(
    ("expose", "kinds"),
    [
        (None, []),
        (Expose(GatewayRef("g")), ["HTTPRoute"]),
        (Expose(GatewayRef("g"), grpc=GRPCExpose(enabled=True)), ["HTTPRoute", "GRPCRoute"]),
        (
            Expose(GatewayRef("g"), http=HTTPExpose(enabled=False), grpc=GRPCExpose(enabled=True)),
            ["GRPCRoute"],
        ),
    ],
)
def test_routes_rendered_are_those_asked_for(expose: Expose | None, kinds: list[str]) -> None:
    plan = plan_with(expose)
    assert [r["kind"] for r in route_manifests(plan, META)] == kinds
    children = render_children(plan, owner=OWNER, regions={"": 1})
    assert [o["kind"] for o in children if o["kind"].endswith("Route")] == kinds


def test_http_route_golden() -> None:
    plan = plan_with(Expose(GatewayRef("public", "gateways", "http"), ("models.example.com",)))
    (route,) = route_manifests(plan, META)
    assert route == {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": META,
        "spec": {
            "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "http"}],
            "hostnames": ["models.example.com"],
            "rules": [
                {
                    "matches": [
                        {"path": {"type": "PathPrefix", "value": f"/v2/models/{plan.name}"}}
                    ],
                    "backendRefs": [{"name": plan.name, "port": 8000}],
                }
            ],
        },
    }


def test_grpc_route_golden_takes_its_own_listener_and_hosts() -> None:
    expose = Expose(
        GatewayRef("public", None, "http"),
        ("models.example.com",),
        HTTPExpose(path_prefix="/custom"),
        GRPCExpose(True, "grpc", ("grpc.example.com",)),
    )
    http, grpc = route_manifests(plan_with(expose), META)
    assert http["spec"]["rules"][0]["matches"][0]["path"]["value"] == "/custom"
    assert grpc["spec"] == {
        "parentRefs": [{"name": "public", "sectionName": "grpc"}],
        "hostnames": ["grpc.example.com"],
        "rules": [
            {
                "matches": [
                    {"method": {"type": "Exact", "service": "inference.GRPCInferenceService"}}
                ],
                "backendRefs": [{"name": CPU_PYTHON.name, "port": 8001}],
            }
        ],
    }


def test_grpc_route_falls_back_to_the_shared_listener_and_hosts() -> None:
    expose = Expose(GatewayRef("g", None, "web"), ("h.example.com",), grpc=GRPCExpose(True))
    (_, grpc) = route_manifests(plan_with(expose), META)
    assert grpc["spec"]["parentRefs"] == [{"name": "g", "sectionName": "web"}]
    assert grpc["spec"]["hostnames"] == ["h.example.com"]


def test_no_hostnames_renders_no_hostnames_field() -> None:
    (route,) = route_manifests(plan_with(Expose(GatewayRef("g"))), META)
    assert "hostnames" not in route["spec"]


def test_pipeline_route_targets_the_ensemble_and_the_pipeline_service() -> None:
    spec = dataclasses.replace(PIPELINE, expose=Expose(GatewayRef("g")))
    plan = plan_for_pipeline(spec, PIPELINE_MODELS, SETTINGS)
    (route,) = [
        o for o in render_children(plan, owner=OWNER, regions={"r": 1}) if o["kind"] == "HTTPRoute"
    ]
    rule = route["spec"]["rules"][0]
    assert rule["matches"][0]["path"]["value"] == f"/v2/models/{PIPELINE.name}"
    assert rule["backendRefs"] == [{"name": PIPELINE.name, "port": 8000}]
    assert route["metadata"]["ownerReferences"][0]["uid"] == "u"


def test_a_route_as_the_api_server_returns_it_is_no_change() -> None:
    """Defaults the API server adds (group, kind, weight) never read as a difference."""
    plan = plan_with(Expose(GatewayRef("g"), ("h.example.com",)))
    (route,) = route_manifests(plan, {**META, "namespace": plan.namespace})
    stored = copy.deepcopy(route)
    stored["spec"]["parentRefs"][0].update(group="gateway.networking.k8s.io", kind="Gateway")
    stored["spec"]["rules"][0]["backendRefs"][0].update(group="", kind="Service", weight=1)
    stored["metadata"]["generation"] = 3
    assert [ch.action for ch in plan_changes([route], [stored])] == ["noop"]
    stored["spec"]["hostnames"] = ["other.example.com"]
    assert [ch.action for ch in plan_changes([route], [stored])] == ["update"]


# --------------------------------------------------------------------------- Exposed

ROUTE = route_manifests(
    plan_with(Expose(GatewayRef("public", "gw-ns", "http"), ("h.example.com",))),
    {"name": "m", "namespace": "ns"},
)[0]


def observed(
    conditions: dict[str, tuple[str, int]] | None,
    *,
    generation: int = 2,
    parent: dict[str, Any] | None = None,
) -> dict[str, Any]:
    route: dict[str, Any] = {
        "kind": "HTTPRoute",
        "metadata": {"name": "m", "namespace": "ns", "generation": generation},
        "status": {"parents": []},
    }
    if conditions is not None:
        route["status"]["parents"].append(
            {
                "parentRef": parent
                or {
                    "group": "gateway.networking.k8s.io",
                    "kind": "Gateway",
                    "name": "public",
                    "namespace": "gw-ns",
                    "sectionName": "http",
                },
                "controllerName": "example.com/gw",
                "conditions": [
                    {
                        "type": t,
                        "status": s,
                        "reason": f"R{t}{s}",
                        "message": f"{t} says {s}",
                        "observedGeneration": g,
                    }
                    for t, (s, g) in conditions.items()
                ],
            }
        )
    return route


def exposed(observed_routes: list[dict[str, Any]]) -> c.Condition:
    (cond,) = st.exposure([ROUTE], observed_routes).conditions
    assert cond.type == c.EXPOSED
    return cond


def test_exposed_is_dropped_when_nothing_is_exposed() -> None:
    derived = st.exposure([], [observed({"Accepted": ("True", 2)})])
    assert derived.conditions == () and derived.drop == (c.EXPOSED,)


@pytest.mark.parametrize(
    ("routes", "status", "reason", "words"),
    [
        ([], "Unknown", c.REASON_ROUTES_PENDING, "not created yet"),
        ([observed(None)], "Unknown", c.REASON_ROUTES_PENDING, "no gateway controller"),
        (
            [observed({"Accepted": ("True", 2)})],
            "Unknown",
            c.REASON_ROUTES_PENDING,
            "ResolvedRefs",
        ),
        (
            [observed({"Accepted": ("True", 1), "ResolvedRefs": ("True", 1)})],
            "Unknown",
            c.REASON_ROUTES_PENDING,
            "generation 2",
        ),
        (
            [observed({"Accepted": ("True", 2), "ResolvedRefs": ("True", 2)})],
            "True",
            c.REASON_ROUTES_ACCEPTED,
            "HTTPRoute m by Gateway gw-ns/public for h.example.com",
        ),
        (
            [observed({"Accepted": ("False", 2), "ResolvedRefs": ("True", 2)})],
            "False",
            "RAcceptedFalse",
            "HTTPRoute m: Accepted=False (RAcceptedFalse): Accepted says False",
        ),
        (
            [observed({"Accepted": ("True", 2), "ResolvedRefs": ("False", 2)})],
            "False",
            "RResolvedRefsFalse",
            "ResolvedRefs=False",
        ),
        (
            # Another gateway's answer says nothing about ours.
            [
                observed(
                    {"Accepted": ("True", 2), "ResolvedRefs": ("True", 2)},
                    parent={"name": "public", "namespace": "gw-ns", "sectionName": "https"},
                )
            ],
            "Unknown",
            c.REASON_ROUTES_PENDING,
            "no gateway controller",
        ),
    ],
)
def test_exposed_follows_the_route_status(
    routes: list[dict[str, Any]], status: str, reason: str, words: str
) -> None:
    cond = exposed(routes)
    assert (cond.status, cond.reason) == (status, reason)
    assert words in cond.message


def test_a_route_being_deleted_is_not_exposure() -> None:
    gone = observed({"Accepted": ("True", 2), "ResolvedRefs": ("True", 2)})
    gone["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert exposed([gone]).status == "Unknown"


def test_merge_drops_a_condition_and_keeps_the_others() -> None:
    current = {
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Available",
                "message": "",
                "lastTransitionTime": "t",
            },
            {
                "type": "Exposed",
                "status": "True",
                "reason": "RoutesAccepted",
                "message": "",
                "lastTransitionTime": "t",
            },
        ]
    }
    new, _ = st.merge(current, st.Derived((), drop=(c.EXPOSED,)), now="n", generation=1)
    assert [x["type"] for x in new["conditions"]] == ["Ready"]
    assert st.status_patch(current, new)["conditions"] == new["conditions"]


# --------------------------------------------------------------------------- pooled URL


def test_a_pooled_model_reports_its_pool_servers_url() -> None:
    pool = parse_serving_pool({"metadata": {"name": "shared", "namespace": "ns"}, "spec": {}})
    model = Model(Demand("m", 1, 0, "python", 0), generation=1, digest="sha256:" + "a" * 64)
    placed = pooled_status(pool, model, 0, "READY", ()).fields
    assert placed["url"] == f"http://{placed['endpoint']}:8000"
    assert placed["grpcAddress"] == f"{placed['endpoint']}:8001"
    waiting = pooled_status(pool, model, None, "", ()).fields
    assert waiting["url"] is None and waiting["grpcAddress"] is None
