"""Request signing for private artifacts: AWS Signature Version 4 and RS256 JSON Web Tokens.

`smallfleet fetch` downloads from private buckets without an SDK in the
image, so the two signatures it needs are written out here from their
published specifications, with the standard library only:

- **SigV4** (AWS's "Signature Version 4 signing process"): a canonical
  request, a string to sign, a key derived from the secret key by four
  HMAC-SHA256 steps, and the `Authorization` header. S3-compatible stores
  (MinIO, versitygw, SeaweedFS, Ceph RGW) check the same signature.
- **RS256 JWTs** (RFC 7515/7518, signature RSASSA-PKCS1-v1_5 with SHA-256,
  RFC 8017 section 8.2): the assertion a Google service-account key signs
  to obtain an access token (RFC 7523's JWT-bearer grant). The private key is
  read from the key file's PEM (PKCS#8, or PKCS#1) with a minimal DER reader.

Pure: no I/O and no clock; the caller passes the time. Secrets are held in
values whose `repr` leaves them out, so a traceback or a log line that shows
one shows no key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

ALGORITHM: Final = "AWS4-HMAC-SHA256"
# The sha256 of an empty payload (a GET's body), as S3 wants it in x-amz-content-sha256.
EMPTY_SHA256: Final = hashlib.sha256(b"").hexdigest()
# AWS's UriEncode keeps only these unencoded (RFC 3986's unreserved characters).
_UNRESERVED: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
_SPACES: Final = re.compile(r" +")
# DER DigestInfo prefix for SHA-256 (RFC 8017 section 9.2, note 1).
_SHA256_DIGEST_INFO: Final = bytes.fromhex("3031300d060960864801650304020105000420")
_PEM: Final = re.compile(
    r"-----BEGIN (RSA )?PRIVATE KEY-----(?P<body>[A-Za-z0-9+/=\s]+)-----END (RSA )?PRIVATE KEY-----"
)


class SigningError(ValueError):
    """A key that cannot sign (not PEM, not RSA, malformed DER); the message names no key bytes."""


@dataclass(frozen=True)
class AwsCredentials:
    """An access key pair, optionally temporary (with a session token)."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


def uri_encode(text: str, *, keep_slash: bool = False) -> str:
    """AWS's UriEncode: every byte but the unreserved characters as %XX (upper-case hex)."""
    out: list[str] = []
    for byte in text.encode():
        char = chr(byte)
        if char in _UNRESERVED or (keep_slash and char == "/"):
            out.append(char)
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret_access_key: str, date: str, region: str, service: str) -> bytes:
    """kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")."""
    k_date = _hmac(("AWS4" + secret_access_key).encode(), date)
    return _hmac(_hmac(_hmac(k_date, region), service), "aws4_request")


def canonical_request(
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    payload_sha256: str,
) -> tuple[str, str]:
    """The canonical request and its signed-headers list.

    `path` is already URI-encoded as sent (S3 encodes each key segment once);
    query parameters are given raw and encoded here; header values are
    trimmed and their inner runs of spaces folded to one, as the spec says.
    """
    q = "&".join(f"{k}={v}" for k, v in sorted((uri_encode(k), uri_encode(v)) for k, v in query))
    canon = sorted(
        (name.lower().strip(), _SPACES.sub(" ", value.strip())) for name, value in headers.items()
    )
    signed = ";".join(name for name, _ in canon)
    lines = "".join(f"{name}:{value}\n" for name, value in canon)
    return "\n".join([method, path or "/", q, lines, signed, payload_sha256]), signed


def string_to_sign(amz_date: str, scope: str, request: str) -> str:
    digest = hashlib.sha256(request.encode()).hexdigest()
    return "\n".join([ALGORITHM, amz_date, scope, digest])


def authorization(
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    payload_sha256: str,
    credentials: AwsCredentials,
    region: str,
    service: str,
    amz_date: str,
) -> str:
    """The `Authorization` header value for a request whose `headers` (host and
    x-amz-date included) are all signed; `amz_date` is YYYYMMDDTHHMMSSZ."""
    date = amz_date[:8]
    scope = f"{date}/{region}/{service}/aws4_request"
    request, signed = canonical_request(method, path, query, headers, payload_sha256)
    key = signing_key(credentials.secret_access_key, date, region, service)
    signature = hmac.new(
        key, string_to_sign(amz_date, scope, request).encode(), hashlib.sha256
    ).hexdigest()
    return (
        f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )


