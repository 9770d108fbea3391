"""Private artifacts: SigV4 against AWS's published vectors, RS256 JWTs checked by openssl,
and `smallfleet fetch` against loopback stores that enforce authentication.

The stores (tests/artifact_stores.py) speak Google's token endpoint, the GCS
JSON API and the metadata server, STS AssumeRoleWithWebIdentity, and
Bearer/Basic HTTP. The S3 side against a server that verifies signatures
(versitygw) is in tests/e2e/test_private_artifacts.py.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest
from tests.artifact_stores import (
    GoogleStore,
    ServiceAccountKey,
    StsStub,
    TokenStore,
    make_service_account_key,
    openssl_verifies,
)

from smallfleet.core.signing import (
    EMPTY_SHA256,
    AwsCredentials,
    SigningError,
    authorization,
    load_rsa_private_key,
    rs256_jwt,
    s3_get_headers,
    signing_key,
    uri_encode,
)
from smallfleet.fetch import (
    Access,
    FetchError,
    fetch,
    redact,
    resolve,
    store_error,
)

ARTIFACT: Final = b"def execute(requests):\n    return requests\n"
DIGEST: Final = "sha256:" + hashlib.sha256(ARTIFACT).hexdigest()
# AWS's documentation example keys (not real credentials).
DOC_KEYS: Final = AwsCredentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
SUITE_KEYS: Final = AwsCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")


# ---- SigV4: AWS's published examples ----


def test_sigv4_test_suite_get_vanilla() -> None:
    """The Signature Version 4 test suite's `get-vanilla` case."""
    got = authorization(
        "GET",
        "/",
        (),
        {"Host": "example.amazonaws.com", "X-Amz-Date": "20150830T123600Z"},
        EMPTY_SHA256,
        SUITE_KEYS,
        "us-east-1",
        "service",
        "20150830T123600Z",
    )
    assert got == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host;x-amz-date, "
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    )


def test_sigv4_s3_documentation_get_object_and_list_objects() -> None:
    """The S3 API reference's header-based examples (GET Object with Range; ListObjects)."""
    headers = {
        "Host": "examplebucket.s3.amazonaws.com",
        "Range": "bytes=0-9",
        "x-amz-content-sha256": EMPTY_SHA256,
        "x-amz-date": "20130524T000000Z",
    }
    got = authorization(
        "GET",
        "/test.txt",
        (),
        headers,
        EMPTY_SHA256,
        DOC_KEYS,
        "us-east-1",
        "s3",
        "20130524T000000Z",
    )
    assert got.endswith(
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )
    assert "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date" in got
    listing = authorization(
        "GET",
        "/",
        [("max-keys", "2"), ("prefix", "J")],
        {k: v for k, v in headers.items() if k != "Range"},
        EMPTY_SHA256,
        DOC_KEYS,
        "us-east-1",
        "s3",
        "20130524T000000Z",
    )
    assert listing.endswith(
        "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
    )


def test_sigv4_signing_key_from_the_documentation() -> None:
    """AWS's "derive a signing key" example (secret ...EXAMPLEKEY, 20120215, us-east-1, iam)."""
    key = signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam")
    assert key.hex() == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"


def test_s3_headers_carry_the_session_token_signed_and_no_host() -> None:
    keys = AwsCredentials("AKID", "secret", "session-token-value")
    h = s3_get_headers("127.0.0.1:9000", "/b/k", keys, "us-east-1", "20260101T000000Z")
    assert h["x-amz-security-token"] == "session-token-value"
    assert "host;x-amz-content-sha256;x-amz-date;x-amz-security-token" in h["Authorization"]
    assert "host" not in h


def test_uri_encode_is_awss() -> None:
    assert uri_encode("a b/c~d*é") == "a%20b%2Fc~d%2A%C3%A9"
    assert uri_encode("dir/model file.onnx", keep_slash=True) == "dir/model%20file.onnx"


def test_secrets_stay_out_of_reprs() -> None:
    keys = AwsCredentials("AKID", "super-secret-key", "session-secret")
    assert "super-secret-key" not in repr(keys) and "session-secret" not in repr(keys)


# ---- RS256 ----


@pytest.fixture(scope="module")
def sa_key(tmp_path_factory: pytest.TempPathFactory) -> ServiceAccountKey:
    return make_service_account_key(tmp_path_factory.mktemp("keys"), "fetch@proj.iam.example")


