"""The RBAC kinds over real gRPC: created, defaulted, listed, a binding's roleRef immutable,
roles deleted with their namespace's content."""

from __future__ import annotations

import pytest

from ketch.api import errors, manifest

G = "rbac.authorization.k8s.io"


def binding(name: str, role: str, namespace: str = "default") -> object:
    return manifest.from_dict({
        "apiVersion": f"{G}/v1", "kind": "RoleBinding", "metadata": {"name": name, "namespace": namespace},
        "subjects": [{"kind": "User", "name": "alice"}], "roleRef": {"kind": "Role", "name": role}})


async def test_role_and_binding_round_trip(api) -> None:
    role = manifest.from_dict({"apiVersion": f"{G}/v1", "kind": "Role",
                               "metadata": {"name": "reader", "namespace": "default"},
                               "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]})
    await api.client.create(role)
    created = await api.client.create(binding("read", "reader"))
    assert created.role_ref.api_group == G and created.subjects[0].api_group == G
    items, _ = await api.client.list("RoleBinding", "default")
    assert [b.metadata.name for b in items] == ["read"]

    created.role_ref.name = "writer"
    with pytest.raises(errors.Invalid, match=r"roleRef: Invalid value: .*cannot change roleRef"):
        await api.client.update(created)
    got = await api.client.get("RoleBinding", "read", "default")
    assert got.role_ref.name == "reader"


async def test_an_invalid_cluster_role_is_refused_and_not_stored(api) -> None:
    bad = manifest.from_dict({"apiVersion": f"{G}/v1", "kind": "ClusterRole", "metadata": {"name": "bad"},
                              "rules": [{"verbs": ["get"]}]})
    with pytest.raises(errors.Invalid, match=r'The ClusterRole "bad" is invalid: .*rules\[0\].apiGroups'):
        await api.client.create(bad)
    with pytest.raises(errors.NotFound):
        await api.client.get("ClusterRole", "bad")
