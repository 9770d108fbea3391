"""Golden files: the exact manifests and config.pbtxt for three representative specs.

Regenerate after an intended change with `SMALLFLEET_UPDATE_GOLDEN=1 pytest
tests/unit/test_render_golden.py` and review the diff like code.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from pathlib import Path
from typing import Any, Final

import pytest
from render_fixtures import CPU_PYTHON, GPU_ONNX, PIPELINE, PIPELINE_MODELS

from smallfleet.core.render import (
    ServerPlan,
    model_repository,
    plan_for_model,
    plan_for_pipeline,
    render_children,
    triton_config,
)
from smallfleet.core.render.yamltext import dump
from smallfleet.core.spec import Credentials, PodSettings, S3Access, Scaling, Toleration
from smallfleet.settings import Settings

GOLDEN: Final = Path(__file__).parent / "golden"
UPDATE: Final = os.environ.get("SMALLFLEET_UPDATE_GOLDEN") == "1"
SETTINGS: Final = Settings(
    triton_image="nvcr.io/nvidia/tritonserver:24.10-py3",
    operator_image="ghcr.io/smallfleet/smallfleet:0.1.0",
)


def _owner(kind: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.smallfleet.io/v1alpha1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": "models",
            "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, name)),
        },
    }


def _plans() -> dict[str, tuple[ServerPlan, dict[str, int]]]:
    return {
        "gpu-onnx": (plan_for_model(GPU_ONNX, SETTINGS), {"eu-north-1": 2, "eu-west-1": 1}),
        "cpu-python": (plan_for_model(CPU_PYTHON, SETTINGS), {"": 1}),
        "pipeline": (plan_for_pipeline(PIPELINE, PIPELINE_MODELS, SETTINGS), {"eu-north-1": 1}),
        "gpu-onnx-keda": (
            plan_for_model(
                dataclasses.replace(
                    GPU_ONNX,
                    scaling=Scaling(mode="keda", min_replicas=0, max_replicas=4, target=20.0),
                ),
                SETTINGS,
            ),
            {"eu-north-1": 1},
        ),
        # spec.pod merged with what the operator sets; the priority class from the chart.
        "gpu-onnx-pod": (
            plan_for_model(
                dataclasses.replace(
                    GPU_ONNX,
                    pod=PodSettings(
                        tolerations=(Toleration(key="dedicated", value="ml", effect="NoSchedule"),),
                        node_selector=(("example.com/pool", "ml"),),
                        image_pull_secrets=("registry",),
                        service_account_name="triton",
                        env=(("OMP_NUM_THREADS", "2"),),
                        labels=(("team", "search"),),
                        annotations=(("example.com/owner", "search-team"),),
                    ),
                ),
                dataclasses.replace(
                    SETTINGS, pod_defaults=PodSettings(priority_class_name="serving")
                ),
            ),
            {"eu-north-1": 1},
        ),
        # A private artifact: the keys by reference in the fetch container only.
        "gpu-onnx-private": (
            plan_for_model(
                dataclasses.replace(
                    GPU_ONNX,
                    model=dataclasses.replace(
                        GPU_ONNX.model,
                        credentials=Credentials(
                            secret_name="s3-reader",
                            s3=S3Access(region="eu-north-1", endpoint="https://s3.storage.svc"),
                        ),
                    ),
                ),
                SETTINGS,
            ),
            {"eu-north-1": 1},
        ),
    }


def _check(path: Path, text: str) -> None:
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing: run with SMALLFLEET_UPDATE_GOLDEN=1 to write it"
    assert text == path.read_text(encoding="utf-8"), (
        f"{path.name} differs from the rendered output; if the change is intended, "
        "regenerate with SMALLFLEET_UPDATE_GOLDEN=1 and review the diff"
    )


@pytest.mark.parametrize(
    "case",
    ["gpu-onnx", "cpu-python", "pipeline", "gpu-onnx-keda", "gpu-onnx-pod", "gpu-onnx-private"],
)
def test_manifests_match_golden(case: str) -> None:
    plan, regions = _plans()[case]
    owner = _owner(plan.owner_kind, plan.owner_name)
    _check(GOLDEN / f"{case}.yaml", dump(render_children(plan, owner=owner, regions=regions)))


@pytest.mark.parametrize("case", ["gpu-onnx", "cpu-python", "pipeline"])
def test_configs_match_golden(case: str) -> None:
    plan, _ = _plans()[case]
    for entry in plan.models:
        _check(GOLDEN / f"{case}.{entry.name}.config.pbtxt", triton_config(entry))


def test_repository_of_pipeline_holds_every_config_and_the_ensemble_version_dir() -> None:
    plan, _ = _plans()["pipeline"]
    assert model_repository(plan) == {
        "rerank/config.pbtxt": triton_config(plan.models[1]),
        "retrieve/config.pbtxt": triton_config(plan.models[0]),
        "search/1/": "",
        "search/config.pbtxt": triton_config(plan.models[2]),
    }
