"""The Job controller's pure modules: index intervals, back-off, pod failure policy, success
policy, deletion order, expectations."""

from __future__ import annotations

import random

import pytest

from controlplane.controllers.job import failure_policy, success_policy
from controlplane.controllers.job.backoff import BackoffRecord, BackoffStore, finished_time, remaining_for_failures
from controlplane.controllers.job.expectations import ControllerExpectations
from controlplane.controllers.job.indexed import (
    COMPLETION_INDEX_KEY,
    INDEX_FAILURE_COUNT_KEY,
    UNKNOWN_INDEX,
    Intervals,
    add_completion_index_env,
    completion_index,
    first_pending_indexes,
    generate_name_with_index,
    index_failure_count,
)
from controlplane.controllers.job.pods import pods_for_removal
from ketch.api.manifest import decode_into
from ketch.testing.fake_clock import FakeClock
from ketch.v1 import batch_pb2, core_pb2

from .builders import NOW, new_job, new_pod, ts

# -- intervals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("indexes", "text"), [
    ([], ""),
    ([0], "0"),
    ([1, 2], "1,2"),
    ([1, 2, 3], "1-3"),
    ([1, 3, 4, 5, 7], "1,3-5,7"),
    ([0, 1, 2, 4, 5, 9, 10, 11, 12], "0-2,4,5,9-12"),
], ids=["empty", "one", "two consecutive", "three consecutive", "mixed", "several runs"])
def test_intervals_format(indexes: list[int], text: str) -> None:
    assert str(Intervals.of(indexes)) == text
    assert list(Intervals.parse(text, 100)) == indexes


@pytest.mark.parametrize(("text", "completions", "want"), [
    ("1,3-5,7", 6, "1,3-5"),
    ("0-10", 4, "0-3"),
    ("1,x,3", 5, "1,3"),
    ("1,2,3", 5, "1-3"),
    ("", 5, ""),
    ("0, 2,3_0,4", 50, "0,4"),
], ids=["beyond completions dropped", "interval cut", "bad piece skipped", "adjacent merged", "empty",
        "Go's Atoi: no spaces or underscores"])
def test_intervals_parse(text: str, completions: int, want: str) -> None:
    assert str(Intervals.parse(text, completions)) == want


def test_intervals_merge_has_total_match_a_set() -> None:
    rng = random.Random(7)
    for _ in range(200):
        a = set(rng.sample(range(40), rng.randint(0, 20)))
        b = set(rng.sample(range(40), rng.randint(0, 20)))
        merged = Intervals.of(a).merge(Intervals.of(b))
        assert list(merged) == sorted(a | b)
        assert merged.total() == len(a | b)
        assert all(merged.has(i) == (i in a | b) for i in range(-1, 42))
        assert Intervals.parse(str(merged), 40) == merged


@pytest.mark.parametrize(("count", "completions", "non_pending", "want"), [
    (2, 5, [], [0, 1]),
    (3, 5, [0, 2], [1, 3, 4]),
    (5, 5, [0, 1, 2, 3, 4], []),
    (2, 10, [0, 1, 2, 5], [3, 4]),
    (0, 5, [], []),
], ids=["from zero", "gaps", "none left", "after a run", "zero wanted"])
def test_first_pending_indexes(count: int, completions: int, non_pending: list[int], want: list[int]) -> None:
    assert first_pending_indexes(count, completions, Intervals.of(non_pending)) == want


@pytest.mark.parametrize(("value", "index", "failures"), [
    ("3", 3, 3), ("+3", 3, 3), ("-3", UNKNOWN_INDEX, 0), (" 3", UNKNOWN_INDEX, 0), ("3 ", UNKNOWN_INDEX, 0),
    ("1_0", UNKNOWN_INDEX, 0), ("\u0663", UNKNOWN_INDEX, 0), ("", UNKNOWN_INDEX, 0),
], ids=["digits", "plus sign", "negative", "leading space", "trailing space", "underscore", "arabic digit", "empty"])
def test_pod_index_annotations_are_read_as_go_atoi_reads_them(value: str, index: int, failures: int) -> None:
    """getCompletionIndex and the failure-count annotations parse with strconv.Atoi: an optional
    sign and ASCII digits only, where Python's int() would also take spaces and underscores."""
    pod = new_pod(new_job(), "Running")
    pod.metadata.annotations[COMPLETION_INDEX_KEY] = value
    pod.metadata.annotations[INDEX_FAILURE_COUNT_KEY] = value
    assert completion_index(pod) == index
    assert index_failure_count(pod) == failures


def test_generate_name_with_index_fits_58_characters() -> None:
    assert generate_name_with_index("pi", 3) == "pi-3-"
    long = "a" * 70
    name = generate_name_with_index(long, 123)
    assert len(name) == 58 and name.endswith("-123-")


