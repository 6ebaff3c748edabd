"""Covering, for escalation prevention (pkg/registry/rbac/validation's Covers): whether the rules a
user holds allow everything some wanted rules would grant, and which pieces they do not."""

from __future__ import annotations

import pytest

from controlplane.apiserver.rbac.rules import compact, compact_string, covers
from ketch.api import manifest
from ketch.v1 import rbac_pb2

from .objects import rule


def r(*args, **kwargs) -> rbac_pb2.PolicyRule:
    doc = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "x"},
           "rules": [rule(*args, **kwargs)]}
    return manifest.from_dict(doc).rules[0]


@pytest.mark.parametrize(("owner", "wanted", "missing"), [
    ([r(["*"], ["*"], ["*"])], [r(["delete"], ["batch"], ["jobs"], names=["a"])], []),
    ([r(["get", "list"], [""], ["pods"])], [r(["get"], [""], ["pods"])], []),
    ([r(["get"], [""], ["pods"])], [r(["get", "list"], [""], ["pods"])],
     ['{APIGroups:[""], Resources:["pods"], Verbs:["list"]}']),
    # "*/status" covers every status subresource, and only those.
    ([r(["update"], [""], ["*/status"])], [r(["update"], [""], ["pods/status", "nodes/status"])], []),
    ([r(["update"], [""], ["*/status"])], [r(["update"], [""], ["pods"])],
     ['{APIGroups:[""], Resources:["pods"], Verbs:["update"]}']),
    # Names: unrestricted covers named; named covers only those names, never unnamed.
    ([r(["get"], [""], ["pods"])], [r(["get"], [""], ["pods"], names=["a"])], []),
    ([r(["get"], [""], ["pods"], names=["a"])], [r(["get"], [""], ["pods"], names=["a", "b"])],
     ['{APIGroups:[""], Resources:["pods"], ResourceNames:["b"], Verbs:["get"]}']),
    ([r(["get"], [""], ["pods"], names=["a"])], [r(["get"], [""], ["pods"])],
     ['{APIGroups:[""], Resources:["pods"], Verbs:["get"]}']),
    # URLs: a trailing * covers the prefix.
    ([r(["get"], urls=["/healthz/*"])], [r(["get"], urls=["/healthz/ping"])], []),
    ([r(["get"], urls=["/healthz"])], [r(["get"], urls=["/healthz/ping"])],
     ['{NonResourceURLs:["/healthz/ping"], Verbs:["get"]}']),
], ids=["all", "subset of verbs", "a missing verb", "*/status", "*/status is not the resource", "unnamed covers named",
        "a missing name", "named does not cover unnamed", "url prefix", "url exact"])
def test_covers(owner: list, wanted: list, missing: list[str]) -> None:
    ok, left = covers(owner, wanted)
    assert ok == (not missing)
    assert [compact_string(m) for m in compact(left)] == missing
