"""Builders for RBAC tests: roles and bindings as manifests, written straight into a memory store
(as if the API had validated them) so the index and authorizers read them as they would live."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from controlplane.registry import Registry
from controlplane.storage import Store
from controlplane.storage.backend import MemoryBackend
from ketch.api import manifest
from ketch.api.kinds import info_of

G = "rbac.authorization.k8s.io"


def rule(verbs: Sequence[str], groups: Sequence[str] = ("",), resources: Sequence[str] = (),
         names: Sequence[str] = (), urls: Sequence[str] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {"verbs": list(verbs)}
    if urls:
        out["nonResourceURLs"] = list(urls)
    else:
        out["apiGroups"], out["resources"] = list(groups), list(resources)
    if names:
        out["resourceNames"] = list(names)
    return out


def role(name: str, *rules: dict[str, Any], namespace: str = "", labels: dict[str, str] | None = None,
         aggregate: dict[str, str] | None = None) -> Any:
    kind = "Role" if namespace else "ClusterRole"
    md: dict[str, Any] = {"name": name, "labels": labels or {}}
    if namespace:
        md["namespace"] = namespace
    doc: dict[str, Any] = {"apiVersion": f"{G}/v1", "kind": kind, "metadata": md, "rules": list(rules)}
    if aggregate is not None:
        doc["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": aggregate}]}
    return manifest.from_dict(doc)


def subject(spec: str) -> dict[str, str]:
    """`User:alice`, `Group:dev`, `ServiceAccount:ns/name` or `ServiceAccount:name`."""
    kind, _, name = spec.partition(":")
    if kind == "ServiceAccount":
        ns, _, sa = name.rpartition("/")
        return {"kind": kind, "name": sa, **({"namespace": ns} if ns else {})}
    return {"kind": kind, "apiGroup": G, "name": name}


def binding(name: str, role_ref: str, *subjects: str, namespace: str = "") -> Any:
    """role_ref `ClusterRole/view` or `Role/reader`; a namespace makes it a RoleBinding."""
    ref_kind, _, ref_name = role_ref.partition("/")
    md: dict[str, Any] = {"name": name}
    if namespace:
        md["namespace"] = namespace
    return manifest.from_dict({
        "apiVersion": f"{G}/v1", "kind": "RoleBinding" if namespace else "ClusterRoleBinding", "metadata": md,
        "subjects": [subject(s) for s in subjects], "roleRef": {"apiGroup": G, "kind": ref_kind, "name": ref_name}})


async def memory_store() -> Store:
    registry = Registry()
    store = Store(MemoryBackend(), registry.field_values, parsed_on_read=registry.parsed_on_read())
    await store.start()
    return store


async def put(store: Store, *objs: Any) -> None:
    for obj in objs:
        info = info_of(obj)
        md = obj.metadata
        key = f"{md.namespace}/{md.name}" if info.namespaced else md.name
        await store.write(info.kind, key, obj, create=store.latest(info.kind, key) is None)


async def remove(store: Store, kind: str, key: str) -> None:
    await store.write(kind, key, None)
