#!/usr/bin/env bash
# One command from a fresh clone: install everything the tests need, lint, run the tests.
# Needs python3 (3.10+) and npm (for Azurite, the Azure Blob emulator the tests start).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
npm install --no-audit --no-fund --no-package-lock --silent
.venv/bin/ruff check .
# two pytest workers: most tests wait on processes they start (clusters, runners, servers)
.venv/bin/python -m pytest -q -p no:cacheprovider -n 2 "$@"
