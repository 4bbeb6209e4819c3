r"""TV-L1 frame pairs per second on an NVIDIA GPU (tvl1_cuda.py), and fidelity.

For each frame size and kind of motion it generates --distinct frame pairs
(`synthetic_videos.gray_frames`, as benchmark_tvl1.py) and:

  * computes them with tvl1.py on every CPU core (the reference: tvl1.py is
    bit-identical to OpenCV's DualTVL1, see benchmark_tvl1.py) and checks the
    GPU's flow against it, pair by pair, bit for bit;
  * checks the first --opencv_pairs pairs against OpenCV's DualTVL1 itself
    (one process per pair);
  * times tvl1_cuda.solve on batches of --batches pairs (the distinct pairs
    repeated), for each --threads per block, after a warm-up that compiles
    the kernel.

It needs an NVIDIA GPU and numba's CUDA target, not TensorFlow or PyAV:

  python benchmark_tvl1_cuda.py --json_out=benchmarks/benchmark_tvl1_gpu.json
"""

import runtime  # pylint: disable=g-bad-import-order

runtime.setup()

import concurrent.futures
import multiprocessing
import os
import time
from typing import Any, Dict, List, Sequence

from absl import app
from absl import flags
import cv2
import numba
import numpy as np

import fileio
import synthetic_videos
import tvl1
import tvl1_cuda

_SIZES = flags.DEFINE_list(
    'sizes', ['256x455', '256x340'], 'Frame sizes, HEIGHTxWIDTH.'
)
_MOTIONS = flags.DEFINE_list(
    'motions', list(synthetic_videos.MOTIONS), 'Kinds of motion: small, large.'
)
_DISTINCT = flags.DEFINE_integer(
    'distinct', 8, 'Distinct frame pairs per size and motion.', lower_bound=1
)
_BATCHES = flags.DEFINE_list(
    'batches', ['64', '264'], 'Pairs per timed call (distinct pairs repeated).'
)
_THREADS = flags.DEFINE_list(
    'threads', ['256', '512', '1024'], 'Threads per block (one block a pair).'
)
_OPENCV_PAIRS = flags.DEFINE_integer(
    'opencv_pairs',
    2,
    'Pairs per size and motion also checked against OpenCV DualTVL1.',
    lower_bound=0,
)
_JSON_OUT = flags.DEFINE_string(
    'json_out', None, 'Also write the results here as JSON.'
)


def _opencv(pair: np.ndarray) -> np.ndarray:
  cv2.setNumThreads(1)
  solver = cv2.optflow.DualTVL1OpticalFlow_create()
  return solver.calc(pair[0], pair[1], None)


def _epe(a: np.ndarray, b: np.ndarray) -> Dict[str, float]:
  error = np.linalg.norm(a - b, axis=-1)
  axes = tuple(range(1, error.ndim))
  return {
      'median_epe': float(np.median(error, axis=axes).max()),
      'p99_epe': float(np.percentile(error, 99, axis=axes).max()),
      'max_epe': float(error.max()),
  }


def _parse_size(text: str):
  try:
    height, width = (int(v) for v in text.lower().split('x'))
  except ValueError:
    raise app.UsageError(
        f'--sizes takes HEIGHTxWIDTH items, e.g. 256x455; got {text!r}.'
    ) from None
  return height, width


