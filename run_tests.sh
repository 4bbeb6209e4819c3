#!/usr/bin/env bash
# Every test from a fresh clone: set up .venv, then run all *_test.py.
# Arguments go to pytest, e.g. -k checkpoints.
set -euo pipefail
cd "$(dirname "$0")"
bash setup_env.sh
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-3}
.venv/bin/python -m pytest "$@"
