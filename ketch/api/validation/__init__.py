"""Kubernetes 1.31 validation for every kind: create, update and status-update rules.

The API server calls, after defaulting:
- `validate_create(obj)` on create, and on a spec update together with
- `validate_update(new, old)` (immutable fields and allowed transitions only);
- `validate_status_update(new, old)` on a status write (new = stored object with the new status).
Each returns every problem found as a FieldError, in Kubernetes' order, paths and words;
`ketch.api.errors.invalid_error` turns them into `The Job "x" is invalid: [...]`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

from ketch.api.errors import FieldError, required

from . import apps, batch, batch_update, cluster, core, field, meta

_CREATE: dict[str, Callable[[Any], list[FieldError]]] = {
    "ketch.v1.Pod": core.validate_pod,
    "ketch.v1.Node": cluster.validate_node,
    "ketch.v1.Namespace": cluster.validate_namespace,
    "ketch.v1.Event": cluster.validate_event,
    "ketch.v1.Lease": cluster.validate_lease,
    "ketch.v1.Job": batch.validate_job,
    "ketch.v1.CronJob": batch.validate_cronjob,
    "ketch.v1.DaemonSet": apps.validate_daemonset,
    "ketch.v1.ControllerRevision": apps.validate_controller_revision,
}
_UPDATE: dict[str, Callable[[Any, Any], list[FieldError]]] = {
    "ketch.v1.Pod": core.validate_pod_update,
    "ketch.v1.Node": cluster.validate_node_update,
    "ketch.v1.Job": batch_update.validate_job_update,
    "ketch.v1.CronJob": batch_update.validate_cronjob_update,
    "ketch.v1.DaemonSet": apps.validate_daemonset_update,
    "ketch.v1.ControllerRevision": apps.validate_controller_revision_update,
}
_STATUS: dict[str, Callable[[Any, Any], list[FieldError]]] = {
    "ketch.v1.Pod": core.validate_pod_status_update,
    "ketch.v1.Node": cluster.validate_node_status_update,
    "ketch.v1.Job": batch_update.validate_job_status_update,
    "ketch.v1.DaemonSet": apps.validate_daemonset_status_update,
}


# (namespaced, name rule) per kind, for validating metadata alone.
_META: dict[str, tuple[bool, meta.NameFn]] = {
    "ketch.v1.Node": (False, field.name_is_dns_subdomain),
    "ketch.v1.Namespace": (False, field.name_is_dns_label),
    "ketch.v1.Event": (True, cluster.path_segment_name),
}


def validate_metadata_update(new: Message, old: Message) -> list[FieldError]:
    """An update that changes only metadata (finalizers, labels, annotations, owner references):
    the rest was valid when stored and is unchanged, so only the metadata rules apply."""
    errs: list[FieldError] = []
    namespaced, name_fn = _META.get(new.DESCRIPTOR.full_name, (True, field.name_is_dns_subdomain))
    meta.object_meta(errs, new.metadata, namespaced, name_fn)  # type: ignore[attr-defined]
    meta.object_meta_update(errs, new.metadata, old.metadata)  # type: ignore[attr-defined]
    return errs


def _generic_update(new: Message, old: Message) -> list[FieldError]:
    errs: list[FieldError] = []
    meta.object_meta_update(errs, new.metadata, old.metadata)  # type: ignore[attr-defined]
    return errs


def validate_create(obj: Message) -> list[FieldError]:
    fn = _CREATE.get(obj.DESCRIPTOR.full_name)
    return fn(obj) if fn is not None else []


def validate_update(new: Message, old: Message) -> list[FieldError]:
    fn = _UPDATE.get(new.DESCRIPTOR.full_name, _generic_update)
    return fn(new, old)


def validate_status_update(new: Message, old: Message) -> list[FieldError]:
    fn = _STATUS.get(new.DESCRIPTOR.full_name)
    return fn(new, old) if fn is not None else []


def validate_binding(target_node: str) -> list[FieldError]:
    """ValidatePodBinding: the target (a Node) is named by a DNS subdomain."""
    errs: list[FieldError] = []
    if not target_node:
        errs.append(required("target.name"))
    else:
        field.dns_subdomain_field(errs, target_node, "target.name")
    return errs
