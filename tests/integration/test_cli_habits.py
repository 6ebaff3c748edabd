"""A kubectl user's habits against a real API server: flags anywhere, taint, label --overwrite,
api-versions, a bash completion script that completes, Examples in every verb's help."""

from __future__ import annotations

import argparse
import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from controlplane.apiserver.testing import TestAPIServer
from ketch.api import manifest
from ketch.cli.main import build_parser

from .test_cli_nodes_rollout import make_node
from .test_cli_support import CLI


async def test_namespace_flag_between_kind_and_name(api: TestAPIServer) -> None:
    await api.client.create(manifest.from_dict({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "holder", "namespace": "kube-system"}, "spec": {"holderIdentity": "me"}}))
    cli = CLI(api.client)
    want = await cli("get", "lease", "holder", "-n", "kube-system", "-o", "name")
    assert (want.code, want.out) == (0, "lease.coordination.k8s.io/holder\n")
    for argv in (("get", "lease", "-n", "kube-system", "holder", "-o", "name"),
                 ("get", "-o", "name", "lease", "-n", "kube-system", "holder"),
                 ("-n", "kube-system", "get", "lease", "-o", "name", "holder")):
        r = await cli(*argv)
        assert (r.code, r.out, r.err) == (0, want.out, ""), argv
    r = await cli("label", "lease", "-n", "kube-system", "holder", "tier=a")
    assert (r.code, r.out) == (0, "lease.coordination.k8s.io/holder labeled\n")
    r = await cli("delete", "lease", "-n", "kube-system", "holder")
    assert (r.code, r.out) == (0, 'lease.coordination.k8s.io "holder" deleted\n')


async def test_label_overwrite_as_kubectl(api: TestAPIServer) -> None:
    await make_node(api.client, "n1")
    cli = CLI(api.client)
    assert (await cli("label", "node", "n1", "tier=a")).out == "node/n1 labeled\n"
    r = await cli("label", "node", "n1", "tier=b")
    assert (r.code, r.err) == (1, "error: 'tier' already has a value (a), and --overwrite is false\n")
    assert (await api.client.get("Node", "n1")).metadata.labels["tier"] == "a"
    r = await cli("label", "node", "n1", "tier=a")  # the same value: nothing to overwrite
    assert (r.code, r.out) == (0, "node/n1 not labeled\n")
    r = await cli("label", "node", "n1", "tier=b", "--overwrite")
    assert (r.code, r.out) == (0, "node/n1 labeled\n")
    r = await cli("annotate", "node", "n1", "note=x")
    r = await cli("annotate", "node", "n1", "note=y")
    assert (r.code, r.err) == (1, "error: --overwrite is false but found the following declared annotation(s): "
                                  "'note' already has a value (x)\n")
    node = await api.client.get("Node", "n1")
    assert (node.metadata.labels["tier"], node.metadata.annotations["note"]) == ("b", "x")


async def taints(api: TestAPIServer, name: str) -> list[tuple[str, str, str]]:
    node = await api.client.get("Node", name)
    return [(t.key, t.value, t.effect) for t in node.spec.taints]


async def test_taint_add_overwrite_remove(api: TestAPIServer) -> None:
    await make_node(api.client, "n1")
    await make_node(api.client, "n2")
    cli = CLI(api.client)
    r = await cli("taint", "nodes", "n1", "dedicated=special-user:NoSchedule")
    assert (r.code, r.out) == (0, "node/n1 tainted\n")
    assert await taints(api, "n1") == [("dedicated", "special-user", "NoSchedule")]
    r = await cli("taint", "nodes", "n1", "dedicated=other:NoSchedule")
    assert (r.code, r.err) == (1, "error: node n1 already has dedicated taint(s) with same effect(s) and "
                                  "--overwrite is false\n")
    r = await cli("taint", "nodes", "n1", "dedicated=other:NoSchedule", "--overwrite")
    assert (r.code, r.out) == (0, "node/n1 modified\n")
    r = await cli("taint", "n1", "dedicated:NoExecute")  # same key, another effect: a second taint
    assert (r.code, r.out) == (0, "node/n1 tainted\n")
    assert sorted(await taints(api, "n1")) == [("dedicated", "", "NoExecute"), ("dedicated", "other", "NoSchedule")]
    r = await cli("taint", "node/n1", "dedicated:NoSchedule-")
    assert (r.code, r.out) == (0, "node/n1 untainted\n")
    assert await taints(api, "n1") == [("dedicated", "", "NoExecute")]
    r = await cli("taint", "nodes", "n1", "gpu:NoSchedule-")
    assert (r.code, r.err) == (1, 'error: taint "gpu:NoSchedule" not found\n')
    r = await cli("taint", "nodes", "n1", "dedicated-")
    assert (r.code, r.out) == (0, "node/n1 untainted\n")
    assert await taints(api, "n1") == []
    r = await cli("taint", "nodes", "n1", "k=v:Sometimes")
    assert (r.code, r.err) == (1, "error: invalid taint spec: k=v:Sometimes, invalid taint effect: Sometimes, "
                                  "unsupported taint effect\n")
    r = await cli("taint", "nodes", "--all", "zone=a:PreferNoSchedule")
    assert (r.code, r.out) == (0, "node/n1 tainted\nnode/n2 tainted\n")
    r = await cli("taint", "pods", "p", "k=v:NoSchedule")
    assert (r.code, r.err) == (1, "error: invalid resource type pods, only nodes are supported\n")


async def test_api_versions(api: TestAPIServer) -> None:
    r = await CLI(api.client)("api-versions")
    lines = r.out.splitlines()
    assert r.code == 0 and lines == sorted(lines)
    assert {"v1", "batch/v1", "apps/v1", "coordination.k8s.io/v1", "rbac.authorization.k8s.io/v1"} <= set(lines)


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                out.append(sub)
                out.extend(_parsers(sub))
    return out


