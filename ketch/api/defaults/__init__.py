"""Kubernetes 1.31 defaulting for every kind, applied by the API server before validation.

The server calls `apply_defaults(obj)` on create (before prepare_for_create and validation) and
on every spec update, so defaults are idempotent: they only fill fields that are unset.
Event, Lease and ControllerRevision have no defaults in Kubernetes and get none here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

from . import apps, batch, core

_DEFAULTERS: dict[str, Callable[[Any], None]] = {
    "ketch.v1.Pod": core.pod,
    "ketch.v1.Node": core.node,
    "ketch.v1.Namespace": core.namespace,
    "ketch.v1.Job": batch.job,
    "ketch.v1.CronJob": batch.cronjob,
    "ketch.v1.DaemonSet": apps.daemonset,
}


def apply_defaults(obj: Message) -> None:
    """Fill in the defaults Kubernetes fills in, in place."""
    fn = _DEFAULTERS.get(obj.DESCRIPTOR.full_name)
    if fn is not None:
        fn(obj)
