"""How a private artifact's credentials reach the fetch step, and only the fetch step.

`spec.model.credentials` names a Secret or a workload identity; this module
turns it into what one fetch init container needs: `smallfleet fetch` flags
(endpoints, region, the mode: never a secret), environment variables taken
from the Secret by `secretKeyRef`, and for a key file or a projected
service-account token a volume mounted into that container alone. The
kubelet resolves the references, so the operator never reads a Secret (its
RBAC has no access to Secrets at all), and the Triton container, which runs
model code, never sees a credential.

The names of the variables are the ones the clouds' own SDKs read
(AWS_ACCESS_KEY_ID, AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE,
GOOGLE_APPLICATION_CREDENTIALS), so a Secret made for another tool works
unchanged. `smallfleet fetch` imports the constants from here: the renderer and
the reader cannot drift apart.

Pure: values in, manifests out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from smallfleet.core.spec import Artifact

AuthMode = Literal[
    "s3-keys", "s3-web-identity", "gs-key", "gs-workload-identity", "http-bearer", "http-basic"
]
AUTH_MODES: Final[tuple[AuthMode, ...]] = (
    "s3-keys",
    "s3-web-identity",
    "gs-key",
    "gs-workload-identity",
    "http-bearer",
    "http-basic",
)

# Secret keys, which are also the variable names the fetch step reads.
AWS_ACCESS_KEY_ID: Final = "AWS_ACCESS_KEY_ID"
AWS_SECRET_ACCESS_KEY: Final = "AWS_SECRET_ACCESS_KEY"
AWS_SESSION_TOKEN: Final = "AWS_SESSION_TOKEN"
AWS_ROLE_ARN: Final = "AWS_ROLE_ARN"
AWS_WEB_IDENTITY_TOKEN_FILE: Final = "AWS_WEB_IDENTITY_TOKEN_FILE"
AWS_ROLE_SESSION_NAME: Final = "AWS_ROLE_SESSION_NAME"
GOOGLE_APPLICATION_CREDENTIALS: Final = "GOOGLE_APPLICATION_CREDENTIALS"
GCE_METADATA_HOST: Final = "GCE_METADATA_HOST"
FETCH_TOKEN: Final = "SMALLFLEET_FETCH_TOKEN"
FETCH_USERNAME: Final = "SMALLFLEET_FETCH_USERNAME"
FETCH_PASSWORD: Final = "SMALLFLEET_FETCH_PASSWORD"
# Keys of the Secret for gs:// and https:// artifacts.
GCS_KEY_FILE: Final = "key.json"
TOKEN_KEY: Final = "token"
USERNAME_KEY: Final = "username"
PASSWORD_KEY: Final = "password"
# Where the fetch container finds a key file or a projected token.
GCS_KEY_DIR: Final = "/var/run/secrets/smallfleet/gcs"
AWS_TOKEN_DIR: Final = "/var/run/secrets/smallfleet/aws"
AWS_TOKEN_FILE: Final = "token"
TOKEN_EXPIRATION_SECONDS: Final = 3600
# Every variable that may carry a secret; the fetch step redacts their values from messages.
SECRET_VARIABLES: Final = (AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, FETCH_TOKEN, FETCH_PASSWORD)


@dataclass(frozen=True)
class FetchAuth:
    """What one fetch init container gets for one artifact's credentials."""

    args: tuple[str, ...] = ()
    env: tuple[dict[str, Any], ...] = ()
    mounts: tuple[dict[str, Any], ...] = ()
    volumes: tuple[dict[str, Any], ...] = ()


def auth_mode(artifact: Artifact) -> AuthMode | None:
    """Which way the fetch step authenticates, from the URI's scheme and the credentials."""
    c = artifact.credentials
    if c is None:
        return None
    scheme = artifact.uri.split("://", 1)[0].lower()
    if scheme == "s3":
        return "s3-web-identity" if c.s3 is not None and c.s3.role_arn else "s3-keys"
    if scheme == "gs":
        return "gs-workload-identity" if c.gs is not None and c.gs.workload_identity else "gs-key"
    if scheme in ("http", "https"):
        return "http-basic" if c.http_auth == "basic" else "http-bearer"
    return None  # pvc://: refused by the CRD and the parser


