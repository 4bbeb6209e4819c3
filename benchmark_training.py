r"""Training-step cost against the forward-only cost at the same shape.

For each batch size, builds a Trainer (random release-shaped weights, 'full'
mode: BatchNorm in training mode, dropout, backward pass, momentum update)
and times `--iters` traced training steps after `--warmup` untimed ones, then
times the same model's forward pass alone (is_training=False, the Sonnet
module in a traced tf.function, as inference's 'plain' path). Reports clips/s
of both and their ratio; the goal is a training step at most 3.5x the
forward cost. `--mixed_precision` lists the Config.mixed_precision values
to time (float16 needs a GPU). Prints a table and writes JSON.

  python benchmark_training.py
  python benchmark_training.py --batches=1 --frames=16
  python benchmark_training.py --batches=1 --mixed_precision=off,bfloat16
"""

from __future__ import annotations

import runtime  # pylint: disable=g-bad-import-order

runtime.setup()  # Before TensorFlow loads.

import os
import resource
import tempfile
import time
from typing import Dict, List, Sequence

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

import fileio
import inference
import timing
import training
import training_configs

_ROOT = os.path.dirname(os.path.abspath(__file__))
_FRAMES = flags.DEFINE_integer('frames', 64, 'Frames per clip.')
_BATCHES = flags.DEFINE_list('batches', ['1', '4'], 'Batch sizes to time.')
_WARMUP = flags.DEFINE_integer('warmup', 1, 'Untimed calls first.')
_ITERS = flags.DEFINE_integer('iters', 2, 'Timed calls.')
_PRECISIONS = flags.DEFINE_list(
    'mixed_precision',
    ['off'],
    'Config.mixed_precision values to time: off, bfloat16, float16.',
)
_JSON = flags.DEFINE_string(
    'json_out',
    None,
    'Where to write the results; benchmarks/benchmark_training_<device>.json '
    'by default.',
)


def measure(
    batch: int, frames: int, warmup: int, iters: int, precision: str = 'off'
) -> Dict:
  config = training_configs.Config(
      num_classes=400,
      batch_size=batch,
      num_frames=frames,
      steps=10**6,
      lr_boundaries=(),
      lr_values=(1e-4,),
      mixed_precision=precision,
  )
  with tempfile.TemporaryDirectory() as workdir:
    trainer = training.Trainer(config, workdir)
  x = tf.constant(
      np.random.default_rng(0)
      .uniform(-1, 1, (batch, frames, 224, 224, 3))
      .astype(np.float32)
  )
  y = tf.zeros([batch], tf.int32)
  step_s = timing.median_time(lambda: trainer.train_step(x, y), warmup, iters)
  forward = tf.function(lambda v: trainer.model(v, is_training=False)[0])
  forward_s = timing.median_time(lambda: forward(x).numpy(), warmup, iters)
  return {
      'batch': batch,
      'frames': frames,
      'mixed_precision': precision,
      'train_step_s': step_s,
      'forward_s': forward_s,
      'train_clips_per_s': batch / step_s,
      'forward_clips_per_s': batch / forward_s,
      'ratio': step_s / forward_s,
      'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
  }


def main(argv: Sequence[str]) -> int:
  del argv
  inference.configure_threads()
  load_before = os.getloadavg()
  rows: List[Dict] = []
  gpus = tf.config.list_physical_devices('GPU')
  device = 'gpu' if gpus else 'cpu'
  for batch, precision in (
      (int(b), p) for b in _BATCHES.value for p in _PRECISIONS.value
  ):
    rows.append(
        measure(batch, _FRAMES.value, _WARMUP.value, _ITERS.value, precision)
    )
    r = rows[-1]
    print(
        f'batch {r["batch"]} {precision}: train {r["train_clips_per_s"]:.3f} clips/s '
        f'({r["train_step_s"]:.2f} s/step), forward '
        f'{r["forward_clips_per_s"]:.3f} clips/s ({r["forward_s"]:.2f} s), '
        f'ratio {r["ratio"]:.2f}, peak RSS {r["peak_rss_mb"]:.0f} MB',
        flush=True,
    )
  out = {
      'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
      'device': device,
      'gpu': [d.name for d in gpus],
      'cpus': os.cpu_count(),
      'command': 'python benchmark_training.py '
      f'--frames={_FRAMES.value} '
      f'--batches={",".join(_BATCHES.value)} '
      f'--mixed_precision={",".join(_PRECISIONS.value)} '
      f'--warmup={_WARMUP.value} --iters={_ITERS.value}',
      'load_before': load_before,
      'load_after': os.getloadavg(),
      'goal_ratio': 3.5,
      'results': rows,
  }
  fileio.write_json(
      _JSON.value
      or os.path.join(_ROOT, 'benchmarks', f'benchmark_training_{device}.json'),
      out,
  )
  print(
      '| batch | mixed precision | train clips/s | forward clips/s '
      '| train/forward |'
  )
  print('|---|---|---|---|---|')
  for r in rows:
    print(
        f'| {r["batch"]} | {r["mixed_precision"]} | '
        f'{r["train_clips_per_s"]:.3f} | '
        f'{r["forward_clips_per_s"]:.3f} | {r["ratio"]:.2f} |'
    )
  print(f'load average {load_before[0]:.2f} -> {os.getloadavg()[0]:.2f}')
  return 0


if __name__ == '__main__':
  app.run(main)
