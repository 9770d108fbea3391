"""`smallfleet validate`: line-precise messages, exit codes, cross-file pipeline checks."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Final

import pytest
import yaml

from smallfleet import cli
from smallfleet.validate import check_files, path_line

ROOT: Final = Path(__file__).resolve().parents[2]
EXAMPLES: Final = sorted(str(p) for p in (ROOT / "examples").glob("*.yaml"))

MODEL: Final = """\
apiVersion: serving.smallfleet.io/v1alpha1
kind: SmallModel
metadata:
  name: embed
spec:
  model:
    uri: https://models.example.com/embed.onnx
    digest: sha256:{digest}
    format: onnx
  triton:
    inputs:
      - {{name: input_ids, datatype: INT64, dims: [-1]}}
    outputs:
      - {{name: embedding, datatype: FP32, dims: [384]}}
  scaling:
    minReplicas: {min}
    maxReplicas: 2
  card:
    owner: team-a
    license: MIT
    description: Embeds text.
"""

PIPELINE: Final = """\
apiVersion: serving.smallfleet.io/v1alpha1
kind: ModelPipeline
metadata:
  name: search
spec:
  inputs:
    - {name: ids, datatype: INT64, dims: [-1]}
  outputs:
    - {name: vec, datatype: FP32, dims: [384], from: embed.embedding}
  steps:
    - name: embed
      model: embed
      inputs:
        - {name: input_ids, from: ids}
"""


def run(files: list[str], **kw: bool) -> tuple[int, list[str]]:
    out = io.StringIO()
    rc = check_files(files, out=out, **kw)
    return rc, out.getvalue().splitlines()


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_examples_are_valid() -> None:
    rc, out = run(EXAMPLES)
    assert rc == 0, out
    assert out == [f"OK: 8 SmallModel(s), 1 ModelPipeline(s) valid in {len(EXAMPLES)} file(s)"]


def test_problems_name_file_line_resource_and_path(tmp_path: Path) -> None:
    f = write(tmp_path, "m.yaml", "# a comment\n---\n" + MODEL.format(digest="abc", min=5))
    rc, out = run([f])
    assert rc == 1
    assert out == [
        f'{f}:10: SmallModel/embed: spec.model.digest: Invalid value: "sha256:abc": '
        "spec.model.digest in body should match '^sha256:[a-f0-9]{64}$'",
        f"{f}:18: SmallModel/embed: spec.scaling.minReplicas: Invalid value: minReplicas must not exceed maxReplicas (5 > 2)",
    ]


def test_second_document_lines_count_from_the_file_start(tmp_path: Path) -> None:
    good = MODEL.format(digest="a" * 64, min=1)
    bad = good.replace("name: embed", "name: other").replace("    license: MIT\n", "")
    f = write(tmp_path, "two.yaml", good + "---\n" + bad)
    rc, out = run([f])
    assert rc == 1
    # a missing field is reported where it must be added: its parent's line
    assert out == [f"{f}:40: SmallModel/other: spec.card.license: Required value"]


def test_pipeline_is_checked_against_models_in_other_files(tmp_path: Path) -> None:
    m = write(tmp_path, "m.yaml", MODEL.format(digest="a" * 64, min=1))
    p = write(tmp_path, "p.yaml", PIPELINE)
    assert run([m, p])[0] == 0
    rc, out = run([p])
    assert rc == 1
    assert out == [
        f"{p}:12: ModelPipeline/search: spec.steps[0].model: SmallModel embed not found in namespace default"
    ]
    assert run([p], external_models=True)[0] == 0


def test_wiring_errors_point_at_the_from_field(tmp_path: Path) -> None:
    m = write(tmp_path, "m.yaml", MODEL.format(digest="a" * 64, min=1))
    p = write(tmp_path, "p.yaml", PIPELINE.replace("INT64", "INT32"))
    rc, out = run([m, p])
    assert rc == 1
    assert out == [
        f"{p}:14: ModelPipeline/search: spec.steps[0].inputs[0].from: ids is INT32 but input_ids expects INT64"
    ]


def test_duplicates_are_reported(tmp_path: Path) -> None:
    text = MODEL.format(digest="a" * 64, min=1)
    f = write(tmp_path, "d.yaml", text + "---\n" + text)
    rc, out = run([f])
    assert rc == 1
    assert out == [
        f"{f}:26: SmallModel/embed: metadata.name: SmallModel embed is defined twice (first at {f}:1)"
    ]


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    f = write(tmp_path, "y.yaml", "kind: SmallModel\nspec: [unclosed\n")
    rc, out = run([f])
    assert rc == 1
    assert len(out) == 1 and out[0].startswith(f"{f}:3: yaml: ")


def test_other_documents_are_counted_not_checked(tmp_path: Path) -> None:
    f = write(tmp_path, "o.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    assert run([f]) == (
        0,
        [
            "OK: 0 SmallModel(s), 0 ModelPipeline(s) valid in 1 file(s); 1 other document(s) not checked"
        ],
    )


def test_unknown_kind_of_the_group_is_an_error(tmp_path: Path) -> None:
    f = write(
        tmp_path,
        "k.yaml",
        "apiVersion: serving.smallfleet.io/v1alpha1\nkind: SmallThing\nmetadata: {name: x}\n",
    )
    rc, out = run([f])
    assert rc == 1 and out == [
        f"{f}:2: SmallThing/x: kind: Unsupported value: 'SmallThing': must be SmallModel, ModelPipeline or ServingPool"
    ]


def test_missing_file_exits_2(tmp_path: Path) -> None:
    rc, out = run([str(tmp_path / "nope.yaml")])
    assert rc == 2 and "cannot read" in out[0]


def test_stdin_and_the_cli_entry_point(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(MODEL.format(digest="a" * 64, min=1)))
    assert cli.main(["validate", "-"]) == 0
    assert capsys.readouterr().out.startswith("OK: 1 SmallModel(s)")


DOC: Final = """\
spec:
  steps:
    - name: a
      inputs:
        - name: x
          from: y
    - name: b
  scaling: {minReplicas: 1}
