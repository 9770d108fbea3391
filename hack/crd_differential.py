"""Differential check: do `smallfleet validate` and a real API server agree on what is valid?

The offline checks restate the CRDs' CEL rules in Python, so a rule changed in
one place and not the other would let the two drift apart. This script takes
the examples, mutates one to three fields at random (bad numbers, wrong types,
nulls, dangling step references...), asks a live API server to create each
variant with `--dry-run=server`, and reports every variant where the server's
verdict (accepted or refused) differs from `parse_small_model` /
`parse_model_pipeline`. Run it after changing anything in crds/:

    hack/crd_differential.py --kubeconfig FILE --kubectl BIN/kubectl -n 300

Exit status 1 when any verdict differs. The API server must have the CRDs.
"""

from __future__ import annotations

import argparse
import copy
import random
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import yaml

ROOT: Final = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "operator"))

from smallfleet.core.spec import SpecError, parse_model_pipeline, parse_small_model  # noqa: E402

MODEL_FIELDS: Final = [
    "triton.maxBatchSize",
    "triton.instanceCount",
    "triton.dynamicBatching.enabled",
    "triton.dynamicBatching.preferredBatchSizes",
    "triton.dynamicBatching.maxQueueDelayMicroseconds",
    "triton.outputs.0.dims",
    "triton.image",
    "resources.gpus",
    "resources.cpu",
    "resources.memory",
    "resources.gpuProduct",
    "scaling.mode",
    "scaling.minReplicas",
    "scaling.maxReplicas",
    "scaling.metric",
    "scaling.target",
    "scaling.tolerance",
    "scaling.maxScaleUpStep",
    "scaling.carbonCap.maxReplicas",
    "scaling.carbonCap.aboveIntensity",
    "placement.policy",
    "placement.regions",
    "placement.spread",
    "placement.residency",
    "placement.maxIntensity",
    "model.uri",
    "model.format",
    "model.parameterCount",
    "card.license",
]
MODEL_VALUES: Final[list[Any]] = [
    None,
    -1,
    0,
    1,
    2,
    3,
    8,
    16,
    100,
    101,
    1000,
    1001,
    5000,
    0.5,
    1.5,
    "1",
    "x",
    "",
    "0",
    "500m",
    "2Gi",
    "-1",
    True,
    False,
    [],
    [1],
    {},
    {"a": 1},
    "NVIDIA-L4",
    "pinned",
    "keda",
    "none",
    "hpa",
    "gpuUtilization",
    "eu",
    "r1",
    ["r1", "r2"],
    ["r1"],
    [4, 16],
    [0],
    "pvc://claim",
    "s3://b/k",
    "ftp://h/x",
    "tensorrt",
]
PIPELINE_FIELDS: Final = [
    "steps.0.inputs.0.from",
    "steps.1.inputs.0.from",
    "steps.2.inputs.1.from",
    "outputs.0.from",
    "inputs.0.name",
    "steps.1.name",
    "steps.0.model",
    "resources.gpus",
    "scaling.minReplicas",
]
PIPELINE_VALUES: Final[list[Any]] = [
    None,
    "input_ids",
    "question",
    "embed.embedding",
    "rerank.passages",
    "generate.answer",
    "rerank.x",
    "embed",
    "x.y",
    "question.x",
    "Ids",
    "a-b",
    "embed.onnx::x",
    0,
    1,
    3,
    "",
]


def _set(obj: dict[str, Any], dotted: str, value: Any) -> bool:
    node: Any = obj["spec"]
    keys = dotted.split(".")
    for key in keys[:-1]:
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                return False
            node = node[int(key)]
        else:
            node = node.setdefault(key, {})
        if not isinstance(node, dict | list):
            return False
    last = keys[-1]
    if isinstance(node, list):
        if int(last) >= len(node):
            return False
        node[int(last)] = value
    else:
        node[last] = value
    return True


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--kubectl", default="kubectl")
    ap.add_argument("-n", type=int, default=200, help="variants to try")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    docs = [
        d
        for f in sorted((ROOT / "examples").glob("*.yaml"))
        for d in yaml.safe_load_all(f.read_text())
    ]
    models = [d for d in docs if d["kind"] == "SmallModel"]
    pipelines = [d for d in docs if d["kind"] == "ModelPipeline"]
    differ = tried = 0
    parse: Callable[[Mapping[str, Any]], object]
    for i in range(args.n):
        if rng.random() < 0.75:
            base, fields, values, parse = (
                rng.choice(models),
                MODEL_FIELDS,
                MODEL_VALUES,
                parse_small_model,
            )
        else:
            base, fields, values, parse = (
                rng.choice(pipelines),
                PIPELINE_FIELDS,
                PIPELINE_VALUES,
                parse_model_pipeline,
            )
        obj = copy.deepcopy(base)
        obj["metadata"] = {"name": f"differential-{i}"}
        changes = {f: rng.choice(values) for f in rng.sample(fields, rng.randint(1, 3))}
        if not all(_set(obj, f, v) for f, v in changes.items()):
            continue
        tried += 1
        try:
            parse(obj)
            offline, why = True, ""
        except SpecError as err:
            offline, why = False, str(err)
        server = subprocess.run(
            [
                args.kubectl,
                "--kubeconfig",
                args.kubeconfig,
                "create",
                "--dry-run=server",
                "-f",
                "-",
            ],
            input=yaml.safe_dump(obj),
            capture_output=True,
            text=True,
            check=False,
        )
        if (server.returncode == 0) != offline:
            differ += 1
            print(f"DIFFER {obj['kind']} {changes}")
            print(f"  server: {'accepted' if server.returncode == 0 else server.stderr.strip()}")
            print(f"  offline: {'accepted' if offline else why}")
    print(f"{tried} variants, {differ} verdicts differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
