"""Make a local server answer at KWOK pod IPs, listening on exactly those addresses.

KWOK gives every pod a loopback IP (127.1.x.y, see hack/kwok/kwokctl.yaml) but
runs nothing there. When a test needs `<podIP>:<port>` to answer (the operator
scrapes Triton's metrics at `<podIP>:8002`), it must not make the server listen
on 0.0.0.0 to catch every pod IP at once: every local process listens on
loopback addresses only. `PodForwards` instead follows the pods of a selector
with one `kubectl get --watch` and keeps, for each pod IP, a `Forwarder`
listening on that one address and port that passes the bytes on to the server
on 127.0.0.1. A pod IP outside 127.0.0.0/8 is refused, never bound nor dialled.
"""

from __future__ import annotations

import contextlib
import ipaddress
import selectors
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from hack.cluster import LOOPBACK, Cluster

BUFFER: Final = 65536
CONNECT_TIMEOUT_S: Final = 5.0


class Forwarder:
    """Listens on one loopback address and port; each connection is piped to `target`."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        for host in (listen[0], target[0]):
            if ipaddress.ip_address(host) not in LOOPBACK:
                raise ValueError(f"{host} is not in {LOOPBACK}: refusing to listen or dial there")
        self.listen = listen
        self.target = target
        self.connections = 0
        self.errors: list[str] = []
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # TIME_WAIT of an earlier forwarder on the same pod IP must not block this one.
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._server.bind(listen)
            self._server.listen(16)
        except OSError as exc:
            self._server.close()
            raise OSError(
                f"cannot listen on {listen[0]}:{listen[1]}: {exc} "
                f"(see `ss -ltnp 'sport = :{listen[1]}'`)"
            ) from exc
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True, name=f"fwd-{listen[0]}")
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=CONNECT_TIMEOUT_S)
        except OSError as exc:
            self.errors.append(f"{self.listen[0]}:{self.listen[1]} -> {self.target}: {exc}")
            client.close()
            return
        upstream.settimeout(None)
        with self._lock:
            if self._closed:
                client.close()
                upstream.close()
                return
            self.connections += 1
            self._open |= {client, upstream}
        peer = {client: upstream, upstream: client}
        with selectors.DefaultSelector() as sel:
            for s in peer:
                sel.register(s, selectors.EVENT_READ)
            try:
                while True:
                    for key, _ in sel.select():
                        sock = key.fileobj
                        assert isinstance(sock, socket.socket)
                        data = sock.recv(BUFFER)
                        if not data:
                            return
                        peer[sock].sendall(data)
            except OSError:
                return
            finally:
                with self._lock:
                    self._open -= {client, upstream}
                for s in peer:
                    with contextlib.suppress(OSError):
                        s.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns = list(self._open)
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)


class PodForwards:
    """A `Forwarder` at `<podIP>:<port>` for every pod of a selector, as pods come and go."""

    def __init__(
        self,
        cluster: Cluster,
        namespace: str,
        selector: str,
        port: int,
        target: tuple[str, int],
    ) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.selector = selector
        self.port = port
        self.target = target
        self.forwarders: dict[str, Forwarder] = {}  # pod name -> its forwarder
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._proc: subprocess.Popen[str] | None = None
        self._thread = threading.Thread(target=self._follow, daemon=True, name="pod-forwards")
        self._thread.start()

    def addresses(self) -> set[str]:
        with self._lock:
            return {f.listen[0] for f in self.forwarders.values()}

    def all_errors(self) -> list[str]:
        with self._lock:
            return self.errors + [e for f in self.forwarders.values() for e in f.errors]

    def _watch(self) -> subprocess.Popen[str]:
        template = '{.type} {.object.metadata.name} {.object.status.podIP}{"\\n"}'
        return subprocess.Popen(
            [
                str(Path(self.cluster.bin_dir, "kubectl")),
                f"--kubeconfig={self.cluster.kubeconfig}",
                "get", "pods", "-n", self.namespace, "-l", self.selector,
                "--watch", "--output-watch-events", f"-o=jsonpath={template}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=self.cluster.env,
        )  # fmt: skip

    def _follow(self) -> None:
        # A watch ends when the API server closes it; start another until told to stop.
        while not self._stopping.is_set():
            proc = self._proc = self._watch()
            assert proc.stdout is not None
            for line in proc.stdout:
                event, name, ip = ([*line.split(), "", ""])[:3]
                self._update(event, name, ip)
            proc.wait()
            self._stopping.wait(0.5)

    def _update(self, event: str, name: str, ip: str) -> None:
        with self._lock:
            current = self.forwarders.get(name)
            gone = event == "DELETED"
            if current is not None and (gone or current.listen[0] != ip):
                current.close()
                del self.forwarders[name]
                current = None
            if gone or not ip or current is not None or self._stopping.is_set():
                return
            try:
                self.forwarders[name] = Forwarder((ip, self.port), self.target)
            except (OSError, ValueError) as exc:
                self.errors.append(f"pod {self.namespace}/{name}: {exc}")

    def close(self) -> None:
        self._stopping.set()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=10)
        self._thread.join(timeout=10)
        if self._proc is not None and self._proc.poll() is None:  # started while stopping
            self._proc.kill()
            self._proc.wait(timeout=10)
        with self._lock:
            for f in self.forwarders.values():
                f.close()
            self.forwarders.clear()


@contextlib.contextmanager
def pod_forwards(
    cluster: Cluster, namespace: str, selector: str, port: int, target: tuple[str, int]
) -> Iterator[PodForwards]:
    forwards = PodForwards(cluster, namespace, selector, port, target)
    try:
        yield forwards
    finally:
        forwards.close()
