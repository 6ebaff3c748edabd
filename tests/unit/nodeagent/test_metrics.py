"""The agent's Prometheus metrics under the kubelet's names (1.31), read from prometheus_client's
default REGISTRY after a real agent in this process starts a real pod: kubelet_running_pods,
kubelet_running_containers{container_state}, kubelet_pod_start_duration_seconds (first sight to
running) and kubelet_pod_worker_duration_seconds{operation_type}.

The registry is the process's: each check is a difference before and after."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import REGISTRY

from controlplane.apiserver.testing import TestAPIServer
from ketch.api import errors, manifest
from nodeagent.agent import Agent, AgentConfig
from tests.conftest import eventually


def sample(metric: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(metric, labels) or 0.0


async def test_an_agent_reports_its_running_pods_and_their_start(tmp_path: Path) -> None:
    async with TestAPIServer(insecure=True) as api:
        admin = api.local
        assert admin is not None
        cfg = AgentConfig(server=api.address, node_name="m1", data_dir=tmp_path / "m1", heartbeat_interval=0.5,
                          use_cgroups=False)
        agent = Agent(cfg)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        pods0 = sample("kubelet_running_pods")
        running0 = sample("kubelet_running_containers", container_state="running")
        exited0 = sample("kubelet_running_containers", container_state="exited")
        started0 = sample("kubelet_pod_start_duration_seconds_count")
        create0 = sample("kubelet_pod_worker_duration_seconds_count", operation_type="create")
        try:
            await admin.create(manifest.from_dict({
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "two", "namespace": "default"},
                "spec": {"nodeName": "m1", "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                         "containers": [{"name": "sleeper", "command": ["sleep", "60"]},
                                        {"name": "quick", "command": ["true"]}]}}))

            def one_running_one_exited() -> bool:
                return (sample("kubelet_running_containers", container_state="running") - running0 == 1
                        and sample("kubelet_running_containers", container_state="exited") - exited0 == 1)

            await eventually(one_running_one_exited, timeout=20, what="one container running and one exited")
            assert sample("kubelet_running_pods") - pods0 == 1
            assert sample("kubelet_pod_start_duration_seconds_count") - started0 == 1
            assert sample("kubelet_pod_worker_duration_seconds_count", operation_type="create") - create0 == 1
            # The kubelet's pod start buckets: 0.5 s up to an hour.
            assert REGISTRY.get_sample_value("kubelet_pod_start_duration_seconds_bucket", {"le": "3600.0"}) is not None

            await admin.delete("Pod", "two", "default")

            async def gone() -> bool:
                try:
                    await admin.get("Pod", "two", "default")
                except errors.NotFound:
                    return True
                return False

            await eventually(gone, timeout=20, what="the pod to be deleted")
            await eventually(lambda: sample("kubelet_running_pods") == pods0, timeout=20, what="no running pod")
            assert sample("kubelet_running_containers", container_state="running") == running0
            assert sample("kubelet_pod_start_duration_seconds_count") - started0 == 1, "measured once per pod"
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
