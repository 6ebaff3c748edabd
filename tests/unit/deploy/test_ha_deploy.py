"""The HA deployment files (deploy/etcd/, deploy/controlplane-ha.env): systemd accepts the etcd
unit, etcd.env sets only flags etcd has, with TLS and client certificates on both of its ports,
make-certs.py's certificates are the ones those settings need, and the control plane's HA env
file makes a command line ketch-controlplane accepts, reading its etcd files where its sandboxed
unit can."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from controlplane.leaderelection import settings_of
from controlplane.main import _etcd_tls
from controlplane.main import build_parser as controlplane_parser
from controlplane.storage.etcd import parse_endpoints
from ketch.security.certs import load_cert, sans_of, verify_issued_by
from ketch.testing.etcd import etcd_binary

from .unitfile import CONTROLPLANE_UNIT, DEPLOY, environment, exec_start, read_env_file, read_unit

ETCD_DIR = DEPLOY / "etcd"
ETCD_UNIT = ETCD_DIR / "etcd.service"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
ETCD = etcd_binary()


def etcd_env() -> dict[str, str]:
    return read_env_file(ETCD_DIR / "etcd.env")


@pytest.mark.skipif(SYSTEMD_ANALYZE is None or ETCD is None, reason="needs systemd-analyze and an etcd binary")
def test_systemd_accepts_the_etcd_unit(tmp_path: Path) -> None:
    text = ETCD_UNIT.read_text()
    assert "ExecStart=/usr/bin/etcd\n" in text and "EnvironmentFile=/etc/etcd/etcd.env\n" in text
    unit = tmp_path / "etcd.service"
    unit.write_text(text.replace("/usr/bin/etcd", str(ETCD)).replace("/etc/etcd/etcd.env", str(tmp_path / "e.env")))
    shutil.copy(ETCD_DIR / "etcd.env", tmp_path / "e.env")
    result = subprocess.run([str(SYSTEMD_ANALYZE), "verify", "--man=no", str(unit)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr
    parsed = read_unit(ETCD_UNIT)
    assert (parsed.value("User"), parsed.value("StateDirectory"), parsed.value("Type")) == ("etcd", "etcd", "notify")


@pytest.mark.skipif(ETCD is None, reason="needs an etcd binary")
def test_etcd_env_sets_only_flags_etcd_has() -> None:
    """etcd maps --some-flag to ETCD_SOME_FLAG and only warns about a variable it does not know."""
    help_text = subprocess.run([str(ETCD), "--help"], capture_output=True, text=True, timeout=30).stdout
    flags = set(re.findall(r"^\s+--([a-z0-9-]+)", help_text, re.M))
    assert "client-cert-auth" in flags  # the help was read
    unknown = [name for name in etcd_env() if name[len("ETCD_"):].lower().replace("_", "-") not in flags]
    assert not unknown, f"etcd.env sets variables etcd does not read: {unknown}"


def test_etcd_env_is_a_tls_member_of_a_three_member_cluster() -> None:
    env = etcd_env()
    members = dict(m.split("=", 1) for m in env["ETCD_INITIAL_CLUSTER"].split(","))
    assert len(members) == 3 and members[env["ETCD_NAME"]] == env["ETCD_INITIAL_ADVERTISE_PEER_URLS"]
    assert all(url.startswith("https://") for url in members.values())
    for urls in ("ETCD_LISTEN_PEER_URLS", "ETCD_LISTEN_CLIENT_URLS", "ETCD_ADVERTISE_CLIENT_URLS"):
        assert all(u.startswith("https://") for u in env[urls].split(",")), urls
    assert env["ETCD_CLIENT_CERT_AUTH"] == env["ETCD_PEER_CLIENT_CERT_AUTH"] == "true"
    for name in ("CERT_FILE", "KEY_FILE", "TRUSTED_CA_FILE"):
        assert env[f"ETCD_{name}"].startswith("/etc/etcd/pki/") and env[f"ETCD_PEER_{name}"].startswith("/etc/etcd/")
    assert env["ETCD_DATA_DIR"] == "/var/lib/etcd"


def test_make_certs_makes_what_etcd_env_and_the_control_plane_read(tmp_path: Path) -> None:
    out = tmp_path / "pki"
    argv = [sys.executable, str(ETCD_DIR / "make-certs.py"), "--out", str(out),
            "--member", "etcd1=10.0.0.1", "--member", "etcd2=10.0.0.2", "--member", "etcd3=etcd3.example.com"]
    subprocess.run(argv, check=True, capture_output=True, timeout=60)
    ca_pem = (out / "ca.crt").read_bytes()
    ca = load_cert(ca_pem)
    for name, address in (("etcd1", "10.0.0.1"), ("etcd3", "etcd3.example.com")):
        for kind in ("server", "peer"):
            cert = load_cert((out / name / f"{kind}.crt").read_bytes())
            assert verify_issued_by(cert, [ca])
            assert {address, "127.0.0.1"} <= sans_of(cert)
            usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
            assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= usages
            assert (out / name / f"{kind}.key").stat().st_mode & 0o777 == 0o600
        assert (out / name / "ca.crt").read_bytes() == (out / "ca.crt").read_bytes()
    client = load_cert((out / "ketch-controlplane" / "client.crt").read_bytes())
    assert verify_issued_by(client, [ca])
    assert set(client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == {
        ExtendedKeyUsageOID.CLIENT_AUTH}
    # Run again to add a member: the CA stays, so the members made first still trust the new one.
    subprocess.run([*argv[:4], "--member", "etcd4=10.0.0.4"], check=True, capture_output=True, timeout=60)
    assert (out / "ca.crt").read_bytes() == ca_pem
    assert verify_issued_by(load_cert((out / "etcd4" / "peer.crt").read_bytes()), [ca])


def ha_argv(tmp_path: Path, extra: str = "") -> list[str]:
    """ketch-controlplane's command line from its unit with controlplane-ha.env installed."""
    env_dir = tmp_path / "etc-ketch"
    env_dir.mkdir(exist_ok=True)
    text = (DEPLOY / "controlplane-ha.env").read_text()
    if extra:
        text = text.replace("--tls-san 10.0.0.1\n", f"--tls-san 10.0.0.1 {extra}\n")
    (env_dir / "controlplane.env").write_text(text)
    unit = read_unit(CONTROLPLANE_UNIT)
    return exec_start(unit, environment(unit, env_dir))


