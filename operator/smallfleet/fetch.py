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
`--pvc-root`), and `s3://bucket/key` / `gs://bucket/key`, anonymous HTTPS GETs
of public objects unless `--auth` names how to authenticate:

- `s3-keys`: AWS Signature Version 4 with AWS_ACCESS_KEY_ID /
  AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN) from the environment, on AWS
  (virtual-hosted) or path-style on `--s3-endpoint` (MinIO, versitygw, Ceph);
- `s3-web-identity`: the token in AWS_WEB_IDENTITY_TOKEN_FILE is exchanged for
  temporary keys with STS AssumeRoleWithWebIdentity (AWS_ROLE_ARN), then as above;
- `gs-key`: the service-account key file in GOOGLE_APPLICATION_CREDENTIALS signs
  an RS256 JWT, its `token_uri` answers with an access token (the OAuth 2.0
  JWT-bearer grant), and the object is read from the JSON API
  (`/storage/v1/b/BUCKET/o/OBJECT?alt=media`, `--gs-endpoint`);
- `gs-workload-identity`: the token comes from the metadata server
  (GCE_METADATA_HOST, header `Metadata-Flavor: Google`);
- `http-bearer` / `http-basic`: SMALLFLEET_FETCH_TOKEN, or
  SMALLFLEET_FETCH_USERNAME and SMALLFLEET_FETCH_PASSWORD; never sent over plain
  http:// except to a loopback address.

Credentials come only from the environment and files the pod mounts into
this container (see `smallfleet.core.credentials`), never from the command
line. They are sent as headers that a redirect does not carry to another
host; a refusal quotes the store's own error (S3's Code and Message, Google's
error message) with every secret value redacted.
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import ipaddress
import json
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
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, get_args

from smallfleet.core import credentials as cred
from smallfleet.core.credentials import AUTH_MODES, AuthMode
from smallfleet.core.signing import (
    AwsCredentials,
    SigningError,
    google_assertion,
    load_rsa_private_key,
    rs256_jwt,
    s3_get_headers,
    uri_encode,
)
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
GCS_ENDPOINT: Final = "https://storage.googleapis.com"
GCS_SCOPE: Final = "https://www.googleapis.com/auth/devstorage.read_only"
GOOGLE_TOKEN_URI: Final = "https://oauth2.googleapis.com/token"
METADATA_HOST: Final = "metadata.google.internal"
METADATA_TOKEN_PATH: Final = "/computeMetadata/v1/instance/service-accounts/default/token"
JWT_BEARER_GRANT: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
STS_VERSION: Final = "2011-06-15"
STS_DURATION_SECONDS: Final = 900  # the shortest STS allows: a fetch takes minutes at most
DEFAULT_SESSION_NAME: Final = "smallfleet-fetch"
# How much of an error body is read to quote the store's own words.
ERROR_BODY_LIMIT: Final = 64 * 1024
ERROR_DETAIL_LIMIT: Final = 300
# Secrets shorter than this are not searched for in messages (they would redact common words).
MIN_REDACTED: Final = 4
REDACTED: Final = "[redacted]"
_DIGEST_RE: Final = re.compile(r"sha256:([0-9a-f]{64})")
_VERSION_RE: Final = re.compile(r"[1-9][0-9]*")


class FetchError(Exception):
    """A refusal with a one-line reason, meant for a person reading the pod status."""


@dataclass(frozen=True)
class Access:
    """How to authenticate (from the command line): a mode and endpoints, never a secret."""

    mode: AuthMode | None = None  # None: anonymous
    s3_region: str = "us-east-1"
    s3_endpoint: str | None = None  # None: AWS, virtual-hosted addressing
    sts_endpoint: str | None = None  # None: https://sts.<region>.amazonaws.com
    gs_endpoint: str | None = None  # None: https://storage.googleapis.com


@dataclass(frozen=True)
class Source:
    """Where the bytes come from: an HTTP(S) URL to GET, or a local file."""

    uri: str  # as written in the SmallModel, for messages
    url: str | None = None
    path: Path | None = None
    access: Access = field(default_factory=Access)


def parse_digest(digest: str) -> str:
    """The 64 lower-case hex digits of a `sha256:<hex>` digest."""
    m = _DIGEST_RE.fullmatch(digest.strip().lower())
    if m is None:
        raise FetchError(f"bad digest {digest!r}: expected sha256: followed by 64 hex digits")
    return m.group(1)