"""


@pytest.mark.parametrize(
    ("path", "line"),
    [
        ("spec", 1),
        ("spec.steps", 2),
        ("spec.steps[0]", 3),
        ("spec.steps[0].inputs[0].from", 6),
        ("spec.steps[1].name", 7),
        ("spec.steps[1].inputs", 7),  # missing: the enclosing item
        ("spec.steps[5].name", 2),  # no such item: the list
        ("spec.scaling.minReplicas", 8),  # flow style keeps the line
        ("spec.placement.regions", 1),
    ],
)
def test_path_line(path: str, line: int) -> None:
    node = yaml.compose(DOC)
    assert node is not None
    assert path_line(node, path) == line


BAD_MANIFESTS: Final = sorted((ROOT / "tests" / "e2e" / "bad_manifests").glob("*.yaml"))


def test_there_are_enough_bad_manifests() -> None:
    assert len(BAD_MANIFESTS) >= 15
    kinds = {yaml.safe_load(p.read_text())["kind"] for p in BAD_MANIFESTS}
    assert kinds == {"SmallModel", "ModelPipeline"}


@pytest.mark.parametrize("path", BAD_MANIFESTS, ids=[p.stem for p in BAD_MANIFESTS])
def test_bad_manifest_is_rejected_offline_with_the_api_servers_words(path: Path) -> None:
    # The e2e suite checks the same expectation against the real API server.
    expect = re.search(r"^# expect: (.+)$", path.read_text(), re.MULTILINE)
    assert expect, f"{path.name} has no '# expect:' header"
    rc, out = run([str(path)], external_models=True)
    assert rc == 1
    assert expect.group(1) in "\n".join(out), out


def test_a_directory_stands_for_its_yaml_files(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    write(tmp_path / "models", "m.yml", MODEL.format(digest="a" * 64, min=1))
    write(tmp_path, "p.yaml", PIPELINE)
    write(tmp_path, "notes.txt", "not yaml: [")
    rc, out = run([str(tmp_path)])
    assert (rc, out) == (0, ["OK: 1 SmallModel(s), 1 ModelPipeline(s) valid in 2 file(s)"])
