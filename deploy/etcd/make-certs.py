#!/usr/bin/env python3
"""Make the certificates of a TLS etcd cluster and of its clients, the Ketch control planes.

    .venv/bin/python deploy/etcd/make-certs.py --out etcd-pki \\
        --member etcd1=10.0.0.1 --member etcd2=10.0.0.2 --member etcd3=10.0.0.3

writes, under OUT (keys 0600):

    ca.crt, ca.key                 etcd's own CA (keep ca.key off the etcd machines)
    MEMBER/ca.crt                  for each member, to /etc/etcd/pki/ on its machine:
    MEMBER/server.crt, server.key    clients' connections (serverAuth and clientAuth: etcd's
                                     gateway dials the member itself with it)
    MEMBER/peer.crt, peer.key        other members' connections (both ways, so both usages)
    ketch-controlplane/ca.crt, client.crt, client.key
                                   for every control plane, to /etc/ketch/etcd/

Each member's certificates name its address, its name, 127.0.0.1 and localhost (a member checks
that a peer's certificate names the address the peer connects from, 127.0.0.1 on one machine). Run it again
with the same OUT to add a member or re-issue certificates: the CA found there is kept. It uses
the checkout's `ketch.security.certs` (ECDSA P-256, SHA-256), so run it with the repository's
venv; openssl or cfssl would do the same job.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout, for ketch.security

from ketch.security.certs import Authority, key_pem, write_private

DAY = 24 * 3600.0


def member(text: str) -> tuple[str, str]:
    """NAME=ADDRESS, as etcd's --initial-cluster names its members."""
    name, sep, address = text.partition("=")
    if not sep or not name or not address:
        raise argparse.ArgumentTypeError(f"--member {text!r}: expected NAME=ADDRESS, e.g. etcd1=10.0.0.1")
    return name, address


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def write(directory: Path, name: str, data: bytes, private: bool = False) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if private:
        write_private(directory / name, data)
    else:
        (directory / name).write_bytes(data)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="directory for the files (made if missing)")
    p.add_argument("--member", type=member, action="append", default=[], metavar="NAME=ADDRESS",
                   help="an etcd member: its --name and the address (IP or DNS name) peers and clients use")
    p.add_argument("--client", action="append", default=[], metavar="NAME",
                   help="a client certificate's common name (default: ketch-controlplane)")
    p.add_argument("--days", type=int, default=365, help="the leaf certificates' life (default 365)")
    args = p.parse_args(argv)
    if not args.member:
        p.error("at least one --member NAME=ADDRESS is required")

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if (out / "ca.crt").exists():
        ca = Authority.load((out / "ca.crt").read_bytes(), (out / "ca.key").read_bytes())
        print(f"reusing the CA in {out}")
    else:
        ca = Authority.create("etcd-ca")
        write(out, "ca.crt", ca.cert_pem)
        write(out, "ca.key", key_pem(ca.key), private=True)
    validity = args.days * DAY
    for name, address in args.member:
        sans = [address, name, "127.0.0.1", "localhost"]
        server = ca.issue(name, server=True, client=True, sans=sans, validity=validity)
        peer = ca.issue(name, server=True, client=True, sans=sans, validity=validity)
        where = out / name
        write(where, "ca.crt", ca.cert_pem)
        write(where, "server.crt", server.cert)
        write(where, "server.key", server.key, private=True)
        write(where, "peer.crt", peer.cert)
        write(where, "peer.key", peer.key, private=True)
        print(f"{where}/: server and peer certificates for {name} ({', '.join(s for s in sans if is_ip(s))})")
    for cn in args.client or ["ketch-controlplane"]:
        client = ca.issue(cn, client=True, validity=validity)
        where = out / cn
        write(where, "ca.crt", ca.cert_pem)
        write(where, "client.crt", client.cert)
        write(where, "client.key", client.key, private=True)
        print(f"{where}/: client certificate {cn}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
