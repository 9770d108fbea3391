"""The operator image, built and run: what the chart deploys is what these tests start.

`make image` (hack/image.sh) builds it with podman from a base made of Debian
packages; the `image` fixture runs the same script, which returns at once when
the image already carries the tree's source key, and fails (never skips) with
the script's own words when podman is missing or the build breaks. Each
container runs as the chart's Deployment runs the operator: the image's user
(65532), a read-only root filesystem with a tmpfs on /tmp, no capabilities, no
privilege escalation. Containers share the host's network (podman's bridge is
never used) and dial or listen on loopback only.

- The image is the chart's default image reference, and holds smallfleet at
  the chart's appVersion with the runtime dependencies only: exactly the
  closure of pyproject's `dependencies`, no test or lint tool, no pip.
- A Triton pod's init containers, as `smallfleet render` gives them, run in
  the image as a kubelet would run them: `smallfleet fetch` downloads a
  packaged model from a server on 127.0.0.1, verifies its digest and unpacks
  it (a wrong digest fails with the reason in the termination-message file),
  and the shell step copies config.pbtxt from the ConfigMap.
- `smallfleet run` in the image, with a kubeconfig holding a token of the
  chart's ServiceAccount and the chart's environment, makes a SmallModel Ready
  and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import importlib.metadata
import json
import os
import secrets
import shutil
import subprocess
import sys
import tarfile
import threading
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import pytest
import yaml
from hack.cluster import REPO, assert_listening_on_loopback, deployment_env, free_ports
from hack.triton_env import cache_dir as triton_cache_dir
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from tests.e2e.cluster import ChartRelease, Cluster, wait_ready

from smallfleet.settings import DEFAULT_OPERATOR_IMAGE

IMAGE_SCRIPT: Final = REPO / "hack" / "image.sh"
BUILD_TIMEOUT_S: Final = 900.0
# podman's default limits exceed what this kind of machine allows (shared/containers-here.md).
LIMITS: Final = ("--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096")
# The chart's container securityContext and its /tmp emptyDir, as podman flags.
AS_THE_CHART_RUNS_IT: Final = (
    "--read-only",
    "--read-only-tmpfs=false",
    "--tmpfs=/tmp:rw,size=64m",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
)
CHART_UID: Final = 65532
KUBECONFIG_IN_CONTAINER: Final = "/var/run/smallfleet/kubeconfig"
ARTIFACT: Final = "hashed-ngrams"  # the smallest model `make triton-env` packages
START_TIMEOUT_S: Final = 90.0  # imports alone take seconds on two shared cores


def podman(
    *args: str, timeout: float = 120.0, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"podman {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


@pytest.fixture(scope="module")
def image() -> str:
    """The operator image of this tree (built unless it is up to date)."""
    if shutil.which("podman") is None:
        pytest.fail(
            "podman is not installed, so the operator image can be neither built nor run: "
            "`make image` installs podman, runc and debootstrap (as root) and builds it",
            pytrace=False,
        )
    proc = subprocess.run(
        [str(IMAGE_SCRIPT), "build"],
        cwd=REPO,
        env={**os.environ, "SMALLFLEET_IMAGE_INSTALL": "0"},
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"hack/image.sh build failed (exit {proc.returncode}):\n{proc.stderr[-6000:]}",
            pytrace=False,
        )
    return proc.stdout.strip().splitlines()[-1]


def run_in(
    image: str,
    *args: str,
    network: str = "none",
    flags: Sequence[str] = (),
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """`podman run --rm` as the chart runs the operator, with no network or the host's
    (`network`); podman's own `flags` go before the image, `args` to the entrypoint."""
    return podman(
        "run", "--rm", f"--network={network}", *LIMITS, *AS_THE_CHART_RUNS_IT, *flags, image, *args,
        timeout=timeout, check=False,
    )  # fmt: skip


# --------------------------------------------------------------------------- the image itself


