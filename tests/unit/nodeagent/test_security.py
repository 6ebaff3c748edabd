"""What a container is confined to, from its pod's securityContext and QoS, on agents with
different privileges (a fake Host: the non-root agent is simulated here), or why it is refused."""

from __future__ import annotations

import ast
import os
import pwd
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from ketch.api import capabilities
from ketch.v1 import core_pb2
from nodeagent import security
from nodeagent.runtime.confine import Confinement
from nodeagent.security import ConfigError, Host

ALL = (1 << 41) - 1
GI = 1024**3
ROOT = Host(uid=0, gid=0, groups=(), effective=ALL, permitted=ALL, bounding=ALL, oom_score_adj=0,
            nofile=(1024, 524288), memory=8 * GI)
# A non-root agent: no capabilities at all (what `ketch-agent` run by a user has).
USER = Host(uid=1000, gid=1000, groups=(1000,), effective=0, permitted=0, bounding=ALL, oom_score_adj=0,
            nofile=(1024, 524288), memory=8 * GI)
SANDBOX = "/var/lib/ketch/pods/u1"
ROOT_DIR = Path(__file__).resolve().parents[3]


def cap(*names: str) -> int:
    mask = 0
    for name in names:
        n = capabilities.number(name)
        assert n is not None
        mask |= 1 << n
    return mask


def make_pod(pod_sc: dict[str, Any] | None = None, sc: dict[str, Any] | None = None, qos: str = "BestEffort",
             **container: Any) -> core_pb2.Pod:
    doc: dict[str, Any] = {"metadata": {"name": "p", "namespace": "default", "uid": "u1"},
                           "spec": {"containers": [{"name": "main", "command": ["true"], **container}]},
                           "status": {"qosClass": qos}}
    if pod_sc is not None:
        doc["spec"]["securityContext"] = pod_sc
    if sc is not None:
        doc["spec"]["containers"][0]["securityContext"] = sc
    return json_format.ParseDict(doc, core_pb2.Pod())


def confine(pod: core_pb2.Pod, host: Host = ROOT, index: int = 0) -> Confinement:
    return security.confinement(pod, pod.spec.containers[index], host, SANDBOX)


@pytest.fixture(autouse=True)
def passwd(monkeypatch: pytest.MonkeyPatch) -> None:
    """A passwd and group database of the test's own: alice (1000, primary group 1000, also in
    100 "users"); uid 4242 has no entry."""
    entries = {0: ("root", 0), 1000: ("alice", 1000), 65534: ("nobody", 65534)}

    def getpwuid(uid: int) -> pwd.struct_passwd:
        if uid not in entries:
            raise KeyError(uid)
        name, gid = entries[uid]
        return pwd.struct_passwd((name, "x", uid, gid, "", f"/home/{name}", "/bin/sh"))

    def getgrouplist(name: str, gid: int) -> list[int]:
        return [gid, 100] if name == "alice" else [gid]

    monkeypatch.setattr(security.pwd, "getpwuid", getpwuid)
    monkeypatch.setattr(security.os, "getgrouplist", getgrouplist)


# -- users and groups -------------------------------------------------------------------------------

def test_a_pod_that_sets_nothing_only_gets_its_qos_oom_score() -> None:
    assert confine(make_pod()) == Confinement(oom_score_adj=1000)
    assert confine(make_pod(), Host(**{**_fields(ROOT), "oom_score_adj": 1000})).trivial


def test_a_user_without_a_group_gets_its_primary_group_never_gid_0() -> None:
    c = confine(make_pod({"runAsUser": 1000}))
    assert (c.uid, c.gid, c.groups) == (1000, 1000, (1000, 100))
    unknown = confine(make_pod({"runAsUser": 4242}))
    assert (unknown.uid, unknown.gid, unknown.groups) == (4242, security.NOGROUP, ())


def test_container_settings_win_over_the_pod_and_groups_are_exact() -> None:
    pod = make_pod({"runAsUser": 1000, "runAsGroup": 1000, "supplementalGroups": [3000, 100], "fsGroup": 2000},
                   {"runAsUser": 65534, "runAsGroup": 5})
    c = confine(pod)
    # The user's own groups (Merge), then supplementalGroups, then fsGroup; nothing from the agent.
    assert (c.uid, c.gid, c.groups) == (65534, 5, (5, 3000, 100, 2000))
    strict = make_pod({"runAsUser": 1000, "supplementalGroups": [3000], "supplementalGroupsPolicy": "Strict"})
    assert confine(strict).groups == (3000,)


def test_groups_alone_keep_the_agents_user() -> None:
    c = confine(make_pod({"fsGroup": 2000}))
    assert (c.uid, c.gid, c.groups) == (0, 0, (0, 2000))


