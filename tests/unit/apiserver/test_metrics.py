"""The API server's Prometheus metrics after real requests through a TestAPIServer, read back from
prometheus_client's default REGISTRY under Kubernetes' names and labels (kube-apiserver 1.31):
apiserver_request_total / apiserver_request_duration_seconds per request (verb, dry_run, group,
version, resource, subresource, scope, component, code), apiserver_storage_objects per resource,
etcd_request_duration_seconds per backend write, apiserver_current_inflight_requests.

The registry is the process's, shared with every other test: each check is a difference before
and after the requests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY

from controlplane.apiserver import inflight as inflight_module
from controlplane.apiserver.inflight import MaxInFlight
from controlplane.apiserver.testing import TestAPIServer
from ketch.api import errors, manifest
from ketch.client.clientset import Batch
from tests.conftest import eventually


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def requests(verb: str, resource: str, scope: str, code: str, *, group: str = "", version: str = "v1",
             subresource: str = "", dry_run: str = "") -> float:
    return sample("apiserver_request_total", verb=verb, dry_run=dry_run, group=group, version=version,
                  resource=resource, subresource=subresource, scope=scope, component="apiserver", code=code)


def latencies(verb: str, resource: str, scope: str, *, group: str = "", subresource: str = "") -> float:
    return sample("apiserver_request_duration_seconds_count", verb=verb, dry_run="", group=group, version="v1",
                  resource=resource, subresource=subresource, scope=scope, component="apiserver")


class Delta:
    """Samples read before and after: what the requests in between added."""

    def __init__(self, **reads: Callable[[], float]) -> None:
        self.reads = reads
        self.before = {k: f() for k, f in reads.items()}

    def __call__(self) -> dict[str, float]:
        return {k: f() - self.before[k] for k, f in self.reads.items()}


def configmap(name: str) -> Any:
    return manifest.from_dict({"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": name, "namespace": "default"}, "data": {"a": "1"}})


async def test_each_request_is_counted_and_timed_with_kubernetes_labels() -> None:
    async with TestAPIServer() as api:
        client = api.client
        assert client is not None
        delta = Delta(
            created=lambda: requests("POST", "configmaps", "resource", "201"),
            conflict=lambda: requests("POST", "configmaps", "resource", "409"),
            dry=lambda: requests("POST", "configmaps", "resource", "201", dry_run="All"),
            got=lambda: requests("GET", "configmaps", "resource", "200"),
            missing=lambda: requests("GET", "configmaps", "resource", "404"),
            listed_ns=lambda: requests("LIST", "configmaps", "namespace", "200"),
            listed_all=lambda: requests("LIST", "configmaps", "cluster", "200"),
            patched=lambda: requests("PATCH", "configmaps", "resource", "200"),
            deleted=lambda: requests("DELETE", "configmaps", "resource", "200"),
            job=lambda: requests("POST", "jobs", "resource", "201", group="batch"),
            status=lambda: requests("PUT", "jobs", "resource", "200", group="batch", subresource="status"),
            invalid=lambda: requests("POST", "jobs", "resource", "422", group="batch"),
            post_timed=lambda: latencies("POST", "configmaps", "resource"),
            junk=lambda: requests("PATCH", "configmaps", "resource", "400", subresource="other"),
        )
        await client.create(configmap("one"))
        with pytest.raises(errors.AlreadyExists):
            await client.create(configmap("one"))
        await client.create(configmap("two"), dry_run=True)
        await client.get("ConfigMap", "one", "default")
        with pytest.raises(errors.NotFound):
            await client.get("ConfigMap", "nope", "default")
        await client.list("ConfigMap", "default")
        await client.list("ConfigMap")
        await client.patch("ConfigMap", "one", {"data": {"b": "2"}}, "default")
        with pytest.raises(errors.BadRequest):  # a subresource of the client's invention is no label value
            await client.patch("ConfigMap", "one", {"data": {"b": "3"}}, "default", subresource="junk-1")
        await client.delete("ConfigMap", "one", "default")
        job = await client.create(manifest.from_dict({
            "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "default"},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "c", "command": ["true"]}]}}}}))
        await client.update_status(job)
        with pytest.raises(errors.Invalid):
            await client.create(manifest.from_dict({
                "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "bad", "namespace": "default"},
                "spec": {"template": {"spec": {"restartPolicy": "Always",
                                               "containers": [{"name": "c", "command": ["true"]}]}}}}))
        assert delta() == {"created": 1, "conflict": 1, "dry": 1, "got": 1, "missing": 1, "listed_ns": 1,
                           "listed_all": 1, "patched": 1, "deleted": 1, "job": 1, "status": 1, "invalid": 1,
                           "post_timed": 2, "junk": 1}
        # The duration histogram has kube-apiserver's buckets (5 ms to 60 s).
        bucket = REGISTRY.get_sample_value("apiserver_request_duration_seconds_bucket", {
            "verb": "POST", "dry_run": "", "group": "", "version": "v1", "resource": "configmaps",
            "subresource": "", "scope": "resource", "component": "apiserver", "le": "60.0"})
        assert bucket is not None and bucket >= 2


async def test_a_batch_counts_each_operation_as_its_own_request() -> None:
    async with TestAPIServer() as api:
        client = api.client
        assert client is not None
        delta = Delta(created=lambda: requests("POST", "configmaps", "resource", "201"),
                      conflict=lambda: requests("POST", "configmaps", "resource", "409"),
                      deleted=lambda: requests("DELETE", "configmaps", "resource", "200"))
        await client.create(configmap("taken"))
        outcomes = await client.batch(Batch().create(configmap("a")).create(configmap("taken"))
                                      .delete("ConfigMap", "taken", "default"))
        assert [o.error is None for o in outcomes] == [True, False, True]
        assert delta() == {"created": 2, "conflict": 1, "deleted": 1}


async def test_in_process_requests_are_counted_too() -> None:
    """The controllers' loopback requests take the same chain, as kube-apiserver counts its own."""
    async with TestAPIServer(grpc=False) as api:
        assert api.local is not None
        delta = Delta(created=lambda: requests("POST", "configmaps", "resource", "201"))
        await api.local.create(configmap("local"))
        assert delta() == {"created": 1}


