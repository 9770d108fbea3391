"""Triton python-backend model: sentences in, hashed character-trigram vectors out.

A classic, tiny text featuriser (the "hashing trick"): every character
trigram of a sentence is hashed into one of D buckets, and the counts are
scaled to unit length, so sentences that share wording get a high cosine
similarity. It needs only numpy, so one instance costs little more than the
python-backend stub itself; it is the model that packs by the dozen into one
pool server in the tests and the demo.

Config it expects:
    input  TEXT    TYPE_STRING dims [1]
    output VECTOR  TYPE_FP32   dims [D] (D is the number of buckets, 64 to 4096)
    parameters EXECUTION_ENV_PATH: a virtualenv with numpy<2
"""

import hashlib
import json

import numpy as np
import triton_python_backend_utils as pb_utils


def _tensor(config, field, name):
    for t in config.get(field, []):
        if t.get("name") == name:
            return t
    declared = ", ".join(t.get("name", "?") for t in config.get(field, [])) or "none"
    raise ValueError(f"this model needs {field} {name}; the config declares {field}s: {declared}")


def featurise(text, dim):
    padded = f"  {text.lower()} "
    vec = np.zeros(dim, dtype=np.float32)
    for i in range(len(padded) - 2):
        digest = hashlib.blake2b(padded[i : i + 3].encode(), digest_size=4).digest()
        vec[int.from_bytes(digest, "little") % dim] += 1.0
    norm = float(np.linalg.norm(vec))
    return vec / norm if norm else vec


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        text = _tensor(config, "input", "TEXT")
        if text.get("data_type") != "TYPE_STRING":
            raise ValueError("input TEXT must be TYPE_STRING")
        out = _tensor(config, "output", "VECTOR")
        dims = [int(d) for d in out.get("dims", [])]
        if out.get("data_type") != "TYPE_FP32" or not dims or not 64 <= dims[-1] <= 4096:
            raise ValueError("output VECTOR must be TYPE_FP32 with dims [D], 64 <= D <= 4096")
        self.dim = dims[-1]

    def execute(self, requests):
        responses = []
        for request in requests:
            texts = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
            rows = [
                featurise(
                    t.decode("utf-8", "replace") if isinstance(t, bytes) else str(t), self.dim
                )
                for t in texts
            ]
            out = np.stack(rows).reshape((len(rows), self.dim)).astype(np.float32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("VECTOR", out)]))
        return responses
