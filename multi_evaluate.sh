#!/usr/bin/env bash
# Writes the report of every checkpoint combination to out/ (or $OUT_DIR):
#   imagenet_{rgb,flow,joint}.txt     *_imagenet checkpoints
#   no_imagenet_{rgb,flow,joint}.txt  *_scratch checkpoints
#   rgb600.txt                        rgb_scratch_kin600 (Kinetics-600)
# Any arguments are passed to every evaluate_sample.py call, e.g.
#   bash multi_evaluate.sh --checkpoint_dir=/elsewhere/checkpoints
# Each report is written to a temporary file and renamed into place, so a
# failed run never leaves a partial report behind.
set -euo pipefail
cd "$(dirname "$0")"
# The project's environment (bash setup_env.sh) when there is one, so that
# the script works without activating it.
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ]; then
  PYTHON=.venv/bin/python
fi
python=${PYTHON:-python3}
out_dir=${OUT_DIR:-out}
mkdir -p "$out_dir"

run() {
  local name=$1
  shift
  local tmp="$out_dir/.$name.tmp"
  echo "== $out_dir/$name: evaluate_sample.py $*" >&2
  if "$python" evaluate_sample.py "$@" > "$tmp"; then
    mv "$tmp" "$out_dir/$name"
  else
    rm -f "$tmp"
    return 1
  fi
}

run imagenet_rgb.txt --eval_type=rgb --imagenet_pretrained=true "$@"
run imagenet_flow.txt --eval_type=flow --imagenet_pretrained=true "$@"
run imagenet_joint.txt --eval_type=joint --imagenet_pretrained=true "$@"
run no_imagenet_rgb.txt --eval_type=rgb --imagenet_pretrained=false "$@"
run no_imagenet_flow.txt --eval_type=flow --imagenet_pretrained=false "$@"
run no_imagenet_joint.txt --eval_type=joint --imagenet_pretrained=false "$@"
run rgb600.txt --eval_type=rgb600 "$@"
