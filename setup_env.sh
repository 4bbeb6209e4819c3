#!/usr/bin/env bash
# Creates .venv (if needed) and installs the pinned requirements into it.
# Sourced by run_sample.sh and run_tests.sh; safe to run again. Arguments are
# requirement files (default requirements.txt), e.g.
#   bash setup_env.sh requirements.txt requirements-export.txt
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
python=${PYTHON:-python3}
files=("${@:-requirements.txt}")
if [ ! -x .venv/bin/python ]; then
  echo "Creating .venv with $($python --version)" >&2
  "$python" -m venv .venv
fi
stamp=.venv/.requirements.sha1
want=$(cat "${files[@]}" | sha1sum | cut -d' ' -f1)
if ! grep -qx "$want" "$stamp" 2>/dev/null; then
  echo "Installing ${files[*]} into .venv" >&2
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet "${files[@]/#/-r}"
  echo "$want" >> "$stamp"
fi
