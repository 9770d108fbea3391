"""A real GitOps engine on loopback: a Git server and Flux's controllers as local processes.

smallfleet promises that its resources behave under GitOps: an engine that applies
them from Git and waits for health must see Ready only when the models serve, a
clear failure when they cannot, and no tug of war between the engine and the
operator. Proving that needs a real engine, so these helpers run Flux's
source-controller and kustomize-controller (built from their Go modules) against
the test cluster, fed by `git http-backend` behind Python's CGI server. Every
address involved is on 127.0.0.1, and `assert_loopback_only` checks the
controllers' live sockets (what they are connected to and what they listen on)
to make sure of it.

The Argo CD health script is evaluated here too (`argocd_health`), in the Lua 5.1
that Argo CD's gopher-lua implements, so tests can hold its verdict against Flux's
for the same live object.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlparse

from hack.cluster import assert_listening_on_loopback
from tests.argocd_lua import health

LOOPBACK: Final = "127.0.0.1"
FLUX_NAMESPACE: Final = "flux-system"
REPO_ROOT: Final = Path(__file__).resolve().parents[2]
GIT_HTTP_BACKEND: Final = "/usr/lib/git-core/git-http-backend"
_PROXY_VARS: Final = (
    "http_proxy",
    "https_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "all_proxy",
)


class GitOpsError(AssertionError):
    """A GitOps component failed; the message carries its log tail."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def loopback_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for child processes: no proxies, loopback never proxied."""
    env = {k: v for k, v in os.environ.items() if k not in _PROXY_VARS}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    if extra:
        env.update(extra)
    return env


def assert_loopback_url(url: str) -> None:
    host = urlparse(url).hostname or ""
    if not ipaddress.ip_address(host).is_loopback:
        raise GitOpsError(f"{url} is not on loopback")


def wait_until(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise GitOpsError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    def open_() -> bool:
        if proc.poll() is not None:
            raise GitOpsError(f"process exited with {proc.returncode}:\n{_tail(log)}")
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex((LOOPBACK, port)) == 0

    wait_until(f"port {port}", open_, timeout)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# --- Git over smart HTTP on loopback -------------------------------------------------

_CGI_SCRIPT: Final = """#!/bin/sh
# Python's CGI server runs scripts as nobody: every repository must count as safe.
export GIT_PROJECT_ROOT={root}
export GIT_HTTP_EXPORT_ALL=1
export HOME=/nonexistent XDG_CONFIG_HOME=/nonexistent
export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=safe.directory GIT_CONFIG_VALUE_0='*'
exec {backend}
"""


@dataclass
class GitServer:
    """Bare repositories served by `git http-backend`; pushes go through HTTP like a forge's."""

    base: Path
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def repos(self) -> Path:
        return self.base / "repos"

    def url(self, name: str) -> str:
        return f"http://{LOOPBACK}:{self.port}/cgi-bin/git/{name}.git"

    def _git(self, *args: str, cwd: Path | None = None) -> str:
        cmd = ["git", "-c", "user.name=smallfleet-e2e", "-c", "user.email=e2e@smallfleet.invalid"]
        cmd += ["-c", "init.defaultBranch=main", "-c", "protocol.version=2", *args]
        out = subprocess.run(
            cmd, cwd=cwd, env=loopback_env(), capture_output=True, text=True, timeout=60
        )
        if out.returncode != 0:
            raise GitOpsError(
                f"git {' '.join(args)} failed:\n{out.stderr}\nserver log:\n{_tail(self.log)}"
            )
        return out.stdout.strip()

    def create_repo(self, name: str) -> str:
        bare = self.repos / f"{name}.git"
        self._git("init", "--quiet", "--bare", "--shared=0777", str(bare))
        self._git("config", "http.receivepack", "true", cwd=bare)
        for p in [bare, *bare.rglob("*")]:
            p.chmod(0o777 if p.is_dir() else 0o666)
        work = self.base / "work" / name
        shutil.rmtree(work, ignore_errors=True)
        work.parent.mkdir(parents=True, exist_ok=True)
        self._git("clone", "--quiet", self.url(name), str(work))
        self._git("checkout", "--quiet", "-B", "main", cwd=work)
        return self.url(name)

    def push(self, name: str, files: Mapping[str, str] | Path, message: str) -> str:
        """Make the repository's tree exactly `files` (path -> text, or a directory), commit, push.

        Returns the commit's SHA, which Flux reports as `main@sha1:<sha>`.
        """
        work = self.base / "work" / name
        for child in work.iterdir():
            if child.name != ".git":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        if isinstance(files, Path):
            shutil.copytree(files, work, dirs_exist_ok=True)
        else:
            for rel, text in files.items():
                dest = work / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_text(text)
        self._git("add", "--all", cwd=work)
        self._git("commit", "--quiet", "--allow-empty", "-m", message, cwd=work)
        self._git("push", "--quiet", "origin", "main", cwd=work)
        return self._git("rev-parse", "HEAD", cwd=work)

    def log_tail(self) -> str:
        return _tail(self.log)

    def stop(self) -> None:
        _stop(self.proc)


@contextlib.contextmanager
def git_server() -> Iterator[GitServer]:
    # Not pytest's tmp_path: that is private to root, and the CGI child runs as nobody.
    base = Path(tempfile.mkdtemp(prefix="smallfleet-git-"))
    base.chmod(0o755)
    www = base / "www"
    (www / "cgi-bin").mkdir(parents=True)
    (base / "repos").mkdir()
    (base / "repos").chmod(0o777)
    for d in (www, www / "cgi-bin"):
        d.chmod(0o755)
    script = www / "cgi-bin" / "git"
    script.write_text(_CGI_SCRIPT.format(root=base / "repos", backend=GIT_HTTP_BACKEND))
    script.chmod(0o755)
    port = free_port()
    log = base / "http.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "http.server", "--cgi", "--bind", LOOPBACK, str(port)],
            cwd=www,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=loopback_env(),
        )
    server = GitServer(base=base, port=port, proc=proc, log=log)
    try:
        _wait_port(port, proc, log, timeout=15)
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


