"""Run the chart's Argo CD health scripts the way Argo CD does: real Lua 5.1 (lupa).

Shared by the unit tests (status tables) and the GitOps e2e tests (live objects),
so both judge with the same interpreter and the same shaping of `obj`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import lupa.lua51 as lua51

ARGOCD_DIR: Final = Path(__file__).resolve().parents[1] / "charts" / "smallfleet" / "argocd"
SCRIPT_BY_KIND: Final = {"SmallModel": "smallmodel.lua", "ModelPipeline": "modelpipeline.lua"}


def to_lua(runtime: Any, value: Any) -> Any:
    # Argo CD decodes maps to tables, lists to 1-based tables and drops JSON nulls.
    if isinstance(value, Mapping):
        table = runtime.table()
        for key, item in value.items():
            if item is not None:
                table[key] = to_lua(runtime, item)
        return table
    if isinstance(value, list):
        table = runtime.table()
        for index, item in enumerate(value, start=1):
            table[index] = to_lua(runtime, item)
        return table
    return value


def health(obj: Mapping[str, Any], script: str | None = None) -> tuple[str, str]:
    """The (status, message) the chart's script gives `obj`; the script follows its kind."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = to_lua(runtime, obj)
    result = runtime.execute((ARGOCD_DIR / (script or SCRIPT_BY_KIND[obj["kind"]])).read_text())
    return str(result["status"]), str(result["message"])