def test_the_agents_own_user_asked_gets_that_users_groups_not_the_agents() -> None:
    # A root agent started with extra groups (a login shell's): runAsUser 0 is root's groups only.
    grouped = Host(**{**_fields(ROOT), "groups": (0, 4, 27)})
    c = confine(make_pod({"runAsUser": 0}), grouped)
    assert (c.uid, c.gid, c.groups) == (0, 0, (0,))
    assert confine(make_pod({"runAsUser": 0}), Host(**{**_fields(ROOT), "groups": (0,)})).groups is None
    assert confine(make_pod(), grouped).groups is None  # its user's groups are not known: as the agent
    # Known: a pod that asks for nothing gets root's groups, not the ones the agent was started with.
    known = Host(**{**_fields(grouped), "own_groups": (0,)})
    assert (confine(make_pod(), known).groups, confine(make_pod(), known).uid) == ((0,), 0)
    assert confine(make_pod(), Host(**{**_fields(known), "groups": (0,)})).groups is None


def test_a_non_root_agent_refuses_another_user_rather_than_ignoring_it() -> None:
    with pytest.raises(ConfigError, match="runAsUser: the agent runs as uid 1000 without CAP_SETUID and cannot "
                                          "run a container as uid 65534"):
        confine(make_pod({"runAsUser": 65534}), USER)
    # Its own user is no switch at all.
    assert confine(make_pod({"runAsUser": 1000}), USER).uid is None


# -- runAsNonRoot ----------------------------------------------------------------------------------

def test_run_as_non_root_refuses_uid_0_with_the_kubelets_messages() -> None:
    with pytest.raises(ConfigError) as err:
        confine(make_pod({"runAsNonRoot": True}))
    assert str(err.value) == ('container has runAsNonRoot and image will run as root (pod: "p_default(u1)", '
                              "container: main)")
    with pytest.raises(ConfigError) as err:
        confine(make_pod({"runAsNonRoot": True}, {"runAsUser": 0}))
    assert str(err.value) == 'container\'s runAsUser breaks non-root policy (pod: "p_default(u1)", container: main)'
    assert confine(make_pod({"runAsNonRoot": True, "runAsUser": 1000})).uid == 1000
    assert confine(make_pod({"runAsNonRoot": True}), USER).uid is None  # the agent's own user is not root
    assert confine(make_pod({"runAsNonRoot": True}, {"runAsNonRoot": False})).uid is None


# -- capabilities and privileges -------------------------------------------------------------------