# --- kubectl ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Kubectl:
    """kubectl against the test cluster; failures raise with kubectl's own words."""

    binary: Path
    kubeconfig: Path

    def __call__(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [str(self.binary), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=loopback_env(),
        )
        if check and out.returncode != 0:
            raise GitOpsError(f"kubectl {' '.join(args)} failed: {out.stderr.strip()}")
        return out

    def apply(self, manifest: Mapping[str, Any] | str, *extra: str) -> None:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        self("apply", "--server-side", "--force-conflicts", "-f", "-", *extra, stdin=text)

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        args = ["get", kind, name, "-o", "json"]
        if namespace:
            args += ["-n", namespace]
        out = self(*args, check=False)
        if out.returncode != 0:
            if "NotFound" in out.stderr or "not found" in out.stderr:
                return None
            raise GitOpsError(f"kubectl get {kind} {name} failed: {out.stderr.strip()}")
        result: dict[str, Any] = json.loads(out.stdout)
        return result

    def list(self, kind: str, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
        args = ["get", kind, "-n", namespace, "-o", "json"]
        if selector:
            args += ["-l", selector]
        items: list[dict[str, Any]] = json.loads(self(*args).stdout)["items"]
        return items

    def server(self) -> str:
        return self(
            "config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"
        ).stdout


# --- Flux ------------------------------------------------------------------------------


@dataclass
class FluxProcess:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    health_port: int

    def log_tail(self, lines: int = 60) -> str:
        # Routine polling lines would hide what matters.
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        kept = [ln for ln in text.splitlines() if "no changes since last reconciliation" not in ln]
        return "\n".join(kept[-lines:])


@dataclass
class Flux:
    """source-controller and kustomize-controller running as local processes."""

    kubectl: Kubectl
    workdir: Path
    processes: list[FluxProcess] = field(default_factory=list)

    def logs(self, lines: int = 40) -> str:
        return "\n".join(
            f"--- {p.name} (exit {p.proc.poll()}) ---\n{p.log_tail(lines)}" for p in self.processes
        )

    def check_alive(self) -> None:
        for p in self.processes:
            if p.proc.poll() is not None:
                raise GitOpsError(f"{p.name} exited with {p.proc.returncode}:\n{p.log_tail()}")

    def pids(self) -> list[int]:
        return [p.proc.pid for p in self.processes]

    def stop(self) -> None:
        for p in self.processes:
            _stop(p.proc)


def _start_controller(
    name: str, binary: Path, args: list[str], kubeconfig: Path, workdir: Path
) -> FluxProcess:
    if not binary.is_file():
        raise GitOpsError(f"{binary} is missing: run `hack/build-bins.sh flux`")
    health = free_port()
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(binary),
                f"--metrics-addr={LOOPBACK}:{free_port()}",
                f"--health-addr={LOOPBACK}:{health}",
                "--enable-leader-election=false",
                "--log-level=info",
                *args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=loopback_env({"RUNTIME_NAMESPACE": FLUX_NAMESPACE, "KUBECONFIG": str(kubeconfig)}),
        )
    fp = FluxProcess(name=name, proc=proc, log=log, health_port=health)

    def ready() -> bool:
        if proc.poll() is not None:
            raise GitOpsError(f"{name} exited with {proc.returncode}:\n{fp.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{health}/readyz", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    wait_until(f"{name} /readyz", ready, timeout=60)
    return fp


def install_flux_crds(kubectl: Kubectl, bindir: Path) -> None:
    crds = bindir / "crds" / "flux"
    if not crds.is_dir() or not any(crds.glob("*.yaml")):
        raise GitOpsError(f"Flux CRDs missing in {crds}: run `hack/build-bins.sh flux`")
    apply_crds(kubectl, crds)


def apply_crds(kubectl: Kubectl, crds: Path) -> None:
    """Apply a directory of CRDs server-side and wait until each is Established."""
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crds), timeout=120)

    def established() -> bool:
        # `kubectl wait` fails outright on a CRD whose conditions are not written yet.
        out = kubectl("get", "-f", str(crds), "-o", "json", check=False)
        if out.returncode != 0:
            return False
        items = json.loads(out.stdout).get("items", [])
        done = [
            c
            for crd in items
            for c in (crd.get("status") or {}).get("conditions") or []
            if c.get("type") == "Established" and c.get("status") == "True"
        ]
        return len(done) == len(list(crds.glob("*.yaml")))

    wait_until(f"CRDs in {crds} Established", established, 60, 0.5)


