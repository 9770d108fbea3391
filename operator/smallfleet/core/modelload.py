"""Why Triton did not load a model, in one line that a model owner can act on.

When a model fails to load, Triton keeps serving the others
(`--exit-on-error=false`) but the pod never turns Ready
(`--strict-readiness=true`). The reason is in two places the operator can
read: the `reason` field of the repository index (`POST /v2/repository/index`)
and the server log (`failed to load '<model>' version <n>: ...`). Both carry
Triton's raw text: a status prefix, sometimes a Python traceback from the
python-backend stub, sometimes an internal name. This module turns that into
the one line that goes into the SmallModel's status, naming the model, what
went wrong and, for the failures seen in practice, what to change in the spec.

Pure: it takes the index entries or the log text and returns a string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from smallfleet.core.spec import BACKENDS

MAX_REASON_CHARS: Final = 300
# Index states whose reason explains nothing wrong (an explicit unload).
_BENIGN_REASONS: Final = frozenset({"", "unloaded"})
_STATUS_PREFIX: Final = re.compile(
    r"^(?:Internal|Invalid argument|Not found|Unavailable|Unknown|Already exists|Unsupported|"
    r"Failed precondition|Resource exhausted|Out of range|Unimplemented): "
)
# "failed to load 'NAME' version N: REASON", quoted with escapes (Triton >= 2.40) or not.
_LOG_FAILED: Final = re.compile(
    r"""failed to load '(?P<model>[^']+)' version (?P<version>\d+): (?P<reason>.*?)"?\s*$"""
)
_LOG_LOADED: Final = re.compile(r"successfully loaded '(?P<model>[^']+)'")
_PY_ERROR: Final = re.compile(r"^(?P<kind>[A-Za-z_][\w.]*(?:Error|Exception|Exit)): (?P<msg>.*)$")

_FORMAT_OF_BACKEND: Final = {backend: fmt for fmt, backend in BACKENDS.items()}


@dataclass(frozen=True)
class LoadFailure:
    model: str
    version: str | None
    reason: str  # Triton's text, unabridged


def _hint(reason: str) -> str | None:
    """What to change, for the failures that have one clear remedy."""
    m = re.search(r"unable to find backend library for backend '([^']+)'", reason)
    if m:
        backend = m.group(1)
        fmt = _FORMAT_OF_BACKEND.get(backend, backend)
        return (
            f"the Triton image has no {backend} backend for format {fmt}: use a Triton image "
            "that ships it (spec.triton.image), or package the model for the python backend"
        )
    m = re.search(r"No module named '([^']+)'", reason)
    if m:
        return (
            f"the python backend cannot import {m.group(1)}: set the EXECUTION_ENV_PATH "
            "parameter (spec.triton.parameters) to an environment that has it"
        )
    if re.search(r"KIND_GPU but no GPUs are available|no CUDA-capable device", reason):
        return "the model asks for a GPU instance but the server sees no GPU: check spec.resources.gpus and the node's GPU"
    if re.search(r"CUDA (?:error: )?out of memory|CUDA_ERROR_OUT_OF_MEMORY", reason):
        return "the GPU ran out of memory while loading: use a larger GPU, fewer instances, or fewer models per server"
    if re.search(
        r"unable to load model|model\.(?:onnx|pt|plan|py)['\"]? (?:does not exist|not found)|No such file",
        reason,
    ):
        return (
            "the artifact does not hold a loadable model file: check spec.model.uri and its format"
        )
    return None


def summarize(reason: str) -> str:
    """One line from Triton's raw reason: prefix and traceback dropped, a remedy when known."""
    text = reason.replace("\\n", "\n").strip()
    text = text.split("\n\nAt:", 1)[0]
    lines = [_STATUS_PREFIX.sub("", line.strip()) for line in text.splitlines() if line.strip()]
    errors = [ln for ln in lines if _PY_ERROR.match(ln)]
    core = errors[-1] if errors else (lines[0] if lines else "no reason given")
    m = _PY_ERROR.match(core)
    if m and m.group("kind") in ("ValueError", "TritonModelException", "RuntimeError"):
        core = m.group("msg")  # the model's own words; the exception class adds nothing
    hint = _hint(text)
    line = core if hint is None else f"{hint} ({core})"
    line = " ".join(line.split())
    return line if len(line) <= MAX_REASON_CHARS else line[: MAX_REASON_CHARS - 3] + "..."


def failures_from_index(entries: Sequence[Mapping[str, object]]) -> list[LoadFailure]:
    out = []
    for e in entries:
        reason = str(e.get("reason") or "")
        if e.get("state") == "UNAVAILABLE" and reason.strip() not in _BENIGN_REASONS:
            version = e.get("version")
            out.append(
                LoadFailure(str(e.get("name")), None if version is None else str(version), reason)
            )
    return out


def failures_from_log(log_text: str) -> list[LoadFailure]:
    """The latest load outcome per model: a later successful load clears an earlier failure."""
    latest: dict[str, LoadFailure | None] = {}
    for line in log_text.splitlines():
        m = _LOG_FAILED.search(line)
        if m:
            reason = m.group("reason").replace('\\"', '"').replace("\\'", "'")
            latest[m.group("model")] = LoadFailure(m.group("model"), m.group("version"), reason)
            continue
        ok = _LOG_LOADED.search(line)
        if ok:
            latest[ok.group("model")] = None
    return [f for f in latest.values() if f is not None]


def load_failure_reason(source: Sequence[Mapping[str, object]] | str) -> str | None:
    """One line for every model that failed to load, or None when none did.

    `source` is either the repository index (a list of entries with name,
    version, state, reason) or the server's log text.
    """
    failures = failures_from_log(source) if isinstance(source, str) else failures_from_index(source)
    if not failures:
        return None
    line = "; ".join(
        f"model {f.model} did not load: {summarize(f.reason)}"
        for f in sorted(failures, key=lambda f: f.model)
    )
    return " ".join(line.split())
