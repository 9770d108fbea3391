"""A ModelPipeline renders into a Triton ensemble that a real server loads and runs.

`semantic-search` embeds the query with `minilm-l6` and scores candidate
passages against it with `passage-scorer`; one request through the ensemble
must equal calling the two steps in sequence, and rank the relevant passage
first.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from triton_harness import ManifestLoader, TritonServer, parse_all

from smallfleet.core.render import ServerPlan, model_repository, plan_for_pipeline
from smallfleet.settings import Settings

QUERY = "How do plants turn sunlight into energy?"
PASSAGES = (
    "The stock exchange closed higher after the central bank kept rates unchanged.",
    "Photosynthesis lets plants convert light energy into chemical energy stored in sugar.",
    "The recipe calls for two eggs, flour and a pinch of salt.",
)


@pytest.fixture(scope="module")
def pipeline_plan(manifests: ManifestLoader) -> ServerPlan:
    models, _ = parse_all(manifests("minilm-l6"))
    more, pipelines = parse_all(manifests("semantic-search"))
    return plan_for_pipeline(pipelines["semantic-search"], {**models, **more}, Settings())


@pytest.fixture(scope="module")
def pipeline_server(
    triton_factory: Callable[..., TritonServer], pipeline_plan: ServerPlan
) -> TritonServer:
    return triton_factory(pipeline_plan)


def _bytes(module: object, name: str, rows: list[list[str]]) -> object:
    tensor = module.InferInput(name, [len(rows), len(rows[0])], "BYTES")  # type: ignore[attr-defined]
    tensor.set_data_from_numpy(np.array([[t.encode() for t in r] for r in rows], dtype=object))
    return tensor


def test_the_plan_holds_the_steps_and_the_ensemble(pipeline_plan: ServerPlan) -> None:
    assert [(m.name, m.platform) for m in pipeline_plan.models] == [
        ("minilm-l6", "python"),
        ("passage-scorer", "python"),
        ("semantic-search", "ensemble"),
    ]
    files = model_repository(pipeline_plan)
    assert 'platform: "ensemble"' in files["semantic-search/config.pbtxt"]


def test_the_server_loads_every_model_of_the_pipeline(pipeline_server: TritonServer) -> None:
    states = {e["name"]: e["state"] for e in pipeline_server.repository_index()}
    assert states == {"minilm-l6": "READY", "passage-scorer": "READY", "semantic-search": "READY"}


def test_one_request_through_the_ensemble_equals_the_steps_in_sequence(
    pipeline_server: TritonServer,
) -> None:
    client = httpclient.InferenceServerClient(pipeline_server.http_url.removeprefix("http://"))
    try:
        through = client.infer(
            "semantic-search",
            [
                _bytes(httpclient, "QUERY", [[QUERY]]),
                _bytes(httpclient, "PASSAGES", [list(PASSAGES)]),
            ],
        ).as_numpy("SCORES")
        embedding = client.infer("minilm-l6", [_bytes(httpclient, "TEXT", [[QUERY]])]).as_numpy(
            "EMBEDDING"
        )
        query = httpclient.InferInput("QUERY_EMBEDDING", list(embedding.shape), "FP32")
        query.set_data_from_numpy(embedding)
        stepwise = client.infer(
            "passage-scorer", [query, _bytes(httpclient, "PASSAGES", [list(PASSAGES)])]
        ).as_numpy("SCORES")
    finally:
        client.close()
    assert through.shape == (1, len(PASSAGES))
    np.testing.assert_allclose(through, stepwise, atol=1e-5)
    assert int(np.argmax(through[0])) == 1, through  # the photosynthesis passage


def test_the_ensemble_answers_over_grpc_with_several_queries(pipeline_server: TritonServer) -> None:
    queries = [[QUERY], ["What should I bake a cake with?"]]
    client = grpcclient.InferenceServerClient(pipeline_server.grpc_url)
    try:
        scores = client.infer(
            "semantic-search",
            [
                _bytes(grpcclient, "QUERY", queries),
                _bytes(grpcclient, "PASSAGES", [list(PASSAGES), list(PASSAGES)]),
            ],
        ).as_numpy("SCORES")
    finally:
        client.close()
    assert scores.shape == (2, len(PASSAGES))
    assert [int(i) for i in np.argmax(scores, axis=1)] == [1, 2]
