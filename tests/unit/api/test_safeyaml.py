"""Manifests are loaded with go-yaml's alias limits: a billion laughs is refused at once, a
manifest with a few anchors (and merge keys) still reads as before."""

from __future__ import annotations

import pytest

from ketch.api import manifest

JOB_WITH_ANCHORS = """
apiVersion: batch/v1
kind: Job
metadata:
  name: pi
  labels: &labels {app: pi, tier: batch}
spec:
  template:
    metadata:
      labels: *labels
    spec:
      restartPolicy: Never
      containers:
      - &main
        name: main
        image: perl
        command: [perl, -e, "print 1"]
      - <<: *main
        name: second
"""


def laughs(levels: int, fanout: int) -> str:
    """a0 holds `fanout` strings; every next level holds `fanout` aliases of the one before."""
    lines = ["kind: Job", "x:", "  a0: &a0 [" + ", ".join(["lol"] * fanout) + "]"]
    for i in range(1, levels):
        lines.append(f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fanout) + "]")
    return "\n".join(lines) + "\n"


def test_a_manifest_with_a_few_anchors_and_a_merge_key_still_loads() -> None:
    (doc,) = manifest.load_documents(JOB_WITH_ANCHORS)
    assert doc["metadata"]["labels"] == doc["spec"]["template"]["metadata"]["labels"] == {"app": "pi", "tier": "batch"}
    main, second = doc["spec"]["template"]["spec"]["containers"]
    assert main == {"name": "main", "image": "perl", "command": ["perl", "-e", "print 1"]}
    assert second == {**main, "name": "second"}


def test_moderate_aliasing_is_allowed_as_go_yaml_allows_it() -> None:
    # 3 levels of 10: ~1,400 values, 97 % of them from aliases (go-yaml allows up to 99 %).
    (doc,) = manifest.load_documents(laughs(3, 10))
    assert len(doc["x"]["a2"]) == 10 and len(doc["x"]["a2"][0]) == 10


@pytest.mark.parametrize(("levels", "fanout"), [(4, 10), (9, 9), (40, 10)],
                         ids=["13 thousand values", "387 million values", "10^40 values"])
def test_excessive_aliasing_is_refused_naming_the_problem(levels: int, fanout: int) -> None:
    # Refused from the document's own levels*fanout nodes: 10^40 values could never be expanded.
    with pytest.raises(manifest.DecodeError, match=r"^error parsing YAML: document contains excessive aliasing$"):
        manifest.load_documents(laughs(levels, fanout))


def test_an_anchor_that_contains_itself_is_refused() -> None:
    with pytest.raises(manifest.DecodeError, match="anchor 'x' value contains itself"):
        manifest.load_documents("kind: Job\na: &x {b: [1, *x]}\n")


@pytest.mark.parametrize("text", ["kind: Job\nx: " + "[" * 5000 + "]" * 5000 + "\n",
                                  '{"kind": "Job", "x": ' + "[" * 100000 + "]" * 100000 + "}"],
                         ids=["yaml", "json"])
def test_nesting_too_deep_for_the_parser_is_a_decode_error(text: str) -> None:
    with pytest.raises(manifest.DecodeError, match="nested too deeply"):
        manifest.load_documents(text)