def test_rs256_signatures_verify_with_openssl(sa_key: ServiceAccountKey) -> None:
    key = load_rsa_private_key(sa_key.private_pem)
    jwt = rs256_jwt(key, {"iss": "me", "exp": 2}, key_id="k1")
    head, claims, sig = jwt.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    assert json.loads(base64.urlsafe_b64decode(pad(head))) == {
        "alg": "RS256",
        "kid": "k1",
        "typ": "JWT",
    }
    signature = base64.urlsafe_b64decode(pad(sig))
    assert openssl_verifies(sa_key.public_pem_path, f"{head}.{claims}".encode(), signature)
    assert not openssl_verifies(sa_key.public_pem_path, f"{head}.{claims}x".encode(), signature)


def test_pkcs1_pem_signs_the_same(tmp_path: Path, sa_key: ServiceAccountKey) -> None:
    pkcs1 = subprocess.run(
        ["openssl", "pkey", "-traditional"],
        input=sa_key.private_pem,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "BEGIN RSA PRIVATE KEY" in pkcs1
    assert load_rsa_private_key(pkcs1) == load_rsa_private_key(sa_key.private_pem)


@pytest.mark.parametrize(
    "pem",
    [
        "not a key",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
        "-----BEGIN PRIVATE KEY-----\nMAMCAQA=\n-----END PRIVATE KEY-----",
    ],
)
def test_bad_keys_are_refused_without_quoting_them(pem: str) -> None:
    with pytest.raises(SigningError) as e:
        load_rsa_private_key(pem)
    assert "AAAA" not in str(e.value)


# ---- pure fetch parts ----


def test_resolve_addresses_private_objects() -> None:
    s3 = Access(mode="s3-keys", s3_region="eu-west-1", s3_endpoint="http://127.0.0.1:9000/")
    assert (
        resolve("s3://models/a b/m.onnx", access=s3).url
        == "http://127.0.0.1:9000/models/a%20b/m.onnx"
    )
    aws = Access(mode="s3-keys", s3_region="eu-west-1")
    assert resolve("s3://models/m.onnx", access=aws).url == (
        "https://models.s3.eu-west-1.amazonaws.com/m.onnx"
    )
    gs = Access(mode="gs-key")
    assert resolve("gs://bkt/dir/m.onnx", access=gs).url == (
        "https://storage.googleapis.com/storage/v1/b/bkt/o/dir%2Fm.onnx?alt=media"
    )


@pytest.mark.parametrize(
    ("uri", "access", "says"),
    [
        ("http://models.example/m.onnx", Access(mode="http-bearer"), "plain http://"),
        ("s3://b/k", Access(mode="gs-key"), "does not apply to s3://"),
        ("pvc://claim/k", Access(mode="s3-keys"), "does not apply to pvc://"),
    ],
)
def test_resolve_refuses(uri: str, access: Access, says: str) -> None:
    with pytest.raises(FetchError, match=says):
        resolve(uri, access=access)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SignatureDoesNotMatch</Code>'
            b"<Message>The request signature we calculated does not match the signature you "
            b"provided. Check your key and signing method.</Message><AWSAccessKeyId>AKIA"
            b"</AWSAccessKeyId><StringToSign>x</StringToSign></Error>",
            "SignatureDoesNotMatch: The request signature we calculated does not match the "
            "signature you provided. Check your key and signing method.",
        ),
        (b'{"error": {"code": 401, "message": "Invalid Credentials"}}', "Invalid Credentials"),
        (
            b'{"error": "invalid_grant", "error_description": "Invalid JWT Signature."}',
            "invalid_grant: Invalid JWT Signature.",
        ),
        (b"401 Unauthorized\nmore", "401 Unauthorized"),
        (b"", ""),
    ],
)
def test_store_error_quotes_the_stores_words(body: bytes, expected: str) -> None:
    assert store_error(body) == expected


def test_redact_hides_plain_and_encoded_forms() -> None:
    msg = "token a/b+c=d and a%2Fb%2Bc%3Dd, short xy"
    assert redact(msg, ["a/b+c=d", "xy"]) == "token [redacted] and [redacted], short xy"


# ---- fetch against stores that enforce authentication ----


