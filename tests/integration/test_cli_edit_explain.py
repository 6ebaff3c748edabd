"""edit, explain and diff -f, run in-process against a real API server."""

from __future__ import annotations

from pathlib import Path

from controlplane.apiserver.testing import TestAPIServer

from .test_cli_support import CLI

PI = """
apiVersion: batch/v1
kind: Job
metadata:
  name: pi
spec:
  parallelism: 2
  template:
    spec:
      containers:
      - name: pi
        image: perl
        command: ["perl", "-e", "print 1"]
      restartPolicy: Never
"""


# -- diff -f ----------------------------------------------------------------------------------------


async def test_diff_shows_what_apply_would_change_and_exits_1(api: TestAPIServer, tmp_path: Path) -> None:
    cli = CLI(api.client)
    assert (await cli("apply", "-f", "-", stdin=PI)).code == 0
    f = tmp_path / "pi.yaml"
    f.write_text(PI.replace("parallelism: 2", "parallelism: 4"))
    r = await cli("diff", "-f", str(f))
    assert r.code == 1, r.err
    lines = r.out.splitlines()
    assert lines[0] == "diff -u -N LIVE/batch.v1.Job.default.pi MERGED/batch.v1.Job.default.pi"
    assert "-  parallelism: 2" in lines and "+  parallelism: 4" in lines
    # Only the changed field (and apply's own annotation) differ: server defaults stay on both sides.
    changed = [x for x in lines[3:] if x[:1] in "+-" and "last-applied-configuration" not in x]
    assert changed == ["-  parallelism: 2", "+  parallelism: 4"]
    job = await api.client.get("Job", "pi", "default")
    assert job.spec.parallelism == 2  # diff changes nothing


async def test_diff_of_an_applied_manifest_is_empty_and_exits_0(api: TestAPIServer, tmp_path: Path) -> None:
    cli = CLI(api.client)
    assert (await cli("apply", "-f", "-", stdin=PI)).code == 0
    r = await cli("diff", "-f", "-", stdin=PI)
    assert (r.code, r.out, r.err) == (0, "", "")


async def test_diff_of_a_new_object_is_all_additions(api: TestAPIServer) -> None:
    r = await CLI(api.client)("diff", "-f", "-", stdin=PI)
    assert r.code == 1
    body = r.out.splitlines()[4:]
    assert body and all(x.startswith("+") for x in body)
    assert "+  name: pi" in body


async def test_diff_removing_a_field_shows_it_removed(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    with_ttl = PI.replace("  parallelism: 2\n", "  parallelism: 2\n  ttlSecondsAfterFinished: 100\n")
    assert (await cli("apply", "-f", "-", stdin=with_ttl)).code == 0
    r = await cli("diff", "-f", "-", stdin=PI)
    assert r.code == 1
    assert "-  ttlSecondsAfterFinished: 100" in r.out.splitlines()


async def test_diff_errors_exit_above_1(api: TestAPIServer, tmp_path: Path) -> None:
    cli = CLI(api.client)
    r = await cli("diff", "-f", str(tmp_path / "nope.yaml"))
    assert r.code == 2
    assert "does not exist" in r.err
    r = await cli("diff", "-f", "-", stdin=PI.replace("parallelism: 2", "parallelism: two"))
    assert r.code == 2
    assert "parallelism" in r.err


async def test_diff_masks_secret_values(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: one\n"
    assert (await cli("apply", "-f", "-", stdin=secret)).code == 0
    r = await cli("diff", "-f", "-", stdin=secret.replace("one", "two"))
    data = [x for x in r.out.splitlines() if "password" in x and "last-applied" not in x]
    assert data == ["-  password: '*** (before)'", "+  password: '*** (after)'"], r.out
