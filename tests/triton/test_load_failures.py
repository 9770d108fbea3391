"""Models that a real Triton server refuses to load get a clear reason; the others keep serving.

One server holds the rendered entries of tests/triton/manifests/broken.yaml:
a healthy embedder, a spec whose tensors do not match the artifact, an ONNX
model for a backend this Triton build lacks, a python model without its
environment, and a GPU model on a server without a GPU. The reasons come from
the server itself (repository index and log) through
`smallfleet.core.modelload.load_failure_reason`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from triton_harness import ManifestLoader, TritonServer, parse_all

from smallfleet.core.modelload import failures_from_index, load_failure_reason
from smallfleet.core.render import ServerPlan, plan_for_model
from smallfleet.settings import Settings


@pytest.fixture(scope="module")
def broken_plan(manifests: ManifestLoader) -> ServerPlan:
    models, _ = parse_all(manifests("broken"))
    plans = [plan_for_model(m, Settings()) for m in models.values()]
    # One server for all of them, as a packed plan would hold them: cheaper here, and it
    # shows that one model's failure does not take its neighbours down.
    return dataclasses.replace(plans[0], models=tuple(p.models[0] for p in plans))


@pytest.fixture(scope="module")
def broken_server(
    triton_factory: Callable[..., TritonServer], broken_plan: ServerPlan
) -> TritonServer:
    return triton_factory(broken_plan, wait_for="settled")


EXPECTED = {
    "mismatched-io": "this model needs input TEXT (TYPE_STRING); the config declares inputs: sentence",
    "minilm-onnx": "the Triton image has no onnxruntime backend for format onnx",
    "no-environment": "the python backend cannot import numpy: set the EXECUTION_ENV_PATH parameter",
    "needs-gpu": "the model asks for a GPU instance but the server sees no GPU",
}


def test_the_healthy_model_serves_and_the_server_is_not_ready(broken_server: TritonServer) -> None:
    states = {e["name"]: e["state"] for e in broken_server.repository_index()}
    assert states == {"minilm-l3": "READY", **dict.fromkeys(EXPECTED, "UNAVAILABLE")}
    assert broken_server.get("/v2/models/minilm-l3/ready")[0] == 200
    assert broken_server.get("/v2/models/mismatched-io/ready")[0] != 200
    # --strict-readiness: a pod with a broken model stays out of the Service.
    assert broken_server.get("/v2/health/ready")[0] != 200


def test_reasons_from_the_repository_index(broken_server: TritonServer) -> None:
    index = broken_server.repository_index()
    assert sorted(f.model for f in failures_from_index(index)) == sorted(EXPECTED)
    line = load_failure_reason(index)
    assert line is not None and "\n" not in line
    for model, says in EXPECTED.items():
        assert f"model {model} did not load: {says}" in line, line
    assert "minilm-l3" not in line
    assert "At:" not in line and "frozen importlib" not in line


def test_reasons_from_the_server_log(broken_server: TritonServer) -> None:
    assert load_failure_reason(broken_server.log_text()) == load_failure_reason(
        broken_server.repository_index()
    )


def test_one_model_alone_reports_its_own_reason(
    triton_factory: Callable[..., TritonServer], manifests: ManifestLoader
) -> None:
    """As the operator sees it: a SmallModel's own server, not ready, with one reason."""
    models, _ = parse_all(manifests("broken"))
    server = triton_factory(plan_for_model(models["mismatched-io"], Settings()), wait_for="settled")
    try:
        assert load_failure_reason(server.repository_index()) == (
            f"model mismatched-io did not load: {EXPECTED['mismatched-io']}"
        )
    finally:
        server.stop()
