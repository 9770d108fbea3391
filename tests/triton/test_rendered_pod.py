"""The pod that `smallfleet render` prints runs as is: its init containers, then its server.

No container runtime here, so the pod is played out as the kubelet would on
one node: the ConfigMap's keys become files at the `config` mount, every
volume mount maps to a local directory, each init container's command runs
in order (`smallfleet fetch`, then the shell script that copies config.pbtxt),
then the Triton container's command and args start the real server. Only
what cannot be the same off a cluster changes: mount paths, the ports
(free local ones), the listen address and the backend directory.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
import yaml
from hack.localnode import localize
from triton_harness import MANIFESTS, TritonEnv, TritonServer, start_triton


def rendered(manifest: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "smallfleet.cli", "render", str(manifest)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.fixture(scope="module")
def pod(
    triton_env: TritonEnv, artifacts_url: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("pod")
    manifest = work / "minilm-l6.yaml"
    manifest.write_text(
        (MANIFESTS / "minilm-l6.yaml")
        .read_text()
        .replace("${ARTIFACTS_URL}", artifacts_url)
        .replace("${BACKEND_ENV}", str(triton_env.execution_env_path))
    )
    docs = rendered(manifest)
    (config_map,) = [d for d in docs if d["kind"] == "ConfigMap"]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    return {"work": work, "config_map": config_map, "spec": deployment["spec"]["template"]["spec"]}


@pytest.fixture(scope="module")
def pod_server(pod: dict[str, Any], triton_env: TritonEnv) -> Iterator[TritonServer]:
    work: Path = pod["work"]
    volumes = {v["name"]: work / "volumes" / v["name"] for v in pod["spec"]["volumes"]}
    for path in volumes.values():
        path.mkdir(parents=True)
    config_volume = next(
        v["name"] for v in pod["spec"]["volumes"] if "configMap" in v
    )  # the ConfigMap's keys appear as files in its volume
    for key, text in pod["config_map"]["data"].items():
        (volumes[config_volume] / key).write_text(text)

    for init in pod["spec"]["initContainers"]:
        mounts = {m["mountPath"]: volumes[m["name"]] for m in init["volumeMounts"]}
        command = [localize(c, mounts) for c in init["command"]]
        if command[0] == "smallfleet":
            command = [sys.executable, "-m", "smallfleet.cli", *command[1:]]
            command += ["--termination-log", str(work / f"{init['name']}.termination-log")]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, f"init container {init['name']}: {done.stderr}"

    (triton,) = pod["spec"]["containers"]
    mounts = {m["mountPath"]: volumes[m["name"]] for m in triton["volumeMounts"]}
    assert triton["command"] == ["tritonserver"]
    args = [localize(a, mounts) for a in triton["args"]]
    server = start_triton(triton_env, volumes["models"], args, log_path=work / "triton.log")
    yield server
    server.stop()


def test_the_init_containers_lay_out_the_repository(pod_server: TritonServer) -> None:
    model = pod_server.repository / "minilm-l6"
    assert (model / "config.pbtxt").is_file() and (model / "1" / "model.py").is_file()


def test_the_readiness_probe_passes(pod: dict[str, Any], pod_server: TritonServer) -> None:
    (triton,) = pod["spec"]["containers"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        path = triton[probe]["httpGet"]["path"]
        assert pod_server.get(path)[0] == 200, probe


def test_the_pod_serves_embeddings(pod_server: TritonServer) -> None:
    client = httpclient.InferenceServerClient(pod_server.http_url.removeprefix("http://"))
    try:
        tensor = httpclient.InferInput("TEXT", [2, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[b"a cat sleeps"], [b"a kitten naps"]], dtype=object))
        emb = client.infer("minilm-l6", [tensor]).as_numpy("EMBEDDING")
    finally:
        client.close()
    assert emb.shape == (2, 384) and float(emb[0] @ emb[1]) > 0.5
