"""What a terminating namespace reports (controlplane.controllers.namespace), table-driven."""

from __future__ import annotations

from collections import Counter

import pytest

from controlplane.controllers.namespace import needs_finalizing, remaining_conditions
from ketch.v1 import core_pb2


@pytest.mark.parametrize(("remaining", "finalizers", "expected"), [
    ({}, Counter(), [
        ("NamespaceContentRemaining", "False", "ContentDeleted",
         "All content successfully deleted, may be waiting on finalization"),
        ("NamespaceFinalizersRemaining", "False", "ContentHasNoFinalizers",
         "All content-preserving finalizers finished")]),
    ({"pods": 2, "jobs.batch": 1}, Counter({"batch.kubernetes.io/job-tracking": 2}), [
        ("NamespaceContentRemaining", "True", "SomeResourcesRemain",
         "Some resources are remaining: jobs.batch has 1 resource instances, pods has 2 resource instances"),
        ("NamespaceFinalizersRemaining", "True", "SomeFinalizersRemain",
         "Some content in the namespace has finalizers remaining: batch.kubernetes.io/job-tracking in 2 "
         "resource instances")]),
], ids=["empty", "pods and jobs with finalizers"])
def test_remaining_conditions(remaining: dict[str, int], finalizers: Counter[str], expected: list) -> None:
    assert remaining_conditions(remaining, finalizers) == expected


@pytest.mark.parametrize(("deleting", "finalizers", "expected"), [
    (True, ["kubernetes"], True),
    (True, [], False),
    (False, ["kubernetes"], False),
], ids=["terminating with the finalizer", "already finalized", "not deleted"])
def test_needs_finalizing(deleting: bool, finalizers: list[str], expected: bool) -> None:
    ns = core_pb2.Namespace()
    ns.spec.finalizers.extend(finalizers)
    if deleting:
        ns.metadata.deletion_timestamp = "2024-01-01T00:00:00Z"
    assert needs_finalizing(ns) is expected
