"""What a CLI command loads (issue 14): a verb imports its own module and what it uses, nothing
else, so `ketch version --client` starts about as fast as Python and a new verb costs the others
nothing. Checked on the modules a real `ketch` process holds when it exits, not on timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ketch.cli.main import VERBS, UnknownCommandError, build_parser, parse_args, verb_of

PROBE = """
import json, sys
from ketch.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit as done:
    code = done.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def loaded_by(*argv: str, config: str = "/nonexistent/ketch-config") -> tuple[int, set[str]]:
    """The exit code and the modules of a fresh `ketch ARGV` process (no server needed)."""
    env = {"KETCH_CONFIG": config, "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, env=env,
                            timeout=60)
    report = json.loads(result.stderr.strip().splitlines()[-1])
    return report["code"], set(report["modules"])


def test_version_client_loads_no_grpc_protobuf_yaml_or_event_loop() -> None:
    code, modules = loaded_by("version", "--client")
    assert code == 0
    heavy = {"grpc", "google.protobuf", "yaml", "asyncio", "cryptography", "ketch.api.kinds", "ketch.client.clientset"}
    assert heavy & modules == set()
    assert {m for m in modules if m.startswith("ketch.cli.cmd_")} == {"ketch.cli.cmd_version"}


def test_get_loads_only_its_verb_and_no_yaml_tls_or_jsonpath_without_a_kubeconfig() -> None:
    # No server listens on port 1: the command fails, after loading what it needs to try.
    code, modules = loaded_by("-s", "127.0.0.1:1", "get", "pods")
    assert code == 1
    assert "grpc" in modules and "ketch.v1.core_pb2" in modules  # it did get as far as the client
    assert {m for m in modules if m.startswith("ketch.cli.cmd_")} == {"ketch.cli.cmd_get"}
    assert {"yaml", "cryptography", "ketch.cli.jsonpath", "ketch.cli.describe",
            "google.protobuf.json_format", "ketch.cli.examples", "shutil", "ketch.api.selectors",
            "dataclasses"} & modules == set()
    # Of the kinds' modules, only the one that holds Pod (and what it needs).
    assert {m for m in modules if m.endswith("_pb2")} == {"ketch.v1.core_pb2", "ketch.v1.meta_pb2",
                                                          "ketch.v1.api_pb2", "google.protobuf.descriptor_pb2",
                                                          "google.protobuf.struct_pb2", "google.protobuf.any_pb2"}


def test_help_still_ends_with_examples() -> None:
    result = subprocess.run([sys.executable, "-m", "ketch.cli.main", "get", "--help"], capture_output=True, text=True,
                            timeout=60, env={"KETCH_CONFIG": "/nonexistent/ketch-config", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0
    assert "\nExamples:\n  # " in result.stdout


def test_get_with_a_kubeconfig_imports_yaml_only_until_its_parse_is_cached(tmp_path: Path) -> None:
    from ketch.client import kubeconfig

    config = kubeconfig.single("c", "127.0.0.1:1", None, "u", token="t0ken")
    path = config.save(tmp_path / "config")
    first = loaded_by("get", "pods", config=str(path))
    again = loaded_by("get", "pods", config=str(path))
    assert first[0] == again[0] == 1  # nothing listens on port 1
    assert "yaml" in first[1]
    assert "yaml" not in again[1] and "grpc" in again[1]
    path.write_text(path.read_text().replace("t0ken", "t1ken"))  # same size, maybe the same mtime
    assert "yaml" in loaded_by("get", "pods", config=str(path))[1]
    assert kubeconfig.load(path).users["u"]["token"] == "t1ken"


@pytest.mark.parametrize(
    ("argv", "verb"),
    [(["get", "pods"], "get"), (["-n", "kube-system", "get", "lease"], "get"),
     (["--server", "h:1", "--as", "u", "--as-group", "g", "logs", "p"], "logs"),
     (["--server=h:1", "run", "x", "--", "get"], "run"), (["--help", "get"], None), ([], None),
     (["-n", "x"], None), (["nosuchverb"], "nosuchverb")],
)
def test_verb_of_skips_global_flags_and_their_values(argv: list[str], verb: str | None) -> None:
    assert verb_of(argv, build_parser([])) == verb


def test_every_verb_is_registered_by_its_module_alone() -> None:
    for verb in VERBS:
        parser = build_parser([verb])
        assert verb in parser._subparsers._group_actions[0].choices, verb  # type: ignore[union-attr]


def test_unknown_verb_still_lists_every_verb() -> None:
    with pytest.raises(UnknownCommandError, match='unknown command "nosuchverb"') as err:
        parse_args(build_parser(["nosuchverb"]), ["nosuchverb"])
    assert err.value.suggestions == []
    with pytest.raises(UnknownCommandError) as near:  # did-you-mean knows the verbs not loaded
        parse_args(build_parser(["rn"]), ["rn"])
    assert "run" in near.value.suggestions


def test_words_after_dashes_go_to_a_verb_that_asks_verbatim() -> None:
    argv = ["run", "x", "--restart=Never", "--", "sh", "-c", "echo -n --rm"]
    args = parse_args(build_parser(argv), argv)
    assert args.dash_args == ["sh", "-c", "echo -n --rm"]
    assert args.rm is False and args.restart == "Never"
