"""Strategies of coordination.k8s.io/v1: Lease."""

from __future__ import annotations

from ketch.api.errors import FieldError
from ketch.api.validation import cluster
from ketch.v1 import coordination_pb2

from .strategy import Strategy


class LeaseStrategy(Strategy):
    kind = "Lease"
    # Renewed by every node every 10 s and read through watches: bytes until a write needs
    # them, so a renewal leaves one entry in the watch window, not an entry, a version and a
    # parsed message.
    keeps_parsed = False

    def validate(self, obj: coordination_pb2.Lease) -> list[FieldError]:
        return cluster.validate_lease(obj)