@contextlib.contextmanager
def flux_controllers(kubectl: Kubectl, bindir: Path) -> Iterator[Flux]:
    """Flux's CRDs applied server-side, then both controllers started; logs shown on failure."""
    assert_loopback_url(kubectl.server())
    install_flux_crds(kubectl, bindir)
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": FLUX_NAMESPACE}})
    workdir = Path(tempfile.mkdtemp(prefix="smallfleet-flux-"))
    flux = Flux(kubectl=kubectl, workdir=workdir)
    try:
        storage = free_port()
        (workdir / "storage").mkdir()
        flux.processes.append(
            _start_controller(
                "source-controller",
                bindir / "source-controller",
                [
                    f"--storage-path={workdir / 'storage'}",
                    f"--storage-addr={LOOPBACK}:{storage}",
                    f"--storage-adv-addr={LOOPBACK}:{storage}",
                ],
                kubectl.kubeconfig,
                workdir,
            )
        )
        flux.processes.append(
            _start_controller(
                "kustomize-controller",
                bindir / "kustomize-controller",
                ["--no-remote-bases=true"],
                kubectl.kubeconfig,
                workdir,
            )
        )
        yield flux
    except BaseException:
        print(flux.logs(200), file=sys.stderr)
        raise
    finally:
        flux.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def git_repository(name: str, url: str, interval: str = "5s") -> dict[str, Any]:
    return {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": name, "namespace": FLUX_NAMESPACE},
        "spec": {"url": url, "interval": interval, "ref": {"branch": "main"}, "timeout": "20s"},
    }


