"""Faults for the end-to-end fault tests: a proxy in front of the API server, control-plane
processes restarted or paused, and HTTP endpoints that misbehave.

`ApiProxy` sits between the operator and kube-apiserver on 127.0.0.1 and
sees every request the operator sends, so a test can act at an exact point of
a reconcile without a hook in the operator: it counts the operator's writes
and, at the N-th one, calls back (the test SIGKILLs the operator) either
before the write reaches the API server or after the API server answered and
before the operator hears it. It also answers watches with an `ERROR` event
of code 410 (the "too old resource version" a compacted etcd gives) and
answers chosen writes with a 409 Conflict. The operator speaks plain HTTP to
the proxy on loopback with its own bearer token, and the proxy speaks TLS to
the API server, verifying it with the cluster's CA: the API server still
authenticates and authorises every request as the operator's ServiceAccount.

`Component` restarts or pauses (SIGSTOP/SIGCONT) one process of a kwokctl
cluster, as a kubelet restarting a static pod or a stalled disk would.

`Endpoint` is an HTTP server on a loopback address whose answer a test sets
at any time: healthy, slow, garbage, a huge body, an error.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

import aiohttp
import yaml
from aiohttp import web
from hack.cluster import KWOK_HOME, Cluster, ClusterError, free_port

WRITES: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
HOP_BY_HOP: Final = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade"}
)
EXPIRED: Final = {
    "type": "ERROR",
    "object": {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "too old resource version: 1 (2)",
        "reason": "Expired",
        "code": 410,
    },
}


def conflict(path: str) -> dict[str, Any]:
    """The Status body the API server sends with a 409 for a write on a changed object."""
    name = path.rstrip("/").split("/")[-1]
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": (
            f'Operation cannot be fulfilled on "{name}": the object has been modified; '
            "please apply your changes to the latest version and try again"
        ),
        "reason": "Conflict",
        "details": {"name": name},
        "code": 409,
    }


@dataclass(frozen=True)
class Write:
    """One write the operator sent: method, path (no query) and when the proxy saw it."""

    method: str
    path: str
    at: float


@dataclass
class Trap:
    """At the `n`-th write matching `match`, call `spring` before or after forwarding it.

    `before=True`: `spring` runs before the write is forwarded, and with `cut`
    the write never reaches the API server. `before=False`: the API server
    applies it, and the answer never reaches the operator. With `cut` (always,
    after) the operator's connection is then cut; `before=True, cut=False`
    forwards the write once `spring` returned (a change made "just before").
    """

    match: Callable[[str, str], bool]
    n: int
    before: bool
    spring: Callable[[], None] = lambda: None
    cut: bool = True
    # Instead of cutting at once, keep the operator waiting for an answer (the request
    # held before or after the API server saw it) until its connection closes, as when
    # the test SIGKILLs it; several held traps stop several reconciles at chosen steps.
    hold: bool = False
    seen: int = 0
    sprung: threading.Event = field(default_factory=threading.Event)
    sprung_on: Write | None = None


class ApiProxy:
    """A recording, fault-injecting HTTP proxy for the operator's API requests."""

    def __init__(self, cluster: Cluster) -> None:
        server, ca = cluster.server_and_ca()
        self.upstream = server.rstrip("/")
        self._ssl = ssl.create_default_context(cadata=base64.b64decode(ca).decode())
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.writes: list[Write] = []
        self.answers: list[tuple[Write, int]] = []  # each forwarded write and its status
        self.watches: list[str] = []  # the path of each watch request, in order
        self.traps: list[Trap] = []
        # Watches: answer the next `expire_watches` watch requests on a path with 410.
        self.expired_answers: dict[str, int] = {}
        self.expired_sent: list[str] = []
        # Writes answered 409 without reaching the API server: predicate and budget.
        self.conflicts: list[tuple[Callable[[str, str], bool], list[int]]] = []
        self.conflicts_sent: list[Write] = []
        self._watches: set[tuple[str, asyncio.BaseTransport]] = set()
        self._lock = threading.Lock()
        self._closing = False
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="api-proxy")
        self._thread.start()
        if not self._started.wait(15) or self._failed is not None:
            raise ClusterError(f"the API proxy could not start: {self._failed}")

    # -- set-up --------------------------------------------------------------

    def kubeconfig(self, token_kubeconfig: Path, path: Path) -> Path:
        """A copy of a token kubeconfig that reaches the API server through this proxy."""
        config = yaml.safe_load(token_kubeconfig.read_text())
        for entry in config["clusters"]:
            entry["cluster"] = {"server": self.url}
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except BaseException as exc:  # reported by __init__
            self._failed = exc
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(
            auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None, connect=10)
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def close(self) -> None:
        self._closing = True

        async def stop() -> None:
            await self._session.close()  # ends the streams still open upstream
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._runner.cleanup(), 5)
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(15)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(15)

    # -- faults --------------------------------------------------------------

    def arm(self, trap: Trap) -> Trap:
        with self._lock:
            self.traps = [t for t in self.traps if not t.sprung.is_set()] + [trap]
        return trap

    def expire_watches(self, path: str, answers: int = 1) -> int:
        """Cut every open watch on `path` and answer the next `answers` ones with a 410.

        Returns how many open watches were cut.
        """
        with self._lock:
            self.expired_answers[path] = answers

        async def cut() -> int:
            open_ = [t for p, t in self._watches if p == path]
            for transport in open_:
                transport.close()
            return len(open_)

        return asyncio.run_coroutine_threadsafe(cut(), self._loop).result(10)

    def conflict_on(self, match: Callable[[str, str], bool], times: int) -> None:
        """Answer the next `times` writes matching `match` with 409 Conflict."""
        with self._lock:
            self.conflicts.append((match, [times]))

    # -- the proxy -------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method, path = request.method, request.path
        body = await request.read()
        watch = request.query.get("watch") in ("1", "true")
        trap: Trap | None = None
        if method in WRITES:
            write = Write(method, path, time.monotonic())
            with self._lock:
                self.writes.append(write)
                for t in self.traps:
                    if trap is None and not t.sprung.is_set() and t.match(method, path):
                        t.seen += 1
                        if t.seen == t.n:
                            trap, t.sprung_on = t, write
                for match, budget in self.conflicts:
                    if budget[0] > 0 and match(method, path):
                        budget[0] -= 1
                        self.conflicts_sent.append(write)
                        return web.json_response(conflict(path), status=409)
            if trap is not None and trap.before:
                trap.spring()
                trap.sprung.set()
                if trap.hold:
                    await self._held(request)
                if trap.cut:
                    return self._cut(request)
                trap = None
        if watch:
            with self._lock:
                self.watches.append(path)
                left = self.expired_answers.get(path, 0)
                if left > 0:
                    self.expired_answers[path] = left - 1
                    self.expired_sent.append(path)
            if left > 0:
                response = web.StreamResponse(
                    status=200, headers={"Content-Type": "application/json"}
                )
                await response.prepare(request)
                await response.write(json.dumps(EXPIRED).encode() + b"\n")
                await response.write_eof()
                return response
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            upstream = await self._session.request(
                method,
                self.upstream + request.path_qs,
                headers=headers,
                data=body if body else None,
                ssl=self._ssl,
                allow_redirects=False,
            )
        except (aiohttp.ClientError, OSError) as exc:
            return web.Response(status=502, text=f"api proxy: {type(exc).__name__}: {exc}")
        async with upstream:
            if method in WRITES:
                with self._lock:
                    self.answers.append((Write(method, path, time.monotonic()), upstream.status))
            if trap is not None:  # after: the API server has applied the write
                await upstream.read()
                trap.spring()
                trap.sprung.set()
                if trap.hold:
                    await self._held(request)
                return self._cut(request)
            response = web.StreamResponse(
                status=upstream.status,
                headers={k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP},
            )
            await response.prepare(request)
            entry = (path, request.transport) if watch and request.transport else None
            if entry is not None:
                self._watches.add(entry)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except (aiohttp.ClientError, ConnectionError, OSError):
                pass
            finally:
                if entry is not None:
                    self._watches.discard(entry)
            return response

    async def _held(self, request: web.Request) -> None:
        """Wait, answering nothing, until the client's connection closes or the proxy does."""
        while not self._closing and request.transport is not None:
            if request.transport.is_closing():
                return
            await asyncio.sleep(0.05)

    @staticmethod
    def _cut(request: web.Request) -> web.StreamResponse:
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=502)


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class Component:
    """One process of a kwokctl cluster (etcd, kube-apiserver, ...), found by its pid file."""

    cluster: str
    name: str

    @property
    def workdir(self) -> Path:
        return KWOK_HOME / "clusters" / self.cluster

    @property
    def pid_file(self) -> Path:
        return self.workdir / "pids" / f"{self.name}.pid"

    def pid(self) -> int:
        pid = int(self.pid_file.read_text().strip())
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError as exc:
            raise ClusterError(
                f"{self.name} of cluster {self.cluster} (pid {pid}) is gone"
            ) from exc
        if str(self.workdir).encode() not in cmdline:
            raise ClusterError(f"pid {pid} in {self.pid_file} is not {self.name}")
        return pid

    @contextlib.contextmanager
    def paused(self) -> Iterator[int]:
        """SIGSTOP the process for the duration of the block; SIGCONT it whatever happens."""
        pid = self.pid()
        os.kill(pid, signal.SIGSTOP)
        try:
            yield pid
        finally:
            os.kill(pid, signal.SIGCONT)

    def restart(self, grace: float = 30.0) -> int:
        """Stop the process (SIGTERM, SIGKILL after `grace` s) and start it again.

        As a kubelet restarts a static pod. Same argv, working directory,
        environment, log file and pid file as kwokctl gave it, so it comes
        back on the same port with the same certificates. Returns the new pid.
        """
        pid = self.pid()
        argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
        cwd = os.readlink(f"/proc/{pid}/cwd")
        env = dict(
            item.decode(errors="replace").split("=", 1)
            for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if b"=" in item
        )
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            stat = Path(f"/proc/{pid}/stat")
            with contextlib.suppress(OSError):
                if stat.read_text().split(") ")[1].startswith("Z"):
                    break
            time.sleep(0.1)
        if Path(f"/proc/{pid}").exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        log = self.workdir / "logs" / f"{self.name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        return proc.pid


# --------------------------------------------------------------------------- endpoints


@dataclass(frozen=True)
class Answer:
    """What an `Endpoint` sends: status, body, content type, and a delay before it."""

    body: bytes
    status: int = 200
    content_type: str = "application/json"
    delay: float = 0.0


class Endpoint:
    """An HTTP server on one loopback address answering every GET with `answer(path)`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.answer: Callable[[str], Answer] = lambda path: Answer(b"{}", 404)
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer.requests += 1
                reply = outer.answer(self.path)
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    view = memoryview(reply.body)
                    for i in range(0, len(view), 1 << 20):
                        self.wfile.write(view[i : i + (1 << 20)])
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.httpd = Server((host, port), Handler)
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
