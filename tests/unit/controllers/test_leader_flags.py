"""The control plane's leader-election flags: kube-controller-manager's names and defaults, on by
default only with etcd, the advertise address defaulting to the listen host and ending the
Lease's holderIdentity, and bad values refused naming the flag."""

from __future__ import annotations

import pytest

from controlplane import leaderelection
from controlplane.controllers.leader import holder_identity
from controlplane.main import build_parser


def settings(*argv: str) -> leaderelection.Settings:
    return leaderelection.settings_of(build_parser().parse_args(list(argv)))


def test_defaults_are_kube_controller_managers_and_off_without_etcd() -> None:
    s = settings()
    assert not s.enabled
    assert (s.config.lease_duration, s.config.renew_deadline, s.config.retry_period) == (15.0, 10.0, 2.0)
    assert s.advertise_address == "127.0.0.1"
    assert not settings("--store", "memory").enabled


def test_on_by_default_with_etcd_and_switchable_both_ways() -> None:
    assert settings("--store", "etcd://127.0.0.1:2379").enabled
    assert settings("--store", "etcd://127.0.0.1:2379,127.0.0.2:2379").enabled
    assert not settings("--store", "etcd://127.0.0.1:2379", "--leader-elect=false").enabled
    assert settings("--leader-elect").enabled
    assert settings("--leader-elect=true").enabled
    assert settings("--leader-elect", "true").enabled
    assert not settings("--leader-elect", "false").enabled


def test_the_knobs_take_durations() -> None:
    s = settings("--leader-elect", "--leader-elect-lease-duration", "30s", "--leader-elect-renew-deadline", "20s",
                 "--leader-elect-retry-period", "500ms")
    assert (s.config.lease_duration, s.config.renew_deadline, s.config.retry_period) == (30.0, 20.0, 0.5)


def test_the_advertise_address_defaults_to_the_listen_host() -> None:
    assert settings("--listen", "10.1.2.3:7443").advertise_address == "10.1.2.3"
    assert settings("--listen", "[::1]:7443").advertise_address == "::1"
    assert settings("--listen", "cp1.example:7443,127.0.0.1:7443").advertise_address == "cp1.example"
    assert settings("--listen", "0.0.0.0:7443").advertise_address not in ("", "0.0.0.0")
    assert settings("--listen", "10.1.2.3:7443", "--advertise-address", "192.0.2.7").advertise_address == "192.0.2.7"


def test_the_holder_identity_is_unique_and_ends_with_the_advertise_address() -> None:
    a, b = holder_identity("192.0.2.7", hostname="cp1"), holder_identity("192.0.2.7", hostname="cp1")
    assert a != b
    assert a.startswith("cp1_") and a.endswith("_192.0.2.7")


@pytest.mark.parametrize(("argv", "message"), [
    (["--leader-elect-lease-duration", "10s"], "--leader-elect-lease-duration 10s: must be greater than "
                                               "--leader-elect-renew-deadline 10s"),
    (["--leader-elect-renew-deadline", "2s"], "--leader-elect-renew-deadline 2s: must be greater than 1.2 x "
                                              "--leader-elect-retry-period 2s"),
    (["--leader-elect-retry-period", "0s"], "--leader-elect-retry-period 0s: must be positive"),
    (["--advertise-address", "10.0.0.1:6443"], "--advertise-address '10.0.0.1:6443': a host without a port"),
])
def test_bad_values_are_refused_naming_the_flag(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError) as err:
        settings("--leader-elect", *argv)
    assert message in str(err.value)
    # Not checked when leader election is off: the flags do nothing then.
    settings("--leader-elect=false", *argv)


def test_a_bad_boolean_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--leader-elect=maybe"])
    assert "invalid boolean 'maybe'" in capsys.readouterr().err