def test_drop_all_and_add_one_for_root() -> None:
    c = confine(make_pod(sc={"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}))
    assert (c.bounding, c.caps, c.ambient) == (cap("NET_BIND_SERVICE"), cap("NET_BIND_SERVICE"), 0)


def test_drop_is_relative_to_the_agents_set_and_names_are_containerds() -> None:
    c = confine(make_pod(sc={"capabilities": {"drop": ["cap_net_raw", "SYS_ADMIN"]}}))
    assert c.bounding == c.caps == ALL & ~cap("NET_RAW", "SYS_ADMIN")
    # containerd's order: add ALL, drop ALL, add, drop: a name both added and dropped is dropped.
    c = confine(make_pod(sc={"capabilities": {"add": ["ALL", "CHOWN"], "drop": ["CHOWN"]}}))
    assert c.bounding == c.caps == ALL & ~cap("CHOWN")


def test_a_non_root_user_keeps_added_capabilities_as_ambient() -> None:
    c = confine(make_pod({"runAsUser": 1000}, {"capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["NET_RAW"]}}))
    assert c.bounding == ALL & ~cap("NET_RAW")
    assert c.caps == c.ambient == cap("NET_BIND_SERVICE")
    # Nothing added: the kernel clears a non-root user's capabilities at the switch; no ambient.
    c = confine(make_pod({"runAsUser": 1000}, {"capabilities": {"drop": ["ALL"]}}))
    assert (c.bounding, c.caps, c.ambient) == (0, None, 0)


def test_capabilities_the_agent_cannot_give_are_refused() -> None:
    with pytest.raises(ConfigError, match=r'capabilities\.add: unknown capability "FLY"'):
        confine(make_pod(sc={"capabilities": {"add": ["FLY"]}}))
    no_admin = Host(**{**_fields(ROOT), "bounding": ALL & ~cap("SYS_ADMIN")})
    with pytest.raises(ConfigError, match="cannot give CAP_SYS_ADMIN: not in its own capability bounding set"):
        confine(make_pod(sc={"capabilities": {"add": ["SYS_ADMIN"]}}), no_admin)
    with pytest.raises(ConfigError, match="without CAP_SETPCAP"):
        confine(make_pod(sc={"capabilities": {"drop": ["ALL"]}}), USER)


def test_privileged_is_the_agents_full_privileges_or_refused() -> None:
    c = confine(make_pod(sc={"privileged": True, "capabilities": {"drop": ["ALL"]}}))
    assert (c.bounding, c.caps, c.ambient, c.no_new_privs) == (None, None, 0, False)
    assert confine(make_pod(sc={"privileged": False})) == confine(make_pod())
    with pytest.raises(ConfigError, match="privileged: the agent runs as uid 1000, not root, and cannot give a "
                                          "container full privileges"):
        confine(make_pod(sc={"privileged": True}), USER)


def test_allow_privilege_escalation_false_sets_no_new_privs() -> None:
    assert confine(make_pod(sc={"allowPrivilegeEscalation": False})).no_new_privs
    assert not confine(make_pod(sc={"allowPrivilegeEscalation": True})).no_new_privs
    assert not confine(make_pod()).no_new_privs


def test_read_only_root_keeps_the_sandbox_writable_or_is_refused() -> None:
    c = confine(make_pod(sc={"readOnlyRootFilesystem": True}))
    assert (c.read_only_root, c.writable) == (True, (SANDBOX,))
    with pytest.raises(ConfigError, match="readOnlyRootFilesystem: the agent runs as uid 1000 without "
                                          "CAP_SYS_ADMIN"):
        confine(make_pod(sc={"readOnlyRootFilesystem": True}), USER)


# -- oom_score_adj and the open-files limit ---------------------------------------------------------

@pytest.mark.parametrize(("qos", "resources", "expected"), [
    ("BestEffort", {}, 1000),
    ("Guaranteed", {"requests": {"memory": "1Gi", "cpu": "1"}, "limits": {"memory": "1Gi", "cpu": "1"}}, -997),
    ("Burstable", {"requests": {"memory": "1Gi"}}, 875),  # 1000 - 1000 * 1Gi / 8Gi
    ("Burstable", {"requests": {"cpu": "1"}}, 999),  # never BestEffort's 1000
    ("Burstable", {"requests": {"memory": "8Gi"}}, 3),  # never as low as Guaranteed
])
def test_oom_score_adj_per_qos_class_as_the_kubelet(qos: str, resources: dict[str, Any], expected: int) -> None:
    assert confine(make_pod(qos=qos, resources=resources)).oom_score_adj == expected


def test_a_sidecar_is_no_easier_to_kill_than_the_regular_containers() -> None:
    pod = make_pod(qos="Burstable", resources={"requests": {"memory": "2Gi"}})
    pod.spec.init_containers.add(name="side", restart_policy="Always", command=["sleep"])
    assert security.oom_score_adj(pod, pod.spec.init_containers[0], 8 * GI) == 750


def test_an_agent_without_cap_sys_resource_cannot_lower_it_below_its_own() -> None:
    pod = make_pod(qos="Guaranteed", resources={"requests": {"memory": "1Gi"}, "limits": {"memory": "1Gi"}})
    protected = Host(**{**_fields(USER), "oom_score_adj": -500})
    assert confine(pod, protected).oom_score_adj is None  # -997 asked, -500 (the agent's) is the lowest it may set
    assert confine(make_pod(), protected).oom_score_adj == 1000


@pytest.mark.parametrize(("agent", "expected"), [
    ((1048576, 1048576), (1024, 524288)),  # the deployed agent's unit: LimitNOFILE=1048576
    ((20000, 20000), (1024, 20000)),
    ((1024, 524288), None),  # already a container's: nothing to do
    ((512, 512), None),  # a lower limit is kept
])
def test_the_open_files_limit_is_never_the_agents_raised_one(agent: tuple[int, int],
                                                            expected: tuple[int, int] | None) -> None:
    host = Host(**{**_fields(ROOT), "nofile": agent})
    assert confine(make_pod(), host).nofile == expected


def _fields(host: Host) -> dict[str, Any]:
    return {name: getattr(host, name) for name in host.__slots__}


@pytest.mark.skipif(os.geteuid() != 0, reason="starting a process with extra groups needs root")
def test_an_agent_started_with_extra_groups_does_not_pass_them_on() -> None:
    """The real agent's view of itself (Host.current) in a process started with a group root
    does not have: a pod that asks for nothing gets root's groups from the group database."""
    script = ("from nodeagent import security\n"
              "from tests.unit.nodeagent.test_security import make_pod\n"
              "h, pod = security.Host.current(), make_pod()\n"
              "print(h.has_foreign_groups, security.confinement(pod, pod.spec.containers[0], h, '/').groups)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60,
                         cwd=ROOT_DIR, extra_groups=[4242]).stdout.split(maxsplit=1)
    assert out[0] == "True"
    assert 4242 not in ast.literal_eval(out[1]) and 0 in ast.literal_eval(out[1])
