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

import runtime  # pylint: disable=g-bad-import-order

runtime.setup()  # Before TensorFlow loads: its oneDNN kernels on.
runtime.import_tensorflow_quietly()  # Without its C++ start-up lines.

import os
import sys
from typing import Sequence

from absl import app
from absl import flags

import assets
import checkpoints
import classification
import cli
import inference
import report

_ROOT = os.path.dirname(os.path.abspath(__file__))
_DATA = os.path.join(_ROOT, 'data')

_EVAL_TYPE = flags.DEFINE_enum(
    'eval_type',
    'joint',
    list(assets.EVAL_TYPES),
    'Which model: rgb, flow, joint (RGB + Flow logits summed) or rgb600 (the '
    'Kinetics-600 RGB model).',
)
_IMAGENET_PRETRAINED = flags.DEFINE_boolean(
    'imagenet_pretrained',
    True,
    'Use the checkpoints whose 2D weights were inflated from ImageNet '
    '(*_imagenet) rather than those trained from scratch (*_scratch). Write '
    '--imagenet_pretrained=false or --noimagenet_pretrained. Ignored for '
    'rgb600, which has only a from-scratch checkpoint.',
)
_DATA_DIR = flags.DEFINE_string(
    'data_dir',
    _DATA,
    "Folder laid out like the release's data/ (checkpoints/, label maps, "
    'samples): the defaults of the five flags below. `python fetch_assets.py '
    '--synthetic` writes random stand-ins to data/synthetic.',
)
_CHECKPOINT_DIR = flags.DEFINE_string(
    'checkpoint_dir',
    None,
    'Folder holding the release checkpoints as <name>/model.ckpt.*; default '
    '<data_dir>/checkpoints.',
)
_RGB_SAMPLE = flags.DEFINE_string(
    'rgb_sample',
    None,
    'RGB input, float32 [1, T, 224, 224, 3] in [-1, 1], T >= 9; default '
    '<data_dir>/v_CricketShot_g04_c01_rgb.npy.',
)
_FLOW_SAMPLE = flags.DEFINE_string(
    'flow_sample',
    None,
    'Flow input, float32 [1, T, 224, 224, 2] in [-1, 1], as many frames as '
    'the RGB input; default <data_dir>/v_CricketShot_g04_c01_flow.npy.',
)
_LABEL_MAP = flags.DEFINE_string(
    'label_map',
    None,
    'Kinetics-400 class names, one per line; default '
    '<data_dir>/label_map.txt.',
)
_LABEL_MAP_600 = flags.DEFINE_string(
    'label_map_600',
    None,
    'Kinetics-600 class names, one per line (for --eval_type=rgb600); default '
    '<data_dir>/label_map_600.txt.',
)
_ALLOW_OUT_OF_RANGE = flags.DEFINE_boolean(
    'allow_out_of_range',
    False,
    'Run inputs with values far outside [-1, 1] (e.g. RGB in [0, 255]) '
    'instead of refusing them; their logits are not meaningful.',
)
_RGB_CHECKPOINT = flags.DEFINE_string(
    'rgb_checkpoint', '', assets.CHECKPOINT_OVERRIDE_HELP['rgb']
)
_FLOW_CHECKPOINT = flags.DEFINE_string(
    'flow_checkpoint', '', assets.CHECKPOINT_OVERRIDE_HELP['flow']
)


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(
        f'Unexpected positional arguments {argv[1:]}. Flags take their value '
        'after "=": write --imagenet_pretrained=false (or '
        '--noimagenet_pretrained), not "--imagenet_pretrained false".'
    )
  data = _DATA_DIR.value
  checkpoint_dir = _CHECKPOINT_DIR.value or os.path.join(data, 'checkpoints')
  samples = {
      'rgb': _RGB_SAMPLE.value
      or os.path.join(data, 'v_CricketShot_g04_c01_rgb.npy'),
      'flow': _FLOW_SAMPLE.value
      or os.path.join(data, 'v_CricketShot_g04_c01_flow.npy'),
  }
  label_maps = {
      'kinetics400': _LABEL_MAP.value or os.path.join(data, 'label_map.txt'),
      'kinetics600': _LABEL_MAP_600.value
      or os.path.join(data, 'label_map_600.txt'),
  }
  cli.warn_if_synthetic(checkpoint_dir, *samples.values())
  inference.configure_threads()
  try:
    result = classification.classify_arrays(
        _EVAL_TYPE.value,
        _IMAGENET_PRETRAINED.value,
        checkpoint_dir,
        samples=samples,
        label_maps=label_maps,
        checkpoint_overrides={
            'rgb': _RGB_CHECKPOINT.value,
            'flow': _FLOW_CHECKPOINT.value,
        },
        allow_out_of_range=_ALLOW_OUT_OF_RANGE.value,
    )
  except (
      FileNotFoundError,
      checkpoints.CheckpointError,
      classification.InputError,
      report.LabelError,
  ) as e:
    if isinstance(e, FileNotFoundError):
      e = (
          f'{e}\nPass other paths with --data_dir, --checkpoint_dir, '
          '--rgb_sample, --flow_sample, --label_map or --label_map_600 (or '
          'try `python fetch_assets.py --synthetic` and '
          '--data_dir=data/synthetic, random weights).'
      )
    elif isinstance(e, classification.InputError) and 'allow it' in str(e):
      e = f'{e} with --allow_out_of_range'

    print(f'evaluate_sample: error: {e}', file=sys.stderr)
    return 1
  sys.stdout.write(report.format_report(result.logits, result.labels))
  return 0


if __name__ == '__main__':
  cli.run(main)
