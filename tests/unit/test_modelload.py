"""Triton load failures become one actionable line (reasons captured from tritonserver 2.51)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smallfleet.core.modelload import (
    MAX_REASON_CHARS,
    failures_from_log,
    load_failure_reason,
    summarize,
)

NO_BACKEND = "Invalid argument: unable to find backend library for backend 'onnxruntime', try specifying runtime on the model configuration."
MISMATCH = (
    "Internal: ValueError: this model needs input TEXT (TYPE_STRING); the config declares inputs: sentence"
    "\n\nAt:\n  /models/m/1/encoder.py(102): require\n  /models/m/1/model.py(35): initialize\n"
)
NO_GPU = "Invalid argument: instance group needs-gpu_0 of model needs-gpu has kind KIND_GPU but no GPUs are available"
NO_MODULE = (
    "Internal: ModuleNotFoundError: No module named 'numpy'\n\nAt:\n  /models/m/1/model.py(22): <module>\n"
    "  <frozen importlib._bootstrap>(241): _call_with_frames_removed\n"
)


@pytest.mark.parametrize(
    ("reason", "says", "not_says"),
    [
        (
            NO_BACKEND,
            ["no onnxruntime backend for format onnx", "spec.triton.image", "python backend"],
            ["Invalid argument:"],
        ),
        (
            MISMATCH,
            ["this model needs input TEXT (TYPE_STRING); the config declares inputs: sentence"],
            ["At:", "encoder.py", "ValueError"],
        ),
        (
            NO_GPU,
            ["sees no GPU", "spec.resources.gpus", "KIND_GPU but no GPUs"],
            ["Invalid argument:"],
        ),
        (
            NO_MODULE,
            [
                "cannot import numpy",
                "EXECUTION_ENV_PATH",
                "ModuleNotFoundError: No module named 'numpy'",
            ],
            ["frozen", "Internal:"],
        ),
        ("Internal: CUDA error: out of memory", ["ran out of memory"], []),
        ("", ["no reason given"], []),
    ],
)
def test_summaries(reason: str, says: list[str], not_says: list[str]) -> None:
    line = summarize(reason)
    for s in says:
        assert s in line
    for s in not_says:
        assert s not in line
    assert "\n" not in line


def test_from_the_repository_index() -> None:
    index = [
        {"name": "ok", "version": "1", "state": "READY"},
        {"name": "gone", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"},
        {"name": "onnx", "version": "1", "state": "UNAVAILABLE", "reason": NO_BACKEND},
        {"name": "io", "version": "1", "state": "UNAVAILABLE", "reason": MISMATCH},
    ]
    line = load_failure_reason(index)
    assert line is not None
    assert line.startswith("model io did not load: this model needs input TEXT")
    assert "; model onnx did not load: the Triton image has no onnxruntime backend" in line


def test_nothing_wrong_is_none() -> None:
    assert load_failure_reason([{"name": "ok", "version": "1", "state": "READY"}]) is None
    assert load_failure_reason("I1126 model_lifecycle.cc:838] \"successfully loaded 'ok'\"") is None


LOG = "\n".join(
    [
        "E1126 06:38:45.279714 1406 model_lifecycle.cc:642] \"failed to load 'minilm-onnx' version 1: "
        + NO_BACKEND
        + '"',
        "E1126 06:38:49.734359 1406 model_lifecycle.cc:642] \"failed to load 'io' version 1: "
        + MISMATCH.replace("\n", "\\n")
        + '"',
        "E1126 06:38:50 1406 model_lifecycle.cc:642] failed to load 'later-fixed' version 2: Internal: boom",
        "I1126 06:39:50 1406 model_lifecycle.cc:838] \"successfully loaded 'later-fixed'\"",
    ]
)


def test_from_the_server_log() -> None:
    failures = {f.model: f for f in failures_from_log(LOG)}
    assert sorted(failures) == ["io", "minilm-onnx"]
    assert failures["minilm-onnx"].version == "1"
    line = load_failure_reason(LOG)
    assert line is not None
    assert "model io did not load: this model needs input TEXT" in line
    assert "model minilm-onnx did not load: the Triton image has no onnxruntime backend" in line
    assert "later-fixed" not in line


@given(st.text(max_size=2000))
def test_any_reason_gives_one_bounded_line(reason: str) -> None:
    line = summarize(reason)
    assert "\n" not in line and 0 < len(line) <= MAX_REASON_CHARS


@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "name": st.text(min_size=1, max_size=20),
                "state": st.sampled_from(["READY", "UNAVAILABLE", "LOADING"]),
                "reason": st.text(max_size=200),
            }
        ),
        max_size=5,
    )
)
def test_any_index_gives_none_or_one_line(entries: list[dict[str, object]]) -> None:
    line = load_failure_reason(entries)
    assert line is None or "\n" not in line
