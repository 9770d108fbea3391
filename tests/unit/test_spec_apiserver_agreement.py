"""Regressions from fuzzing against a real kube-apiserver (tests/e2e/test_fuzz.py, bench/fuzz.py).

Each case is a manifest where the offline parser and the API server once
disagreed on accept or reject; the verdict asserted here is the API server's.
"""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import pytest
import yaml

from smallfleet.core.pools.spec import parse_serving_pool
from smallfleet.core.schema import go_regex, matches
from smallfleet.core.spec import (
    MSG_OUTPUT_NAME,
    MSG_OUTPUT_SHARED,
    SpecError,
    parse_model_pipeline,
    parse_small_model,
)
from smallfleet.validate import check_files

ROOT = Path(__file__).resolve().parents[2]


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((ROOT / "examples" / name).read_text()) if d]


MODEL = _docs("cpu-classifier.yaml")[0]
PIPELINE = next(d for d in _docs("rag-pipeline.yaml") if d["kind"] == "ModelPipeline")
POOL = {
    "apiVersion": "serving.smallfleet.io/v1alpha1",
    "kind": "ServingPool",
    "metadata": {"name": "shared", "namespace": "default"},
    "spec": {},
}


def _with(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    node = out["spec"]
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    return out


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        # Go's \d is ASCII: a non-ASCII digit is no quantity for CEL's isQuantity.
        ("resources.cpu", "\u0661", "spec.resources.cpu"),
        ("resources.memory", "\u0662Gi", "spec.resources.memory"),
        # Go's $ is the end of the text: a trailing newline fails patterns and CEL matches().
        ("resources.memory", "1Gi\n", "spec.resources.memory"),
        ("triton.parameters", {"abc\n": "x"}, "spec.triton.parameters"),
        ("placement.latencyPenalty", {"eu-west-1\n": 1}, "spec.placement.latencyPenalty"),
        ("pod.nodeSelector", {"disk\n": "ssd"}, "spec.pod.nodeSelector"),
        ("model.uri", "s3://bucket/key\nmore", "spec.model.uri"),
    ],
)
def test_what_the_api_server_refuses_is_refused(path: str, value: Any, where: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_small_model(_with(MODEL, path, value))
    assert where in {e.path for e in err.value.errors}, err.value


def test_a_pattern_refuses_a_trailing_newline() -> None:
    model = _with(MODEL, "resources.gpus", 1)
    with pytest.raises(SpecError) as err:
        parse_small_model(_with(model, "resources.gpuProduct", "NVIDIA-L4\n"))
    assert [e.path for e in err.value.errors] == ["spec.resources.gpuProduct"]
    assert "should match" in err.value.errors[0].message


def test_an_integral_float_is_an_integer_as_kubectl_sends_it() -> None:
    """kubectl writes YAML's 2.0 as the JSON integer 2, and the API server accepts it."""
    parsed = parse_small_model(_with(MODEL, "triton.instanceCount", 2.0))
    assert parsed.triton.instance_count == 2 and isinstance(parsed.triton.instance_count, int)
    scaled = parse_small_model(_with(MODEL, "scaling.maxReplicas", 4.0))
    assert scaled.scaling.max_replicas == 4
    assert parse_small_model(_with(MODEL, "resources.cpu", 2.0)).resources.cpu == "2"
    pool = parse_serving_pool(_with(POOL, "modelsPerServer", 20.0))
    assert pool.models_per_server == 20
    with pytest.raises(SpecError):
        parse_small_model(_with(MODEL, "triton.instanceCount", 2.5))
    with pytest.raises(SpecError):  # past int64: the API server sees a float
        parse_small_model(_with(MODEL, "model.parameterCount", 1e30))


def test_a_null_map_value_is_pruned_as_the_api_server_prunes_it() -> None:
    parsed = parse_small_model(_with(MODEL, "triton.parameters", {"a": None, "b": "x"}))
    assert parsed.triton.parameters == (("b", "x"),)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s["outputs"][0].__setitem__("name", s["inputs"][0]["name"]), MSG_OUTPUT_NAME),
        (lambda s: s["outputs"].append({**s["outputs"][0], "name": "again"}), MSG_OUTPUT_SHARED),
    ],
)
def test_pipeline_tensor_name_clashes_are_cel_rules(change: Any, message: str) -> None:
    """Once offline-only checks; the CRD now holds them as CEL rules, so both refuse."""
    pipeline = copy.deepcopy(PIPELINE)
    change(pipeline["spec"])
    with pytest.raises(SpecError) as err:
        parse_model_pipeline(pipeline)
    assert any(message in e.message for e in err.value.errors), err.value


def test_validate_checks_serving_pools(tmp_path: Path) -> None:
    good, bad = tmp_path / "pool.yaml", tmp_path / "bad.yaml"
    good.write_text(yaml.safe_dump(POOL))
    bad.write_text(yaml.safe_dump(_with(POOL, "minServers", 9)))
    out = io.StringIO()
    assert check_files([str(good)], out=out) == 0
    assert "1 ServingPool(s)" in out.getvalue()
    out = io.StringIO()
    assert check_files([str(bad)], out=out) == 1
    assert "spec.minServers" in out.getvalue()


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("^a$", "a", True),
        ("^a$", "a\n", False),
        (r"^\d+$", "12", True),
        (r"^\d+$", "\u0661", False),
        (r"^[$]x$", "$x", True),
        (r"^a\$$", "a$", True),
        ("://", "s3://b", True),
    ],
)
def test_go_regex_semantics(pattern: str, value: str, expected: bool) -> None:
    assert matches(value, pattern) is expected
    assert go_regex(pattern) is go_regex(pattern)


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        # Each once reached the pool's StatefulSet, which the API server then refused.
        ("region", "eu west", "spec.region"),
        ("server", {"gpus": 1, "gpuProduct": "NVIDIA L4"}, "spec.server.gpuProduct"),
        ("nodeSelector", {"disk": "fast ssd"}, "spec.nodeSelector.disk"),
        ("nodeSelector", {"bad key!": "ssd"}, "spec.nodeSelector"),
        ("tolerations", [{"key": "bad key!", "operator": "Exists"}], "spec.tolerations[0].key"),
        ("tolerations", [{"key": "k", "value": "a b"}], "spec.tolerations[0].value"),
        ("tolerations", [{"operator": "Exists", "value": "v"}], "spec.tolerations[0]"),
        ("tolerations", [{"value": "v"}], "spec.tolerations[0]"),
    ],
)
def test_a_pool_whose_servers_the_api_server_would_refuse_is_refused(
    path: str, value: Any, where: str
) -> None:
    with pytest.raises(SpecError) as err:
        parse_serving_pool(_with(POOL, path, value))
    assert where in {e.path for e in err.value.errors}, err.value


def test_max_properties_counts_what_is_left_after_nulls_are_pruned() -> None:
    """33 entries, one of them null: the API server prunes it, then counts 32 (the maximum)."""
    selector: dict[str, Any] = {f"k{i}": "v" for i in range(32)}
    pool = parse_serving_pool(_with(POOL, "nodeSelector", {**selector, "gone": None}))
    assert len(pool.node_selector) == 32
    with pytest.raises(SpecError) as err:
        parse_serving_pool(_with(POOL, "nodeSelector", {**selector, "k32": "v"}))
    assert [e.path for e in err.value.errors] == ["spec.nodeSelector"]
