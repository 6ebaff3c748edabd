"""Exactly-once accounting of finished pods (Kubernetes' job-tracking finalizer protocol).

Every pod the Job controller creates carries the `batch.kubernetes.io/job-tracking`
finalizer, so a finished pod cannot disappear before it is counted. Counting goes:

1. record the pod's UID in status.uncountedTerminatedPods (Indexed successes go straight
   into completedIndexes) and write the Job status;
2. remove the finalizer from the pods;
3. move the UIDs whose pod has lost its finalizer (or is gone) from the uncounted lists into
   status.succeeded / status.failed and write the status again.

A crash between any two steps is harmless: a UID is counted only once its finalizer is gone,
and a pod without the finalizer is never recorded again. The controller also remembers the
UIDs whose finalizer removal it has issued until the informer shows it (FinalizerExpectations),
so a lagging cache cannot make it record a pod twice.
"""

from __future__ import annotations

from collections.abc import Iterable

from ketch.v1 import batch_pb2


class FinalizerExpectations:
    """Per Job key, the pod UIDs whose tracking finalizer removal has not been observed yet."""

    def __init__(self) -> None:
        self._uids: dict[str, set[str]] = {}

    def expected(self, key: str) -> frozenset[str]:
        return frozenset(self._uids.get(key, ()))

    def expect_removed(self, key: str, uids: Iterable[str]) -> None:
        self._uids.setdefault(key, set()).update(uids)

    def observed(self, key: str, uid: str) -> None:
        uids = self._uids.get(key)
        if uids is not None:
            uids.discard(uid)
            if not uids:
                del self._uids[key]

    def delete(self, key: str) -> None:
        self._uids.pop(key, None)


def clean_uncounted(status: batch_pb2.JobStatus, uids_with_finalizer: set[str]) -> bool:
    """Move uncounted UIDs whose pod no longer has the finalizer into the counters.

    Returns whether the status changed.
    """
    changed = False
    uncounted = status.uncounted_terminated_pods
    kept = [u for u in uncounted.succeeded if u in uids_with_finalizer]
    if len(kept) != len(uncounted.succeeded):
        status.succeeded += len(uncounted.succeeded) - len(kept)
        del uncounted.succeeded[:]
        uncounted.succeeded.extend(kept)
        changed = True
    kept = [u for u in uncounted.failed if u in uids_with_finalizer]
    if len(kept) != len(uncounted.failed):
        status.failed += len(uncounted.failed) - len(kept)
        del uncounted.failed[:]
        uncounted.failed.extend(kept)
        changed = True
    return changed