def resolve(uri: str, pvc_root: Path = Path(DEFAULT_PVC_ROOT), access: Access = Access()) -> Source:
    """Map an artifact URI onto what to read; pure (no I/O)."""
    parts = urllib.parse.urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in URI_SCHEMES:
        raise FetchError(
            f"unknown scheme {scheme or '(none)'!r} in {uri}: use one of {', '.join(URI_SCHEMES)}"
        )
    if access.mode is not None and not access.mode.startswith(_AUTH_SCHEMES[scheme]):
        raise FetchError(f"--auth {access.mode} does not apply to {scheme}:// artifacts")
    if scheme in ("http", "https"):
        if not parts.netloc:
            raise FetchError(f"no host in {uri}")
        if access.mode is not None and scheme == "http" and not _loopback(parts.hostname):
            raise FetchError(
                f"refusing to send credentials over plain http:// to {parts.hostname}: use https://"
            )
        return Source(uri, url=uri, access=access)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if not bucket or not key:
        raise FetchError(f"{uri} must name a {_container(scheme)} and a path: {scheme}://NAME/PATH")
    if scheme == "s3":
        path = uri_encode(key, keep_slash=True)
        if access.s3_endpoint:
            url = f"{access.s3_endpoint.rstrip('/')}/{bucket}/{path}"
        elif access.mode is not None:
            url = f"https://{bucket}.s3.{access.s3_region}.amazonaws.com/{path}"
        else:
            url = f"https://{bucket}.s3.amazonaws.com/{urllib.parse.quote(key)}"
        return Source(uri, url=url, access=access)
    if scheme == "gs":
        if access.mode is None:
            return Source(
                uri, url=f"{GCS_ENDPOINT}/{bucket}/{urllib.parse.quote(key)}", access=access
            )
        endpoint = (access.gs_endpoint or GCS_ENDPOINT).rstrip("/")
        return Source(
            uri,
            url=f"{endpoint}/storage/v1/b/{uri_encode(bucket)}/o/{uri_encode(key)}?alt=media",
            access=access,
        )
    segments = key.split("/")
    if any(s in ("", ".", "..") for s in segments) or bucket in (".", ".."):
        raise FetchError(f"{uri}: the path may not contain empty, '.' or '..' segments")
    return Source(uri, path=pvc_root / bucket / Path(*segments))


def _container(scheme: str) -> str:
    return "claim" if scheme == "pvc" else "bucket"


# The --auth modes that apply to each scheme, by prefix.
_AUTH_SCHEMES: Final = {"s3": "s3-", "gs": "gs-", "http": "http-", "https": "http-", "pvc": "-"}


def _loopback(host: str | None) -> bool:
    if host in ("localhost",):
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def redact(message: str, secrets: Iterable[str]) -> str:
    """`message` with every secret value (and its base64 and URL-encoded forms) replaced."""
    for secret in sorted({s for s in secrets if len(s) >= MIN_REDACTED}, key=len, reverse=True):
        for form in {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}:
            message = message.replace(form, REDACTED)
    return message


def store_error(body: bytes, content_type: str = "") -> str:
    """The store's own words from an error body: S3's XML Code and Message, Google's JSON
    error (or OAuth's error_description), else the body's first line; pure."""
    text = body[:ERROR_BODY_LIMIT].decode("utf-8", errors="replace").strip()
    detail = ""
    if text.startswith("<"):
        try:
            root = ET.fromstring(text)
        except ET.ParseError:
            root = None
        if root is not None:
            found = {el.tag.rsplit("}", 1)[-1]: (el.text or "").strip() for el in root.iter()}
            code, msg = found.get("Code", ""), found.get("Message", "")
            detail = ": ".join(p for p in (code, msg) if p)
    elif text.startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            err = doc.get("error")
            if isinstance(err, dict):
                detail = str(err.get("message") or err.get("status") or "")
            elif isinstance(err, str):
                description = doc.get("error_description")
                detail = f"{err}: {description}" if description else err
    if not detail:
        detail = text.splitlines()[0] if text and "html" not in content_type.lower() else ""
    detail = " ".join(detail.split())
    if len(detail) > ERROR_DETAIL_LIMIT:
        detail = detail[: ERROR_DETAIL_LIMIT - 3] + "..."
    return detail


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


