"""Downloads TF-slim's ImageNet Inception-v1 and checks it, for inflate.py.

Gets http://download.tensorflow.org/models/inception_v1_2016_08_28.tar.gz,
extracts inception_v1.ckpt and checks that it holds exactly the tensors, by
name and shape, of slim's Inception-v1 with 1001 classes.

Usage (from the repository root):

  python fetch_inception_v1.py
  # Offline: download the archive elsewhere, then either put it at
  # data/imagenet/inception_v1/inception_v1_2016_08_28.tar.gz or run
  python fetch_inception_v1.py --source_file=~/inception_v1_2016_08_28.tar.gz
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
import cli
import inception_v1

_DEST_DIR = flags.DEFINE_string(
    'dest_dir',
    os.path.join(assets.REPO_ROOT, assets.INCEPTION_V1_DIR),
    'Folder for the archive and the extracted inception_v1.ckpt.',
)
_URL = flags.DEFINE_string(
    'url',
    assets.INCEPTION_V1_URL,
    'Where to download the archive from (http(s) or file://).',
)
_SOURCE_FILE = flags.DEFINE_string(
    'source_file',
    None,
    f'A copy of {assets.INCEPTION_V1_ARCHIVE} already downloaded; nothing is '
    'downloaded then.',
)
_PROGRESS = flags.DEFINE_boolean(
    'progress', True, 'Show a progress bar while downloading.'
)
_TIMEOUT_S = flags.DEFINE_float(
    'timeout_s',
    60.0,
    'Network timeout of each request, in seconds.',
    lower_bound=0.0,
)


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(
        f'Unexpected positional arguments: {argv[1:]}; '
        'all options are flags, see --help.'
    )
  try:
    path = assets.fetch_inception_v1(
        _DEST_DIR.value,
        inception_v1.check_file,
        url=_URL.value,
        source_file=_SOURCE_FILE.value,
        progress=_PROGRESS.value,
        timeout_s=_TIMEOUT_S.value,
    )
  except assets.AssetError as e:
    print(f'fetch_inception_v1.py: error: {e}', file=sys.stderr)
    if _SOURCE_FILE.value is None:
      print("(Or pass the archive's path as --source_file.)", file=sys.stderr)
    return 1
  print(
      f'{path}: TF-slim Inception-v1, '
      f'{len(inception_v1.slim_inventory())} tensors, names and shapes '
      'verified. Next: python inflate.py'
  )
  return 0


if __name__ == '__main__':
  cli.run(main)
