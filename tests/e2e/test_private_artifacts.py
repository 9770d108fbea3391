"""Private artifacts end to end: a real S3 server that verifies SigV4, the real fetch step.

versitygw (built from its Go module by `hack/build-bins.sh s3`) serves a
private bucket on 127.0.0.1 and checks every request's AWS Signature
Version 4. It refuses unsigned and wrongly signed requests, which the first
test asserts with requests signed here. Then two dedicated SmallModels on
the local node (`triton-local`, whose pods run as processes, so the fetch
init container really runs `smallfleet fetch` with the Secret's keys in its
environment): one with the right keys reaches Ready and answers an
inference; one with a wrong secret key is Stalled with ArtifactFailed and
the server's own SignatureDoesNotMatch.

The other ways in run through the real pod too: a Google service-account key
file mounted from a Secret (token endpoint and JSON API stand-ins that check
the JWT's signature with openssl), and IRSA: the local node's projected
service-account token, exchanged with an STS stand-in for versitygw's keys.

Secrets stay secret: after the run, the access keys, secret keys and the
carbon provider's token are searched for in everything the run captured:
the operator's log, the node's log, every event, the status of every object
in the namespace, the operator's metrics and the pods' termination messages.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import kubernetes
import pytest
from hack.cluster import REPO, assert_listening_on_loopback, free_ports
from tests.artifact_stores import (
    GoogleStore,
    StsStub,
    make_service_account_key,
    service_account_token_check,
)
from tests.e2e.cluster import Cluster, LocalNode, OperatorFactory
from tests.e2e.fuzzing import offline_verdict, server_verdict
from tests.e2e.test_placement_e2e import GridApi, operator_env
from tests.e2e.test_pod_settings_e2e import dedicated, model, pods_of
from tests.e2e.test_pools import DIM, condition, infer, triton_env

from smallfleet.core.signing import AwsCredentials, s3_get_headers
from smallfleet.core.spec import (
    MSG_CREDENTIALS_EXCLUSIVE,
    MSG_CREDENTIALS_GS,
    MSG_CREDENTIALS_HTTPS,
    MSG_CREDENTIALS_POOLED,
    MSG_CREDENTIALS_PVC,
    MSG_CREDENTIALS_S3,
    MSG_CREDENTIALS_SOURCE,
)
from smallfleet.fetch import Access, FetchError, fetch

BUCKET: Final = "private-models"
REGION: Final = "us-east-1"
START_TIMEOUT_S: Final = 30.0
READY_TIMEOUT_S: Final = 240.0  # a python-backend stub started on two shared cores
STALLED_TIMEOUT_S: Final = 60.0
# No proxy, whatever the environment says: everything here is on loopback.
OPENER: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    keys: AwsCredentials
    pid: int
    artifact_key: str
    digest: str


def versitygw() -> Path:
    """The versitygw binary, built on first use (its own cache key: hack/s3-versions.env)."""
    done = subprocess.run(
        [str(REPO / "hack" / "build-bins.sh"), "s3"],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if done.returncode != 0:
        pytest.fail(f"hack/build-bins.sh s3 failed:\n{done.stderr[-4000:]}")
    binary = Path(done.stdout.strip().splitlines()[-1]) / "versitygw"
    if not os.access(binary, os.X_OK):
        pytest.fail(f"hack/build-bins.sh s3 did not produce {binary}")
    return binary


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    root = tmp_path_factory.mktemp("s3")
    bucket = root / "data" / BUCKET
    bucket.mkdir(parents=True)
    artifact = triton_env()["index"]["hashed-ngrams"]
    source = Path(triton_env()["artifacts"]) / artifact["file"]
    key = f"team/{artifact['file']}"
    (bucket / "team").mkdir()
    shutil.copyfile(source, bucket / key)
    keys = AwsCredentials("AK" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30))
    (port,) = free_ports(1)
    log = (root / "versitygw.log").open("wb")
    proc = subprocess.Popen(
        [
            str(versitygw()),
            "--port",
            f"127.0.0.1:{port}",
            "--region",
            REGION,
            "posix",
            "--nometa",
            str(root / "data"),
        ],
        # The root keys by environment: never on a command line that `ps` shows.
        env={
            **os.environ,
            "ROOT_ACCESS_KEY_ID": keys.access_key_id,
            "ROOT_SECRET_ACCESS_KEY": keys.secret_access_key,
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"versitygw exited {proc.returncode}:\n{(root / 'versitygw.log').read_text()}"
                )
            try:
                OPENER.open(endpoint + "/", timeout=2).close()
                break
            except urllib.error.HTTPError:
                break  # it answers (403 to an anonymous request)
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"versitygw did not answer on {endpoint} within {START_TIMEOUT_S:g} s"
                    )
                time.sleep(0.2)
        yield S3Server(endpoint, keys, proc.pid, key, artifact["digest"])
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _get(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with OPENER.open(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _signed(s3: S3Server, keys: AwsCredentials) -> tuple[int, bytes]:
    path = f"/{BUCKET}/{s3.artifact_key}"
    host = s3.endpoint.removeprefix("http://")
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return _get(s3.endpoint + path, s3_get_headers(host, path, keys, REGION, amz_date))


def test_the_s3_server_listens_on_loopback_and_refuses_unsigned_and_wrongly_signed(
    s3: S3Server,
) -> None:
    assert assert_listening_on_loopback([s3.pid], "versitygw")
    anonymous = _get(f"{s3.endpoint}/{BUCKET}/{s3.artifact_key}", {})
    assert anonymous[0] == 403, anonymous
    wrong = _signed(s3, AwsCredentials(s3.keys.access_key_id, "not-" + s3.keys.secret_access_key))
    assert wrong[0] == 403 and b"SignatureDoesNotMatch" in wrong[1], wrong
    unknown = _signed(s3, AwsCredentials("AKUNKNOWN0000000", s3.keys.secret_access_key))
    # An unknown access key: refused in the server's words (versitygw: 404 XAdminUserNotFound).
    assert unknown[0] in (403, 404) and b"<Code>" in unknown[1], unknown
    ok = _signed(s3, s3.keys)
    assert ok[0] == 200
    assert "sha256:" + hashlib.sha256(ok[1]).hexdigest() == s3.digest


def test_fetch_signs_with_static_keys_or_keys_from_sts_and_quotes_the_refusal(
    s3: S3Server, tmp_path: Path
) -> None:
    uri = f"s3://{BUCKET}/{s3.artifact_key}"
    keys = Access(mode="s3-keys", s3_endpoint=s3.endpoint, s3_region=REGION)
    env = {
        "AWS_ACCESS_KEY_ID": s3.keys.access_key_id,
        "AWS_SECRET_ACCESS_KEY": s3.keys.secret_access_key,
    }
    fetch(uri, s3.digest, tmp_path / "static", "python", timeout=30, access=keys, environ=env)
    assert (tmp_path / "static" / "1").is_dir()
    with pytest.raises(FetchError) as refused:
        fetch(
            uri,
            s3.digest,
            tmp_path / "wrong",
            "python",
            timeout=30,
            access=keys,
            environ={**env, "AWS_SECRET_ACCESS_KEY": "x" + s3.keys.secret_access_key},
        )
    assert "HTTP 403 Forbidden" in str(refused.value)
    assert "SignatureDoesNotMatch: The request signature we calculated does not match" in str(
        refused.value
    )
    assert s3.keys.secret_access_key not in str(refused.value)
    assert not (tmp_path / "wrong").exists()
    # IRSA style: the projected token buys temporary keys from STS (a stand-in here).
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.projected.token")
    role = "arn:aws:iam::123456789012:role/model-reader"
    issued = {"AccessKeyId": s3.keys.access_key_id, "SecretAccessKey": s3.keys.secret_access_key}
    sts = StsStub(token.read_text(), role, issued)
    with sts.running() as sts_url:
        fetch(
            uri,
            s3.digest,
            tmp_path / "irsa",
            "python",
            timeout=30,
            access=Access(
                mode="s3-web-identity",
                s3_endpoint=s3.endpoint,
                s3_region=REGION,
                sts_endpoint=sts_url,
            ),
            environ={"AWS_ROLE_ARN": role, "AWS_WEB_IDENTITY_TOKEN_FILE": str(token)},
        )
    assert (tmp_path / "irsa" / "1").is_dir()
    assert len(sts.seen.requests) == 1


def private(name: str, s3: S3Server, secret: str) -> dict[str, Any]:
    doc = dedicated(name, "http://unused")
    doc["spec"]["model"] = {
        "uri": f"s3://{BUCKET}/{s3.artifact_key}",
        "digest": s3.digest,
        "format": "python",
        "credentials": {
            "secretRef": {"name": secret},
            "s3": {"endpoint": s3.endpoint, "region": REGION},
        },
    }
    return doc


def key_secret(name: str, keys: AwsCredentials) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "Opaque",
        "stringData": {
            "AWS_ACCESS_KEY_ID": keys.access_key_id,
            "AWS_SECRET_ACCESS_KEY": keys.secret_access_key,
        },
    }


def _stalled(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    cond = condition(model(cluster, namespace, name), "Stalled")
    return cond if cond.get("status") == "True" else None


def _verified(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    m = model(cluster, namespace, name)
    return m if condition(m, "ArtifactVerified").get("status") == "True" else None


def _status(cluster: Cluster, namespace: str, name: str) -> str:
    return f"{name}: " + json.dumps(model(cluster, namespace, name).get("status"))[:2000]


def test_private_models_are_ready_wrong_keys_stall_in_the_servers_words_and_no_secret_leaks(
    cluster: Cluster,
    local_node: LocalNode,
    namespace: str,
    operator_process: OperatorFactory,
    s3: S3Server,
    tmp_path: Path,
) -> None:
    """One operator, one namespace, five models: static keys (Ready, answering), wrong keys
    and a missing Secret (Stalled), a GCS key file and an IRSA token (fetched)."""
    grid = GridApi()
    grid.set(eu_north_1=40, eu_west_1=300, us_east_1=400)
    wrong = AwsCredentials(s3.keys.access_key_id, "wrong-" + secrets.token_urlsafe(24))
    artifact = Path(triton_env()["artifacts"]) / triton_env()["index"]["hashed-ngrams"]["file"]
    key = make_service_account_key(tmp_path, "fetcher@e2e.iam.example")
    google = GoogleStore(key, {(BUCKET, s3.artifact_key): artifact.read_bytes()})
    role = "arn:aws:iam::123456789012:role/model-reader"
    sts = StsStub(
        service_account_token_check(
            "sts.amazonaws.com", f"system:serviceaccount:{namespace}:default"
        ),
        role,
        {"AccessKeyId": s3.keys.access_key_id, "SecretAccessKey": s3.keys.secret_access_key},
    )
    with google.running() as google_url, sts.running() as sts_url:
        gcs = private("private-gcs", s3, "gcs-key")
        gcs["spec"]["model"]["uri"] = f"gs://{BUCKET}/{s3.artifact_key}"
        gcs["spec"]["model"]["credentials"] = {
            "secretRef": {"name": "gcs-key"},
            "gs": {"endpoint": google_url},
        }
        irsa = private("private-irsa", s3, "unused")
        irsa["spec"]["model"]["credentials"] = {
            "s3": {
                "endpoint": s3.endpoint,
                "region": REGION,
                "webIdentity": {"roleArn": role, "stsEndpoint": sts_url},
            }
        }
        key_file = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "gcs-key"},
            "stringData": {"key.json": json.dumps(key.key_file(f"{google_url}/token"))},
        }
        operator = operator_process(namespace, env=operator_env(grid))
        try:
            # The pods run as the namespace's default ServiceAccount, which a controller makes.
            cluster.wait_for(
                lambda: (
                    cluster.kubectl(
                        "get", "serviceaccount", "default", "-n", namespace, check=False
                    ).returncode
                    == 0
                ),
                30,
                f"no default ServiceAccount in {namespace}",
            )
            started = time.monotonic()
            cluster.apply_yaml(
                "\n---\n".join(
                    json.dumps(d)
                    for d in (
                        key_secret("s3-reader", s3.keys),
                        key_secret("s3-wrong", wrong),
                        key_file,
                        private("private-ok", s3, "s3-reader"),
                        private("private-wrong", s3, "s3-wrong"),
                        private("private-nosecret", s3, "s3-missing"),
                        gcs,
                        irsa,
                    )
                ),
                namespace=namespace,
            )

            cond = cluster.wait_for(
                lambda: _stalled(cluster, namespace, "private-wrong"),
                STALLED_TIMEOUT_S,
                lambda: _status(cluster, namespace, "private-wrong"),
                interval=0.5,
            )
            print(
                f"\nprivate-wrong: Stalled after {time.monotonic() - started:.1f} s: {cond['message']}"
            )
            assert cond["reason"] == "ArtifactFailed", cond
            assert "HTTP 403" in cond["message"], cond
            assert "SignatureDoesNotMatch" in cond["message"], cond

            # A Secret that does not exist: the kubelet's words, naming it.
            missing = cluster.wait_for(
                lambda: _stalled(cluster, namespace, "private-nosecret"),
                STALLED_TIMEOUT_S,
                lambda: _status(cluster, namespace, "private-nosecret"),
                interval=0.5,
            )
            assert missing["reason"] == "ArtifactFailed", missing
            assert "CreateContainerConfigError" in missing["message"], missing
            assert "s3-missing" in missing["message"], missing

            # A key file from a Secret volume, and a projected token traded with STS.
            for name in ("private-gcs", "private-irsa"):
                cluster.wait_for(
                    functools.partial(_verified, cluster, namespace, name),
                    READY_TIMEOUT_S,
                    functools.partial(_status, cluster, namespace, name),
                )
                print(f"{name}: artifact verified after {time.monotonic() - started:.1f} s")
            # Their Triton servers are not needed: two shared cores.
            cluster.kubectl(
                "delete", "sm", "private-gcs", "private-irsa", "-n", namespace, "--wait=false"
            )

            ok = cluster.wait_for(
                lambda: (
                    m
                    if condition(m := model(cluster, namespace, "private-ok"), "Ready").get(
                        "status"
                    )
                    == "True"
                    else None
                ),
                READY_TIMEOUT_S,
                lambda: (
                    _status(cluster, namespace, "private-ok")
                    + "\n--- node log\n"
                    + "\n".join(local_node.log().splitlines()[-30:])
                ),
            )
            print(f"private-ok: Ready after {time.monotonic() - started:.1f} s")
            assert condition(ok, "ArtifactVerified").get("status") == "True", ok["status"]
            (served,) = pods_of(cluster, namespace, "private-ok")
            assert infer(served["status"]["podIP"], "private-ok", "a private cat").shape == (1, DIM)
            # The Triton container never sees the keys, not even by reference.
            (triton,) = [c for c in served["spec"]["containers"] if c["name"] == "triton"]
            assert "secretKeyRef" not in json.dumps(triton)

            # Secrets stay secret: nowhere in what the run captured.
            captured = {
                "operator log": operator.log(),
                "operator metrics": operator.metrics(),
                "node log": local_node.log(),
                "events": json.dumps(cluster.kubectl_json("get", "events", "--all-namespaces")),
                "status": json.dumps(
                    [
                        {
                            "kind": o["kind"],
                            "name": o["metadata"]["name"],
                            "status": o.get("status"),
                        }
                        for kind in (
                            "smallmodels",
                            "pods",
                            "deployments",
                            "replicasets",
                            "services",
                        )
                        for o in cluster.kubectl_json("get", kind, "-n", namespace)["items"]
                    ]
                ),
                "termination messages": json.dumps(
                    [
                        (s.get("state"), s.get("lastState"))
                        for p in cluster.kubectl_json("get", "pods", "-n", namespace)["items"]
                        for key in ("initContainerStatuses", "containerStatuses")
                        for s in (p.get("status") or {}).get(key) or []
                    ]
                ),
            }
            assert "SignatureDoesNotMatch" in captured["termination messages"]
        finally:
            grid.server.close()
    methods = [(m, p.split("?")[0]) for m, p, _ in google.seen.requests]
    assert ("POST", "/token") in methods
    assert ("GET", f"/storage/v1/b/{BUCKET}/o/{s3.artifact_key.replace('/', '%2F')}") in methods
    assert len(sts.seen.requests) >= 1
    values = {
        "secret key": s3.keys.secret_access_key,
        "wrong secret key": wrong.secret_access_key,
        "provider token": operator_env(grid)["SMALLFLEET_ELECTRICITYMAPS_TOKEN"],
        "service-account private key": "".join(key.private_pem.splitlines()[1:3]),
        **{f"Google access token {i}": t for i, t in enumerate(sorted(google.tokens))},
    }
    leaks = [
        f"{what} in {where}"
        for where, text in captured.items()
        for what, value in values.items()
        if value in text
    ]
    assert leaks == [], leaks


# (uri, credentials, extra spec, the words the API server and `smallfleet validate` both use)
CREDENTIAL_CASES: Final[list[tuple[str, dict[str, Any], dict[str, Any], str | None]]] = [
    (
        "s3://b/m.onnx",
        {"secretRef": {"name": "k"}, "s3": {"endpoint": "https://s3.x:9000"}},
        {},
        None,
    ),
    ("s3://b/m.onnx", {"s3": {"webIdentity": {"roleArn": "arn:aws:iam::1:role/r"}}}, {}, None),
    ("gs://b/m.onnx", {"gs": {"workloadIdentity": True}}, {}, None),
    ("https://h/m.onnx", {"secretRef": {"name": "k"}, "https": {"auth": "basic"}}, {}, None),
    ("pvc://c/m.onnx", {"secretRef": {"name": "k"}}, {}, MSG_CREDENTIALS_PVC),
    ("gs://b/m.onnx", {"secretRef": {"name": "k"}, "s3": {}}, {}, MSG_CREDENTIALS_S3),
    ("s3://b/m.onnx", {"secretRef": {"name": "k"}, "gs": {}}, {}, MSG_CREDENTIALS_GS),
    ("s3://b/m.onnx", {"secretRef": {"name": "k"}, "https": {}}, {}, MSG_CREDENTIALS_HTTPS),
    ("s3://b/m.onnx", {"s3": {"region": "eu-west-1"}}, {}, MSG_CREDENTIALS_SOURCE),
    ("gs://b/m.onnx", {"gs": {"workloadIdentity": False}}, {}, MSG_CREDENTIALS_SOURCE),
    (
        "gs://b/m.onnx",
        {"secretRef": {"name": "k"}, "gs": {"workloadIdentity": True}},
        {},
        MSG_CREDENTIALS_EXCLUSIVE,
    ),
    (
        "s3://b/m.onnx",
        {"secretRef": {"name": "k"}},
        {"serving": {"pool": "p"}},
        MSG_CREDENTIALS_POOLED,
    ),
    (
        "s3://b/m.onnx",
        {"secretRef": {"name": "k"}, "s3": {"endpoint": "s3.x/path"}},
        {},
        "spec.model.credentials.s3.endpoint",
    ),
]


def test_the_api_server_and_the_offline_validator_agree_on_credentials(
    cluster: Cluster, crds_installed: list[str]
) -> None:
    namespace = "default"  # dry runs only: nothing is created
    client = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
    api = kubernetes.client.CustomObjectsApi(client)
    problems = []
    for i, (uri, credentials, extra, words) in enumerate(CREDENTIAL_CASES):
        obj = {
            "apiVersion": "serving.smallfleet.io/v1alpha1",
            "kind": "SmallModel",
            "metadata": {"name": f"cred-{i}"},
            "spec": {
                "model": {
                    "uri": uri,
                    "digest": "sha256:" + "a" * 64,
                    "format": "onnx",
                    "credentials": credentials,
                },
                "resources": {"gpus": 0},
                "card": {"owner": "e2e", "license": "MIT", "description": "credentials"},
                **extra,
            },
        }
        server, offline = server_verdict(api, namespace, obj), offline_verdict(obj, namespace)
        if server.accepted != (words is None) or offline.accepted != (words is None):
            problems.append(f"case {i}: server {server.message!r}, offline {offline.message!r}")
        elif words is not None and not (words in server.message and words in offline.message):
            problems.append(
                f"case {i}: {words!r} not in server {server.message!r} or offline {offline.message!r}"
            )
    assert problems == [], "\n".join(problems)
