"""A PromQL parser for tests: syntax, argument types, and the metric names an expression reads.

Dashboards and alerts are code that nothing compiles: a misspelt metric or a
`rate()` of an instant vector shows an empty panel, not an error. The chart's
tests parse every expression with this recursive-descent parser of PromQL's
grammar (Prometheus' precedence, aggregations with `by`/`without` before or
after their arguments, vector matching with `on`/`ignoring` and
`group_left`/`group_right`, `bool`, ranges, subqueries, `offset`) and check the
types the functions need, so an expression that Prometheus would reject fails
here too. It returns the metric names the expression selects, which the tests
compare with the names the code exports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

AGGREGATIONS: Final = frozenset(
    [
        "sum",
        "avg",
        "count",
        "min",
        "max",
        "stddev",
        "stdvar",
        "group",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "limitk",
        "limit_ratio",
    ]
)
AGGREGATIONS_WITH_PARAMETER: Final = frozenset(
    ["topk", "bottomk", "quantile", "count_values", "limitk", "limit_ratio"]
)
# Function -> argument types ("v" instant vector, "m" range vector, "s" scalar, "t" string),
# "?" marks the optional tail; the result type follows the colon.
FUNCTIONS: Final[dict[str, str]] = {
    **{
        f: "m:v"
        for f in ["rate", "irate", "increase", "delta", "idelta", "deriv", "changes", "resets"]
    },
    **{
        f"{f}_over_time": "m:v"
        for f in [
            "avg",
            "min",
            "max",
            "sum",
            "count",
            "last",
            "stddev",
            "stdvar",
            "present",
            "absent",
        ]
    },
    "quantile_over_time": "sm:v",
    "predict_linear": "ms:v",
    "histogram_quantile": "sv:v",
    "clamp": "vss:v",
    "clamp_min": "vs:v",
    "clamp_max": "vs:v",
    "label_replace": "vtttt:v",
    "label_join": "vttt*:v",
    "vector": "s:v",
    "scalar": "v:s",
    "time": ":s",
    "absent": "v:v",
    "timestamp": "v:v",
    **{
        f: "v:v"
        for f in [
            "abs",
            "ceil",
            "floor",
            "exp",
            "ln",
            "log2",
            "log10",
            "sqrt",
            "sgn",
            "sort",
            "sort_desc",
            "day_of_month",
            "day_of_week",
            "day_of_year",
            "days_in_month",
            "hour",
            "minute",
            "month",
            "year",
        ]
    },
    "round": "v?s:v",
}
KEYWORDS: Final = frozenset(
    [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "and",
        "or",
        "unless",
        "atan2",
    ]
)
# Lowest to highest precedence; `^` is right-associative.
BINARY_LEVELS: Final = (("or",), ("and", "unless"), ("==", "!=", "<=", "<", ">=", ">"),
                        ("+", "-"), ("*", "/", "%", "atan2"), ("^",))  # fmt: skip
COMPARISONS: Final = frozenset(("==", "!=", "<=", "<", ">=", ">"))
SET_OPERATORS: Final = frozenset(("and", "or", "unless"))
DURATION: Final = r"(?:[0-9]+(?:ms|s|m|h|d|w|y))+"
TOKEN: Final = re.compile(
    rf"""\s*(?:
      (?P<duration>{DURATION})(?![A-Za-z0-9_])
    | (?P<number>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|0x[0-9a-fA-F]+|[Ii]nf|NaN)
      (?![A-Za-z0-9_:])
    | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_:]*)
    | (?P<op>==|!=|<=|>=|=~|!~|[-+*/%^<>=(){{}}\[\],:@])
    )""",
    re.VERBOSE,
)


class PromQLError(ValueError):
    """The expression is not valid PromQL (or uses a function with the wrong types)."""


@dataclass
class _Parser:
    text: str
    tokens: list[tuple[str, str]] = field(default_factory=list)
    pos: int = 0
    metrics: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        i, text = 0, self.text
        while i < len(text):
            if not text[i:].strip():
                break
            m = TOKEN.match(text, i)
            if m is None or m.end() == i:
                raise PromQLError(f"unexpected character at {i}: {text[i : i + 20]!r}")
            kind = m.lastgroup or ""
            self.tokens.append((kind, m.group(kind)))
            i = m.end()
        self.tokens.append(("end", ""))

    def peek(self, offset: int = 0) -> tuple[str, str]:
        return self.tokens[min(self.pos + offset, len(self.tokens) - 1)]

    def take(self) -> tuple[str, str]:
        token = self.peek()
        self.pos += 1
        return token

    def accept(self, value: str) -> bool:
        if self.peek()[1] == value and self.peek()[0] in ("op", "ident"):
            self.pos += 1
            return True
        return False

    def expect(self, value: str) -> None:
        if not self.accept(value):
            raise PromQLError(f"expected {value!r}, found {self.peek()[1]!r} in {self.text!r}")

    # ---------------------------------------------------------------- expressions

    def parse(self) -> str:
        result = self.binary(0)
        if self.peek()[0] != "end":
            raise PromQLError(f"unexpected {self.peek()[1]!r} in {self.text!r}")
        return result

    def binary(self, level: int) -> str:
        if level == len(BINARY_LEVELS):
            return self.unary()
        ops = BINARY_LEVELS[level]
        left = self.binary(level + 1)
        while self.peek()[1] in ops and self.peek()[0] in ("op", "ident"):
            op = self.take()[1]
            returns_bool = self.accept("bool")
            if returns_bool and op not in COMPARISONS:
                raise PromQLError(f"bool after {op!r} in {self.text!r}")
            matching = self.vector_matching()
            # `^` binds right to left: its right side is parsed at its own level.
            right = self.binary(level if op == "^" else level + 1)
            if op in SET_OPERATORS and not (left == "v" and right == "v"):
                raise PromQLError(f"{op} needs vectors in {self.text!r}")
            if matching and not (left == "v" and right == "v"):
                raise PromQLError(f"vector matching between non-vectors in {self.text!r}")
            if "m" in (left, right):
                raise PromQLError(f"a range vector in a binary {op!r} in {self.text!r}")
            left = "v" if "v" in (left, right) else "s"
        return left

    def vector_matching(self) -> bool:
        found = False
        if self.peek()[1] in ("on", "ignoring"):
            self.take()
            self.label_list()
            found = True
        if self.peek()[1] in ("group_left", "group_right"):
            if not found:
                raise PromQLError(f"group_left/right without on/ignoring in {self.text!r}")
            self.take()
            if self.peek()[1] == "(":
                self.label_list()
        return found

    def label_list(self) -> list[str]:
        self.expect("(")
        labels = []
        while not self.accept(")"):
            kind, value = self.take()
            if kind != "ident":
                raise PromQLError(f"expected a label name, found {value!r} in {self.text!r}")
            labels.append(value)
            if not self.accept(","):
                self.expect(")")
                break
        return labels

    def unary(self) -> str:
        if self.peek()[1] in ("-", "+") and self.peek()[0] == "op":
            self.take()
            operand = self.unary()
            if operand not in ("v", "s"):
                raise PromQLError(f"unary minus of a {operand} in {self.text!r}")
            return operand
        return self.postfix(self.primary())

    def postfix(self, kind: str) -> str:
        while True:
            if self.peek()[1] == "[":
                self.take()
                self.duration()
                if self.accept(":"):
                    if self.peek()[0] == "duration":
                        self.duration()
                elif kind != "selector":
                    raise PromQLError(f"a range needs a selector (or a subquery) in {self.text!r}")
                self.expect("]")
                if kind not in ("selector", "v"):
                    raise PromQLError(f"a range of a {kind} in {self.text!r}")
                kind = "m"
            elif self.accept("offset"):
                self.accept("-")
                self.duration()
            elif self.accept("@"):
                kind_, value = self.take()
                if kind_ not in ("number", "ident"):
                    raise PromQLError(f"bad @ modifier {value!r} in {self.text!r}")
                if kind_ == "ident":
                    self.expect("(")
                    self.expect(")")
            else:
                return "v" if kind == "selector" else kind

    def duration(self) -> None:
        kind, value = self.take()
        if kind != "duration":
            raise PromQLError(f"expected a duration, found {value!r} in {self.text!r}")

    def primary(self) -> str:
        kind, value = self.peek()
        if kind == "number":
            self.take()
            return "s"
        if kind == "string":
            self.take()
            return "t"
        if value == "(" and kind == "op":
            self.take()
            inner = self.binary(0)
            self.expect(")")
            return inner
        if value == "{" and kind == "op":
            return self.selector(None)
        if kind == "ident":
            if value in AGGREGATIONS and self.peek(1)[1] in ("(", "by", "without"):
                return self.aggregation()
            if self.peek(1)[1] == "(":
                return self.call()
            if value in KEYWORDS:
                raise PromQLError(f"unexpected keyword {value!r} in {self.text!r}")
            self.take()
            return self.selector(value)
        raise PromQLError(f"unexpected {value!r} in {self.text!r}")

    def selector(self, name: str | None) -> str:
        names = {name} if name else set()
        if self.accept("{"):
            while not self.accept("}"):
                kind, label = self.take()
                if kind != "ident":
                    raise PromQLError(f"expected a label name, found {label!r} in {self.text!r}")
                op = self.take()[1]
                if op not in ("=", "!=", "=~", "!~"):
                    raise PromQLError(f"expected a label matcher, found {op!r} in {self.text!r}")
                kind, quoted = self.take()
                if kind != "string":
                    raise PromQLError(f"a matcher needs a string, found {quoted!r}")
                if label == "__name__" and op == "=":
                    names.add(quoted[1:-1])
                if not self.accept(","):
                    self.expect("}")
                    break
        if not names:
            raise PromQLError(f"a selector without a metric name in {self.text!r}")
        self.metrics |= names
        return "selector"

    def aggregation(self) -> str:
        name = self.take()[1]
        if self.peek()[1] in ("by", "without"):
            self.take()
            self.label_list()
        self.expect("(")
        if name in AGGREGATIONS_WITH_PARAMETER:
            self.binary(0)
            self.expect(",")
        operand = self.binary(0)
        self.expect(")")
        if self.peek()[1] in ("by", "without"):
            self.take()
            self.label_list()
        if operand != "v":
            raise PromQLError(f"{name} of a {operand} in {self.text!r}")
        return "v"

    def call(self) -> str:
        name = self.take()[1]
        signature = FUNCTIONS.get(name)
        if signature is None:
            raise PromQLError(f"unknown function {name!r} in {self.text!r}")
        wanted, result = signature.split(":")
        self.expect("(")
        got: list[str] = []
        while not self.accept(")"):
            got.append(self.binary(0))
            if not self.accept(","):
                self.expect(")")
                break
        required = wanted.split("?")[0].replace("*", "")
        variadic = wanted.endswith("*")
        allowed = wanted.replace("?", "").replace("*", "")
        if len(got) < len(required) or (not variadic and len(got) > len(allowed)):
            raise PromQLError(f"{name} takes {wanted!r}, got {''.join(got)!r} in {self.text!r}")
        for i, actual in enumerate(got):
            expected = allowed[min(i, len(allowed) - 1)]
            if actual != expected:
                raise PromQLError(
                    f"argument {i + 1} of {name} must be {expected!r}, is {actual!r} in {self.text!r}"
                )
        return result


def metric_names(expr: str) -> set[str]:
    """The metric names `expr` selects; PromQLError when it is not valid PromQL."""
    parser = _Parser(expr)
    parser.parse()
    return parser.metrics
