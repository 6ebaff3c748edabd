"""IntOrString fields (maxUnavailable, maxSurge, probe ports), held as google.protobuf.Value."""

from __future__ import annotations

import math

from google.protobuf import struct_pb2

INT64_MAX = 2**63 - 1


def is_set(value: struct_pb2.Value) -> bool:
    return value.WhichOneof("kind") in ("number_value", "string_value")


def get(value: struct_pb2.Value) -> int | str | None:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        return int(value.number_value)
    if kind == "string_value":
        return value.string_value
    return None


def percent_value(text: str) -> int:
    """The number of a percentage ("25%"), as Go's strconv.Atoi reads it: ASCII digits, and the
    largest int64 for more (so "99...9%" is over 100%, however many digits: Python's int() raises
    ValueError past 4300 of them). ValueError when text is not digits and a '%'."""
    digits = text[:-1] if text.endswith("%") else text
    if not digits.isascii() or not digits.isdigit():
        raise ValueError(f"invalid value for IntOrString: invalid value for percentage: {text}")
    digits = digits.lstrip("0")
    return INT64_MAX if len(digits) > 19 else min(int(digits or "0"), INT64_MAX)


def set_int(value: struct_pb2.Value, number: int) -> None:
    value.number_value = number


def scaled_value(value: struct_pb2.Value, total: int, round_up: bool) -> int:
    """An absolute number, or a percentage of total rounded up or down (GetScaledValueFromIntOrPercent)."""
    v = get(value)
    if v is None:
        return 0
    if isinstance(v, int):
        return v
    if not v.endswith("%"):
        raise ValueError(f"invalid value for IntOrString: invalid type: string is not a percentage: {v}")
    percent = percent_value(v)
    exact = percent * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)
