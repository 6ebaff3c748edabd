#!/usr/bin/env bash
# Set everything up (.venv at the checkout's root) and run the main job: a local cluster on the
# embedded SQLite store runs the pi Job to completion and shows its status and output.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/python scripts/demo.py
