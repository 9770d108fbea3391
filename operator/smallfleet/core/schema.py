"""Structural-schema checks and defaulting, done offline the way kube-apiserver does them.

`smallfleet validate` and the spec parser must agree with the API server, or
a manifest that passes in CI fails at `kubectl apply`. Rather than restating
every bound by hand, they walk the CRD's own openAPIV3Schema (embedded in
`crd_schemas`) with this small interpreter of the subset Kubernetes allows in
structural schemas: types, required, enum, numeric bounds, lengths, patterns,
item counts, list-type uniqueness, unknown fields and defaults. Messages copy
the API server's wording so that people see the same text in both places.
CEL rules are not interpreted here; `spec` restates them in Python.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any, Final

# (field path, message): spec turns these into its FieldError.
Problem = tuple[str, str]


_TYPE_NAMES: Final = {
    "string": str,
    "boolean": bool,
    "object": dict,
    "array": list,
}


# The largest magnitude kubectl still writes as an integer when YAML holds a float such as 2.0.
_INT64_LIMIT: Final = 2**63


@functools.lru_cache(maxsize=512)
def go_regex(pattern: str) -> re.Pattern[str]:
    """`pattern` compiled to match as Go's RE2 does, which the API server and CEL use.

    Two differences matter for the patterns the CRDs use: Go's `$` (without
    the m flag) matches only at the end of the text, where Python's also
    matches before a final newline, so it becomes `\\Z`; and Go's `\\d`, `\\w`
    and `\\s` are ASCII, so the pattern compiles with re.ASCII.
    """
    out: list[str] = []
    in_class = escaped = False
    for ch in pattern:
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\":
            out.append(ch)
            escaped = True
        elif in_class:
            out.append(ch)
            in_class = ch != "]" or out[-2:-1] == ["["]
        elif ch == "[":
            out.append(ch)
            in_class = True
        elif ch == "$":
            out.append(r"\Z")
        else:
            out.append(ch)
    return re.compile("".join(out), re.ASCII)


def matches(value: str, pattern: str) -> bool:
    """CEL's `value.matches(pattern)`: an RE2 search anywhere in the string."""
    return go_regex(pattern).search(value) is not None


def as_integer(value: Any) -> Any:
    """An integral float (2.0) as the integer kubectl sends for it; anything else unchanged.

    kubectl turns YAML into JSON with sigs.k8s.io/yaml, which writes the
    float 2.0 as 2, so `maxReplicas: 2.0` in a file is accepted as an integer.
    """
    if isinstance(value, float) and value.is_integer() and abs(value) < _INT64_LIMIT:
        return int(value)
    return value


