"""The apply plan: what to create, update or delete to turn observed children into desired ones.

Server-side apply is idempotent, but every apply still costs an API call and
a write to etcd, and with hundreds of models a resync would rewrite them all.
So the operator diffs first and applies only what changed. The comparison is
"does the observed object already hold every field we would set, with the
same value?": fields the API server or other controllers add (status, uid,
defaults, other managers' annotations) never trigger an update, while a
field we set and someone changed does.

Deletion is only reported, never decided here: during a make-before-break
move the old region's Deployment is still observed but no longer desired,
and the handler keeps it until the new region is Ready.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from smallfleet.core.render.quantity import parse_quantity

Action = Literal["create", "update", "delete", "noop"]
Key = tuple[str, str, str, str]  # (apiVersion, kind, namespace, name)

MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "smallfleet"
# Maps whose values are resource quantities, which the API server rewrites
# into canonical form ("1000m" becomes "1").
_QUANTITY_PARENTS: Final = frozenset({"requests", "limits", "capacity", "hard"})
_QUANTITY_FIELDS: Final = frozenset({"sizeLimit", "averageValue"})  # "100000" comes back "100k"
# Identity, not content: the version is whichever one the caller read with.
_NOT_COMPARED: Final = frozenset({"apiVersion", "status"})
# Creation order: what others refer to first (a Deployment mounts the ConfigMap).
_KIND_ORDER: Final = {
    "Namespace": 0,
    "ConfigMap": 1,
    "Secret": 1,
    "Service": 2,
    "Deployment": 3,
    "PodDisruptionBudget": 4,
    "HorizontalPodAutoscaler": 5,
    "ScaledObject": 5,
    "HTTPRoute": 6,  # after the Service they route to
    "GRPCRoute": 6,
}


@dataclass(frozen=True)
class Change:
    action: Action
    obj: dict[str, Any]  # desired object (create, update, noop) or observed one (delete)
    reason: str

    @property
    def key(self) -> Key:
        return key_of(self.obj)


def key_of(obj: Mapping[str, Any]) -> Key:
    """Identity of an object: apiVersion's group (not version), kind, namespace, name."""
    meta = obj.get("metadata") or {}
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    return (group, str(obj.get("kind", "")), str(meta.get("namespace") or ""), str(meta["name"]))


def _is_empty(value: Any) -> bool:
    return value is None or value == {} or value == []


def _same_scalar(desired: Any, observed: Any, path: Path) -> bool:
    if desired == observed and type(desired) is type(observed):
        return True
    if isinstance(desired, bool) or isinstance(observed, bool):
        return False
    if _holds_quantity(path):
        try:
            return parse_quantity(desired) == parse_quantity(observed)
        except (ValueError, TypeError):
            return False
    # int and float that are equal (1 and 1.0) are the same JSON number.
    return (
        isinstance(desired, int | float)
        and isinstance(observed, int | float)
        and desired == observed
    )


Path = tuple[str | int, ...]
_MISSING: Final = object()


def first_difference(desired: Any, observed: Any, path: Path = ()) -> Path | None:
    """The path of the first field of `desired` that `observed` lacks or holds differently."""
    found = _diff(desired, observed, path[-2:])
    return None if found is None else (*path, *reversed(found))


def _diff(desired: Any, observed: Any, keys: Path) -> list[str | int] | None:
    """The differing path, innermost part first (built only on the way out, when found).

    `keys` holds the last two path parts, which decide whether a scalar is a quantity.
    """
    # Scalars first: most nodes are, and `isinstance(x, Mapping)` is a slow ABC check.
    if desired is None or isinstance(desired, str | int | float):
        return None if _same_scalar(desired, observed, keys) else []
    if isinstance(desired, Mapping):
        if not isinstance(observed, Mapping):
            return None if _is_empty(desired) and _is_empty(observed) else []
        parent = keys[-1] if keys else ""
        for k, d in desired.items():
            o = observed.get(k, _MISSING)
            if o is _MISSING:
                if _is_empty(d):
                    continue
                return [str(k)]
            found = _diff(d, o, (parent, str(k)))
            if found is not None:
                found.append(str(k))
                return found
        return None
    if isinstance(desired, list):
        if not isinstance(observed, list):
            return None if _is_empty(desired) and _is_empty(observed) else []
        if len(desired) != len(observed):
            return []
        for i, (d, o) in enumerate(zip(desired, observed, strict=True)):
            found = _diff(d, o, keys)  # list items share their list's keys
            if found is not None:
                found.append(i)
                return found
        return None
    return None if _same_scalar(desired, observed, keys) else []


def _holds_quantity(keys: Path) -> bool:
    names = [k for k in keys if isinstance(k, str)]
    return bool(names) and (
        names[-1] in _QUANTITY_FIELDS
        or (len(names) > 1 and names[-2] in _QUANTITY_PARENTS)
        or names[-2:] == ["target", "value"]
    )


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "." in part or "/" in part:
            out += f"[{part!r}]"
        else:
            out += f".{part}" if out else part
    return out or "."


def _lookup(obj: Any, path: Path) -> Any:
    cur = obj
    for part in path:
        if isinstance(part, int):
            cur = cur[part] if isinstance(cur, list) and part < len(cur) else None
        else:
            cur = cur.get(part) if isinstance(cur, Mapping) else None
    return cur


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _managed(obj: Mapping[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return bool(labels.get(MANAGED_BY_LABEL) == MANAGED_BY)


def plan_changes(
    desired: Sequence[dict[str, Any]], observed: Sequence[dict[str, Any]]
) -> list[Change]:
    """One Change per desired object (create, update or noop), then a delete per stale child.

    `observed` is what the cluster holds under the owner's labels; objects
    there without `app.kubernetes.io/managed-by: smallfleet` are never
    deleted. Creates and updates come in dependency order; deletes last.
    """
    seen: dict[Key, dict[str, Any]] = {}
    for obj in observed:
        seen[key_of(obj)] = obj
    wanted: set[Key] = set()
    changes: list[Change] = []
    for obj in desired:
        key = key_of(obj)
        wanted.add(key)
        current = seen.get(key)
        if current is None:
            changes.append(Change("create", obj, "not found"))
            continue
        diff = first_difference(
            {k: v for k, v in obj.items() if k not in _NOT_COMPARED},
            current,
        )
        if diff is None:
            changes.append(Change("noop", obj, "up to date"))
        else:
            changes.append(
                Change(
                    "update",
                    obj,
                    f"{format_path(diff)}: want {_short(_lookup(obj, diff))}, have {_short(_lookup(current, diff))}",
                )
            )
    changes.sort(key=lambda c: _KIND_ORDER.get(str(c.obj.get("kind")), 9))
    stale = [
        Change("delete", obj, "no longer desired")
        for key, obj in sorted(seen.items())
        if key not in wanted and _managed(obj)
    ]
    # Dependents first on delete: a Deployment before the ConfigMap it mounts.
    stale.sort(key=lambda c: -_KIND_ORDER.get(str(c.obj.get("kind")), 9))
    return changes + stale