def runtime_closure() -> set[str]:
    """Distributions that pyproject's `dependencies` pull in, resolved in the tested .venv."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted: list[tuple[str, frozenset[str]]] = [(project["name"], frozenset())]
    found: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    while wanted:
        name, extras = wanted.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        found.add(canonicalize_name(name))
        for text in importlib.metadata.requires(name) or []:
            req = Requirement(text)
            envs = [{"extra": e} for e in extras] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                wanted.append((req.name, frozenset(req.extras)))
    return found


def test_image_is_the_charts_default_and_holds_only_runtime_dependencies(
    image: str, cluster: Cluster, chart_installed: ChartRelease
) -> None:
    deployment = cluster.kubectl_json(
        "get", "deployment", chart_installed.deployment, "-n", chart_installed.namespace
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = deployment_env(cluster, chart_installed)
    chart = yaml.safe_load((REPO / "charts" / "smallfleet" / "Chart.yaml").read_text())
    # The chart, the operator's own default (the fetch init container's image) and the
    # build agree: a cluster that has the built image runs what the chart names.
    assert container["image"] == image == env["SMALLFLEET_OPERATOR_IMAGE"]
    assert image == DEFAULT_OPERATOR_IMAGE
    assert image.endswith(f":{chart['appVersion']}")
    assert podman("image", "exists", f"localhost/smallfleet:{chart['appVersion']}").returncode == 0
    config = json.loads(podman("image", "inspect", image).stdout)[0]["Config"]
    assert config["User"] == f"{CHART_UID}:{CHART_UID}"
    assert config["Entrypoint"] == ["smallfleet"]

    listed = run_in(
        image,
        "-c",
        "import importlib.metadata as m, json, sys; print(json.dumps({"
        "'version': m.version('smallfleet'), 'python': list(sys.version_info[:2]), "
        "'dists': sorted({d.metadata['Name'] for d in m.distributions()})}))",
        flags=["--entrypoint=python3"],
    )
    assert listed.returncode == 0, listed.stderr
    inside = json.loads(listed.stdout)
    assert inside["version"] == chart["appVersion"]
    assert inside["python"] == [3, 11]
    dists = {canonicalize_name(d) for d in inside["dists"]}
    dev = {
        canonicalize_name(Requirement(r).name)
        for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
            "optional-dependencies"
        ]["dev"]
    }
    assert dists & dev == set(), f"test or lint tools in the image: {sorted(dists & dev)}"
    assert "pip" not in dists and "setuptools" not in dists
    assert dists == runtime_closure(), (
        f"in the image only: {sorted(dists - runtime_closure())}; "
        f"missing: {sorted(runtime_closure() - dists)}"
    )


# --------------------------------------------------------------------------- smallfleet fetch


class _Recording(http.server.SimpleHTTPRequestHandler):
    """Serves a directory and records each request's path in `served`."""

    served: list[str]

    def do_GET(self) -> None:
        self.served.append(self.path)
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def artifact_server() -> Iterator[tuple[str, Path, dict[str, object], list[str]]]:
    """The packaged artifacts of `make triton-env`, served on 127.0.0.1.

    Yields the URL, the directory, the artifact's index entry and the paths served.
    """
    artifacts = triton_cache_dir() / "artifacts"
    index_path = artifacts / "index.json"
    if not index_path.is_file():
        pytest.fail(f"{index_path} is missing: run `make triton-env`", pytrace=False)
    index = json.loads(index_path.read_text())
    served: list[str] = []
    recording = type("Handler", (_Recording,), {"served": served})
    handler = functools.partial(recording, directory=str(artifacts))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", artifacts, index[ARTIFACT], served
    finally:
        server.shutdown()
        server.server_close()


