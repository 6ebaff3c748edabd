"""Kubernetes resource quantities ("500m", "2", "128Mi", "1G", "1e3") as numbers."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_SUFFIX = {
    "": Decimal(1),
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12, "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}
_RE = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?)$")


class QuantityError(ValueError):
    pass


def parse(text: str | int | float) -> Decimal:
    if isinstance(text, int | float):
        return Decimal(str(text))
    match = _RE.match(text.strip())
    if not match:
        raise QuantityError("quantities must match the regular expression "
                            "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
    number, exponent, suffix = match.groups()
    try:
        value = Decimal(number)
    except InvalidOperation as err:
        raise QuantityError(str(err)) from err
    if exponent:
        return value * (Decimal(10) ** int(exponent[1:]))
    return value * _SUFFIX[suffix or ""]


def millicores(text: str) -> int:
    """CPU quantity to millicores, rounding up as Kubernetes does."""
    value = parse(text) * 1000
    return int(value.to_integral_value(rounding="ROUND_CEILING"))


def to_bytes(text: str) -> int:
    value = parse(text)
    return int(value.to_integral_value(rounding="ROUND_CEILING"))


def format_millicores(m: int) -> str:
    return str(m // 1000) if m % 1000 == 0 else f"{m}m"
