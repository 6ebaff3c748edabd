from __future__ import annotations

import pytest

from ketch.api import errors
from ketch.api.selectors import from_label_selector, parse_field_selector, parse_label_selector
from ketch.v1 import meta_pb2

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
    (req,) = parse_field_selector("spec.nodeName=n1", "Pod")
    assert req.matches({"spec.nodeName": "n1"}) and not req.matches({"spec.nodeName": "n2"})
    (neg,) = parse_field_selector("status.phase!=Running", "Pod")
    assert neg.matches({"status.phase": "Pending"})
    with pytest.raises(errors.BadRequest, match=r"field label not supported: spec\.nodeName"):
        parse_field_selector("spec.nodeName=n1", "Job")
