"""The garbage collector's decisions, table-driven (controlplane.controllers.garbagecollector)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from controlplane.controllers.garbagecollector import (
    Decision,
    OwnerState,
    decide_deleting,
    decide_dependent,
    owner_state,
)
from ketch.v1 import core_pb2, meta_pb2

S, D, W = OwnerState.SOLID, OwnerState.DANGLING, OwnerState.WAITING


def obj(uid: str = "me", owners: tuple[tuple[str, bool], ...] = (), finalizers: tuple[str, ...] = (),
        deleting: bool = False) -> core_pb2.Pod:
    p = core_pb2.Pod()
    p.metadata.name, p.metadata.uid = uid, uid
    for owner_uid, block in owners:
        ref = meta_pb2.OwnerReference(kind="Job", name=owner_uid, uid=owner_uid)
        if block:
            ref.block_owner_deletion = True
        p.metadata.owner_references.append(ref)
    p.metadata.finalizers.extend(finalizers)
    if deleting:
        p.metadata.deletion_timestamp = "2024-01-01T00:00:00Z"
    return p


@pytest.mark.parametrize(("owner", "state"), [
    (None, D),
    (obj(), S),
    (obj(deleting=True, finalizers=("foregroundDeletion",)), W),
    (obj(deleting=True, finalizers=("orphan",)), S),
    (obj(finalizers=("foregroundDeletion",)), S),
], ids=["absent", "present", "deleting in the foreground", "orphaning", "finalizer without deletion"])
def test_owner_state(owner: core_pb2.Pod | None, state: OwnerState) -> None:
    assert owner_state(owner) is state


@dataclass(frozen=True)
class DependentCase:
    name: str
    owners: tuple[str, ...]
    states: dict[str, OwnerState]
    has_dependents: bool = False
    finalizers: tuple[str, ...] = ()
    expected: Decision = field(default_factory=Decision)


DEPENDENT_CASES = [
    DependentCase("a solid owner keeps the object", ("a",), {"a": S}),
    DependentCase("a dangling only owner deletes it in the background", ("a",), {"a": D},
                  expected=Decision(delete_policy="Background")),
    DependentCase("a dangling owner beside a solid one is dropped from the references", ("a", "b"),
                  {"a": S, "b": D}, expected=Decision(remove_owner_uids=["b"])),
    DependentCase("a waiting owner beside a solid one is dropped too", ("a", "b"), {"a": S, "b": W},
                  expected=Decision(remove_owner_uids=["b"])),
    DependentCase("a waiting owner deletes a leaf in the background", ("a",), {"a": W},
                  expected=Decision(delete_policy="Background")),
    DependentCase("a waiting owner deletes an object with dependents in the foreground", ("a",), {"a": W},
                  has_dependents=True, expected=Decision(delete_policy="Foreground")),
    DependentCase("an orphan finalizer on the dependent is honoured", ("a",), {"a": D}, finalizers=("orphan",),
                  expected=Decision(delete_policy="Orphan")),
    DependentCase("an owner of unknown state is assumed solid", ("a",), {}),
]


@pytest.mark.parametrize("case", DEPENDENT_CASES, ids=[c.name for c in DEPENDENT_CASES])
def test_decide_dependent(case: DependentCase) -> None:
    o = obj(owners=tuple((u, True) for u in case.owners), finalizers=case.finalizers)
    assert decide_dependent(o, case.states, case.has_dependents) == case.expected


def test_no_owner_references_means_nothing_to_do() -> None:
    assert decide_dependent(obj(), {}, False).empty


@dataclass(frozen=True)
class DeletingCase:
    name: str
    finalizers: tuple[str, ...]
    # dependents: (name, blocks the owner, already deleting)
    dependents: tuple[tuple[str, bool, bool], ...]
    remove_finalizer: str = ""
    orphan: tuple[str, ...] = ()
    enqueue: tuple[str, ...] = ()


DELETING_CASES = [
    DeletingCase("orphaning strips every dependent first", ("orphan",), (("d1", True, False), ("d2", False, True)),
                 orphan=("d1", "d2")),
    DeletingCase("orphaning ends by removing the finalizer", ("orphan",), (), remove_finalizer="orphan"),
    DeletingCase("foreground deletes the live dependents and waits", ("foregroundDeletion",),
                 (("d1", True, False), ("d2", True, True)), enqueue=("d1",)),
    DeletingCase("foreground waits for blocking dependents that are terminating", ("foregroundDeletion",),
                 (("d1", True, True),)),
    DeletingCase("non-blocking dependents do not hold the owner", ("foregroundDeletion",),
                 (("d1", False, False),), remove_finalizer="foregroundDeletion", enqueue=("d1",)),
    DeletingCase("no dependents left: the owner goes", ("foregroundDeletion",), (),
                 remove_finalizer="foregroundDeletion"),
]


@pytest.mark.parametrize("case", DELETING_CASES, ids=[c.name for c in DELETING_CASES])
def test_decide_deleting(case: DeletingCase) -> None:
    owner = obj(uid="owner", finalizers=case.finalizers, deleting=True)
    deps = [obj(uid=name, owners=(("owner", block),), deleting=deleting) for name, block, deleting in case.dependents]
    d = decide_deleting(owner, deps)
    assert d.remove_finalizer == case.remove_finalizer
    assert tuple(x.metadata.name for x in d.orphan) == case.orphan
    assert tuple(x.metadata.name for x in d.enqueue) == case.enqueue
    assert not d.delete_policy
