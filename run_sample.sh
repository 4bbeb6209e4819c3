#!/usr/bin/env bash
# The main job from a fresh clone: set up .venv, fetch the release assets
# that are missing (verified against their git blob ids), and classify the
# cricket sample. Arguments go to evaluate_sample.py, e.g. --eval_type=rgb.
set -euo pipefail
cd "$(dirname "$0")"
bash setup_env.sh
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
.venv/bin/python fetch_assets.py
.venv/bin/python evaluate_sample.py "$@"
