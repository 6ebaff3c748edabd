"""What a kubectl user types without thinking: flags anywhere, typos answered with a suggestion,
YAML errors with their line, an unreachable server in kubectl's words."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from ketch.cli.factory import Factory
from ketch.cli.main import build_parser, execute, normalize_bools
from ketch.cli.suggestions import suggest


@pytest.mark.parametrize(
    ("argv", "dest", "want"),
    [
        (["get", "lease", "-n", "kube-system", "NAME"], "targets", ["lease", "NAME"]),
        (["get", "pods", "-o", "wide", "a", "-l", "x=y", "b"], "targets", ["pods", "a", "b"]),
        (["describe", "job", "-n", "kube-system", "pi"], "targets", ["job", "pi"]),
        (["delete", "job", "-n", "kube-system", "pi", "--wait=false"], "targets", ["job", "pi"]),
        (["patch", "job", "-n", "kube-system", "pi", "-p", "{}"], "targets", ["job", "pi"]),
        (["label", "job", "-n", "kube-system", "pi", "a=b", "--overwrite"], "args", ["job", "pi", "a=b"]),
        (["annotate", "job", "-n", "kube-system", "pi", "a=b"], "args", ["job", "pi", "a=b"]),
        (["logs", "-n", "kube-system", "job/pi", "--tail", "3"], "target", "job/pi"),
        (["logs", "p", "-n", "kube-system", "c"], "container_arg", "c"),
        (["wait", "--for=condition=Complete", "job/a", "-n", "kube-system", "job/b"], "targets", ["job/a", "job/b"]),
        (["cordon", "n1", "-n", "kube-system", "n2"], "nodes", ["n1", "n2"]),
        (["drain", "n1", "-n", "kube-system", "n2"], "nodes", ["n1", "n2"]),
        (["rollout", "status", "-n", "kube-system", "ds/x"], "target", ["ds/x"]),
        (["rollout", "status", "ds", "-n", "kube-system", "x"], "target", ["ds", "x"]),
        (["top", "pods", "-n", "kube-system", "p"], "name", "p"),
        (["create", "namespace", "-n", "kube-system", "x"], "what", ["namespace", "x"]),
        (["auth", "can-i", "get", "-n", "kube-system", "pods", "p"], "name", "p"),
    ],
)
def test_flags_go_anywhere_among_a_verbs_words(argv: list[str], dest: str, want: object) -> None:
    args = build_parser().parse_args(normalize_bools(argv))
    assert getattr(args, dest) == want
    assert args.namespace == ("kube-system" if "-n" in argv else "")


@pytest.mark.parametrize(
    ("argv", "dest", "want"),
    [
        (["delete", "job", "pi", "--ignore-not-found=true"], "ignore_not_found", True),
        (["delete", "job", "pi", "--ignore-not-found=false"], "ignore_not_found", False),
        (["get", "pods", "--all-namespaces=true"], "all_namespaces", True),
        (["get", "pods", "-A=True"], "all_namespaces", True),
        (["get", "pods", "-A", "--all-namespaces=false"], "all_namespaces", False),  # the last one wins
        (["get", "pods", "--all-namespaces=false", "-A"], "all_namespaces", True),
        (["get", "pods", "--show-labels=1", "--no-headers=t"], "show_labels", True),
        (["label", "job", "pi", "a=b", "--overwrite=true"], "overwrite", True),
        (["delete", "pod", "p", "--force=true"], "force", True),
        (["delete", "pod", "p", "--wait=false"], "wait", False),
        (["drain", "n1", "--ignore-daemonsets=true", "--delete-emptydir-data=true"], "delete_emptydir_data", True),
    ],
)
def test_every_boolean_flag_takes_an_explicit_value(argv: list[str], dest: str, want: bool) -> None:
    # pflag reads --flag=true|false for every boolean flag; scripts write --ignore-not-found=true.
    args = build_parser(argv).parse_args(normalize_bools(argv))
    assert getattr(args, dest) is want


def test_a_boolean_flag_with_a_bad_value_is_one_line() -> None:
    from ketch.cli.main import UsageError

    with pytest.raises(UsageError, match='invalid argument "maybe" for "--force" flag'):
        build_parser(["delete"]).parse_args(["delete", "pod", "p", "--force=maybe"])


def test_a_flag_missing_its_value_is_still_an_error() -> None:
    from ketch.cli.main import UsageError

    with pytest.raises(UsageError, match="expected one argument"):
        build_parser().parse_args(["get", "pods", "-n"])
    with pytest.raises(UsageError, match="unrecognized arguments: --bogus"):
        build_parser().parse_args(["get", "--bogus", "pods"])


def test_suggestions_as_cobra_makes_them() -> None:
    verbs = ["apply", "create", "get", "describe", "delete", "logs", "label", "annotate"]
    assert suggest("gte", verbs) == ["get"]
    assert suggest("desc", verbs) == ["describe"]  # a prefix
    assert suggest("lgos", verbs) == ["logs"]
    assert suggest("frobnicate", verbs) == []


async def run(*argv: str, server: str = "127.0.0.1:1", stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await execute(list(argv), Factory(server=server, out=out, err=err, stdin=io.StringIO(stdin)))
    return code, out.getvalue(), err.getvalue()


async def test_unknown_verb_says_did_you_mean() -> None:
    assert await run("gte", "pods") == (
        1, "", 'error: unknown command "gte" for "ketch"\n\nDid you mean this?\n\tget\n\n')
    code, _, err = await run("rollout", "stauts", "ds/x")
    assert (code, err) == (1, 'error: unknown command "stauts" for "ketch rollout"\n\nDid you mean this?\n\tstatus\n\n')
    code, _, err = await run("frobnicate")
    assert (code, err) == (1, 'error: unknown command "frobnicate" for "ketch"\n')


async def test_unknown_kind_says_did_you_mean() -> None:
    code, _, err = await run("get", "podz")
    assert (code, err) == (1, 'error: the server doesn\'t have a resource type "podz"\n\n'
                              'Did you mean this?\n\tpod\n\tpods\n\n')
    code, _, err = await run("get", "widgets")
    assert (code, err) == (1, 'error: the server doesn\'t have a resource type "widgets"\n')


async def test_unreachable_server_in_kubectls_words() -> None:
    code, out, err = await run("get", "lease", "-n", "kube-system", "x")
    assert (code, out) == (1, "")
    assert err == "The connection to the server 127.0.0.1:1 was refused - did you specify the right host or port?\n"


BROKEN = """apiVersion: batch/v1
kind: Job
metadata:
  name: x
  labels: {a: b
spec: {}
"""


@pytest.mark.parametrize("verb", ["apply", "create", "delete"])
async def test_a_yaml_error_names_the_file_and_line(tmp_path: Path, verb: str) -> None:
    f = tmp_path / "job.yaml"
    f.write_text(BROKEN)
    code, _, err = await run(verb, "-f", str(f))
    assert code == 1
    assert err.startswith(f"error: error parsing {f}: yaml: line 6: "), err
    assert "from server" not in err and "<unicode string>" not in err and err.count("\n") == 1


WRONG_TYPES = """# The first document is empty.
---
# A Job whose fields have the wrong types.

apiVersion: batch/v1
kind: Job
metadata:
  name: pi
  labels: {app.kubernetes.io/name: pi}
spec:
  parallelism: "x"
  template:
    spec:
      restartPolicy: Never
      containers: 5
---
apiVersion: v1
kind: ConfigMap
metadata: {name: later}
"""


@pytest.mark.parametrize("verb", ["apply", "create"])
async def test_a_field_of_the_wrong_type_names_the_file_and_line(tmp_path: Path, verb: str) -> None:
    f = tmp_path / "job.yaml"
    f.write_text(WRONG_TYPES)
    code, _, err = await run(verb, "-f", str(f))
    assert code == 1
    assert err.splitlines()[0] == (
        f'Error from server (BadRequest): error when creating "{f}": Job in version "v1" cannot be handled as a '
        'Job: line 11: spec.parallelism: expected an integer, got string "x", '
        "line 15: spec.template.spec.containers: expected an array, got number")


async def test_the_line_of_a_wrong_type_in_a_list_item_from_stdin() -> None:
    text = """apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: p, labels: {app.kubernetes.io/name: p}}
  spec:
    containers:
    - name: c
      command: [sleep, 1]
      env:
      - {name: A, value: 5}
    bogus: 1