def _snapshot(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


@pytest.fixture
def google(sa_key: ServiceAccountKey) -> Iterator[GoogleStore]:
    store = GoogleStore(sa_key, {("private-models", "team/m.py"): ARTIFACT})
    with store.running():
        yield store


def _key_file(tmp_path: Path, key: ServiceAccountKey, token_uri: str) -> Path:
    path = tmp_path / "key.json"
    path.write_text(json.dumps(key.key_file(token_uri)))
    return path


def test_gs_service_account_key_fetches_through_the_json_api(
    tmp_path: Path, google: GoogleStore, sa_key: ServiceAccountKey
) -> None:
    key = _key_file(tmp_path, sa_key, f"{google.url}/token")
    dest = tmp_path / "repo" / "m"
    summary = fetch(
        "gs://private-models/team/m.py",
        DIGEST,
        dest,
        "python",
        timeout=30,
        access=Access(mode="gs-key", gs_endpoint=google.url),
        environ={"GOOGLE_APPLICATION_CREDENTIALS": str(key)},
    )
    assert (dest / "1" / "model.py").read_bytes() == ARTIFACT, summary
    (_, token_path, _), (_, media_path, media_headers) = google.seen.requests
    assert token_path == "/token"
    assert media_path == "/storage/v1/b/private-models/o/team%2Fm.py?alt=media"
    assert media_headers["Authorization"].startswith("Bearer ya29.")


def test_gs_wrong_key_is_refused_in_googles_words_and_nothing_is_written(
    tmp_path: Path, google: GoogleStore, sa_key: ServiceAccountKey
) -> None:
    impostor = make_service_account_key(tmp_path, sa_key.client_email)
    forged = ServiceAccountKey(
        impostor.private_pem, impostor.public_pem_path, sa_key.client_email, sa_key.key_id
    )
    key = _key_file(tmp_path, forged, f"{google.url}/token")
    log = tmp_path / "termination-log"
    rc = _run_fetch(
        tmp_path,
        "gs://private-models/team/m.py",
        ["--auth", "gs-key", "--gs-endpoint", google.url],
        {"GOOGLE_APPLICATION_CREDENTIALS": str(key)},
    )
    message = log.read_text() if log.exists() else rc[1]
    assert rc[0] == 1
    assert "invalid_grant: Invalid JWT Signature." in message, message
    assert "BEGIN PRIVATE KEY" not in message and impostor.private_pem[40:80] not in message
    assert _snapshot(tmp_path / "repo") == []
    assert all(
        path != "/storage/v1/b/private-models/o/team%2Fm.py?alt=media"
        for _, path, _ in google.seen.requests
    )


def test_gs_workload_identity_asks_the_metadata_server(tmp_path: Path, google: GoogleStore) -> None:
    host = google.url.removeprefix("http://")
    fetch(
        "gs://private-models/team/m.py",
        DIGEST,
        tmp_path / "m",
        "python",
        timeout=30,
        access=Access(mode="gs-workload-identity", gs_endpoint=google.url),
        environ={"GCE_METADATA_HOST": host},
    )
    assert (tmp_path / "m" / "1" / "model.py").read_bytes() == ARTIFACT
    _method, path, headers = google.seen.requests[0]
    assert path == "/computeMetadata/v1/instance/service-accounts/default/token"
    assert headers["Metadata-Flavor"] == "Google"


def test_gs_without_a_valid_token_is_googles_401(tmp_path: Path, google: GoogleStore) -> None:
    url = f"{google.url}/storage/v1/b/private-models/o/team%2Fm.py?alt=media"
    with pytest.raises(FetchError, match=r"HTTP 401 Unauthorized from .*: Invalid Credentials"):
        _fetch_url(url, tmp_path, "bogus-token")


def _fetch_url(url: str, tmp_path: Path, token: str) -> str:
    return fetch(
        url,
        DIGEST,
        tmp_path / "m",
        "python",
        timeout=30,
        access=Access(mode="http-bearer"),
        environ={"SMALLFLEET_FETCH_TOKEN": token},
    )


def _run_fetch(tmp_path: Path, uri: str, extra: list[str], env: dict[str, str]) -> tuple[int, str]:
    """`smallfleet fetch` as the pod runs it: a process with the credentials in its environment."""
    log = tmp_path / "termination-log"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "smallfleet.cli",
            "fetch",
            "--uri",
            uri,
            "--digest",
            DIGEST,
            "--dest",
            str(tmp_path / "repo" / "m"),
            "--format",
            "python",
            "--termination-log",
            str(log),
            "--timeout",
            "30",
            *extra,
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return done.returncode, done.stdout + done.stderr


TOKEN: Final = "s3cr3t-bearer-token-9f8e7d"


@pytest.fixture
def token_store() -> Iterator[tuple[TokenStore, str]]:
    store = TokenStore({"/m.py": ARTIFACT}, token=TOKEN, basic=("reader", "pa55-w0rd!"))
    with store.running() as url:
        yield store, url


def test_bearer_and_basic_tokens_fetch(tmp_path: Path, token_store: tuple[TokenStore, str]) -> None:
    _store, url = token_store
    fetch(
        f"{url}/m.py",
        DIGEST,
        tmp_path / "a",
        "python",
        timeout=30,
        access=Access(mode="http-bearer"),
        environ={"SMALLFLEET_FETCH_TOKEN": TOKEN},
    )
    fetch(
        f"{url}/m.py",
        DIGEST,
        tmp_path / "b",
        "python",
        timeout=30,
        access=Access(mode="http-basic"),
        environ={"SMALLFLEET_FETCH_USERNAME": "reader", "SMALLFLEET_FETCH_PASSWORD": "pa55-w0rd!"},
    )
    assert (tmp_path / "a" / "1" / "model.py").read_bytes() == ARTIFACT
    assert (tmp_path / "b" / "1" / "model.py").read_bytes() == ARTIFACT


def test_a_wrong_token_is_the_servers_401_with_no_secret_in_the_message(
    tmp_path: Path, token_store: tuple[TokenStore, str]
) -> None:
    _, url = token_store
    rc, out = _run_fetch(
        tmp_path,
        f"{url}/m.py",
        ["--auth", "http-bearer"],
        {"SMALLFLEET_FETCH_TOKEN": "wrong-" + TOKEN},
    )
    message = (tmp_path / "termination-log").read_text()
    assert rc == 1
    assert (
        message
        == f"fetch failed: HTTP 401 Unauthorized from {url}/m.py: 401 Unauthorized: bad or missing token"
    )
    assert TOKEN not in out and TOKEN not in message
    assert _snapshot(tmp_path / "repo") == []


def test_credentials_do_not_follow_a_redirect_to_another_host(tmp_path: Path) -> None:
    elsewhere = TokenStore({"/m.py": ARTIFACT}, token=TOKEN)
    with elsewhere.running() as target:
        # 127.0.0.2 is another host to urllib; the token must not travel there.
        class Redirect(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(302)
                self.send_header("Location", target.replace("127.0.0.1", "localhost") + "/m.py")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        try:
            with pytest.raises(FetchError, match="HTTP 401"):
                _fetch_url(f"http://127.0.0.1:{httpd.server_address[1]}/m.py", tmp_path, TOKEN)
        finally:
            httpd.shutdown()
            httpd.server_close()
    ((_, _, headers),) = elsewhere.seen.requests
    assert "Authorization" not in headers


def test_sts_refusal_is_in_sts_words_and_hides_the_token(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("eyJ.projected-token.sig")
    sts = StsStub("another-token", "arn:aws:iam::123456789012:role/reader", {})
    with sts.running() as url, pytest.raises(FetchError) as e:
        fetch(
            "s3://models/m.py",
            DIGEST,
            tmp_path / "m",
            "python",
            timeout=30,
            access=Access(mode="s3-web-identity", s3_endpoint=url, sts_endpoint=url),
            environ={
                "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/reader",
                "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file),
            },
        )
    assert "InvalidIdentityToken: Couldn't retrieve verification key" in str(e.value)
    assert "projected-token" not in str(e.value)


def test_missing_credentials_say_which_variable(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="AWS_ACCESS_KEY_ID is not set"):
        fetch(
            "s3://b/m.py",
            DIGEST,
            tmp_path / "m",
            "python",
            timeout=5,
            access=Access(mode="s3-keys", s3_endpoint="http://127.0.0.1:9"),
            environ={},
        )


def test_a_secret_made_from_a_file_may_end_in_a_newline_but_not_hold_one(
    tmp_path: Path, token_store: tuple[TokenStore, str]
) -> None:
    _, url = token_store
    fetch(
        f"{url}/m.py",
        DIGEST,
        tmp_path / "a",
        "python",
        timeout=30,
        access=Access(mode="http-bearer"),
        environ={"SMALLFLEET_FETCH_TOKEN": TOKEN + "\n"},
    )
    assert (tmp_path / "a" / "1" / "model.py").read_bytes() == ARTIFACT
    split = TOKEN[:10] + "\n" + TOKEN[10:]
    rc, out = _run_fetch(
        tmp_path, f"{url}/m.py", ["--auth", "http-bearer"], {"SMALLFLEET_FETCH_TOKEN": split}
    )
    message = (tmp_path / "termination-log").read_text()
    assert rc == 1
    assert message == (
        "fetch failed: SMALLFLEET_FETCH_TOKEN holds a line break or control character: "
        "it must be one line"
    )
    assert TOKEN[:10] not in out and TOKEN[10:] not in out
