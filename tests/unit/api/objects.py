"""Builders for API validation tests: a manifest dict, merged with a case's changes, as the server sees it.

`server_view(doc)` decodes a manifest, assigns uid/namespace as the API server does, applies the
defaults and the server's prepare-for-create (generated Job selector, default tolerations), so the
validators see exactly what they see on a real create.
"""

from __future__ import annotations

import copy
from typing import Any

from google.protobuf.message import Message

from controlplane.registry import Registry, Strategy
from ketch.api import manifest
from ketch.api.errors import FieldError
from ketch.api.kinds import info_of

UID = "0b5c4a77-1c7e-4b7e-9a5e-2f1f3b9a1c01"
REGISTRY = Registry()


def strategy_of(obj: Message) -> Strategy:
    return REGISTRY[obj.DESCRIPTOR.name]


def apply_defaults(obj: Message) -> None:
    strategy_of(obj).default(obj)


def validate_create(obj: Message) -> list[FieldError]:
    return strategy_of(obj).validate(obj)


def validate_update(new: Message, old: Message) -> list[FieldError]:
    return strategy_of(new).validate_update(new, old)


def validate_status_update(new: Message, old: Message) -> list[FieldError]:
    return strategy_of(new).validate_status_update(new, old)


def container(name: str = "main", **fields: Any) -> dict[str, Any]:
    return {"name": name, "command": ["sleep", "1"], **fields}


def pod_spec(**fields: Any) -> dict[str, Any]:
    return {"containers": [container()], **fields}


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge changes into a copy of base; None deletes a key; lists and empty dicts replace."""
    out = copy.deepcopy(base)
    for k, v in changes.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and v and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": pod_spec()}
JOB = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi"},
       "spec": {"template": {"spec": pod_spec(restartPolicy="Never")}}}
CRONJOB = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "hello"},
           "spec": {"schedule": "*/1 * * * *",
                    "jobTemplate": {"spec": {"template": {"spec": pod_spec(restartPolicy="OnFailure")}}}}}
DAEMONSET = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agentd"},
             "spec": {"selector": {"matchLabels": {"app": "agentd"}},
                      "template": {"metadata": {"labels": {"app": "agentd"}}, "spec": pod_spec()}}}
NODE = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"}}
NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}
LEASE = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "node-a"},
         "spec": {"holderIdentity": "node-a", "leaseDurationSeconds": 40}}
EVENT = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "pi.17a"},
         "involvedObject": {"kind": "Job", "name": "pi", "namespace": "default"}, "reason": "Completed",
         "type": "Normal"}
REVISION = {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "agentd-5d8f"},
            "data": {"spec": {}}, "revision": 1}


def server_view(doc: dict[str, Any], changes: dict[str, Any] | None = None) -> Message:
    obj = manifest.from_dict(merge(doc, changes or {}))
    info = info_of(obj)
    md = obj.metadata  # type: ignore[attr-defined]
    if info.namespaced and not md.namespace:
        md.namespace = "default"
    md.uid = UID
    md.creation_timestamp = "2024-05-01T12:00:00Z"
    if not md.name and md.generate_name:
        md.name = md.generate_name + "abcde"
    apply_defaults(obj)
    strategy_of(obj).prepare_for_create(obj, 0.0)
    return obj
