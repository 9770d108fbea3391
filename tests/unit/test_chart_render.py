"""The Helm chart as rendered by the real `helm template`: RBAC, labels, env, schema.

The chart is the operator's contract with a cluster admin, so it is checked
as output, not as template text: no wildcard in any rule in any value set,
the standard labels on every object, an environment that `settings.from_env`
reads back into exactly the values given, secrets only by reference, and a
values schema that rejects what it should.
"""

from __future__ import annotations

import copy
import functools
from typing import Any, Final

import pytest
from hack.check_chart import CHART as CHART_DIR
from hack.check_chart import (
    VALUE_SETS,
    check_crds,
    helm,
    kube_version,
    missing_labels,
    render,
    undocumented_values,
    wildcard_binds,
)
from hypothesis import given
from hypothesis import strategies as st

from smallfleet import settings as settings_module
from smallfleet.providers import electricitymaps, watttime

NAMESPACED_ONLY: Final = {
    "deployments",
    "services",
    "configmaps",
    "pods",
    "events",
    "poddisruptionbudgets",
    "horizontalpodautoscalers",
    "scaledobjects",
    "smallmodels",
    "modelpipelines",
}


@functools.cache
def rendered(name: str) -> tuple[dict[str, Any], ...]:
    return tuple(render(*VALUE_SETS[name]))


