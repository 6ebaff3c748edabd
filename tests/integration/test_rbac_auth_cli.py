"""`ketch auth can-i` and `ketch auth whoami` against a server with Node,RBAC, as kubectl's:
yes/no and exit 0/1, the reason after a no, the user's name and groups; `--as`/`--as-group` answer
for the impersonated user when the caller may impersonate, and are refused in Kubernetes' words
when not. The access review kinds are answered, never stored, and refuse other verbs."""

from __future__ import annotations

import io

import pytest

from ketch.api import errors, manifest
from ketch.cli.factory import Factory
from ketch.cli.main import execute
from ketch.client import kubeconfig
from ketch.v1 import authorization_pb2

from .rbac_helpers import clients, secured

G = "rbac.authorization.k8s.io"


async def ketch(api, token: str, *argv: str) -> tuple[int, str, str]:
    """The CLI as a test user: a kubeconfig with the cluster's CA and the user's bearer token."""
    path = api.kubeconfig_dir / f"{token}.conf"
    if not path.exists():
        kubeconfig.single("test", api.address, api.pki.ca_pem, token, token=token).save(path)
    out, err = io.StringIO(), io.StringIO()
    code = await execute([*argv], Factory(server=api.address, out=out, err=err, kubeconfig=str(path)))
    return code, out.getvalue(), err.getvalue()


def binding(name: str, ns: str, role: str, user: str) -> object:
    return manifest.from_dict({"apiVersion": f"{G}/v1", "kind": "RoleBinding" if ns else "ClusterRoleBinding",
                               "metadata": {"name": name, **({"namespace": ns} if ns else {})},
                               "subjects": [{"kind": "User", "name": user}],
                               "roleRef": {"kind": "ClusterRole", "name": role}})


def cluster_role(name: str, *rules: dict) -> object:
    return manifest.from_dict({"apiVersion": f"{G}/v1", "kind": "ClusterRole", "metadata": {"name": name},
                               "rules": list(rules)})


async def test_can_i_answers_yes_and_no_as_kubectl() -> None:
    async with secured() as api:
        assert await ketch(api, "alice", "auth", "can-i", "create", "jobs") == (1, "no\n", "")
        await api.local.create(cluster_role("job-maker", {"apiGroups": ["batch"], "resources": ["jobs"],
                                                          "verbs": ["create"]}))
        await api.local.create(binding("alice-jobs", "default", "job-maker", "alice"))
        assert await ketch(api, "alice", "auth", "can-i", "create", "jobs") == (0, "yes\n", "")
        assert await ketch(api, "alice", "auth", "can-i", "create", "jobs.batch", "-n", "kube-system") == \
            (1, "no\n", "")
        assert (await ketch(api, "alice", "auth", "can-i", "create", "jobs", "-q"))[:2] == (0, "")
        assert (await ketch(api, "alice", "auth", "can-i", "get", "/version"))[:2] == (0, "yes\n")
        # A binding to a role that is not there: no, with RBAC's reason.
        await api.local.create(binding("alice-ghost", "default", "ghost", "alice"))
        code, out, _ = await ketch(api, "alice", "auth", "can-i", "delete", "pods/p1")
        assert (code, out) == (1, 'no - RBAC: clusterrole.rbac.authorization.k8s.io "ghost" not found\n')
        # Nodes are cluster-scoped: asked without a namespace, as the real request is.
        assert (await ketch(api, "n1", "auth", "can-i", "list", "nodes"))[:2] == (0, "yes\n")
        assert (await ketch(api, "n1", "auth", "can-i", "delete", "node", "n2"))[:2] == (1, "no - node 'n1' cannot "
                                                                                          "modify node 'n2', only "
                                                                                          "its own Node object\n")
        code, _, err = await ketch(api, "alice", "auth", "can-i", "get", "widgets")
        assert code == 1 and "Warning: the server doesn't have a resource type 'widgets'" in err


async def test_whoami_prints_the_user_and_groups() -> None:
    async with secured() as api:
        code, out, _ = await ketch(api, "alice", "auth", "whoami")
        assert code == 0
        assert out.split("\n")[:3] == ["ATTRIBUTE   VALUE", "Username    alice",
                                        "Groups      [dev system:authenticated]"]
        code, out, _ = await ketch(api, "n1", "auth", "whoami", "-o", "json")
        assert '"username": "system:node:n1"' in out


