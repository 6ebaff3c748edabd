"""Strategies of coordination.k8s.io/v1: Lease."""

from __future__ import annotations

from ketch.api.errors import FieldError
from ketch.api.validation import cluster
from ketch.v1 import coordination_pb2

from .strategy import Strategy


class LeaseStrategy(Strategy):
    kind = "Lease"

    def validate(self, obj: coordination_pb2.Lease) -> list[FieldError]:
        return cluster.validate_lease(obj)
