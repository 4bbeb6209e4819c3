"""Tests for tvl1_cuda.py: the GPU kernels against tvl1.py, bit for bit.

Without a GPU the kernels run in Numba's CUDA simulator, in a subprocess
(NUMBA_ENABLE_CUDASIM must be set before Numba loads), on tiny pairs: slow
Python, but every branch of both kernels runs, including the stopping rule's
row-order sum and the columns kernel's pass run again when the rule stops it
early (the tests widen the rule's slack so that every check goes that way,
which must not change the flow). The simulator computes in NumPy float32, so
it checks the algorithm and the order of operations; that the GPU does not
fuse a product into an addition is checked by the test that runs only on a
GPU, and by benchmark_tvl1_cuda.py.
"""

import json
import os
import subprocess
import sys
import textwrap

from absl.testing import absltest
import numpy as np

import recipe
import testing
import tvl1
import tvl1_cuda

_SIMULATED_RUN = textwrap.dedent("""
    import json
    import numpy as np
    import tvl1, tvl1_cuda
    assert tvl1_cuda.SIMULATED

    def pair(size, delta, seed):
      # Noise, and a few pixels that change: a flow of up to a pixel or two
      # that converges in tens of iterations (the simulator is slow).
      rng = np.random.default_rng(seed)
      first = (rng.random((1,) + size) * 200 + 20).astype(np.int32)
      second = first.copy()
      second[0, size[0] // 2, size[1] // 2] += delta
      second[0, 2, 3] -= delta // 2
      second[0, -3, 3] += delta // 3
      return (
          np.clip(first, 0, 255).astype(np.uint8),
          np.clip(second, 0, 255).astype(np.uint8),
      )

    report = []
    cases = [
        # Two pyramid levels.
        (pair((20, 20), 80, 3), 'pixels', 2, False),
        (pair((10, 12), 20, 2), 'columns', tvl1_cuda.SWEEP, False),
        (pair((10, 12), 20, 1), 'columns', 3, True),
        (pair((10, 12), 20, 1), 'pixels', 2, True),
    ]
    for (first, second), kernel, sweep, doubt in cases:
      # Numba's simulator reads globals when it runs.
      tvl1_cuda._ROUNDING = 1.0 if doubt else 6.0e-8
      want, want_it = tvl1.solve(first, second)
      stats = {}
      got, got_it = tvl1_cuda.solve(
          first, second, threads=4, kernel=kernel, sweep=sweep, stats=stats
      )
      report.append({
          'case': f'{kernel} sweep {sweep} doubt {doubt}',
          'identical': bool(np.array_equal(want, got)),
          'max_diff': float(np.abs(want - got).max()),
          'moved': float(np.abs(want).max()),
          'iterations': want_it.tolist(),
          'gpu_iterations': got_it.tolist(),
          'row_order_sums': stats['serial_sums'].tolist(),
          'kernels': stats['kernels'],
      })
    print(json.dumps(report))
""")


class Tvl1CudaSimulatorTest(absltest.TestCase):

  def test_simulated_kernels_match_tvl1_bit_for_bit(self):
    result = subprocess.run(
        [sys.executable, '-c', _SIMULATED_RUN],
        capture_output=True,
        text=True,
        check=False,
        cwd=testing.ROOT,
        env=dict(os.environ, NUMBA_ENABLE_CUDASIM='1'),
        timeout=600,
    )
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    report = json.loads(result.stdout.strip().splitlines()[-1])
    pixels, columns, columns_doubt, pixels_doubt = report
    # Two levels ran, and the flow moved by a pixel: the warp's paths ran.
    self.assertLen(pixels['iterations'][0], 2)
    self.assertGreater(pixels['moved'], 1.0)
    for case in report:
      self.assertTrue(case['identical'], case)
      self.assertEqual(case['gpu_iterations'], case['iterations'], case)
      self.assertEqual(set(case['kernels']), {case['case'].split()[0]}, case)
      self.assertGreater(case['moved'], 0.01, case)
    # The columns kernel stopped inside a pass (the counts are not multiples
    # of its sweep), so its passes were run again.
    self.assertNotEqual(columns['iterations'][0][0] % tvl1_cuda.SWEEP, 0)
    self.assertNotEqual(columns_doubt['iterations'][0][0] % 3, 0)
    # With the widened slack every check took OpenCV's row-order sum.
    for case in (columns_doubt, pixels_doubt):
      self.assertEqual(case['row_order_sums'], case['iterations'], case)