def test_completion_index_env_is_added_once_per_container() -> None:
    s = core_pb2.PodSpec()
    s.containers.add(name="a")
    c = s.containers.add(name="b")
    c.env.add(name="JOB_COMPLETION_INDEX", value="mine")
    s.init_containers.add(name="init")
    add_completion_index_env(s)
    a_env = s.containers[0].env
    assert [e.name for e in a_env] == ["JOB_COMPLETION_INDEX"]
    assert a_env[0].value_from.field_ref.field_path == "metadata.labels['batch.kubernetes.io/job-completion-index']"
    assert [e.value for e in s.containers[1].env] == ["mine"]
    assert len(s.init_containers[0].env) == 1


# -- back-off ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("failures", "since_failure", "want"), [
    (0, 0, 0), (1, 0, 5), (1, 1, 4), (3, 0, 20), (8, 0, 640), (9, 0, 700), (30, 0, 700), (2, 11, 0),
], ids=["none", "one", "one, a second later", "three", "eight", "nine hits the cap", "many", "elapsed"])
def test_backoff_delay(failures: int, since_failure: float, want: float) -> None:
    """Kubernetes' own anchors (base 5 s, cap 700 s)."""
    assert remaining_for_failures(NOW + since_failure, 5, 700, failures, NOW) == want


def test_backoff_record_counts_failures_after_the_last_success() -> None:
    job = new_job(1, 1)
    store = BackoffStore()
    f1 = new_pod(job, "Failed", finished_at=NOW - 30)
    rec = store.new_record("k", [], [f1])
    assert (rec.failures_after_last_success, rec.last_failure_time) == (1, NOW - 30)
    store.update(rec)
    f2 = new_pod(job, "Failed", finished_at=NOW - 20)
    rec = store.new_record("k", [], [f2])
    assert rec.failures_after_last_success == 2
    ok = new_pod(job, "Succeeded", finished_at=NOW - 10)
    late = new_pod(job, "Failed", finished_at=NOW - 5)
    early = new_pod(job, "Failed", finished_at=NOW - 15)
    rec = store.new_record("k", [ok], [late, early])
    assert (rec.failures_after_last_success, rec.last_failure_time) == (1, NOW - 5)
    assert store.new_record("k", [ok], []).failures_after_last_success == 0
    assert BackoffRecord("k", 2, NOW).remaining(NOW + 1, 10, 360) == 19


def test_finished_time_falls_back_in_kubernetes_order() -> None:
    job = new_job(1, 1)
    p = new_pod(job, "Failed", finished_at=NOW - 7)
    assert finished_time(p) == NOW - 7
    p = new_pod(job, "Running", conditions=(("Ready", "False"),))
    assert finished_time(p) == NOW - 10
    p = new_pod(job, "Running", deleting=True)
    assert finished_time(p) == NOW - 1 - 30
    p = new_pod(job, "Pending", created=NOW - 99)
    assert finished_time(p) == NOW - 99


# -- pod failure policy ------------------------------------------------------------------------


def _policy(rules: list[dict]) -> batch_pb2.PodFailurePolicy:
    return decode_into(batch_pb2.PodFailurePolicy(), {"rules": rules}, "podFailurePolicy")  # type: ignore[return-value]


POLICY_CASES = [
    ("no policy counts", None, {"exit_code": 1}, (None, True, None)),
    ("In matches", [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [1, 2]}}],
     {"exit_code": 2}, ("msg", True, "FailJob")),
    ("In does not match", [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [1]}}],
     {"exit_code": 3}, (None, True, None)),
    ("NotIn matches", [{"action": "Ignore", "onExitCodes": {"operator": "NotIn", "values": [1]}}],
     {"exit_code": 3}, (None, False, "Ignore")),
    ("exit 0 never matches NotIn", [{"action": "Ignore", "onExitCodes": {"operator": "NotIn", "values": [1]}}],
     {"exit_code": 0}, (None, True, None)),
    ("containerName filters", [{"action": "FailJob",
                                "onExitCodes": {"containerName": "other", "operator": "In", "values": [1]}}],
     {"exit_code": 1}, (None, True, None)),
    ("first matching rule wins", [{"action": "Count", "onExitCodes": {"operator": "In", "values": [1]}},
                                  {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [1]}}],
     {"exit_code": 1}, (None, True, "Count")),
    ("pod condition Ignore", [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}],
     {"conditions": (("DisruptionTarget", "True"),)}, (None, False, "Ignore")),
    ("pod condition status must match", [{"action": "Ignore",
                                          "onPodConditions": [{"type": "DisruptionTarget", "status": "False"}]}],
     {"conditions": (("DisruptionTarget", "True"),)}, (None, True, None)),
    ("FailIndex", [{"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [1]}}],
     {"exit_code": 1}, (None, True, "FailIndex")),
    ("unknown action skipped", [{"action": "Explode", "onExitCodes": {"operator": "In", "values": [1]}}],
     {"exit_code": 1}, (None, True, None)),
]


@pytest.mark.parametrize(("rules", "pod_opts", "want"), [c[1:] for c in POLICY_CASES], ids=[c[0] for c in POLICY_CASES])
def test_pod_failure_policy(rules: list[dict] | None, pod_opts: dict, want: tuple) -> None:
    pod = new_pod(new_job(1, 1), "Failed", name="p", **pod_opts)
    m = failure_policy.match(_policy(rules) if rules is not None else None, pod)
    assert (m.message is not None if want[0] else m.message is None)
    assert (m.count_failed, m.action) == want[1:]


def test_pod_failure_policy_messages() -> None:
    pod = new_pod(new_job(1, 1), "Failed", name="p", exit_code=5, conditions=(("DisruptionTarget", "True"),))
    m = failure_policy.match(_policy([{"action": "Count", "onExitCodes": {"operator": "In", "values": [9]}},
                                      {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [5]}}]), pod)
    assert m.message == "Container main for pod default/p failed with exit code 5 matching FailJob rule at index 1"
    m = failure_policy.match(_policy([{"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget"}]}]), pod)
    assert m.message == "Pod default/p has condition DisruptionTarget matching FailJob rule at index 0"


