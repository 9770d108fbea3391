"""`smallfleet fetch`: download, verify and unpack one model artifact (the init container).

Every Triton pod the operator renders starts with this command, once per model,
writing into the model repository volume. It is the last gate between an
artifact URI in a SmallModel and code that Triton will load, so it is strict:

- the bytes are hashed while they stream to disk and must match the declared
  sha256 digest; a short read (Content-Length not reached) is refused;
- an archive may only create regular files and directories inside the model
  directory: absolute names, `..`, links pointing outside and device files are
  refused before anything is extracted;
- nothing appears at the destination until everything has been verified: the
  artifact is unpacked into a temporary directory next to it and renamed into
  place, so a failure leaves the destination as it was;
- a failure exits non-zero with one line that says why (expected and actual
  digest, bytes received, the unreachable source), and writes the same line to
  the container's termination-message file, where the operator reads it from
  the pod status (`state.terminated.message`) to explain a model that does not
  start.

A `.tar.gz` (or any tar) artifact holds Triton version directories (`1/...`);
one without them is treated as version 1. Any other file is a single model
file and lands as `1/model.<ext>` for the declared format. Re-running with the
same digest is a no-op, so a restarted pod does not download again.

Sources: `http(s)://`, `pvc://claim/path` (a file on a mounted claim, under
`--pvc-root`), and `s3://bucket/key` / `gs://bucket/key` as anonymous HTTPS GETs
of public objects; private buckets (credentials) are not supported yet.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import posixpath
import re
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, get_args

from smallfleet.core.spec import URI_SCHEMES, ModelFormat

DEFAULT_TERMINATION_LOG: Final = "/dev/termination-log"
DEFAULT_PVC_ROOT: Final = "/mnt/pvc"
DEFAULT_TIMEOUT_SECONDS: Final = 300.0
DIGEST_MARKER: Final = ".smallfleet-digest"  # records the digest of what the directory holds
# Kubernetes keeps at most 4096 bytes of a termination message.
TERMINATION_MESSAGE_LIMIT: Final = 4096
CHUNK: Final = 1 << 20
# File name of a single-file artifact inside its version directory, by format (Triton's defaults).
SINGLE_FILE_NAMES: Final[dict[str, str]] = {
    "onnx": "model.onnx",
    "pytorch": "model.pt",
    "tensorrt": "model.plan",
    "python": "model.py",
    "tensorflow": "model.graphdef",
}
_DIGEST_RE: Final = re.compile(r"sha256:([0-9a-f]{64})")
_VERSION_RE: Final = re.compile(r"[1-9][0-9]*")


class FetchError(Exception):
    """A refusal with a one-line reason, meant for a person reading the pod status."""


@dataclass(frozen=True)
class Source:
    """Where the bytes come from: an HTTP(S) URL to GET, or a local file."""

    uri: str  # as written in the SmallModel, for messages
    url: str | None = None
    path: Path | None = None


def parse_digest(digest: str) -> str:
    """The 64 lower-case hex digits of a `sha256:<hex>` digest."""
    m = _DIGEST_RE.fullmatch(digest.strip().lower())
    if m is None:
        raise FetchError(f"bad digest {digest!r}: expected sha256: followed by 64 hex digits")
    return m.group(1)


def resolve(uri: str, pvc_root: Path = Path(DEFAULT_PVC_ROOT)) -> Source:
    """Map an artifact URI onto what to read; pure (no I/O)."""
    parts = urllib.parse.urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in URI_SCHEMES:
        raise FetchError(
            f"unknown scheme {scheme or '(none)'!r} in {uri}: use one of {', '.join(URI_SCHEMES)}"
        )
    if scheme in ("http", "https"):
        if not parts.netloc:
            raise FetchError(f"no host in {uri}")
        return Source(uri, url=uri)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if not bucket or not key:
        raise FetchError(f"{uri} must name a {_container(scheme)} and a path: {scheme}://NAME/PATH")
    if scheme == "s3":
        return Source(uri, url=f"https://{bucket}.s3.amazonaws.com/{urllib.parse.quote(key)}")
    if scheme == "gs":
        return Source(uri, url=f"https://storage.googleapis.com/{bucket}/{urllib.parse.quote(key)}")
    segments = key.split("/")
    if any(s in ("", ".", "..") for s in segments) or bucket in (".", ".."):
        raise FetchError(f"{uri}: the path may not contain empty, '.' or '..' segments")
    return Source(uri, path=pvc_root / bucket / Path(*segments))


def _container(scheme: str) -> str:
    return "claim" if scheme == "pvc" else "bucket"


def member_problem(member: tarfile.TarInfo) -> str | None:
    """Why an archive member may not be extracted into a model directory, or None."""
    name = member.name
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return f"member {name!r} has an absolute path"
    normal = posixpath.normpath(name)
    if normal == ".." or normal.startswith("../"):
        return f"member {name!r} escapes the model directory"
    if (
        member.isdev()
        or member.isfifo()
        or not (member.isfile() or member.isdir() or member.issym() or member.islnk())
    ):
        return f"member {name!r} is a device or special file"
    if member.issym():
        target = member.linkname
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(normal), target))
        if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
            return f"link {name!r} points outside the model directory ({target!r})"
    if member.islnk():
        target = posixpath.normpath(member.linkname)
        if member.linkname.startswith("/") or target == ".." or target.startswith("../"):
            return f"hard link {name!r} points outside the model directory ({member.linkname!r})"
    return None


def single_file_name(uri: str, model_format: str | None) -> str:
    """Where a single-file artifact lands inside the model directory."""
    if model_format is not None:
        return "1/" + SINGLE_FILE_NAMES[model_format]
    suffix = posixpath.splitext(urllib.parse.urlsplit(uri).path)[1].lstrip(".").lower()
    by_suffix = {name.rsplit(".", 1)[1]: name for name in SINGLE_FILE_NAMES.values()}
    if suffix not in by_suffix:
        raise FetchError(
            f"{uri} is not an archive and its extension does not say the format: pass --format"
        )
    return "1/" + by_suffix[suffix]


def needs_version_dir(top_level: Iterable[str]) -> bool:
    """True when an archive's entries are not already Triton version directories."""
    names = [n for n in top_level if n not in (".", "")]
    return not names or not all(_VERSION_RE.fullmatch(n) for n in names)