def data_only(members: Iterable[tarfile.TarInfo], dest: Path) -> Iterator[tarfile.TarInfo]:
    """tarfile's "data" filter (PEP 706) for a Python that lacks it.

    Python 3.11 gained the filter in 3.11.4, and Debian bookworm's 3.11.2 (the
    operator image's Python) never did. extractall takes members lazily, so each
    is checked just before it is written, against the links written before it:
    a symlink chain that `member_problem` cannot see by name (`b -> .`,
    `c -> b/..`, `d -> c/..`) is refused by where it really resolves, as the filter does.
    Modes lose setuid, setgid, sticky and group/other write bits; files are the
    owner's to read and write; owners in the archive are ignored. A refusal is
    a TarError raised between members, which `unpack` reports as a bad archive
    (never tarfile's ExtractError, which extractall may only log).
    """
    base = os.path.realpath(dest)

    def inside(path: str) -> bool:
        return os.path.commonpath([os.path.realpath(path), base]) == base

    for member in members:
        if not inside(os.path.join(base, member.name)):
            raise tarfile.TarError(f"member {member.name!r} resolves outside the model directory")
        if member.issym():
            link = os.path.join(base, os.path.dirname(member.name), member.linkname)
        elif member.islnk():
            link = os.path.join(base, member.linkname)
        else:
            link = base
        if not inside(link):
            raise tarfile.TarError(f"link {member.name!r} resolves outside the model directory")
        safe = copy.copy(member)
        mode = member.mode & 0o755
        if member.isreg() or member.islnk():
            if not mode & 0o100:
                mode &= ~0o111
            mode |= 0o600
        safe.mode = mode
        safe.uid, safe.gid, safe.uname, safe.gname = os.getuid(), os.getgid(), "", ""
        yield safe


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


def _http_error(e: urllib.error.HTTPError, url: str, secrets: Iterable[str]) -> FetchError:
    try:
        body = e.read(ERROR_BODY_LIMIT) if e.fp is not None else b""
    except OSError:
        body = b""
    detail = store_error(body, e.headers.get("Content-Type", "") if e.headers else "")
    suffix = f": {detail}" if detail else ""
    return FetchError(redact(f"HTTP {e.code} {e.reason} from {url}{suffix}", secrets))


