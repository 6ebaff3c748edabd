"""The generic format checks every kind builds on (apimachinery's util/validation)."""

from __future__ import annotations

import pytest

from ketch.api.validation import field
from ketch.api.validation.batch import count_indexes, parse_indexes


@pytest.mark.parametrize(("check", "value", "ok"), [
    (field.dns1123_label, "a" * 63, True),
    (field.dns1123_label, "a" * 64, False),
    (field.dns1123_label, "my-name", True),
    (field.dns1123_label, "-a", False),
    (field.dns1123_label, "a.b", False),
    (field.dns1123_label, "abc\n", False),
    (field.dns1123_subdomain, "a.b-c.d", True),
    (field.dns1123_subdomain, ("a" * 63 + ".") * 4 + "a", False),
    (field.dns1123_subdomain, "A.b", False),
    (field.qualified_name, "app.kubernetes.io/name", True),
    (field.qualified_name, "MyName", True),
    (field.qualified_name, "a" * 64, False),
    (field.qualified_name, "Example.com/x", False),
    (field.qualified_name, "x/", False),
    (field.label_value, "", True),
    (field.label_value, "My_value.1", True),
    (field.label_value, "-x", False),
    (field.env_var_name, "MY_ENV.NAME", True),
    (field.env_var_name, "..x", False),
    (field.env_var_name, "9lives", False),
    (field.percent, "25%", True),
    (field.percent, "25", False),
])
def test_formats(check, value: str, ok: bool) -> None:
    assert (check(value) == ()) is ok


@pytest.mark.parametrize(("prefix", "ok"), [("pi-", True), ("pi", True), ("Pi-", False), ("-", False)])
def test_generate_name_prefixes_may_end_with_a_dash(prefix: str, ok: bool) -> None:
    assert (field.name_is_dns_subdomain(prefix, True) == ()) is ok


def test_an_objects_own_name_is_checked_without_being_remembered() -> None:
    """A Job's pods each have a name of their own: remembered, the check's cache would hold
    thousands of names of long-deleted pods; the generateName prefix they share is cached."""
    field.dns1123_subdomain.cache_clear()
    field.dns1123_label.cache_clear()
    for i in range(100):
        assert field.name_is_dns_subdomain(f"pi-{i:05x}", False) == ()
        assert field.name_is_dns_label(f"pi-{i:05x}", False) == ()
        assert field.name_is_dns_subdomain("pi-", True) == ()
    assert field.name_is_dns_subdomain("Pi-1", False) and field.name_is_dns_label("a.b", False)
    assert field.dns1123_subdomain.cache_info().currsize == 1  # the prefix
    assert field.dns1123_label.cache_info().currsize == 0


@pytest.mark.parametrize(("text", "completions", "count", "error"), [
    ("", 3, 0, None),
    ("0,2-4,7", 8, 5, None),
    ("1,2", 3, 2, None),
    ("2,1", 3, 0, "non-increasing order, previous: 2, current: 1"),
    ("1-1", 3, 0, "non-increasing order, previous: 1, current: 1"),
    ("0-1-2", 3, 0, "the fragment \"0-1-2\" violates the requirement that an index interval can have at most two "
                    "parts separated by '-'"),
    ("a", 3, 0, 'cannot convert string to integer for index: "a"'),
    ("3", 3, 0, 'too large index: "3"'),
])
def test_index_intervals(text: str, completions: int, count: int, error: str | None) -> None:
    if error is None:
        assert count_indexes(parse_indexes(text, completions)) == count
    else:
        with pytest.raises(ValueError) as caught:
            parse_indexes(text, completions)
        assert str(caught.value) == error
