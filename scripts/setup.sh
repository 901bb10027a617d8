#!/usr/bin/env bash
# Create .venv and install daskprs (editable) with the extras given, comma-separated:
#   bash scripts/setup.sh examples     what scripts/demo.sh needs (scikit-learn, joblib)
#   bash scripts/setup.sh test         what scripts/test.sh needs (every extra, pytest, ...)
# EXTRAS=... works as well; with neither, daskprs alone is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
EXTRAS=${1:-${EXTRAS:-}}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".${EXTRAS:+[$EXTRAS]}"
