r"""TV-L1's inner iteration in TensorFlow, graph and XLA, against tvl1.py.

The issue that asked for a faster TV-L1 named TensorFlow with XLA as one way
to build it. This measures that way's core before anyone builds it whole: the
inner iteration (thresholding, divergence, flow update, stopping-rule sum,
forward gradient and dual step, as tvl1.py's), vectorised over a batch of
pairs, looped in a tf.while_loop, in a tf.function with and without
jit_compile. It is not the solver: no pyramid, no warps and no median, and
its float32 arithmetic is left to TensorFlow (XLA may fuse products into
sums), so it is only a lower bound on what a TensorFlow TV-L1 would cost. It
prints nanoseconds per pixel and iteration next to tvl1.py's own inner
iteration on the same cores (its `_inner_iteration` and stopping rule, pairs
in parallel on Numba threads):

  python benchmark_tvl1_tf.py --json_out=benchmarks/benchmark_tvl1_tf_cpu.json
"""

import runtime  # pylint: disable=g-bad-import-order

runtime.setup()

import os
import time
from typing import Any, Dict, Sequence

from absl import app
from absl import flags
import numba
import numpy as np
import tensorflow as tf

import fileio
import tvl1

_PAIRS = flags.DEFINE_integer('pairs', 4, 'Pairs in the batch.', lower_bound=1)
_SIZE = flags.DEFINE_string('size', '256x455', 'HEIGHTxWIDTH of the frames.')
_ITERATIONS = flags.DEFINE_integer(
    'iterations', 60, 'Inner iterations per timed call.', lower_bound=1
)
_REPEATS = flags.DEFINE_integer(
    'repeats', 3, 'Timed calls per variant (the best counts).', lower_bound=1
)
_JSON_OUT = flags.DEFINE_string(
    'json_out', None, 'Also write the results here as JSON.'
)


def _inner_loop(state, data, iterations):
  """`iterations` of tvl1's inner iteration on [N, H, W] float32 tensors."""
  l_t = tf.constant(tvl1.LAMBDA * tvl1.THETA, tf.float32)
  theta = tf.constant(tvl1.THETA, tf.float32)
  taut = tf.constant(tvl1.TAU / tvl1.THETA, tf.float32)
  wx, wy, grad, rho_c = data

  def left(p):  # p at x - 1, 0 left of the frame.
    return tf.pad(p[:, :, :-1], [[0, 0], [0, 0], [1, 0]])

  def up(p):  # p at y - 1, 0 above the frame.
    return tf.pad(p[:, :-1, :], [[0, 0], [1, 0], [0, 0]])

  def forward(u):  # Forward differences, 0 at the last column and row.
    ux = tf.pad(u[:, :, 1:] - u[:, :, :-1], [[0, 0], [0, 0], [0, 1]])
    uy = tf.pad(u[:, 1:, :] - u[:, :-1, :], [[0, 0], [0, 1], [0, 0]])
    return ux, uy

  def dual(q1, q2, ux, uy):
    norm = tf.cast(
        tf.sqrt(tf.cast(ux, tf.float64) ** 2 + tf.cast(uy, tf.float64) ** 2),
        tf.float32,
    )
    n = 1.0 + taut * norm
    return (q1 + taut * ux) / n, (q2 + taut * uy) / n

  def body(i, u1, u2, p11, p12, p21, p22, error):
    del error
    rho = rho_c + (wx * u1 + wy * u2)
    fi = -rho / tf.where(grad > 0, grad, 1.0)
    step = tf.where(
        rho < -l_t * grad, l_t, tf.where(rho > l_t * grad, -l_t, fi)
    )
    step = tf.where(
        (tf.abs(rho) <= l_t * grad) & (grad <= np.finfo(np.float32).eps),
        0.0,
        step,
    )
    d1 = (p11 - left(p11)) + (p12 - up(p12))
    d2 = (p21 - left(p21)) + (p22 - up(p22))
    n1 = (u1 + step * wx) + theta * d1
    n2 = (u2 + step * wy) + theta * d2
    error = tf.reduce_sum((n1 - u1) ** 2 + (n2 - u2) ** 2, axis=[1, 2])
    u1x, u1y = forward(n1)
    u2x, u2y = forward(n2)
    p11, p12 = dual(p11, p12, u1x, u1y)
    p21, p22 = dual(p21, p22, u2x, u2y)
    return i + 1, n1, n2, p11, p12, p21, p22, error

  def cond(i, *rest):
    # As tvl1.py, a pair stops once its error is small; here the batch runs
    # until every pair has stopped or the count is reached.
    error = rest[-1]
    return (i < iterations) & tf.reduce_any(error > 1e-30)

  error = tf.fill([tf.shape(wx)[0]], np.float32(np.inf))
  result = tf.while_loop(cond, body, (tf.constant(0),) + state + (error,))
  return result[1:-1], result[0]


@numba.njit(parallel=True)
def _numba_loop(state, data, iterations, threshold):
  """tvl1.py's inner iteration and stopping rule, pairs in parallel."""
  count, height, width = data.shape[1:]
  l_t = np.float32(tvl1.LAMBDA * tvl1.THETA)
  theta = np.float32(tvl1.THETA)
  taut = np.float32(tvl1.TAU / tvl1.THETA)
  ran = np.zeros(count, np.int64)
  for n in numba.prange(count):
    change = np.empty((height, width), np.float32)
    scratch = np.empty((4, width), np.float32)
    above = True
    while above and ran[n] < iterations:
      tvl1._inner_iteration(  # pylint: disable=protected-access
          data[0, n],
          data[1, n],
          data[2, n],
          data[3, n],
          state[0, n],
          state[1, n],
          state[2, n],
          state[3, n],
          state[4, n],
          state[5, n],
          change,
          l_t,
          theta,
          taut,
          scratch,
      )
      above = tvl1._above(change, threshold)  # pylint: disable=protected-access
      ran[n] += 1
  return ran


