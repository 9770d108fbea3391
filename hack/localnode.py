"""A node agent that plays the kubelet for one node of the local cluster, with real processes.

KWOK simulates every other node: their pods turn Running and Ready without any
process behind them. This agent registers one more node and really runs the
pods the scheduler binds to it, each container as a local process, so the
end-to-end tests can watch a real Triton Inference Server (the wheel's
`tritonserver`, see hack/triton_env.py) load models the operator asks for.

What it does, as a kubelet would:

* Registers the Node `triton-local` (no `kwok.x-k8s.io/node: fake`
  annotation: the local cluster's kwok-controller only manages annotated
  nodes, see hack/cluster.py) with region/zone labels, a taint that keeps
  every pod off it unless the pod tolerates it, and keeps it Ready with a
  status heartbeat and a Lease in `kube-node-lease`.
* Watches the pods bound to it. Each pod gets a loopback IP from
  127.3.0.0/16, a directory per volume (emptyDir, configMap, secret,
  projected, downwardAPI; anything else fails the pod), its init containers
  in order, then its containers at once, each in its own session, logging
  to `<workdir>/<namespace>_<pod>/<container>.log`.
* Rewrites container paths: every volume mount path (and the termination
  message path) in command, args and env values points at the pod's local
  directory (`localize`). `tritonserver` is the wheel's binary, bound to the
  pod IP; `smallfleet` is this interpreter's `smallfleet.cli`.
* Reports pod status honestly (phase, IPs, container states with exit codes
  and termination messages, conditions), readiness from readinessProbes
  polled every second, restarts with backoff, and on deletion stops the
  processes (SIGTERM, SIGKILL after min(grace, 5 s)) before removing the
  object.

It listens on nothing and dials only 127.0.0.0/8: the API server (refused
elsewhere) and the pods' own IPs for probes.

Usage: python -m hack.localnode --kubeconfig K [--node NAME] --workdir DIR
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import hashlib
import http.client
import ipaddress
import json
import os
import platform
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit

import yaml

# --------------------------------------------------------------------------- constants

NODE_NAME: Final = "triton-local"
REGION: Final = "eu-west-1"
ZONE: Final = "eu-west-1c"
REAL_TRITON_LABEL: Final = "serving.smallfleet.io/real-triton"
# Pods must tolerate this to land here: others' test pods must never start real processes.
TAINT: Final = {"key": REAL_TRITON_LABEL, "value": "true", "effect": "NoSchedule"}
TOLERATION: Final = {
    "key": REAL_TRITON_LABEL,
    "operator": "Equal",
    "value": "true",
    "effect": "NoSchedule",
}
NODE_SELECTOR: Final = {REAL_TRITON_LABEL: "true"}
HOST_IP: Final = "127.0.0.1"
POD_CIDR: Final = ipaddress.ip_network("127.3.0.0/16")
LOOPBACK: Final = ipaddress.ip_network("127.0.0.0/8")
CAPACITY: Final = {"cpu": "2", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"}
KUBELET_VERSION: Final = "v1.37.2-localnode"
CONTAINER_ID_SCHEME: Final = "localnode://"
# Every process the agent starts carries this variable (node@workdir), so a
# restarted agent can find and stop the processes a killed one left behind.
MARKER_ENV: Final = "SMALLFLEET_LOCALNODE"

LEASE_DURATION_S: Final = 40
HEARTBEAT_S: Final = 10.0
PROBE_PERIOD_S: Final = 1.0
TICK_S: Final = 0.2
KILL_GRACE_MAX_S: Final = 5.0
SHUTDOWN_GRACE_S: Final = 2.0
# Shorter than the kubelet's 10 s .. 5 min: tests wait for restarts.
BACKOFF_BASE_S: Final = 1.0
BACKOFF_MAX_S: Final = 30.0
BACKOFF_RESET_AFTER_S: Final = 60.0
WATCH_TIMEOUT_S: Final = 240
TERMINATION_MESSAGE_MAX: Final = 4096
FALLBACK_LOG_LINES: Final = 80
DEFAULT_TERMINATION_PATH: Final = "/dev/termination-log"

TRITON_CACHE: Final = (
    Path(os.environ.get("SMALLFLEET_CACHE") or Path.home() / ".cache" / "smallfleet") / "triton"
)


def log(message: str) -> None:
    stamp = dt.datetime.now(dt.UTC).strftime("%H:%M:%S.%f")[:-3]
    print(f"{stamp} [localnode] {message}", file=sys.stderr, flush=True)


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host) in LOOPBACK
    except ValueError:
        return False


# --------------------------------------------------------------------------- paths and variables


def localize(text: str, mounts: Mapping[str, Path]) -> str:
    """Point container paths at the local directories standing in for their volumes.

    One pass, longest mount first, so a local path is never rewritten again; a
    mount path only counts where a path could start (not inside another path
    or after `$(VAR)`) and where it ends (`/`, whitespace, a quote, `:` ...).
    """
    if not mounts:
        return text
    alternatives = "|".join(re.escape(m) for m in sorted(mounts, key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w/.)-])({alternatives})(?=/|\s|$|[\"':;)])")
    return pattern.sub(lambda m: str(mounts[m.group(1)]), text)


_VAR_REF: Final = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, variables: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: defined names are replaced, `$$` is a literal `$`."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return variables[name] if name in variables else m.group(0)

    return _VAR_REF.sub(sub, text)


def base_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """What every container starts from: this machine's environment, minus the agent's own.

    A container never sees the agent's kubeconfig or its virtualenv; with the
    venv's bin on PATH, `python3` in a pod would be the test runner's
    interpreter and Triton's python stub would see its packages (numpy 2).
    """
    env = {k: v for k, v in environ.items() if k not in ("KUBECONFIG", "VIRTUAL_ENV")}
    venv = environ.get("VIRTUAL_ENV") or (sys.prefix if sys.prefix != sys.base_prefix else None)
    if venv:
        bin_dir = os.path.normpath(os.path.join(venv, "bin"))
        env["PATH"] = os.pathsep.join(
            p for p in env.get("PATH", "").split(os.pathsep) if os.path.normpath(p) != bin_dir
        )
    return env


@dataclass(frozen=True)
class TritonInstall:
    """Where hack/triton_env.py put the wheel's server (from its env.json)."""

    tritonserver: Path
    backend_directory: Path
    ld_library_path: tuple[str, ...]

    @classmethod
    def load(cls, cache: Path = TRITON_CACHE) -> TritonInstall:
        path = cache / "env.json"
        try:
            env = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ContainerConfigError(
                f"tritonserver is not installed here ({path}: {exc}); run `make triton-env`"
            ) from exc
        return cls(
            tritonserver=Path(env["tritonserver"]),
            backend_directory=Path(env["backend_directory"]),
            ld_library_path=tuple(env["ld_library_path"]),
        )


