"""A SmallModel's rendered config and command line run on a real Triton server and mean something.

The server of the `triton_server` fixture was built exactly as a pod is: the
artifact fetched and verified by `smallfleet fetch`, config.pbtxt and the
arguments from `smallfleet.core.render`. These tests query it over HTTP and gRPC.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from triton_harness import TritonServer

from smallfleet.core.render import ServerPlan, triton_config
from smallfleet.fetch import DIGEST_MARKER

PARAPHRASES = ("A man is playing a guitar.", "Someone strums a guitar.")
UNRELATED = "The stock market fell sharply on Tuesday."


def _text_input(module: object, texts: list[str]) -> object:
    tensor = module.InferInput("TEXT", [len(texts), 1], "BYTES")  # type: ignore[attr-defined]
    tensor.set_data_from_numpy(np.array([[t.encode()] for t in texts], dtype=object))
    return tensor


def embed_http(server: TritonServer, texts: list[str]) -> np.ndarray:
    client = httpclient.InferenceServerClient(server.http_url.removeprefix("http://"))
    try:
        result = client.infer("minilm-l6", [_text_input(httpclient, texts)])
        return np.asarray(result.as_numpy("EMBEDDING"))
    finally:
        client.close()


def embed_grpc(server: TritonServer, texts: list[str]) -> np.ndarray:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        result = client.infer("minilm-l6", [_text_input(grpcclient, texts)])
        return np.asarray(result.as_numpy("EMBEDDING"))
    finally:
        client.close()


def test_the_repository_holds_the_rendered_config_and_verified_artifact(
    triton_server: TritonServer, minilm_plan: ServerPlan
) -> None:
    (entry,) = minilm_plan.models
    model_dir = triton_server.repository / "minilm-l6"
    assert (model_dir / "config.pbtxt").read_text() == triton_config(entry)
    assert entry.artifact is not None
    assert (model_dir / DIGEST_MARKER).read_text().strip() == entry.artifact.digest
    assert sorted(p.name for p in (model_dir / "1").iterdir() if p.name != "__pycache__") == [
        "encoder.py",
        "model.onnx",
        "model.py",
        "tokenizer.json",
    ]


def test_the_server_runs_the_rendered_config(triton_server: TritonServer) -> None:
    status, body = triton_server.get("/v2/models/minilm-l6/config")
    assert status == 200, body
    config = json.loads(body)
    assert config["backend"] == "python"
    assert config["max_batch_size"] == 32
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 2000
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["input"]] == [
        ("TEXT", "TYPE_STRING", [1])
    ]
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["output"]] == [
        ("EMBEDDING", "TYPE_FP32", [384])
    ]
    assert config["instance_group"][0]["kind"] == "KIND_CPU"
    assert "--model-control-mode=explicit" in triton_server.args
    index = triton_server.repository_index()
    assert [(e["name"], e["state"]) for e in index] == [("minilm-l6", "READY")]


def test_embeddings_over_http_carry_meaning(triton_server: TritonServer) -> None:
    emb = embed_http(triton_server, [*PARAPHRASES, UNRELATED])
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    similar, unrelated = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    assert similar > 0.5 > unrelated + 0.2, (similar, unrelated)


def test_grpc_answers_as_http_does(triton_server: TritonServer) -> None:
    texts = [*PARAPHRASES, UNRELATED]
    np.testing.assert_allclose(
        embed_grpc(triton_server, texts), embed_http(triton_server, texts), atol=1e-5
    )


def test_batched_requests_answer_as_single_ones(triton_server: TritonServer) -> None:
    """Concurrent one-row requests are batched by the server; each still gets its own answer."""
    texts = [f"sentence number {i} about {topic}" for i, topic in enumerate(["cats", "rain"] * 8)]
    alone = embed_http(triton_server, texts)
    with ThreadPoolExecutor(8) as pool:
        rows = list(pool.map(lambda t: embed_http(triton_server, [t])[0], texts))
    np.testing.assert_allclose(np.stack(rows), alone, atol=1e-4)


def test_metrics_endpoint_counts_inferences(triton_server: TritonServer) -> None:
    import urllib.request

    embed_http(triton_server, ["count me"])
    with urllib.request.urlopen(triton_server.metrics_url, timeout=10) as response:
        text = response.read().decode()
    assert 'nv_inference_request_success{model="minilm-l6",version="1"}' in text
