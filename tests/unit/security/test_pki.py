"""The control plane's PKI on disk, the join token and the kubeconfig: what a user and an agent
rely on (DESIGN.md, security contract)."""

from __future__ import annotations

import hashlib
import re
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from controlplane import pkifiles as pki
from ketch.client import kubeconfig
from ketch.security import certs, jointoken


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_start_makes_the_files_and_later_starts_reuse_them(tmp_path: Path) -> None:
    made = pki.ensure(tmp_path, "127.0.0.1:6443")
    for name in ("pki/ca.crt", "pki/ca.key", "pki/server.crt", "pki/server.key", "admin.conf", "join-token"):
        assert (tmp_path / name).exists(), name
    for key in ("pki/ca.key", "pki/server.key", "pki/apiserver-kubelet-client.key", "admin.conf", "join-token"):
        assert _mode(tmp_path / key) == 0o600, key
    token_text = (tmp_path / "join-token").read_text().strip()
    m = re.fullmatch(r"K10([0-9a-f]{64})::([a-z0-9]{6})\.([a-z0-9]{16})", token_text)
    assert m is not None
    der = certs.load_cert((tmp_path / "pki/ca.crt").read_bytes()).public_bytes(serialization.Encoding.DER)
    assert m.group(1) == hashlib.sha256(der).hexdigest()
    ca_before = (tmp_path / "pki/ca.crt").read_bytes()
    server_before = (tmp_path / "pki/server.crt").read_bytes()
    again = pki.ensure(tmp_path, "127.0.0.1:6443")
    assert (tmp_path / "pki/ca.crt").read_bytes() == ca_before
    assert (tmp_path / "pki/server.crt").read_bytes() == server_before
    assert (tmp_path / "join-token").read_text().strip() == token_text
    assert again.join_token == made.join_token


def test_the_serving_certificate_covers_the_addresses_and_is_remade_for_a_new_san(tmp_path: Path) -> None:
    pki.ensure(tmp_path, "127.0.0.1:6443")
    cert = certs.load_cert((tmp_path / "pki/server.crt").read_bytes())
    assert {"127.0.0.1", "localhost"} <= certs.sans_of(cert)
    pki.ensure(tmp_path, "127.0.0.1:6443", ["ketch.example.com", "10.1.2.3"])
    cert2 = certs.load_cert((tmp_path / "pki/server.crt").read_bytes())
    assert {"ketch.example.com", "10.1.2.3", "127.0.0.1"} <= certs.sans_of(cert2)
    ca = certs.load_cert((tmp_path / "pki/ca.crt").read_bytes())
    assert certs.verify_issued_by(cert2, [ca])


def test_admin_conf_is_a_kubeconfig_for_admin_in_system_masters(tmp_path: Path) -> None:
    pki.ensure(tmp_path, "0.0.0.0:7443")
    cfg = kubeconfig.load(tmp_path / "admin.conf")
    creds = cfg.resolve()
    assert creds.server == "127.0.0.1:7443"  # a wildcard listen host is reached on loopback
    assert creds.client_cert is not None and creds.ca == (tmp_path / "pki/ca.crt").read_bytes()
    assert certs.user_of(certs.load_cert(creds.client_cert)) == ("admin", ("system:masters",))
    doc = kubeconfig.redacted(cfg)
    assert doc["users"][0]["user"]["client-key-data"] == "DATA+OMITTED"
    assert doc["clusters"][0]["cluster"]["certificate-authority-data"] == "DATA+OMITTED"


def test_validity_is_kubeadms() -> None:
    p = pki.in_memory()
    start, end = certs.lifetime(p.ca.cert)
    assert 9.9 * 365 * 86400 < end - start < 10.1 * 365 * 86400
    start, end = certs.lifetime(certs.load_cert(p.server_cert))
    assert 364 * 86400 < end - start < 366 * 86400


@pytest.mark.parametrize(("text", "why"), [
    ("abcdef.0123456789abcdef", "no CA hash"),
    ("hello", "starts with K10"),
    ("K10" + "0" * 64 + "::ABCDEF.0123456789abcdef", "malformed"),
])
def test_a_bad_join_token_is_refused_with_the_reason(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        jointoken.parse(text)


def test_kubeconfig_server_override_and_token_replace_the_contexts() -> None:
    cfg = kubeconfig.single("c", "https://10.0.0.1:6443", b"CA", "u", client_cert=b"C", client_key=b"K")
    creds = cfg.resolve(server="127.0.0.1:1", token="t")
    assert (creds.server, creds.token, creds.client_cert, creds.ca) == ("127.0.0.1:1", "t", None, b"CA")
    with pytest.raises(kubeconfig.ConfigError, match='context "nope" does not exist'):
        cfg.resolve("nope")
