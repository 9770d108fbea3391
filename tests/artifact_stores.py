"""Private artifact stores on 127.0.0.1 that enforce authentication, in their documented wire formats.

Stand-ins for what `smallfleet fetch` talks to when an artifact is private:

- `GoogleStore`: Google's OAuth 2.0 token endpoint (the JWT-bearer grant: a
  form POST of `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` and an
  RS256 `assertion`, answered with `{"access_token", "expires_in",
  "token_type"}` or `{"error": "invalid_grant", "error_description"}`), the
  GCS JSON API's media download (`GET /storage/v1/b/B/o/O?alt=media`, 401
  `{"error": {"code", "message"}}` without a valid Bearer token) and the
  metadata server's token (`Metadata-Flavor: Google` required). The JWT's
  signature is checked with `openssl dgst -verify` against the key's public
  half, an implementation independent of the signer under test.
- `StsStub`: STS AssumeRoleWithWebIdentity (form POST, XML answer, XML
  `ErrorResponse` with `InvalidIdentityToken`), accepting one token.
- `TokenStore`: an HTTP server that wants `Authorization: Bearer` or Basic.

Every server records the headers it saw, so tests can check what was sent.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

JWT_BEARER: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GCS_SCOPE: Final = "https://www.googleapis.com/auth/devstorage.read_only"
STS_NS: Final = "https://sts.amazonaws.com/doc/2011-06-15/"


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class ServiceAccountKey:
    """A throwaway RSA key pair (made by openssl) and its Google key-file JSON."""

    private_pem: str
    public_pem_path: Path
    client_email: str
    key_id: str

    def key_file(self, token_uri: str) -> dict[str, str]:
        return {
            "type": "service_account",
            "project_id": "smallfleet-test",
            "private_key_id": self.key_id,
            "private_key": self.private_pem,
            "client_email": self.client_email,
            "client_id": "1",
            "token_uri": token_uri,
        }


def make_service_account_key(directory: Path, email: str) -> ServiceAccountKey:
    private = directory / f"{email}.pem"
    public = directory / f"{email}.pub.pem"
    subprocess.run(
        [
            "openssl",
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            str(private),
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["openssl", "pkey", "-in", str(private), "-pubout", "-out", str(public)],
        check=True,
        capture_output=True,
    )
    return ServiceAccountKey(private.read_text(), public, email, secrets.token_hex(20))


def openssl_verifies(public_pem: Path, signing_input: bytes, signature: bytes) -> bool:
    """RS256 verification by openssl (RSASSA-PKCS1-v1_5 with SHA-256)."""
    with tempfile.TemporaryDirectory() as d:
        data, sig = Path(d) / "data", Path(d) / "sig"
        data.write_bytes(signing_input)
        sig.write_bytes(signature)
        done = subprocess.run(
            [
                "openssl",
                "dgst",
                "-sha256",
                "-verify",
                str(public_pem),
                "-signature",
                str(sig),
                data,
            ],
            capture_output=True,
            check=False,
        )
    return done.returncode == 0


@dataclass
class Seen:
    """What a stand-in received: every request's path and headers."""

    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, method: str, path: str, headers: Mapping[str, str]) -> None:
        with self.lock:
            self.requests.append((method, path, dict(headers)))


class _Base(BaseHTTPRequestHandler):
    seen: Seen

    def log_message(self, *args: object) -> None:
        pass

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, doc: Any) -> None:
        self._send(code, json.dumps(doc).encode(), "application/json; charset=UTF-8")


@contextmanager
def _serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


