"""Inflates TF-slim's 2D ImageNet Inception-v1 into an I3D checkpoint.

Every NxN kernel becomes a TxNxN one (repeated over time, divided by T), the
BatchNorm statistics are copied, and the result is written with the release's
names, so every command here loads it (see inflation.py for the details and
the boring-video proof).

Usage (from the repository root; first `python fetch_inception_v1.py`):

  python inflate.py                                  # RGB, new 400-class head
  python inflate.py --stream=flow                    # Flow, TSN-style conv 1
  python inflate.py --num_classes=101 \
      --output=data/checkpoints/rgb_ucf101_init/model.ckpt
  python inflate.py --head=imagenet                  # Keep the 1001 classes
"""

from __future__ import annotations

import runtime  # pylint: disable=g-bad-import-order

runtime.setup()  # Before TensorFlow loads: its oneDNN kernels on.

import os
import sys
from typing import Sequence

from absl import app
from absl import flags

import assets
import checkpoints
import cli
import inflation

_SOURCE = flags.DEFINE_string(
    'source',
    os.path.join(
        assets.REPO_ROOT, assets.INCEPTION_V1_DIR, assets.INCEPTION_V1_MEMBER
    ),
    'The 2D TF-slim Inception-v1 checkpoint: the V1 file inception_v1.ckpt '
    'or a V2 prefix.',
)
_STREAM = flags.DEFINE_enum(
    'stream',
    'rgb',
    list(inflation.STREAMS),
    'Which I3D stream to make: rgb (3 input channels, names under '
    'RGB/inception_i3d/) or flow (2 channels, Flow/inception_i3d/).',
)
_OUTPUT = flags.DEFINE_string(
    'output',
    None,
    'Prefix of the I3D checkpoint to write; default '
    'data/checkpoints/<stream>_inflated/model.ckpt.',
)
_HEAD = flags.DEFINE_enum(
    'head',
    'new',
    list(inflation.HEADS),
    'The logits layer: '
    + '; '.join(f'{k}: {v}' for k, v in inflation.HEADS.items())
    + '.',
)
_NUM_CLASSES = flags.DEFINE_integer(
    'num_classes', 400, 'Classes of the new head (--head=new).', lower_bound=1
)
_HEAD_INIT = flags.DEFINE_enum(
    'head_init',
    'zeros',
    list(inflation.HEAD_INITS),
    'How the new head starts: '
    + '; '.join(f'{k}: {v}' for k, v in inflation.HEAD_INITS.items())
    + '.',
)
_FLOW_INIT = flags.DEFINE_enum(
    'flow_init',
    'average',
    list(inflation.FLOW_INITS),
    "The flow stream's first conv, 3 -> 2 input channels: "
    + '; '.join(f'{k}: {v}' for k, v in inflation.FLOW_INITS.items())
    + '.',
)
_SEED = flags.DEFINE_integer(
    'seed', 0, 'Seed of --head_init=normal and --flow_init=random.'
)
_OVERWRITE = flags.DEFINE_boolean(
    'overwrite', False, 'Replace a checkpoint already at --output.'
)


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(
        f'Unexpected positional arguments: {argv[1:]}; '
        'all options are flags, see --help.'
    )
  output = _OUTPUT.value or os.path.join(
      assets.REPO_ROOT,
      'data',
      'checkpoints',
      f'{_STREAM.value}_inflated',
      'model.ckpt',
  )
  try:
    summary = inflation.inflate_checkpoint(
        _SOURCE.value,
        output,
        stream=_STREAM.value,
        head=_HEAD.value,
        num_classes=_NUM_CLASSES.value,
        flow_init=_FLOW_INIT.value,
        head_init=_HEAD_INIT.value,
        seed=_SEED.value,
        overwrite=_OVERWRITE.value,
    )
  except FileExistsError as e:
    print(
        f'inflate.py: error: {e}; pass --overwrite to replace it.',
        file=sys.stderr,
    )
    return 1
  except checkpoints.CheckpointError as e:
    print(f'inflate.py: error: {e}', file=sys.stderr)
    return 1
  print(summary.line())
  return 0


if __name__ == '__main__':
  cli.run(main)
