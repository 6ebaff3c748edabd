"""logs and top through the API server's node proxy, with a fake agent side behind it."""

from __future__ import annotations

from collections.abc import AsyncIterator

from controlplane.apiserver.testing import TestAPIServer
from ketch.api import errors, manifest
from ketch.v1 import api_pb2

from .test_cli_nodes_rollout import DS, make_node, make_pod
from .test_cli_support import CLI


class FakeDialer:
    """What agents would answer: fixed log lines per (pod, container) and fixed usage per node."""

    def __init__(self) -> None:
        self.requests: list[api_pb2.PodLogsRequest] = []
        self.logs = {("p", "c"): b"one\ntwo\n", ("multi", "a"): b"from a\n", ("multi", "b"): b"from b\n",
                     ("gone", ""): b"still here\n"}

    async def pod_logs(self, node: str, req: api_pb2.PodLogsRequest) -> AsyncIterator[api_pb2.LogChunk]:
        self.requests.append(req)
        data = self.logs.get((req.name, req.container))
        if data is None:
            raise errors.NotFound(f'pods "{req.name}" not found')
        for line in data.splitlines(keepends=True):
            yield api_pb2.LogChunk(data=line)

    async def node_stats(self, node: str, req: api_pb2.NodeStatsRequest) -> api_pb2.NodeStatsResponse:
        if node == "node-2":
            raise errors.Unavailable("agent not reachable")
        return api_pb2.NodeStatsResponse(
            node=api_pb2.ResourceUsage(name=node, cpu_millicores=500, memory_bytes=1024 * 2**20,
                                       cpu_capacity_millicores=2000, memory_capacity_bytes=4 * 2**30),
            pods=[api_pb2.PodUsage(namespace="default", name="p",
                                   usage=api_pb2.ResourceUsage(cpu_millicores=120, memory_bytes=30 * 2**20),
                                   containers=[api_pb2.ResourceUsage(name="c", cpu_millicores=120,
                                                                     memory_bytes=30 * 2**20)])])

    async def close(self) -> None:
        return None


async def setup(api: TestAPIServer) -> FakeDialer:
    await api.proxy.dialer.close()
    dialer = FakeDialer()
    api.proxy.dialer = dialer  # type: ignore[assignment]
    await make_node(api.client, "node-1")
    await make_node(api.client, "node-2")
    await make_pod(api.client, "p", "node-1")
    return dialer


async def test_logs_of_a_pod_and_flags_passed_through(api: TestAPIServer) -> None:
    dialer = await setup(api)
    cli = CLI(api.client)
    r = await cli("logs", "p")
    assert (r.code, r.out) == (0, "one\ntwo\n")
    r = await cli("logs", "pod/p", "-c", "c", "--tail", "5", "--since", "10s", "--timestamps", "--prefix")
    assert r.out == "[pod/p/c] one\n[pod/p/c] two\n"
    req = dialer.requests[-1]
    assert (req.tail_lines, req.since_seconds, req.timestamps, req.follow) == (5, 10, True, False)
    r = await cli("logs", "p", "-c", "nope")
    assert (r.code, r.err) == (1, "error: container nope is not valid for pod p\n")


async def test_logs_default_container_and_owners(api: TestAPIServer) -> None:
    await setup(api)
    cli = CLI(api.client)
    await api.client.create(manifest.from_dict({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "multi", "namespace": "default"},
        "spec": {"nodeName": "node-1",
                 "containers": [{"name": "a", "command": ["x"]}, {"name": "b", "command": ["x"]}]}}))
    r = await cli("logs", "multi")
    assert (r.out, r.err) == ("from a\n", 'Defaulted container "a" out of: a, b\n')
    r = await cli("logs", "multi", "--all-containers")
    assert r.out == "from a\nfrom b\n"
    r = await cli("logs", "gone")  # the pod object is gone; its node still has the logs
    assert (r.code, r.out) == (0, "still here\n")


