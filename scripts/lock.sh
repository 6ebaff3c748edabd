#!/usr/bin/env bash
# Regenerate requirements.lock: exact versions, with the hash of every file of each release, of all
# runtime and dev dependencies (setuptools and wheel too), resolved for CPython 3.11 in a throwaway
# venv so nothing of .venv leaks in. With no arguments every package moves to its newest release
# that pyproject.toml allows; arguments go to pip-compile instead (`scripts/lock.sh -P grpcio-tools`
# moves one package). After a grpcio-tools change run `make proto` and raise the floors in
# pyproject.toml to what the regenerated stubs check (see the README).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
  || { echo "lock.sh: the lock is for CPython 3.11; set PYTHON to one" >&2; exit 1; }
# Only the public index: no local find-links, mirrors or constraints of this machine's pip config
# end up in the lock or decide which files get hashed.
export PIP_CONFIG_FILE=/dev/null
unset PIP_FIND_LINKS PIP_EXTRA_INDEX_URL PIP_INDEX_URL PIP_CONSTRAINT
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m venv "$tmp/venv"
# pip-tools 7.5 wants a newer pip than some Pythons bundle; this venv is thrown away afterwards.
"$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check 'pip==25.3' 'pip-tools==7.5.2'
if [ "$#" -eq 0 ]; then set -- --upgrade; fi
CUSTOM_COMPILE_COMMAND="scripts/lock.sh" "$tmp/venv/bin/pip-compile" -q \
  --generate-hashes --allow-unsafe --extra dev --all-build-deps --strip-extras --no-emit-index-url --no-emit-find-links \
  --output-file requirements.lock "$@" pyproject.toml
echo "requirements.lock written; run ./scripts/setup.sh to bring .venv to it" >&2