def rendered_pod(image: str, url: str, digest: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The pod spec and ConfigMap data `smallfleet render` gives examples/cpu-classifier.yaml
    with its artifact at `url`: the init containers a Triton pod starts with."""
    model = yaml.safe_load((REPO / "examples" / "cpu-classifier.yaml").read_text())
    model["spec"]["model"].update(uri=url, digest=digest)
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "smallfleet"), "render", "-", "--operator-image", image],
        input=yaml.safe_dump(model),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    config_map = next(d for d in docs if d["kind"] == "ConfigMap")
    return deployment["spec"]["template"]["spec"], config_map["data"]


def run_init_container(
    image: str, container: dict[str, Any], mounts: dict[str, Path], termination_log: Path
) -> subprocess.CompletedProcess[str]:
    """Run a rendered init container as a kubelet would: its command, environment, user
    and securityContext, its volume mounts (emptyDirs and the ConfigMap as host
    directories, /tmp as a tmpfs) and the termination-message file bind-mounted."""
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and security["capabilities"]["drop"] == ["ALL"]
    assert security["allowPrivilegeEscalation"] is False
    flags = [
        f"--entrypoint={json.dumps(container['command'])}",
        f"--user={security['runAsUser']}:{security['runAsGroup']}",
        f"--volume={termination_log}:/dev/termination-log",
        *(f"--env={e['name']}={e['value']}" for e in container.get("env", [])),
    ]
    for mount in container["volumeMounts"]:
        if mount["mountPath"] == "/tmp":
            continue  # AS_THE_CHART_RUNS_IT mounts a tmpfs there
        ro = ":ro" if mount.get("readOnly") else ""
        flags.append(f"--volume={mounts[mount['name']]}:{mount['mountPath']}{ro}")
    # The artifact server listens on the host's 127.0.0.1.
    return run_in(image, *container.get("args", []), network="host", flags=flags)


def test_the_images_init_containers_fetch_verify_and_unpack_a_model(
    image: str,
    artifact_server: tuple[str, Path, dict[str, object], list[str]],
    tmp_path: Path,
) -> None:
    """A Triton pod's init containers, as the operator renders them, run in the image:
    `smallfleet fetch` (digest checked against the artifact's bytes) and the shell step
    that copies config.pbtxt from the ConfigMap."""
    url, artifacts, entry, served = artifact_server
    path = artifacts / str(entry["file"])
    digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == entry["digest"]
    mounts = {"models": tmp_path / "models", "config": tmp_path / "config"}
    for directory in mounts.values():
        directory.mkdir()
        directory.chmod(0o777)  # an emptyDir is writable by the pod's fsGroup
    termination_log = tmp_path / "termination-log"
    termination_log.touch()
    termination_log.chmod(0o666)  # the kubelet's file, written by the container's user

    wrong = "sha256:" + "0" * 64
    pod, config = rendered_pod(image, f"{url}/{path.name}", wrong)
    fetch, copy_config = pod["initContainers"]
    assert fetch["image"] == copy_config["image"] == image
    refused = run_init_container(image, fetch, mounts, termination_log)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    why = termination_log.read_text()
    assert wrong in why and digest in why, why
    assert not list(mounts["models"].iterdir()), "a refused artifact left files behind"

    pod, config = rendered_pod(image, f"{url}/{path.name}", digest)
    fetch, copy_config = pod["initContainers"]
    for name, text in config.items():
        (mounts["config"] / name).write_text(text)
    for container in (fetch, copy_config):
        proc = run_init_container(image, container, mounts, termination_log)
        assert proc.returncode == 0, f"{container['name']}: {proc.stdout}{proc.stderr}"

    model_dir = mounts["models"] / "cpu-classifier"
    uid = fetch["securityContext"]["runAsUser"]
    with tarfile.open(path) as tar:
        expected = {
            m.name.removeprefix("./"): tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }
    assert sorted(expected) == sorted(entry["members"])  # type: ignore[call-overload]
    expected["config.pbtxt"] = config["cpu-classifier.config.pbtxt"].encode()
    for name, data in expected.items():
        written = model_dir / name
        assert written.read_bytes() == data, name
        assert written.stat().st_uid == uid, f"{name} is not the pod user's"
    # Fetching again with the same digest is a no-op: a restarted pod does not download.
    asked = len(served)
    again = run_init_container(image, fetch, mounts, termination_log)
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(served) == asked, f"downloaded again: {served}"


# --------------------------------------------------------------------------- smallfleet run


@pytest.fixture
def container_name() -> Iterator[str]:
    name = f"smallfleet-image-test-{secrets.token_hex(4)}"
    yield name
    podman("rm", "--force", "--time=0", name, check=False)


def test_operator_in_the_image_makes_a_model_ready_as_the_charts_service_account(
    image: str,
    cluster: Cluster,
    chart_installed: ChartRelease,
    namespace: str,
    container_name: str,
    tmp_path: Path,
) -> None:
    kubeconfig = cluster.token_kubeconfig(
        chart_installed.service_account, chart_installed.namespace, tmp_path / "kubeconfig"
    )
    assert "system:serviceaccount:" in kubeconfig.read_text()
    kubeconfig.chmod(0o644)  # the image's user reads it, as it reads a projected token
    metrics_port, health_port = free_ports(2)
    env = deployment_env(cluster, chart_installed)  # the chart's, with the pod IP as 127.0.0.1
    env.update(
        SMALLFLEET_METRICS_PORT=str(metrics_port),
        SMALLFLEET_HEALTH_PORT=str(health_port),
        SMALLFLEET_NAMESPACE=namespace,
        KUBECONFIG=KUBECONFIG_IN_CONTAINER,
    )
    assert env["SMALLFLEET_BIND_ADDRESS"] == "127.0.0.1"
    podman(
        "run", "--detach", f"--name={container_name}", "--network=host", *LIMITS,
        *AS_THE_CHART_RUNS_IT, f"--volume={kubeconfig}:{KUBECONFIG_IN_CONTAINER}:ro",
        *(f"--env={k}={v}" for k, v in sorted(env.items())),
        image, "run", "--namespace", namespace,
        "--metrics-port", str(metrics_port), "--health-port", str(health_port),
    )  # fmt: skip

    def log() -> str:
        proc = podman("logs", container_name, check=False)
        return proc.stdout + proc.stderr

    def healthy() -> bool:
        state = json.loads(podman("inspect", container_name).stdout)[0]["State"]
        if not state["Running"]:
            raise AssertionError(f"the operator exited ({state['ExitCode']}):\n{log()}")
        try:
            url = f"http://127.0.0.1:{health_port}/healthz"
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    try:
        cluster.wait_for(healthy, START_TIMEOUT_S, lambda: f"never healthy:\n{log()}", interval=1)
        user = podman("exec", container_name, "id", "-u").stdout.strip()
        assert user == str(CHART_UID)
        pid = json.loads(podman("inspect", container_name).stdout)[0]["State"]["Pid"]
        ports = {lst.port for lst in assert_listening_on_loopback([pid], "the operator container")}
        assert {metrics_port, health_port} <= ports, ports
        model = yaml.safe_load((REPO / "examples" / "cpu-classifier.yaml").read_text())
        model["metadata"]["namespace"] = namespace
        cluster.apply_yaml(json.dumps(model) + "\n")
        wait_ready(cluster, "smallmodel", model["metadata"]["name"], namespace, timeout=120)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
            assert b"smallfleet_reconcile_total" in r.read()
    except BaseException:
        print(f"\n===== operator container log =====\n{log()}")
        raise
    podman("stop", "--time=30", container_name, timeout=60)
    state = json.loads(podman("inspect", container_name).stdout)[0]["State"]
    assert state["ExitCode"] == 0, f"exit {state['ExitCode']} on SIGTERM:\n{log()}"
    assert "forbidden" not in log().lower(), log()
