"""`spec.model.credentials`: validated as the CRD validates it, rendered into the fetch step only.

The Triton container runs model code, so it must never see a credential; the
operator must never need to read a Secret. Both are checked on the rendered
Deployment: the Secret is referenced (secretKeyRef, a secret volume, a
projected token) only by the fetch init container of the model it belongs to.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Final

import pytest
import yaml

from smallfleet.core.credentials import auth_mode
from smallfleet.core.render import plan_for_model, render_children
from smallfleet.core.spec import (
    MSG_CREDENTIALS_EXCLUSIVE,
    MSG_CREDENTIALS_GS,
    MSG_CREDENTIALS_HTTPS,
    MSG_CREDENTIALS_POOLED,
    MSG_CREDENTIALS_PVC,
    MSG_CREDENTIALS_S3,
    MSG_CREDENTIALS_SOURCE,
    Credentials,
    GsAccess,
    S3Access,
    SpecError,
    parse_small_model,
)
from smallfleet.settings import Settings

ROOT: Final = Path(__file__).resolve().parents[2]
BASE: Final[dict[str, Any]] = {
    "apiVersion": "serving.smallfleet.io/v1alpha1",
    "kind": "SmallModel",
    "metadata": {"name": "private", "namespace": "team"},
    "spec": {
        "model": {
            "uri": "s3://private-models/minilm/model.onnx",
            "digest": "sha256:" + "a" * 64,
            "format": "onnx",
        },
        "resources": {"gpus": 0},
        "card": {"owner": "team", "license": "MIT", "description": "a private model"},
    },
}


def model(uri: str, credentials: dict[str, Any], **spec: Any) -> dict[str, Any]:
    obj = copy.deepcopy(BASE)
    obj["spec"]["model"]["uri"] = uri
    obj["spec"]["model"]["credentials"] = credentials
    obj["spec"].update(spec)
    return obj


def test_static_keys_on_a_custom_endpoint_parse_with_defaults() -> None:
    spec = parse_small_model(
        model(
            "s3://private-models/minilm/model.onnx",
            {"secretRef": {"name": "s3-keys"}, "s3": {"endpoint": "http://127.0.0.1:7070"}},
        )
    )
    assert spec.model.credentials == Credentials(
        secret_name="s3-keys", s3=S3Access(region="us-east-1", endpoint="http://127.0.0.1:7070")
    )
    assert auth_mode(spec.model) == "s3-keys"


def test_identities_parse() -> None:
    web = parse_small_model(
        model(
            "s3://b/k.onnx",
            {"s3": {"region": "eu-west-1", "webIdentity": {"roleArn": "arn:aws:iam::1:role/r"}}},
        )
    ).model
    assert web.credentials is not None and web.credentials.s3 == S3Access(
        region="eu-west-1", role_arn="arn:aws:iam::1:role/r", audience="sts.amazonaws.com"
    )
    assert auth_mode(web) == "s3-web-identity"
    gke = parse_small_model(model("gs://b/k.onnx", {"gs": {"workloadIdentity": True}})).model
    assert gke.credentials is not None and gke.credentials.gs == GsAccess(workload_identity=True)
    assert auth_mode(gke) == "gs-workload-identity"
    basic = parse_small_model(
        model("https://h/k.onnx", {"secretRef": {"name": "s"}, "https": {"auth": "basic"}})
    ).model
    assert auth_mode(basic) == "http-basic"


@pytest.mark.parametrize(
    ("uri", "credentials", "extra", "path", "message"),
    [
        (
            "pvc://claim/m.onnx",
            {"secretRef": {"name": "s"}},
            {},
            "spec.model.credentials",
            MSG_CREDENTIALS_PVC,
        ),
        (
            "gs://b/m.onnx",
            {"secretRef": {"name": "s"}, "s3": {}},
            {},
            "spec.model.credentials.s3",
            MSG_CREDENTIALS_S3,
        ),
        (
            "s3://b/m.onnx",
            {"secretRef": {"name": "s"}, "gs": {}},
            {},
            "spec.model.credentials.gs",
            MSG_CREDENTIALS_GS,
        ),
        (
            "s3://b/m.onnx",
            {"secretRef": {"name": "s"}, "https": {}},
            {},
            "spec.model.credentials.https",
            MSG_CREDENTIALS_HTTPS,
        ),
        (
            "s3://b/m.onnx",
            {"s3": {"region": "eu-west-1"}},
            {},
            "spec.model.credentials",
            MSG_CREDENTIALS_SOURCE,
        ),
        (
            "gs://b/m.onnx",
            {"secretRef": {"name": "s"}, "gs": {"workloadIdentity": True}},
            {},
            "spec.model.credentials",
            MSG_CREDENTIALS_EXCLUSIVE,
        ),
        (
            "s3://b/m.onnx",
            {"secretRef": {"name": "s"}},
            {"serving": {"pool": "shared"}},
            "spec.model.credentials",
            MSG_CREDENTIALS_POOLED,
        ),
    ],
)
def test_refused_as_the_api_server_refuses(
    uri: str, credentials: dict[str, Any], extra: dict[str, Any], path: str, message: str
) -> None:
    with pytest.raises(SpecError) as info:
        parse_small_model(model(uri, credentials, **extra))
    found = [(e.path, e.message) for e in info.value.errors]
    assert any(p == path and message in m for p, m in found), found


def test_the_crd_states_each_rule_with_the_same_words() -> None:
    text = (ROOT / "crds" / "smallmodels.serving.smallfleet.io.yaml").read_text()
    rules = [r["message"] for doc in yaml.safe_load_all(text) for r in _validations(doc)]
    for message in (
        MSG_CREDENTIALS_PVC,
        MSG_CREDENTIALS_S3,
        MSG_CREDENTIALS_GS,
        MSG_CREDENTIALS_HTTPS,
        MSG_CREDENTIALS_SOURCE,
        MSG_CREDENTIALS_EXCLUSIVE,
        MSG_CREDENTIALS_POOLED,
    ):
        assert message in rules


def _validations(node: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if isinstance(node, dict):
        out += node.get("x-kubernetes-validations", [])
        for v in node.values():
            out += _validations(v)
    elif isinstance(node, list):
        for v in node:
            out += _validations(v)
    return out


# ---- rendering ----


def _pod(obj: dict[str, Any]) -> dict[str, Any]:
    plan = plan_for_model(parse_small_model(obj), Settings())
    (deployment,) = [
        c
        for c in render_children(plan, owner=None, regions={"eu-west-1": 1})
        if c["kind"] == "Deployment"
    ]
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


def _fetcher(pod: dict[str, Any]) -> dict[str, Any]:
    (c,) = [c for c in pod["initContainers"] if c["name"].startswith("fetch-")]
    return c


def _secret_refs(node: Any) -> list[str]:
    """Every place under `node` that names a Secret or a service-account token."""
    found: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("secretKeyRef", "secret", "secretRef", "serviceAccountToken"):
                found.append(k)
            found += _secret_refs(v)
    elif isinstance(node, list):
        for v in node:
            found += _secret_refs(v)
    return found


def test_static_keys_reach_only_the_fetch_container_by_reference() -> None:
    pod = _pod(
        model(
            "s3://private-models/minilm/model.onnx",
            {
                "secretRef": {"name": "s3-keys"},
                "s3": {"endpoint": "http://127.0.0.1:7070", "region": "eu-west-1"},
            },
        )
    )
    fetcher = _fetcher(pod)
    assert fetcher["command"][-6:] == [
        "--auth",
        "s3-keys",
        "--s3-region",
        "eu-west-1",
        "--s3-endpoint",
        "http://127.0.0.1:7070",
    ]
    env = {e["name"]: e for e in fetcher["env"]}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"] == {
        "secretKeyRef": {"name": "s3-keys", "key": "AWS_ACCESS_KEY_ID"}
    }
    assert (
        env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "AWS_SECRET_ACCESS_KEY"
    )
    assert env["AWS_SESSION_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert not any("value" in e and "SECRET" in e["name"] for e in fetcher["env"])
    (triton,) = pod["containers"]
    assert _secret_refs(triton) == []
    assert _secret_refs([c for c in pod["initContainers"] if c is not fetcher]) == []


def test_a_gcs_key_is_a_secret_volume_mounted_into_the_fetch_container_alone() -> None:
    pod = _pod(model("gs://private-models/m.onnx", {"secretRef": {"name": "gcs-key"}}))
    fetcher = _fetcher(pod)
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == "gcs-key"
    assert volume["secret"]["items"] == [{"key": "key.json", "path": "key.json"}]
    mounts = {m["name"]: m for m in fetcher["volumeMounts"]}
    assert mounts[volume["name"]]["readOnly"] is True
    env = {e["name"]: e.get("value") for e in fetcher["env"]}
    assert (
        env["GOOGLE_APPLICATION_CREDENTIALS"] == mounts[volume["name"]]["mountPath"] + "/key.json"
    )
    for c in [*pod["containers"], *(c for c in pod["initContainers"] if c is not fetcher)]:
        assert volume["name"] not in {m["name"] for m in c.get("volumeMounts", [])}


def test_web_identity_projects_a_token_for_sts_into_the_fetch_container_alone() -> None:
    pod = _pod(
        model(
            "s3://b/m.onnx",
            {
                "s3": {
                    "webIdentity": {
                        "roleArn": "arn:aws:iam::1:role/r",
                        "stsEndpoint": "https://sts.example",
                    }
                }
            },
            pod={"serviceAccountName": "model-reader"},
        )
    )
    fetcher = _fetcher(pod)
    (volume,) = [v for v in pod["volumes"] if "projected" in v]
    (source,) = volume["projected"]["sources"]
    assert source["serviceAccountToken"]["audience"] == "sts.amazonaws.com"
    assert pod["serviceAccountName"] == "model-reader"
    assert pod["automountServiceAccountToken"] is False  # only this one token, only here
    env = {e["name"]: e.get("value") for e in fetcher["env"]}
    assert env["AWS_ROLE_ARN"] == "arn:aws:iam::1:role/r"
    assert env["AWS_WEB_IDENTITY_TOKEN_FILE"].endswith("/token")
    assert "--sts-endpoint" in fetcher["command"]
    (triton,) = pod["containers"]
    assert volume["name"] not in {m["name"] for m in triton["volumeMounts"]}


def test_bearer_and_basic_read_their_keys() -> None:
    bearer = _fetcher(_pod(model("https://h/m.onnx", {"secretRef": {"name": "tok"}})))
    assert [e["valueFrom"]["secretKeyRef"]["key"] for e in bearer["env"] if "valueFrom" in e] == [
        "token"
    ]
    basic = _fetcher(
        _pod(model("https://h/m.onnx", {"secretRef": {"name": "tok"}, "https": {"auth": "basic"}}))
    )
    assert [e["valueFrom"]["secretKeyRef"]["key"] for e in basic["env"] if "valueFrom" in e] == [
        "username",
        "password",
    ]


def test_anonymous_models_render_as_before() -> None:
    obj = copy.deepcopy(BASE)
    pod = _pod(obj)
    assert "--auth" not in _fetcher(pod)["command"]
    assert _secret_refs(pod) == []
