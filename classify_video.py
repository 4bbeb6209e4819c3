r"""Classifies a video file with the released I3D checkpoints.

Preprocesses the video by the published recipe (video.py: 25 fps, shorter
side 256, centre 224 crop, RGB in [-1, 1]; flow by TV-L1, clipped to +-20
pixels and divided by 20), evaluates the WHOLE clip convolutionally in time,
as in the paper, sums the streams' logits (joint) and prints the top 20
Kinetics classes in the release's format (see out/*.txt):

  python classify_video.py --video=clip.mp4
  python classify_video.py --video=clip.mp4 --eval_type=joint --start=3 \
      --end=8 --json_out=out/clip.json --chart_out=out/clip.png
  python classify_video.py --video=clip.mp4 --eval_type=rgb600

Checkpoints and label maps are those of evaluate_sample.py
(data/checkpoints/<name>/model.ckpt):
  rgb, flow, joint: rgb_imagenet / flow_imagenet, or rgb_scratch /
    flow_scratch with --imagenet_pretrained=false.
  rgb600: rgb_scratch_kin600 always (Kinetics-600 classes).
The default is rgb: joint adds TV-L1 flow, which costs seconds per frame on
each core, more with large motion (see the README's figures).

Clips shorter than 9 frames at 25 fps (what I3D's Logits head needs) are
looped from their start to 9 frames; a line on stderr and the JSON's
`looped` field say so.

Long videos are streamed in chunks of --chunk_frames frames through
inference.Predictor.logits_stream (RGB and flow alike; flow with one frame of
lookahead), so memory does not grow with the length. It is about
2 x chunk_frames x 224 x 224 x C float32 of model input (0.6 MB per RGB
frame, 0.4 MB per flow frame: 150 MB for RGB at the default 128), a few
decoded and TV-L1 frames of lookahead, and the network's activations for one
chunk (a few MB per frame). Measured on CPU (rgb): peak RSS 1.26 GB with
--chunk_frames=32 for an 8 s and a 32 s clip alike, 1.9 GB at the default
128, of which about 1 GB is TensorFlow and the model.

The result equals one whole-clip pass (recipe.preprocess, then the model on
all frames) to float32 round-off, 1e-4, the guarantee of streaming.py. A
clip that fits in one chunk runs in one pass. A longer one is first counted
from its timestamps (video.count_frames: no frame converted or resized),
because the network's stride grid depends on the clip's length (T mod 4); so
no frame is dropped. The video is decoded once, whatever the streams.
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
import fileio
import inference
import recipe
import report
import video

_ROOT = os.path.dirname(os.path.abspath(__file__))
_DATA = os.path.join(_ROOT, 'data')

_VIDEO = flags.DEFINE_string(
    'video',
    None,
    'The video file to classify (mp4, avi, webm, mkv, mov, ' '...).',
)
_EVAL_TYPE = flags.DEFINE_enum(
    'eval_type',
    'rgb',
    list(assets.EVAL_TYPES),
    'Which model: rgb, flow, joint (RGB + Flow logits summed) or rgb600 (the '
    'Kinetics-600 RGB model). flow and joint compute TV-L1 flow, seconds per '
    'frame on each core (see the README).',
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
    "Folder laid out like the release's data/ (checkpoints/, label maps): "
    'the defaults of the three flags below. `python fetch_assets.py '
    '--synthetic` writes random stand-ins to data/synthetic.',
)
_CHECKPOINT_DIR = flags.DEFINE_string(
    'checkpoint_dir',
    None,
    'Folder holding the release checkpoints as <name>/model.ckpt.*; default '
    '<data_dir>/checkpoints.',
)
_LABEL_MAP = flags.DEFINE_string(
    'label_map',
    None,
    'Kinetics-400 class names, one per line; default <data_dir>/label_map.txt.',
)
_LABEL_MAP_600 = flags.DEFINE_string(
    'label_map_600',
    None,
    'Kinetics-600 class names, one per line (for --eval_type=rgb600); default '
    '<data_dir>/label_map_600.txt.',
)
_RGB_CHECKPOINT = flags.DEFINE_string(
    'rgb_checkpoint', '', assets.CHECKPOINT_OVERRIDE_HELP['rgb']
)
_FLOW_CHECKPOINT = flags.DEFINE_string(
    'flow_checkpoint', '', assets.CHECKPOINT_OVERRIDE_HELP['flow']
)
_START = flags.DEFINE_float(
    'start', None, 'Clip start in seconds; default: the start of the video.'
)
_END = flags.DEFINE_float(
    'end', None, 'Clip end in seconds; default: the end of the video.'
)
_JSON_OUT = flags.DEFINE_string(
    'json_out',
    None,
    "Also write the report and the clip's details here as " 'JSON.',
)
_CHART_OUT = flags.DEFINE_string(
    'chart_out', None, 'Also save a PNG bar chart of the top classes here.'
)
_TOP_K = flags.DEFINE_integer(
    'top_k',
    10,
    'Classes in the --chart_out chart (the printed report always '
    "has the release's 20).",
    lower_bound=1,
)
_CHUNK_FRAMES = flags.DEFINE_integer(
    'chunk_frames',
    inference.DEFAULT_CHUNK_FRAMES,
    'Frames per chunk when streaming a long video (a multiple of 8); memory '
    'grows linearly with it.',
    lower_bound=8,
)
_PROGRESS = flags.DEFINE_boolean(
    'progress',
    True,
    'Show a progress bar over the frames of a long clip '
    '(longer than --chunk_frames) on stderr.',
)
_FLOW = cli.define_flow_flags()


def _hint(error: Exception) -> str:
  """The library's message, with the flags that point at missing files."""
  if isinstance(error, FileNotFoundError):
    return (
        f'{error}\nPass other paths with --data_dir, --checkpoint_dir, '
        '--label_map or --label_map_600 (or try `python fetch_assets.py '
        '--synthetic` and --data_dir=data/synthetic, random weights).'
    )
  return str(error)


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(
        f'Unexpected positional arguments {argv[1:]}. Pass the video as '
        '--video=PATH; flags take their value after "=": write '
        '--imagenet_pretrained=false (or --noimagenet_pretrained).'
    )
  if not _VIDEO.value:
    raise app.UsageError('--video is required: --video=PATH.')
  if _CHUNK_FRAMES.value % 8:
    raise app.UsageError(
        f'--chunk_frames must be a multiple of 8; got '
        f'{_CHUNK_FRAMES.value}.'
    )
  for flag in (_JSON_OUT, _CHART_OUT):
    if flag.value:
      try:
        fileio.check_writable(flag.value)
      except fileio.OutputError as e:
        raise cli.Failure(f'{e}; pass another --{flag.name}') from None
  data = _DATA_DIR.value
  checkpoint_dir = _CHECKPOINT_DIR.value or os.path.join(data, 'checkpoints')
  cli.warn_if_synthetic(checkpoint_dir)
  inference.configure_threads()
  try:
    result = classification.classify_video(
        _VIDEO.value,
        _EVAL_TYPE.value,
        _IMAGENET_PRETRAINED.value,
        checkpoint_dir,
        label_maps={
            'kinetics400': _LABEL_MAP.value
            or os.path.join(data, 'label_map.txt'),
            'kinetics600': _LABEL_MAP_600.value
            or os.path.join(data, 'label_map_600.txt'),
        },
        start=_START.value,
        end=_END.value,
        chunk_frames=_CHUNK_FRAMES.value,
        workers=_FLOW.workers.value,
        flow_backend=_FLOW.backend.value,
        recipe_name=_FLOW.recipe.value,
        progress=_PROGRESS.value,
        checkpoint_overrides={
            'rgb': _RGB_CHECKPOINT.value,
            'flow': _FLOW_CHECKPOINT.value,
        },
    )
  except (
      FileNotFoundError,
      video.VideoError,
      checkpoints.CheckpointError,
      classification.InputError,
      report.LabelError,
  ) as e:
    print(f'classify_video: error: {_hint(e)}', file=sys.stderr)
    return 1
  d = result.details
  print(
      f'{_VIDEO.value}: {d["frames"]} frames at {d["fps"]:g} fps '
      f'({d["duration_s"]:.2f} s), {"+".join(d["streams"])} '
      f'({", ".join(d["checkpoints"].values())})',
      file=sys.stderr,
  )
  if d['looped']:
    print(
        f'Looped: the clip has {d["frames"]} frames, fewer than the '
        f'{recipe.MIN_FRAMES} that I3D needs; it was repeated from its start '
        f'to {d["frames_used"]} frames.',
        file=sys.stderr,
    )
  sys.stdout.write(report.format_report(result.logits, result.labels))
  try:
    if _JSON_OUT.value:
      fileio.write_json(
          _JSON_OUT.value, report.report_dict(result.logits, result.labels, **d)
      )
    if _CHART_OUT.value:
      os.makedirs(
          os.path.dirname(os.path.abspath(_CHART_OUT.value)), exist_ok=True
      )
      report.save_bar_chart(
          _CHART_OUT.value,
          result.logits,
          result.labels,
          k=_TOP_K.value,
          title=(
              f'{os.path.basename(_VIDEO.value)}: top {_TOP_K.value} '
              f'classes ({_EVAL_TYPE.value})'
          ),
      )
  except OSError as e:
    print(
        f'classify_video: error: cannot write an output: {e}; check the '
        'folder of --json_out and --chart_out.',
        file=sys.stderr,
    )
    return 1
  return 0


if __name__ == '__main__':
  cli.run(main)
