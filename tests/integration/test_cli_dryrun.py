"""`--dry-run=client|server` on apply, create, delete and patch, as kubectl 1.31: client sends no
write (create needs no server at all), server has the server decide the write and store nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from controlplane.apiserver.testing import TestAPIServer
from ketch.local.launcher import wait_or_kill
from ketch.testing.deadends import closed_port

from .test_cli_apply_get import BAD, PI
from .test_cli_support import CLI


def ketch_offline(*args: str, stdin: str = "") -> tuple[int, str, str]:
    """The CLI as its own process, its server a closed port: it must not need one."""
    proc = subprocess.Popen([str(Path(sys.executable).parent / "ketch"), *args, "--server", closed_port()],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(stdin.encode(), timeout=120)
    finally:
        wait_or_kill(proc, 5)
    return proc.returncode, out.decode(), err.decode()


def test_client_dry_run_create_needs_no_server() -> None:
    assert ketch_offline("create", "-f", "-", "--dry-run=client", stdin=PI) == (
        0, "job.batch/pi created (dry run)\n", "")
    code, out, err = ketch_offline("create", "-f", "-", "--dry-run=client", "-o", "yaml", stdin=PI)
    assert (code, err) == (0, "")
    assert "kind: Job\n" in out and "  name: pi\n" in out and "parallelism: 2" in out
    assert "resourceVersion" not in out and "uid" not in out  # nothing came from a server
    assert ketch_offline("create", "namespace", "team-a", "--dry-run=client") == (
        0, "namespace/team-a created (dry run)\n", "")
    assert ketch_offline("delete", "job", "pi", "--dry-run=client") == (0, 'job.batch "pi" deleted (dry run)\n', "")


def test_bare_and_boolean_dry_run_warn_as_kubectl_and_a_bad_value_is_refused() -> None:
    assert ketch_offline("create", "--dry-run", "-f", "-", stdin=PI) == (
        0, "job.batch/pi created (dry run)\n",
        "Warning: --dry-run is deprecated and can be replaced with --dry-run=client.\n")
    code, out, err = ketch_offline("create", "-f", "-", "--dry-run=true", stdin=PI)
    assert (code, out) == (0, "job.batch/pi created (dry run)\n")
    assert "--dry-run=true is deprecated (boolean value) and can be replaced with --dry-run=client." in err
    code, out, err = ketch_offline("create", "-f", "-", "--dry-run=maybe", stdin=PI)
    assert code != 0 and out == ""
    assert err.startswith('error: Invalid dry-run value (maybe). Must be "none", "server", or "client".')


async def test_server_dry_run_create_apply_patch_delete_store_nothing(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    store = api.service.store
    before = store.revision
    r = await cli("create", "-f", "-", "--dry-run=server", stdin=PI)
    assert (r.code, r.out, r.err) == (0, "job.batch/pi created (server dry run)\n", "")
    r = await cli("apply", "-f", "-", "--dry-run=server", "-o", "yaml", stdin=PI)
    assert r.code == 0 and "uid: " in r.out and "completionMode: NonIndexed" in r.out  # the server's defaults
    r = await cli("create", "-f", "-", "--dry-run=server", stdin=BAD)
    real = await cli("create", "-f", "-", stdin=BAD)
    assert (r.code, r.out, r.err) == (real.code, "", real.err) and real.code == 1
    assert "spec.parallelism" in r.err
    assert store.revision == before
    assert (await api.client.list("Job", "default"))[0] == []

    await cli("apply", "-f", "-", stdin=PI)
    stored = await api.client.get("Job", "pi", "default")
    before = store.revision
    r = await cli("apply", "-f", "-", "--dry-run=server", stdin=PI.replace("parallelism: 2", "parallelism: 4"))
    assert (r.code, r.out) == (0, "job.batch/pi configured (server dry run)\n")
    r = await cli("apply", "-f", "-", "--dry-run=server", stdin=PI)
    assert (r.code, r.out) == (0, "job.batch/pi unchanged (server dry run)\n")
    r = await cli("patch", "job", "pi", "-p", '{"spec":{"parallelism":3}}', "--dry-run=server", "-o", "json")
    assert r.code == 0 and '"parallelism": 3' in r.out
    r = await cli("delete", "job", "pi", "--dry-run=server")
    assert (r.code, r.out) == (0, 'job.batch "pi" deleted (server dry run)\n')
    r = await cli("delete", "job", "nope", "--dry-run=server")
    assert r.code == 1 and 'jobs.batch "nope" not found' in r.err
    assert store.revision == before
    assert await api.client.get("Job", "pi", "default") == stored


async def test_client_dry_run_apply_and_patch_read_but_write_nothing(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    await cli("apply", "-f", "-", stdin=PI)
    stored = await api.client.get("Job", "pi", "default")
    before = api.service.store.revision
    r = await cli("apply", "-f", "-", "--dry-run=client", "-o", "yaml",
                  stdin=PI.replace("parallelism: 2", "parallelism: 4"))
    assert r.code == 0 and "parallelism: 4" in r.out
    r = await cli("apply", "-f", "-", "--dry-run=client", stdin=PI.replace("parallelism: 2", "parallelism: 4"))
    assert (r.code, r.out) == (0, "job.batch/pi configured (dry run)\n")
    r = await cli("patch", "job", "pi", "-p", '{"spec":{"parallelism":3}}', "--dry-run=client")
    assert (r.code, r.out) == (0, "job.batch/pi patched (dry run)\n")
    assert api.service.store.revision == before
    assert await api.client.get("Job", "pi", "default") == stored