# --------------------------------------------------------------------------- API client


class ApiError(Exception):
    """The API server answered with an error status."""

    def __init__(self, status: int, method: str, path: str, body: bytes) -> None:
        self.status = status
        try:
            detail = json.loads(body).get("message", "")
        except ValueError:
            detail = body[:300].decode(errors="replace")
        super().__init__(f"{method} {path}: {status} {detail}")


class Kube:
    """A small JSON client for the API server, from a kubeconfig, over loopback only.

    The agent needs a handful of verbs and one watch; http.client keeps the
    dependencies at PyYAML and makes the streaming of watch events explicit.
    """

    def __init__(self, kubeconfig: Path, tls_dir: Path) -> None:
        config = yaml.safe_load(kubeconfig.read_text())
        context_name = config.get("current-context")
        contexts = {c["name"]: c["context"] for c in config.get("contexts", [])}
        context = contexts.get(context_name) or next(iter(contexts.values()))
        cluster = {c["name"]: c["cluster"] for c in config["clusters"]}[context["cluster"]]
        user = {u["name"]: u.get("user") or {} for u in config.get("users", [])}.get(
            context.get("user", ""), {}
        )
        url = urlsplit(cluster["server"])
        if url.scheme != "https" or not url.hostname or not is_loopback(url.hostname):
            raise SystemExit(f"refusing API server {cluster['server']}: only https on 127.0.0.0/8")
        self.host = url.hostname
        self.port = url.port or 443
        base = kubeconfig.parent

        def material(key: str) -> str | None:
            """A file holding the kubeconfig's `key` (its `-data` form is written to tls_dir)."""
            section = cluster if key.startswith("certificate-authority") else user
            data = section.get(f"{key}-data")
            if data:
                tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                target = tls_dir / key
                target.write_bytes(base64.b64decode(data))
                target.chmod(0o600)
                return str(target)
            path = section.get(key)
            return str(base / path) if path else None

        self.context = ssl.create_default_context(cafile=material("certificate-authority"))
        if cluster.get("insecure-skip-tls-verify"):
            self.context.check_hostname = False
            self.context.verify_mode = ssl.CERT_NONE
        cert, key = material("client-certificate"), material("client-key")
        if cert and key:
            self.context.load_cert_chain(cert, key)
        self.headers = {"Accept": "application/json", "User-Agent": "smallfleet-localnode"}
        token = user.get("token")
        if not token and user.get("tokenFile"):
            token = (base / user["tokenFile"]).read_text().strip()
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def _connect(self, timeout: float) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            self.host, self.port, context=self.context, timeout=timeout
        )

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> Any:
        conn = self._connect(timeout)
        try:
            headers = dict(self.headers)
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = content_type
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            payload = response.read()
        finally:
            conn.close()
        if response.status >= 400:
            raise ApiError(response.status, method, path, payload)
        return json.loads(payload) if payload else None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def create(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def merge_patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body, content_type="application/merge-patch+json")

    def delete(self, path: str, body: Any = None) -> Any:
        return self.request("DELETE", path, body)

    def watch(self, path: str, params: Mapping[str, str]) -> Iterator[dict[str, Any]]:
        """Watch events until the server ends the watch (timeoutSeconds) or the stream breaks."""
        query = urlencode({**params, "watch": "true", "timeoutSeconds": str(WATCH_TIMEOUT_S)})
        conn = self._connect(WATCH_TIMEOUT_S + 30)
        try:
            conn.request("GET", f"{path}?{query}", headers=self.headers)
            response = conn.getresponse()
            if response.status >= 400:
                raise ApiError(response.status, "WATCH", path, response.read())
            while line := response.readline():
                if line.strip():
                    yield json.loads(line)
        finally:
            conn.close()


def pod_path(namespace: str, name: str, sub: str = "") -> str:
    path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(name, safe='')}"
    return f"{path}/{sub}" if sub else path


# --------------------------------------------------------------------------- processes


def signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def stop_processes(procs: Sequence[subprocess.Popen[bytes]], grace: float) -> None:
    """SIGTERM each process group, SIGKILL what is left after `grace` seconds, reap them."""
    for proc in procs:
        signal_group(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.0, deadline - time.monotonic()))
    for proc in procs:
        # Children (Triton's python stubs) share the group; none may outlive the container.
        signal_group(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)