class GoogleStore:
    """Token endpoint + GCS JSON API + metadata server, trusting one service-account key."""

    def __init__(self, key: ServiceAccountKey, objects: Mapping[tuple[str, str], bytes]) -> None:
        self.key = key
        self.objects = dict(objects)
        self.tokens: set[str] = set()
        self.seen = Seen()
        self.url = ""

    def _token(self) -> str:
        token = "ya29." + secrets.token_urlsafe(32)
        self.tokens.add(token)
        return token

    def _grant(self, form: Mapping[str, list[str]]) -> tuple[int, dict[str, Any]]:
        def refuse(description: str) -> tuple[int, dict[str, Any]]:
            return 400, {"error": "invalid_grant", "error_description": description}

        if form.get("grant_type") != [JWT_BEARER]:
            return 400, {
                "error": "unsupported_grant_type",
                "error_description": "Invalid grant_type",
            }
        try:
            head, claims, sig = form["assertion"][0].split(".")
            header = json.loads(_b64url_decode(head))
            body = json.loads(_b64url_decode(claims))
        except (KeyError, ValueError):
            return refuse(
                "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe"
            )
        if header.get("alg") != "RS256" or header.get("kid") != self.key.key_id:
            return refuse("Invalid JWT Signature.")
        if not openssl_verifies(
            self.key.public_pem_path, f"{head}.{claims}".encode(), _b64url_decode(sig)
        ):
            return refuse("Invalid JWT Signature.")
        now = time.time()
        if (
            body.get("iss") != self.key.client_email
            or body.get("aud") != f"{self.url}/token"
            or body.get("scope") != GCS_SCOPE
            or not body.get("iat", 0) - 300 <= now <= body.get("exp", 0)
        ):
            return refuse(
                "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe"
            )
        return 200, {"access_token": self._token(), "expires_in": 3599, "token_type": "Bearer"}

    @contextmanager
    def running(self) -> Iterator[str]:
        store = self

        class Handler(_Base):
            def do_POST(self) -> None:
                store.seen.add("POST", self.path, self.headers)
                if self.path != "/token":
                    self._json(404, {"error": {"code": 404, "message": "Not Found"}})
                    return
                form = urllib.parse.parse_qs(self._body().decode())
                code, doc = store._grant(form)
                self._json(code, doc)

            def do_GET(self) -> None:
                store.seen.add("GET", self.path, self.headers)
                parts = urllib.parse.urlsplit(self.path)
                if parts.path.startswith("/computeMetadata/v1/"):
                    if self.headers.get("Metadata-Flavor") != "Google":
                        self._send(403, b"Missing Metadata-Flavor:Google header.", "text/html")
                        return
                    token = {
                        "access_token": store._token(),
                        "expires_in": 3599,
                        "token_type": "Bearer",
                    }
                    self._json(200, token)
                    return
                auth = self.headers.get("Authorization", "")
                if not auth.startswith("Bearer ") or auth[7:] not in store.tokens:
                    self._json(
                        401,
                        {
                            "error": {
                                "code": 401,
                                "message": "Invalid Credentials",
                                "errors": [{"reason": "authError", "location": "Authorization"}],
                            }
                        },
                    )
                    return
                bits = parts.path.split("/")  # '', storage, v1, b, BUCKET, o, OBJECT
                query = urllib.parse.parse_qs(parts.query)
                if len(bits) != 7 or bits[1:4] != ["storage", "v1", "b"] or bits[5] != "o":
                    self._json(404, {"error": {"code": 404, "message": "Not Found"}})
                    return
                name = (urllib.parse.unquote(bits[4]), urllib.parse.unquote(bits[6]))
                data = store.objects.get(name)
                if data is None or query.get("alt") != ["media"]:
                    self._json(
                        404,
                        {"error": {"code": 404, "message": f"No such object: {'/'.join(name)}"}},
                    )
                    return
                self._send(200, data, "application/octet-stream")

        with _serving(Handler) as url:
            self.url = url
            yield url