def _secret_env(name: str, secret: str, key: str, *, optional: bool = False) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def fetch_auth(artifact: Artifact, volume_prefix: str) -> FetchAuth:
    """The fetch container's flags, variables, mounts and the pod volumes they need.

    `volume_prefix` makes volume names unique per model in a pod that fetches
    several (a pipeline's steps).
    """
    mode = auth_mode(artifact)
    c = artifact.credentials
    if mode is None or c is None:
        return FetchAuth()
    args: list[str] = ["--auth", mode]
    secret = c.secret_name or ""
    if mode in ("s3-keys", "s3-web-identity"):
        s3 = c.s3
        args += ["--s3-region", s3.region if s3 is not None else "us-east-1"]
        if s3 is not None and s3.endpoint:
            args += ["--s3-endpoint", s3.endpoint]
        if mode == "s3-keys":
            return FetchAuth(
                args=tuple(args),
                env=(
                    _secret_env(AWS_ACCESS_KEY_ID, secret, AWS_ACCESS_KEY_ID),
                    _secret_env(AWS_SECRET_ACCESS_KEY, secret, AWS_SECRET_ACCESS_KEY),
                    _secret_env(AWS_SESSION_TOKEN, secret, AWS_SESSION_TOKEN, optional=True),
                ),
            )
        assert s3 is not None and s3.role_arn
        if s3.sts_endpoint:
            args += ["--sts-endpoint", s3.sts_endpoint]
        volume = f"{volume_prefix}-aws-token"
        return FetchAuth(
            args=tuple(args),
            env=(
                {"name": AWS_ROLE_ARN, "value": s3.role_arn},
                {"name": AWS_WEB_IDENTITY_TOKEN_FILE, "value": f"{AWS_TOKEN_DIR}/{AWS_TOKEN_FILE}"},
            ),
            mounts=({"name": volume, "mountPath": AWS_TOKEN_DIR, "readOnly": True},),
            volumes=(
                {
                    "name": volume,
                    "projected": {
                        "sources": [
                            {
                                "serviceAccountToken": {
                                    "audience": s3.audience,
                                    "expirationSeconds": TOKEN_EXPIRATION_SECONDS,
                                    "path": AWS_TOKEN_FILE,
                                }
                            }
                        ]
                    },
                },
            ),
        )
    if mode in ("gs-key", "gs-workload-identity"):
        if c.gs is not None and c.gs.endpoint:
            args += ["--gs-endpoint", c.gs.endpoint]
        if mode == "gs-workload-identity":
            return FetchAuth(args=tuple(args))
        volume = f"{volume_prefix}-gcs-key"
        return FetchAuth(
            args=tuple(args),
            env=(
                {
                    "name": GOOGLE_APPLICATION_CREDENTIALS,
                    "value": f"{GCS_KEY_DIR}/{GCS_KEY_FILE}",
                },
            ),
            mounts=({"name": volume, "mountPath": GCS_KEY_DIR, "readOnly": True},),
            volumes=(
                {
                    "name": volume,
                    "secret": {
                        "secretName": secret,
                        "items": [{"key": GCS_KEY_FILE, "path": GCS_KEY_FILE}],
                        "defaultMode": 0o440,
                    },
                },
            ),
        )
    env: tuple[dict[str, Any], ...]
    if mode == "http-basic":
        env = (
            _secret_env(FETCH_USERNAME, secret, USERNAME_KEY),
            _secret_env(FETCH_PASSWORD, secret, PASSWORD_KEY),
        )
    else:
        env = (_secret_env(FETCH_TOKEN, secret, TOKEN_KEY),)
    return FetchAuth(args=tuple(args), env=env)
