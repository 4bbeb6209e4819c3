r"""TV-L1 frame pairs per second on an NVIDIA GPU (tvl1_cuda.py), and fidelity.

For each frame size and kind of motion it generates --distinct frame pairs
(`synthetic_videos.gray_frames`, as benchmark_tvl1.py) and:

  * computes them with tvl1.py on every CPU core (the reference: tvl1.py is
    bit-identical to OpenCV's DualTVL1, see benchmark_tvl1.py) and checks the
    GPU's flow against it, pair by pair, bit for bit;
  * checks the first --opencv_pairs pairs against OpenCV's DualTVL1 itself
    (one process per pair);
  * times tvl1_cuda.solve on batches of --batches pairs (the distinct pairs
    repeated), for each kernel: the columns kernel with each of --sweeps
    iterations a pass (and each of --column_registers), the pixels kernel with
    each of --threads per block; after a warm-up that compiles them.

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
_KERNELS = flags.DEFINE_list(
    'kernels', list(tvl1_cuda.KERNELS), 'tvl1_cuda kernels to time.'
)
_SWEEPS = flags.DEFINE_list(
    'sweeps', [str(tvl1_cuda.SWEEP)], 'Iterations a pass, columns kernel.'
)
_COLUMN_REGISTERS = flags.DEFINE_list(
    'column_registers',
    ['0'],
    'Register caps a thread for the columns kernel (0: the compiler picks).',
)
_THREADS = flags.DEFINE_list(
    'threads', ['512'], 'Threads per block, pixels kernel.'
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


def _numbers(flag: str, values: Sequence[str], lowest: int) -> List[int]:
  """A list flag's integers, each at least `lowest`, or a usage error."""
  try:
    numbers = [int(v) for v in values]
  except ValueError:
    numbers = []
  if not numbers or min(numbers) < lowest:
    raise app.UsageError(
        f'--{flag} takes integers of at least {lowest}; got '
        f'{",".join(values)!r}.'
    )
  return numbers


def _configs() -> List[Dict[str, Any]]:
  """The kernel settings to time: keyword arguments of tvl1_cuda.solve."""
  sweeps = _numbers('sweeps', _SWEEPS.value, 2)
  for sweep in sweeps:
    try:
      tvl1_cuda.check_sweep(sweep)
    except ValueError as e:
      raise app.UsageError(f'--sweeps: {e}') from None
  registers = _numbers('column_registers', _COLUMN_REGISTERS.value, 0)
  threads = _numbers('threads', _THREADS.value, 1)
  configs = []
  for kernel in _KERNELS.value:
    if kernel not in tvl1_cuda.KERNELS:
      raise app.UsageError(
          f'--kernels takes {", ".join(tvl1_cuda.KERNELS)}; got {kernel!r}.'
      )
    if kernel == 'columns':
      for sweep in sweeps:
        for cap in registers:
          configs.append(
              {'kernel': kernel, 'sweep': sweep, 'max_registers': cap or None}
          )
    else:
      for count in threads:
        configs.append({'kernel': kernel, 'threads': count})
  return configs


def _label(config: Dict[str, Any]) -> str:
  if config['kernel'] == 'columns':
    registers = config['max_registers'] or 'auto'
    return f'columns sweep {config["sweep"]} registers {registers}'
  return f'pixels threads {config["threads"]}'


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
  for config in _configs():
    for batch in map(int, _BATCHES.value):
      reps = -(-batch // len(first))
      a = np.concatenate([first] * reps)[:batch]
      b = np.concatenate([second] * reps)[:batch]
      expected = np.concatenate([reference] * reps)[:batch]
      stats = {}
      begin = time.perf_counter()
      flow, gpu_iterations = tvl1_cuda.solve(a, b, stats=stats, **config)
      seconds = time.perf_counter() - begin
      same = bool(np.array_equal(flow, expected))
      identical &= same
      row['runs'].append(
          {
              **config,
              'label': _label(config),
              'levels_run_by': stats['kernels'],
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
          f'{height}x{width} {_label(config)} batch {batch:>4}: '
          f'{batch / seconds:8.1f} pairs/s, identical to tvl1.py: {same}',
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
        f'({best["label"]}, batch {best["batch"]}); tvl1.py on '
        f'{results["cpu_count"]} cores '
        f'{row["cpu_numba_all_cores_pairs_per_second"]:.2f}; identical to '
        f'tvl1.py: {row["identical_to_tvl1_cpu"]}; vs OpenCV '
        f'({vs.get("pairs", 0)} pairs): identical {vs.get("identical")}, max '
        f'EPE {vs.get("max_epe")}; finest-level iterations '
        f'{row["finest_level_iterations"]}'
    )
    for run in row['runs']:
      lines.append(
          f'    {run["label"]} batch {run["batch"]:>4}: '
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
  _configs()  # The kernel flags, checked before anything runs.
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
  warm = synthetic_videos.gray_frames('small', 32, 40, 2)
  results['compile_seconds'] = {}
  for config in [{}] + _configs():
    # The default settings first: what a user's first call pays.
    begin = time.perf_counter()
    tvl1_cuda.solve(warm[:1], warm[1:], **config)
    label = _label(config) if config else 'default'
    results['compile_seconds'][label] = time.perf_counter() - begin
    print(
        f'{label}: compiled in {time.perf_counter() - begin:.1f} s', flush=True
    )
  begin = time.perf_counter()
  tvl1.solve(warm[:1], warm[1:])
  results['compile_seconds']['tvl1.py'] = time.perf_counter() - begin
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