def _call(request: urllib.request.Request, what: str, timeout: float, secrets: list[str]) -> bytes:
    """A small request of the authentication dance (STS, token endpoint, metadata server)."""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data: bytes = response.read(ERROR_BODY_LIMIT)
            return data
    except urllib.error.HTTPError as e:
        raise FetchError(f"{what} refused: {_http_error(e, request.full_url, secrets)}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise FetchError(f"{what}: cannot reach {request.full_url}: {reason}") from None


def _one_line(value: str, what: str) -> str:
    """`value` without surrounding whitespace (a Secret made from a file often ends in a
    newline); refused, without quoting it, if a control character is left inside."""
    value = value.strip()
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise FetchError(f"{what} holds a line break or control character: it must be one line")
    return value


def _env(environ: Mapping[str, str], name: str, why: str) -> str:
    value = _one_line(environ.get(name, ""), name)
    if not value:
        raise FetchError(f"{name} is not set: {why}")
    return value


def _read_secret_file(path: str, what: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as e:
        raise FetchError(f"cannot read {what} {path}: {e.strerror or e}") from None


def _amz_date() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def _assume_role(
    access: Access, environ: Mapping[str, str], timeout: float, secrets: list[str]
) -> AwsCredentials:
    """STS AssumeRoleWithWebIdentity (an unsigned POST; the token is the proof)."""
    role = _env(environ, cred.AWS_ROLE_ARN, "s3 webIdentity needs the role to assume")
    token_file = _env(
        environ, cred.AWS_WEB_IDENTITY_TOKEN_FILE, "s3 webIdentity needs the projected token"
    )
    token = _one_line(_read_secret_file(token_file, "the web identity token"), token_file)
    secrets.append(token)
    endpoint = access.sts_endpoint or f"https://sts.{access.s3_region}.amazonaws.com"
    form = urllib.parse.urlencode(
        {
            "Action": "AssumeRoleWithWebIdentity",
            "Version": STS_VERSION,
            "RoleArn": role,
            "RoleSessionName": environ.get(cred.AWS_ROLE_SESSION_NAME) or DEFAULT_SESSION_NAME,
            "WebIdentityToken": token,
            "DurationSeconds": str(STS_DURATION_SECONDS),
        }
    ).encode()
    request = urllib.request.Request(
        endpoint.rstrip("/") + "/",
        data=form,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "smallfleet-fetch",
        },
        method="POST",
    )
    body = _call(request, f"STS AssumeRoleWithWebIdentity for {role}", timeout, secrets)
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        raise FetchError(
            f"STS at {endpoint} answered with something that is not XML: {e}"
        ) from None
    found = {el.tag.rsplit("}", 1)[-1]: (el.text or "").strip() for el in root.iter()}
    keys = AwsCredentials(
        access_key_id=found.get("AccessKeyId", ""),
        secret_access_key=found.get("SecretAccessKey", ""),
        session_token=found.get("SessionToken") or None,
    )
    if not keys.access_key_id or not keys.secret_access_key:
        raise FetchError(f"STS at {endpoint} answered without Credentials for {role}")
    secrets += [keys.secret_access_key, keys.session_token or ""]
    return keys


def _google_token(
    access: Access, environ: Mapping[str, str], timeout: float, secrets: list[str]
) -> str:
    """An OAuth 2.0 access token: from a service-account key (JWT-bearer grant) or the metadata server."""
    if access.mode == "gs-workload-identity":
        host = environ.get(cred.GCE_METADATA_HOST) or METADATA_HOST
        request = urllib.request.Request(
            f"http://{host}{METADATA_TOKEN_PATH}", headers={"Metadata-Flavor": "Google"}
        )
        body = _call(request, "the metadata server's token", timeout, secrets)
    else:
        path = _env(environ, cred.GOOGLE_APPLICATION_CREDENTIALS, "gs credentials need a key file")
        try:
            key = json.loads(_read_secret_file(path, "the service-account key"))
        except ValueError:
            raise FetchError(f"the service-account key {path} is not JSON") from None
        if not isinstance(key, dict) or not key.get("private_key") or not key.get("client_email"):
            raise FetchError(
                f"the service-account key {path} has no private_key and client_email "
                "(a key file of type service_account is needed)"
            )
        secrets.append(str(key["private_key"]))
        token_uri = str(key.get("token_uri") or GOOGLE_TOKEN_URI)
        try:
            assertion = rs256_jwt(
                load_rsa_private_key(str(key["private_key"])),
                google_assertion(str(key["client_email"]), token_uri, GCS_SCOPE, int(time.time())),
                key_id=str(key.get("private_key_id") or "") or None,
            )
        except SigningError as e:
            raise FetchError(f"the service-account key {path} cannot sign: {e}") from None
        secrets.append(assertion)
        request = urllib.request.Request(
            token_uri,
            data=urllib.parse.urlencode(
                {"grant_type": JWT_BEARER_GRANT, "assertion": assertion}
            ).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            method="POST",
        )
        body = _call(request, f"the token endpoint for {key['client_email']}", timeout, secrets)
    try:
        answer = json.loads(body)
        token = str(answer["access_token"])
    except (ValueError, KeyError, TypeError):
        raise FetchError("the token endpoint answered without an access_token") from None
    secrets.append(token)
    return _one_line(token, "the access token")


def authorize(
    source: Source, environ: Mapping[str, str], timeout: float, secrets: list[str]
) -> dict[str, str]:
    """The headers that authenticate the GET of `source`; appends every secret it handles
    to `secrets` (so that messages can be redacted)."""
    access = source.access
    mode = access.mode
    if mode is None or source.url is None:
        return {}
    if mode in ("http-bearer", "http-basic"):
        if mode == "http-bearer":
            token = _env(environ, cred.FETCH_TOKEN, "the Secret needs a key token")
            secrets.append(token)
            return {"Authorization": f"Bearer {token}"}
        user = _env(environ, cred.FETCH_USERNAME, "the Secret needs a key username")
        password = _env(environ, cred.FETCH_PASSWORD, "the Secret needs a key password")
        basic = base64.b64encode(f"{user}:{password}".encode()).decode()
        secrets += [password, basic]
        return {"Authorization": f"Basic {basic}"}
    if mode in ("gs-key", "gs-workload-identity"):
        return {"Authorization": f"Bearer {_google_token(access, environ, timeout, secrets)}"}
    if mode == "s3-web-identity":
        keys = _assume_role(access, environ, timeout, secrets)
    else:
        why = "the Secret needs keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        keys = AwsCredentials(
            access_key_id=_env(environ, cred.AWS_ACCESS_KEY_ID, why),
            secret_access_key=_env(environ, cred.AWS_SECRET_ACCESS_KEY, why),
            session_token=_one_line(environ.get(cred.AWS_SESSION_TOKEN, ""), cred.AWS_SESSION_TOKEN)
            or None,
        )
        secrets += [keys.secret_access_key, keys.session_token or ""]
    parts = urllib.parse.urlsplit(source.url)
    return s3_get_headers(parts.netloc, parts.path, keys, access.s3_region, _amz_date())


