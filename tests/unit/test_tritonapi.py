"""The operator's Triton and agent clients against loopback servers that answer badly.

The well-behaved paths run against a real Triton in tests/triton; here the
answers a real server gives only when something is wrong: a refusal without
Triton's JSON, a body that is not JSON, a port with nobody listening, an
answer far too large. Each must come back as ServerError, never as another
exception that would escape the pool controller's handling.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from smallfleet.tritonapi import MAX_ANSWER_BYTES, Agent, ServerError, Triton

ANSWERS: dict[str, tuple[int, bytes]] = {
    "/v2/repository/index": (
        200,
        json.dumps([{"name": "a", "state": "READY"}, {"name": "b", "reason": "x"}, 7]).encode(),
    ),
    "/v2/repository/models/refused/load": (400, b'{"error": "load failed: no such file"}'),
    "/v2/repository/models/bare/load": (503, b"upstream went away"),
    "/v2/repository/models/garbled/load": (200, b"<html>"),
    "/v2/repository/models/huge/load": (200, b" " * (MAX_ANSWER_BYTES + 10)),
}


class _Handler(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.server.seen.append((self.path, json.loads(self.rfile.read(length) or b"null")))  # type: ignore[attr-defined]
        status, body = ANSWERS.get(self.path, (404, b'{"error": "unknown model"}'))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()


def _address(httpd: ThreadingHTTPServer) -> str:
    return f"127.0.0.1:{httpd.server_address[1]}"


def test_index_keeps_named_entries_with_their_state(server: ThreadingHTTPServer) -> None:
    index = Triton(_address(server)).index()
    assert {n: (e.state, e.reason) for n, e in index.items()} == {
        "a": ("READY", ""),
        "b": ("", "x"),
    }


def test_load_sends_the_config_as_triton_expects(server: ThreadingHTTPServer) -> None:
    with pytest.raises(ServerError):
        Triton(_address(server)).load("refused", {"name": "refused", "max_batch_size": 4})
    path, body = server.seen[-1]  # type: ignore[attr-defined]
    assert path == "/v2/repository/models/refused/load"
    assert json.loads(body["parameters"]["config"]) == {"name": "refused", "max_batch_size": 4}


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("refused", "load failed: no such file"),
        ("bare", "HTTP 503"),
        ("garbled", "not JSON"),
        ("huge", "larger than"),
        ("missing", "unknown model"),
    ],
)
def test_every_bad_answer_is_a_server_error_in_words(
    server: ThreadingHTTPServer, name: str, words: str
) -> None:
    with pytest.raises(ServerError) as caught:
        Triton(_address(server)).load(name, {})
    assert words in caught.value.message
    assert not caught.value.unreachable


def test_nobody_listening_is_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for call in (
        lambda: Triton(f"127.0.0.1:{port}").index(),
        lambda: Agent(f"http://127.0.0.1:{port}").remove("m"),
    ):
        with pytest.raises(ServerError) as caught:
            call()
        assert caught.value.unreachable


def test_agent_paths_quote_the_model_name(server: ThreadingHTTPServer) -> None:
    with pytest.raises(ServerError, match="unknown model"):
        Agent(f"http://{_address(server)}/").fetch("a/b c", "https://x/y", "sha256:0", "onnx")
    assert server.seen[-1] == (  # type: ignore[attr-defined]
        "/v1/models/a%2Fb%20c",
        {"uri": "https://x/y", "digest": "sha256:0", "format": "onnx"},
    )