def s3_get_headers(
    host: str, path: str, credentials: AwsCredentials, region: str, amz_date: str
) -> dict[str, str]:
    """The headers of a signed S3 GET of `path` (encoded) on `host` (with its port, if any)."""
    headers = {"host": host, "x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": amz_date}
    if credentials.session_token:
        headers["x-amz-security-token"] = credentials.session_token
    headers["Authorization"] = authorization(
        "GET", path, (), headers, EMPTY_SHA256, credentials, region, "s3", amz_date
    )
    del headers["host"]  # the HTTP client sends it
    return headers


# ---- RSA (RSASSA-PKCS1-v1_5, SHA-256) and JWT ----


@dataclass(frozen=True)
class RsaPrivateKey:
    """The parts of an RSA private key that signing needs."""

    n: int = field(repr=False)
    d: int = field(repr=False)

    @property
    def size(self) -> int:
        return (self.n.bit_length() + 7) // 8


def _der(data: bytes, at: int) -> tuple[int, bytes, int]:
    """One DER element at `at`: (tag, contents, offset after it)."""
    if at + 2 > len(data):
        raise SigningError("truncated DER")
    tag, length = data[at], data[at + 1]
    at += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or at + count > len(data):
            raise SigningError("bad DER length")
        length = int.from_bytes(data[at : at + count], "big")
        at += count
    if at + length > len(data):
        raise SigningError("truncated DER")
    return tag, data[at : at + length], at + length


def _sequence(data: bytes) -> list[tuple[int, bytes]]:
    tag, body, _ = _der(data, 0)
    if tag != 0x30:
        raise SigningError("expected a DER SEQUENCE")
    items, at = [], 0
    while at < len(body):
        t, contents, at = _der(body, at)
        items.append((t, contents))
    return items


def load_rsa_private_key(pem: str) -> RsaPrivateKey:
    """An RSA key from PEM: PKCS#8 (`BEGIN PRIVATE KEY`, as in Google key files) or PKCS#1."""
    m = _PEM.search(pem)
    if m is None:
        raise SigningError("no PEM private key found")
    try:
        der = base64.b64decode("".join(m.group("body").split()), validate=True)
    except ValueError as e:
        raise SigningError("the PEM body is not base64") from e
    items = _sequence(der)
    if len(items) >= 3 and items[1][0] == 0x30 and items[2][0] == 0x04:  # PKCS#8 wrapper
        items = _sequence(items[2][1])
    ints = [int.from_bytes(v, "big") for t, v in items if t == 0x02]
    if len(ints) < 4:
        raise SigningError("not an RSA private key")
    _version, n, _e, d = ints[:4]
    if n.bit_length() < 1024:
        raise SigningError("RSA key too short")
    return RsaPrivateKey(n=n, d=d)


def rsa_sha256_sign(key: RsaPrivateKey, message: bytes) -> bytes:
    """RSASSA-PKCS1-v1_5 signature of `message` with SHA-256 (RFC 8017 sections 8.2.1, 9.2)."""
    t = _SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
    k = key.size
    if k < len(t) + 11:
        raise SigningError("RSA key too short")
    em = b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t
    return pow(int.from_bytes(em, "big"), key.d, key.n).to_bytes(k, "big")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _json_b64(value: Mapping[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":"), sort_keys=True).encode())


def rs256_jwt(key: RsaPrivateKey, claims: Mapping[str, Any], key_id: str | None = None) -> str:
    """A compact JWS: base64url(header).base64url(claims).base64url(RS256 signature)."""
    header: dict[str, Any] = {"alg": "RS256", "typ": "JWT"}
    if key_id:
        header["kid"] = key_id
    signing_input = f"{_json_b64(header)}.{_json_b64(claims)}"
    return f"{signing_input}.{b64url(rsa_sha256_sign(key, signing_input.encode()))}"


def google_assertion(
    client_email: str, token_uri: str, scope: str, issued_at: int, lifetime: int = 3600
) -> dict[str, Any]:
    """The claims of a service account's JWT-bearer assertion, as Google documents them."""
    return {
        "iss": client_email,
        "scope": scope,
        "aud": token_uri,
        "iat": issued_at,
        "exp": issued_at + lifetime,
    }
