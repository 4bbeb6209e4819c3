r"""Top-1/top-5 accuracy of I3D on a labelled split, video by whole video.

Each video is classified as in the paper: the centre 224 crop over all its
frames at 25 fps, streamed through the network in bounded memory (as
classify_video.py); joint sums the RGB and flow logits. Prints top-1, top-5,
mean per-class accuracy and the number of videos, and writes to
--output_dir: metrics.json, predictions.csv (one row per video),
confusion.png, and per_video.jsonl, the per-video logits that let a killed
run, started again with the same flags, continue where it stopped.

Release checkpoints on Kinetics-400 validation (the official annotation CSV,
clips named <youtube_id>_<start:06d>_<end:06d>.mp4 under <root>/<label>/):

  python evaluate_split.py --dataset=kinetics --root=/data/kinetics400 \
      --split=validate.csv --eval_type=rgb --output_dir=out/k400_val_rgb

A fine-tuned model with its own classes, on UCF-101 split 1:

  python evaluate_split.py --dataset=ucf101 --root=/data/UCF-101 \
      --split=test --fold=1 --eval_type=rgb \
      --checkpoint=runs/ucf101/final/model.ckpt \
      --label_map=runs/ucf101/final/label_map.txt --output_dir=out/ucf101
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
import datasets
import evaluation
import inference
import recipe
import report

_ROOT = os.path.dirname(os.path.abspath(__file__))
_DATA = os.path.join(_ROOT, 'data')
_COMMAND = 'evaluate_split'

_DATASET = flags.DEFINE_enum(
    'dataset',
    None,
    list(datasets.KINDS),
    'How the split is described: ucf101, hmdb51 (official split files), csv '
    '(path,label rows), folder (class subfolders) or kinetics (the official '
    'annotation CSV).',
)
_ROOT_FLAG = flags.DEFINE_string(
    'root',
    None,
    'The dataset folder (videos and, for ucf101/hmdb51, the '
    'split files or their ucfTrainTestlist/testTrainMulti_7030_splits '
    'folders).',
)
_SPLIT = flags.DEFINE_string(
    'split',
    'test',
    'ucf101/hmdb51: train or test; csv/kinetics: the CSV '
    'file (relative to --root or absolute); folder: a subfolder of --root, '
    'or "" for --root itself.',
)
_FOLD = flags.DEFINE_enum(
    'fold', '1', ['1', '2', '3'], 'Which of the three ucf101/hmdb51 splits.'
)
_CLIPPED = flags.DEFINE_boolean(
    'clipped',
    True,
    'kinetics: the files are the trimmed 10 s clips '
    '(<youtube_id>_<start:06d>_<end:06d>.mp4); --noclipped: whole YouTube '
    'videos (<youtube_id>.mp4) cut at time_start..time_end while decoding.',
)
_LABEL_TYPE = flags.DEFINE_enum(
    'label_type',
    'name',
    list(datasets.LABEL_TYPES),
    'csv: labels are class names, or 0-based indices into --label_map.',
)
_MISSING = flags.DEFINE_enum(
    'missing',
    'error',
    list(datasets.MISSING),
    'Listed videos that do not exist: stop with an error, or skip them (and '
    'log how many).',
)
_MAX_VIDEOS = flags.DEFINE_integer(
    'max_videos',
    None,
    'Evaluate only the first N videos of the split (a ' 'quick check).',
    lower_bound=1,
)
_CLIP_FRAMES = flags.DEFINE_integer(
    'clip_frames',
    None,
    'Evaluate only the middle N frames of each clip (a '
    'fixed-length protocol, e.g. 79); default: every frame, as the paper.',
    lower_bound=recipe.MIN_FRAMES,
)
_EVAL_TYPE = flags.DEFINE_enum(
    'eval_type',
    'rgb',
    list(assets.EVAL_TYPES),
    'rgb, flow, joint (RGB + flow logits summed) or rgb600. flow and joint '
    'compute TV-L1 flow, about 1 s per frame per core.',
)
_IMAGENET_PRETRAINED = flags.DEFINE_boolean(
    'imagenet_pretrained',
    True,
    'Release checkpoints *_imagenet rather than *_scratch (ignored with '
    '--checkpoint and for rgb600).',
)
_CHECKPOINT_DIR = flags.DEFINE_string(
    'checkpoint_dir',
    os.path.join(_DATA, 'checkpoints'),
    'Folder of the release checkpoints as <name>/model.ckpt.*.',
)
_CHECKPOINT = flags.DEFINE_list(
    'checkpoint',
    None,
    'Your own checkpoint prefix(es) instead of the '
    "release's, with the release's variable names (checkpoints.save): one "
    'for rgb or flow, "RGB_PREFIX,FLOW_PREFIX" for joint. Any class count; '
    'give its --label_map.',
)
_LABEL_MAP = flags.DEFINE_string(
    'label_map',
    os.path.join(_DATA, 'label_map.txt'),
    "The model's class names, one per line in logit order (Kinetics-400 "
    'for the release checkpoints).',
)
_LABEL_MAP_600 = flags.DEFINE_string(
    'label_map_600',
    os.path.join(_DATA, 'label_map_600.txt'),
    'Kinetics-600 class names (for --eval_type=rgb600).',
)
_OUTPUT_DIR = flags.DEFINE_string(
    'output_dir',
    None,
    'Where metrics.json, predictions.csv, confusion.png '
    'and per_video.jsonl go.',
)
_CHUNK_FRAMES = flags.DEFINE_integer(
    'chunk_frames',
    inference.DEFAULT_CHUNK_FRAMES,
    'Frames per chunk when streaming a long video (a multiple of 8).',
    lower_bound=8,
)
_FLOW = cli.define_flow_flags()
_PROGRESS = flags.DEFINE_boolean(
    'progress', True, 'Show a progress bar over the videos on stderr.'
)


# What to do about each kind of error, after its message.
_HINTS = (
    (datasets.DatasetError, 'check --dataset, --root, --split and --fold'),
    (checkpoints.CheckpointError, 'check --checkpoint or --checkpoint_dir'),
    (report.LabelError, 'check --label_map'),
    (ValueError, 'check the flags'),
    (OSError, 'check --output_dir'),
)


def _fail(error: Exception) -> int:
  hint = next(h for kind, h in _HINTS if isinstance(error, kind))
  what = str(error).rstrip('.').replace('\n', '; ')
  print(f'{_COMMAND}: error: {what}; {hint}.', file=sys.stderr)
  return 1


def _model_files():
  """(stream -> checkpoint prefix, label map, settings) from the flags."""
  if not _CHECKPOINT.value:
    resolved = assets.resolve(
        _EVAL_TYPE.value, _IMAGENET_PRETRAINED.value, _CHECKPOINT_DIR.value
    )
    label_map = {400: _LABEL_MAP.value, 600: _LABEL_MAP_600.value}[
        resolved.num_classes
    ]
    return (
        dict(resolved.prefixes),
        label_map,
        {'checkpoints': dict(resolved.checkpoints)},
    )
  streams = assets.checkpoint_names(_EVAL_TYPE.value, True)
  if len(_CHECKPOINT.value) != len(streams):
    raise app.UsageError(
        f'--eval_type={_EVAL_TYPE.value} needs {len(streams)} checkpoint(s) '
        f'({", ".join(streams)}) but --checkpoint has '
        f'{len(_CHECKPOINT.value)}; write --checkpoint=RGB_PREFIX,FLOW_PREFIX '
        'for joint'
    )
  prefixes = dict(zip(streams, _CHECKPOINT.value))
  return (
      prefixes,
      _LABEL_MAP.value,
      {'checkpoints': {s: os.path.abspath(p) for s, p in prefixes.items()}},
  )


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(
        f'Unexpected positional arguments {argv[1:]}; flags '
        'take their value after "=".'
    )
  for flag in (_DATASET, _ROOT_FLAG, _OUTPUT_DIR):
    if not flag.value:
      raise app.UsageError(f'--{flag.name} is required.')
  inference.configure_threads()
  try:
    prefixes, label_map, settings = _model_files()
    missing = assets.missing_message(
        {'label map': label_map, **assets.restore_files(prefixes)}
    )
    if missing:
      print(
          f'{_COMMAND}: error: {missing}\nPass other paths with '
          '--checkpoint_dir, --checkpoint or --label_map.',
          file=sys.stderr,
      )
      return 1
    options = {'missing': _MISSING.value}
    kind = _DATASET.value
    if kind in ('ucf101', 'hmdb51'):
      options['fold'] = int(_FOLD.value)
    elif kind == 'kinetics':
      options.update(class_names=label_map, clipped=_CLIPPED.value)
    elif kind == 'csv':
      options.update(class_names=label_map, label_type=_LABEL_TYPE.value)
    else:
      options = {}
    dataset = datasets.load(
        kind, _ROOT_FLAG.value, _SPLIT.value or None, **options
    )
    if _MAX_VIDEOS.value:
      dataset = datasets.Dataset(
          dataset.examples[: _MAX_VIDEOS.value], dataset.class_names
      )
    predictors = inference.load_predictors(
        prefixes, chunk_frames=_CHUNK_FRAMES.value
    )
    num_classes = next(iter(predictors.values())).model.num_classes
    model_classes = report.load_labels(label_map, num_classes)
    settings.update(
        eval_type=_EVAL_TYPE.value,
        label_map=os.path.abspath(label_map),
        dataset=kind,
        root=os.path.abspath(_ROOT_FLAG.value),
        split=_SPLIT.value,
    )
    result = evaluation.evaluate_split(
        dataset,
        predictors,
        model_classes,
        _OUTPUT_DIR.value,
        settings,
        clip_frames=_CLIP_FRAMES.value,
        workers=_FLOW.workers.value,
        flow_backend=_FLOW.backend.value,
        recipe_name=_FLOW.recipe.value,
        progress=_PROGRESS.value,
    )
  except (
      datasets.DatasetError,
      checkpoints.CheckpointError,
      report.LabelError,
      ValueError,
      OSError,
  ) as e:
    return _fail(e)
  if result.reused:
    print(
        f'Reused the results of {result.reused} videos from '
        f'{evaluation.RESULTS_FILE}.',
        file=sys.stderr,
    )
  for line in evaluation.metrics_table(result.metrics):
    print(line)
  if result.failed:
    print(
        f'{len(result.failed)} video(s) could not be read and are not '
        'counted:',
        file=sys.stderr,
    )
    for line in result.failed[:20]:
      print(f'  {line}', file=sys.stderr)
    return 1
  print(
      f'Wrote {os.path.join(_OUTPUT_DIR.value, evaluation.METRICS_FILE)}, '
      f'{evaluation.PREDICTIONS_FILE} and {evaluation.CONFUSION_FILE}.'
  )
  return 0


if __name__ == '__main__':
  cli.run(main)