def service_account_token_check(audience: str, subject: str) -> Callable[[str], bool]:
    """Accepts a Kubernetes service-account JWT for `subject` with `audience` (its claims
    only: the stand-in trusts the API server that issued it, as an OIDC provider would)."""

    def check(token: str) -> bool:
        try:
            claims = json.loads(_b64url_decode(token.split(".")[1]))
        except (IndexError, ValueError):
            return False
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        return (
            audience in auds and claims.get("sub") == subject and claims.get("exp", 0) > time.time()
        )

    return check


class StsStub:
    """AssumeRoleWithWebIdentity: one token in, one set of temporary keys out."""

    def __init__(
        self, token: str | Callable[[str], bool], role_arn: str, issued: Mapping[str, str]
    ) -> None:
        self.token = token  # the one token accepted, or a check of the token
        self.role_arn = role_arn
        self.issued = dict(issued)  # AccessKeyId, SecretAccessKey, SessionToken
        self.seen = Seen()

    @contextmanager
    def running(self) -> Iterator[str]:
        sts = self

        class Handler(_Base):
            def do_POST(self) -> None:
                sts.seen.add("POST", self.path, self.headers)
                form = urllib.parse.parse_qs(self._body().decode())
                ok = (
                    form.get("Action") == ["AssumeRoleWithWebIdentity"]
                    and form.get("Version") == ["2011-06-15"]
                    and form.get("RoleArn") == [sts.role_arn]
                    and len(form.get("WebIdentityToken", [])) == 1
                    and (
                        sts.token(form["WebIdentityToken"][0])
                        if callable(sts.token)
                        else form["WebIdentityToken"] == [sts.token]
                    )
                )
                if not ok:
                    body = (
                        f'<ErrorResponse xmlns="{STS_NS}"><Error><Type>Sender</Type>'
                        "<Code>InvalidIdentityToken</Code><Message>Couldn't retrieve "
                        "verification key from your identity provider, please reference "
                        "AssumeRoleWithWebIdentity documentation for requirements</Message>"
                        "</Error><RequestId>0</RequestId></ErrorResponse>"
                    )
                    self._send(400, body.encode(), "text/xml")
                    return
                c = sts.issued
                body = (
                    f'<AssumeRoleWithWebIdentityResponse xmlns="{STS_NS}">'
                    "<AssumeRoleWithWebIdentityResult><Credentials>"
                    f"<AccessKeyId>{c['AccessKeyId']}</AccessKeyId>"
                    f"<SecretAccessKey>{c['SecretAccessKey']}</SecretAccessKey>"
                    f"<SessionToken>{c.get('SessionToken', '')}</SessionToken>"
                    "<Expiration>2099-01-01T00:00:00Z</Expiration>"
                    "</Credentials></AssumeRoleWithWebIdentityResult>"
                    "</AssumeRoleWithWebIdentityResponse>"
                )
                self._send(200, body.encode(), "text/xml")

        with _serving(Handler) as url:
            yield url


class TokenStore:
    """An HTTP artifact store that wants one Bearer token or one username and password."""

    def __init__(
        self, files: Mapping[str, bytes], *, token: str = "", basic: tuple[str, str] = ("", "")
    ):
        self.files = dict(files)
        self.token = token
        self.basic = basic
        self.seen = Seen()

    @contextmanager
    def running(self) -> Iterator[str]:
        store = self

        class Handler(_Base):
            def do_GET(self) -> None:
                store.seen.add("GET", self.path, self.headers)
                auth = self.headers.get("Authorization", "")
                wanted = set()
                if store.token:
                    wanted.add(f"Bearer {store.token}")
                if store.basic[0]:
                    pair = f"{store.basic[0]}:{store.basic[1]}".encode()
                    wanted.add("Basic " + base64.b64encode(pair).decode())
                if auth not in wanted:
                    self._send(401, b"401 Unauthorized: bad or missing token\n", "text/plain")
                    return
                data = store.files.get(self.path)
                if data is None:
                    self._send(404, b"not found\n", "text/plain")
                    return
                self._send(200, data, "application/octet-stream")

        with _serving(Handler) as url:
            yield url
