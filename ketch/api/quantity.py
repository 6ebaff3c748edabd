"""Kubernetes resource quantities ("500m", "2", "128Mi", "1G", "1e3") as numbers.

Every quantity is brought into the range Kubernetes computes with, as its ParseQuantity and
int64 accessors do: a non-zero amount smaller than 1n is 1n (amounts round up to whole
nano-units), and an amount beyond the largest int64 is that (Kubernetes caps binary-suffixed
amounts there, and its Value() and MilliValue() saturate). So no spelling of a quantity (`1e999999999`, a
number of 5,000 digits) makes a number that overflows Decimal's context or Python's int(), in
validation, the scheduler or an agent.
"""

from __future__ import annotations

import re
from decimal import MAX_EMAX, MIN_EMIN, ROUND_CEILING, ROUND_UP, Context, Decimal, InvalidOperation

_SUFFIX = {
    "": Decimal(1),
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12, "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}
_RE = re.compile(r"^([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+))(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?)$")
MAX = Decimal(2**63 - 1)  # the largest amount: Kubernetes' int64
_NANO = Decimal("1e-9")  # the smallest step
# Wide enough that no parsed amount overflows or loses a digit of its nano-units on the way into range.
_WIDE = Context(prec=40, Emax=MAX_EMAX, Emin=MIN_EMIN)
_MAX_EXPONENT_DIGITS = 10  # Kubernetes reads the exponent as an int32 (strconv.ParseInt, then int32)


class QuantityError(ValueError):
    pass


def parse(text: str | int | float) -> Decimal:
    if isinstance(text, int | float):
        value = Decimal(str(text))
        if not value.is_finite():
            raise QuantityError(f"quantities must be finite numbers, not {text}")
        return _in_range(value)
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
        digits = exponent[1:]
        if len(digits.lstrip("+-").lstrip("0")) > _MAX_EXPONENT_DIGITS or not -(2**31) <= int(digits) < 2**31:
            raise QuantityError("unable to parse quantity's suffix")
        return _in_range(value.scaleb(int(digits), _WIDE))
    return _in_range(_WIDE.multiply(value, _SUFFIX[suffix or ""]))


def _in_range(value: Decimal) -> Decimal:
    """value capped at MAX either way, and a finer amount rounded up to whole nano-units."""
    if value.copy_abs() > MAX:
        return MAX.copy_sign(value)
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -9:
        return value.quantize(_NANO, rounding=ROUND_UP, context=_WIDE)
    return value


def millicores(text: str) -> int:
    """CPU quantity to millicores, rounding up as Kubernetes does (at most MAX)."""
    value = _WIDE.multiply(parse(text), 1000)
    return min(int(value.to_integral_value(rounding=ROUND_CEILING)), int(MAX))


def to_bytes(text: str) -> int:
    value = parse(text)
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def format_millicores(m: int) -> str:
    return str(m // 1000) if m % 1000 == 0 else f"{m}m"
