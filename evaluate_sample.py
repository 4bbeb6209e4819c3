r"""Classifies the release's cricket sample with the released checkpoints.

Loads the RGB and/or Flow I3D checkpoints, runs them on the sample inputs,
sums the streams' logits and prints the top 20 Kinetics classes in the
release's format (see out/*.txt):

  python fetch_assets.py       # once: the checkpoints and samples into data/
  python evaluate_sample.py                          # joint, ImageNet-pretrained
  python evaluate_sample.py --eval_type=rgb
  python evaluate_sample.py --eval_type=flow --imagenet_pretrained=false
  python evaluate_sample.py --eval_type=rgb600       # Kinetics-600 classes

Checkpoints used (data/checkpoints/<name>/model.ckpt):
  rgb, flow, joint: rgb_imagenet / flow_imagenet, or rgb_scratch /
    flow_scratch with --imagenet_pretrained=false.
  rgb600: rgb_scratch_kin600 always; the release has no ImageNet-pretrained
    Kinetics-600 checkpoint.
"""

from __future__ import annotations

import os
import sys
from typing import Dict, Sequence

from absl import app
from absl import flags
from absl import logging
import numpy as np

import assets
import checkpoints
import inference
import report

_ROOT = os.path.dirname(os.path.abspath(__file__))
_DATA = os.path.join(_ROOT, 'data')

_EVAL_TYPE = flags.DEFINE_enum(
    'eval_type', 'joint', list(assets.EVAL_TYPES),
    'Which model: rgb, flow, joint (RGB + Flow logits summed) or rgb600 (the '
    'Kinetics-600 RGB model).')
_IMAGENET_PRETRAINED = flags.DEFINE_boolean(
    'imagenet_pretrained', True,
    'Use the checkpoints whose 2D weights were inflated from ImageNet '
    '(*_imagenet) rather than those trained from scratch (*_scratch). Write '
    '--imagenet_pretrained=false or --noimagenet_pretrained. Ignored for '
    'rgb600, which has only a from-scratch checkpoint.')
_CHECKPOINT_DIR = flags.DEFINE_string(
    'checkpoint_dir', os.path.join(_DATA, 'checkpoints'),
    'Folder holding the release checkpoints as <name>/model.ckpt.*.')
_RGB_SAMPLE = flags.DEFINE_string(
    'rgb_sample', os.path.join(_DATA, 'v_CricketShot_g04_c01_rgb.npy'),
    'RGB input, float32 [1, T, 224, 224, 3] in [-1, 1].')
_FLOW_SAMPLE = flags.DEFINE_string(
    'flow_sample', os.path.join(_DATA, 'v_CricketShot_g04_c01_flow.npy'),
    'Flow input, float32 [1, T, 224, 224, 2] in [-1, 1].')
_LABEL_MAP = flags.DEFINE_string(
    'label_map', os.path.join(_DATA, 'label_map.txt'),
    'Kinetics-400 class names, one per line.')
_LABEL_MAP_600 = flags.DEFINE_string(
    'label_map_600', os.path.join(_DATA, 'label_map_600.txt'),
    'Kinetics-600 class names, one per line (for --eval_type=rgb600).')
_INFERENCE_PATH = flags.DEFINE_enum(
    'inference_path', inference.DEFAULT_PATH, list(inference.PATHS),
    'How to run the network: "fast" folds BatchNorm into the convolutions '
    '(same logits to 1e-4); "plain" runs the Sonnet module as built.')

_CHANNELS = {'rgb': 3, 'flow': 2}


class InputError(ValueError):
  """A sample input file is missing or malformed."""


def load_sample(path: str, stream: str) -> np.ndarray:
  """Loads and checks one stream's sample input."""
  try:
    sample = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise InputError(f'Cannot read the {stream} sample {path!r}: {e}. Run '
                     '`python fetch_assets.py` to fetch it again.') from e
  channels = _CHANNELS[stream]
  if (sample.ndim != 5 or sample.shape[-1] != channels
      or sample.shape[2:4] != (224, 224)):
    raise InputError(
        f'The {stream} sample {path!r} must be shaped [batch, frames, 224, '
        f'224, {channels}]; got {list(sample.shape)}.')
  if not np.issubdtype(sample.dtype, np.floating):
    raise InputError(f'The {stream} sample {path!r} must be float32 in '
                     f'[-1, 1]; got dtype {sample.dtype}.')
  return sample.astype(np.float32, copy=False)


