"""Kubernetes resource quantities (``500m``, ``2``, ``4Gi``, ``1e3``) as exact decimals.

The grammar is the one of ``k8s.io/apimachinery/pkg/api/resource``: a signed decimal number with
an optional binary suffix (``Ki Mi Gi Ti Pi Ei``, powers of 1024), decimal SI suffix
(``n u m k M G T P E``) or decimal exponent (``e3``, ``E-2``). Values are kept as strings on the
wire (YAML may also give a bare number) and parsed only when a number is needed, so a Pod with a
quantity flashlink does not use still round-trips unchanged.
"""

from __future__ import annotations

__all__ = ["Quantity", "format_cpu", "parse_quantity"]

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated

from pydantic import BeforeValidator

_SUFFIXES: dict[str, Decimal] = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(1024),
    "Mi": Decimal(1024**2),
    "Gi": Decimal(1024**3),
    "Ti": Decimal(1024**4),
    "Pi": Decimal(1024**5),
    "Ei": Decimal(1024**6),
}
_QUANTITY = re.compile(
    r"(?P<number>[+-]?(?:\d+\.?\d*|\.\d+))"
    r"(?:(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])|[eE](?P<exponent>[+-]?\d+))?"
)


def _to_text(value: object) -> object:
    # YAML turns `cpu: 2` into an int and `cpu: 0.5` into a float; Kubernetes accepts both.
    if isinstance(value, bool):
        return value  # let pydantic reject it: `cpu: true` is not a quantity
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    return value


Quantity = Annotated[str, BeforeValidator(_to_text)]
"""A quantity as written on the wire (numbers from YAML are turned into their text)."""


def parse_quantity(text: str) -> Decimal:
    """The exact value of a quantity; ``ValueError`` names the accepted forms.

    >>> parse_quantity("500m"), parse_quantity("1Gi"), parse_quantity("1.5e3")
    (Decimal('0.500'), Decimal('1073741824'), Decimal('1.5E+3'))
    """
    match = _QUANTITY.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"{text!r} is not a Kubernetes quantity; expected a number with an optional suffix "
            "such as 500m, 2, 1.5, 128Mi, 4Gi, 10G or 1e3"
        )
    try:
        number = Decimal(match["number"])
    except InvalidOperation as exc:  # pragma: no cover - the regex only admits valid decimals
        raise ValueError(f"{text!r} is not a Kubernetes quantity") from exc
    if match["exponent"] is not None:
        return number.scaleb(int(match["exponent"]))
    return number * _SUFFIXES[match["suffix"] or ""]


def format_cpu(cores: Decimal) -> str:
    """A CPU amount the way Kubernetes prints it: whole cores as ``2``, else millicores ``500m``."""
    millis = (cores * 1000).to_integral_value(rounding="ROUND_CEILING")
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"