async def test_a_watch_is_counted_when_it_ends() -> None:
    async with TestAPIServer() as api:
        client = api.client
        assert client is not None
        delta = Delta(watched=lambda: requests("WATCH", "configmaps", "namespace", "200"))

        async def watch_one() -> None:
            async for _ in client.watch("ConfigMap", "default"):
                return

        task = asyncio.create_task(watch_one())
        await asyncio.sleep(0)
        assert delta() == {"watched": 0}, "a running watch is not counted yet"
        await client.create(configmap("seen"))
        await asyncio.wait_for(task, 10)
        await eventually(lambda: delta() == {"watched": 1}, what="the ended watch to be counted")


async def test_storage_objects_and_backend_writes() -> None:
    async with TestAPIServer() as api:
        client = api.client
        assert client is not None
        delta = Delta(
            objects=lambda: sample("apiserver_storage_objects", resource="configmaps"),
            jobs=lambda: sample("apiserver_storage_objects", resource="jobs.batch"),
            creates=lambda: sample("etcd_request_duration_seconds_count", operation="create", type="configmaps"),
            updates=lambda: sample("etcd_request_duration_seconds_count", operation="update", type="configmaps"),
            deletes=lambda: sample("etcd_request_duration_seconds_count", operation="delete", type="configmaps"))
        await client.create(configmap("x"))
        await client.create(configmap("y"))
        await client.patch("ConfigMap", "x", {"data": {"b": "2"}}, "default")
        assert delta() == {"objects": 2, "jobs": 0, "creates": 2, "updates": 1, "deletes": 0}
        await client.delete("ConfigMap", "y", "default")
        assert delta() == {"objects": 1, "jobs": 0, "creates": 2, "updates": 1, "deletes": 1}


def test_inflight_reports_the_most_in_flight_over_the_last_second(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(inflight_module.time, "monotonic", lambda: now[0])
    limiter = MaxInFlight()
    with limiter.slot("Create"), limiter.slot("Patch"), limiter.slot("Get"):
        assert limiter.watermarks() == (1, 2)
        # The registry's gauge sums every limiter of the process: this one's part is in it.
        assert sample("apiserver_current_inflight_requests", request_kind="mutating") >= 2
        assert sample("apiserver_current_inflight_requests", request_kind="readOnly") >= 1
    assert limiter.watermarks() == (1, 2), "the peak of this second stays after the requests end"
    now[0] += 1.0
    assert limiter.watermarks() == (1, 2), "and through the next second"
    now[0] += 1.0
    assert limiter.watermarks() == (0, 0)
    with limiter.slot("Delete"):
        now[0] += 1.0
        assert limiter.watermarks() == (0, 1)
