#!/usr/bin/env bash
# Create .venv at the checkout's root (or bring an existing one back to the lock) and install Ketch
# with its dev dependencies at exactly the versions and hashes of requirements.lock, so a new release
# on the index (a grpcio-tools that writes different stubs, say) changes nothing until the lock does.
# Uses the pip that the venv comes with: no pip upgrade, nothing installed that the lock does not pin.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "setup.sh: .venv needs Python 3.11 or newer; remove .venv and set PYTHON" >&2; exit 1; }
pip=(.venv/bin/python -m pip --disable-pip-version-check)
# Installed versions that differ from the lock (newer or older) are replaced; matching ones are kept.
"${pip[@]}" install -q --require-hashes --no-deps -r requirements.lock
# pip refuses an editable install in hash-checking mode, hence a second step; its build backend
# (setuptools, wheel) comes from the lock through --no-build-isolation.
"${pip[@]}" install -q --no-deps --no-build-isolation -e .
