"""Manifests as YAML text, the same bytes every time.

`smallfleet render` output is diffed by people and kept as golden files, so
it must not depend on dict iteration accidents or on PyYAML's anchors for
shared objects; config.pbtxt reads best as a literal block.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml

# libyaml's emitter when PyYAML was built with it: the same text, many times faster.
_Base: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_Base):  # type: ignore[valid-type,misc]
    """Block style for multi-line strings (config.pbtxt) and no anchors or aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str)


def dump(objects: Iterable[Mapping[str, Any]]) -> str:
    """Multi-document YAML, deterministic (field order as rendered)."""
    return yaml.dump_all(
        [dict(o) for o in objects],
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        explicit_start=True,
        width=1000,
    )