def _missing_message(paths: Dict[str, str]) -> str:
  """Says what to run, or which flag to fix, for each missing file."""
  missing = {what: p for what, p in paths.items() if not os.path.exists(p)}
  release = [os.path.relpath(p, _ROOT) for p in missing.values()
             if os.path.relpath(p, _ROOT) in assets.RELEASE_BLOBS]
  lines = ['Missing input files:']
  lines += [f'  {what}: {p}' for what, p in missing.items()]
  if release:
    lines.append(assets.fetch_hint(release, root=_ROOT))
  others = len(missing) - len(release)
  if others:
    lines.append('Files outside the release layout must be passed with '
                 '--checkpoint_dir, --rgb_sample, --flow_sample, --label_map '
                 'or --label_map_600.')
  return '\n'.join(lines)


def evaluate(eval_type: str, imagenet_pretrained: bool, checkpoint_dir: str,
             samples: Dict[str, str], label_maps: Dict[str, str],
             inference_path: str = inference.DEFAULT_PATH) -> str:
  """Runs the evaluation and returns the report text.

  Args:
    eval_type: one of assets.EVAL_TYPES.
    imagenet_pretrained: see --imagenet_pretrained.
    checkpoint_dir: folder of <name>/model.ckpt checkpoints.
    samples: stream -> sample .npy path.
    label_maps: 'kinetics400' and 'kinetics600' -> label map path.
    inference_path: one of inference.PATHS.

  Raises:
    FileNotFoundError: with a message saying what to fetch or pass.
    checkpoints.CheckpointError, InputError, report.LabelError: bad inputs.
  """
  names = assets.checkpoint_names(eval_type, imagenet_pretrained)
  if eval_type == 'rgb600' and imagenet_pretrained:
    logging.info('rgb600: the release has no ImageNet-pretrained Kinetics-600 '
                 'checkpoint; using rgb_scratch_kin600.')
  label_map = label_maps['kinetics600' if eval_type == 'rgb600'
                         else 'kinetics400']
  prefixes = {s: os.path.join(checkpoint_dir, n, 'model.ckpt')
              for s, n in names.items()}
  needed = {'label map': label_map}
  for stream, prefix in prefixes.items():
    needed[f'{stream} checkpoint index'] = prefix + '.index'
    needed[f'{stream} checkpoint data'] = (
        prefix + '.data-00000-of-00001')
    needed[f'{stream} sample'] = samples[stream]
  if not all(os.path.exists(p) for p in needed.values()):
    raise FileNotFoundError(_missing_message(needed))

  total = None
  labels = None
  for stream, prefix in prefixes.items():
    logging.info('%s: restoring %s', stream, prefix)
    model = checkpoints.load_model(prefix)
    if labels is None:
      labels = report.load_labels(label_map, model.num_classes)
    sample = load_sample(samples[stream], stream)
    predictor = inference.make_predictor(model, path=inference_path)
    logits = predictor.logits(sample)
    total = logits if total is None else total + logits
  return report.format_report(total[0], labels)


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(
        f'Unexpected positional arguments {argv[1:]}. Flags take their value '
        'after "=": write --imagenet_pretrained=false (or '
        '--noimagenet_pretrained), not "--imagenet_pretrained false".')
  inference.configure_threads()
  try:
    text = evaluate(
        _EVAL_TYPE.value, _IMAGENET_PRETRAINED.value, _CHECKPOINT_DIR.value,
        samples={'rgb': _RGB_SAMPLE.value, 'flow': _FLOW_SAMPLE.value},
        label_maps={'kinetics400': _LABEL_MAP.value,
                    'kinetics600': _LABEL_MAP_600.value},
        inference_path=_INFERENCE_PATH.value)
  except (FileNotFoundError, checkpoints.CheckpointError, InputError,
          report.LabelError) as e:
    print(f'ERROR: {e}', file=sys.stderr)
    return 1
  sys.stdout.write(text)
  return 0


if __name__ == '__main__':
  app.run(main)
