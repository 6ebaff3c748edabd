#!/usr/bin/env bash
# deploy/README.md's high-availability walk-through on this machine alone: a 3-member etcd (TLS),
# three control planes and two agents on loopback (127.0.0.1-3), a Job, the leading control plane
# SIGKILLed, another one leading and the Job completing; then everything it started is stopped.
#   scripts/ha-local.sh [--data-dir DIR (keep data and logs)] [--job FILE] [--fast (short leases)]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || ./scripts/setup.sh
exec .venv/bin/python scripts/ha_local.py "$@"
