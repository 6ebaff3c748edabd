from __future__ import annotations

import pytest

from controlplane.registry import Registry
from ketch.api import errors
from ketch.api.selectors import from_label_selector, parse_field_selector, parse_label_selector
from ketch.v1 import meta_pb2

POD_FIELDS = Registry()["Pod"].selectable_fields()
JOB_FIELDS = Registry()["Job"].selectable_fields()

LABELS = {"app": "web", "tier": "fe", "ver": "3"}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("", True),
        ("app=web", True),
        ("app==web", True),
        ("app=db", False),
        ("app!=db", True),
        ("missing!=x", True),
        ("app in (web,db)", True),
        ("app notin (web)", False),
        ("tier", True),
        ("!tier", False),
        ("!missing", True),
        ("app=web,tier=be", False),
        ("app=web, tier in (fe, be)", True),
    ],
    ids=lambda v: str(v),
)
def test_label_selector_string_form(selector: str, matches: bool) -> None:
    assert parse_label_selector(selector).matches(LABELS) is matches


def test_malformed_selector_is_a_bad_request() -> None:
    with pytest.raises(errors.BadRequest):
        parse_label_selector("app in web")


def test_structured_selector_nil_matches_nothing_and_empty_everything() -> None:
    assert not from_label_selector(None).matches(LABELS)
    assert from_label_selector(meta_pb2.LabelSelector()).matches(LABELS)
    sel = meta_pb2.LabelSelector(match_labels={"app": "web"})
    sel.match_expressions.add(key="ver", operator="Gt", values=["2"])
    assert from_label_selector(sel).matches(LABELS)
    sel.match_expressions.add(key="tier", operator="DoesNotExist")
    assert not from_label_selector(sel).matches(LABELS)


def test_field_selectors_are_checked_per_kind() -> None:
    (req,) = parse_field_selector("spec.nodeName=n1", POD_FIELDS)
    assert req.matches({"spec.nodeName": "n1"}) and not req.matches({"spec.nodeName": "n2"})
    (neg,) = parse_field_selector("status.phase!=Running", POD_FIELDS)
    assert neg.matches({"status.phase": "Pending"})
    with pytest.raises(errors.BadRequest, match=r"field label not supported: spec\.nodeName"):
        parse_field_selector("spec.nodeName=n1", JOB_FIELDS)


# -- bounds ----------------------------------------------------------------------------------------


def _big_selector(size: int) -> str:
    head = "app in ("
    return head + ",".join(["v"] * ((size - len(head) - 1) // 2)) + ")"


@pytest.mark.parametrize("size", [1_500_000, 10_000_000], ids=["1.5MB", "10MB"])
def test_huge_label_selector_is_a_bad_request_naming_the_limit(size: int) -> None:
    # The parser sliced the rest of the text at every token: a 1.5 MB selector froze the
    # server for 22 s, a 10 MB one for minutes.
    with pytest.raises(errors.BadRequest, match=r"invalid label selector: \d+ characters, the limit is 65536"):
        parse_label_selector(_big_selector(size))


@pytest.mark.parametrize("size", [1_500_000, 10_000_000], ids=["1.5MB", "10MB"])
def test_huge_field_selector_is_a_bad_request_naming_the_limit(size: int) -> None:
    text = ",".join(["metadata.name=a"] * (size // 16))
    with pytest.raises(errors.BadRequest, match=r"invalid field selector: \d+ characters, the limit is 65536"):
        parse_field_selector(text, POD_FIELDS)


def test_selector_at_the_length_limit_parses() -> None:
    sel = parse_label_selector(_big_selector(64 * 1024))
    assert len(sel) == 1 and sel.matches({"app": "v"})


def test_too_many_requirements_is_a_bad_request_and_repeats_count_once() -> None:
    many = ",".join(f"!k{i}" for i in range(257))
    with pytest.raises(errors.BadRequest, match="257 requirements, the limit is 256"):
        parse_label_selector(many)
    assert len(parse_label_selector(",".join(["a=b"] * 10_000))) == 1
    fields = ",".join(f"metadata.name!=n{i}" for i in range(257))
    with pytest.raises(errors.BadRequest, match="257 requirements, the limit is 256"):
        parse_field_selector(fields, POD_FIELDS)


def test_error_messages_show_a_long_selector_clipped() -> None:
    with pytest.raises(errors.BadRequest) as info:
        parse_label_selector("a in b" + "x" * 60_000)
    assert len(str(info.value)) < 300


QNAME = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
         "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
         "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")


@pytest.mark.parametrize(("selector", "error"), [
    # These parsed, as a key "a>1" or a value no label can have, and matched nothing: a list or
    # watch answered an empty result where Kubernetes refuses the selector (400).
    ("a>x", "values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer"),
    ("a<" + "9" * 20, f"values[0]: Invalid value: \"{'9' * 20}\": for 'Gt', 'Lt' operators, the value must be an "
                      "integer"),
    ("-a", f'key: Invalid value: "-a": {QNAME}'),
    ("!-a", f'key: Invalid value: "-a": {QNAME}'),
    ("x=" + "v" * 64, f'values[0][x]: Invalid value: "{"v" * 64}": must be no more than 63 characters'),
    ("x in ()", "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty"),
], ids=["gt not an integer", "lt beyond int64", "bad key", "bad key after !", "long value", "empty in"])
def test_a_selector_kubernetes_refuses_is_a_bad_request_naming_the_problem(selector: str, error: str) -> None:
    with pytest.raises(errors.BadRequest) as info:
        parse_label_selector(selector)
    assert error in str(info.value)
    assert str(info.value).startswith("unable to parse requirement: ")


@pytest.mark.parametrize(("selector", "matches"), [("ver>2", True), ("ver>3", False), ("ver<4", True),
                                                   ("app>1", False)])
def test_gt_and_lt_compare_integers_as_kubernetes(selector: str, matches: bool) -> None:
    sel = parse_label_selector(selector)
    assert sel.matches(LABELS) is matches
    assert parse_label_selector(str(sel)) == sel  # the string form round-trips
