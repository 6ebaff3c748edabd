"""What users type for kinds and names, and the one-line error text for each failure."""

from __future__ import annotations

import pytest

from ketch.api import errors
from ketch.api.kinds import UnknownKindError
from ketch.cli.main import CLIError, format_error
from ketch.cli.resources import display_name, parse_one, parse_targets, quoted_name, resolve_kind


@pytest.mark.parametrize(
    ("typed", "kind"),
    [("jobs", "Job"), ("job", "Job"), ("Job", "Job"), ("jobs.batch", "Job"), ("job.batch", "Job"),
     ("cj", "CronJob"), ("cronjobs", "CronJob"), ("ds", "DaemonSet"), ("daemonsets.apps", "DaemonSet"),
     ("po", "Pod"), ("pods", "Pod"), ("no", "Node"), ("ns", "Namespace"), ("ev", "Event"),
     ("controllerrevisions", "ControllerRevision"), ("lease", "Lease")],
)
def test_kind_aliases(typed: str, kind: str) -> None:
    assert resolve_kind(typed).kind == kind


def test_unknown_kind() -> None:
    with pytest.raises(UnknownKindError) as err:
        resolve_kind("deployments")
    assert format_error(err.value) == 'error: the server doesn\'t have a resource type "deployments"'


@pytest.mark.parametrize(
    ("typed", "kind"),
    [("jobs.v1.batch", "Job"), ("job.v1.batch", "Job"), ("cronjobs.v1.batch", "CronJob"),
     ("daemonsets.v1.apps", "DaemonSet"), ("leases.v1.coordination.k8s.io", "Lease"),
     ("roles.v1.rbac.authorization.k8s.io", "Role"), ("rolebindings.rbac.authorization.k8s.io", "RoleBinding")],
)
def test_kind_with_version_and_group(typed: str, kind: str) -> None:
    # kubectl's ParseResourceArg: RESOURCE.VERSION.GROUP as well as RESOURCE.GROUP.
    assert resolve_kind(typed).kind == kind


@pytest.mark.parametrize("typed", ["jobs.v2.batch", "jobs.apps", "widgets.batch", "jobs.v1.apps"])
def test_kind_with_a_wrong_version_or_group(typed: str) -> None:
    with pytest.raises(UnknownKindError) as err:
        resolve_kind(typed)
    assert format_error(err.value) == f'error: the server doesn\'t have a resource type "{typed}"'


@pytest.mark.parametrize(
    ("args", "want"),
    [(["jobs"], [("Job", None)]), (["job", "a", "b"], [("Job", "a"), ("Job", "b")]),
     (["job/a", "cj/b"], [("Job", "a"), ("CronJob", "b")]), (["jobs,pods"], [("Job", None), ("Pod", None)])],
)
def test_parse_targets(args: list[str], want: list[tuple[str, str | None]]) -> None:
    assert [(i.kind, n) for i, n in parse_targets(args)] == want


@pytest.mark.parametrize("args", [[], ["jobs,pods", "x"], ["job/a", "b"], ["job/"]])
def test_parse_targets_errors(args: list[str]) -> None:
    with pytest.raises(ValueError):
        parse_targets(args)


def test_parse_one_and_names() -> None:
    info, name = parse_one("ds/agentd")
    assert (info.kind, name) == ("DaemonSet", "agentd")
    assert display_name(info, name) == "daemonset.apps/agentd"
    assert quoted_name(resolve_kind("po"), "x") == 'pod "x"'
    assert parse_one("x", default_kind="pod")[0].kind == "Pod"
    with pytest.raises(ValueError):
        parse_one("x")


@pytest.mark.parametrize(
    ("err", "want"),
    [
        (errors.NotFound('jobs.batch "x" not found'), 'Error from server (NotFound): jobs.batch "x" not found'),
        (errors.AlreadyExists('jobs.batch "x" already exists'),
         'Error from server (AlreadyExists): jobs.batch "x" already exists'),
        (errors.Invalid('The Job "bad" is invalid: spec.parallelism: Invalid value: -1: must be greater than or '
                        'equal to 0'),
         'The Job "bad" is invalid: spec.parallelism: Invalid value: -1: must be greater than or equal to 0'),
        (errors.Unavailable("the server is not reachable: failed to connect to all addresses; last error: "
                            "UNKNOWN: ipv4:127.0.0.1:6443: Failed to connect to remote host: Connection refused"),
         "The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?"),
        (errors.Unavailable("the server is not reachable: failed to connect to all addresses; last error: "
                            "UNAVAILABLE: ipv4:10.0.0.1:6443: No route to host"),
         "Unable to connect to the server: failed to connect to all addresses; last error: "
         "UNAVAILABLE: ipv4:10.0.0.1:6443: No route to host"),
        (CLIError("no last revision to roll back to"), "error: no last revision to roll back to"),
        (ValueError("invalid duration 'x'"), "error: invalid duration 'x'"),
    ],
)
def test_format_error(err: BaseException, want: str) -> None:
    assert format_error(err, "127.0.0.1:6443") == want


def test_kubectl_style_booleans() -> None:
    from ketch.cli.main import build_parser, normalize_bools

    build_parser()  # registers the boolean flags
    assert normalize_bools(["delete", "--wait=false", "job", "x"]) == ["delete", "--no-wait", "job", "x"]
    assert normalize_bools(["delete", "--wait=true"]) == ["delete", "--wait"]
    args = build_parser().parse_args(normalize_bools(["delete", "--wait", "job", "x"]))
    assert args.wait is True and args.targets == ["job", "x"]
