"""Completion indexes of Indexed Jobs: the interval form of status.completedIndexes and
failedIndexes ("1,3-5,7"), index annotations and labels on pods, and which indexes to start.

Pure functions over pods and jobs; the Job controller calls them from its sync. The interval
format is Kubernetes' own: sorted, non-overlapping, runs of three or more consecutive indexes
written `a-b`, a run of two written `a,b`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from ketch.api.goint import atoi
from ketch.v1 import core_pb2

COMPLETION_INDEX_KEY = "batch.kubernetes.io/job-completion-index"
INDEX_FAILURE_COUNT_KEY = "batch.kubernetes.io/job-index-failure-count"
INDEX_IGNORED_FAILURE_COUNT_KEY = "batch.kubernetes.io/job-index-ignored-failure-count"
COMPLETION_INDEX_ENV = "JOB_COMPLETION_INDEX"
UNKNOWN_INDEX = -1
MAX_GENERATED_NAME_LENGTH = 58
_INT32_MAX = 2**31 - 1


class Intervals:
    """Sorted, non-overlapping, non-adjacent closed intervals of indexes."""

    __slots__ = ("spans",)

    def __init__(self, spans: list[tuple[int, int]] | None = None) -> None:
        self.spans: list[tuple[int, int]] = spans or []

    @classmethod
    def parse(cls, text: str | None, completions: int) -> Intervals:
        """Kubernetes' parseIndexesFromString: bad pieces are skipped, indexes >= completions dropped."""
        spans: list[tuple[int, int]] = []
        if not text:
            return cls(spans)
        for piece in text.split(","):
            limits = piece.split("-")
            try:
                first = atoi(limits[0])
            except ValueError:
                continue
            if first >= completions:
                break
            if len(limits) > 1:
                try:
                    last = atoi(limits[1])
                except ValueError:
                    continue
                last = min(last, completions - 1)
            else:
                last = first
            if spans and spans[-1][1] == first - 1:
                spans[-1] = (spans[-1][0], last)
            else:
                spans.append((first, last))
        return cls(spans)

    @classmethod
    def of(cls, indexes: Iterable[int]) -> Intervals:
        return cls().with_indexes(sorted(set(indexes)))

    def merge(self, other: Intervals) -> Intervals:
        result: list[tuple[int, int]] = []

        def push(span: tuple[int, int]) -> None:
            if not result or span[0] > result[-1][1] + 1:
                result.append(span)
            elif result[-1][1] < span[1]:
                result[-1] = (result[-1][0], span[1])

        a, b = self.spans, other.spans
        i = j = 0
        while i < len(a) and j < len(b):
            if a[i][0] < b[j][0]:
                push(a[i])
                i += 1
            else:
                push(b[j])
                j += 1
        for span in a[i:]:
            push(span)
        for span in b[j:]:
            push(span)
        return Intervals(result)

    def with_indexes(self, ordered: Iterable[int]) -> Intervals:
        """A new set with these indexes (given in increasing order) added."""
        return self.merge(Intervals([(index, index) for index in ordered]))

    def total(self) -> int:
        return sum(last - first + 1 for first, last in self.spans)

    def has(self, index: int) -> bool:
        lo, hi = 0, len(self.spans)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.spans[mid][1] >= index:
                hi = mid
            else:
                lo = mid + 1
        return hi < len(self.spans) and self.spans[hi][0] <= index

    def __iter__(self) -> Iterator[int]:
        for first, last in self.spans:
            yield from range(first, last + 1)

    def __len__(self) -> int:
        return self.total()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Intervals) and self.spans == other.spans

    def __hash__(self) -> int:
        return hash(tuple(self.spans))

    def __repr__(self) -> str:
        return f"Intervals({self})"

    def __str__(self) -> str:
        parts = []
        for first, last in self.spans:
            if last == first:
                parts.append(str(first))
            elif last == first + 1:
                parts.append(f"{first},{last}")
            else:
                parts.append(f"{first}-{last}")
        return ",".join(parts)


# -- pods and their indexes -------------------------------------------------------------------


def completion_index(pod: core_pb2.Pod) -> int:
    """The pod's completion index from its annotation, or UNKNOWN_INDEX."""
    value = pod.metadata.annotations.get(COMPLETION_INDEX_KEY)
    if value is None:
        return UNKNOWN_INDEX
    try:
        index = atoi(value)
    except ValueError:
        return UNKNOWN_INDEX
    return index if index >= 0 else UNKNOWN_INDEX


def _annotation_int(pod: core_pb2.Pod, key: str) -> int:
    value = pod.metadata.annotations.get(key)
    if value is None:
        return 0
    try:
        n = atoi(value)
    except ValueError:
        return 0
    return n if 0 <= n <= _INT32_MAX else 0


def index_failure_count(pod: core_pb2.Pod) -> int:
    return _annotation_int(pod, INDEX_FAILURE_COUNT_KEY)


def index_ignored_failure_count(pod: core_pb2.Pod) -> int:
    return _annotation_int(pod, INDEX_IGNORED_FAILURE_COUNT_KEY)


def index_absolute_failure_count(pod: core_pb2.Pod) -> int:
    return index_failure_count(pod) + index_ignored_failure_count(pod)


def indexes_of(pods: Iterable[Any]) -> set[int]:
    out = set()
    for p in pods:
        index = completion_index(p)
        if index != UNKNOWN_INDEX:
            out.add(index)
    return out


def generate_name_with_index(job_name: str, index: int) -> str:
    """`<job>-<index>-`, the job name cut so that the prefix fits 58 characters."""
    suffix = f"-{index}-"
    prefix = job_name + suffix
    if len(prefix) > MAX_GENERATED_NAME_LENGTH:
        prefix = prefix[:MAX_GENERATED_NAME_LENGTH - len(suffix)] + suffix
    return prefix


def add_completion_index_env(spec: core_pb2.PodSpec) -> None:
    """JOB_COMPLETION_INDEX from the index label (downward API), unless a container sets it."""
    path = f"metadata.labels['{COMPLETION_INDEX_KEY}']"
    for container in [*spec.init_containers, *spec.containers]:
        if any(e.name == COMPLETION_INDEX_ENV for e in container.env):
            continue
        env = container.env.add()
        env.name = COMPLETION_INDEX_ENV
        env.value_from.field_ref.api_version = "v1"
        env.value_from.field_ref.field_path = path


def first_pending_indexes(count: int, completions: int, non_pending: Intervals) -> list[int]:
    """The `count` lowest indexes below completions that are not in non_pending."""
    result: list[int] = []
    if count <= 0:
        return result
    candidate = 0
    for first, last in non_pending.spans:
        while candidate < completions and len(result) < count and candidate < first:
            result.append(candidate)
            candidate += 1
        candidate = max(candidate, last + 1)
    while candidate < completions and len(result) < count:
        result.append(candidate)
        candidate += 1
    return result