def describe(value: Any) -> str:
    """A value as the API server quotes it in a message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    return '"null"'


def _kind(value: Any) -> str:
    """The JSON type of a value, quoted, as type errors show it."""
    for name in ("boolean", "integer", "number", "string", "object", "array"):
        if _has_type(value, name):
            return f'"{name}"'
    return '"null"'


def _has_type(value: Any, type_: str) -> bool:
    if type_ == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_ == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if type_ == "object":
        return isinstance(value, Mapping)
    return isinstance(value, _TYPE_NAMES[type_])


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def apply(schema: Mapping[str, Any], value: Any, path: str) -> tuple[Any, list[Problem]]:
    """Return `value` with the schema's defaults filled in, and every structural problem.

    Defaults apply as the API server applies them: to a missing field whose
    parent object exists (an object default of {} brings its children's
    defaults with it). A null field counts as absent, as the API server prunes
    it before defaulting.
    """
    errors: list[Problem] = []
    out = _walk(schema, value, path, errors)
    return out, errors


def _walk(schema: Mapping[str, Any], value: Any, path: str, errors: list[Problem]) -> Any:
    if value is None:
        errors.append((path, 'Invalid value: "null": must not be null'))
        return value
    if schema.get("x-kubernetes-int-or-string") or schema.get("type") == "integer":
        value = as_integer(value)
    if schema.get("x-kubernetes-int-or-string"):
        if not (_has_type(value, "integer") or isinstance(value, str)):
            errors.append(
                (
                    path,
                    f"Invalid value: {_kind(value)}: {path} in body must be of type integer,string: {_kind(value)}",
                )
            )
        return value
    type_ = schema.get("type")
    if type_ is not None and not _has_type(value, str(type_)):
        errors.append(
            (
                path,
                f"Invalid value: {_kind(value)}: {path} in body must be of type {type_}: {_kind(value)}",
            )
        )
        return value
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(json.dumps(v) for v in schema["enum"])
        errors.append(
            (path, f"Unsupported value: {describe(value)}: supported values: {supported}")
        )
    if type_ in ("integer", "number"):
        _check_number(schema, value, path, errors)
    elif type_ == "string":
        _check_string(schema, value, path, errors)
    elif type_ == "array":
        return _walk_array(schema, value, path, errors)
    elif type_ == "object":
        return _walk_object(schema, value, path, errors)
    return value


def _check_number(
    schema: Mapping[str, Any], value: float, path: str, errors: list[Problem]
) -> None:
    lo, hi = schema.get("minimum"), schema.get("maximum")
    if lo is not None:
        if schema.get("exclusiveMinimum"):
            if value <= lo:
                errors.append(
                    (
                        path,
                        f"Invalid value: {describe(value)}: {path} in body should be greater than {lo}",
                    )
                )
        elif value < lo:
            errors.append(
                (
                    path,
                    f"Invalid value: {describe(value)}: {path} in body should be greater than or equal to {lo}",
                )
            )
    if hi is not None and value > hi:
        errors.append(
            (
                path,
                f"Invalid value: {describe(value)}: {path} in body should be less than or equal to {hi}",
            )
        )


def _check_string(schema: Mapping[str, Any], value: str, path: str, errors: list[Problem]) -> None:
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append((path, f"Too long: may not be more than {schema['maxLength']} bytes"))
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(
            (
                path,
                f"Invalid value: {describe(value)}: {path} in body should be at least {schema['minLength']} chars long",
            )
        )
    if "pattern" in schema and not matches(value, schema["pattern"]):
        errors.append(
            (
                path,
                f"Invalid value: {describe(value)}: {path} in body should match '{schema['pattern']}'",
            )
        )


def _walk_array(
    schema: Mapping[str, Any], value: list[Any], path: str, errors: list[Problem]
) -> list[Any]:
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(
            (path, f"Too many: {len(value)}: must have at most {schema['maxItems']} items")
        )
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(
            (
                path,
                f"Invalid value: {len(value)}: {path} in body should have at least {schema['minItems']} items",
            )
        )
    items = schema.get("items", {})
    out = [_walk(items, item, f"{path}[{i}]", errors) for i, item in enumerate(value)]
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "set":
        seen: list[Any] = []
        for i, item in enumerate(out):
            if item in seen:
                errors.append((f"{path}[{i}]", f"Duplicate value: {describe(item)}"))
            seen.append(item)
    elif list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys", [])
        seen_keys: list[tuple[Any, ...]] = []
        for i, item in enumerate(out):
            if not isinstance(item, Mapping):
                continue
            key = tuple(item.get(k) for k in keys)
            if key in seen_keys:
                shown = ", ".join(f'"{k}":{describe(item.get(k))}' for k in keys)
                errors.append((f"{path}[{i}]", f"Duplicate value: {{{shown}}}"))
            seen_keys.append(key)
    return out


def _walk_object(
    schema: Mapping[str, Any], value: Mapping[str, Any], path: str, errors: list[Problem]
) -> dict[str, Any]:
    props: Mapping[str, Any] = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    out: dict[str, Any] = {}
    for key, item in value.items():
        sub = _join(path, str(key))
        if key in props:
            if item is None and not props[key].get("nullable"):
                continue  # the API server prunes a null field, then defaults it
            out[key] = _walk(props[key], item, sub, errors)
        elif isinstance(extra, Mapping):
            if item is None and not extra.get("nullable"):
                continue  # pruned by the API server, as a null property is
            out[key] = _walk(extra, item, sub, errors)
        elif props or extra is False:
            errors.append((sub, f'unknown field "{sub}"'))
        else:
            out[key] = item  # an object without properties (metadata) keeps what it holds
    for key, sub_schema in props.items():
        if key not in out and "default" in sub_schema:
            out[key] = _walk(sub_schema, _copy(sub_schema["default"]), _join(path, key), errors)
    # Counted as the API server counts: after null values are pruned and defaults applied.
    if "maxProperties" in schema and len(out) > schema["maxProperties"]:
        errors.append(
            (path, f"Too many: {len(out)}: must have at most {schema['maxProperties']} items")
        )
    for key in schema.get("required", []):
        if value.get(key) is None:
            errors.append((_join(path, key), "Required value"))
    return out


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))
