"""--quota-backend-bytes: past it, writes are refused with etcd's "database space exceeded" (a 500,
as kube-apiserver returns it), deletions still go through, and freeing space lets writes in again."""

from __future__ import annotations

import asyncio

from ketch.api import errors
from ketch.v1 import core_pb2

from .harness import Cluster, admin_client

QUOTA = 256 * 1024


def _pod(name: str) -> core_pb2.Pod:
    pod = core_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace = name, "default"
    pod.metadata.annotations["filler"] = "x" * 4000
    pod.spec.containers.add(name="c", command=["true"])
    return pod


async def _fill_to_quota(server: str) -> tuple[list[str], errors.StatusError]:
    client = admin_client(server)
    made: list[str] = []
    try:
        for i in range(1000):
            try:
                await client.create(_pod(f"p-{i}"))
            except errors.StatusError as err:
                return made, err
            made.append(f"p-{i}")
        raise AssertionError("the quota never refused a write")
    finally:
        await client.close()


async def _free_and_write(server: str, names: list[str]) -> None:
    client = admin_client(server)
    try:
        for name in names:
            await client.delete("Pod", name, "default")  # deletions go through past the quota
        await client.create(_pod("after"))
    finally:
        await client.close()


def test_quota_refuses_writes_but_not_deletions(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    c: Cluster = cluster_factory(["--controllers", "none", "--quota-backend-bytes", str(QUOTA)])
    c.start_controlplane()
    made, refused = asyncio.run(_fill_to_quota(c.server))
    assert len(made) > 10
    assert isinstance(refused, errors.InternalError), refused
    assert refused.message.startswith("etcdserver: mvcc: database space exceeded"), refused.message

    # The CLI shows it as kubectl shows a 500 from kube-apiserver.
    manifest = ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: one-more\n  annotations:\n"
                f"    filler: {'x' * 4000}\nspec:\n  containers:\n  - name: c\n    command: [\"true\"]\n")
    result = c.ketch("apply", "-f", "-", check=False, input=manifest)
    assert result.returncode != 0
    assert "Error from server (InternalError)" in result.stderr
    assert "etcdserver: mvcc: database space exceeded" in result.stderr
    assert c.ketch("get", "pods").returncode == 0  # reads go on

    asyncio.run(_free_and_write(c.server, made[: len(made) // 2]))
    assert c.get("pod", "after")["metadata"]["name"] == "after"
