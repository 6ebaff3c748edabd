"""$(VAR) expansion and the container environment, as Kubernetes builds them."""

from __future__ import annotations

import pytest

from ketch.v1 import core_pb2
from nodeagent.envvars import container_argv, container_env, expand

VARS = {"A": "apple", "B": "banana", "EMPTY": ""}

EXPANSIONS = [
    ("no references", "plain text", "plain text"),
    ("one reference", "$(A)", "apple"),
    ("embedded", "x$(A)y$(B)z", "xappleybananaz"),
    ("undefined stays as written", "$(NOPE)", "$(NOPE)"),
    ("escaped reference", "$$(A)", "$(A)"),
    ("double dollar is one dollar", "cost: $$5", "cost: $5"),
    ("lone dollar at the end", "end$", "end$"),
    ("dollar before other char", "$x$(A)", "$xapple"),
    ("unterminated reference", "$(A", "$(A"),
    ("empty value", "[$(EMPTY)]", "[]"),
    ("shell syntax untouched", "${A} $A", "${A} $A"),
    ("escaped then real", "$$$(A)", "$apple"),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in EXPANSIONS], ids=[n for n, _, _ in EXPANSIONS])
def test_expand(text: str, expected: str) -> None:
    assert expand(text, VARS.get) == expected


def _pod() -> core_pb2.Pod:
    pod = core_pb2.Pod()
    md = pod.metadata
    md.name, md.namespace, md.uid = "web-0", "prod", "u-1"
    md.labels["app"] = "web"
    md.annotations["team"] = "core"
    pod.spec.node_name = "node-a"
    pod.spec.service_account_name = "sa"
    c = pod.spec.containers.add(name="main", command=["echo", "$(GREETING)", "$$(GREETING)"], args=["$(POD)"])
    c.env.add(name="GREETING", value="hi")
    c.env.add(name="DERIVED", value="$(GREETING)-$(LATER)")
    c.env.add(name="LATER", value="later")
    for name, path in (("POD", "metadata.name"), ("NS", "metadata.namespace"), ("UID", "metadata.uid"),
                       ("APP", "metadata.labels['app']"), ("TEAM", "metadata.annotations['team']"),
                       ("NODE", "spec.nodeName"), ("SA", "spec.serviceAccountName"), ("IP", "status.podIP"),
                       ("HOST", "status.hostIP")):
        c.env.add(name=name).value_from.field_ref.field_path = path
    r = c.env.add(name="MEM")
    r.value_from.resource_field_ref.resource = "limits.memory"
    r.value_from.resource_field_ref.divisor = "1Mi"
    c.resources.limits["memory"] = "64Mi"
    return pod


def test_container_env() -> None:
    pod = _pod()
    env = container_env(pod, pod.spec.containers[0], "10.1.2.3", host_env={"PATH": "/bin", "SECRET": "x"})
    assert env["PATH"] == "/bin"
    assert "SECRET" not in env
    assert env["HOSTNAME"] == "web-0"
    assert env["DERIVED"] == "hi-$(LATER)"  # only earlier variables are visible
    assert (env["POD"], env["NS"], env["UID"], env["APP"], env["TEAM"]) == ("web-0", "prod", "u-1", "web", "core")
    assert (env["NODE"], env["SA"], env["IP"], env["HOST"]) == ("node-a", "sa", "10.1.2.3", "10.1.2.3")
    assert env["MEM"] == "64"


def test_hostname_follows_spec_hostname() -> None:
    pod = _pod()
    pod.spec.hostname = "job-3"
    assert container_env(pod, pod.spec.containers[0], "h", host_env={})["HOSTNAME"] == "job-3"


def test_argv_expands_from_final_env() -> None:
    pod = _pod()
    env = container_env(pod, pod.spec.containers[0], "h", host_env={})
    assert container_argv(pod.spec.containers[0], env) == ["echo", "hi", "$(GREETING)", "web-0"]


def test_unsupported_env_source_is_an_error() -> None:
    pod = _pod()
    var = pod.spec.containers[0].env.add(name="S")
    var.value_from.secret_key_ref.update({"name": "s", "key": "k"})
    with pytest.raises(ValueError, match="only fieldRef"):
        container_env(pod, pod.spec.containers[0], "h", host_env={})
