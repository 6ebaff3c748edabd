#!/usr/bin/env python3
"""Re-make ketch/security/anonymous.py: the public no-identity client CA and certificate (see
that module for why it exists). Every client and server must carry the same one, so run this
only for a release that may break old agents' first join."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ketch.security import certs

CENTURY = 100 * 365 * 24 * 3600.0


def main() -> None:
    target = Path(__file__).resolve().parents[1] / "ketch" / "security" / "anonymous.py"
    text = target.read_text()
    head = text.split("\nCA_CERT = ", 1)[0]
    ca = certs.Authority.create("ketch public no-identity CA", validity=CENTURY)
    leaf = ca.issue("ketch:no-identity", client=True, validity=CENTURY)
    def literal(pem: bytes) -> str:
        return 'b"""\\\n' + pem.decode() + '"""'

    target.write_text(f"{head}\nCA_CERT = {literal(certs.cert_pem(ca.cert))}\n\nCERT = {literal(leaf.cert)}\n\n"
                      f"KEY = {literal(leaf.key)}\n")


if __name__ == "__main__":
    main()