def _time_numba(state, data, iterations: int) -> Dict[str, Any]:
  threshold = np.float32(1e-30)
  begin = time.perf_counter()
  _numba_loop(state.copy(), data, 1, threshold)
  first = time.perf_counter() - begin
  best = None
  for _ in range(_REPEATS.value):
    work = state.copy()
    begin = time.perf_counter()
    ran = _numba_loop(work, data, iterations, threshold)
    seconds = time.perf_counter() - begin
    best = seconds if best is None else min(best, seconds)
  return {
      'first_call_seconds': first,
      'seconds': best,
      'iterations': int(ran.min()),
      'flow': work[:2],
  }


def _time_tf(
    jit: bool, state, data, iterations: int, reference: np.ndarray
) -> Dict[str, Any]:
  function = tf.function(_inner_loop, jit_compile=jit)
  begin = time.perf_counter()
  _, ran = function(state, data, tf.constant(iterations))
  first = time.perf_counter() - begin
  best = None
  for _ in range(_REPEATS.value):
    begin = time.perf_counter()
    out, ran = function(state, data, tf.constant(iterations))
    float(tf.reduce_sum(out[0]))
    seconds = time.perf_counter() - begin
    best = seconds if best is None else min(best, seconds)
  flow = np.stack([out[0].numpy(), out[1].numpy()])
  return {
      'first_call_seconds': first,
      'seconds': best,
      'iterations': int(ran),
      # How far TensorFlow's arithmetic drifts from tvl1.py's in these
      # iterations (0 only if every operation rounds as tvl1.py's does).
      'max_abs_flow_difference_vs_tvl1': float(np.abs(flow - reference).max()),
  }


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}.')
  try:
    height, width = (int(v) for v in _SIZE.value.lower().split('x'))
  except ValueError:
    raise app.UsageError(
        f'--size takes HEIGHTxWIDTH, e.g. 256x455; got {_SIZE.value!r}.'
    ) from None
  rng = np.random.default_rng(0)
  shape = (_PAIRS.value, height, width)
  # Values of the sizes TV-L1 sees: gradients of a few grey levels (and
  # grad = wx^2 + wy^2, as the warp makes it), a flow of pixels, a dual
  # variable inside the unit ball.
  wx = rng.normal(0, 8, shape).astype(np.float32)
  wy = rng.normal(0, 8, shape).astype(np.float32)
  rho_c = rng.normal(0, 20, shape).astype(np.float32)
  data = tuple(tf.constant(v) for v in (wx, wy, wx * wx + wy * wy, rho_c))
  state = tuple(
      tf.constant(rng.normal(0, s, shape).astype(np.float32))
      for s in (2, 2, 0.3, 0.3, 0.3, 0.3)
  )
  iterations = _ITERATIONS.value
  pixel_iterations = _PAIRS.value * height * width * iterations
  results: Dict[str, Any] = {
      'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
      'cpu_count': os.cpu_count(),
      'tensorflow': tf.__version__,
      'size': [height, width],
      'pairs': _PAIRS.value,
      'iterations': iterations,
      'load_average_before': os.getloadavg()[0],
      'variants': {},
  }
  row = _time_numba(
      np.stack([v.numpy() for v in state]),
      np.stack([v.numpy() for v in data]),
      iterations,
  )
  reference = row.pop('flow')
  row['ns_per_pixel_iteration'] = row['seconds'] / pixel_iterations * 1e9
  results['variants']['tvl1.py (Numba, pairs in parallel)'] = row
  for name, jit in (('tf.function', False), ('tf.function + XLA', True)):
    row = _time_tf(jit, state, data, iterations, reference)
    row['ns_per_pixel_iteration'] = row['seconds'] / pixel_iterations * 1e9
    results['variants'][name] = row
    print(f'{name}: {row["ns_per_pixel_iteration"]:.2f} ns', flush=True)
  results['load_average_after'] = os.getloadavg()[0]
  lines = [
      f'{height}x{width}, {_PAIRS.value} pairs, {iterations} inner '
      f'iterations, {results["cpu_count"]} cores, TensorFlow '
      f'{tf.__version__}; load {results["load_average_before"]:.2f} -> '
      f'{results["load_average_after"]:.2f}'
  ]
  for name, row in results['variants'].items():
    drift = row.get('max_abs_flow_difference_vs_tvl1')
    lines.append(
        f'  {name:<36} {row["ns_per_pixel_iteration"]:7.2f} ns per pixel and'
        f' iteration ({row["seconds"]:.3f} s, {row["iterations"]} iterations)'
        + (
            ''
            if drift is None
            else f'; flow vs tvl1.py: max |diff| {drift:.3g}'
        )
    )
  print('\n'.join(lines))
  if _JSON_OUT.value:
    fileio.write_json(_JSON_OUT.value, results)
    print(f'JSON: {_JSON_OUT.value}')


if __name__ == '__main__':
  app.run(main)
