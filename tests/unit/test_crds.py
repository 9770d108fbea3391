"""The CRDs in crds/ are the API's one source of truth: check their shape, and that
everything derived from them (dataclass defaults, restated CEL messages, the
generated reference and embedded schemas) still agrees with them."""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest
import yaml

from smallfleet.core import spec as spec_module
from smallfleet.core.pools import spec as pool_spec_module
from smallfleet.core.spec import (
    DynamicBatching,
    Placement,
    PodSettings,
    Resources,
    Scaling,
    Toleration,
    TritonSpec,
)

ROOT: Final = Path(__file__).resolve().parents[2]
FILES: Final = {
    "SmallModel": ROOT / "crds" / "smallmodels.serving.smallfleet.io.yaml",
    "ModelPipeline": ROOT / "crds" / "modelpipelines.serving.smallfleet.io.yaml",
    "ServingPool": ROOT / "crds" / "servingpools.serving.smallfleet.io.yaml",
}
CRDS: Final = {kind: yaml.safe_load(path.read_text()) for kind, path in FILES.items()}


def schema(kind: str) -> dict[str, Any]:
    s: dict[str, Any] = CRDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return s


def walk(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if "items" in node:
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def fields(kind: str, part: str) -> Iterator[tuple[str, dict[str, Any]]]:
    return walk(schema(kind)["properties"][part], part)


@pytest.mark.parametrize("kind", list(CRDS))
def test_crd_identity(kind: str) -> None:
    crd = CRDS[kind]
    names = crd["spec"]["names"]
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == f"{names['plural']}.serving.smallfleet.io"
    assert crd["spec"]["scope"] == "Namespaced"
    assert names["kind"] == kind
    assert names["shortNames"] == [
        {"SmallModel": "sm", "ModelPipeline": "mp", "ServingPool": "sp"}[kind]
    ]
    assert names["categories"] == ["smallfleet"]
    (version,) = crd["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    # The operator scales its Deployments; a scale subresource on the custom object would
    # let `kubectl scale` write a number that nothing honours.
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    ready = '.status.conditions[?(@.type=="Ready")].status'
    if kind == "ServingPool":
        assert columns == {
            "Ready": ready,
            "Servers": ".status.readyServers",
            "Models": ".status.readyModels",
            "Age": ".metadata.creationTimestamp",
        }
        return
    assert columns == {
        "Ready": ready,
        "Region": ".status.region",
        "URL": ".status.url",
        "Replicas": ".status.readyReplicas",
        "gCO2e/h": ".status.carbon.gramsCO2ePerHour",
        "Age": ".metadata.creationTimestamp",
    }


@pytest.mark.parametrize("kind", list(CRDS))
@pytest.mark.parametrize("part", ["spec", "status"])
def test_every_field_is_described_typed_and_bounded(kind: str, part: str) -> None:
    problems = []
    for path, node in fields(kind, part):
        is_item = path.endswith(("[]", "{}"))
        if (not is_item or node.get("type") == "object") and not node.get("description"):
            problems.append(f"{path}: no description")
        if "type" not in node and not node.get("x-kubernetes-int-or-string"):
            problems.append(f"{path}: no type")
        t = node.get("type")
        if (
            t == "string"
            and "maxLength" not in node
            and "enum" not in node
            and "format" not in node
        ):
            problems.append(f"{path}: string without maxLength or enum")
        if t == "array" and "maxItems" not in node:
            problems.append(f"{path}: array without maxItems")
        if t == "object" and "additionalProperties" in node and "maxProperties" not in node:
            problems.append(f"{path}: map without maxProperties")
        if (
            part == "spec"
            and t in ("integer", "number")
            and not {"minimum", "maximum"} <= set(node)
        ):
            problems.append(f"{path}: number without minimum and maximum")
    assert problems == []


def test_status_conditions_have_the_metav1_shape() -> None:
    for kind in CRDS:
        cond = schema(kind)["properties"]["status"]["properties"]["conditions"]
        assert cond["x-kubernetes-list-type"] == "map"
        assert cond["x-kubernetes-list-map-keys"] == ["type"]
        assert set(cond["items"]["required"]) == {
            "type",
            "status",
            "lastTransitionTime",
            "reason",
            "message",
        }
    assert "models" in schema("ModelPipeline")["properties"]["status"]["properties"]


def snake(name: str) -> str:
    return re.sub(r"([A-Z])", r"_\1", name).lower()


# dataclass -> where it lives in the SmallModel schema
MAPPED: Final = [
    (TritonSpec, "spec.triton"),
    (DynamicBatching, "spec.triton.dynamicBatching"),
    (Resources, "spec.resources"),
    (Scaling, "spec.scaling"),
    (Placement, "spec.placement"),
    (PodSettings, "spec.pod"),
]


def at(kind: str, dotted: str) -> dict[str, Any]:
    node = schema(kind)
    for key in dotted.split("."):
        node = node["properties"][key]
    return node


@pytest.mark.parametrize(("cls", "where"), MAPPED, ids=[c.__name__ for c, _ in MAPPED])
def test_crd_defaults_equal_dataclass_defaults(cls: type, where: str) -> None:
    props = at("SmallModel", where)["properties"]
    dc_fields = {f.name: f for f in dataclasses.fields(cls)}
    assert {snake(p) for p in props} == set(dc_fields), "CRD fields and dataclass fields differ"
    instance = cls()
    for prop, sub in props.items():
        value = getattr(instance, snake(prop))
        if "default" in sub:
            assert sub["default"] == value, f"{where}.{prop}"
        elif sub.get("type") == "object" and "properties" in sub:
            continue  # a nested dataclass: its own row checks it
        else:
            assert value in (None, ()), (
                f"{where}.{prop}: dataclass default {value!r} but CRD has none"
            )


def test_spec_fields_map_one_to_one() -> None:
    sm = at("SmallModel", "spec")["properties"]
    # spec.serving holds one field today (pool), kept flat in the typed spec.
    assert {snake(p) for p in sm} - {"serving"} | set(sm["serving"]["properties"]) == {
        f.name for f in dataclasses.fields(spec_module.SmallModelSpec)
    } - {"name", "namespace"}
    mp = at("ModelPipeline", "spec")["properties"]
    assert {snake(p) for p in mp} == {
        f.name for f in dataclasses.fields(spec_module.ModelPipelineSpec)
    } - {"name", "namespace"}
    model = sm["model"]["properties"]
    assert {snake(p) for p in model} == {f.name for f in dataclasses.fields(spec_module.Artifact)}
    card = sm["card"]["properties"]
    assert {snake(p) for p in card} == {f.name for f in dataclasses.fields(spec_module.ModelCard)}
    cap = sm["scaling"]["properties"]["carbonCap"]["properties"]
    assert {snake(p) for p in cap} == {f.name for f in dataclasses.fields(spec_module.CarbonCap)}
    toleration = sm["pod"]["properties"]["tolerations"]["items"]["properties"]
    assert {snake(p) for p in toleration} == {f.name for f in dataclasses.fields(Toleration)}
    affinity = sm["pod"]["properties"]["affinity"]["properties"]
    assert {snake(p) for p in affinity} == {
        f.name for f in dataclasses.fields(spec_module.Affinity)
    }


@pytest.mark.parametrize("block", ["scaling", "placement", "pod", "expose"])
def test_shared_blocks_are_identical_in_both_crds(block: str) -> None:
    assert at("SmallModel", f"spec.{block}") == at("ModelPipeline", f"spec.{block}")


def test_pipeline_resources_differ_only_in_default_and_description() -> None:
    sm, mp = dict(at("SmallModel", "spec.resources")), dict(at("ModelPipeline", "spec.resources"))
    assert sm.pop("default") == {} and "default" not in mp
    sm.pop("description"), mp.pop("description")
    assert sm == mp


def test_status_is_shared_except_pipeline_models() -> None:
    sm = dict(at("SmallModel", "status"))
    sm["properties"] = {k: v for k, v in sm["properties"].items() if k != "pool"}
    mp = dict(at("ModelPipeline", "status"))
    mp["properties"] = {k: v for k, v in mp["properties"].items() if k != "models"}
    assert sm == mp


def rules() -> Iterator[dict[str, Any]]:
    for kind in CRDS:
        for _, node in walk(schema(kind), ""):
            yield from node.get("x-kubernetes-validations", [])


def test_every_cel_message_is_restated_in_spec() -> None:
    templates = [
        v
        for module in (spec_module, pool_spec_module)
        for k, v in vars(module).items()
        if k.startswith("MSG_") and isinstance(v, str)
    ]
    for rule in rules():
        if "message" in rule:
            expected = rule["message"]
            assert any(
                re.fullmatch(
                    re.escape(t).replace(r"\{what\}", r"\w+").replace(r"\{owner\}", r"\w+"),
                    expected,
                )
                for t in templates
            ), f"not in spec.py: {expected}"
        else:
            literals = re.findall(r"'((?:[^'\\]|\\.)*)'", rule["messageExpression"])
            text = [lit.replace('\\"', '"').strip() for lit in literals if len(lit.strip()) > 3]
            assert text and all(any(t in tpl for tpl in templates) for t in text), rule


def test_generated_files_are_up_to_date() -> None:
    sys.path.insert(0, str(ROOT / "hack"))
    try:
        import gen_reference
    finally:
        sys.path.remove(str(ROOT / "hack"))
    for path, text in gen_reference.outputs().items():
        assert path.read_text() == text, f"{path.relative_to(ROOT)} is stale: run make docs"


def test_embedded_schemas_equal_the_crds() -> None:
    from smallfleet.core.crd_schemas import SCHEMAS

    assert {kind: schema(kind) for kind in CRDS} == SCHEMAS


@pytest.mark.parametrize("kind", list(CRDS))
def test_object_defaults_agree_with_their_fields_defaults(kind: str) -> None:
    # An object default is spelled out (the API server checks rules against it as
    # written): it must be what its fields' own defaults make of an empty object.
    for path, node in walk(schema(kind)["properties"]["spec"], "spec"):
        if node.get("type") == "object" and node.get("default"):
            implied = {k: v["default"] for k, v in node["properties"].items() if "default" in v}
            assert node["default"] == implied, path
