r"""FVD throughput in clips per second, against the fast path's own figure.

  python benchmark_fvd.py \
      --json_out=benchmarks/benchmark_fvd_cpu.json

Times, at the same clip shape (--frames frames, --batch clips per call):

  * fast path: inference.Predictor.logits on float32 clips already at
    224x224 in [-1, 1], the network alone;
  * fvd embed: fvd.Embedder on uint8 clips of --source_size pixels: the
    0..255 check, the TF1 bilinear resize to 224, 2x/255 - 1 and the network;
  * fvd stats: the same plus the float64 streaming statistics (fvd.Stats).

Each is warmed up, then timed --iters times; the table gives the median.
The checkpoint is the real rgb_scratch when it is present, else synthetic
weights with its shapes (the speed does not depend on the values). The load
average before and after is recorded, since other work on the machine slows
every row.
"""

from __future__ import annotations

import runtime  # pylint: disable=g-bad-import-order

runtime.setup()  # Before TensorFlow loads: its oneDNN kernels on.

import os
import platform
import resource
from typing import Any, Dict, List, Sequence

from absl import app
from absl import flags
import numpy as np

import checkpoints
import fileio
import fvd
import inference
import timing

_ROOT = os.path.dirname(os.path.abspath(__file__))

_CHECKPOINT = flags.DEFINE_string(
    'checkpoint',
    os.path.join(_ROOT, fvd.DEFAULT_CHECKPOINT),
    'rgb_scratch checkpoint prefix; synthetic weights when it is missing.',
)
_FRAMES = flags.DEFINE_integer(
    'frames', 16, 'Frames per clip.', lower_bound=fvd.MIN_FRAMES
)
_BATCH = flags.DEFINE_integer('batch', 8, 'Clips per call.', lower_bound=1)
_SOURCE_SIZE = flags.DEFINE_integer(
    'source_size',
    64,
    'Height and width of the FVD input frames (resized to '
    '224 by the protocol).',
    lower_bound=1,
)
_WARMUP = flags.DEFINE_integer(
    'warmup', 1, 'Untimed calls first.', lower_bound=0
)
_ITERS = flags.DEFINE_integer('iters', 3, 'Timed calls.', lower_bound=1)
_JSON_OUT = flags.DEFINE_string('json_out', None, 'Also write JSON here.')


def _peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: Sequence[str]) -> int:
  del argv
  inference.configure_threads()
  load_before = os.getloadavg()
  real = os.path.exists(_CHECKPOINT.value + '.index')
  if real:
    model = checkpoints.load_model(_CHECKPOINT.value)
  else:
    import i3d  # pylint: disable=g-import-not-at-top

    model = i3d.InceptionI3d(fvd.NUM_CLASSES)
    checkpoints.assign_synthetic(model, 'rgb')
  predictor = inference.make_predictor(model)
  embedder = fvd.Embedder(predictor)
  b, t, s = _BATCH.value, _FRAMES.value, _SOURCE_SIZE.value
  rng = np.random.default_rng(0)
  source = rng.integers(0, 256, [b, t, s, s, 3], dtype=np.uint8)
  ready = fvd.preprocess(source).numpy()
  stats = fvd.Stats()

  rows = {
      'fast path (224x224 float32)': lambda: predictor.logits(ready),
      f'fvd embed ({s}x{s} uint8)': lambda: embedder(source),
      f'fvd stats ({s}x{s} uint8)': lambda: stats.add(embedder(source)),
  }
  results: List[Dict[str, Any]] = []
  for name, fn in rows.items():
    seconds = timing.median_time(fn, _WARMUP.value, _ITERS.value)
    results.append(
        {'row': name, 'seconds_per_call': seconds, 'clips_per_s': b / seconds}
    )
  base = results[0]['clips_per_s']
  for r in results:
    r['vs_fast_path'] = r['clips_per_s'] / base

  load_after = os.getloadavg()
  print(
      f'FVD throughput: {t}-frame clips, batch {b}, '
      f'{"real rgb_scratch" if real else "synthetic"} weights, '
      f'{os.cpu_count()} CPUs ({platform.processor() or platform.machine()})'
  )
  print(f'{"":32s} {"s/call":>8s} {"clips/s":>8s} {"vs fast":>8s}')
  for r in results:
    print(
        f'{r["row"]:32s} {r["seconds_per_call"]:8.3f} '
        f'{r["clips_per_s"]:8.2f} {r["vs_fast_path"]:8.3f}'
    )
  print(
      f'peak RSS {_peak_rss_mb():.0f} MB; load average before '
      f'{" ".join(f"{x:.2f}" for x in load_before)}, after '
      f'{" ".join(f"{x:.2f}" for x in load_after)}'
  )
  if _JSON_OUT.value:
    fileio.write_json(
        _JSON_OUT.value,
        {
            'frames': t,
            'batch': b,
            'source_size': s,
            'iters': _ITERS.value,
            'warmup': _WARMUP.value,
            'weights': 'real' if real else 'synthetic',
            'cpus': os.cpu_count(),
            'load_average_before': list(load_before),
            'load_average_after': list(load_after),
            'peak_rss_mb': _peak_rss_mb(),
            'results': results,
        },
    )
  return 0


if __name__ == '__main__':
  app.run(main)
