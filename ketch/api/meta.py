"""Helpers over ObjectMeta: keys, owner references, conditions, finalizers.

Pure functions on the generated messages; controllers, the API server and the agent share
them so that, for example, "the controller of a pod" means one thing everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.protobuf.message import Message

from ketch.v1 import meta_pb2

from . import timeutil
from .kinds import info_of


def key(namespace: str, name: str) -> str:
    """The work-queue and cache key: `ns/name`, or `name` for cluster-scoped objects."""
    return f"{namespace}/{name}" if namespace else name


def key_of(obj: Any) -> str:
    return key(obj.metadata.namespace, obj.metadata.name)


def split_key(k: str) -> tuple[str, str]:
    ns, sep, name = k.partition("/")
    return (ns, name) if sep else ("", ns)


def controller_ref(obj: Any) -> meta_pb2.OwnerReference | None:
    for ref in obj.metadata.owner_references:
        if ref.HasField("controller") and ref.controller:
            return ref
    return None


def owner_ref_for(owner: Message, controller: bool = True, block: bool = True) -> meta_pb2.OwnerReference:
    info = info_of(owner)
    ref = meta_pb2.OwnerReference(
        api_version=info.api_version, kind=info.kind,
        name=owner.metadata.name, uid=owner.metadata.uid,  # type: ignore[attr-defined]
    )
    if controller:
        ref.controller = True
    if block:
        ref.block_owner_deletion = True
    return ref


def object_ref(obj: Message) -> meta_pb2.ObjectReference:
    info = info_of(obj)
    md = obj.metadata  # type: ignore[attr-defined]
    return meta_pb2.ObjectReference(
        kind=info.kind, api_version=info.api_version, namespace=md.namespace, name=md.name,
        uid=md.uid, resource_version=md.resource_version,
    )


def remove_finalizer(obj: Any, finalizer: str) -> bool:
    fins = obj.metadata.finalizers
    if finalizer not in fins:
        return False
    kept = [f for f in fins if f != finalizer]
    del fins[:]
    fins.extend(kept)
    return True


# ---------------------------------------------------------------------------------------------
# Conditions: every kind's condition message has type, status, reason, message and
# last_transition_time, so one set of helpers serves them all.

def find_condition(conditions: Iterable[Any], ctype: str) -> Any | None:
    for c in conditions:
        if c.type == ctype:
            return c
    return None


def condition_true(conditions: Iterable[Any], ctype: str) -> bool:
    c = find_condition(conditions, ctype)
    return c is not None and c.status == "True"


def set_condition(
    conditions: Any, ctype: str, status: str, reason: str = "", message: str = "",
    now: float | None = None, probe_time: bool = False, heartbeat: bool = False,
) -> bool:
    """Add or update a condition; lastTransitionTime moves only when status changes.

    Returns whether anything changed. `conditions` is a repeated field of condition messages.
    """
    stamp = timeutil.format(now) if now is not None else timeutil.now()
    existing = find_condition(conditions, ctype)
    if existing is None:
        c = conditions.add()
        c.type, c.status, c.reason, c.message = ctype, status, reason, message
        c.last_transition_time = stamp
        if probe_time:
            c.last_probe_time = stamp
        if heartbeat:
            c.last_heartbeat_time = stamp
        return True
    changed = existing.status != status or existing.reason != reason or existing.message != message
    if existing.status != status:
        existing.last_transition_time = stamp
    existing.status, existing.reason, existing.message = status, reason, message
    if probe_time and changed:
        existing.last_probe_time = stamp
    if heartbeat:
        existing.last_heartbeat_time = stamp
    return changed


def label_value(obj: Any, name: str, default: str = "") -> str:
    return obj.metadata.labels.get(name, default)