def test_every_verb_help_has_examples() -> None:
    parsers = _parsers(build_parser())
    assert len(parsers) > 40
    missing = [p.prog for p in parsers if "\nExamples:\n  " not in p.format_help()]
    assert missing == []
    assert "  ketch taint nodes node-1 dedicated:NoSchedule-\n" in next(
        p for p in parsers if p.prog == "ketch taint").format_help()


@pytest.fixture
def bash_script(tmp_path: Path) -> Path:
    if shutil.which("bash") is None:
        pytest.skip("no bash here")
    import asyncio

    from ketch.cli.factory import Factory
    from ketch.cli.main import execute

    out = io.StringIO()
    assert asyncio.run(execute(["completion", "bash"], Factory(out=out, err=io.StringIO()))) == 0
    path = tmp_path / "ketch.bash"
    path.write_text(out.getvalue())
    return path


def complete(script: Path, *words: str) -> list[str]:
    """What bash's TAB offers after `words` (the last one is being typed)."""
    run = ('source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); '
           '__ketch_complete; printf "%s\\n" "${COMPREPLY[@]}"')
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", run, "bash", str(script), "ketch", *words],
                          capture_output=True, text=True, timeout=60, check=True)
    return [w for w in done.stdout.splitlines() if w]


def test_bash_completion_completes_verbs_kinds_and_flags(bash_script: Path) -> None:
    assert complete(bash_script, "ge") == ["get"]
    assert complete(bash_script, "tai") == ["taint"]
    assert complete(bash_script, "get", "po") == ["po", "pod", "pods"]
    assert complete(bash_script, "-n", "kube-system", "get", "lea") == ["lease", "leases"]
    assert complete(bash_script, "get", "--wat") == ["--watch", "--watch-only"]
    assert complete(bash_script, "rollout", "st") == ["status"]
    assert complete(bash_script, "rollout", "status", "--ti") == ["--timeout"]
    assert complete(bash_script, "completion", "") == ["bash", "zsh"]
    assert complete(bash_script, "taint", "") == ["nodes"]
    assert complete(bash_script, "get", "pods", "-o", "") == []  # a flag's value: left to the shell
    assert complete(bash_script, "logs", "--pre") == ["--prefix", "--previous"]


@pytest.fixture
def zsh_script(tmp_path: Path) -> Path:
    if shutil.which("zsh") is None:
        pytest.skip("no zsh here (apt-get install zsh)")
    import asyncio

    from ketch.cli.factory import Factory
    from ketch.cli.main import execute

    out = io.StringIO()
    assert asyncio.run(execute(["completion", "zsh"], Factory(out=out, err=io.StringIO()))) == 0
    path = tmp_path / "_ketch"
    path.write_text(out.getvalue())
    return path


# zsh's completion builtins, replaced to print what _ketch offers (`<files>`: zsh's own file completion).
ZSH_PROBE = """compdef() { : }
compadd() { [ "$1" = "--" ] && shift; print -rl -- "$@" }
_files() { print -r -- "<files>" }
source "$1"; shift
words=("$@"); CURRENT=$#words
_ketch
"""


def zsh_complete(script: Path, *words: str) -> list[str]:
    """What the zsh script's _ketch offers after `words` (the last one is being typed)."""
    done = subprocess.run(["zsh", "-f", "-c", ZSH_PROBE, "zsh", str(script), "ketch", *words],
                          capture_output=True, text=True, timeout=60, check=True)
    return [w for w in done.stdout.splitlines() if w]


def test_zsh_completion_completes_verbs_kinds_and_flags(zsh_script: Path) -> None:
    assert zsh_complete(zsh_script, "ge") == ["get"]
    assert zsh_complete(zsh_script, "get", "po") == ["po", "pod", "pods"]
    assert zsh_complete(zsh_script, "-n", "kube-system", "get", "lea") == ["lease", "leases"]
    assert zsh_complete(zsh_script, "get", "--wat") == ["--watch", "--watch-only"]
    assert zsh_complete(zsh_script, "rollout", "status", "--ti") == ["--timeout"]
    assert zsh_complete(zsh_script, "completion", "") == ["bash", "zsh"]
    assert zsh_complete(zsh_script, "create", "--from-env") == ["--from-env-file"]
    assert zsh_complete(zsh_script, "get", "pods", "-o", "") == ["<files>"]  # a flag's value: zsh's files


# In a real interactive zsh (compinit, the script sourced): type, TAB, then print the edited line
# between markers that the echo of the typed keys cannot contain (`${:-LI}NE:` prints LINE:).
ZSH_PTY = """zmodload zsh/zpty
zpty z "TERM=dumb zsh -f -i"
zpty -w z 'PS1="> "; autoload -Uz compinit; compinit -u -D; source '${(q)1}
zpty -w -n z "$2"$'\\t\\x01print -r -- ${:-LI}NE:\\x05${:-EN}D\\n'
zpty -r z out '*LINE:*END*'
print -r -- "$out"
zpty -d z
"""


@pytest.mark.parametrize(("typed", "completed"), [("ketch rollout st", "ketch rollout status"),
                                                  ("ketch -n x tai", "ketch -n x taint"),
                                                  ("ketch get cronj", "ketch get cronjob")])
def test_zsh_completes_at_an_interactive_prompt(zsh_script: Path, typed: str, completed: str) -> None:
    done = subprocess.run(["zsh", "-f", "-c", ZSH_PTY, "zsh", str(zsh_script), typed], capture_output=True,
                          text=True, timeout=60, check=True)
    found = re.search(r"LINE:(.*?)END", done.stdout)
    assert found is not None, done.stdout[-500:]
    assert found.group(1).strip() == completed