def measure(frames: np.ndarray) -> Dict[str, Any]:
  """Times and checks the GPU on the pairs of uint8 gray frames [N + 1, H, W]."""
  height, width = frames.shape[1:]
  first, second = frames[:-1], frames[1:]
  begin = time.perf_counter()
  reference, iterations = tvl1.solve(first, second)
  cpu_seconds = time.perf_counter() - begin
  row: Dict[str, Any] = {
      'size': [height, width],
      'distinct_pairs': len(first),
      'finest_level_iterations': iterations[:, 0].tolist(),
      'cpu_numba_all_cores_pairs_per_second': len(first) / cpu_seconds,
      'runs': [],
  }
  identical = True
  for threads in map(int, _THREADS.value):
    for batch in map(int, _BATCHES.value):
      reps = -(-batch // len(first))
      a = np.concatenate([first] * reps)[:batch]
      b = np.concatenate([second] * reps)[:batch]
      expected = np.concatenate([reference] * reps)[:batch]
      stats = {}
      begin = time.perf_counter()
      flow, gpu_iterations = tvl1_cuda.solve(a, b, threads=threads, stats=stats)
      seconds = time.perf_counter() - begin
      same = bool(np.array_equal(flow, expected))
      identical &= same
      row['runs'].append(
          {
              'threads': threads,
              'batch': batch,
              'seconds': seconds,
              'pairs_per_second': batch / seconds,
              'identical_to_tvl1_cpu': same,
              'kernel_seconds_per_level': stats['level_seconds'],
              'row_order_sums_per_pair': float(
                  stats['serial_sums'].sum(axis=1).mean()
              ),
              'iterations_identical': bool(
                  np.array_equal(
                      gpu_iterations,
                      np.concatenate([iterations] * reps)[:batch],
                  )
              ),
              **_epe(flow, expected),
          }
      )
      print(
          f'{height}x{width} threads {threads:>4} batch '
          f'{batch:>4}: {batch / seconds:8.1f} pairs/s, identical to tvl1.py: '
          f'{same}',
          flush=True,
      )
  row['identical_to_tvl1_cpu'] = identical
  return row


def check_opencv(
    frames: np.ndarray, pool: concurrent.futures.Executor
) -> Dict[str, Any]:
  """The GPU's flow against OpenCV's DualTVL1 on the first --opencv_pairs."""
  count = min(_OPENCV_PAIRS.value, len(frames) - 1)
  expected = np.stack(
      list(pool.map(_opencv, [frames[i : i + 2] for i in range(count)]))
  )
  gpu, _ = tvl1_cuda.solve(frames[:count], frames[1 : count + 1])
  return {
      'pairs': count,
      'identical': bool(np.array_equal(gpu, expected)),
      **_epe(gpu, expected),
  }


def table(results: Dict[str, Any]) -> str:
  lines = [
      f'{results["gpu"]}; {results["cpu_count"]} CPU cores; '
      f'OpenCV {results["opencv"]}, Numba {results["numba"]}; pairs/s'
  ]
  for row in results['rows']:
    size = f'{row["size"][0]}x{row["size"][1]}'
    best = max(row['runs'], key=lambda r: r['pairs_per_second'])
    vs = row.get('vs_opencv', {})
    lines.append(
        f'{size} {row["motion"]:<5} best {best["pairs_per_second"]:8.1f} '
        f'(threads {best["threads"]}, batch {best["batch"]}); tvl1.py on '
        f'{results["cpu_count"]} cores '
        f'{row["cpu_numba_all_cores_pairs_per_second"]:.2f}; identical to '
        f'tvl1.py: {row["identical_to_tvl1_cpu"]}; vs OpenCV '
        f'({vs.get("pairs", 0)} pairs): identical {vs.get("identical")}, max '
        f'EPE {vs.get("max_epe")}; finest-level iterations '
        f'{row["finest_level_iterations"]}'
    )
    for run in row['runs']:
      lines.append(
          f'    threads {run["threads"]:>4} batch {run["batch"]:>4}: '
          f'{run["pairs_per_second"]:8.1f} pairs/s '
          f'({run["seconds"]:.2f} s, kernels '
          f'{sum(run["kernel_seconds_per_level"]):.2f} s), identical '
          f'{run["identical_to_tvl1_cpu"]}, row-order sums per pair '
          f'{run["row_order_sums_per_pair"]:.1f}'
      )
  return '\n'.join(lines)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}.')
  if not tvl1_cuda.available():
    raise app.UsageError(
        f'benchmark_tvl1_cuda.py needs a CUDA GPU: '
        f'{tvl1_cuda.why_unavailable()}.'
    )
  sizes = [_parse_size(s) for s in _SIZES.value]
  cores = os.cpu_count() or 1
  numba.set_num_threads(cores)
  device = numba.cuda.get_current_device()
  name = device.name.decode() if isinstance(device.name, bytes) else device.name
  results: Dict[str, Any] = {
      'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
      'gpu': str(name),
      'cpu_count': cores,
      'opencv': cv2.__version__,
      'numba': numba.__version__,
      'rows': [],
  }
  begin = time.perf_counter()
  warm = synthetic_videos.gray_frames('small', 32, 40, 2)
  tvl1_cuda.solve(warm[:1], warm[1:])
  tvl1.solve(warm[:1], warm[1:])
  results['compile_seconds'] = time.perf_counter() - begin
  print(f'compiled in {results["compile_seconds"]:.1f} s', flush=True)
  rows: List[Dict[str, Any]] = []
  cases = []
  for height, width in sizes:
    for motion in _MOTIONS.value:
      frames = synthetic_videos.gray_frames(
          motion, height, width, _DISTINCT.value + 1
      )
      cases.append(frames)
      rows.append({'motion': motion, **measure(frames)})
      results['rows'] = rows
      if _JSON_OUT.value:
        fileio.write_json(_JSON_OUT.value, results)
  if _OPENCV_PAIRS.value:
    # After the timings, so that they run on an idle CPU.
    context = multiprocessing.get_context('spawn')
    with concurrent.futures.ProcessPoolExecutor(
        cores, mp_context=context
    ) as pool:
      for row, frames in zip(rows, cases):
        row['vs_opencv'] = check_opencv(frames, pool)
        print(f'vs OpenCV: {row["vs_opencv"]}', flush=True)
  if _JSON_OUT.value:
    fileio.write_json(_JSON_OUT.value, results)
  print(table(results))
  if _JSON_OUT.value:
    print(f'JSON: {_JSON_OUT.value}')


if __name__ == '__main__':
  app.run(main)
