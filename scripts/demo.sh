#!/usr/bin/env bash
# One command from a fresh clone: install daskprs and its examples extra, make data and a
# model, score 1,000,000 rows.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh examples
.venv/bin/python examples/demo/make_data.py --rows 1000000 --files 4 --out demo-data
.venv/bin/daskprs run conf/demo.yaml "$@"
