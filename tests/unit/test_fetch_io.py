"""`smallfleet fetch` end to end against a local HTTP server on 127.0.0.1 and local files.

Every refusal must exit non-zero with one line, write that line to the
termination-message file, and leave the destination exactly as it was.
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from smallfleet.cli import main
from smallfleet.fetch import DIGEST_MARKER


def targz(members: dict[str, bytes], extra: list[tarfile.TarInfo] | None = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra or []:
            tar.addfile(info)
    return out.getvalue()


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


GOOD = targz({"1/model.py": b"print('model')\n", "1/tokenizer.json": b"{}"})
FLAT = targz({"model.py": b"x = 1\n"})
ONNX = b"\x08\x07fake onnx graph bytes"


def _link(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info


def _device(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.CHRTYPE
    return info


FILES: dict[str, bytes] = {
    "/good.tar.gz": GOOD,
    "/flat.tar.gz": FLAT,
    "/w.onnx": ONNX,
    "/traversal.tar.gz": targz({"1/model.py": b"", "../../escape.txt": b"owned"}),
    "/absolute.tar.gz": targz({"/tmp/absolute-owned": b"owned"}),
    "/link.tar.gz": targz({"1/model.py": b""}, [_link("1/passwd", "/etc/passwd")]),
    "/device.tar.gz": targz({"1/model.py": b""}, [_device("1/null")]),
    "/corrupt.tar.gz": GOOD[: len(GOOD) // 2],
}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/truncated.tar.gz":
            self.send_response(200)
            self.send_header("Content-Length", str(len(GOOD)))
            self.end_headers()
            self.wfile.write(GOOD[: len(GOOD) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        body = FILES.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def fetch(tmp_path: Path, uri: str, dig: str, *extra: str) -> tuple[int, Path, str]:
    dest = tmp_path / "repo" / "m"
    log = tmp_path / "termination-log"
    rc = main(
        [
            "fetch",
            "--uri",
            uri,
            "--digest",
            dig,
            "--dest",
            str(dest),
            "--termination-log",
            str(log),
            "--timeout",
            "10",
            *extra,
        ]
    )
    return rc, dest, log.read_text() if log.exists() else ""


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"/")
        for p in sorted(root.rglob("*"))
    }


def test_fetches_and_unpacks_an_archive(server: str, tmp_path: Path) -> None:
    rc, dest, message = fetch(tmp_path, f"{server}/good.tar.gz", digest(GOOD))
    assert rc == 0
    assert (dest / "1" / "model.py").read_bytes() == b"print('model')\n"
    assert (dest / DIGEST_MARKER).read_text().strip() == digest(GOOD)
    assert message.startswith("fetched ")
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["m"]  # no temp left


def test_a_flat_archive_becomes_version_1(server: str, tmp_path: Path) -> None:
    rc, dest, _ = fetch(tmp_path, f"{server}/flat.tar.gz", digest(FLAT))
    assert rc == 0 and (dest / "1" / "model.py").read_bytes() == b"x = 1\n"


def test_a_single_file_lands_as_model_file(server: str, tmp_path: Path) -> None:
    rc, dest, _ = fetch(tmp_path, f"{server}/w.onnx", digest(ONNX))
    assert rc == 0 and (dest / "1" / "model.onnx").read_bytes() == ONNX


def test_keeps_a_config_already_in_the_model_directory(server: str, tmp_path: Path) -> None:
    config = tmp_path / "repo" / "m" / "config.pbtxt"
    config.parent.mkdir(parents=True)
    config.write_text('name: "m"\n')
    rc, dest, _ = fetch(tmp_path, f"{server}/good.tar.gz", digest(GOOD))
    assert rc == 0 and config.read_text() == 'name: "m"\n' and (dest / "1" / "model.py").exists()


def test_a_second_run_is_a_no_op_and_a_new_digest_replaces(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert fetch(tmp_path, f"{server}/good.tar.gz", digest(GOOD))[0] == 0
    rc, dest, _ = fetch(tmp_path, f"{server}/good.tar.gz", digest(GOOD))
    assert rc == 0 and "already holds" in capsys.readouterr().out
    rc, dest, _ = fetch(tmp_path, f"{server}/w.onnx", digest(ONNX))
    assert rc == 0
    assert sorted(p.name for p in (dest / "1").iterdir()) == ["model.onnx"]
    assert (dest / DIGEST_MARKER).read_text().strip() == digest(ONNX)


def test_reads_from_a_claim(tmp_path: Path) -> None:
    claim = tmp_path / "pvc" / "weights" / "team"
    claim.mkdir(parents=True)
    (claim / "m.tar.gz").write_bytes(GOOD)
    rc, dest, _ = fetch(
        tmp_path, "pvc://weights/team/m.tar.gz", digest(GOOD), "--pvc-root", str(tmp_path / "pvc")
    )
    assert rc == 0 and (dest / "1" / "tokenizer.json").read_bytes() == b"{}"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("path", "dig", "says"),
    [
        (
            "/good.tar.gz",
            digest(b"something else"),
            f"digest mismatch for {{server}}/good.tar.gz: expected {digest(b'something else')}, got {digest(GOOD)}",
        ),
        ("/truncated.tar.gz", digest(GOOD), f"received {len(GOOD) // 2} of {len(GOOD)} bytes"),
        ("/missing.tar.gz", digest(GOOD), "HTTP 404"),
        ("/traversal.tar.gz", digest(FILES["/traversal.tar.gz"]), "escapes the model directory"),
        ("/absolute.tar.gz", digest(FILES["/absolute.tar.gz"]), "absolute path"),
        ("/link.tar.gz", digest(FILES["/link.tar.gz"]), "points outside"),
        ("/device.tar.gz", digest(FILES["/device.tar.gz"]), "device or special file"),
        ("/corrupt.tar.gz", digest(FILES["/corrupt.tar.gz"]), "bad archive"),
    ],
)
def test_refusals_leave_nothing_behind(
    server: str, tmp_path: Path, path: str, dig: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before_dest = tmp_path / "repo" / "m" / "1"
    before_dest.mkdir(parents=True)
    (before_dest / "model.py").write_text("old\n")
    before = snapshot(tmp_path / "repo")
    rc, _, message = fetch(tmp_path, server + path, dig)
    err = capsys.readouterr().err
    assert rc != 0
    assert says.format(server=server) in message
    assert message.startswith("fetch failed: ") and "\n" not in message
    assert err.strip() == message
    assert snapshot(tmp_path / "repo") == before
    assert not (tmp_path / "escape.txt").exists() and not Path("/tmp/absolute-owned").exists()


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("ftp://127.0.0.1/m.onnx", "unknown scheme 'ftp'"),
        (f"http://127.0.0.1:{_closed_port()}/m.tar.gz", "cannot reach"),
        ("pvc://claim/none.tar.gz", "cannot read pvc://claim/none.tar.gz"),
    ],
)
def test_unreachable_or_unknown_sources(tmp_path: Path, uri: str, says: str) -> None:
    rc, dest, message = fetch(tmp_path, uri, digest(GOOD), "--pvc-root", str(tmp_path))
    assert rc != 0 and says in message and not dest.exists()


def test_an_unwritable_termination_log_does_not_hide_the_reason(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(
        [
            "fetch",
            "--uri",
            f"{server}/good.tar.gz",
            "--digest",
            digest(b""),
            "--dest",
            str(tmp_path / "m"),
            "--termination-log",
            str(tmp_path / "no" / "such" / "dir" / "log"),
        ]
    )
    assert rc == 1 and "digest mismatch" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_an_unwritable_destination_is_a_one_line_refusal(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "not-a-dir").write_text("")
    log = tmp_path / "termination-log"
    rc = main(["fetch", "--uri", f"{server}/good.tar.gz", "--digest", digest(GOOD),
               "--dest", str(tmp_path / "not-a-dir" / "m"), "--termination-log", str(log)])  # fmt: skip
    assert rc == 1
    assert log.read_text().startswith("fetch failed: ") and "not-a-dir" in log.read_text()
    assert capsys.readouterr().err.count("\n") == 1
