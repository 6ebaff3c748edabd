"""apply's three-way patch: what the manifest changed, what it dropped, and nothing else."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ketch.cli.cmd_apply import LAST_APPLIED, last_applied_text, three_way_patch, with_annotation

TEMPLATE: dict[str, Any] = {"spec": {"containers": [{"name": "pi", "image": "perl", "command": ["perl"]}],
                                     "restartPolicy": "Never"}}


def job(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "namespace": "default"},
            "spec": {"template": json.loads(json.dumps(TEMPLATE)), **spec}}


def live(doc: dict[str, Any], **extra_spec: Any) -> dict[str, Any]:
    """The object as the server keeps it: defaults, server fields and status added."""
    out = json.loads(json.dumps(doc))
    out["metadata"].update({"uid": "u1", "resourceVersion": "7", "generation": 1, "labels": {"job-name": "pi"}})
    out["spec"].update({"backoffLimit": 6, "completionMode": "NonIndexed", "suspend": False, **extra_spec})
    out["spec"]["template"]["spec"]["containers"][0].update(
        {"terminationMessagePath": "/dev/termination-log", "imagePullPolicy": "Always"})
    out["status"] = {"active": 1}
    return out


@pytest.mark.parametrize(
    ("original", "modified", "current", "want"),
    [
        pytest.param(job(completions=8), job(completions=8), live(job(completions=8)), {},
                     id="the same manifest again changes nothing"),
        pytest.param(job(completions=8), job(completions=8, parallelism=2), live(job(completions=8)),
                     {"spec": {"parallelism": 2}}, id="an added field is set"),
        pytest.param(job(completions=8, parallelism=2), job(completions=8), live(job(completions=8, parallelism=2)),
                     {"spec": {"parallelism": None}}, id="a field dropped from the manifest is deleted"),
        pytest.param(job(), job(), live(job(), parallelism=5), {},
                     id="a field someone else set and the manifest never had stays"),
        pytest.param(job(suspend=True), job(suspend=False), live(job(suspend=True), suspend=True),
                     {"spec": {"suspend": False}}, id="a changed value is sent"),
    ],
)
def test_three_way_patch(original: dict[str, Any], modified: dict[str, Any], current: dict[str, Any],
                         want: dict[str, Any]) -> None:
    assert three_way_patch(original, modified, current) == want


def test_containers_merge_by_name_and_keep_server_defaults() -> None:
    original = job()
    modified = job()
    modified["spec"]["template"]["spec"]["containers"][0]["image"] = "perl:5"
    patch = three_way_patch(original, modified, live(original))
    assert patch == {"spec": {"template": {"spec": {"containers": [{"name": "pi", "image": "perl:5"}]}}}}


def test_a_removed_container_is_deleted_by_key() -> None:
    original = job()
    original["spec"]["template"]["spec"]["containers"].append({"name": "side", "command": ["sleep"]})
    modified = job()
    patch = three_way_patch(original, modified, live(original))
    assert patch == {"spec": {"template": {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}}}}


def test_a_removed_env_var_inside_a_kept_container() -> None:
    original = job()
    original["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"},
                                                                    {"name": "B", "value": "2"}]
    modified = job()
    modified["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"}]
    patch = three_way_patch(original, modified, live(original))
    assert patch == {"spec": {"template": {"spec": {"containers": [
        {"name": "pi", "env": [{"name": "B", "$patch": "delete"}]}]}}}}


def test_server_fields_in_the_manifest_are_not_sent() -> None:
    modified = job()
    modified["metadata"]["resourceVersion"] = "1"
    modified["status"] = {"succeeded": 3}
    assert three_way_patch(job(), modified, live(job())) == {}


def test_the_annotation_records_the_manifest_without_itself() -> None:
    doc = job(completions=3)
    annotated = with_annotation(doc)
    recorded = json.loads(annotated["metadata"]["annotations"][LAST_APPLIED])
    assert recorded == doc
    assert last_applied_text(annotated) == last_applied_text(doc)
    # Applying the annotated form against a live object that has the same annotation: nothing to do.
    current = live(annotated)
    assert three_way_patch(recorded, annotated, current) == {}
