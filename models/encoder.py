"""Sentence embeddings from a MiniLM ONNX graph and its tokenizer.json, with numpy only.

Shared by the python-backend models in this folder and packaged next to their
`model.py` in each artifact (the model's version directory is on the python
backend's import path). No torch: onnxruntime and tokenizers are small enough
for a CPU model server and for the EXECUTION_ENV_PATH environment.

The same code serves graphs that return token states (all-MiniLM-L6-v2 int8:
`last_hidden_state` [b, s, 384], pooled here over the attention mask) and
graphs that pool themselves (paraphrase-MiniLM-L3-v2: [b, 384]); embeddings
are L2-normalised so that a dot product is the cosine similarity.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

MAX_TOKENS = 128  # what the MiniLM sentence models were trained with


class Encoder:
    def __init__(self, model_dir: Path, intra_op_threads: int = 0) -> None:
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        pad = self.tokenizer.padding or {}
        # Pad each batch to its longest text, not to a fixed 128: short texts stay cheap.
        self.tokenizer.enable_padding(
            pad_id=pad.get("pad_id", self.tokenizer.token_to_id("[PAD]") or 0),
            pad_token=pad.get("pad_token", "[PAD]"),
        )
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        wanted = ("CUDAExecutionProvider", "CPUExecutionProvider")
        providers = [p for p in wanted if p in ort.get_available_providers()]
        self.session = ort.InferenceSession(
            str(model_dir / "model.onnx"), options, providers=providers
        )
        self.feeds = {i.name for i in self.session.get_inputs()}
        self.output = _sentence_output(self.session)
        self.dim = int(self.embed(["warm-up"]).shape[-1])

    @classmethod
    def for_config(cls, model_dir: Path, config: dict) -> Encoder:
        """An encoder with the model config's optional INTRA_OP_THREADS parameter applied."""
        threads = config.get("parameters", {}).get("INTRA_OP_THREADS", {}).get("string_value")
        return cls(model_dir, intra_op_threads=int(threads or 0))

    def embed(self, texts: list[str]) -> np.ndarray:
        """float32 [len(texts), dim], each row of unit length."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)  # set by the warm-up in __init__
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        available = {
            "input_ids": ids,
            "attention_mask": mask,
            "token_type_ids": np.zeros_like(ids),
        }
        (out,) = self.session.run(
            [self.output], {k: v for k, v in available.items() if k in self.feeds}
        )
        if out.ndim == 3:
            weights = mask[:, :, None].astype(np.float32)
            out = (out * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.ascontiguousarray(out / np.maximum(norms, 1e-12), dtype=np.float32)


def _sentence_output(session: ort.InferenceSession) -> str:
    """The graph output to use: a pooled [batch, width] one if there is one, else token states.

    Exported sentence-transformers graphs often expose several outputs (token
    ids, token states, pooled vectors); the width must be a fixed number.
    """
    outputs = session.get_outputs()
    pooled = [o for o in outputs if len(o.shape) == 2 and isinstance(o.shape[-1], int)]
    tokens = [o for o in outputs if len(o.shape) == 3 and isinstance(o.shape[-1], int)]
    return str((pooled or tokens or outputs)[0].name)


def decode(values: np.ndarray) -> list[str]:
    """Triton BYTES tensors arrive as numpy object arrays of bytes."""
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values.reshape(-1)]


def config_tensors(config: dict, key: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (data_type, dims) of the model config's `input` or `output` list."""
    return {
        t["name"]: (t["data_type"], tuple(int(d) for d in t.get("dims", ())))
        for t in config.get(key, [])
    }


def require(
    config: dict, key: str, name: str, data_type: str, ranks: tuple[int, ...]
) -> tuple[int, ...]:
    """Fail model loading with a clear reason when the config does not declare what the model serves."""
    declared = config_tensors(config, key)
    kind = "input" if key == "input" else "output"
    if name not in declared:
        have = ", ".join(sorted(declared)) or "none"
        raise ValueError(
            f"this model needs {kind} {name} ({data_type}); the config declares {kind}s: {have}"
        )
    dtype, dims = declared[name]
    if dtype != data_type:
        raise ValueError(f"{kind} {name} must be {data_type}, the config declares {dtype}")
    if len(dims) not in ranks:
        raise ValueError(
            f"{kind} {name} must have {' or '.join(map(str, ranks))} dims, the config declares {list(dims)}"
        )
    return dims