def of_kind(objects: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def kopf_crds(objects: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """kopf's peering CRDs; the chart's own API CRDs render in every value set."""
    return [
        c for c in of_kind(objects, "CustomResourceDefinition") if c["spec"]["group"] == "kopf.dev"
    ]


def deployment(objects: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    (d,) = of_kind(objects, "Deployment")
    return d


def container(objects: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    c: dict[str, Any] = deployment(objects)["spec"]["template"]["spec"]["containers"][0]
    return c


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_rbac_has_no_wildcards(value_set: str) -> None:
    for role in of_kind(rendered(value_set), "ClusterRole") + of_kind(rendered(value_set), "Role"):
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(key, []), f"{role['kind']} {rule}"
            assert "nonResourceURLs" not in rule
            assert "secrets" not in rule["resources"], "the operator never reads Secrets"


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_every_object_has_the_standard_labels(value_set: str) -> None:
    assert missing_labels(rendered(value_set)) == []


def resources_of(role: dict[str, Any]) -> set[str]:
    return {r for rule in role["rules"] for r in rule["resources"]}


def test_all_namespaces_uses_one_cluster_role() -> None:
    objects = rendered("default")
    assert of_kind(objects, "Role") == []
    (cluster_role,) = of_kind(objects, "ClusterRole")
    assert resources_of(cluster_role) >= NAMESPACED_ONLY
    assert {"nodes", "customresourcedefinitions"} <= resources_of(cluster_role)
    assert "namespaces" not in resources_of(cluster_role), "kopf lists none when cluster-wide"
    assert "--all-namespaces" in container(objects)["args"]


def test_one_namespace_keeps_namespaced_rights_in_a_role() -> None:
    objects = rendered("one-namespace")
    (role,) = of_kind(objects, "Role")
    (cluster_role,) = of_kind(objects, "ClusterRole")
    assert role["metadata"]["namespace"] == "models"
    assert resources_of(role) >= NAMESPACED_ONLY
    assert resources_of(cluster_role) == {"nodes"}  # kopf's scanning is off: no CRD watch
    (binding,) = of_kind(objects, "RoleBinding")
    assert binding["subjects"][0]["namespace"] == "smallfleet-system"
    assert "--namespace=models" in container(objects)["args"]


@pytest.mark.parametrize(
    ("value_set", "peering_kind", "peering_resource"),
    [
        ("peering", "ClusterKopfPeering", "clusterkopfpeerings"),
        ("peering-one-namespace", "KopfPeering", "kopfpeerings"),
    ],
)
def test_several_replicas_elect_a_leader(
    value_set: str, peering_kind: str, peering_resource: str
) -> None:
    objects = rendered(value_set)
    crds = {c["metadata"]["name"] for c in kopf_crds(objects)}
    assert crds == {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}
    (peering,) = of_kind(objects, peering_kind)
    assert peering["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    assert "--peering=smallfleet" in container(objects)["args"]
    roles = of_kind(objects, "ClusterRole") + of_kind(objects, "Role")
    assert any(peering_resource in resources_of(r) for r in roles)


@pytest.mark.parametrize("value_set", ["default", "one-namespace", "scaled-to-zero"])
def test_one_replica_or_none_needs_no_peering(value_set: str) -> None:
    objects = rendered(value_set)
    assert kopf_crds(objects) == []
    assert not any("--peering" in a for a in container(objects)["args"])
    for role in of_kind(objects, "ClusterRole") + of_kind(objects, "Role"):
        assert not {"kopfpeerings", "clusterkopfpeerings"} & resources_of(role)


def test_pod_is_restricted() -> None:
    objects = rendered("default")
    pod = deployment(objects)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    sc = container(objects)["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    probes = (container(objects)["livenessProbe"], container(objects)["readinessProbe"])
    assert all(p["httpGet"]["path"] == "/healthz" for p in probes)
    ports = {p["name"]: p["containerPort"] for p in container(objects)["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    (service,) = of_kind(objects, "Service")
    assert service["spec"]["ports"][0]["port"] == 8080


def test_deployment_env_reads_back_into_the_settings_given() -> None:
    # Helm's --set turns floats into strings (the schema rightly refuses them); --set-json keeps numbers.
    objects = tuple(
        render(
            "--set", "triton.image=registry.example/tritonserver:25.01-py3",
            "--set", "operatorImage=registry.example/smallfleet:9.9.9",
            "--set", "watchNamespace=models",
            "--set", "carbon.provider=electricitymaps",
            "--set", "carbon.providerUrl=http://127.0.0.1:9999",
            "--set", "carbon.maxAgeSeconds=900",
            "--set", "carbon.refreshSeconds=60",
            "--set", "carbon.regionZoneConfigMap=ops/zones",
            "--set-json", "placement.pue=1.4",
            "--set", "placement.minImprovementPercent=25",
            "--set", "placement.minDwellSeconds=600",
            "--set-json", "metrics.scrapeIntervalSeconds=2.5",
            "--set", "metrics.prometheusUrl=http://127.0.0.1:9090",
            "--set", "metrics.port=9100",
            "--set", "health.port=9101",
        )
    )  # fmt: skip
    env = {e["name"]: e["value"] for e in container(objects)["env"] if "value" in e}
    assert settings_module.from_env(env) == settings_module.Settings(
        triton_image="registry.example/tritonserver:25.01-py3",
        operator_image="registry.example/smallfleet:9.9.9",
        namespace="models",
        carbon_provider="electricitymaps",
        carbon_provider_url="http://127.0.0.1:9999",
        carbon_max_age_seconds=900,
        carbon_refresh_seconds=60,
        region_zone_configmap="ops/zones",
        pue=1.4,
        min_improvement_percent=25.0,
        min_dwell_seconds=600,
        scrape_interval_seconds=2.5,
        prometheus_url="http://127.0.0.1:9090",
        metrics_port=9100,
        health_port=9101,
    )


def test_defaults_match_the_operator_defaults() -> None:
    env = {e["name"]: e["value"] for e in container(rendered("default"))["env"] if "value" in e}
    from_chart = settings_module.from_env(env)
    defaults = settings_module.Settings()
    assert from_chart.triton_image == defaults.triton_image
    assert from_chart.carbon_provider == defaults.carbon_provider
    assert from_chart.pue == defaults.pue
    assert from_chart.min_dwell_seconds == defaults.min_dwell_seconds
    assert from_chart.namespace is None


def test_credentials_come_only_from_a_secret_reference_under_the_providers_names() -> None:
    env = container(
        tuple(
            render(
                "--set", "carbon.provider=watttime",
                "--set", "carbon.credentialsSecret.name=carbon",
                "--set", "carbon.credentialsSecret.tokenKey=",
                "--set", "carbon.credentialsSecret.usernameKey=user",
            )
        )
    )["env"]  # fmt: skip
    by_name = {e["name"]: e for e in env}
    assert electricitymaps.TOKEN_ENV not in by_name
    for name, key in ((watttime.USERNAME_ENV, "user"), (watttime.PASSWORD_ENV, "password")):
        assert "value" not in by_name[name]
        assert by_name[name]["valueFrom"]["secretKeyRef"] == {
            "name": "carbon",
            "key": key,
            "optional": True,
        }
    default_env = {e["name"] for e in container(rendered("default"))["env"]}
    assert not {electricitymaps.TOKEN_ENV, watttime.USERNAME_ENV} & default_env
    token_env = {e["name"] for e in container(rendered("scaled-to-zero"))["env"]}
    assert electricitymaps.TOKEN_ENV in token_env


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_operator_listens_on_its_pod_ip_never_a_wildcard(name: str) -> None:
    objects = rendered(name)
    assert wildcard_binds(objects) == []
    env = {e["name"]: e for e in container(objects)["env"]}
    assert env["SMALLFLEET_BIND_ADDRESS"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "status.podIP"}
    }
    # Unset (a local `smallfleet run`), the operator stays on loopback.
    assert settings_module.from_env({}).bind_address == "127.0.0.1"
    assert settings_module.from_env({"SMALLFLEET_BIND_ADDRESS": "10.1.2.3"}).bind_address == (
        "10.1.2.3"
    )


def test_wildcard_binds_names_each_way_of_listening_everywhere() -> None:
    objects = copy.deepcopy(list(rendered("default")))  # the rendering is cached: never mutate it
    (dep,) = of_kind(tuple(objects), "Deployment")
    env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
    env[:] = [e for e in env if e["name"] != "SMALLFLEET_BIND_ADDRESS"]
    env.append({"name": "SMALLFLEET_BIND_ADDRESS", "value": "0.0.0.0"})
    problems = wildcard_binds(objects)
    name = dep["metadata"]["name"]
    assert problems == [
        f"Deployment/{name} names the wildcard address 0.0.0.0",
        f"Deployment/{name} container operator does not set SMALLFLEET_BIND_ADDRESS "
        "from status.podIP",
    ]


@pytest.mark.parametrize(
    "bad",
    [
        "replicas=-1",
        "replicas=one",
        "unknownKey=1",
        "image.pullPolicy=Sometimes",
        "carbon.provider=coal",
        "carbon.providerUrl=ftp://127.0.0.1",
        "metrics.port=70000",
        "health.port=0",
        "watchNamespace=Not_A_Namespace",
        "placement.pue=0.5",
        "carbon.credentialsSecret.token=inline-secret",
    ],
)
def test_schema_rejects_bad_values(bad: str) -> None:
    proc = helm(
        "template", "smallfleet", str(CHART_DIR), f"--kube-version={kube_version()}", "--set", bad,
        check=False,
    )  # fmt: skip
    assert proc.returncode != 0, f"{bad} was accepted"
    assert "schema" in proc.stderr.lower() or "values" in proc.stderr.lower(), proc.stderr


def test_lint_is_strictly_clean() -> None:
    proc = helm("lint", "--strict", f"--kube-version={kube_version()}", str(CHART_DIR), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_chart_crds_are_identical_to_the_source() -> None:
    assert check_crds() == []


def test_values_file_documents_every_key() -> None:
    assert undocumented_values((CHART_DIR / "values.yaml").read_text()) == []


KEYS = st.from_regex(r"[a-z][a-zA-Z0-9]{0,12}", fullmatch=True)


@given(st.lists(st.tuples(KEYS, st.booleans()), min_size=1, max_size=8, unique_by=lambda t: t[0]))
def test_undocumented_values_flags_exactly_the_bare_leaves(entries: list[tuple[str, bool]]) -> None:
    lines = []
    for key, commented in entries:
        if commented:
            lines.append(f"# -- what {key} means")
        lines.append(f"{key}: 1")
    problems = undocumented_values("\n".join(lines))
    assert problems == [f"values key {k!r} has no comment" for k, c in entries if not c]


@given(KEYS, KEYS)
def test_a_commented_parent_documents_its_children(parent: str, child: str) -> None:
    text = f"# -- the {parent} block\n{parent}:\n  {child}: 1\n"
    assert undocumented_values(text) == []
    assert undocumented_values(f"{parent}:\n  {child}: 1\n") == [
        f"values key {child!r} has no comment"
    ]
