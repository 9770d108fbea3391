"""Run a real tritonserver on 127.0.0.1 from a model repository the operator renders.

Used by the Triton tests, the batching benchmark and anyone who needs a live
server: `prepare_env()` makes sure `make triton-env` has run and says where
things are; `build_repository()` does what a pod's init containers do (one
`smallfleet fetch` per model, then the rendered config.pbtxt files);
`start_triton()` runs the rendered command line with only the addresses,
ports and backend directory swapped for local ones, and fails with the
server's log when it does not come up.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import string
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final

import numpy as np
import tritonclient.http as httpclient
import yaml

from smallfleet.core.render import ServerPlan, model_repository, triton_args
from smallfleet.core.spec import (
    ModelPipelineSpec,
    SmallModelSpec,
    parse_model_pipeline,
    parse_small_model,
)

ROOT: Final = Path(__file__).resolve().parents[2]
MANIFESTS: Final = Path(__file__).resolve().parent / "manifests"
READY_TIMEOUT_SECONDS: Final = 240.0  # two shared CPUs, several python-stub processes to start
STOP_TIMEOUT_SECONDS: Final = 40.0
_PORT_FLAGS: Final = ("--http-port", "--grpc-port", "--metrics-port")

# Loads tests/triton/manifests/<name>.yaml with the local store and backend env filled in.
ManifestLoader = Callable[[str], list[dict[str, Any]]]


class TritonUnavailable(RuntimeError):
    """The server did not start or become ready; the message carries its log."""


@dataclass(frozen=True)
class TritonEnv:
    tritonserver: Path
    backend_directory: Path
    ld_library_path: tuple[str, ...]
    execution_env_path: Path
    artifacts: Path
    index: Mapping[str, Mapping[str, Any]]

    def digest(self, artifact: str) -> str:
        return str(self.index[artifact]["digest"])


def prepare_env() -> TritonEnv:
    """Run hack/triton_env.py (idempotent; a second run takes a moment) and read env.json."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "triton_env.py")],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise TritonUnavailable(
            "hack/triton_env.py failed (it downloads the nvidia-pytriton and model wheels "
            f"from PyPI):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )
    cache = Path(os.environ.get("SMALLFLEET_CACHE") or Path.home() / ".cache" / "smallfleet")
    env = json.loads((cache / "triton" / "env.json").read_text())
    artifacts = Path(env["artifacts"])
    return TritonEnv(
        tritonserver=Path(env["tritonserver"]),
        backend_directory=Path(env["backend_directory"]),
        ld_library_path=tuple(env["ld_library_path"]),
        execution_env_path=Path(env["execution_env_path"]),
        artifacts=artifacts,
        index=json.loads((artifacts / "index.json").read_text()),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """A plain HTTP server on 127.0.0.1 for the artifacts, as a model store would serve them."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(Quiet, directory=str(directory))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def load_manifests(name: str, **values: str) -> list[dict[str, Any]]:
    """The YAML documents of tests/triton/manifests/<name>.yaml with ${VARS} filled in."""
    text = string.Template((MANIFESTS / f"{name}.yaml").read_text()).substitute(values)
    return [d for d in yaml.safe_load_all(text) if d]


def parse_all(
    docs: list[dict[str, Any]],
) -> tuple[dict[str, SmallModelSpec], dict[str, ModelPipelineSpec]]:
    models = {m.name: m for m in (parse_small_model(d) for d in docs if d["kind"] == "SmallModel")}
    pipelines = {
        p.name: p for p in (parse_model_pipeline(d) for d in docs if d["kind"] == "ModelPipeline")
    }
    return models, pipelines


def run_fetch(*args: str, termination_log: Path) -> subprocess.CompletedProcess[str]:
    """`smallfleet fetch ARGS` in a fresh process, as the init container runs it."""
    command = [sys.executable, "-m", "smallfleet.cli", "fetch", *args]
    return subprocess.run(
        [*command, "--termination-log", str(termination_log)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def build_repository(plan: ServerPlan, root: Path) -> Path:
    """Lay out the model repository as the pod's init containers do: fetch, then configs."""
    root.mkdir(parents=True, exist_ok=True)
    for entry in plan.models:
        if entry.artifact is None:
            continue
        a = entry.artifact
        done = run_fetch(
            *("--uri", a.uri, "--digest", a.digest, "--format", a.format),
            *("--dest", str(root / entry.name)),
            termination_log=root.parent / f"{entry.name}.termination-log",
        )
        if done.returncode != 0:
            hint = (
                " (models/ changed since the manifests were written: "
                "run `python hack/triton_env.py --sync-manifests`)"
                if "digest mismatch" in done.stderr
                else ""
            )
            raise TritonUnavailable(
                f"smallfleet fetch of {entry.name} failed: {done.stderr.strip()}{hint}"
            )
    for rel, text in model_repository(plan).items():
        target = root / rel
        if rel.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    return root


def local_args(
    args: list[str],
    env: TritonEnv,
    ports: Mapping[str, int],
    metrics_address: str = "127.0.0.1",
) -> list[str]:
    """The rendered command line, bound to 127.0.0.1 with free ports and the local backends."""
    out = []
    for arg in args:
        flag = arg.split("=", 1)[0]
        out.append(f"{flag}={ports[flag]}" if flag in ports else arg)
    return [
        *out,
        f"--backend-directory={env.backend_directory}",
        "--http-address=127.0.0.1",
        "--grpc-address=127.0.0.1",
        f"--metrics-address={metrics_address}",
        # Several servers may run side by side here; python-backend shared-memory
        # regions are named from this prefix, so each server gets its own.
        f"--backend-config=python,shm-region-prefix-name=sf{ports['--http-port']}_",
    ]


@dataclass
class TritonServer:
    """A running tritonserver process and where to reach it."""

    process: subprocess.Popen[bytes]
    repository: Path
    log_path: Path
    http_port: int
    grpc_port: int
    metrics_port: int
    args: list[str] = field(default_factory=list)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        return self._call("GET", path, None, timeout)

    def post(self, path: str, body: Any = None, timeout: float = 30.0) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else b""
        return self._call("POST", path, data, timeout)

    def _call(
        self, method: str, path: str, data: bytes | None, timeout: float
    ) -> tuple[int, bytes]:
        request = urllib.request.Request(self.http_url + path, data=data, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as e:
            return int(e.code), bytes(e.read())

    def repository_index(self) -> list[dict[str, Any]]:
        status, body = self.post("/v2/repository/index", {})
        if status != 200:
            raise TritonUnavailable(f"repository index answered {status}: {body!r}")
        result: list[dict[str, Any]] = json.loads(body)
        return result

    def wait(self, predicate: str, timeout: float) -> None:
        """Wait for `ready` (/v2/health/ready) or `settled` (no model still loading)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise TritonUnavailable(
                    f"tritonserver exited with {self.process.returncode}:\n{self.log_text()[-8000:]}"
                )
            try:
                if predicate == "ready" and self.get("/v2/health/ready", 2.0)[0] == 200:
                    return
                if predicate == "settled" and self.get("/v2/health/live", 2.0)[0] == 200:
                    loading = [e for e in self.repository_index() if e.get("state") == "LOADING"]
                    if not loading and self._all_loaded_once():
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise TritonUnavailable(
            f"tritonserver was not {predicate} after {timeout:.0f} s:\n{self.log_text()[-8000:]}"
        )

    def _all_loaded_once(self) -> bool:
        names = [a.split("=", 1)[1] for a in self.args if a.startswith("--load-model=")]
        states = {e["name"]: e.get("state") for e in self.repository_index()}
        return all(states.get(n) in ("READY", "UNAVAILABLE") for n in names)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        # Python-stub processes are the server's children; make sure none outlives it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


class TextLoad:
    """Threads that send one-sentence requests to `model`, as many at once as `active` says.

    Runs until `close()`, or for `limit_s` seconds when given; a request's
    error ends its thread and is kept in `errors` for the test to report.
    """

    def __init__(
        self,
        server: TritonServer,
        model: str,
        clients: int,
        *,
        active: int | None = None,
        limit_s: float | None = None,
    ) -> None:
        self.model = model
        self.active = clients if active is None else active
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.sent = 0
        self._lock = threading.Lock()
        self._deadline = None if limit_s is None else time.monotonic() + limit_s
        self.threads = [
            threading.Thread(target=self._run, args=(server, i), daemon=True)
            for i in range(clients)
        ]
        for t in self.threads:
            t.start()

    def _run(self, server: TritonServer, index: int) -> None:
        client = httpclient.InferenceServerClient(server.http_url.removeprefix("http://"))
        tensor = httpclient.InferInput("TEXT", [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[b"scale me up"]], dtype=object))
        try:
            while not self.stop.is_set():
                if self._deadline is not None and time.monotonic() >= self._deadline:
                    return
                if index >= self.active:
                    time.sleep(0.05)
                    continue
                client.infer(self.model, [tensor])
                with self._lock:
                    self.sent += 1
        except BaseException as e:  # reported by the test
            self.errors.append(e)
        finally:
            client.close()

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


def server_environment(base: Mapping[str, str]) -> dict[str, str]:
    """The server's environment, without the test runner's virtualenv.

    In a pod, Triton's python stub sees only its base interpreter and
    EXECUTION_ENV_PATH; a virtualenv on PATH would leak the runner's packages
    (numpy 2 among them) into the stub and make results depend on how the
    tests were launched.
    """
    environ = dict(base)
    venv = environ.pop("VIRTUAL_ENV", None) or (
        sys.prefix if sys.prefix != sys.base_prefix else None
    )
    if venv:
        bin_dir = os.path.join(venv, "bin")
        environ["PATH"] = os.pathsep.join(
            p for p in environ.get("PATH", "").split(os.pathsep) if os.path.normpath(p) != bin_dir
        )
    return environ


def start_triton(
    env: TritonEnv,
    repository: Path,
    args: list[str],
    *,
    log_path: Path | None = None,
    wait_for: str = "ready",
    timeout: float = READY_TIMEOUT_SECONDS,
    metrics_port: int | None = None,
    metrics_address: str = "127.0.0.1",
) -> TritonServer:
    """Start tritonserver with rendered `args` (from `triton_args`) on free local ports.

    `wait_for="ready"` waits for /v2/health/ready and fails with the log if it
    never comes; `wait_for="settled"` only waits until every model has
    finished loading or failed (for servers expected to hold broken models).
    """
    ports = {flag: free_port() for flag in _PORT_FLAGS}
    if metrics_port is not None:
        ports["--metrics-port"] = metrics_port
    command = [str(env.tritonserver), *local_args(args, env, ports, metrics_address)]
    log_path = log_path or repository.parent / f"tritonserver-{ports['--http-port']}.log"
    environ = server_environment(os.environ)
    environ["LD_LIBRARY_PATH"] = os.pathsep.join(
        [*env.ld_library_path, *filter(None, [environ.get("LD_LIBRARY_PATH")])]
    )
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environ,
            start_new_session=True,
        )
    server = TritonServer(
        process=process,
        repository=repository,
        log_path=log_path,
        http_port=ports["--http-port"],
        grpc_port=ports["--grpc-port"],
        metrics_port=ports["--metrics-port"],
        args=command[1:],
    )
    try:
        server.wait(wait_for, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def serve_plan(env: TritonEnv, plan: ServerPlan, workdir: Path, **kwargs: Any) -> TritonServer:
    """Build the plan's repository under `workdir` and start the rendered server on it."""
    repository = build_repository(plan, workdir / "models")
    return start_triton(env, repository, triton_args(plan, str(repository)), **kwargs)
