"""Fixtures for tests against a real Triton Inference Server on this machine.

`triton_server` is the server of the canonical test SmallModel (`minilm-l6`,
tests/triton/manifests/minilm-l6.yaml) rendered by the operator's own code:
artifact fetched with `smallfleet fetch` from a local HTTP store, config.pbtxt
and command line from `smallfleet.core.render`. Other tests (metrics, autoscaling)
reuse it as is; `triton_factory` starts more servers on other plans.
Nothing is skipped: a server that cannot start fails the test with its log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from triton_harness import (
    ManifestLoader,
    TritonEnv,
    TritonServer,
    load_manifests,
    parse_all,
    prepare_env,
    serve_directory,
    serve_plan,
)

from smallfleet.core.render import ServerPlan, plan_for_model
from smallfleet.settings import Settings


@pytest.fixture(scope="session")
def triton_env() -> TritonEnv:
    return prepare_env()


@pytest.fixture(scope="session")
def artifacts_url(triton_env: TritonEnv) -> Iterator[str]:
    """Base URL of a local HTTP store serving the packaged artifacts."""
    with serve_directory(triton_env.artifacts) as url:
        yield url


@pytest.fixture(scope="session")
def manifests(triton_env: TritonEnv, artifacts_url: str) -> ManifestLoader:
    """Loads tests/triton/manifests/<name>.yaml pointed at the local store and backend env."""

    def load(name: str) -> list[dict[str, Any]]:
        return load_manifests(
            name, ARTIFACTS_URL=artifacts_url, BACKEND_ENV=str(triton_env.execution_env_path)
        )

    return load


@pytest.fixture(scope="session")
def triton_factory(
    triton_env: TritonEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., TritonServer]]:
    """`start(plan, **kwargs)`: serve a rendered plan; every server started is stopped at the end."""
    started: list[TritonServer] = []

    def start(plan: ServerPlan, **kwargs: Any) -> TritonServer:
        workdir = tmp_path_factory.mktemp(f"triton-{plan.name}")
        server = serve_plan(triton_env, plan, workdir, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def minilm_plan(manifests: ManifestLoader) -> ServerPlan:
    models, _ = parse_all(manifests("minilm-l6"))
    return plan_for_model(models["minilm-l6"], Settings())


@pytest.fixture(scope="session")
def triton_server(
    triton_factory: Callable[..., TritonServer], minilm_plan: ServerPlan
) -> TritonServer:
    """A ready tritonserver serving `minilm-l6` (.http_url, .grpc_url, .metrics_url, .repository)."""
    return triton_factory(minilm_plan)


@pytest.fixture(scope="session")
def repository(triton_server: TritonServer) -> Path:
    return triton_server.repository
