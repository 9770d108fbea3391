"""Pure parts of `smallfleet fetch`: URI mapping, digests, archive member rules, naming."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smallfleet.fetch import (
    TERMINATION_MESSAGE_LIMIT,
    FetchError,
    Source,
    member_problem,
    needs_version_dir,
    parse_digest,
    resolve,
    single_file_name,
    termination_message,
)

HEX = "ab" * 32


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (
            "https://example.org/m.tar.gz",
            Source("https://example.org/m.tar.gz", url="https://example.org/m.tar.gz"),
        ),
        ("http://127.0.0.1:9/a/b", Source("http://127.0.0.1:9/a/b", url="http://127.0.0.1:9/a/b")),
        (
            "s3://models/minilm/1.tar.gz",
            Source(
                "s3://models/minilm/1.tar.gz", url="https://models.s3.amazonaws.com/minilm/1.tar.gz"
            ),
        ),
        (
            "gs://bkt/dir/model file.onnx",
            Source(
                "gs://bkt/dir/model file.onnx",
                url="https://storage.googleapis.com/bkt/dir/model%20file.onnx",
            ),
        ),
        (
            "pvc://weights/team/m.tar.gz",
            Source("pvc://weights/team/m.tar.gz", path=Path("/mnt/pvc/weights/team/m.tar.gz")),
        ),
    ],
)
def test_resolve_maps_each_scheme(uri: str, expected: Source) -> None:
    assert resolve(uri) == expected


def test_resolve_uses_the_given_pvc_root() -> None:
    assert resolve("pvc://c/x.onnx", Path("/data")).path == Path("/data/c/x.onnx")


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("ftp://host/m.onnx", "unknown scheme 'ftp'"),
        ("/abs/path/m.onnx", "unknown scheme '(none)'"),
        ("s3://bucket-only", "must name a bucket and a path"),
        ("gs:///key", "must name a bucket and a path"),
        ("pvc://claim", "must name a claim and a path"),
        ("pvc://claim/../etc/passwd", "'..'"),
        ("pvc://claim/a//b", "empty"),
        ("pvc://../x", "'..'"),
        ("https:///nohost", "no host"),
    ],
)
def test_resolve_refuses_with_a_reason(uri: str, says: str) -> None:
    with pytest.raises(FetchError, match=None) as e:
        resolve(uri)
    assert says in str(e.value)


@given(st.binary(min_size=32, max_size=32))
def test_parse_digest_accepts_any_sha256(raw: bytes) -> None:
    assert parse_digest("sha256:" + raw.hex()) == raw.hex()
    assert parse_digest(" SHA256:" + raw.hex().upper() + "\n") == raw.hex()


@pytest.mark.parametrize(
    "digest", ["", HEX, "sha256:" + HEX[:-1], "md5:" + HEX, "sha256:" + "zz" * 32]
)
def test_parse_digest_refuses_malformed(digest: str) -> None:
    with pytest.raises(FetchError, match="bad digest"):
        parse_digest(digest)


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


@pytest.mark.parametrize(
    ("member", "problem"),
    [
        (_member("1/model.py"), None),
        (_member("1", tarfile.DIRTYPE), None),
        (_member("./1/a/../model.onnx"), None),
        (_member("1/latest.onnx", tarfile.SYMTYPE, "model.onnx"), None),
        (_member("1/x", tarfile.SYMTYPE, "../2/model.onnx"), None),
        (_member("1/copy", tarfile.LNKTYPE, "1/model.onnx"), None),
        (_member("/etc/cron.d/x"), "absolute path"),
        (_member("../x"), "escapes"),
        (_member("1/../../x"), "escapes"),
        (_member(".."), "escapes"),
        (_member("1/null", tarfile.CHRTYPE), "device or special"),
        (_member("1/sda", tarfile.BLKTYPE), "device or special"),
        (_member("1/pipe", tarfile.FIFOTYPE), "device or special"),
        (_member("1/x", tarfile.SYMTYPE, "/etc/passwd"), "points outside"),
        (_member("1/x", tarfile.SYMTYPE, "../../etc/passwd"), "points outside"),
        (_member("x", tarfile.SYMTYPE, ".."), "points outside"),
        (_member("1/h", tarfile.LNKTYPE, "../etc/passwd"), "points outside"),
        (_member("1/h", tarfile.LNKTYPE, "/etc/passwd"), "points outside"),
    ],
)
def test_member_rules(member: tarfile.TarInfo, problem: str | None) -> None:
    found = member_problem(member)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


_segment = st.sampled_from(["a", "1", "model.onnx", "..", ".", "b c"])


@given(st.lists(_segment, min_size=1, max_size=6))
def test_an_accepted_member_never_leaves_the_directory(parts: list[str]) -> None:
    name = "/".join(parts)
    if member_problem(_member(name)) is None:
        resolved = (Path("/root/model") / name).resolve()
        assert resolved == Path("/root/model") or Path("/root/model") in resolved.parents


@pytest.mark.parametrize(
    ("uri", "fmt", "name"),
    [
        ("https://h/w.onnx", None, "1/model.onnx"),
        ("https://h/w.bin", "onnx", "1/model.onnx"),
        ("https://h/w", "pytorch", "1/model.pt"),
        ("s3://b/engine.plan", None, "1/model.plan"),
        ("pvc://c/handler.py", None, "1/model.py"),
        ("https://h/W.ONNX?sig=1", None, "1/model.onnx"),
    ],
)
def test_single_file_name(uri: str, fmt: str | None, name: str) -> None:
    assert single_file_name(uri, fmt) == name


def test_single_file_without_a_known_extension_asks_for_format() -> None:
    with pytest.raises(FetchError, match="--format"):
        single_file_name("https://h/weights.bin", None)


@pytest.mark.parametrize(
    ("top", "wrap"),
    [
        ({"1"}, False),
        ({"1", "2"}, False),
        ({"model.onnx"}, True),
        ({"1", "model.py"}, True),
        ({"0"}, True),
        (set(), True),
    ],
)
def test_needs_version_dir(top: set[str], wrap: bool) -> None:
    assert needs_version_dir(top) is wrap


@given(st.text(max_size=6000))
def test_termination_message_is_one_bounded_line(text: str) -> None:
    line = termination_message(text)
    assert "\n" not in line and len(line.encode()) <= TERMINATION_MESSAGE_LIMIT
