"""apply, create, get, delete, patch, label and error lines, run in-process against a real API server."""

from __future__ import annotations

import asyncio
import io
import json

from controlplane.apiserver.testing import TestAPIServer
from ketch.api import errors
from ketch.cli.factory import Factory
from ketch.cli.main import execute

from ..conftest import eventually
from .test_cli_support import CLI

PI = """
apiVersion: batch/v1
kind: Job
metadata:
  name: pi
spec:
  completions: 8
  parallelism: 2
  template:
    spec:
      containers:
      - name: pi
        image: perl
        command: ["perl", "-Mbignum=bpi", "-wle", "print bpi(200)"]
      restartPolicy: Never
"""

BAD = """
apiVersion: batch/v1
kind: Job
metadata:
  name: bad
spec:
  parallelism: -1
  template:
    spec:
      containers:
      - name: c
        command: ["true"]
      restartPolicy: Always
"""

NS = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n"


async def test_apply_creates_then_is_unchanged_then_configures(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    r = await cli("apply", "-f", "-", stdin=PI)
    assert (r.code, r.out) == (0, "job.batch/pi created\n")
    r = await cli("apply", "-f", "-", stdin=PI)
    assert (r.code, r.out) == (0, "job.batch/pi unchanged\n")
    r = await cli("apply", "-f", "-", stdin=PI.replace("parallelism: 2", "parallelism: 4"))
    assert (r.code, r.out) == (0, "job.batch/pi configured\n")
    job = await api.client.get("Job", "pi", "default")
    assert job.spec.parallelism == 4
    assert job.spec.backoff_limit == 6  # server defaults survive an apply


async def test_apply_removes_a_field_dropped_from_the_manifest(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    with_ttl = PI.replace("  parallelism: 2\n", "  parallelism: 2\n  ttlSecondsAfterFinished: 100\n")
    assert (await cli("apply", "-f", "-", stdin=with_ttl)).code == 0
    assert (await api.client.get("Job", "pi", "default")).spec.ttl_seconds_after_finished == 100
    r = await cli("apply", "-f", "-", stdin=PI)
    assert r.out == "job.batch/pi configured\n"
    assert not (await api.client.get("Job", "pi", "default")).spec.HasField("ttl_seconds_after_finished")


async def test_apply_reports_each_bad_object_and_applies_the_rest(api: TestAPIServer) -> None:
    r = await CLI(api.client)("apply", "-f", "-", stdin=NS + "---\n" + BAD + "---\n" + PI)
    assert r.code == 1
    assert r.out == "namespace/team-a created\njob.batch/pi created\n"
    lines = r.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith('The Job "bad" is invalid: ')
    assert "spec.parallelism" in lines[0] and "restartPolicy" in lines[0]
    try:
        await api.client.get("Job", "bad", "default")
        raise AssertionError("the invalid Job was stored")
    except errors.NotFound:
        pass


async def test_apply_strict_decoding_error_names_the_source(api: TestAPIServer) -> None:
    r = await CLI(api.client)("apply", "-f", "-", stdin=PI.replace("completions: 8", "completionz: 8"))
    assert r.code == 1
    assert r.err.startswith('Error from server (BadRequest): error when creating "STDIN": ')
    assert "spec.completionz" in r.err


async def test_apply_refuses_a_namespace_other_than_the_flag(api: TestAPIServer) -> None:
    doc = PI.replace("  name: pi\n", "  name: pi\n  namespace: kube-system\n")
    r = await CLI(api.client)("-n", "default", "apply", "-f", "-", stdin=doc)
    assert r.code == 1
    assert "does not match the namespace" in r.err


async def test_get_tables_names_and_json(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    await cli("apply", "-f", "-", stdin=PI)
    r = await cli("get", "jobs")
    assert r.out.splitlines()[0].split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert r.out.splitlines()[1].split()[:3] == ["pi", "Running", "0/8"]
    for alias in ("job", "jobs.batch", "job/pi"):
        assert (await cli("get", alias, *([] if "/" in alias else ["pi"]), "-o", "name")).out == "job.batch/pi\n"
    doc = json.loads((await cli("get", "jobs", "-o", "json")).out)
    assert doc["kind"] == "List" and doc["apiVersion"] == "v1"
    assert [i["metadata"]["name"] for i in doc["items"]] == ["pi"]
    single = json.loads((await cli("get", "job", "pi", "-o", "json")).out)
    assert single["kind"] == "Job" and single["spec"]["backoffLimit"] == 6
    r = await cli("get", "job", "pi", "-o", "jsonpath={.spec.completions}")
    assert r.out == "8"
    r = await cli("get", "jobs", "-A", "-o", "wide")
    assert r.out.split()[:2] == ["NAMESPACE", "NAME"]


async def test_get_errors_and_empty_lists(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    r = await cli("get", "job", "nope")
    assert (r.code, r.out, r.err) == (1, "", 'Error from server (NotFound): jobs.batch "nope" not found\n')
    r = await cli("get", "pods")
    assert (r.code, r.err) == (0, "No resources found in default namespace.\n")
    r = await cli("get", "nodes")
    assert (r.code, r.err) == (0, "No resources found\n")
    r = await cli("get", "pods", "-A")
    assert r.err == "No resources found\n"
    r = await cli("get", "widgets")
    assert (r.code, r.err) == (1, 'error: the server doesn\'t have a resource type "widgets"\n')
    r = await cli("get", "pods", "--bogus")
    assert r.code == 1 and r.err.count("\n") == 1 and r.err.startswith("error: unrecognized arguments: --bogus")
    r = await cli("get", "pods", "-o", "toml")
    assert r.code == 1 and 'output format "toml"' in r.err


async def test_namespace_flag_before_or_after_the_verb(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    await cli("apply", "-f", "-", stdin=NS)
    await cli("apply", "-n", "team-a", "-f", "-", stdin=PI)
    assert "pi" in (await cli("-n", "team-a", "get", "jobs")).out
    assert "pi" in (await cli("get", "jobs", "-n", "team-a")).out
    assert (await cli("get", "jobs")).err == "No resources found in default namespace.\n"


async def test_delete_prints_kubectl_lines(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    await cli("apply", "-f", "-", stdin=PI)
    r = await cli("delete", "job", "pi", "nope")
    assert r.code == 1
    assert r.out == 'job.batch "pi" deleted\n'
    assert r.err == 'Error from server (NotFound): jobs.batch "nope" not found\n'
    r = await cli("delete", "job", "nope", "--ignore-not-found")
    assert (r.code, r.out, r.err) == (0, "", "")
    r = await cli("delete", "jobs")
    assert r.code == 1 and "no name was specified" in r.err


HELD = PI.replace("  name: pi\n", "  name: pi\n  finalizers: [test/hold]\n")


async def test_delete_wait_follows_the_object_until_it_is_gone(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    await cli("apply", "-f", "-", stdin=HELD)
    waiting = asyncio.ensure_future(cli("delete", "job", "pi", "--wait", "--timeout", "20s"))

    async def deleting() -> bool:
        job = await api.client.get("Job", "pi", "default")
        return bool(job.metadata.deletion_timestamp)

    await eventually(deleting, what="the job to be marked for deletion")
    assert not waiting.done()
    await api.client.patch("Job", "pi", {"metadata": {"finalizers": None}}, namespace="default",
                           patch_type="merge")
    r = await asyncio.wait_for(waiting, 20)
    assert (r.code, r.out, r.err) == (0, 'job.batch "pi" deleted\n', "")


async def test_delete_wait_times_out(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    await cli("apply", "-f", "-", stdin=HELD)
    r = await cli("delete", "job", "pi", "--wait", "--timeout", "500ms")
    assert r.code == 1
    assert r.err == "error: timed out waiting for the condition on job.batch/pi\n"


async def test_patch_and_status_subresource(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    await cli("apply", "-f", "-", stdin=PI)
    r = await cli("patch", "job", "pi", "-p", '{"spec":{"suspend":true}}')
    assert (r.code, r.out) == (0, "job.batch/pi patched\n")
    r = await cli("patch", "job", "pi", "-p", '{"spec":{"suspend":true}}')
    assert r.out == "job.batch/pi patched (no change)\n"
    r = await cli("patch", "job", "pi", "--subresource", "status", "--type", "merge",
                  "-p", '{"status":{"succeeded":3}}')
    assert r.code == 0
    assert (await api.client.get("Job", "pi", "default")).status.succeeded == 3
    r = await cli("patch", "job", "pi", "-p", "{not json")
    assert r.code == 1 and r.err.startswith('error: unable to parse "{not json"')


async def test_label_and_annotate(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    await cli("apply", "-f", "-", stdin=NS)
    assert (await cli("label", "ns", "team-a", "tier=gold")).out == "namespace/team-a labeled\n"
    r = await cli("label", "ns", "team-a", "tier=silver")
    assert r.code == 1 and "already has a value (gold), and --overwrite is false" in r.err
    assert (await cli("label", "ns", "team-a", "tier=silver", "--overwrite")).code == 0
    assert (await cli("annotate", "ns", "team-a", "note=hi")).out == "namespace/team-a annotated\n"
    assert (await cli("label", "ns", "team-a", "tier-")).code == 0
    ns = await api.client.get("Namespace", "team-a")
    assert "tier" not in ns.metadata.labels and ns.metadata.annotations["note"] == "hi"
    r = await cli("get", "ns", "team-a", "--show-labels")
    assert r.out.splitlines()[0].split()[-1] == "LABELS"


async def test_create_and_create_namespace(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    assert (await cli("create", "namespace", "made")).out == "namespace/made created\n"
    assert (await cli("create", "-f", "-", stdin=PI)).out == "job.batch/pi created\n"
    r = await cli("create", "-f", "-", stdin=PI)
    assert r.code == 1
    assert r.err == ('Error from server (AlreadyExists): error when creating "STDIN": '
                     'jobs.batch "pi" already exists\n')


async def test_unreachable_server_is_one_line() -> None:
    err = io.StringIO()
    factory = Factory(server="127.0.0.1:1", err=err, out=io.StringIO())
    code = await execute(["get", "pods"], factory)
    assert code == 1
    assert err.getvalue() == ("The connection to the server 127.0.0.1:1 was refused - did you specify the right "
                              "host or port?\n")


async def test_get_watch_prints_the_list_then_changes(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    await cli("apply", "-f", "-", stdin=NS)
    out = io.StringIO()
    factory = Factory.with_client(api.client, out=out, err=io.StringIO())
    task = asyncio.ensure_future(execute(["get", "ns", "team-a", "-w"], factory))
    await eventually(lambda: "team-a" in out.getvalue(), what="the first row")
    await api.client.patch("Namespace", "team-a", {"metadata": {"labels": {"x": "y"}}}, patch_type="merge")
    await eventually(lambda: out.getvalue().count("team-a") == 2, what="a row for the change")
    task.cancel()
    assert await task == 130
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "AGE"] and len(lines) == 3


async def test_delete_waits_by_default_and_not_with_wait_false(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    await cli("apply", "-f", "-", stdin=HELD)
    r = await cli("delete", "--wait=false", "job", "pi")
    assert (r.code, r.out) == (0, 'job.batch "pi" deleted\n')
    assert (await api.client.get("Job", "pi", "default")).metadata.deletion_timestamp
    r = await cli("delete", "job", "pi", "--timeout=300ms")  # waits by default, as kubectl
    assert (r.code, r.err) == (1, "error: timed out waiting for the condition on job.batch/pi\n")
    r = await cli("delete", "job", "pi", "--wait=maybe")
    assert r.code == 1 and 'invalid argument "maybe" for "--wait" flag' in r.err