async def test_logs_of_a_job_picks_its_running_pod(api: TestAPIServer) -> None:
    dialer = await setup(api)
    cli = CLI(api.client)
    job = await api.client.create(manifest.from_dict({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "default"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "command": ["x"]}],
                                       "restartPolicy": "Never"}}}}))
    sel = dict(job.spec.selector.match_labels)
    for name, phase in (("jp-pending", "Pending"), ("p2", "Running")):
        pod = await make_pod(api.client, name, "node-1", owner=job, phase=phase)
        pod.metadata.labels.update(sel)
        await api.client.update(pod)
    dialer.logs[("p2", "c")] = b"job output\n"
    r = await cli("logs", "job/j")
    assert (r.code, r.out) == (0, "job output\n")
    assert r.err == "Found 2 pods, using pod/p2\n"  # kubectl's words, on stderr only
    r = await cli("logs", "jobs.batch/j", "--tail", "1", "-n", "default")  # flags after TYPE/NAME too
    assert (r.code, r.out, r.err) == (0, "job output\n", "Found 2 pods, using pod/p2\n")
    one = await api.client.create(manifest.from_dict({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "one", "namespace": "default"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "command": ["x"]}],
                                       "restartPolicy": "Never"}}}}))
    pod = await make_pod(api.client, "only", "node-1", owner=one, phase="Running")
    pod.metadata.labels.update(one.spec.selector.match_labels)
    await api.client.update(pod)
    dialer.logs[("only", "c")] = b"alone\n"
    r = await cli("logs", "job/one")  # one pod: nothing to say
    assert (r.code, r.out, r.err) == (0, "alone\n", "")
    r = await cli("logs", "job/none")
    assert (r.code, r.err) == (1, 'Error from server (NotFound): jobs.batch "none" not found\n')


async def test_top_nodes_and_pods(api: TestAPIServer) -> None:
    await setup(api)
    cli = CLI(api.client)
    r = await cli("top", "nodes")
    assert r.out.splitlines() == [
        "NAME     CPU(cores)   CPU%        MEMORY(bytes)   MEMORY%",
        "node-1   500m         25%         1024Mi          25%",
        "node-2   <unknown>    <unknown>   <unknown>       <unknown>",
    ]
    r = await cli("top", "pods")
    assert r.out.splitlines() == ["NAME   CPU(cores)   MEMORY(bytes)", "p      120m         30Mi"]
    r = await cli("top", "pod", "p", "--containers")
    assert r.out.splitlines()[1].split() == ["p", "c", "120m", "30Mi"]




async def test_logs_of_a_daemonset_says_which_pod(api: TestAPIServer) -> None:
    dialer = await setup(api)
    cli = CLI(api.client)
    assert (await cli("apply", "-f", "-", stdin=DS)).code == 0
    ds = await api.client.get("DaemonSet", "agentd", "default")
    for name, node in (("agentd-a", "node-1"), ("agentd-b", "node-2")):
        pod = await make_pod(api.client, name, node, owner=ds)
        pod.metadata.labels.clear()
        pod.metadata.labels.update(ds.spec.selector.match_labels)
        await api.client.update(pod)
        dialer.logs[(name, "c")] = f"from {name}\n".encode()
    for target in ("ds/agentd", "daemonset/agentd", "daemonsets.apps/agentd"):
        r = await cli("logs", target)
        assert (r.code, r.out, r.err) == (0, "from agentd-a\n", "Found 2 pods, using pod/agentd-a\n"), target


async def test_logs_by_selector_show_the_last_ten_lines_unless_told(api: TestAPIServer) -> None:
    # kubectl logs: --tail defaults to -1 (all), but to 10 with a selector; an explicit --tail wins.
    dialer = await setup(api)
    cli = CLI(api.client)
    assert (await cli("logs", "-l", "app=x")).out == "one\ntwo\n"
    assert dialer.requests[-1].tail_lines == 10
    await cli("logs", "-l", "app=x", "--tail=-1")
    assert not dialer.requests[-1].HasField("tail_lines")
    await cli("logs", "-l", "app=x", "--tail", "3")
    assert dialer.requests[-1].tail_lines == 3
    await cli("logs", "p")
    assert not dialer.requests[-1].HasField("tail_lines")
    r = await cli("logs", "p", "--tail=-2")
    assert (r.code, r.err) == (1, "error: --tail must be greater than or equal to -1\n")
