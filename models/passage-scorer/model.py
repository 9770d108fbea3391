"""Triton python-backend model: score passages against a query embedding.

The second step of a retrieve-then-rerank pipeline: the first step embeds the
query (text-embedder), this one embeds each candidate passage with the same
MiniLM encoder and returns the cosine similarity of each passage to the query,
so the most relevant passage gets the highest score.

Copy this file with ../encoder.py into the version directory, next to the
same `model.onnx` and `tokenizer.json` that the query embedder uses (scores
only mean something when both sides come from one encoder).

Config it expects:
    input  QUERY_EMBEDDING  TYPE_FP32    dims [D]
    input  PASSAGES         TYPE_STRING  dims [-1]
    output SCORES           TYPE_FP32    dims [-1]  (one score per passage, in [-1, 1])
    parameters EXECUTION_ENV_PATH: a virtualenv with numpy<2, onnxruntime, tokenizers
"""

import json
import sys
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from encoder import Encoder, decode, require  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        query_dims = require(config, "input", "QUERY_EMBEDDING", "TYPE_FP32", (1,))
        require(config, "input", "PASSAGES", "TYPE_STRING", (1,))
        require(config, "output", "SCORES", "TYPE_FP32", (1,))
        self.encoder = Encoder.for_config(HERE, config)
        if query_dims[0] not in (-1, self.encoder.dim):
            raise ValueError(
                f"input QUERY_EMBEDDING must be [{self.encoder.dim}] (the encoder's width), "
                f"the config declares {list(query_dims)}"
            )

    def execute(self, requests):
        queries, passages, shapes = [], [], []
        for request in requests:
            query = pb_utils.get_input_tensor_by_name(request, "QUERY_EMBEDDING").as_numpy()
            values = pb_utils.get_input_tensor_by_name(request, "PASSAGES").as_numpy()
            queries.append(query.reshape(-1, query.shape[-1]))
            shapes.append(values.shape)
            passages.extend(decode(values))
        embedded = self.encoder.embed(passages)
        responses, start = [], 0
        for query, shape in zip(queries, shapes, strict=True):
            rows = query.shape[0]
            per_row = int(np.prod(shape)) // max(rows, 1)
            block = embedded[start : start + rows * per_row].reshape(rows, per_row, -1)
            start += rows * per_row
            norms = np.linalg.norm(query, axis=1, keepdims=True)
            unit = query / np.maximum(norms, 1e-12)
            scores = np.einsum("rpd,rd->rp", block, unit).astype(np.float32)
            tensor = pb_utils.Tensor("SCORES", np.ascontiguousarray(scores.reshape(shape)))
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
        return responses
