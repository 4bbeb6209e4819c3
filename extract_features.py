r"""Extracts per-window I3D features of many videos, resumably.

  python extract_features.py --inputs=clips/ --output_dir=out/features
  python extract_features.py --inputs='clips/**/*.mp4' --streams=joint \
      --output_dir=out/features
  python extract_features.py --inputs=@todo.txt --endpoint=Logits \
      --window=32 --stride=16 --output_dir=out/features

--inputs is a folder (searched recursively for videos: every file with a
video extension or that PyAV opens as a video; other files are skipped with a
note), a glob (quote it; ** matches subfolders), one video file, or
@LIST: a text file with one video path per line (relative to the list's
folder; blank and # lines skipped).

For each video and stream it writes <output_dir>/<name>_<stream>.npy,
float32 [num_windows, dim] (dim: 1024 at Mixed_5c, 400 at Logits), then
<output_dir>/<name>.json with the window times and everything else needed to
use them; <name> is the video's path relative to the input folder, without
its extension. Windows of --window frames at 25 fps start every --stride
frames; one more is aligned to the end of the video if it goes on past them,
and a video shorter than a window is looped to one window. Each feature is
the endpoint averaged over the window's time and space.

Run it again to resume: videos whose JSON lists every requested stream are
skipped. A video that fails is reported and skipped; the summary at the end
lists the failures. Exit code: 0 if every video is done, 1 if any failed
(or checkpoints are missing), 2 for bad flags.

Checkpoints (<checkpoint_dir>/<name>/model.ckpt): rgb_imagenet and
flow_imagenet, or rgb_scratch and flow_scratch with
--imagenet_pretrained=false.
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
import tqdm

import assets
import checkpoints
import cli
import features
import fileio
import i3d
import inference

_ROOT = os.path.dirname(os.path.abspath(__file__))

_INPUTS = flags.DEFINE_string(
    'inputs',
    None,
    'Videos: a folder (searched recursively for every file PyAV opens as a '
    'video), '
    'a glob (quoted), one video file, or @LIST, a file of video paths, one '
    'per line.',
)
_OUTPUT_DIR = flags.DEFINE_string(
    'output_dir', None, 'Root folder of the outputs; created if missing.'
)
_STREAMS = flags.DEFINE_enum(
    'streams',
    'rgb',
    list(assets.STREAM_CHOICES),
    'Which streams: rgb, flow (TV-L1 optical flow, seconds per frame on each '
    'core, more with large motion) or joint (both, from one decoding pass).',
)
_ENDPOINT = flags.DEFINE_enum(
    'endpoint',
    features.DEFAULT_ENDPOINT,
    list(i3d.VALID_ENDPOINTS),
    'Which layer to average over each window: Mixed_5c gives the 1024-d '
    'feature, Logits the class scores, Predictions their softmax.',
)
_WINDOW = flags.DEFINE_integer(
    'window',
    features.DEFAULT_WINDOW,
    'Frames per window at 25 fps (at least 9 for Logits and Predictions).',
    lower_bound=1,
)
_STRIDE = flags.DEFINE_integer(
    'stride',
    features.DEFAULT_STRIDE,
    'Frames between window starts; the last window is aligned to the end of '
    'the video.',
    lower_bound=1,
)
_BATCH_SIZE = flags.DEFINE_integer(
    'batch_size',
    features.DEFAULT_BATCH_SIZE,
    'Windows per forward pass. Memory grows with batch_size * window.',
    lower_bound=1,
)
_IMAGENET_PRETRAINED = flags.DEFINE_boolean(
    'imagenet_pretrained',
    True,
    'Use the checkpoints whose 2D weights were inflated from ImageNet '
    '(*_imagenet) rather than those trained from scratch (*_scratch). Write '
    '--imagenet_pretrained=false or --noimagenet_pretrained.',
)
_CHECKPOINT_DIR = flags.DEFINE_string(
    'checkpoint_dir',
    os.path.join(_ROOT, 'data', 'checkpoints'),
    'Folder holding the release checkpoints as <name>/model.ckpt.*.',
)
_RGB_CHECKPOINT = flags.DEFINE_string(
    'rgb_checkpoint', '', assets.CHECKPOINT_OVERRIDE_HELP['rgb']
)
_FLOW_CHECKPOINT = flags.DEFINE_string(
    'flow_checkpoint', '', assets.CHECKPOINT_OVERRIDE_HELP['flow']
)
_FLOW = cli.define_flow_flags()
_PROGRESS = flags.DEFINE_boolean(
    'progress', True, 'Show a progress bar over the videos on stderr.'
)


def _usage(message: str) -> app.UsageError:
  return app.UsageError(message, exitcode=cli.USAGE_EXIT)


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise _usage(
        f'Unexpected positional arguments {argv[1:]}. Pass the videos as '
        "--inputs=FOLDER, --inputs='GLOB' or --inputs=@LIST, and write "
        'boolean flags as --imagenet_pretrained=false.'
    )
  for name in ('inputs', 'output_dir'):
    if not flags.FLAGS[name].value:
      raise _usage(f'--{name} is required.')
  try:
    features.check_window(_WINDOW.value, _STRIDE.value, _ENDPOINT.value)
    videos = features.find_videos(_INPUTS.value)
  except ValueError as e:
    raise cli.usage_error(e, ('window', 'stride', 'inputs')) from e

  try:
    fileio.check_writable(_OUTPUT_DIR.value, folder=True)
  except fileio.OutputError as e:
    raise cli.Failure(f'{e}; pass another --output_dir') from None
  resolved = assets.resolve(
      _STREAMS.value,
      _IMAGENET_PRETRAINED.value,
      _CHECKPOINT_DIR.value,
      overrides={'rgb': _RGB_CHECKPOINT.value, 'flow': _FLOW_CHECKPOINT.value},
  )
  prefixes = resolved.prefixes
  missing = assets.missing_message(assets.restore_files(prefixes))
  if missing:
    print(
        f'extract_features: error: {missing}\nPass another folder with '
        '--checkpoint_dir, --rgb_checkpoint or --flow_checkpoint.',
        file=sys.stderr,
    )
    return 1

  cli.warn_if_synthetic(*prefixes.values())
  inference.configure_threads()
  endpoint = _ENDPOINT.value
  try:
    extractor = features.Extractor.load(
        prefixes,
        endpoint,
        num_classes=resolved.expected_classes,
        window=_WINDOW.value,
        stride=_STRIDE.value,
        batch_size=_BATCH_SIZE.value,
        flow_workers=_FLOW.workers.value,
        flow_backend=_FLOW.backend.value,
        recipe_name=_FLOW.recipe.value,
    )
  except checkpoints.CheckpointError as e:
    print(f'extract_features: error: {e}', file=sys.stderr)
    return 1
  summary = extractor.run(
      videos,
      _OUTPUT_DIR.value,
      progress=_PROGRESS.value,
      log=lambda line: tqdm.tqdm.write(line, file=sys.stderr),
  )

  print(
      f'{len(videos)} videos: {len(summary.extracted)} extracted, '
      f'{len(summary.skipped)} already done, {len(summary.failed)} failed. '
      f'Outputs in {_OUTPUT_DIR.value}'
  )
  if summary.failed:
    print('Failed:')
    for item, message in summary.failed:
      print(f'  {item.path}: {message}')
    return 1
  return 0


if __name__ == '__main__':
  cli.run(main)
