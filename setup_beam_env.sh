#!/usr/bin/env bash
# Creates .venv-beam (if needed): requirements.txt plus requirements-beam.txt.
# apache-beam pins protobuf and pillow below requirements.txt's versions, so
# it cannot share .venv; here pip picks versions that fit both files (the
# pillow pin is dropped and resolved). Run by run_tests.sh; safe to rerun.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
python=${PYTHON:-python3}
if [ ! -x .venv-beam/bin/python ]; then
  echo "Creating .venv-beam with $($python --version)" >&2
  "$python" -m venv .venv-beam
fi
stamp=.venv-beam/.requirements.sha1
want=$(cat requirements.txt requirements-beam.txt | sha1sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "Installing requirements.txt and requirements-beam.txt into .venv-beam" >&2
  sed '/^pillow==/d' requirements.txt > .venv-beam/requirements-base.txt
  .venv-beam/bin/python -m pip install --quiet --upgrade pip
  .venv-beam/bin/python -m pip install --quiet \
    -r .venv-beam/requirements-base.txt -r requirements-beam.txt
  echo "$want" > "$stamp"
fi
