"""The apply-patch+yaml body: JSON the API server's YAML reader accepts, for any string.

Found by tests/e2e/test_fuzz.py: a ServingPool whose toleration value held an
emoji was accepted, but its StatefulSet could never be applied, because JSON
escapes the emoji as a surrogate pair and YAML forbids those escapes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from smallfleet.kube.client import yaml_body


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        "\U0001f600",
        "a\U0001f600b\U00010348",
        "é\u00e9\u4e2d",
        "\\ud83d\\ude00",  # text that looks like an escape stays text
        "\\\U0001f600",
        "\x00\x7f\u0085\u2028",
        "",
    ],
)
def test_yaml_body_reads_back_as_the_object(value: str) -> None:
    body: dict[str, Any] = {"metadata": {"annotations": {"k": value}}, "spec": [value, 1]}
    text = yaml_body(body)
    assert yaml.safe_load(text) == body
    assert text.isascii()
    if "\U0001f600" not in value:
        assert json.loads(text) == body  # without such characters it is still plain JSON
