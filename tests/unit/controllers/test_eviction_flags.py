"""The node lifecycle controller's zone flags: kube-controller-manager's names and defaults, and a
rate or fraction that means nothing refused naming the flag, before anything starts."""

from __future__ import annotations

import pytest

from controlplane.main import build_parser


def test_defaults_are_kube_controller_managers() -> None:
    args = build_parser().parse_args([])
    assert (args.node_eviction_rate, args.secondary_node_eviction_rate) == (0.1, 0.01)
    assert (args.unhealthy_zone_threshold, args.large_cluster_size_threshold) == (0.55, 50)


@pytest.mark.parametrize(("flag", "value", "why"), [
    ("--node-eviction-rate", "-1", "must be a finite number of at least 0"),
    ("--node-eviction-rate", "nan", "must be a finite number of at least 0"),
    ("--secondary-node-eviction-rate", "inf", "must be a finite number of at least 0"),
    ("--secondary-node-eviction-rate", "fast", "a number of nodes per second"),
    ("--unhealthy-zone-threshold", "0", "must be more than 0 and at most 1"),
    ("--unhealthy-zone-threshold", "1.5", "must be more than 0 and at most 1"),
    ("--unhealthy-zone-threshold", "nan", "must be more than 0 and at most 1"),
])
def test_a_meaningless_value_is_refused_naming_the_flag(flag: str, value: str, why: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args([flag, value])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and why in err


def test_a_zero_rate_and_a_whole_zone_threshold_are_accepted() -> None:
    args = build_parser().parse_args(["--node-eviction-rate", "0", "--unhealthy-zone-threshold", "1"])
    assert (args.node_eviction_rate, args.unhealthy_zone_threshold) == (0.0, 1.0)
