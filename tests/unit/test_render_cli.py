"""`smallfleet render`: files in, the operator's manifests out, errors as messages and exit 1."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import pytest
import yaml

from smallfleet.cli import main

EXAMPLES: Final = Path(__file__).resolve().parents[2] / "examples"


def _render(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["render", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_every_example_renders(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(str(p) for p in EXAMPLES.glob("*.yaml"))
    assert files, f"no examples in {EXAMPLES}"
    code, out, err = _render(capsys, *files)
    assert code == 0, err
    docs: list[dict[str, Any]] = [d for d in yaml.safe_load_all(out) if d]
    kinds = {d["kind"] for d in docs}
    assert {"ConfigMap", "Service", "Deployment", "PodDisruptionBudget"} <= kinds
    # Unplaced by default: one Deployment per server, named after it, with no region affinity.
    for d in docs:
        if d["kind"] == "Deployment":
            assert d["metadata"]["labels"]["serving.smallfleet.io/region"] == ""
            assert "topology.kubernetes.io/region" not in str(d["spec"]["template"]["spec"])
        assert "ownerReferences" not in d["metadata"]  # files carry no uid
    again = _render(capsys, *files)
    assert again[1] == out


def test_region_and_images(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _render(
        capsys,
        str(EXAMPLES / "minilm-embedder.yaml"),
        "--region",
        "eu-north-1",
        "--triton-image",
        "registry.local/triton:1",
        "--operator-image",
        "registry.local/smallfleet:2",
    )
    assert code == 0, err
    (deployment,) = [d for d in yaml.safe_load_all(out) if d["kind"] == "Deployment"]
    assert deployment["metadata"]["name"] == "minilm-embedder-eu-north-1"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.local/triton:1"
    assert {c["image"] for c in pod["initContainers"]} == {"registry.local/smallfleet:2"}


def test_config_pbtxt_is_printed_as_a_literal_block(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _render(capsys, str(EXAMPLES / "minilm-embedder.yaml"))
    assert code == 0
    assert '  minilm-embedder.config.pbtxt: |\n    name: "minilm-embedder"\n' in out


def test_stdin(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO((EXAMPLES / "cpu-classifier.yaml").read_text()))
    code, out, _ = _render(capsys, "-")
    assert code == 0 and "name: cpu-classifier" in out


def test_invalid_spec_prints_field_errors_and_exits_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    doc = yaml.safe_load((EXAMPLES / "cpu-classifier.yaml").read_text())
    doc["spec"]["scaling"]["minReplicas"] = 9
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    code, out, err = _render(capsys, str(bad))
    assert code == 1
    assert out == ""
    assert "SmallModel cpu-classifier:" in err and "minReplicas" in err


def test_pipeline_without_its_models_exits_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    docs = [d for d in yaml.safe_load_all((EXAMPLES / "rag-pipeline.yaml").read_text()) if d]
    only_pipeline = tmp_path / "pipeline.yaml"
    only_pipeline.write_text(yaml.safe_dump_all([d for d in docs if d["kind"] == "ModelPipeline"]))
    code, out, err = _render(capsys, str(only_pipeline))
    assert code == 1 and out == ""
    assert "spec.steps[0].model" in err and "not found" in err


def test_unreadable_file_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = _render(capsys, str(tmp_path / "missing.yaml"))
    assert code == 1 and "missing.yaml" in err


def test_other_kinds_are_named_on_stderr(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    f = tmp_path / "ns.yaml"
    f.write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n")
    code, out, err = _render(capsys, str(f))
    assert code == 0 and out == ""
    assert "ignoring a document of kind 'Namespace'" in err
