"""Resource quantities as Kubernetes computes with them: amounts round up to whole nano-units and
stop at the largest int64, whatever their spelling."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ketch.api import quantity

MAX = 2**63 - 1


@pytest.mark.parametrize(("text", "value", "millicores", "whole"), [
    ("500m", Decimal("0.5"), 500, 1),
    ("128Mi", Decimal(2**27), 2**27 * 1000, 2**27),
    ("1e3", Decimal(1000), 1_000_000, 1000),
    ("1.0000000001", Decimal("1.000000001"), 1001, 2),
    ("0.0000000001", Decimal("1e-9"), 1, 1),
    ("1e-999999999", Decimal("1e-9"), 1, 1),
    # These overflowed Decimal's context (decimal.Overflow) or Python's int() (over 4300 digits):
    # INTERNAL from the API server, and a scheduler or agent failing on the stored pod.
    ("1e999999999", Decimal(MAX), MAX, MAX),
    ("9" * 5000, Decimal(MAX), MAX, MAX),
    ("9" * 5000 + ".5Ei", Decimal(MAX), MAX, MAX),
    ("-1e999999", Decimal(-MAX), -MAX * 1000, -MAX),
])
def test_quantities_are_in_kubernetes_range(text: str, value: Decimal, millicores: int, whole: int) -> None:
    assert quantity.parse(text) == value
    assert quantity.millicores(text) == min(millicores, MAX)
    assert quantity.to_bytes(text) == whole


@pytest.mark.parametrize(("text", "message"), [
    ("1e" + "9" * 5000, "unable to parse quantity's suffix"),
    ("1e99999999999", "unable to parse quantity's suffix"),
    ("\u0661Gi", "quantities must match the regular expression"),  # an Arabic-Indic 1: Go reads ASCII digits only
])
def test_a_quantity_kubernetes_cannot_read_is_a_quantity_error(text: str, message: str) -> None:
    with pytest.raises(quantity.QuantityError, match=message):
        quantity.parse(text)


def test_a_non_finite_number_is_a_quantity_error() -> None:
    with pytest.raises(quantity.QuantityError):
        quantity.parse(float("inf"))
