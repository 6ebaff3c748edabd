"""The bootstrap policy on a real API server: created at start, reconciled again after a user's
changes (Kubernetes' union, autoupdate "false" respected), and admin, edit and view filled by the
aggregation controller, a user's labelled role included."""

from __future__ import annotations

from controlplane.apiserver.rbac import bootstrap
from controlplane.apiserver.rbac.rules import covers
from controlplane.apiserver.testing import TestAPIServer
from controlplane.controllers.clusterroleaggregation import ClusterRoleAggregationController
from ketch.api import manifest
from tests.conftest import eventually
from tests.integration.cp_helpers import running
from tests.unit.rbac.objects import rule


def default_role(name: str):
    return next(r for r in bootstrap.cluster_roles() if r.metadata.name == name)


async def test_reconciled_at_start_and_again_after_a_change() -> None:
    async with TestAPIServer(grpc=False, authorization=("Node", "RBAC")) as api:
        client = api.local
        crb = await client.get("ClusterRoleBinding", "cluster-admin")
        assert [(s.kind, s.name) for s in crb.subjects] == [("Group", "system:masters")]
        # A user's changes: an extra subject stays; a removed rule comes back; a protected role is left.
        crb.subjects.add(kind="User", api_group=bootstrap.GROUP, name="root")
        await client.update(crb)
        view = await client.get("ClusterRole", "system:aggregate-to-view")
        del view.rules[0]
        await client.update(view)
        basic = await client.get("ClusterRole", "system:basic-user")
        del basic.rules[:]
        basic.metadata.annotations[bootstrap.AUTOUPDATE] = "false"
        await client.update(basic)

        done = await bootstrap.reconcile_bootstrap_policy(client)
        assert done == {"ClusterRole/system:aggregate-to-view": "updated"}
        assert [s.name for s in (await client.get("ClusterRoleBinding", "cluster-admin")).subjects] == [
            "system:masters", "root"]
        again = await client.get("ClusterRole", "system:aggregate-to-view")
        assert covers(list(again.rules), default_role("system:aggregate-to-view").rules)[0]
        assert not (await client.get("ClusterRole", "system:basic-user")).rules
        assert await bootstrap.reconcile_bootstrap_policy(client) == {}


async def test_admin_edit_and_view_hold_the_aggregated_rules() -> None:
    async with TestAPIServer(grpc=False, authorization=("Node", "RBAC")) as api:
        client = api.local
        async with running(client, ClusterRoleAggregationController):
            async def rules(name: str) -> list:
                return [manifest.message_to_dict(r) for r in (await client.get("ClusterRole", name)).rules]

            view_rules = [manifest.message_to_dict(r) for r in default_role("system:aggregate-to-view").rules]
            edit_rules = [manifest.message_to_dict(r) for r in default_role("system:aggregate-to-edit").rules]

            async def filled() -> bool:
                return (await rules("view") == view_rules and await rules("edit") == edit_rules + view_rules
                        and len(await rules("admin")) == 2 + len(edit_rules) + len(view_rules))

            await eventually(filled, what="admin, edit and view aggregated")

            # A role labelled for view reaches view, edit and admin.
            extra = manifest.from_dict({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "read-leases", "labels": {bootstrap.AGGREGATE_TO + "view": "true"}},
                "rules": [rule(["get"], ["coordination.k8s.io"], ["leases"])]})
            await client.create(extra)
            lease_rule = rule(["get"], ["coordination.k8s.io"], ["leases"])

            async def spread() -> bool:
                return all([lease_rule in await rules(n) for n in ("view", "edit", "admin")])

            await eventually(spread, what="a labelled role aggregated into view, edit and admin")
            await client.delete("ClusterRole", "read-leases")

            async def gone() -> bool:
                return all([lease_rule not in await rules(n) for n in ("view", "edit", "admin")])

            await eventually(gone, what="its rules gone again")