def kustomization(
    name: str,
    source: str,
    target_namespace: str,
    *,
    interval: str = "10s",
    timeout: str = "90s",
    path: str = "./",
) -> dict[str, Any]:
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": FLUX_NAMESPACE},
        "spec": {
            "interval": interval,
            "retryInterval": "5s",
            "timeout": timeout,
            "path": path,
            "prune": True,
            "wait": True,
            "targetNamespace": target_namespace,
            "sourceRef": {"kind": "GitRepository", "name": source},
        },
    }


def request_reconcile(kubectl: Kubectl, kind: str, name: str) -> None:
    """What `flux reconcile` and a notification-controller Receiver do: ask for a run now."""
    stamp = datetime.now(UTC).isoformat()
    kubectl(
        "annotate", "--overwrite", "-n", FLUX_NAMESPACE, kind, name,
        f"reconcile.fluxcd.io/requestedAt={stamp}",
    )  # fmt: skip


def condition(obj: Mapping[str, Any] | None, type_: str) -> Mapping[str, Any] | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


def kustomization_state(kubectl: Kubectl, name: str) -> dict[str, Any]:
    """Ready condition and revisions of a Kustomization (empty values when not reported yet)."""
    obj = kubectl.get("kustomizations.kustomize.toolkit.fluxcd.io", name, FLUX_NAMESPACE) or {}
    ready = condition(obj, "Ready") or {}
    healthy = condition(obj, "Healthy") or {}
    status = obj.get("status") or {}
    return {
        "ready": ready.get("status", ""),
        "reason": ready.get("reason", ""),
        "message": ready.get("message", ""),
        "healthy": healthy.get("status", ""),
        "healthy_message": healthy.get("message", ""),
        "applied": status.get("lastAppliedRevision", ""),
        "attempted": status.get("lastAttemptedRevision", ""),
        "observed_generation": status.get("observedGeneration"),
        "generation": (obj.get("metadata") or {}).get("generation"),
    }


def wait_kustomization(
    kubectl: Kubectl,
    flux: Flux,
    name: str,
    *,
    revision: str,
    ready: str,
    timeout: float,
    message_contains: str = "",
) -> dict[str, Any]:
    """Wait for the Kustomization to have tried `revision` (a commit SHA) and report `ready`."""

    def check() -> dict[str, Any] | None:
        flux.check_alive()
        state = kustomization_state(kubectl, name)
        if (
            state["attempted"].endswith(revision)
            and state["ready"] == ready
            and message_contains in state["message"]
            and state["observed_generation"] == state["generation"]
        ):
            return state
        return None

    try:
        result: dict[str, Any] = wait_until(f"Kustomization {name} Ready={ready}", check, timeout)
    except GitOpsError as exc:
        state = kustomization_state(kubectl, name)
        raise GitOpsError(f"{exc}\nstate: {state}\n{flux.logs()}") from None
    return result


# --- live sockets ----------------------------------------------------------------------


def _hex_addr(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(text)
    if len(raw) == 4:
        return ipaddress.IPv4Address(raw[::-1])
    # /proc prints IPv6 as four host-order 32-bit words.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return ipaddress.IPv6Address(words)


def remote_addresses(pid: int) -> set[str]:
    """Remote addresses of the process' TCP sockets (listening sockets excluded)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found: set[str] = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                cols = line.split()
                if cols[9] not in inodes or cols[3] == "0A":  # 0A: LISTEN
                    continue
                addr = _hex_addr(cols[2].split(":")[0])
                if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
                    addr = addr.ipv4_mapped
                found.add(str(addr))
    return found


def assert_loopback_only(pids: list[int]) -> set[str]:
    """The processes connect to and listen on loopback only; returns the peers seen."""
    peers: set[str] = set()
    for pid in pids:
        addrs = remote_addresses(pid)
        bad = {a for a in addrs if not ipaddress.ip_address(a).is_loopback}
        if bad:
            raise GitOpsError(f"process {pid} is connected to non-loopback addresses {bad}")
        peers |= addrs
    assert_listening_on_loopback(pids, "GitOps processes")
    return peers


# --- Argo CD health --------------------------------------------------------------------


def argocd_health(obj: Mapping[str, Any]) -> tuple[str, str]:
    """The Argo CD health status and message the chart's script gives `obj`."""
    return health(obj)
