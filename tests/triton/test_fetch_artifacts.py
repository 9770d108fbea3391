"""`smallfleet fetch` on the real packaged artifacts, served over HTTP from 127.0.0.1."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

from triton_harness import MANIFESTS, TritonEnv, run_fetch

from smallfleet.fetch import DIGEST_MARKER


def fetch(uri: str, digest: str, dest: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    log = dest.parent / "termination-log"
    return run_fetch(
        "--uri", uri, "--digest", digest, "--dest", str(dest), *extra, termination_log=log
    )


def test_the_manifests_carry_the_artifacts_real_digests(triton_env: TritonEnv) -> None:
    by_file = {str(e["file"]): str(e["digest"]) for e in triton_env.index.values()}
    pattern = re.compile(r"uri: \$\{ARTIFACTS_URL\}/(\S+)\s+digest: (sha256:[0-9a-f]{64})")
    found = [
        m.groups()
        for p in sorted(MANIFESTS.glob("*.yaml"))
        for m in pattern.finditer(p.read_text())
    ]
    assert found
    stale = [(f, d) for f, d in found if by_file.get(f) != d]
    assert not stale, (
        f"manifest digests differ from the packaged artifacts {stale}: models/ changed; "
        "run `python hack/triton_env.py --sync-manifests`"
    )


def test_index_digests_are_the_files_sha256(triton_env: TritonEnv) -> None:
    for entry in triton_env.index.values():
        data = (triton_env.artifacts / str(entry["file"])).read_bytes()
        assert entry["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()


def test_fetches_a_real_archive(triton_env: TritonEnv, artifacts_url: str, tmp_path: Path) -> None:
    dest = tmp_path / "models" / "passage-scorer"
    done = fetch(
        f"{artifacts_url}/passage-scorer.tar.gz", triton_env.digest("passage-scorer"), dest
    )
    assert done.returncode == 0, done.stderr
    assert (dest / "1" / "model.onnx").stat().st_size > 20_000_000
    assert (dest / DIGEST_MARKER).read_text().strip() == triton_env.digest("passage-scorer")
    assert "fetched" in (tmp_path / "models" / "termination-log").read_text()


def test_a_single_onnx_file_lands_as_model_onnx(
    triton_env: TritonEnv, artifacts_url: str, tmp_path: Path
) -> None:
    dest = tmp_path / "models" / "minilm-onnx"
    done = fetch(
        f"{artifacts_url}/minilm-l6-onnx.onnx",
        triton_env.digest("minilm-l6-onnx"),
        dest,
        "--format",
        "onnx",
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (dest / "1").iterdir()) == ["model.onnx"]


def test_a_wrong_digest_on_a_real_artifact_leaves_nothing(
    triton_env: TritonEnv, artifacts_url: str, tmp_path: Path
) -> None:
    dest = tmp_path / "models" / "minilm-l6"
    wrong = triton_env.digest("minilm-l3")
    done = fetch(f"{artifacts_url}/minilm-l6.tar.gz", wrong, dest)
    assert done.returncode == 1
    message = (tmp_path / "models" / "termination-log").read_text()
    assert message == done.stderr.strip()
    assert f"expected {wrong}, got {triton_env.digest('minilm-l6')}" in message
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["termination-log"]
