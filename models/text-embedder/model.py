"""Triton python-backend model: sentences in, sentence embeddings out.

Copy this file with ../encoder.py into your model's version directory, next to
`model.onnx` (a MiniLM-style sentence encoder) and its `tokenizer.json`.

Config it expects (rendered by smallfleet from the SmallModel's `triton`
section):
    input  TEXT       TYPE_STRING dims [1] (one sentence per batch row)
                                  or [-1] (several; then EMBEDDING is [-1, D])
    output EMBEDDING  TYPE_FP32   dims [D] or [-1, D], D the encoder's width (384)
    parameters EXECUTION_ENV_PATH: a virtualenv with numpy<2, onnxruntime, tokenizers
    parameters INTRA_OP_THREADS (optional): onnxruntime threads per instance

Requests that the dynamic batcher groups together are encoded in one
onnxruntime call; that is where batching pays.
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
        require(config, "input", "TEXT", "TYPE_STRING", (1,))
        out_dims = require(config, "output", "EMBEDDING", "TYPE_FP32", (1, 2))
        self.encoder = Encoder.for_config(HERE, config)
        if out_dims[-1] not in (-1, self.encoder.dim):
            raise ValueError(
                f"output EMBEDDING must end in {self.encoder.dim} (the encoder's width), "
                f"the config declares {list(out_dims)}"
            )
        # [D]: one sentence per row, the sentence axis dropped; [-1, D]: kept.
        self.keep_axis = len(out_dims) == 2

    def execute(self, requests):
        shapes, texts = [], []
        for request in requests:
            values = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy()
            shapes.append(values.shape)
            texts.extend(decode(values))
        embeddings = self.encoder.embed(texts)
        responses, start = [], 0
        for shape in shapes:
            count = int(np.prod(shape))
            rows = embeddings[start : start + count]
            start += count
            lead = shape if self.keep_axis else shape[:-1]
            tensor = pb_utils.Tensor("EMBEDDING", np.ascontiguousarray(rows.reshape(*lead, -1)))
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
        return responses