def download(
    source: Source, into: Path, timeout: float, environ: Mapping[str, str] | None = None
) -> str:
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
    secrets: list[str] = []
    auth = authorize(source, os.environ if environ is None else environ, timeout, secrets)
    request = urllib.request.Request(source.url, headers={"User-Agent": "smallfleet-fetch"})
    for name, value in auth.items():
        # Unredirected: a redirect to another host must not carry the credentials along.
        request.add_unredirected_header(name, value)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        raise _http_error(e, source.url, secrets) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise FetchError(f"cannot reach {source.url}: {reason}") from None
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
            if hasattr(tarfile, "data_filter"):
                tar.extractall(root, members=members, filter="data")
            else:
                tar.extractall(root, members=data_only(members, root))
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
    access: Access = Access(),
    environ: Mapping[str, str] | None = None,
) -> str:
    """Fetch one artifact into the model directory `dest`; returns a one-line summary.

    Credentials (for `access.mode`) are read from `environ` (default: the process's).
    """
    want = parse_digest(digest)
    source = resolve(uri, pvc_root, access)
    if _already_there(dest, want):
        return f"{dest} already holds sha256:{want}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.fetch-", dir=dest.parent))
    try:
        blob = work / "artifact"
        started = time.monotonic()
        got = download(source, blob, timeout, environ)
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
        "--auth",
        choices=AUTH_MODES,
        default=None,
        help="how to authenticate (credentials come from the environment; default: anonymous)",
    )
    parser.add_argument("--s3-region", default="us-east-1", help="the region SigV4 signs for")
    parser.add_argument(
        "--s3-endpoint", default=None, help="an S3-compatible endpoint (path-style addressing)"
    )
    parser.add_argument("--sts-endpoint", default=None, help="STS for --auth s3-web-identity")
    parser.add_argument("--gs-endpoint", default=None, help="the GCS JSON API endpoint")
    parser.add_argument(
        "--termination-log",
        default=os.environ.get("SMALLFLEET_TERMINATION_LOG") or DEFAULT_TERMINATION_LOG,
        help="file that Kubernetes reports as the container's termination message",
    )


def _refuse(termination_log: str, message: str) -> int:
    # Belt and braces: no secret from the environment reaches the pod's status or log.
    values = [os.environ.get(v, "") for v in cred.SECRET_VARIABLES]
    message = redact(message, [*values, *(v.strip() for v in values)])
    print(message, file=sys.stderr)
    write_termination_message(termination_log, message)
    return 1


def run(args: argparse.Namespace) -> int:
    access = Access(
        mode=args.auth,
        s3_region=args.s3_region,
        s3_endpoint=args.s3_endpoint,
        sts_endpoint=args.sts_endpoint,
        gs_endpoint=args.gs_endpoint,
    )
    try:
        summary = fetch(
            args.uri, args.digest, args.dest, args.format, args.timeout, args.pvc_root, access
        )
    except (FetchError, OSError) as e:  # OSError: the destination volume refused a write
        return _refuse(args.termination_log, f"fetch failed: {e}")
    except Exception as e:  # a bug: still one line, and never a traceback that may quote a value
        return _refuse(args.termination_log, f"fetch failed: unexpected {type(e).__name__}: {e}")
    print(summary)
    write_termination_message(args.termination_log, summary)
    return 0