class Tvl1CudaGpuTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    if tvl1_cuda.SIMULATED or not tvl1_cuda.available():
      self.skipTest('needs an NVIDIA GPU (benchmark_tvl1_cuda.py checks more)')

  def test_gpu_matches_tvl1_bit_for_bit(self):
    rng = np.random.default_rng(0)
    frames = (rng.random((3, 64, 80)) * 255).astype(np.uint8)
    want, want_iterations = tvl1.solve(frames[:-1], frames[1:])
    got, got_iterations = tvl1_cuda.solve(frames[:-1], frames[1:])
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_iterations, want_iterations)


class Tvl1CudaKernelChoiceTest(absltest.TestCase):

  def test_levels_too_wide_for_the_columns_kernel_use_the_pixels_kernel(self):
    widest = tvl1_cuda._columns_width(tvl1_cuda.SWEEP)
    self.assertGreaterEqual(widest, 455)
    _, block, name = tvl1_cuda._launch(
        'columns', tvl1_cuda.SWEEP, None, 512, widest
    )
    self.assertEqual(name, 'columns')
    self.assertGreaterEqual(block, widest)
    self.assertEqual(block % 32, 0)
    _, block, name = tvl1_cuda._launch(
        'columns', tvl1_cuda.SWEEP, None, 512, widest + 1
    )
    self.assertEqual((name, block), ('pixels', 512))

  def test_the_columns_kernel_fits_in_static_shared_memory(self):
    for sweep in (2, 3, 5):
      width = tvl1_cuda._columns_width(sweep)
      shared = (4 * sweep - 2) * width * 4 + tvl1_cuda._PARTIAL * 8
      self.assertLessEqual(shared + 8 * sweep, 48 * 1024, sweep)


class Tvl1CudaErrorsTest(absltest.TestCase):

  def test_benchmark_refuses_a_bad_sweep_before_any_work(self):
    results = testing.entry_cases(
        'benchmark_tvl1_cuda', [['--sweeps=4'], ['--column_registers=x']]
    )
    self.assertNotEqual(results[0]['code'], 0)
    self.assertIn(
        '--sweeps: `sweep` must be at least 2 and divide 30; got 4',
        results[0]['stderr'],
    )
    self.assertNotEqual(results[1]['code'], 0)
    self.assertIn(
        "--column_registers takes integers of at least 0; got 'x'",
        results[1]['stderr'],
    )

  def test_kernel_and_sweep_are_checked(self):
    frames = np.zeros((2, 8, 8), np.uint8)
    with self.assertRaisesRegex(
        ValueError, r"`kernel` must be one of .*columns.*pixels.*got 'rows'"
    ):
      tvl1_cuda.solve(frames[:1], frames[1:], kernel='rows')
    with self.assertRaisesRegex(
        ValueError, r'`sweep` must be at least 2 and divide 30; got 4'
    ):
      tvl1_cuda.solve(frames[:1], frames[1:], sweep=4)

  def test_threads_must_be_a_power_of_two(self):
    frames = np.zeros((2, 8, 8), np.uint8)
    with self.assertRaisesRegex(ValueError, r'`threads`.*power of 2.*got 48'):
      tvl1_cuda.solve(frames[:1], frames[1:], threads=48)

  def test_cuda_backend_without_a_gpu_says_what_to_use(self):
    if tvl1_cuda.available():
      self.skipTest('a CUDA GPU (or the simulator) is available here')
    with self.assertRaisesRegex(
        ValueError, r"backend 'cuda' cannot run here: .*use backend numba"
    ):
      recipe.check_backend('cuda')

  def test_solve_without_a_gpu_raises_cuda_unavailable(self):
    if tvl1_cuda.available():
      self.skipTest('a CUDA GPU (or the simulator) is available here')
    frames = np.zeros((2, 8, 8), np.uint8)
    with self.assertRaisesRegex(tvl1_cuda.CudaUnavailable, 'CUDA'):
      tvl1_cuda.solve(frames[:1], frames[1:])


if __name__ == '__main__':
  absltest.main()
