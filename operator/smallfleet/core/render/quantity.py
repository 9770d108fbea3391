"""Kubernetes resource quantities as exact numbers.

A pipeline's server needs the sum of its steps' CPU and memory, and the apply
plan must see that "1000m" and "1" (or "1Gi" and "1024Mi") are the same
request, because the API server rewrites quantities into its canonical form.
Fractions keep both exact; floats would turn "0.1" into a different number.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Final

_SUFFIXES: Final[dict[str, Fraction]] = {
    "": Fraction(1),
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 1000),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
}
_QUANTITY: Final = re.compile(
    r"^(?P<sign>[+-]?)(?P<num>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?:(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)|[eE](?P<exp>[+-]?[0-9]+))?$"
)


def parse_quantity(text: str | int | float) -> Fraction:
    """The exact value of a Kubernetes quantity; ValueError when it is not one."""
    if isinstance(text, bool):
        raise ValueError(f"not a quantity: {text!r}")
    if isinstance(text, int):
        return Fraction(text)
    if isinstance(text, float):
        return Fraction(str(text))
    m = _QUANTITY.match(text.strip())
    if m is None:
        raise ValueError(f"not a quantity: {text!r}")
    value = Fraction(m["num"])
    if m["exp"] is not None:
        value *= Fraction(10) ** int(m["exp"])
    else:
        value *= _SUFFIXES[m["suffix"] or ""]
    return -value if m["sign"] == "-" else value


def format_cpu(value: Fraction) -> str:
    """Whole cores as "2", otherwise millicores rounded up ("1500m")."""
    millis = -(-value.numerator * 1000 // value.denominator)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def format_bytes(value: Fraction) -> str:
    """The largest binary suffix that divides the byte count exactly ("3Gi", "1536Mi")."""
    count = -(-value.numerator // value.denominator)
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = int(_SUFFIXES[suffix])
        if count and count % unit == 0:
            return f"{count // unit}{suffix}"
    return str(count)
