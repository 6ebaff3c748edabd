"""edit, explain and diff -f, run in-process against a real API server."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

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


def strip_comments(text: str) -> str:
    """The file as the editor's user sees its content: the `#` lines dropped."""
    return "\n".join(x for x in text.splitlines() if not x.lstrip().startswith("#")).strip()


# -- edit -------------------------------------------------------------------------------------------


def editor(tmp_path: Path, *steps: str) -> str:
    """An editor command: on its Nth run it records the file it was given (seen-N) and runs steps[N]
    (Python on `text`; the last step repeats), then saves."""
    script = tmp_path / "editor.py"
    script.write_text(
        "import sys, pathlib\n"
        f"here = pathlib.Path({str(tmp_path)!r})\n"
        "n = len(list(here.glob('seen-*')))\n"
        "path = pathlib.Path(sys.argv[1])\n"
        "text = path.read_text()\n"
        "(here / f'seen-{n}').write_text(text)\n"
        f"steps = {list(steps)!r}\n"
        "exec(steps[min(n, len(steps) - 1)])\n"
        "path.write_text(text)\n")
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"


async def test_edit_updates_the_object(api: TestAPIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = CLI(api.client)
    assert (await cli("apply", "-f", "-", stdin=PI)).code == 0
    monkeypatch.delenv("KUBE_EDITOR", raising=False)
    monkeypatch.setenv("EDITOR", editor(tmp_path, "text = text.replace('parallelism: 2', 'parallelism: 4')"))
    r = await cli("edit", "job", "pi")
    assert (r.code, r.out, r.err) == (0, "job.batch/pi edited\n", "")
    assert (await api.client.get("Job", "pi", "default")).spec.parallelism == 4
    seen = (tmp_path / "seen-0").read_text()
    assert seen.startswith("# Please edit the object below. Lines beginning with a '#' will be ignored,\n")
    assert "\nkind: Job\n" in seen and "resourceVersion:" in seen


async def test_edit_prefers_kube_editor_and_takes_json(
        api: TestAPIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = CLI(api.client)
    assert (await cli("apply", "-f", "-", stdin=PI)).code == 0
    monkeypatch.setenv("EDITOR", "false")
    json_step = "text = text.replace('\"parallelism\": 2', '\"parallelism\": 3')"
    monkeypatch.setenv("KUBE_EDITOR", editor(tmp_path, json_step))
    r = await cli("edit", "job/pi", "-o", "json")
    assert (r.code, r.out) == (0, "job.batch/pi edited\n"), r.err
    assert (await api.client.get("Job", "pi", "default")).spec.parallelism == 3


async def test_edit_unchanged_is_cancelled(api: TestAPIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = CLI(api.client)
    assert (await cli("apply", "-f", "-", stdin=PI)).code == 0
    before = (await api.client.get("Job", "pi", "default")).metadata.resource_version
    monkeypatch.setenv("KUBE_EDITOR", editor(tmp_path, "pass"))
    r = await cli("edit", "job", "pi")
    assert (r.code, r.out, r.err) == (0, "", "Edit cancelled, no changes made.\n")
    assert (await api.client.get("Job", "pi", "default")).metadata.resource_version == before


async def test_edit_reopens_an_invalid_file_with_the_errors_then_keeps_a_copy(
        api: TestAPIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = CLI(api.client)
    assert (await cli("apply", "-f", "-", stdin=PI)).code == 0
    # First run: an invalid value; second run: saved as it is.
    invalid = "text = text.replace('parallelism: 2', 'parallelism: -1')"
    monkeypatch.setenv("KUBE_EDITOR", editor(tmp_path, invalid, "pass"))
    r = await cli("edit", "job", "pi")
    assert r.code == 1
    second = (tmp_path / "seen-1").read_text()
    assert '# jobs.batch "pi" was not valid:\n# * spec.parallelism: Invalid value: -1' in second
    assert "parallelism: -1" in strip_comments(second)
    lines = r.err.splitlines()
    assert lines[0].startswith('A copy of your changes has been stored to "')
    assert lines[1] == "error: Edit cancelled, no valid changes were saved."
    kept = Path(lines[0].split('"')[1])
    try:
        assert "parallelism: -1" in kept.read_text()
    finally:
        kept.unlink()
    assert (await api.client.get("Job", "pi", "default")).spec.parallelism == 2


async def test_edit_fixed_after_an_error_is_saved(
        api: TestAPIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = CLI(api.client)
    assert (await cli("apply", "-f", "-", stdin=PI)).code == 0
    monkeypatch.setenv("KUBE_EDITOR", editor(
        tmp_path, "text = text.replace('parallelism: 2', 'parallelism: -1')",
        "text = text.replace('parallelism: -1', 'parallelism: 5')"))
    r = await cli("edit", "job", "pi")
    assert (r.code, r.out) == (0, "job.batch/pi edited\n"), r.err
    assert (await api.client.get("Job", "pi", "default")).spec.parallelism == 5


# -- explain ----------------------------------------------------------------------------------------


async def test_explain_a_kind_lists_its_fields(api: TestAPIServer) -> None:
    r = await CLI(api.client)("explain", "jobs")
    assert r.code == 0, r.err
    assert r.out.startswith("GROUP:      batch\nKIND:       Job\nVERSION:    v1\n\nDESCRIPTION:\n")
    fields = r.out.split("FIELDS:\n", 1)[1]
    assert [line.split("\t")[0].strip() for line in fields.splitlines() if "\t" in line] == [
        "apiVersion", "kind", "metadata", "spec", "status"]
    assert "  spec\t<JobSpec>\n" in fields


async def test_explain_a_field_path_shows_its_type_and_the_proto_comment(api: TestAPIServer) -> None:
    r = await CLI(api.client)("explain", "job.spec.parallelism")
    assert r.code == 0, r.err
    assert r.out == ("GROUP:      batch\nKIND:       Job\nVERSION:    v1\n\nFIELD: parallelism <integer>\n\n"
                     "DESCRIPTION:\n    Most pods running at once; default 1. Mutable.\n")
    r = await CLI(api.client)("explain", "pods.spec.containers")
    assert "FIELD: containers <[]Container>" in r.out
    assert r.out.startswith("KIND:       Pod\nVERSION:    v1\n")  # the core group has no GROUP line
    assert "  command\t<[]string>\n" in r.out


async def test_explain_recursive_nests_fields_without_descriptions(api: TestAPIServer) -> None:
    r = await CLI(api.client)("explain", "cronjobs.spec", "--recursive")
    assert r.code == 0, r.err
    fields = r.out.split("FIELDS:\n", 1)[1].splitlines()
    assert "  schedule\t<string>" in fields
    assert "  jobTemplate\t<JobTemplateSpec>" in fields
    assert "      parallelism\t<integer>" in fields  # jobTemplate.spec.parallelism, two levels in
    assert not any("Most pods" in x for x in fields)


async def test_explain_unknown_field_or_kind_is_an_error(api: TestAPIServer) -> None:
    r = await CLI(api.client)("explain", "jobs.spec.nope")
    assert (r.code, r.out, r.err) == (1, "", 'error: field "nope" does not exist\n')
    r = await CLI(api.client)("explain", "jobz")
    assert r.code == 1 and "jobz" in r.err


async def test_edit_does_not_overwrite_a_change_made_meanwhile(
        api: TestAPIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ketch.cli.cmd_edit as cmd_edit

    cli = CLI(api.client)
    assert (await cli("apply", "-f", "-", stdin=PI)).code == 0
    monkeypatch.setenv("KUBE_EDITOR", editor(tmp_path, "text = text.replace('parallelism: 2', 'parallelism: 4')"))
    real = cmd_edit.run_editor

    async def someone_else_too(path: str) -> None:
        await real(path)
        await api.client.patch("Job", "pi", {"spec": {"parallelism": 7}}, namespace="default")

    monkeypatch.setattr(cmd_edit, "run_editor", someone_else_too)
    r = await cli("edit", "job", "pi")
    assert r.code == 1
    lines = r.err.splitlines()
    assert lines[0].startswith('A copy of your changes has been stored to "')
    assert lines[1].startswith("Error from server (Conflict):"), r.err
    Path(lines[0].split('"')[1]).unlink()
    assert (await api.client.get("Job", "pi", "default")).spec.parallelism == 7


async def test_edit_syntax_error_is_reopened_and_an_emptied_file_cancels(
        api: TestAPIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = CLI(api.client)
    assert (await cli("apply", "-f", "-", stdin=PI)).code == 0
    monkeypatch.setenv("KUBE_EDITOR", editor(tmp_path, "text = text + 'spec: [\\n'", "text = ''"))
    r = await cli("edit", "job", "pi")
    assert (r.code, r.err) == (0, "Edit cancelled, saved file was empty.\n")
    reopened = (tmp_path / "seen-1").read_text()
    assert "# The edited file had a syntax error:\n# * " in reopened
    saved = (tmp_path / "seen-0").read_text() + "spec: [\n"
    assert strip_comments(reopened) == strip_comments(saved)  # the error's lines are all comments
