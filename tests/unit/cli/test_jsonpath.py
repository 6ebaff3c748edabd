"""kubectl's JSONPath templates as users write them in -o jsonpath, custom-columns and wait --for."""

from __future__ import annotations

from typing import Any

import pytest

from ketch.cli import jsonpath

DOC: dict[str, Any] = {
    "kind": "List",
    "items": [
        {"metadata": {"name": "a", "labels": {"app": "x", "kubernetes.io/hostname": "n1"}},
         "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}], "restarts": 2}},
        {"metadata": {"name": "b", "labels": {"app": "y"}},
         "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}], "restarts": 0}},
    ],
}


@pytest.mark.parametrize(
    ("template", "want"),
    [
        ("{.kind}", "List"),
        ("{.items[0].metadata.name}", "a"),
        ("{.items[-1].metadata.name}", "b"),
        ("{.items[*].metadata.name}", "a b"),
        ("{.items[0:1].metadata.name}", "a"),
        ("{$.items[1].status.phase}", "Pending"),
        # client-go: `@` is the current object, as `$` is (inside a range: the item)
        ("{@.items[1].status.phase}", "Pending"),
        ('{range .items[*]}{@.metadata.name}{"\\n"}{end}', "a\nb\n"),
        ("{range .items[*]}{@.status.conditions[0].type}{end}", "ReadyReady"),
        ("{.items[0].metadata.labels.kubernetes\\.io/hostname}", "n1"),
        ("{.items[0].metadata.labels['kubernetes.io/hostname']}", "n1"),
        ('{.items[?(@.status.phase=="Running")].metadata.name}', "a"),
        ("{.items[?(@.status.restarts>1)].metadata.name}", "a"),
        ('{.items[*].status.conditions[?(@.type=="Ready")].status}', "True False"),
        ("{..phase}", "Running Pending"),
        ('{range .items[*]}{.metadata.name}:{.status.phase}{"\\n"}{end}', "a:Running\nb:Pending\n"),
        ("name={.items[0].metadata.name}!", "name=a!"),
        ("{.items[0].status.conditions[0]}", '{"type":"Ready","status":"True"}'),
        ("{.items[0].nothing.here}", ""),
    ],
)
def test_render(template: str, want: str) -> None:
    assert jsonpath.render(template, DOC) == want


def test_values_accepts_paths_with_or_without_braces() -> None:
    item = DOC["items"][0]
    assert jsonpath.values(".status.phase", item) == ["Running"]
    assert jsonpath.values("{.status.phase}", item) == ["Running"]
    assert jsonpath.values("metadata.name", item) == ["a"]


@pytest.mark.parametrize("bad", ["{.items[0", "{range .items[*]}{.x}", "{end}", "{.a"])
def test_bad_templates_are_errors(bad: str) -> None:
    with pytest.raises(jsonpath.JSONPathError):
        jsonpath.render(bad, DOC)
