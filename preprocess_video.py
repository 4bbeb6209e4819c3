r"""Turns a video file into I3D inputs like the release's sample arrays.

Writes <output_dir>/<name>_rgb.npy, (1, T, 224, 224, 3) float32, and
<output_dir>/<name>_flow.npy, (1, T, 224, 224, 2) float32, plus a GIF of each
(the release's convention), each atomically. See video.py for the recipe.

  python preprocess_video.py --video=clip.mp4 --output_dir=/tmp/clip
  python preprocess_video.py --video=clip.mp4 --streams=rgb --start=2 --end=7
"""

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
import recipe
import video

_VIDEO = flags.DEFINE_string('video', None, 'Input video file.', required=True)
_OUTPUT_DIR = flags.DEFINE_string(
    'output_dir',
    'preprocessed',
    'Folder for the outputs; created if missing. (Not out/, which holds the '
    "release's reports.)",
)
_NAME = flags.DEFINE_string(
    'name',
    None,
    'Output name prefix; defaults to the video file name '
    'without its extension.',
)
_STREAMS = flags.DEFINE_enum(
    'streams',
    'joint',
    list(assets.STREAM_CHOICES),
    'Which inputs to write: rgb, flow (TV-L1, slow) or joint (both).',
)
_START = flags.DEFINE_float(
    'start', None, 'Clip start in seconds; default: start of the video.'
)
_END = flags.DEFINE_float(
    'end', None, 'Clip end in seconds; default: end of the video.'
)
_MIN_FRAMES = flags.DEFINE_integer(
    'min_frames',
    recipe.MIN_FRAMES,
    'Loop shorter clips from the start up to this many frames (the I3D Logits '
    'head needs 9).',
    lower_bound=1,
)
_CROP = flags.DEFINE_enum(
    'crop',
    'center',
    list(recipe.VALID_CROPS),
    'center (test time) or random (training augmentation).',
)
_FLIP = flags.DEFINE_bool(
    'flip', False, 'Mirror left-right with probability 0.5 (training).'
)
_SEED = flags.DEFINE_integer(
    'seed', None, 'Seed for --crop=random and --flip; default: fresh entropy.'
)
_FLOW = cli.define_flow_flags()
_PROGRESS = flags.DEFINE_boolean(
    'progress', True, 'Show a progress bar over the frames on stderr.'
)
_GIF = flags.DEFINE_bool('gif', True, 'Also write <name>_<stream>.gif.')


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(
        f'Unexpected arguments: {" ".join(argv[1:])}. Pass the video as '
        '--video=PATH.'
    )
  streams = assets.streams_of(_STREAMS.value)
  name = _NAME.value or os.path.splitext(os.path.basename(_VIDEO.value))[0]
  try:
    fileio.check_writable(_OUTPUT_DIR.value, folder=True)
  except fileio.OutputError as e:
    raise cli.Failure(f'{e}; pass another --output_dir') from None
  try:
    inputs = recipe.preprocess(
        _VIDEO.value,
        streams=streams,
        start=_START.value,
        end=_END.value,
        min_frames=_MIN_FRAMES.value,
        crop=_CROP.value,
        rng=_SEED.value,
        flip=_FLIP.value,
        workers=_FLOW.workers.value,
        flow_backend=_FLOW.backend.value,
        recipe_name=_FLOW.recipe.value,
        progress=_PROGRESS.value,
    )
  except video.VideoError as e:
    print(f'preprocess_video: error: {e}', file=sys.stderr)
    sys.exit(1)

  info = inputs['info']
  times = inputs['timestamps']
  print(
      f'video: {info.path} ({info.width}x{info.height}, {info.codec}, '
      f'{info.fps or float("nan"):.3f} fps, '
      f'{info.duration or float("nan"):.3f} s)'
  )
  count = inputs['num_frames']
  print(
      f'frames: {count} at {video.FPS:g} fps, t = {times[0]:.3f} .. '
      f'{times[count - 1]:.3f} s'
  )
  height, width = inputs['frame_size']
  print(
      f'recipe: {_FLOW.recipe.value}, frames {height}x{width} (HxW), crop at '
      f'{tuple(inputs["crop_offset"])}'
  )
  if inputs['looped']:
    print(f'looped: yes, {count} -> {len(times)} frames (--min_frames)')
  else:
    print('looped: no')
  os.makedirs(_OUTPUT_DIR.value, exist_ok=True)
  for stream in streams:
    array = inputs[stream]
    npy = os.path.join(_OUTPUT_DIR.value, f'{name}_{stream}.npy')
    fileio.write_npy(npy, array)
    written = [npy]
    if _GIF.value:
      gif = os.path.join(_OUTPUT_DIR.value, f'{name}_{stream}.gif')
      recipe.write_gif(gif, array)
      written.append(gif)
    print(f'{stream}: {array.shape} {array.dtype} -> {", ".join(written)}')


if __name__ == '__main__':
  cli.run(main)
