"""A pool server, as the operator drives it: an empty Triton, the fetch agent, the repository API.

The server runs the rendered pool command line (explicit model control, no
model at start); `smallfleet agent` runs beside it on the same repository
directory. The operator's own clients (`smallfleet.tritonapi`) fetch and
verify each artifact through the agent and load it with the config in the
request, exactly as `control.pools` does; the tests then ask Triton.
"""

from __future__ import annotations

import http.server
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from triton_harness import TritonEnv, TritonServer, free_port, start_triton

from smallfleet import agent as agent_server
from smallfleet.core.pools.plan import READY_STATE
from smallfleet.core.pools.render import triton_pool_args
from smallfleet.core.render import plan_for_model
from smallfleet.core.render.triton import triton_config_json
from smallfleet.core.spec import parse_small_model
from smallfleet.settings import Settings
from smallfleet.tritonapi import Agent, ServerError, Triton

MODELS = [f"ngrams-{i}" for i in range(6)]


def small_model(name: str, url: str, digest: str, backend_env: Path, **triton: Any) -> Any:
    body = {
        "apiVersion": "serving.smallfleet.io/v1alpha1",
        "kind": "SmallModel",
        "metadata": {"name": name, "namespace": "pool"},
        "spec": {
            "model": {"uri": url, "digest": digest, "format": "python"},
            "triton": {
                "maxBatchSize": 8,
                "inputs": [{"name": "TEXT", "datatype": "BYTES", "dims": [1]}],
                "outputs": [{"name": "VECTOR", "datatype": "FP32", "dims": [128]}],
                "parameters": {"EXECUTION_ENV_PATH": str(backend_env)},
                **triton,
            },
            "resources": {"gpus": 0, "memory": "64Mi"},
            "serving": {"pool": "shared"},
            "card": {"owner": "tests", "license": "Apache-2.0", "description": "trigrams"},
        },
    }
    return parse_small_model(body)


@pytest.fixture(scope="module")
def pool_server(
    triton_env: TritonEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TritonServer, str]]:
    work = tmp_path_factory.mktemp("pool-server")
    repository = work / "models"
    repository.mkdir()
    args = [a for a in triton_pool_args() if not a.startswith("--model-repository=")]
    server = start_triton(triton_env, repository, [f"--model-repository={repository}", *args])
    port = free_port()
    agent: http.server.ThreadingHTTPServer = agent_server.serve(repository, "127.0.0.1", port)
    yield server, f"http://127.0.0.1:{port}"
    agent.shutdown()
    server.stop()


def load(server: TritonServer, agent_url: str, spec: Any) -> None:
    (entry,) = plan_for_model(spec, Settings()).models
    Agent(agent_url).fetch(spec.name, spec.model.uri, spec.model.digest, spec.model.format)
    Triton(server.http_url.removeprefix("http://")).load(spec.name, triton_config_json(entry))


def vector(server: TritonServer, model: str, text: str) -> Any:
    client = httpclient.InferenceServerClient(server.http_url.removeprefix("http://"))
    try:
        tensor = httpclient.InferInput("TEXT", [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[text.encode()]], dtype=object))
        return client.infer(model, [tensor]).as_numpy("VECTOR")
    finally:
        client.close()


def test_models_load_one_by_one_into_a_running_server_and_answer(
    pool_server: tuple[TritonServer, str], triton_env: TritonEnv, artifacts_url: str
) -> None:
    server, agent_url = pool_server
    url = f"{artifacts_url}/hashed-ngrams.tar.gz"
    digest = triton_env.digest("hashed-ngrams")
    for name in MODELS:
        load(server, agent_url, small_model(name, url, digest, triton_env.execution_env_path))
    index = Triton(server.http_url.removeprefix("http://")).index()
    assert {n: index[n].state for n in MODELS} == dict.fromkeys(MODELS, READY_STATE)
    a, b = vector(server, MODELS[0], "a cat sleeps"), vector(server, MODELS[-1], "a cat sleeps")
    assert a.shape == (1, 128) and np.allclose(a, b) and abs(float(a[0] @ a[0]) - 1.0) < 1e-5
    assert float(a[0] @ vector(server, MODELS[1], "the dog barks")[0]) < 0.9


def test_unloading_one_model_leaves_the_others_serving(
    pool_server: tuple[TritonServer, str], triton_env: TritonEnv, artifacts_url: str
) -> None:
    server, agent_url = pool_server
    url = f"{artifacts_url}/hashed-ngrams.tar.gz"
    digest = triton_env.digest("hashed-ngrams")
    for name in MODELS[:2]:
        load(server, agent_url, small_model(name, url, digest, triton_env.execution_env_path))
    Triton(server.http_url.removeprefix("http://")).unload(MODELS[0])
    Agent(agent_url).remove(MODELS[0])
    index = Triton(server.http_url.removeprefix("http://")).index()
    assert MODELS[0] not in index or index[MODELS[0]].state != READY_STATE
    assert vector(server, MODELS[1], "still here").shape == (1, 128)


def test_a_wrong_digest_is_refused_by_the_agent_with_both_digests(
    pool_server: tuple[TritonServer, str], triton_env: TritonEnv, artifacts_url: str
) -> None:
    _, agent_url = pool_server
    wrong = "sha256:" + "0" * 64
    with pytest.raises(ServerError) as caught:
        Agent(agent_url).fetch("tampered", f"{artifacts_url}/hashed-ngrams.tar.gz", wrong, "python")
    assert "digest mismatch" in caught.value.message and wrong in caught.value.message
    assert not caught.value.unreachable


def test_a_config_the_model_refuses_fails_with_its_own_reason(
    pool_server: tuple[TritonServer, str], triton_env: TritonEnv, artifacts_url: str
) -> None:
    server, agent_url = pool_server
    spec = small_model(
        "ngrams-wrong-output",
        f"{artifacts_url}/hashed-ngrams.tar.gz",
        triton_env.digest("hashed-ngrams"),
        triton_env.execution_env_path,
        outputs=[{"name": "EMBEDDING", "datatype": "FP32", "dims": [128]}],
    )
    with pytest.raises(ServerError) as caught:
        load(server, agent_url, spec)
    assert "this model needs output VECTOR" in caught.value.message
    assert vector(server, MODELS[1], "the others keep serving").shape == (1, 128)
