"""spec.pod and the chart's podDefaults: parsed and checked as the CRD checks them, merged into
the Triton Deployment's pod template with what the operator sets, defaults where a model sets none.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any, Final

import pytest
from hack.check_chart import CHART as CHART_DIR
from hack.check_chart import helm, kube_version, render
from render_fixtures import CPU_PYTHON, GPU_ONNX, PIPELINE, PIPELINE_MODELS

from smallfleet import settings as settings_module
from smallfleet.core.render import plan_for_model, plan_for_pipeline, render_children
from smallfleet.core.render.children import GPU_PRODUCT_LABEL, GPU_RESOURCE, NODE_REGION_LABEL
from smallfleet.core.spec import (
    Affinity,
    PodSettings,
    SpecError,
    Toleration,
    parse_model_pipeline,
    parse_pod_settings,
    parse_small_model,
)
from smallfleet.core.status import region_of
from smallfleet.settings import Settings

DIGEST: Final = "sha256:" + "a" * 64
TAINT_KEY: Final = "serving.smallfleet.io/real-triton"

MODEL: Final[dict[str, Any]] = {
    "apiVersion": "serving.smallfleet.io/v1alpha1",
    "kind": "SmallModel",
    "metadata": {"name": "m", "namespace": "ns"},
    "spec": {
        "model": {"uri": "https://h/m.onnx", "digest": DIGEST, "format": "onnx"},
        "card": {"owner": "o", "license": "MIT", "description": "d"},
    },
}
PIPELINE_OBJ: Final[dict[str, Any]] = {
    "apiVersion": "serving.smallfleet.io/v1alpha1",
    "kind": "ModelPipeline",
    "metadata": {"name": "p", "namespace": "ns"},
    "spec": {
        "inputs": [{"name": "Q", "datatype": "BYTES", "dims": [1]}],
        "outputs": [{"name": "OUT", "datatype": "FP32", "dims": [4], "from": "a.Y"}],
        "steps": [{"name": "a", "model": "m", "inputs": [{"name": "X", "from": "Q"}]}],
    },
}
FULL_POD: Final[dict[str, Any]] = {
    "tolerations": [
        {"key": TAINT_KEY, "operator": "Equal", "value": "true", "effect": "NoSchedule"},
        {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30},
    ],
    "nodeSelector": {"pool": "ml", "example.com/tier": "gold"},
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]},
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]},
                ]
            },
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 10,
                    "preference": {
                        "matchExpressions": [{"key": "spot", "operator": "DoesNotExist"}]
                    },
                }
            ],
        },
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 50,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"team": "search"}},
                    },
                }
            ]
        },
    },
    "imagePullSecrets": [{"name": "registry"}],
    "serviceAccountName": "triton",
    "priorityClassName": "serving-high",
    "env": [{"name": "OMP_NUM_THREADS", "value": "2"}, {"name": "EMPTY"}],
    "labels": {"team": "search", "example.com/cost-center": "42"},
    "annotations": {"example.com/owner": "search-team", "prometheus.io/port": "9999"},
}


def with_pod(obj: dict[str, Any], pod: Any) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["spec"]["pod"] = pod
    return out


# --- parsing and the CEL rules ------------------------------------------------------


def test_a_full_pod_block_parses_into_typed_values() -> None:
    pod = parse_small_model(with_pod(MODEL, FULL_POD)).pod
    assert pod.tolerations == (
        Toleration(key=TAINT_KEY, operator="Equal", value="true", effect="NoSchedule"),
        Toleration(operator="Exists", effect="NoExecute", toleration_seconds=30),
    )
    assert pod.node_selector == (("example.com/tier", "gold"), ("pool", "ml"))
    assert pod.affinity is not None and pod.affinity.pod_affinity is None
    assert pod.affinity.node_affinity == FULL_POD["affinity"]["nodeAffinity"]
    assert pod.image_pull_secrets == ("registry",)
    assert (pod.service_account_name, pod.priority_class_name) == ("triton", "serving-high")
    assert pod.env == (("OMP_NUM_THREADS", "2"), ("EMPTY", ""))
    assert pod.labels == (("example.com/cost-center", "42"), ("team", "search"))
    assert parse_model_pipeline(with_pod(PIPELINE_OBJ, FULL_POD)).pod == pod


def test_no_pod_block_is_empty_settings() -> None:
    assert parse_small_model(MODEL).pod == PodSettings()
    assert parse_model_pipeline(PIPELINE_OBJ).pod == PodSettings()


REJECTED: Final = [
    # (spec.pod, path of the error, words it must contain)
    ({"labels": {"app.kubernetes.io/name": "x"}}, "spec.pod.labels", "operator's own keys"),
    ({"labels": {"serving.smallfleet.io/region": "x"}}, "spec.pod.labels", "operator's own keys"),
    (
        {"annotations": {"serving.smallfleet.io/digest": "x"}},
        "spec.pod.annotations",
        "operator's own keys",
    ),
    ({"env": [{"name": "HOME", "value": "/"}]}, "spec.pod.env", "HOME or SMALLFLEET_*"),
    ({"env": [{"name": "SMALLFLEET_X", "value": "1"}]}, "spec.pod.env", "HOME or SMALLFLEET_*"),
    ({"env": [{"name": "A-B", "value": "1"}]}, "spec.pod.env[0].name", "should match"),
    ({"env": [{"name": "A"}, {"name": "A"}]}, "spec.pod.env[1]", "Duplicate value"),
    (
        {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]},
        "spec.pod.tolerations[0]",
        "Exists must not have a value",
    ),
    (
        {"tolerations": [{"operator": "Equal", "value": "v"}]},
        "spec.pod.tolerations[0]",
        "without a key must have operator Exists",
    ),
    (
        {"tolerations": [{"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}]},
        "spec.pod.tolerations[0]",
        "tolerationSeconds needs effect NoExecute",
    ),
    (
        {"tolerations": [{"key": "k", "effect": "Sometimes"}]},
        "spec.pod.tolerations[0].effect",
        "Unsupported value",
    ),
    ({"tolerations": [{"key": "k"}] * 17}, "spec.pod.tolerations", "at most 16"),
    ({"nodeSelector": {"bad key!": "v"}}, "spec.pod.nodeSelector", "label keys"),
    ({"nodeSelector": {"k": "not a value"}}, "spec.pod.nodeSelector.k", "should match"),
    ({"labels": {"k": "x" * 64}}, "spec.pod.labels.k", "Too long"),
    ({"serviceAccountName": "Not_DNS"}, "spec.pod.serviceAccountName", "should match"),
    ({"imagePullSecrets": [{}]}, "spec.pod.imagePullSecrets[0].name", "Required value"),
    ({"affinity": {"nodeAfinity": {}}}, "spec.pod.affinity.nodeAfinity", "unknown field"),
    ({"hostNetwork": True}, "spec.pod.hostNetwork", "unknown field"),
]


@pytest.mark.parametrize("kind", ["SmallModel", "ModelPipeline"])
@pytest.mark.parametrize(("pod", "path", "words"), REJECTED)
def test_bad_pod_settings_are_refused_with_the_field_named(
    kind: str, pod: dict[str, Any], path: str, words: str
) -> None:
    obj, parse = (
        (MODEL, parse_small_model) if kind == "SmallModel" else (PIPELINE_OBJ, parse_model_pipeline)
    )
    with pytest.raises(SpecError) as err:
        parse(with_pod(obj, pod))
    found = [(e.path, e.message) for e in err.value.errors]
    assert any(p == path and words in m for p, m in found), found


@pytest.mark.parametrize(
    "pod",
    [
        {"labels": {"app.example.com/name": "x", "smallfleet.io/x": "y"}},
        {"env": [{"name": "HOMEDIR", "value": "x"}, {"name": "MY_SMALLFLEET_X", "value": "y"}]},
        {"tolerations": [{"operator": "Exists"}]},
        {"tolerations": [{"key": "k", "operator": "Exists", "effect": ""}]},
        {"annotations": {"prometheus.io/scrape": "false"}},
    ],
)
def test_near_misses_of_the_rules_are_accepted(pod: dict[str, Any]) -> None:
    parse_small_model(with_pod(MODEL, pod))


# --- defaults -------------------------------------------------------------------------

SOME: Final = PodSettings(
    tolerations=(Toleration(key="a", operator="Exists"),),
    labels=(("team", "model"),),
    service_account_name="model-sa",
)
DEFAULTS: Final = PodSettings(
    tolerations=(Toleration(key="d", operator="Exists"),),
    node_selector=(("pool", "ml"),),
    labels=(("team", "platform"),),
    priority_class_name="platform",
    env=(("X", "1"),),
)


@pytest.mark.parametrize(
    ("own", "defaults", "expected"),
    [
        (PodSettings(), PodSettings(), PodSettings()),
        (PodSettings(), DEFAULTS, DEFAULTS),
        (SOME, PodSettings(), SOME),
        (
            SOME,
            DEFAULTS,
            PodSettings(
                tolerations=SOME.tolerations,  # set by the model: replaces the default's whole
                node_selector=DEFAULTS.node_selector,
                labels=SOME.labels,
                service_account_name="model-sa",
                priority_class_name="platform",
                env=DEFAULTS.env,
            ),
        ),
    ],
)
def test_each_field_the_model_leaves_unset_comes_from_the_defaults(
    own: PodSettings, defaults: PodSettings, expected: PodSettings
) -> None:
    assert own.with_defaults(defaults) == expected


def test_pod_defaults_come_from_the_environment_checked_like_spec_pod() -> None:
    text = json.dumps({"tolerations": [{"key": "k", "operator": "Exists"}], "env": [{"name": "A"}]})
    got = settings_module.from_env({"SMALLFLEET_POD_DEFAULTS": text}).pod_defaults
    assert got == PodSettings(
        tolerations=(Toleration(key="k", operator="Exists"),), env=(("A", ""),)
    )
    assert settings_module.from_env({}).pod_defaults == PodSettings()
    with pytest.raises(ValueError, match=r"podDefaults\.labels.*operator's own keys"):
        settings_module.from_env(
            {"SMALLFLEET_POD_DEFAULTS": json.dumps({"labels": {"app.kubernetes.io/x": "y"}})}
        )
    with pytest.raises(ValueError, match="not JSON"):
        settings_module.from_env({"SMALLFLEET_POD_DEFAULTS": "{tolerations"})
    with pytest.raises(ValueError, match=r"podDefaults\.nodeSelectors.*unknown field"):
        settings_module.from_env({"SMALLFLEET_POD_DEFAULTS": json.dumps({"nodeSelectors": {}})})


def test_the_chart_passes_pod_defaults_that_read_back_into_the_settings() -> None:
    pod = {
        "tolerations": [{"key": TAINT_KEY, "operator": "Equal", "value": "true"}],
        "nodeSelector": {"pool": "ml"},
        "priorityClassName": "serving",
    }
    objects = render("--set-json", f"podDefaults={json.dumps(pod)}")
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    env = {
        e["name"]: e["value"]
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        if "value" in e
    }
    assert settings_module.from_env(env).pod_defaults == parse_pod_settings(pod)
    plain = next(o for o in render() if o["kind"] == "Deployment")
    names = {e["name"] for e in plain["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "SMALLFLEET_POD_DEFAULTS" not in names  # {} by default: nothing to pass


def test_the_chart_schema_refuses_an_unknown_pod_defaults_field() -> None:
    proc = helm(
        "template", "smallfleet", str(CHART_DIR), f"--kube-version={kube_version()}",
        "--set-json", 'podDefaults={"hostNetwork": true}', check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and "hostNetwork" in proc.stderr, proc.stderr


# --- rendering ------------------------------------------------------------------------


def pod_spec(children: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = [c for c in children if c["kind"] == "Deployment"]
    template: dict[str, Any] = deployment["spec"]["template"]
    return template


NO_POD: Final = PodSettings()


def render_model(pod: PodSettings, defaults: PodSettings = NO_POD, gpu: bool = True) -> Any:
    base = GPU_ONNX if gpu else CPU_PYTHON
    spec = dataclasses.replace(base, pod=pod)
    plan = plan_for_model(spec, Settings(pod_defaults=defaults))
    return pod_spec(render_children(plan, owner=None, regions={"eu-west-1": 1}))


FULL: Final = parse_pod_settings(FULL_POD)
GPU_TOLERATION: Final = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}


def test_nothing_set_renders_what_the_operator_alone_sets() -> None:
    template = render_model(PodSettings())
    spec = template["spec"]
    assert spec["tolerations"] == [GPU_TOLERATION]
    for key in ("nodeSelector", "imagePullSecrets", "serviceAccountName", "priorityClassName"):
        assert key not in spec
    assert set(spec["affinity"]) == {"nodeAffinity"}
    assert spec["containers"][0]["env"] == [{"name": "HOME", "value": "/tmp"}]
    assert "tolerations" not in render_model(PodSettings(), gpu=False)["spec"]


def test_tolerations_join_the_gpu_toleration_without_repeats() -> None:
    pod = PodSettings(
        tolerations=(
            Toleration(key=GPU_RESOURCE, operator="Exists", effect="NoSchedule"),
            Toleration(key=TAINT_KEY, operator="Equal", value="true", effect="NoSchedule"),
        )
    )
    expected_user = {"key": TAINT_KEY, "operator": "Equal", "value": "true", "effect": "NoSchedule"}
    assert render_model(pod)["spec"]["tolerations"] == [GPU_TOLERATION, expected_user]
    assert render_model(pod, gpu=False)["spec"]["tolerations"] == [GPU_TOLERATION, expected_user]


def test_every_field_reaches_the_pod_template() -> None:
    template = render_model(FULL)
    spec = template["spec"]
    assert spec["tolerations"] == [
        GPU_TOLERATION,
        {"key": TAINT_KEY, "operator": "Equal", "value": "true", "effect": "NoSchedule"},
        {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30},
    ]
    assert spec["nodeSelector"] == {"example.com/tier": "gold", "pool": "ml"}
    assert spec["imagePullSecrets"] == [{"name": "registry"}]
    assert spec["serviceAccountName"] == "triton"
    assert spec["priorityClassName"] == "serving-high"
    assert spec["automountServiceAccountToken"] is False  # Triton never calls the API server
    assert spec["containers"][0]["env"] == [
        {"name": "HOME", "value": "/tmp"},
        {"name": "OMP_NUM_THREADS", "value": "2"},
        {"name": "EMPTY", "value": ""},
    ]
    assert all(
        c.get("env", [])[:1] != [{"name": "OMP_NUM_THREADS"}] for c in spec["initContainers"]
    )
    labels, notes = template["metadata"]["labels"], template["metadata"]["annotations"]
    assert labels["team"] == "search" and labels["example.com/cost-center"] == "42"
    assert labels["app.kubernetes.io/name"] == "triton"
    assert notes["example.com/owner"] == "search-team"
    assert notes["prometheus.io/port"] == "8002"  # the operator's key wins over the owner's
    assert spec["affinity"]["podAntiAffinity"] == FULL_POD["affinity"]["podAntiAffinity"]
    assert "podAffinity" not in spec["affinity"]


def test_required_node_terms_each_carry_the_operators_region_and_gpu_product() -> None:
    node = render_model(FULL)["spec"]["affinity"]["nodeAffinity"]
    ours = [
        {"key": NODE_REGION_LABEL, "operator": "In", "values": ["eu-west-1"]},
        {"key": GPU_PRODUCT_LABEL, "operator": "In", "values": ["NVIDIA-L4"]},
    ]
    terms = node["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [
        {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}, *ours]},
        {
            "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}],
            "matchExpressions": ours,
        },
    ]
    assert (
        node["preferredDuringSchedulingIgnoredDuringExecution"]
        == FULL_POD["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    )
    # Status still reads the region back from a Deployment with the owner's terms.
    assert region_of({"spec": {"template": {"spec": {"affinity": {"nodeAffinity": node}}}}}) == (
        "eu-west-1"
    )


def test_preferred_node_affinity_alone_keeps_the_operators_required_term() -> None:
    pref = [{"weight": 1, "preference": {"matchExpressions": [{"key": "a", "operator": "Exists"}]}}]
    pod = PodSettings(
        affinity=Affinity(node_affinity={"preferredDuringSchedulingIgnoredDuringExecution": pref})
    )
    node = render_model(pod, gpu=False)["spec"]["affinity"]["nodeAffinity"]
    assert node["preferredDuringSchedulingIgnoredDuringExecution"] == pref
    assert node["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"] == [
        {
            "matchExpressions": [
                {"key": NODE_REGION_LABEL, "operator": "In", "values": ["eu-west-1"]},
                {"key": GPU_PRODUCT_LABEL, "operator": "DoesNotExist"},
            ]
        }
    ]


def test_chart_defaults_apply_where_the_model_sets_nothing() -> None:
    defaults = PodSettings(
        tolerations=(Toleration(key="d", operator="Exists"),),
        node_selector=(("pool", "ml"),),
        priority_class_name="platform",
    )
    spec = render_model(PodSettings(), defaults)["spec"]
    assert spec["tolerations"] == [GPU_TOLERATION, {"key": "d", "operator": "Exists"}]
    assert spec["nodeSelector"] == {"pool": "ml"}
    assert spec["priorityClassName"] == "platform"
    own = PodSettings(node_selector=(("pool", "own"),))
    spec = render_model(own, defaults)["spec"]
    assert spec["nodeSelector"] == {"pool": "own"}
    assert spec["priorityClassName"] == "platform"


def test_a_pipeline_server_takes_the_pipelines_own_pod_settings() -> None:
    pipeline = dataclasses.replace(PIPELINE, pod=PodSettings(node_selector=(("pool", "pipes"),)))
    models = {
        k: dataclasses.replace(m, pod=PodSettings(node_selector=(("pool", "step"),)))
        for k, m in PIPELINE_MODELS.items()
    }
    plan = plan_for_pipeline(pipeline, models, Settings())
    spec = pod_spec(render_children(plan, owner=None, regions={"eu-north-1": 1}))["spec"]
    assert spec["nodeSelector"] == {"pool": "pipes"}