# -- success policy ----------------------------------------------------------------------------

SUCCESS_CASES = [
    ("no policy", None, [0, 1], ("", False)),
    ("indexes all succeeded", [{"succeededIndexes": "0-2"}], [0, 1, 2, 4], ("Matched rules at index 0", True)),
    ("indexes not all succeeded", [{"succeededIndexes": "0-2"}], [0, 2], ("", False)),
    ("count", [{"succeededCount": 2}], [3, 4], ("Matched rules at index 0", True)),
    ("count not reached", [{"succeededCount": 3}], [3, 4], ("", False)),
    ("count within the indexes", [{"succeededIndexes": "0-3", "succeededCount": 2}], [1, 3, 5],
     ("Matched rules at index 0", True)),
    ("count within the indexes not reached", [{"succeededIndexes": "0-3", "succeededCount": 2}], [3, 5, 6],
     ("", False)),
    ("second rule", [{"succeededCount": 5}, {"succeededIndexes": "4"}], [4], ("Matched rules at index 1", True)),
    ("unparseable indexes ignored", [{"succeededIndexes": "x"}], [0], ("", False)),
    ("nothing succeeded", [{"succeededCount": 0}], [], ("", False)),
]


@pytest.mark.parametrize(("rules", "succeeded", "want"), [c[1:] for c in SUCCESS_CASES],
                         ids=[c[0] for c in SUCCESS_CASES])
def test_success_policy(rules: list[dict] | None, succeeded: list[int], want: tuple[str, bool]) -> None:
    policy = decode_into(batch_pb2.SuccessPolicy(), {"rules": rules}, "successPolicy") if rules else None
    assert success_policy.match(policy, 10, Intervals.of(succeeded)) == want


# -- which pods go first -----------------------------------------------------------------------


def test_deletion_order_prefers_least_progressed_pods() -> None:
    job = new_job(3, 3)
    unscheduled = new_pod(job, "Pending", node="", name="unscheduled")
    pending = new_pod(job, "Pending", name="pending")
    running = new_pod(job, "Running", name="running")
    ready = new_pod(job, "Running", ready=True, name="ready")
    restarted = new_pod(job, "Running", restarts=3, name="restarted")
    older = new_pod(job, "Running", created=NOW - 5000, name="older")
    got = pods_for_removal([ready, older, running, restarted, pending, unscheduled], 6, None, False)
    assert [p.metadata.name for p in got] == ["unscheduled", "pending", "restarted", "running", "older", "ready"]


def test_deletion_of_indexed_pods_removes_duplicates_and_unindexed_first() -> None:
    job = new_job(3, 3, mode="Indexed")
    a = new_pod(job, "Running", index=0, ready=True, name="a")
    b = new_pod(job, "Pending", index=0, name="b")
    c = new_pod(job, "Running", name="c")
    d = new_pod(job, "Running", index=9, name="d")
    e = new_pod(job, "Running", index=1, name="e")
    got = [p.metadata.name for p in pods_for_removal([a, b, c, d, e], 0, 3, True)]
    assert sorted(got) == ["b", "c", "d"]


# -- expectations ------------------------------------------------------------------------------


def test_expectations_satisfied_when_observed_or_expired() -> None:
    clock = FakeClock(NOW)
    exp = ControllerExpectations(clock.now)
    assert exp.satisfied("k")
    exp.expect_creations("k", 2)
    assert not exp.satisfied("k")
    exp.creation_observed("k")
    assert not exp.satisfied("k")
    exp.creation_observed("k")
    assert exp.satisfied("k")
    exp.expect_deletions("k", 1)
    assert not exp.satisfied("k")
    clock.step(301)
    assert exp.satisfied("k")


def test_ts_helper_is_rfc3339() -> None:
    assert ts(0) == "1970-01-01T00:00:00Z"


def test_pod_event_budget_is_a_burst_then_one_per_five_minutes() -> None:
    from ketch.client.events import SpamFilter

    clock = FakeClock(NOW)
    budget = SpamFilter(clock.now)
    assert all(budget.allow("job-a") for _ in range(25))
    assert not budget.allow("job-a")
    assert budget.allow("job-b")  # per involved object
    clock.step(300)
    assert budget.allow("job-a")
    assert not budget.allow("job-a")
