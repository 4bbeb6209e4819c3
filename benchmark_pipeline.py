r"""Training-input throughput: clips per second from pipeline.train_dataset.

Generates panning-texture videos (synthetic_videos.py), then times batches
of `--num_frames`-frame training clips for the rgb and flow streams, decoded
every time or read from a filled clip_cache, after one warm-up batch. Prints
a table and writes JSON with the machine's load average.

  python benchmark_pipeline.py \
      --json_out=benchmarks/benchmark_pipeline.json
"""

from __future__ import annotations

import runtime  # pylint: disable=g-bad-import-order

runtime.setup()  # Before TensorFlow loads: its oneDNN kernels on.

import os
import platform
import shutil
import sys
import tempfile
import time
from typing import Sequence

from absl import app
from absl import flags

import clip_cache
import datasets
import fileio
import pipeline
import synthetic_videos

_NUM_FRAMES = flags.DEFINE_integer(
    'num_frames', 64, 'Frames per clip.', lower_bound=1
)
_BATCHES = flags.DEFINE_integer(
    'batches', 4, 'Timed batches per row.', lower_bound=1
)
_BATCH_SIZE = flags.DEFINE_integer(
    'batch_size', 2, 'Clips per batch.', lower_bound=1
)
_VIDEO_SECONDS = flags.DEFINE_float(
    'video_seconds', 4.0, 'Length of each generated video.'
)
_PARALLEL = flags.DEFINE_list(
    'parallel_calls', ['1', '2'], 'num_parallel_calls values to time.'
)
_STREAMS = flags.DEFINE_list('streams', ['rgb', 'flow'], 'Streams to time.')
_JSON_OUT = flags.DEFINE_string('json_out', None, 'Also write the rows here.')


def _time(
    dataset: datasets.Dataset, stream: str, parallel: int, cache_dir
) -> float:
  ds = pipeline.train_dataset(
      dataset,
      stream,
      _BATCH_SIZE.value,
      num_frames=_NUM_FRAMES.value,
      seed=0,
      cache_dir=cache_dir,
      num_parallel_calls=parallel,
  )
  iterator = iter(ds)
  next(iterator)  # Warm-up.
  start = time.perf_counter()
  for _ in range(_BATCHES.value):
    next(iterator)
  seconds = time.perf_counter() - start
  return _BATCHES.value * _BATCH_SIZE.value / seconds


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments {argv[1:]}.')
  tmp = tempfile.mkdtemp(prefix='benchmark_pipeline_')
  try:
    examples = []
    for i in range(4):
      path = synthetic_videos.write_panning_video(
          os.path.join(tmp, f'v{i}.mp4'),
          _VIDEO_SECONDS.value,
          320,
          240,
          25,
          seed=i,
      )
      examples.append(datasets.Example(path, i % 2, source=path))
    dataset = datasets.Dataset(examples, ['a', 'b'])
    cache_dir = os.path.join(tmp, 'cache')
    fill_start = time.perf_counter()
    clip_cache.ClipCache(cache_dir).build(
        dataset, tuple(_STREAMS.value), progress=False
    )
    fill_s = time.perf_counter() - fill_start
    rows = []
    for stream in _STREAMS.value:
      for parallel in (int(p) for p in _PARALLEL.value):
        for cached in (False, True):
          clips_per_s = _time(
              dataset, stream, parallel, cache_dir if cached else None
          )
          rows.append(
              {
                  'stream': stream,
                  'parallel_calls': parallel,
                  'cache': cached,
                  'clips_per_s': round(clips_per_s, 3),
              }
          )
          print(
              f'{stream:5s} parallel={parallel} cache={str(cached):5s} '
              f'{clips_per_s:7.2f} clips/s',
              flush=True,
          )
    load = os.getloadavg()
    result = {
        'date': time.strftime('%Y-%m-%d', time.gmtime()),
        'machine': platform.processor() or platform.machine(),
        'cores': len(os.sched_getaffinity(0)),
        'load_average_1_5_15': [round(x, 2) for x in load],
        'num_frames': _NUM_FRAMES.value,
        'batch_size': _BATCH_SIZE.value,
        'video': f'{_VIDEO_SECONDS.value:g} s, 320x240, 25 fps H.264 -> '
        '341x256 after the resize',
        'cache_fill_s': round(fill_s, 2),
        'rows': rows,
    }
    print(
        f'cache fill ({", ".join(_STREAMS.value)}, {len(examples)} videos): '
        f'{fill_s:.1f} s; load average {load[0]:.2f} {load[1]:.2f} '
        f'{load[2]:.2f}'
    )
    if _JSON_OUT.value:
      fileio.write_json(_JSON_OUT.value, result)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return 0


if __name__ == '__main__':
  sys.exit(app.run(main))
