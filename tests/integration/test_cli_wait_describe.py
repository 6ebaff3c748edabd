"""wait (by watch), describe with events, and get events, against a real API server."""

from __future__ import annotations

import asyncio

from controlplane.apiserver.testing import TestAPIServer
from ketch.api import manifest, timeutil

from .test_cli_apply_get import PI
from .test_cli_support import CLI


async def _complete_later(api: TestAPIServer, delay: float) -> None:
    await asyncio.sleep(delay)
    await api.client.patch("Job", "pi", {"status": {"conditions": [
        {"type": "Complete", "status": "True", "lastTransitionTime": timeutil.now()}]}},
        namespace="default", patch_type="merge", subresource="status")


async def test_wait_for_condition_follows_the_object(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    await cli("apply", "-f", "-", stdin=PI)
    done = asyncio.ensure_future(_complete_later(api, 0.3))
    r = await cli("wait", "--for=condition=Complete", "job/pi", "--timeout", "20s")
    await done
    assert (r.code, r.out, r.err) == (0, "job.batch/pi condition met\n", "")
    # Already met: returns at once; the value may be given, in any case.
    r = await cli("wait", "--for=condition=complete=TRUE", "jobs", "pi", "--timeout=5s")
    assert r.out == "job.batch/pi condition met\n"


async def test_wait_times_out_with_kubectls_message(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    await cli("apply", "-f", "-", stdin=PI)
    r = await cli("wait", "--for=condition=Complete", "job/pi", "--timeout", "300ms")
    assert (r.code, r.err) == (1, "error: timed out waiting for the condition on jobs/pi\n")


async def test_wait_for_delete_and_jsonpath(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    await cli("apply", "-f", "-", stdin=PI)

    async def delete_later() -> None:
        await asyncio.sleep(0.3)
        await api.client.delete("Job", "pi", "default", propagation_policy="Background")

    r = await cli("wait", "--for=jsonpath={.spec.completions}=8", "job/pi", "--timeout", "5s")
    assert r.out == "job.batch/pi condition met\n"
    task = asyncio.ensure_future(delete_later())
    r = await cli("wait", "--for=delete", "job/pi", "--timeout", "20s")
    await task
    assert (r.code, r.out) == (0, "job.batch/pi condition met\n")
    r = await cli("wait", "--for=condition=Complete", "job/pi", "--timeout", "1s")
    assert (r.code, r.err) == (1, 'Error from server (NotFound): jobs.batch "pi" not found\n')
    r = await cli("wait", "--for=delete", "job/pi")
    assert r.code == 0  # nothing to wait for


async def test_describe_job_ends_with_its_events_in_time_order(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    await cli("apply", "-f", "-", stdin=PI)
    job = await api.client.get("Job", "pi", "default")
    now = timeutil.parse(timeutil.now())
    for i, (reason, age) in enumerate((("Completed", 1), ("SuccessfulCreate", 30))):
        await api.client.create(manifest.from_dict({
            "apiVersion": "v1", "kind": "Event", "metadata": {"name": f"pi.{i}", "namespace": "default"},
            "involvedObject": {"kind": "Job", "name": "pi", "namespace": "default", "uid": job.metadata.uid,
                               "apiVersion": "batch/v1"},
            "reason": reason, "message": f"{reason} message", "type": "Normal",
            "source": {"component": "job-controller"}, "count": 1,
            "firstTimestamp": timeutil.format(now - age), "lastTimestamp": timeutil.format(now - age)}))
    r = await cli("describe", "job", "pi")
    assert r.code == 0
    lines = r.out.splitlines()
    assert lines[0].split() == ["Name:", "pi"]
    assert "Pods Statuses:" in r.out and "Pod Template:" in r.out
    events = lines[lines.index("Events:") + 1:]
    assert events[0].split() == ["Type", "Reason", "Age", "From", "Message"]
    assert [e.split()[1] for e in events[2:]] == ["SuccessfulCreate", "Completed"]
    r = await cli("get", "events")
    assert r.out.splitlines()[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert [line.split()[2] for line in r.out.splitlines()[1:]] == ["SuccessfulCreate", "Completed"]
    r = await cli("events", "--for", "job/pi", "--types", "Normal")
    assert len(r.out.splitlines()) == 3
    r = await cli("describe", "job", "nope")
    assert (r.code, r.err) == (1, 'Error from server (NotFound): jobs.batch "nope" not found\n')


async def test_describe_namespace_and_generic_kinds(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    r = await cli("describe", "ns", "default")
    assert r.out.startswith("Name:         default\n") and "Status:       Active" in r.out
    r = await cli("describe", "leases", "-n", "kube-node-lease")
    assert r.code == 0


async def test_wait_on_many_objects_by_selector_uses_one_watch(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    for name in ("a", "b"):
        doc = PI.replace("  name: pi\n", f"  name: {name}\n  labels: {{batch: nightly}}\n")
        assert (await cli("apply", "-f", "-", stdin=doc)).code == 0

    async def complete(name: str) -> None:
        await api.client.patch("Job", name, {"status": {"conditions": [
            {"type": "Complete", "status": "True", "lastTransitionTime": timeutil.now()}]}},
            namespace="default", patch_type="merge", subresource="status")

    await complete("b")
    waiting = asyncio.ensure_future(cli("wait", "--for=condition=Complete", "jobs", "-l", "batch=nightly",
                                        "--timeout", "20s"))
    await complete("a")
    r = await asyncio.wait_for(waiting, 20)
    assert r.code == 0
    assert sorted(r.out.splitlines()) == ["job.batch/a condition met", "job.batch/b condition met"]
    r = await cli("wait", "--for=condition=Failed", "jobs", "--all", "--timeout", "300ms")
    assert r.code == 1
    assert r.err == ("error: timed out waiting for the condition on jobs/a\n"
                     "error: timed out waiting for the condition on jobs/b\n")
