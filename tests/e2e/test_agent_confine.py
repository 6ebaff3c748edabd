"""Pods run as their securityContext asks, through a real control plane and agent: user, groups,
capabilities, no_new_privs and a read-only root read back from the process itself; a pod that
asks for what cannot be given is refused with the kubelet's reason, never run otherwise; and
no pod inherits the agent's oom_score_adj or raised open-files limit."""

from __future__ import annotations

import json
import os
import pwd
import resource
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from nodeagent.runtime.confine import ChildSetup, Confinement

from .agent_helpers import apply_all, container, logs, pod_manifest, wait_phase
from .harness import Cluster, wait_until

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="confining pods to users, capabilities and mount "
                                                          "namespaces needs the agent to run as root")
CAP_CHOWN, CAP_DAC_READ_SEARCH, CAP_SYS_RESOURCE = 0, 2, 24
NOBODY = 65534
STATUS = "grep -E '^(Uid|Gid|Groups|CapBnd|CapEff|CapAmb|NoNewPrivs):' /proc/self/status"


def own(key: str) -> str:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return line.split(":", 1)[1].strip()
    raise KeyError(key)


@pytest.fixture
def cluster(cluster_factory) -> Cluster:  # type: ignore[no-untyped-def]
    """An agent started with a raised soft open-files limit, as its systemd unit raises it."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if soft <= 1024:
        pytest.skip(f"the open-files hard limit here ({hard}) leaves no raised limit for the agent to pass on")
    c = cluster_factory()
    c.start_controlplane()
    member = c.agent("node-a", "--heartbeat-interval", "1s")
    member.open_files = (soft, None)
    member.start(c.env, c.dir)
    wait_until(lambda: c.node_ready("node-a"), 30, "node node-a to be Ready")
    return c


def status_of(text: str) -> dict[str, str]:
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines()) if v}


def waiting(cluster: Cluster, name: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        p = cluster.try_get("pod", name)
        statuses = (p or {}).get("status", {}).get("containerStatuses") or []
        w = statuses[0].get("state", {}).get("waiting", {}) if statuses else {}
        return w if w.get("reason") == "CreateContainerConfigError" else None

    return wait_until(check, 30, f"pod {name} to wait with CreateContainerConfigError")


@needs_root
def test_a_confined_pod_runs_as_asked(cluster: Cluster) -> None:
    script = (f"{STATUS}; cat /proc/self/oom_score_adj; ulimit -Sn; "
              "touch /ketch-confine-test 2>&1 || echo root-refused; touch mine && stat -c '%g' mine; stat -c '%a %g' .")
    manifest = pod_manifest(
        "locked", "node-a", ["sh", "-c", script],
        spec={"securityContext": {"runAsUser": 65534, "fsGroup": 2000, "supplementalGroups": [3000]}},
        container_fields={"securityContext": {
            "capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}, "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True, "runAsNonRoot": True}})
    privileged = pod_manifest("privileged", "node-a", ["sh", "-c", STATUS], container_fields={
        "securityContext": {"privileged": True, "capabilities": {"drop": ["ALL"]}}})
    applied = cluster.apply(f"{manifest}\n---\n{privileged}")
    assert "ignored" not in applied.stderr  # every field here is honoured: no warning says otherwise
    p = wait_phase(cluster, "locked", "Succeeded")
    assert container(p)["state"]["terminated"]["exitCode"] == 0
    out = logs(cluster, "locked")
    st = status_of(out)
    try:
        gid = pwd.getpwuid(65534).pw_gid  # a user without runAsGroup: its own primary group
    except KeyError:
        gid = 65534
    assert st["Uid"].split() == ["65534"] * 4
    assert st["Gid"].split() == [str(gid)] * 4
    assert sorted(st["Groups"].split(), key=int) == sorted({str(gid), "2000", "3000"}, key=int)
    assert int(st["CapBnd"], 16) == int(st["CapEff"], 16) == int(st["CapAmb"], 16) == 1 << CAP_CHOWN
    assert st["NoNewPrivs"] == "1"
    lines = out.splitlines()
    assert lines[7:9] == ["1000", "1024"]  # BestEffort; never the agent's open files
    assert "Read-only file system" in out and "root-refused" in out
    assert not Path("/ketch-confine-test").exists()
    # The sandbox stays writable and belongs to the fsGroup, setgid: what the pod makes there is the group's.
    assert lines[-2:] == ["2000", "2775 2000"]
    # privileged: the agent's full privileges (its capabilities settings do not apply, as in Kubernetes).
    wait_phase(cluster, "privileged", "Succeeded")
    st = status_of(logs(cluster, "privileged"))
    assert (st["Uid"].split()[0], st["NoNewPrivs"]) == ("0", "0")
    assert (int(st["CapBnd"], 16), int(st["CapEff"], 16)) == (int(own("CapBnd"), 16), int(own("CapEff"), 16))


@needs_root
def test_what_cannot_be_given_is_refused_with_the_kubelets_reason(cluster: Cluster) -> None:
    marker = str(cluster.dir / "should-not-run")
    apply_all(
        cluster,
        pod_manifest("uid-zero", "node-a", ["touch", marker],
                     spec={"securityContext": {"runAsNonRoot": True}},
                     container_fields={"securityContext": {"runAsUser": 0}}),
        pod_manifest("image-root", "node-a", ["touch", marker],
                     spec={"securityContext": {"runAsNonRoot": True}}),
        pod_manifest("bad-cap", "node-a", ["true"], container_fields={"securityContext": {
            "capabilities": {"add": ["NET_FLY"]}}}),
    )
    uid_zero = cluster.get("pod", "uid-zero")["metadata"]["uid"]
    assert waiting(cluster, "uid-zero")["message"] == (
        f'container\'s runAsUser breaks non-root policy (pod: "uid-zero_default({uid_zero})", container: main)')
    image_root = cluster.get("pod", "image-root")["metadata"]["uid"]
    assert waiting(cluster, "image-root")["message"] == (
        f'container has runAsNonRoot and image will run as root (pod: "image-root_default({image_root})", '
        "container: main)")
    assert waiting(cluster, "bad-cap")["message"] == 'capabilities.add: unknown capability "NET_FLY"'

    def failed_events() -> list[str] | None:
        found = [e["message"] for e in cluster.items("events")
                 if e.get("reason") == "Failed" and e["involvedObject"]["name"] in ("uid-zero", "image-root")]
        return found if len(found) == 2 else None

    assert all(m.startswith("Error: container") for m in wait_until(failed_events, 30, "the Failed events"))
    for name in ("uid-zero", "image-root", "bad-cap"):
        p = cluster.get("pod", name)
        assert p["status"]["phase"] == "Pending"
        assert "running" not in container(p)["state"] and "terminated" not in container(p)["state"]
    assert not Path(marker).exists()


def test_pods_get_their_qos_oom_score_and_a_containers_open_files(cluster: Cluster) -> None:
    script = "cat /proc/self/oom_score_adj; ulimit -Sn; ulimit -Hn"
    limits = {"memory": "64Mi", "cpu": "100m"}
    apply_all(
        cluster,
        pod_manifest("plain", "node-a", ["sh", "-c", script]),
        pod_manifest("guaranteed", "node-a", ["sh", "-c", script],
                     container_fields={"resources": {"limits": limits, "requests": limits}}),
    )
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # the agent's hard limit is the test's
    hard = 524288 if hard == resource.RLIM_INFINITY else min(hard, 524288)
    wait_phase(cluster, "plain", "Succeeded")
    assert logs(cluster, "plain").split() == ["1000", "1024", str(hard)]
    wait_phase(cluster, "guaranteed", "Succeeded")
    # -997 needs CAP_SYS_RESOURCE (the agent has the test's capabilities); without it the agent
    # cannot go below its own score.
    agent_score = int(Path("/proc/self/oom_score_adj").read_text())
    lowest = -997 if int(own("CapEff"), 16) >> CAP_SYS_RESOURCE & 1 else max(-997, agent_score)
    assert logs(cluster, "guaranteed").split() == [str(lowest), "1024", str(hard)]
    assert json.loads(json.dumps(cluster.get("pod", "guaranteed")))["status"]["qosClass"] == "Guaranteed"


@needs_root  # to start the agent as another user
def test_an_agent_that_is_not_root_refuses_what_it_cannot_give(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    """The kubelet fails a container it cannot create as asked; an agent run by a user refuses
    another user, privileged and a read-only root the same way, and runs the rest as itself."""
    c: Cluster = cluster_factory()
    c.start_controlplane()
    data = Path(tempfile.mkdtemp(prefix="ketch-agent-nobody-"))  # under /tmp: the test's tmp_path is root's alone
    os.chown(data, NOBODY, -1)
    agent = c.agent("node-u", "--heartbeat-interval", "1s", "--data-dir", str(data))
    # nobody, keeping only CAP_DAC_READ_SEARCH (ambient) to read this test's Python under /root.
    read = 1 << CAP_DAC_READ_SEARCH
    setup = ChildSetup(Confinement(uid=NOBODY, gid=NOBODY, groups=(), bounding=read, caps=read, ambient=read),
                       str(data))
    agent.preexec = setup
    try:
        try:
            agent.start(c.env, data)
        finally:
            setup.close()
        wait_until(lambda: c.node_ready("node-u"), 30, "the agent run as nobody to be Ready")
        apply_all(
            c,
            pod_manifest("as-agent", "node-u", ["sh", "-c", STATUS]),
            pod_manifest("other-user", "node-u", ["true"], spec={"securityContext": {"runAsUser": 1000}}),
            pod_manifest("privileged", "node-u", ["true"], container_fields={"securityContext": {"privileged": True}}),
            pod_manifest("read-only", "node-u", ["true"],
                         container_fields={"securityContext": {"readOnlyRootFilesystem": True}}),
            pod_manifest("volume", "node-u", ["true"], spec={"volumes": [{"name": "input", "emptyDir": {}}]},
                         container_fields={"volumeMounts": [{"name": "input", "mountPath": "/input"}]}),
        )
        assert waiting(c, "other-user")["message"] == (
            f"runAsUser: the agent runs as uid {NOBODY} without CAP_SETUID and cannot run a container as uid 1000")
        assert waiting(c, "privileged")["message"] == (
            f"privileged: the agent runs as uid {NOBODY}, not root, and cannot give a container full privileges")
        assert waiting(c, "read-only")["message"].startswith(
            f"readOnlyRootFilesystem: the agent runs as uid {NOBODY} without CAP_SYS_ADMIN")
        # Never run with its volume missing: refused, naming the volume (a FailedMount event too).
        assert waiting(c, "volume")["message"] == (
            f'volume "input": the agent runs as uid {NOBODY} without CAP_SYS_ADMIN and cannot mount volumes in a '
            "private mount namespace")
        wait_phase(c, "as-agent", "Succeeded")
        st = status_of(logs(c, "as-agent"))
        assert st["Uid"].split() == [str(NOBODY)] * 4
        assert int(st["CapEff"], 16) & ~read == 0  # nothing beyond the agent's own
        for name in ("other-user", "privileged", "read-only", "volume"):
            assert c.get("pod", name)["status"]["phase"] == "Pending"
    finally:
        c.stop_process(agent.name)
        shutil.rmtree(data, ignore_errors=True)
