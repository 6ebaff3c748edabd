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


OBJECTS: dict[tuple[str, str], dict[str, str]] = {
    ("ConfigMap", "cfg"): {"MODE": "fast", "URL": "http://x", "bad key": "skipped", "1ST": "skipped"},
    ("Secret", "db"): {"PASSWORD": "hunter2", "MODE": "from-secret"},
}


def _lookup(kind: str, name: str) -> dict[str, str] | None:
    return OBJECTS.get((kind, name))


def _refs_pod(*env: dict[str, object], env_from: tuple[dict[str, object], ...] = ()) -> core_pb2.Pod:
    pod = core_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace = "p", "prod"
    c = pod.spec.containers.add(name="main", command=["run"])
    for entry in env_from:
        c.env_from.add().update(entry)
    for var in env:
        v = c.env.add(name=str(var["name"]))
        if "value" in var:
            v.value = str(var["value"])
        ref = var.get("configMapKeyRef") or var.get("secretKeyRef")
        if isinstance(ref, dict):
            getattr(v.value_from, "config_map_key_ref" if "configMapKeyRef" in var else "secret_key_ref").update(ref)
    return pod


def test_env_from_config_maps_and_secrets_as_the_kubelet() -> None:
    pod = _refs_pod({"name": "PW", "secretKeyRef": {"name": "db", "key": "PASSWORD"}},
                    {"name": "M", "configMapKeyRef": {"name": "cfg", "key": "MODE"}},
                    {"name": "BOTH", "value": "$(CFG_URL)/$(MODE)"},
                    {"name": "OPT", "configMapKeyRef": {"name": "gone", "key": "k", "optional": True}},
                    {"name": "OPTKEY", "secretKeyRef": {"name": "db", "key": "nope", "optional": True}},
                    env_from=({"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}, {"secretRef": {"name": "db"}},
                              {"configMapRef": {"name": "gone", "optional": True}}))
    skipped: list[str] = []
    env = container_env(pod, pod.spec.containers[0], "h", host_env={}, objects=_lookup, skipped=skipped)
    assert (env["PW"], env["M"], env["CFG_MODE"], env["CFG_URL"]) == ("hunter2", "fast", "fast", "http://x")
    assert (env["PASSWORD"], env["MODE"]) == ("hunter2", "from-secret")  # later envFrom entries win
    assert env["BOTH"] == "http://x/from-secret"  # envFrom variables are visible to $(VAR)
    assert "OPT" not in env and "OPTKEY" not in env
    assert "CFG_bad key" not in env and "CFG_1ST" in env  # prefixed, "CFG_1ST" is a valid name
    assert skipped == ["Keys [CFG_bad key] from the EnvFrom configmap prod/cfg were skipped since they are "
                       "considered invalid environment variable names."]


@pytest.mark.parametrize(("pod", "message"), [
    (_refs_pod({"name": "X", "configMapKeyRef": {"name": "gone", "key": "k"}}), 'configmap "gone" not found'),
    (_refs_pod({"name": "X", "secretKeyRef": {"name": "gone", "key": "k"}}), 'secret "gone" not found'),
    (_refs_pod({"name": "X", "secretKeyRef": {"name": "db", "key": "nope"}}),
     "couldn't find key nope in Secret prod/db"),
    (_refs_pod(env_from=({"secretRef": {"name": "gone"}},)), 'secret "gone" not found'),
], ids=["configmap", "secret", "key", "envFrom"])
def test_missing_required_reference_is_the_kubelets_error(pod: core_pb2.Pod, message: str) -> None:
    with pytest.raises(ValueError) as info:
        container_env(pod, pod.spec.containers[0], "h", host_env={}, objects=_lookup)
    assert str(info.value) == message