def kill_leftovers(marker: str) -> list[int]:
    """SIGKILL the process groups of processes carrying `MARKER_ENV=marker` (from an earlier run)."""
    needle = f"{MARKER_ENV}={marker}".encode()
    killed = []
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit() or int(proc_dir.name) == os.getpid():
            continue
        try:
            environ = (proc_dir / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if needle in environ:
            pid = int(proc_dir.name)
            with contextlib.suppress(OSError):
                signal_group(os.getpgid(pid), signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed


def listening_ips() -> set[str]:
    """IPv4 addresses that some process on this machine listens on (from /proc/net/tcp)."""
    found = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            cols = line.split()
            if len(cols) > 3 and cols[3] == "0A":
                raw = bytes.fromhex(cols[1].split(":")[0])[::-1]
                found.add(str(ipaddress.IPv4Address(raw)))
    return found


class IpAllocator:
    """Pod IPs from 127.3.0.0/16: unique among live pods, not reused soon, not in use locally.

    Another cluster's agent may hand out the same range on this machine; an
    address something already listens on is skipped, and each workdir starts
    at its own offset.
    """

    def __init__(self, seed: str) -> None:
        base = int(POD_CIDR.network_address)
        # x.y.0 and x.y.255 read like network and broadcast addresses: skipped.
        self.hosts = [
            ipaddress.IPv4Address(base + i)
            for i in range(1, POD_CIDR.num_addresses - 1)
            if (base + i) & 0xFF not in (0, 255)
        ]
        self.next = int(hashlib.sha256(seed.encode()).hexdigest(), 16) % len(self.hosts)
        self.used: set[str] = set()
        self.lock = threading.Lock()

    def allocate(self, preferred: str | None = None) -> str:
        with self.lock:
            busy = listening_ips()
            if (
                preferred
                and preferred not in self.used
                and preferred not in busy
                and is_loopback(preferred)
                and ipaddress.ip_address(preferred) in POD_CIDR
            ):
                self.used.add(preferred)
                return preferred
            for _ in range(len(self.hosts)):
                ip = str(self.hosts[self.next])
                self.next = (self.next + 1) % len(self.hosts)
                if ip not in self.used and ip not in busy:
                    self.used.add(ip)
                    return ip
            raise RuntimeError(f"no free pod IP left in {POD_CIDR}")

    def release(self, ip: str) -> None:
        with self.lock:
            self.used.discard(ip)


# --------------------------------------------------------------------------- a pod


class ContainerConfigError(Exception):
    """The container cannot be started as specified (the kubelet's CreateContainerConfigError)."""


class VolumeError(Exception):
    """A volume's source is not there yet (retried, like the kubelet's FailedMount)."""


class UnsupportedVolume(Exception):
    """A volume kind the local node cannot provide: the pod fails with this message."""


@dataclass
class Container:
    """One container's run state: the process, its history and readiness."""

    spec: dict[str, Any]
    init: bool
    proc: subprocess.Popen[bytes] | None = None
    started_at: str | None = None
    started_mono: float = 0.0
    restart_count: int = 0
    launches: int = 0
    crashes: int = 0  # consecutive quick failures, for the backoff
    next_start: float = 0.0
    last_terminated: dict[str, Any] | None = None
    terminated: dict[str, Any] | None = None  # final: will not run again
    waiting: dict[str, Any] | None = field(default_factory=lambda: {"reason": "ContainerCreating"})
    ready: bool = False
    probe_successes: int = 0
    probe_failures: int = 0
    next_probe: float = 0.0
    container_id: str = ""

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def succeeded(self) -> bool:
        return self.terminated is not None and self.terminated.get("exitCode") == 0

    def status(self) -> dict[str, Any]:
        if self.proc is not None and self.started_at is not None:
            state: dict[str, Any] = {"running": {"startedAt": self.started_at}}
        elif self.terminated is not None:
            state = {"terminated": self.terminated}
        else:
            state = {"waiting": self.waiting or {"reason": "ContainerCreating"}}
        out: dict[str, Any] = {
            "name": self.name,
            "image": self.spec.get("image") or "localnode",
            "imageID": "",
            "ready": self.ready,
            "restartCount": self.restart_count,
            "started": "running" in state,
            "state": state,
            "lastState": {"terminated": self.last_terminated} if self.last_terminated else {},
        }
        if self.container_id:
            out["containerID"] = self.container_id
        return out


class PodWorker(threading.Thread):
    """Runs one pod from volumes to deletion; the only writer of that pod's status."""

    def __init__(self, agent: Agent, pod: dict[str, Any], ip: str) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.agent = agent
        self.kube = agent.kube
        self.pod = pod
        self.namespace: str = meta["namespace"]
        self.pod_name: str = meta["name"]
        self.uid: str = meta["uid"]
        self.ip = ip
        self.dir = agent.workdir / f"{self.namespace}_{self.pod_name}"
        spec = pod["spec"]
        self.inits = [Container(c, True) for c in spec.get("initContainers") or []]
        self.apps = [Container(c, False) for c in spec.get("containers") or []]
        self.restart_policy: str = spec.get("restartPolicy") or "Always"
        self.volumes: dict[str, Path] = {}
        self.start_time = now()
        self.initialized = not self.inits
        self.failed: tuple[str, str] | None = None  # (reason, message): phase Failed
        self.pending_message: str | None = None
        self.transitions: dict[str, tuple[str, str]] = {}
        self.last_status: dict[str, Any] | None = None
        self.stop_event = threading.Event()
        self.stop_grace = 0.0
        self.delete_after = False
        self.write_status_on_stop = True
        self.gone = False

    # ----------------------------------------------------------------- control

    def update(self, pod: dict[str, Any]) -> None:
        if pod["metadata"]["uid"] == self.uid:
            self.pod = pod

    def request_stop(self, grace: float, *, delete: bool, vanished: bool = False) -> None:
        if not self.stop_event.is_set():
            self.stop_grace = grace
        else:
            self.stop_grace = min(self.stop_grace, grace)
        self.delete_after = self.delete_after or delete
        self.gone = self.gone or vanished
        self.stop_event.set()

    def run(self) -> None:
        try:
            self._run()
        except Exception:  # a bug here must not take the agent down; say it in the log
            log(f"pod {self.namespace}/{self.pod_name}: {traceback.format_exc()}")
        finally:
            self._finish()

    # ----------------------------------------------------------------- the pod's life

    def _run(self) -> None:
        if self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)  # started fresh
        self.dir.mkdir(parents=True)
        (self.dir / "termination").mkdir()
        self._write_status()
        delay = BACKOFF_BASE_S
        while not self.stop_event.is_set():
            try:
                self.volumes = self._prepare_volumes()
                self.pending_message = None
                break
            except UnsupportedVolume as exc:
                self.failed = ("UnsupportedVolume", str(exc))
                self._write_status()
                log(f"pod {self.namespace}/{self.pod_name} failed: {exc}")
                self.stop_event.wait()
                return
            except (VolumeError, ApiError) as exc:
                self.pending_message = f"waiting for volumes: {exc}"
                self._write_status()
                self.stop_event.wait(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
        for container in self.inits:
            while not self.stop_event.is_set() and not container.succeeded():
                self._step(container)
                if self.failed:
                    self._write_status()
                    self.stop_event.wait()
                    return
                self._write_status()
                self.stop_event.wait(TICK_S)
        if self.stop_event.is_set():
            return
        self.initialized = True
        while not self.stop_event.is_set():
            for container in self.apps:
                self._step(container)
            self._write_status()
            self.stop_event.wait(TICK_S)

    def _step(self, c: Container) -> None:
        """Start a due container, notice an exit, probe a running one."""
        mono = time.monotonic()
        if c.proc is None and c.terminated is None and mono >= c.next_start:
            self._launch(c)
        if c.proc is not None and c.proc.poll() is not None:
            self._exited(c)
        if c.running():
            self._probe(c, mono)

    def _launch(self, c: Container) -> None:
        if c.launches > 0:
            c.restart_count += 1
        c.launches += 1
        term_file = self.dir / "termination" / c.name
        term_file.write_bytes(b"")
        try:
            argv, env, cwd = self._resolve(c, term_file)
        except (ContainerConfigError, ApiError) as exc:
            c.waiting = {"reason": "CreateContainerConfigError", "message": str(exc)}
            self._crashed(c, ran_for=0.0)
            return
        log_path = self.dir / f"{c.name}.log"
        try:
            with log_path.open("ab") as log_file:
                c.proc = subprocess.Popen(
                    argv,
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as exc:
            stamp = now()
            self._terminated(
                c,
                {
                    "exitCode": 128,
                    "reason": "StartError",
                    "message": f"{argv[0]}: {exc}",
                    "startedAt": stamp,
                    "finishedAt": stamp,
                },
                ran_for=0.0,
            )
            return
        c.started_at = now()
        c.started_mono = time.monotonic()
        c.container_id = f"{CONTAINER_ID_SCHEME}{c.proc.pid}"
        c.waiting = None
        c.ready = False
        c.probe_successes = c.probe_failures = 0
        c.next_probe = c.started_mono + float(
            (c.spec.get("readinessProbe") or {}).get("initialDelaySeconds", 0)
        )
        log(f"pod {self.namespace}/{self.pod_name}: {c.name} started (pid {c.proc.pid})")

    def _exited(self, c: Container) -> None:
        assert c.proc is not None
        code = c.proc.returncode
        signum = -code if code < 0 else None
        exit_code = 128 + signum if signum else code
        message = self._termination_message(c, exit_code)
        result: dict[str, Any] = {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else "Error",
            "startedAt": c.started_at,
            "finishedAt": now(),
            "containerID": c.container_id,
        }
        if signum:
            result["signal"] = signum
        if message:
            result["message"] = message
        ran_for = time.monotonic() - c.started_mono
        # Children left in the group (a shell's background job) go with their container.
        signal_group(c.proc.pid, signal.SIGKILL)
        c.proc = None
        c.started_at = None
        c.ready = False
        log(f"pod {self.namespace}/{self.pod_name}: {c.name} exited {exit_code}")
        self._terminated(c, result, ran_for)

    def _terminated(self, c: Container, result: dict[str, Any], ran_for: float) -> None:
        failed = result["exitCode"] != 0
        if c.init:
            restart = failed and self.restart_policy != "Never"
            if failed and not restart:
                self.failed = ("InitContainerFailed", f"init container {c.name} failed")
        else:
            restart = self.restart_policy == "Always" or (
                self.restart_policy == "OnFailure" and failed
            )
        if not restart:
            c.terminated = result
            c.waiting = None
            return
        c.last_terminated = result
        c.waiting = {"reason": "CrashLoopBackOff" if failed else "Completed"}
        self._crashed(c, ran_for)

    def _crashed(self, c: Container, ran_for: float) -> None:
        """Schedule the next start with exponential backoff (reset after a long run)."""
        c.crashes = 0 if ran_for >= BACKOFF_RESET_AFTER_S else c.crashes + 1
        delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(0, c.crashes - 1))
        c.next_start = time.monotonic() + delay
        if c.waiting is not None and c.waiting.get("reason") != "CreateContainerConfigError":
            c.waiting["message"] = (
                f"back-off {delay:.0f}s restarting failed container={c.name} "
                f"pod={self.pod_name}_{self.namespace}"
            )

    def _termination_message(self, c: Container, exit_code: int) -> str:
        text = ""
        with contextlib.suppress(OSError):
            text = (
                (self.dir / "termination" / c.name)
                .read_bytes()[:TERMINATION_MESSAGE_MAX]
                .decode(errors="replace")
            )
        if (
            not text
            and exit_code != 0
            and c.spec.get("terminationMessagePolicy") == ("FallbackToLogsOnError")
        ):
            with contextlib.suppress(OSError):
                lines = (self.dir / f"{c.name}.log").read_text(errors="replace").splitlines()
                text = "\n".join(lines[-FALLBACK_LOG_LINES:])[-2048:]
        return text

    # ----------------------------------------------------------------- readiness

    def _probe(self, c: Container, mono: float) -> None:
        probe = c.spec.get("readinessProbe")
        if not probe:
            c.ready = True
            return
        if mono < c.next_probe:
            return
        c.next_probe = mono + PROBE_PERIOD_S
        ok = self._probe_once(c, probe)
        if ok:
            c.probe_successes += 1
            c.probe_failures = 0
            if c.probe_successes >= int(probe.get("successThreshold", 1)):
                c.ready = True
        else:
            c.probe_failures += 1
            c.probe_successes = 0
            if c.probe_failures >= int(probe.get("failureThreshold", 3)) or not c.ready:
                c.ready = False

    def _port(self, c: Container, port: int | str) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for p in c.spec.get("ports") or []:
            if p.get("name") == port:
                return int(p["containerPort"])
        raise ContainerConfigError(f"container {c.name} has no port named {port!r}")

    def _probe_once(self, c: Container, probe: Mapping[str, Any]) -> bool:
        timeout = float(probe.get("timeoutSeconds", 1))
        try:
            if "httpGet" in probe:
                get = probe["httpGet"]
                host = get.get("host") or self.ip
                if not is_loopback(host):
                    return False  # never dial beyond 127.0.0.0/8
                port = self._port(c, get.get("port", 80))
                conn: http.client.HTTPConnection
                if str(get.get("scheme", "HTTP")).upper() == "HTTPS":
                    conn = http.client.HTTPSConnection(
                        host, port, timeout=timeout, context=ssl._create_unverified_context()
                    )
                else:
                    conn = http.client.HTTPConnection(host, port, timeout=timeout)
                try:
                    headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
                    conn.request("GET", get.get("path") or "/", headers=headers)
                    return 200 <= conn.getresponse().status < 400
                finally:
                    conn.close()
            if "tcpSocket" in probe:
                tcp = probe["tcpSocket"]
                host = tcp.get("host") or self.ip
                if not is_loopback(host):
                    return False
                with socket.create_connection((host, self._port(c, tcp["port"])), timeout):
                    return True
            if "exec" in probe:
                mounts = self._mounts(c, self.dir / "termination" / c.name)
                argv = [localize(a, mounts) for a in probe["exec"].get("command") or []]
                done = subprocess.run(
                    argv,
                    env=self._environment(c, mounts)[0],
                    cwd=self.dir,
                    capture_output=True,
                    timeout=timeout,
                    check=False,
                )
                return done.returncode == 0
        except (OSError, http.client.HTTPException, subprocess.TimeoutExpired):
            return False
        except ContainerConfigError:
            return False
        return False  # grpc probes: not supported here

    # ----------------------------------------------------------------- volumes

    def _prepare_volumes(self) -> dict[str, Path]:
        root = self.dir / "volumes"
        out: dict[str, Path] = {}
        for volume in self.pod["spec"].get("volumes") or []:
            target = root / volume["name"]
            target.mkdir(parents=True, exist_ok=True)
            out[volume["name"]] = target
            if "emptyDir" in volume:
                continue
            if "configMap" in volume:
                self._key_files(target, "configmaps", volume["configMap"], volume["name"])
            elif "secret" in volume:
                source = {**volume["secret"], "name": volume["secret"].get("secretName")}
                self._key_files(target, "secrets", source, volume["name"])
            elif "projected" in volume:
                for source in volume["projected"].get("sources") or []:
                    self._projected(target, source, volume["name"])
            elif "downwardAPI" in volume:
                self._downward(target, volume["downwardAPI"].get("items") or [])
            else:
                kind = next((k for k in volume if k != "name"), "unknown")
                raise UnsupportedVolume(
                    f"volume {volume['name']!r} is a {kind} volume; the local node provides "
                    "emptyDir, configMap, secret, projected and downwardAPI volumes only"
                )
        return out

    def _key_files(self, target: Path, plural: str, source: Mapping[str, Any], volume: str) -> None:
        name = source.get("name")
        optional = bool(source.get("optional"))
        try:
            obj = self.kube.get(
                f"/api/v1/namespaces/{quote(self.namespace, safe='')}/{plural}/"
                f"{quote(str(name), safe='')}"
            )
        except ApiError as exc:
            if exc.status == 404 and optional:
                return
            if exc.status == 404:
                raise VolumeError(f"volume {volume!r}: {plural[:-1]} {name!r} not found") from exc
            raise
        files: dict[str, bytes] = {}
        if plural == "secrets":
            files = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        else:
            files = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
            files.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        items = source.get("items")
        if items:
            for item in items:
                if item["key"] not in files:
                    if optional:
                        continue
                    raise VolumeError(
                        f"volume {volume!r}: {plural[:-1]} {name!r} has no key {item['key']!r}"
                    )
                self._write(target, item["path"], files[item["key"]])
        else:
            for key, data in files.items():
                self._write(target, key, data)

    def _projected(self, target: Path, source: Mapping[str, Any], volume: str) -> None:
        if "configMap" in source:
            self._key_files(target, "configmaps", source["configMap"], volume)
        elif "secret" in source:
            self._key_files(target, "secrets", source["secret"], volume)
        elif "downwardAPI" in source:
            self._downward(target, source["downwardAPI"].get("items") or [])
        elif "serviceAccountToken" in source:
            sat = source["serviceAccountToken"]
            account = self.pod["spec"].get("serviceAccountName") or "default"
            spec: dict[str, Any] = {
                "expirationSeconds": int(sat.get("expirationSeconds", 3607)),
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": self.pod_name,
                    "uid": self.uid,
                },
            }
            if sat.get("audience"):
                spec["audiences"] = [sat["audience"]]
            review = self.kube.create(
                f"/api/v1/namespaces/{quote(self.namespace, safe='')}/serviceaccounts/"
                f"{quote(account, safe='')}/token",
                {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
            )
            self._write(target, sat["path"], review["status"]["token"].encode())
        else:
            raise UnsupportedVolume(
                f"volume {volume!r}: projected source {sorted(source)} is not supported here"
            )

    def _downward(self, target: Path, items: Sequence[Mapping[str, Any]]) -> None:
        for item in items:
            if "fieldRef" not in item:
                raise UnsupportedVolume(f"downwardAPI item {item.get('path')}: only fieldRef")
            value = self._field(item["fieldRef"]["fieldPath"])
            self._write(target, item["path"], value.encode())

    @staticmethod
    def _write(root: Path, rel: str, data: bytes) -> None:
        path = (root / rel).resolve()
        if not path.is_relative_to(root.resolve()):
            raise UnsupportedVolume(f"volume path {rel!r} leaves its volume")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    # ----------------------------------------------------------------- command and environment

    def _field(self, path: str) -> str:
        meta = self.pod["metadata"]
        simple = {
            "metadata.name": self.pod_name,
            "metadata.namespace": self.namespace,
            "metadata.uid": self.uid,
            "spec.nodeName": self.agent.node,
            "spec.serviceAccountName": self.pod["spec"].get("serviceAccountName") or "default",
            "status.podIP": self.ip,
            "status.podIPs": self.ip,
            "status.hostIP": HOST_IP,
            "status.hostIPs": HOST_IP,
        }
        if path in simple:
            return simple[path]
        m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if m:
            return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
        if path in ("metadata.labels", "metadata.annotations"):
            items = (meta.get(path.split(".")[1]) or {}).items()
            return "\n".join(f'{k}="{v}"' for k, v in sorted(items))
        raise ContainerConfigError(f"fieldRef {path!r} is not supported on the local node")

    def _ref(self, plural: str, ref: Mapping[str, Any]) -> str | None:
        try:
            obj = self.kube.get(
                f"/api/v1/namespaces/{quote(self.namespace, safe='')}/{plural}/"
                f"{quote(str(ref['name']), safe='')}"
            )
        except ApiError as exc:
            if exc.status == 404 and ref.get("optional"):
                return None
            raise ContainerConfigError(f"{plural[:-1]} {ref['name']!r}: {exc}") from exc
        data = obj.get("data") or {}
        if ref["key"] not in data:
            if ref.get("optional"):
                return None
            raise ContainerConfigError(f"{plural[:-1]} {ref['name']!r} has no key {ref['key']!r}")
        value = data[ref["key"]]
        return base64.b64decode(value).decode() if plural == "secrets" else str(value)

    def _mounts(self, c: Container, term_file: Path) -> dict[str, Path]:
        mounts: dict[str, Path] = {}
        for m in c.spec.get("volumeMounts") or []:
            if m["name"] not in self.volumes:
                raise ContainerConfigError(f"container {c.name} mounts unknown volume {m['name']}")
            local = self.volumes[m["name"]]
            if m.get("subPath"):
                local = local / m["subPath"]
                local.mkdir(parents=True, exist_ok=True)
            mounts[m["mountPath"].rstrip("/") or "/"] = local
        mounts[c.spec.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH] = term_file
        return mounts

    def _environment(
        self, c: Container, mounts: Mapping[str, Path]
    ) -> tuple[dict[str, str], dict[str, str]]:
        """The process environment and the pod's declared variables (for `$(VAR)`)."""
        declared: dict[str, str] = {}
        for source in c.spec.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for key, plural in (("configMapRef", "configmaps"), ("secretRef", "secrets")):
                if key not in source:
                    continue
                ref = source[key]
                try:
                    obj = self.kube.get(
                        f"/api/v1/namespaces/{quote(self.namespace, safe='')}/{plural}/"
                        f"{quote(ref['name'], safe='')}"
                    )
                except ApiError as exc:
                    if exc.status == 404 and ref.get("optional"):
                        continue
                    raise ContainerConfigError(f"{key} {ref['name']!r}: {exc}") from exc
                for k, v in (obj.get("data") or {}).items():
                    text = base64.b64decode(v).decode() if plural == "secrets" else v
                    declared[prefix + k] = localize(text, mounts)
        for var in c.spec.get("env") or []:
            name = var["name"]
            if "valueFrom" not in var:
                declared[name] = expand(localize(var.get("value", ""), mounts), declared)
                continue
            source = var["valueFrom"]
            value: str | None
            if "fieldRef" in source:
                value = self._field(source["fieldRef"]["fieldPath"])
            elif "configMapKeyRef" in source:
                value = self._ref("configmaps", source["configMapKeyRef"])
            elif "secretKeyRef" in source:
                value = self._ref("secrets", source["secretKeyRef"])
            elif "resourceFieldRef" in source:
                resource = source["resourceFieldRef"]["resource"]
                kind, _, res = resource.partition(".")
                value = str(
                    ((c.spec.get("resources") or {}).get(kind) or {}).get(res)
                    or CAPACITY.get(res, "0")
                )
            else:
                raise ContainerConfigError(f"env {name}: unsupported valueFrom {sorted(source)}")
            if value is not None:
                declared[name] = localize(value, mounts)
        env = base_environment(os.environ)
        env["HOSTNAME"] = self.pod_name
        env.update(declared)
        env[MARKER_ENV] = self.agent.marker
        return env, declared

    def _resolve(self, c: Container, term_file: Path) -> tuple[list[str], dict[str, str], Path]:
        """argv, environment and working directory of a container on this machine."""
        mounts = self._mounts(c, term_file)
        env, variables = self._environment(c, mounts)
        command = list(c.spec.get("command") or [])
        if not command:
            raise ContainerConfigError(
                f"container {c.name} has no command: the local node runs no images, so the "
                "entrypoint must be given as `command`"
            )
        argv = [expand(localize(a, mounts), variables) for a in [*command, *c.spec.get("args", [])]]
        if argv[0] == "tritonserver":
            triton = TritonInstall.load()
            env["LD_LIBRARY_PATH"] = os.pathsep.join(
                [*triton.ld_library_path, *filter(None, [env.get("LD_LIBRARY_PATH")])]
            )
            prefix = f"ln{ipaddress.ip_address(self.ip).packed.hex()}r{c.restart_count}_"
            argv = [
                str(triton.tritonserver),
                *argv[1:],
                f"--http-address={self.ip}",
                f"--grpc-address={self.ip}",
                f"--metrics-address={self.ip}",
                f"--backend-directory={triton.backend_directory}",
                # python-backend shared-memory regions are named from this; one per server.
                f"--backend-config=python,shm-region-prefix-name={prefix}",
            ]
        elif argv[0] == "smallfleet":
            argv = [sys.executable, "-m", "smallfleet.cli", *argv[1:]]
            # `smallfleet fetch` writes its verdict there; in a pod that is the mounted file.
            env.setdefault("SMALLFLEET_TERMINATION_LOG", str(term_file))
        workdir = c.spec.get("workingDir")
        cwd = Path(localize(workdir, mounts)) if workdir else self.dir
        if not cwd.is_dir():
            raise ContainerConfigError(f"workingDir {workdir!r} is not a mounted directory here")
        return argv, env, cwd

    # ----------------------------------------------------------------- status

    def _condition(self, type_: str, ok: bool, reason: str | None = None) -> dict[str, Any]:
        status = "True" if ok else "False"
        previous = self.transitions.get(type_)
        if previous is None or previous[0] != status:
            self.transitions[type_] = (status, now())
        out = {"type": type_, "status": status, "lastTransitionTime": self.transitions[type_][1]}
        if reason and not ok:
            out["reason"] = reason
        return out

    def _phase(self) -> str:
        if self.failed:
            return "Failed"
        if not self.initialized:
            return "Pending"
        if all(c.terminated is not None for c in self.apps):
            return "Succeeded" if all(c.succeeded() for c in self.apps) else "Failed"
        if any(c.launches > 0 for c in self.apps):
            return "Running"
        return "Pending"

    def status(self) -> dict[str, Any]:
        phase = self._phase()
        ready = phase == "Running" and all(c.ready for c in self.apps)
        scheduled = next(
            (
                c
                for c in self.pod.get("status", {}).get("conditions") or []
                if c.get("type") == "PodScheduled"
            ),
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": self.start_time},
        )
        ours = {"PodScheduled", "Initialized", "ContainersReady", "Ready"}
        others = [
            c for c in self.pod.get("status", {}).get("conditions") or [] if c["type"] not in ours
        ]
        conditions = [
            *others,
            scheduled,
            self._condition(
                "Initialized",
                self.initialized or (phase == "Succeeded"),
                "ContainersNotInitialized",
            ),
            self._condition("ContainersReady", ready, "ContainersNotReady"),
            self._condition("Ready", ready, "ContainersNotReady"),
        ]
        out: dict[str, Any] = {
            "phase": phase,
            "podIP": self.ip,
            "podIPs": [{"ip": self.ip}],
            "hostIP": HOST_IP,
            "hostIPs": [{"ip": HOST_IP}],
            "startTime": self.start_time,
            "conditions": conditions,
            "containerStatuses": [c.status() for c in self.apps],
            "reason": None,
            "message": None,
        }
        if self.inits:
            out["initContainerStatuses"] = [c.status() for c in self.inits]
        if self.failed:
            out["reason"], out["message"] = self.failed
        elif self.pending_message:
            out["message"] = self.pending_message
        return out

    def _write_status(self) -> None:
        status = self.status()
        if status == self.last_status:
            return
        try:
            self.kube.merge_patch(
                pod_path(self.namespace, self.pod_name, "status"),
                {"metadata": {"uid": self.uid}, "status": status},
            )
            self.last_status = status
        except ApiError as exc:
            # 404: gone; a uid that no longer matches (422, immutable): a new pod of that name.
            if exc.status == 404 or (exc.status == 422 and "metadata.uid" in str(exc)):
                self.request_stop(0.0, delete=False, vanished=True)
            else:
                log(f"pod {self.namespace}/{self.pod_name}: status not written: {exc}")
        except OSError as exc:
            log(f"pod {self.namespace}/{self.pod_name}: status not written: {exc}")

    # ----------------------------------------------------------------- the end

    def _finish(self) -> None:
        procs = [c.proc for c in [*self.inits, *self.apps] if c.proc is not None]
        grace = min(self.stop_grace, KILL_GRACE_MAX_S)
        stop_processes(procs, grace)
        if procs:
            log(f"pod {self.namespace}/{self.pod_name}: stopped {len(procs)} process(es)")
        if self.delete_after and not self.gone:
            try:
                self.kube.delete(
                    pod_path(self.namespace, self.pod_name),
                    {
                        "apiVersion": "v1",
                        "kind": "DeleteOptions",
                        "gracePeriodSeconds": 0,
                        "preconditions": {"uid": self.uid},
                    },
                )
                log(f"pod {self.namespace}/{self.pod_name}: deleted")
            except (ApiError, OSError) as exc:
                if not isinstance(exc, ApiError) or exc.status not in (404, 409):
                    log(f"pod {self.namespace}/{self.pod_name}: delete failed: {exc}")
        if self.delete_after or self.gone:
            # Logs stay for whoever debugs; the volumes (model repositories) go.
            shutil.rmtree(self.dir / "volumes", ignore_errors=True)
        self.agent.worker_done(self)


# --------------------------------------------------------------------------- the agent


class Agent:
    """The node: registration, heartbeats, the pod watch and one worker per pod."""

    def __init__(self, kube: Kube, node: str, workdir: Path) -> None:
        self.kube = kube
        self.node = node
        self.workdir = workdir
        self.marker = f"{node}@{workdir.resolve()}"
        self.ips = IpAllocator(self.marker)
        self.workers: dict[str, PodWorker] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.ready_since = now()

    # ----------------------------------------------------------------- node

    def node_object(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node,
                "labels": {
                    "kubernetes.io/hostname": self.node,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": _arch(),
                    "topology.kubernetes.io/region": REGION,
                    "topology.kubernetes.io/zone": ZONE,
                    REAL_TRITON_LABEL: "true",
                },
                "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
            },
            "spec": {"taints": [dict(TAINT)]},
        }

    def node_status(self, ready: bool = True, message: str = "") -> dict[str, Any]:
        stamp = now()
        pressure = [
            {
                "type": t,
                "status": "False",
                "reason": f"KubeletHas{r}",
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": self.ready_since,
            }
            for t, r in (
                ("MemoryPressure", "SufficientMemory"),
                ("DiskPressure", "NoDiskPressure"),
                ("PIDPressure", "SufficientPID"),
            )
        ]
        return {
            "capacity": dict(CAPACITY),
            "allocatable": dict(CAPACITY),
            "addresses": [
                {"type": "InternalIP", "address": HOST_IP},
                {"type": "Hostname", "address": self.node},
            ],
            "conditions": [
                *pressure,
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "reason": "KubeletReady" if ready else "NodeAgentStopped",
                    "message": message or "local node agent is posting ready status",
                    "lastHeartbeatTime": stamp,
                    "lastTransitionTime": self.ready_since,
                },
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "architecture": _arch(),
                "operatingSystem": "linux",
                "kernelVersion": platform.release(),
                "osImage": "smallfleet local node (processes, no container runtime)",
                "containerRuntimeVersion": "localnode://1",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": KUBELET_VERSION,
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        }

    def register(self) -> None:
        path = f"/api/v1/nodes/{quote(self.node, safe='')}"
        wanted = self.node_object()
        try:
            current = self.kube.get(path)
        except ApiError as exc:
            if exc.status != 404:
                raise
            current = self.kube.create("/api/v1/nodes", wanted)
            log(f"registered node {self.node}")
        else:
            taints = [t for t in current["spec"].get("taints") or [] if t["key"] != TAINT["key"]]
            self.kube.merge_patch(
                path,
                {
                    "metadata": {
                        "labels": wanted["metadata"]["labels"],
                        # KWOK must never take this node (it would fake its pods).
                        "annotations": {"kwok.x-k8s.io/node": None},
                        "resourceVersion": current["metadata"]["resourceVersion"],
                    },
                    "spec": {"taints": [*taints, dict(TAINT)], "unschedulable": None},
                },
            )
            log(f"took over existing node {self.node}")
        self.node_uid = current["metadata"]["uid"]
        self.kube.merge_patch(f"{path}/status", {"status": self.node_status()})
        self.renew_lease()

    def renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node}"
        spec = {
            "holderIdentity": self.node,
            "leaseDurationSeconds": LEASE_DURATION_S,
            "renewTime": now_micro(),
        }
        try:
            self.kube.merge_patch(path, {"spec": spec})
        except ApiError as exc:
            if exc.status != 404:
                raise
            self.kube.create(
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {
                        "name": self.node,
                        "namespace": "kube-node-lease",
                        "ownerReferences": [
                            {
                                "apiVersion": "v1",
                                "kind": "Node",
                                "name": self.node,
                                "uid": self.node_uid,
                            }
                        ],
                    },
                    "spec": spec,
                },
            )

    def heartbeat(self) -> None:
        while not self.stopping.wait(HEARTBEAT_S):
            try:
                self.renew_lease()
                self.kube.merge_patch(
                    f"/api/v1/nodes/{quote(self.node, safe='')}/status",
                    {"status": {"conditions": self.node_status()["conditions"]}},
                )
            except (ApiError, OSError) as exc:
                log(f"heartbeat failed: {exc}")

    # ----------------------------------------------------------------- pods

    def watch_pods(self) -> None:
        selector = {"fieldSelector": f"spec.nodeName={self.node}"}
        while not self.stopping.is_set():
            try:
                listed = self.kube.get(f"/api/v1/pods?{urlencode(selector)}")
                version = listed["metadata"]["resourceVersion"]
                self.sync(listed["items"])
                while not self.stopping.is_set():
                    params = {**selector, "resourceVersion": version, "allowWatchBookmarks": "true"}
                    for event in self.kube.watch("/api/v1/pods", params):
                        obj = event["object"]
                        if event["type"] == "ERROR":
                            raise ApiError(int(obj.get("code", 500)), "WATCH", "pods", b"")
                        version = obj["metadata"]["resourceVersion"]
                        if event["type"] == "DELETED":
                            self.vanished(obj["metadata"]["uid"])
                        elif event["type"] in ("ADDED", "MODIFIED"):
                            self.handle(obj)
            except (ApiError, OSError, ValueError, http.client.HTTPException) as exc:
                if not self.stopping.is_set():
                    log(f"pod watch: {exc}; listing again")
                    self.stopping.wait(1.0)

    def sync(self, pods: Sequence[dict[str, Any]]) -> None:
        present = {p["metadata"]["uid"] for p in pods}
        with self.lock:
            stale = [w for uid, w in self.workers.items() if uid not in present]
        for worker in stale:
            worker.request_stop(0.0, delete=False, vanished=True)
        for pod in pods:
            self.handle(pod)

    def handle(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        if pod["spec"].get("nodeName") != self.node or self.stopping.is_set():
            return
        with self.lock:
            worker = self.workers.get(uid)
            if worker is not None:
                worker.update(pod)
            elif not meta.get("deletionTimestamp") and pod.get("status", {}).get("phase") not in (
                "Succeeded",
                "Failed",
            ):
                preferred = pod.get("status", {}).get("podIP")
                worker = PodWorker(self, pod, self.ips.allocate(preferred))
                self.workers[uid] = worker
                log(f"pod {meta['namespace']}/{meta['name']}: starting on {worker.ip}")
                worker.start()
        if meta.get("deletionTimestamp"):
            grace = float(meta.get("deletionGracePeriodSeconds") or 0)
            if worker is not None:
                worker.request_stop(grace, delete=True)
            else:
                # Nothing of it runs here (finished, or from before this agent): just remove it.
                with contextlib.suppress(ApiError, OSError):
                    self.kube.delete(
                        pod_path(meta["namespace"], meta["name"]),
                        {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}},
                    )

    def vanished(self, uid: str) -> None:
        with self.lock:
            worker = self.workers.get(uid)
        if worker is not None:
            worker.request_stop(0.0, delete=False, vanished=True)

    def worker_done(self, worker: PodWorker) -> None:
        with self.lock:
            if self.workers.get(worker.uid) is worker:
                del self.workers[worker.uid]
        self.ips.release(worker.ip)

    # ----------------------------------------------------------------- run

    def run(self) -> int:
        self.workdir.mkdir(parents=True, exist_ok=True)
        left = kill_leftovers(self.marker)
        if left:
            log(f"stopped {len(left)} process(es) left by an earlier run")
        deadline = time.monotonic() + 60
        while True:
            try:
                self.register()
                break
            except (ApiError, OSError) as exc:
                if time.monotonic() > deadline or self.stopping.is_set():
                    log(f"cannot register node {self.node}: {exc}")
                    return 1
                time.sleep(1)
        log(f"node {self.node} is Ready ({REGION}/{ZONE}); pods get IPs from {POD_CIDR}")
        threading.Thread(target=self.heartbeat, name="heartbeat", daemon=True).start()
        threading.Thread(target=self.watch_pods, name="pod-watch", daemon=True).start()
        self.stopping.wait()
        self.shutdown()
        return 0

    def shutdown(self) -> None:
        log("stopping: ending every pod's processes")
        with self.lock:
            workers = list(self.workers.values())
        for worker in workers:
            worker.request_stop(SHUTDOWN_GRACE_S, delete=False)
        for worker in workers:
            worker.join(SHUTDOWN_GRACE_S + 10)
        with contextlib.suppress(ApiError, OSError):
            self.kube.merge_patch(
                f"/api/v1/nodes/{quote(self.node, safe='')}/status",
                {"status": {"conditions": self.node_status(False, "agent stopped")["conditions"]}},
            )
        log("stopped")


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hack.localnode", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--node", default=NODE_NAME)
    parser.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args(argv)
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    # Key material from the kubeconfig exists on disk only while the TLS context loads it.
    tls = Path(tempfile.mkdtemp(prefix=".tls-", dir=workdir))
    try:
        kube = Kube(args.kubeconfig, tls)
    finally:
        shutil.rmtree(tls, ignore_errors=True)
    agent = Agent(kube, args.node, workdir)

    def stop(signum: int, _frame: Any) -> None:
        agent.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return agent.run()


if __name__ == "__main__":
    sys.exit(main())