"""
    code, _, err = await run("apply", "-f", "-", stdin=text)
    assert code == 1
    assert err.splitlines()[0] == (
        'Error from server (BadRequest): error when creating "STDIN": Pod in version "v1" cannot be handled as a '
        'Pod: line 13: unknown field "spec.bogus", line 10: spec.containers[0].command[1]: expected a string, got '
        "number 1, line 12: spec.containers[0].env[0].value: expected a string, got number 5")


async def test_a_document_without_kind_is_the_clients_error(tmp_path: Path) -> None:
    f = tmp_path / "x.yaml"
    f.write_text("apiVersion: v1\nmetadata:\n  name: x\n")
    assert await run("apply", "-f", str(f)) == (
        1, "", f"error: unable to decode \"{f}\": Object 'Kind' is missing in the manifest\n")
    f.write_text("apiVersion: v9\nkind: Foo\nmetadata:\n  name: x\n")
    code, _, err = await run("create", "-f", str(f))
    assert (code, err) == (1, f'error: resource mapping not found for name: "x" namespace: "" from "{f}": '
                              'no matches for kind "Foo" in version "v9"\n')


async def test_a_patch_that_is_not_yaml_says_where() -> None:
    code, _, err = await run("patch", "job", "x", "-p", "{a: [")
    assert (code, err) == (1, 'error: unable to parse "{a: [": yaml: line 1: expected the node content, '
                              "but found '<stream end>'\n")



KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: one
  cluster: {server: "127.0.0.1:6443", certificate-authority-data: Q0E=}
- name: two
  cluster: {server: "127.0.0.1:7443"}
users:
- name: admin
  user: {client-key-data: S0VZ}
contexts:
- name: first
  context: {cluster: one, user: admin}
- name: second
  context: {cluster: two, user: admin}
current-context: first
"""


async def test_config_view_takes_jsonpath(tmp_path: Path) -> None:
    # kubectl config view -o jsonpath='{.clusters[0].cluster.server}' (often with --minify)
    path = tmp_path / "config"
    path.write_text(KUBECONFIG)
    base = ("--kubeconfig", str(path), "config", "view")
    assert await run(*base, "-o", "jsonpath={.contexts[*].name}") == (0, "first second", "")
    assert await run(*base, "--minify", "-o", "jsonpath={.clusters[0].cluster.server}") == (0, "127.0.0.1:6443", "")
    assert (await run(*base, "-o", "jsonpath={.users[0].user.client-key-data}"))[1] == "DATA+OMITTED"
    code, _, err = await run(*base, "-o", "toml")
    assert code == 1 and 'output format "toml"' in err
