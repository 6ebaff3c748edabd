"""IntOrString fields (maxUnavailable, maxSurge, probe ports), held as google.protobuf.Value."""

from __future__ import annotations

import math

from google.protobuf import struct_pb2


def is_set(value: struct_pb2.Value) -> bool:
    return value.WhichOneof("kind") in ("number_value", "string_value")


def get(value: struct_pb2.Value) -> int | str | None:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        return int(value.number_value)
    if kind == "string_value":
        return value.string_value
    return None


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
    percent = int(v[:-1])
    exact = percent * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)
