"""ClusterRole aggregation: the union of the selected roles' rules, in name order, without
duplicates, the role itself never included."""

from __future__ import annotations

from controlplane.controllers.clusterroleaggregation import aggregated_rules
from ketch.api import manifest

from .objects import role, rule

VIEW = "rbac.authorization.k8s.io/aggregate-to-view"


def rules_of(roles: list) -> list:
    return [manifest.message_to_dict(r) for r in roles]


def test_selected_roles_rules_in_name_order_without_duplicates() -> None:
    view = role("view", aggregate={VIEW: "true"})
    b = role("b-extra", rule(["get"], [""], ["pods"]), rule(["list"], [""], ["pods"]), labels={VIEW: "true"})
    a = role("a-extra", rule(["get"], ["batch"], ["jobs"]), rule(["get"], [""], ["pods"]), labels={VIEW: "true"})
    other = role("unlabelled", rule(["*"], ["*"], ["*"]))
    wrong_value = role("no", rule(["delete"], [""], ["pods"]), labels={VIEW: "false"})
    got = aggregated_rules(view, [view, b, other, a, wrong_value])
    assert rules_of(got) == [
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    ]


def test_a_role_selecting_itself_is_not_its_own_source() -> None:
    me = role("me", rule(["get"], [""], ["pods"]), labels={VIEW: "true"}, aggregate={VIEW: "true"})
    assert aggregated_rules(me, [me]) == []