def test_the_ha_env_file_makes_a_command_line_the_control_plane_accepts(tmp_path: Path) -> None:
    args = controlplane_parser().parse_args(ha_argv(tmp_path)[1:])
    assert [h for h, _ in parse_endpoints(args.store)] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    election = settings_of(args)
    assert election.enabled and election.advertise_address == "10.0.0.1"
    assert election.config.lease_duration == 15.0
    tls = _etcd_tls(args)
    assert tls is not None
    unit = read_unit(CONTROLPLANE_UNIT)
    hidden = ["/home", "/root", "/run/user"] if unit.value("ProtectHome") == "yes" else []
    hidden += [p for v in unit.values("InaccessiblePaths") for p in v.split()]
    for path in (tls.cafile, tls.certfile, tls.keyfile):
        assert str(path).startswith("/etc/ketch/etcd/"), path
        assert not any(str(path).startswith(h + "/") for h in hidden), path
    assert args.tls_san == ["ketch.example.com", "10.0.0.1"]
    assert not args.join  # replica 1 makes the CA

    args = controlplane_parser().parse_args(ha_argv(tmp_path, "--join 10.0.0.1:6443")[1:])
    assert args.join == "10.0.0.1:6443"
    assert read_env_file(DEPLOY / "controlplane-ha.env")["KETCH_TOKEN"] == ""