def termination_message(message: str) -> str:
    """One line, within what Kubernetes keeps."""
    line = " ".join(message.split())
    data = line.encode()
    if len(data) <= TERMINATION_MESSAGE_LIMIT:
        return line
    return data[: TERMINATION_MESSAGE_LIMIT - 3].decode(errors="ignore") + "..."


# ---- I/O ----


def download(source: Source, into: Path, timeout: float) -> str:
    """Stream the source into `into`, returning the sha256 hex of what was written."""
    h = hashlib.sha256()
    deadline = time.monotonic() + timeout
    if source.path is not None:
        try:
            src = source.path.open("rb")
        except OSError as e:
            raise FetchError(f"cannot read {source.uri} ({source.path}): {e.strerror or e}") from e
        with src, into.open("wb") as out:
            for chunk in iter(lambda: src.read(CHUNK), b""):
                h.update(chunk)
                out.write(chunk)
        return h.hexdigest()
    assert source.url is not None
    request = urllib.request.Request(source.url, headers={"User-Agent": "smallfleet-fetch"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        raise FetchError(f"HTTP {e.code} {e.reason} from {source.url}") from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise FetchError(f"cannot reach {source.url}: {reason}") from e
    expected = response.headers.get("Content-Length")
    received = 0
    try:
        with response, into.open("wb") as out:
            while True:
                if time.monotonic() > deadline:
                    raise FetchError(
                        f"timed out after {timeout:g} s downloading {source.url} ({received} bytes received)"
                    )
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                received += len(chunk)
                h.update(chunk)
                out.write(chunk)
    except FetchError:
        raise
    except Exception as e:  # IncompleteRead, resets, socket timeouts: all mean a partial body
        raise FetchError(f"download of {source.url} broke off after {received} bytes: {e}") from e
    if expected is not None and expected.isdigit() and received != int(expected):
        raise FetchError(
            f"truncated download from {source.url}: received {received} of {expected} bytes"
        )
    return h.hexdigest()


def unpack(archive: Path, uri: str, into: Path, model_format: str | None) -> None:
    """Extract (or place) the verified artifact into the empty directory `into`."""
    try:
        is_tar = tarfile.is_tarfile(archive)
    except (EOFError, OSError, zlib.error) as e:  # a gzip stream that breaks off
        raise FetchError(f"bad archive {uri}: {e}") from e
    if not is_tar:
        if urllib.parse.urlsplit(uri).path.endswith((".tar", ".tar.gz", ".tgz")):
            raise FetchError(f"bad archive {uri}: not a readable tar file")
        target = into / single_file_name(uri, model_format)
        target.parent.mkdir(parents=True)
        shutil.copyfile(archive, target)
        return
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                problem = member_problem(member)
                if problem is not None:
                    raise FetchError(f"bad archive {uri}: {problem}")
            top = {posixpath.normpath(m.name).split("/")[0] for m in members}
            root = into / "1" if needs_version_dir(top) else into
            root.mkdir(exist_ok=True)
            tar.extractall(root, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise FetchError(f"bad archive {uri}: {e}") from e


def _already_there(dest: Path, hex_digest: str) -> bool:
    try:
        return (dest / DIGEST_MARKER).read_text().strip() == f"sha256:{hex_digest}"
    except OSError:
        return False


def place(staging: Path, dest: Path) -> None:
    """Move the staged model directory's contents to dest, each version directory by one rename."""
    if not dest.exists():
        staging.rename(dest)
        return
    # The digest marker goes last: it may only claim what is already in place.
    for entry in sorted(staging.iterdir(), key=lambda p: (p.name == DIGEST_MARKER, p.name)):
        target = dest / entry.name
        old = staging / f".old-{entry.name}"
        if target.exists() or target.is_symlink():
            target.rename(old)
        try:
            entry.rename(target)
        except OSError:
            if old.exists() or old.is_symlink():
                old.rename(target)  # put the previous version back
            raise


def fetch(
    uri: str,
    digest: str,
    dest: Path,
    model_format: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    pvc_root: Path = Path(DEFAULT_PVC_ROOT),
) -> str:
    """Fetch one artifact into the model directory `dest`; returns a one-line summary."""
    want = parse_digest(digest)
    source = resolve(uri, pvc_root)
    if _already_there(dest, want):
        return f"{dest} already holds sha256:{want}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.fetch-", dir=dest.parent))
    try:
        blob = work / "artifact"
        started = time.monotonic()
        got = download(source, blob, timeout)
        if got != want:
            raise FetchError(f"digest mismatch for {uri}: expected sha256:{want}, got sha256:{got}")
        size = blob.stat().st_size
        staging = work / "model"
        staging.mkdir()
        unpack(blob, uri, staging, model_format)
        (staging / DIGEST_MARKER).write_text(f"sha256:{want}\n")
        try:
            place(staging, dest)
        except OSError as e:
            raise FetchError(f"cannot write {dest}: {e}") from e
        seconds = time.monotonic() - started
        return f"fetched {uri} ({size} bytes, sha256:{want[:12]}…) into {dest} in {seconds:.1f} s"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write_termination_message(path: str, message: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(termination_message(message))
    except OSError:
        pass  # outside a pod there may be no termination-message file; stderr still says it


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--uri", required=True, help="s3://, gs://, https://, http:// or pvc://claim/path"
    )
    parser.add_argument("--digest", required=True, help="sha256:<64 hex> of the artifact file")
    parser.add_argument(
        "--dest", required=True, type=Path, help="the model directory, e.g. /models/NAME"
    )
    parser.add_argument(
        "--format",
        choices=get_args(ModelFormat),
        default=None,
        help="names a single-file artifact 1/model.<ext> (default: from the URI's extension)",
    )
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS, help="seconds")
    parser.add_argument(
        "--pvc-root",
        type=Path,
        default=Path(os.environ.get("SMALLFLEET_PVC_ROOT") or DEFAULT_PVC_ROOT),
        help="where pvc://CLAIM/... claims are mounted (env SMALLFLEET_PVC_ROOT)",
    )
    parser.add_argument(
        "--termination-log",
        default=os.environ.get("SMALLFLEET_TERMINATION_LOG") or DEFAULT_TERMINATION_LOG,
        help="file that Kubernetes reports as the container's termination message",
    )


def run(args: argparse.Namespace) -> int:
    try:
        summary = fetch(args.uri, args.digest, args.dest, args.format, args.timeout, args.pvc_root)
    except (FetchError, OSError) as e:  # OSError: the destination volume refused a write
        message = f"fetch failed: {e}"
        print(message, file=sys.stderr)
        write_termination_message(args.termination_log, message)
        return 1
    print(summary)
    write_termination_message(args.termination_log, summary)
    return 0
