"""`ketch apply` of hostile input fails at once with one line naming the file, in a process whose
memory is capped (before the fix a 600-byte alias bomb grew the CLI to gigabytes)."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

from ketch.local.launcher import wait_or_kill

from ..api.test_safeyaml import JOB_WITH_ANCHORS, laughs

MEMORY_CAP = 1536 * 1024 * 1024  # address space: ample for the CLI, far short of an expanded bomb


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def ketch(*args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    """Run the CLI as its own process (server unreachable: nothing here may get that far)."""
    proc = subprocess.Popen([str(Path(sys.executable).parent / "ketch"), *args, "--server", "127.0.0.1:1"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_cap_memory, start_new_session=True)
    try:
        out, err = proc.communicate(stdin, timeout=120)
    finally:
        wait_or_kill(proc, 5)
    return proc.returncode, out.decode(), err.decode()


def test_apply_of_a_billion_laughs_is_refused_with_one_line(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("apiVersion: batch/v1\n" + laughs(9, 9) + "metadata: {name: lol}\n"
                    "spec: {template: {spec: {restartPolicy: Never, containers: [{name: c, command: *a8}]}}}\n")
    assert bomb.stat().st_size < 700
    code, out, err = ketch("apply", "-f", str(bomb))
    assert (code, out) == (1, "")
    assert err == f"error: error parsing {bomb}: yaml: document contains excessive aliasing\n"


def test_a_file_larger_than_the_cap_is_refused_without_reading_it_whole() -> None:
    code, _, err = ketch("apply", "-f", "/dev/zero")
    assert code == 1
    assert err == 'error: the file "/dev/zero" is larger than 16 MiB, the most a manifest may be\n'


def test_stdin_larger_than_the_cap_is_refused() -> None:
    code, _, err = ketch("apply", "-f", "-", stdin=b"#" * (16 * 1024 * 1024 + 1))
    assert code == 1
    assert err == "error: the standard input is larger than 16 MiB, the most a manifest may be\n"


@pytest.mark.parametrize("verb", ["apply", "create"])
def test_a_manifest_with_anchors_gets_as_far_as_the_server(tmp_path: Path, verb: str) -> None:
    f = tmp_path / "job.yaml"
    f.write_text(JOB_WITH_ANCHORS)
    code, _, err = ketch(verb, "-f", str(f))
    assert code == 1 and "The connection to the server 127.0.0.1:1 was refused" in err, err


def test_patch_with_an_alias_bomb_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "patch.yaml"
    f.write_text("spec:\n" + "".join("  " + line + "\n" for line in laughs(9, 9).splitlines()))
    code, _, err = ketch("patch", "job", "pi", "--patch-file", str(f))
    assert (code, err) == (1, "error: unable to parse the patch: yaml: document contains excessive aliasing\n")
