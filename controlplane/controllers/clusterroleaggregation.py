"""ClusterRole aggregation (pkg/controller/clusterroleaggregation): an aggregated ClusterRole's
rules are the union of the rules of the ClusterRoles its aggregationRule selects by label, in
name order, without duplicates, itself excluded. This is how admin, edit and view hold the rules
of system:aggregate-to-* and of any ClusterRole a user labels rbac.authorization.k8s.io/
aggregate-to-view: "true".

Any ClusterRole change may change any aggregated role, so every change enqueues every
aggregated ClusterRole (there are few); sync writes only when the union differs.
"""

from __future__ import annotations

from typing import Any

from ketch.api.validation.field import selector_is_valid, selector_matches
from ketch.v1 import rbac_pb2

from .base import Controller, ControllerContext


def aggregated_rules(role: rbac_pb2.ClusterRole, roles: list[rbac_pb2.ClusterRole]) -> list[rbac_pb2.PolicyRule]:
    """The rules an aggregated role should hold, from every ClusterRole (pure)."""
    out: list[rbac_pb2.PolicyRule] = []
    for selector in role.aggregation_rule.cluster_role_selectors:
        if not selector_is_valid(selector):
            continue
        for other in sorted(roles, key=lambda r: r.metadata.name):
            if other.metadata.name == role.metadata.name or not selector_matches(selector, other.metadata.labels):
                continue
            out.extend(r for r in other.rules if r not in out)
    return out


class ClusterRoleAggregationController(Controller):
    name = "clusterrole-aggregation"
    queue_name = "ClusterRoleAggregator"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.roles = ctx.informers.informer(rbac_pb2.ClusterRole)
        self.roles.add_handler(self.changed, lambda old, new: self.changed(new), self.changed)

    def changed(self, _obj: Any) -> None:
        for role in self.roles.list():
            if role.HasField("aggregation_rule"):
                self.queue.add(role.metadata.name)

    async def sync(self, key: str) -> None:
        role = self.roles.get("", key)
        if role is None or not role.HasField("aggregation_rule"):
            return
        rules = aggregated_rules(role, self.roles.list())
        if rules == list(role.rules):
            return
        updated = rbac_pb2.ClusterRole()
        updated.CopyFrom(role)
        del updated.rules[:]
        updated.rules.extend(rules)
        await self.client.update(updated)  # a Conflict requeues: the cache brings the newer role