async def test_impersonation_allowed_and_refused() -> None:
    async with secured() as api:
        # Masters may impersonate anyone: the question is answered for bob, who holds nothing.
        assert await ketch(api, "admin", "--as", "bob", "auth", "can-i", "list", "pods") == (1, "no\n", "")
        assert (await ketch(api, "admin", "auth", "can-i", "list", "pods", "--as", "bob", "--as-group",
                            "system:masters"))[:2] == (0, "yes\n")
        code, out, _ = await ketch(api, "admin", "--as", "bob", "--as-group", "ops", "auth", "whoami")
        assert "Username    bob" in out and "Groups      [ops system:authenticated]" in out

        # Alice may not, until she may impersonate bob (by name) and no one else.
        code, out, err = await ketch(api, "alice", "--as", "bob", "auth", "whoami")
        assert (code, out) == (1, "")
        assert err == ('Error from server (Forbidden): users "bob" is forbidden: User "alice" cannot impersonate '
                       'resource "users" in API group "" at the cluster scope\n')
        await api.local.create(cluster_role("imp-bob", {"apiGroups": [""], "resources": ["users"],
                                                        "verbs": ["impersonate"], "resourceNames": ["bob"]}))
        await api.local.create(binding("alice-imp-bob", "", "imp-bob", "alice"))
        code, out, _ = await ketch(api, "alice", "--as", "bob", "auth", "whoami")
        assert code == 0 and "Username    bob" in out
        code, _, err = await ketch(api, "alice", "--as", "bob", "--as-group", "system:masters", "get", "nodes")
        assert code == 1 and 'groups "system:masters" is forbidden: User "alice" cannot impersonate resource ' \
                             '"groups"' in err
        code, _, err = await ketch(api, "alice", "--as", "carol", "auth", "can-i", "get", "pods")
        assert code == 1 and 'users "carol" is forbidden' in err
        code, _, err = await ketch(api, "alice", "--as-group", "ops", "auth", "whoami")
        assert code == 1 and "--as USER" in err


async def test_reviews_are_answered_never_stored_and_refuse_other_verbs() -> None:
    async with secured() as api, clients(api, "admin", "alice") as (admin, alice):
        sar = authorization_pb2.SubjectAccessReview(api_version="authorization.k8s.io/v1", kind="SubjectAccessReview")
        sar.spec.user = "alice"
        sar.spec.resource_attributes.verb, sar.spec.resource_attributes.resource = "get", "pods"
        sar.spec.resource_attributes.namespace = "default"
        answer = await admin.create(sar)
        assert not answer.status.allowed
        with pytest.raises(errors.Forbidden, match='cannot create resource "subjectaccessreviews"'):
            await alice.create(sar)
        with pytest.raises(errors.MethodNotAllowed):
            await admin.list("SelfSubjectAccessReview")
        with pytest.raises(errors.MethodNotAllowed):
            await admin.get("SelfSubjectReview", "x")
        empty = authorization_pb2.SelfSubjectAccessReview(api_version="authorization.k8s.io/v1",
                                                          kind="SelfSubjectAccessReview")
        with pytest.raises(errors.Invalid, match="exactly one of nonResourceAttributes or resourceAttributes"):
            await alice.create(empty)
        lsar = authorization_pb2.LocalSubjectAccessReview(api_version="authorization.k8s.io/v1",
                                                          kind="LocalSubjectAccessReview")
        lsar.metadata.namespace = "default"
        lsar.spec.groups.append("system:masters")
        lsar.spec.resource_attributes.verb, lsar.spec.resource_attributes.resource = "delete", "jobs"
        lsar.spec.resource_attributes.namespace = "kube-system"
        with pytest.raises(errors.Invalid, match=r"resourceAttributes\.namespace: .*must match metadata\.namespace"):
            await admin.create(lsar)
        lsar.spec.resource_attributes.namespace = "default"
        assert (await admin.create(lsar)).status.allowed
