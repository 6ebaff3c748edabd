"""Pod volumes on the agent: the files each API-data volume holds (the kubelet's contents, modes and
formats), the kubelet's hostPath type checks, the atomic layout the files are written in, the
host-wide registry of mount points made on the host, the refusal of an agent that cannot mount,
and how a container's volumeMounts become binds (subPath kept inside its volume)."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from ketch.api import configrefs, errors
from ketch.v1 import configmap_pb2, core_pb2, secret_pb2
from nodeagent.volumes import hostpath, spec, writer
from nodeagent.volumes.mountpoints import MountPoints
from nodeagent.volumes.setup import PodVolumes, refusal, volumes_dir
from nodeagent.volumes.spec import File, VolumeError

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another group and tmpfs mounts need root")


def make_pod(volumes: list[dict[str, Any]], mounts: list[dict[str, Any]] | None = None,
             **metadata: Any) -> core_pb2.Pod:
    return json_format.ParseDict({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1", **metadata},
        "spec": {"volumes": volumes, "containers": [{
            "name": "main", "command": ["true"], "volumeMounts": mounts or [],
            "resources": {"limits": {"cpu": "1500m", "memory": "64Mi"}, "requests": {"cpu": "250m"}}}]}},
        core_pb2.Pod())


def files_of(pod: core_pb2.Pod, objects: Mapping[tuple[str, str], Mapping[str, bytes]] | None = None,
             allocatable: Mapping[str, str] | None = None) -> list[tuple[str, bytes, str]]:
    vol = next(iter(spec.volumes(pod.spec).values()))
    found = objects or {}
    got = spec.api_files(pod, vol, lambda kind, name: found.get((kind, name)), allocatable or {})
    return [(f.path, f.data, oct(f.mode)) for f in got]


CM = {(configrefs.CONFIGMAP, "cfg"): {"b": b"2", "a": b"1", "bin": b"\xde\xad"}}
SECRET = {(configrefs.SECRET, "s"): {"password": b"s3cret", "user": b"admin"}}


# -- the volume types ------------------------------------------------------------------------------

def test_every_volume_type_the_node_cannot_mount_is_named() -> None:
    pod = make_pod([{"name": "data", "persistentVolumeClaim": {"claimName": "c"}}])
    with pytest.raises(VolumeError, match=r'^volume "data": persistentVolumeClaim volumes are not supported on '
                                          r"this node \(a host-process runtime mounts only emptyDir, configMap"):
        spec.volumes(pod.spec)
    assert set(spec.volumes(make_pod([{"name": "x", "emptyDir": {}}]).spec)) == {"x"}


# -- configMap and secret ------------------------------------------------------------------------

def test_a_configmap_gives_every_key_as_a_file_with_the_default_mode() -> None:
    pod = make_pod([{"name": "v", "configMap": {"name": "cfg"}}])
    assert files_of(pod, CM) == [("a", b"1", "0o644"), ("b", b"2", "0o644"), ("bin", b"\xde\xad", "0o644")]
    pod = make_pod([{"name": "v", "configMap": {"name": "cfg", "defaultMode": 0o600}}])
    assert {m for _, _, m in files_of(pod, CM)} == {"0o600"}


def test_items_pick_keys_to_paths_each_with_its_own_mode() -> None:
    pod = make_pod([{"name": "v", "secret": {"secretName": "s", "defaultMode": 0o440, "items": [
        {"key": "password", "path": "db/pw", "mode": 0o400}, {"key": "user", "path": "user.txt"}]}}])
    assert files_of(pod, SECRET) == [("db/pw", b"s3cret", "0o400"), ("user.txt", b"admin", "0o440")]


def test_a_missing_object_or_key_is_an_error_unless_optional() -> None:
    missing = make_pod([{"name": "v", "configMap": {"name": "other"}}])
    with pytest.raises(VolumeError, match=r'^configmap "other" not found$'):
        files_of(missing, CM)
    assert files_of(make_pod([{"name": "v", "secret": {"secretName": "x", "optional": True}}])) == []
    key = make_pod([{"name": "v", "configMap": {"name": "cfg", "items": [{"key": "zz", "path": "z"}]}}])
    with pytest.raises(VolumeError, match=r"^configmap references non-existent config key: zz$"):
        files_of(key, CM)
    optional = make_pod([{"name": "v", "configMap": {"name": "cfg", "optional": True, "items": [
        {"key": "zz", "path": "z"}, {"key": "a", "path": "a"}]}}])
    assert files_of(optional, CM) == [("a", b"1", "0o644")]


@pytest.mark.parametrize(("item", "message"), [
    ({"key": "a", "path": "/etc/passwd"}, 'items\\[0\\].path: "/etc/passwd": must be a relative path'),
    ({"key": "a", "path": "x/../../y"}, "items\\[0\\].path: \"x/../../y\": must not contain '..'"),
    ({"key": "a", "path": "a", "mode": 0o1777}, r"items\[0\].mode: must be a number between 0 and 0777"),
    ({"key": "a", "path": "a", "mode": 1.5}, r"items\[0\].mode: must be an integer"),
])
def test_paths_and_modes_are_checked(item: dict[str, Any], message: str) -> None:
    with pytest.raises(VolumeError, match=message):
        files_of(make_pod([{"name": "v", "configMap": {"name": "cfg", "items": [item]}}]), CM)


# -- downwardAPI ---------------------------------------------------------------------------------

def test_downward_api_files_as_the_kubelet_writes_them() -> None:
    pod = make_pod([{"name": "v", "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
        {"path": "index",
         "fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}},
        {"path": "tier", "fieldRef": {"fieldPath": "metadata.labels['tier']"}},
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}, "mode": 0o400},
        {"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}},
        {"path": "uid", "fieldRef": {"fieldPath": "metadata.uid"}},
        {"path": "cpu_limit", "resourceFieldRef": {"containerName": "main", "resource": "limits.cpu"}},
        {"path": "cpu_request_m", "resourceFieldRef": {"containerName": "main", "resource": "requests.cpu",
                                                       "divisor": "1m"}},
        {"path": "mem_limit_mi", "resourceFieldRef": {"containerName": "main", "resource": "limits.memory",
                                                      "divisor": "1Mi"}},
        {"path": "mem_request", "resourceFieldRef": {"containerName": "main", "resource": "requests.memory"}},
    ]}}], labels={"tier": "batch", "app": "x"},
        annotations={"batch.kubernetes.io/job-completion-index": "3", "note": 'say "hi"\\\n\tnow'})
    got = {p: d.decode() for p, d, _ in files_of(pod)}
    assert got == {
        "labels": 'app="x"\ntier="batch"',
        "annotations": 'batch.kubernetes.io/job-completion-index="3"\nnote="say \\"hi\\"\\\\\\n\\tnow"',
        "index": "3", "tier": "batch", "name": "p", "ns": "ns", "uid": "u1",
        "cpu_limit": "2",  # 1500m rounded up
        "cpu_request_m": "250", "mem_limit_mi": "64", "mem_request": "0"}
    assert dict((p, m) for p, _, m in files_of(pod))["name"] == "0o400"


def test_downward_api_in_a_volume_gives_metadata_only() -> None:
    pod = make_pod([{"name": "v", "downwardAPI": {"items": [
        {"path": "node", "fieldRef": {"fieldPath": "spec.nodeName"}}]}}])
    with pytest.raises(VolumeError, match=r'^fieldRef\.fieldPath: Unsupported value: "spec\.nodeName": supported'):
        files_of(pod)
    pod = make_pod([{"name": "v", "downwardAPI": {"items": [
        {"path": "c", "resourceFieldRef": {"containerName": "nope", "resource": "limits.cpu"}}]}}])
    with pytest.raises(VolumeError, match='containerName: "nope": no such container'):
        files_of(pod)


def test_go_quote_is_strconv_quote() -> None:
    assert spec.go_quote('a"b\\c\nd\te\x01é') == '"a\\"b\\\\c\\nd\\te\\x01é"'


def test_projected_merges_its_sources_and_refuses_a_conflict() -> None:
    objects = {**CM, **SECRET}
    pod = make_pod([{"name": "v", "projected": {"defaultMode": 0o600, "sources": [
        {"configMap": {"name": "cfg", "items": [{"key": "a", "path": "a"}]}},
        {"secret": {"name": "s", "items": [{"key": "user", "path": "u"}]}},
        {"downwardAPI": {"items": [{"path": "n", "fieldRef": {"fieldPath": "metadata.name"}}]}}]}}])
    assert files_of(pod, objects) == [("a", b"1", "0o600"), ("u", b"admin", "0o600"), ("n", b"p", "0o600")]
    clash = make_pod([{"name": "v", "projected": {"sources": [
        {"configMap": {"name": "cfg", "items": [{"key": "a", "path": "x"}]}},
        {"secret": {"name": "s", "items": [{"key": "user", "path": "x"}]}}]}}])
    with pytest.raises(VolumeError, match='conflicting path "x"'):
        files_of(clash, objects)
    token = make_pod([{"name": "v", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}])
    with pytest.raises(VolumeError, match="serviceAccountToken projections are not supported"):
        files_of(token, objects)


def test_volume_mounts_are_read_and_checked() -> None:
    pod = make_pod([], [{"name": "v", "mountPath": "/data/", "subPath": "a/./b", "readOnly": True}])
    assert spec.mounts(pod.spec.containers[0]) == [spec.Mount("v", "/data", True, "a/b")]
    for bad, message in (({"subPathExpr": "$(X)"}, "subPathExpr is not supported"),
                         ({"subPath": "../x"}, "must not contain '..'"),
                         ({"mountPath": "/a/../b"}, "must not contain '..'")):
        pod = make_pod([], [{"name": "v", "mountPath": "/data", **bad}])
        with pytest.raises(VolumeError, match=message):
            spec.mounts(pod.spec.containers[0])


# -- hostPath --------------------------------------------------------------------------------------

def test_host_path_types_as_the_kubelet_checks_them(tmp_path: Path) -> None:
    d, f = tmp_path / "dir", tmp_path / "file"
    d.mkdir()
    f.write_text("x")
    sock_path = tmp_path / "sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    try:
        for path, kind in ((d, "Directory"), (d, "DirectoryOrCreate"), (f, "File"), (f, "FileOrCreate"),
                           (sock_path, "Socket"), (Path("/dev/null"), "CharDevice"), (tmp_path / "none", "")):
            hostpath.check(str(path), kind)
        for path, kind, what in ((f, "Directory", "a directory"), (d, "File", "a file"),
                                 (f, "Socket", "a socket file"), (f, "CharDevice", "a character device"),
                                 (Path("/dev/null"), "BlockDevice", "a block device"),
                                 (tmp_path / "none", "Directory", "a directory")):
            with pytest.raises(VolumeError, match=f"^hostPath type check failed: {path} is not {what}$"):
                hostpath.check(str(path), kind)
    finally:
        sock.close()
    with pytest.raises(VolumeError, match=r"^Dir is an invalid volume type$"):
        hostpath.check(str(d), "Dir")
    hostpath.check(str(tmp_path / "new" / "dir"), "DirectoryOrCreate")
    hostpath.check(str(tmp_path / "new2" / "file"), "FileOrCreate")
    assert (tmp_path / "new" / "dir").is_dir() and stat.S_IMODE((tmp_path / "new" / "dir").stat().st_mode) == 0o755
    assert (tmp_path / "new2" / "file").read_bytes() == b""


# -- writing ---------------------------------------------------------------------------------------

def test_files_are_written_behind_one_data_symlink(tmp_path: Path) -> None:
    writer.write(str(tmp_path), [File("a", b"1", 0o644), File("db/pw", b"s", 0o400)])
    assert os.readlink(tmp_path / "..data").startswith("..20")
    assert os.readlink(tmp_path / "a") == "..data/a" and os.readlink(tmp_path / "db") == "..data/db"
    assert (tmp_path / "db" / "pw").read_bytes() == b"s"
    assert stat.S_IMODE((tmp_path / "db" / "pw").stat().st_mode) == 0o400
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o644
    assert writer.written(str(tmp_path))


@needs_root
def test_an_fs_group_owns_the_files_and_can_read_them(tmp_path: Path) -> None:
    writer.write(str(tmp_path), [File("db/pw", b"s", 0o400)], gid=4321)
    st = (tmp_path / "db" / "pw").stat()
    assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (4321, 0o440)
    assert (tmp_path / "db").stat().st_gid == 4321


# -- mount points made on the host ---------------------------------------------------------------

def test_a_made_mount_point_goes_only_when_no_pod_holds_it(tmp_path: Path) -> None:
    reg = MountPoints(str(tmp_path / "run" / "mountpoints.json"))
    top = tmp_path / "input"
    reg.acquire("pod-a", [(str(top / "deep"), True), (str(tmp_path / "conf.yaml"), False)])
    assert (top / "deep").is_dir() and (tmp_path / "conf.yaml").read_bytes() == b""
    # A second pod (another agent on the host too) mounts at the parent the first one made.
    reg.acquire("pod-b", [(str(top), True)])
    assert reg.release("pod-a") == [str(top / "deep"), str(tmp_path / "conf.yaml")]
    assert top.is_dir(), "held by pod-b: an rmdir would detach pod-b's volume in its namespace"
    assert reg.release("pod-b") == [str(top)]
    assert not top.exists()


def test_a_path_that_existed_or_was_filled_is_never_removed(tmp_path: Path) -> None:
    reg = MountPoints(str(tmp_path / "mountpoints.json"))
    existing = tmp_path / "existing"
    existing.mkdir()
    reg.acquire("p", [(str(existing), True), (str(tmp_path / "made"), True)])
    (tmp_path / "made" / "user-file").write_text("x")
    assert reg.release("p") == []
    assert existing.is_dir() and (tmp_path / "made" / "user-file").exists()
    (tmp_path / "made" / "user-file").unlink()
    reg.acquire("q", [])
    assert reg.release("q") == [str(tmp_path / "made")]  # tried again once empty


# -- refusal and binds -----------------------------------------------------------------------------

def test_an_agent_without_cap_sys_admin_refuses_a_pod_with_volumes() -> None:
    pod = make_pod([{"name": "input", "emptyDir": {}}], [{"name": "input", "mountPath": "/input"}])
    assert refusal(1000, False, pod) == ('volume "input": the agent runs as uid 1000 without CAP_SYS_ADMIN and '
                                         "cannot mount volumes in a private mount namespace")
    assert refusal(0, True, pod) is None
    assert refusal(1000, False, make_pod([])) is None


class FakeClient:
    def __init__(self, objects: dict[tuple[str, str], Any]) -> None:
        self.objects = objects

    async def get(self, kind: str, name: str, namespace: str) -> Any:
        if (kind, name) not in self.objects:
            raise errors.NotFound(f"{kind} {name} not found")
        return self.objects[(kind, name)]


async def test_binds_for_a_containers_mounts(tmp_path: Path) -> None:
    pods_root = tmp_path / "pods"
    pods_root.mkdir()
    host = tmp_path / "host"
    host.mkdir()
    target = tmp_path / "mnt"
    pod = make_pod(
        [{"name": "cfg", "configMap": {"name": "cfg"}}, {"name": "scratch", "emptyDir": {}},
         {"name": "secret", "secret": {"secretName": "s", "optional": True}},
         {"name": "host", "hostPath": {"path": str(host)}}],
        [{"name": "scratch", "mountPath": f"{target}/scratch"}, {"name": "cfg", "mountPath": f"{target}/cfg"},
         {"name": "cfg", "mountPath": f"{target}/scratch/a.conf", "subPath": "a"},
         {"name": "host", "mountPath": f"{target}/host", "readOnly": True}])
    cm = configmap_pb2.ConfigMap(data={"a": "1"}, binary_data={"b": b"\x00"})
    client = FakeClient({(configrefs.CONFIGMAP, "cfg"): cm, (configrefs.SECRET, "s"): secret_pb2.Secret()})
    vols = PodVolumes(str(pods_root), pod, MountPoints(str(tmp_path / "reg.json")))
    if os.geteuid() != 0:
        pytest.skip("a secret's volume is a tmpfs: needs root")
    await vols.prepare(client, pod, {}, None)  # type: ignore[arg-type]
    try:
        root = volumes_dir(str(pods_root), "u1")
        assert (Path(root) / "cfg" / "b").read_bytes() == b"\x00"
        assert stat.S_IMODE(os.stat(f"{root}/scratch").st_mode) == 0o777
        binds = vols.binds(pod.spec.containers[0])
        got = [(b.target, b.source, b.read_only) for b in binds]
        assert got[:3] == [(f"{target}/scratch", f"{root}/scratch", False), (f"{target}/cfg", f"{root}/cfg", True),
                           (f"{target}/host", str(host), True)]
        file_bind = got[3]
        assert file_bind[0] == f"{target}/scratch/a.conf" and file_bind[2]
        st = os.stat(file_bind[1])
        assert binds[3].expect == (st.st_dev, st.st_ino) and binds[0].expect is None
        assert Path(file_bind[1]).read_text() == "1" and Path(file_bind[1]).resolve().is_relative_to(root)
        # Mount points: on the host for the top ones, inside the emptyDir for the one below it.
        assert (target / "scratch").is_dir() and (target / "cfg").is_dir()
        assert (Path(root) / "scratch" / "a.conf").is_file()
        # A symlink a container made in its emptyDir cannot lead a subPath out of the volume.
        os.symlink("/etc", f"{root}/scratch/evil")
        escape = make_pod(pod.spec.volumes and [json_format.MessageToDict(v) for v in pod.spec.volumes],
                          [{"name": "scratch", "mountPath": "/x", "subPath": "evil"}])
        with pytest.raises(VolumeError, match='subPath "evil" of volume "scratch" leads outside the volume'):
            vols.binds(escape.spec.containers[0])
    finally:
        from nodeagent.volumes import setup
        setup.remove(str(pods_root), "u1")
        vols.release()
    assert not Path(volumes_dir(str(pods_root), "u1")).exists()
    assert not target.exists()


@needs_root
async def test_memory_empty_dir_is_a_sized_tmpfs_and_fs_group_owns_the_volumes(tmp_path: Path) -> None:
    pods_root = tmp_path / "pods"
    pods_root.mkdir()
    pod = make_pod([{"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "2Mi"}},
                    {"name": "disk", "emptyDir": {}},
                    {"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 0o400}}],
                   [{"name": "mem", "mountPath": str(tmp_path / "m")}])
    client = FakeClient({(configrefs.CONFIGMAP, "cfg"): configmap_pb2.ConfigMap(data={"a": "1"})})
    vols = PodVolumes(str(pods_root), pod, MountPoints(str(tmp_path / "reg.json")))
    await vols.prepare(client, pod, {}, 4321)  # type: ignore[arg-type]
    root = Path(volumes_dir(str(pods_root), "u1"))
    try:
        mem = root / "mem"
        assert os.path.ismount(mem)
        assert os.statvfs(mem).f_blocks * os.statvfs(mem).f_frsize == 2 * 1024 * 1024
        for d in (mem, root / "disk"):
            st = d.stat()
            assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (4321, 0o777 | stat.S_ISGID)
        st = (root / "cfg" / "a").stat()
        assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (4321, 0o440)
        (root / "disk" / "kept").write_text("x")
        # An agent restarted under the pod finds the same volumes, as they are, for an adopted container.
        again = PodVolumes(str(pods_root), pod, MountPoints(str(tmp_path / "reg.json")))
        again.adopt()
        assert again.binds(pod.spec.containers[0]) == vols.binds(pod.spec.containers[0])
        await again.prepare(client, pod, {}, 4321)  # type: ignore[arg-type]
        assert (root / "disk" / "kept").exists()
    finally:
        from nodeagent.volumes import setup
        setup.remove(str(pods_root), "u1")
        vols.release()
    assert not root.exists() and not os.path.ismount(root / "mem")


async def test_a_missing_configmap_names_the_volume(tmp_path: Path) -> None:
    pod = make_pod([{"name": "cfg", "configMap": {"name": "absent"}}])
    vols = PodVolumes(str(tmp_path), pod, MountPoints(str(tmp_path / "reg.json")))
    with pytest.raises(VolumeError, match=r'^MountVolume\.SetUp failed for volume "cfg" : configmap "absent" not '
                                          r"found$"):
        await vols.prepare(FakeClient({}), pod, {}, None)  # type: ignore[arg-type]
    assert not vols.ready


@needs_root
def test_cleanup_of_a_data_dir_whose_agent_is_gone(tmp_path: Path) -> None:
    """What a test harness (or an operator removing a node's data dir) runs: the tmpfs mounts
    under it detached, the mount points its pods held released."""
    from nodeagent.volumes import setup
    data = tmp_path / "agent"
    (data / "pods" / "u1.volumes" / "mem").mkdir(parents=True)
    setup.mount_tmpfs(str(data / "pods" / "u1.volumes" / "mem"), None, 0o777)
    reg = MountPoints(str(tmp_path / "reg.json"))
    reg.acquire(f"{data}/pods/u1.volumes", [(str(tmp_path / "input"), True)])
    reg.acquire("/elsewhere/pods/u2.volumes", [(str(tmp_path / "other"), True)])
    setup.cleanup_under(str(data), reg)
    assert not os.path.ismount(data / "pods" / "u1.volumes" / "mem")
    assert not (tmp_path / "input").exists() and (tmp_path / "other").is_dir()
