"""Tests for tvl1_cuda.py: the GPU kernels against tvl1.py, bit for bit.

Without a GPU the kernels run in Numba's CUDA simulator, in a subprocess
(NUMBA_ENABLE_CUDASIM must be set before Numba loads), on one tiny pair with
two pyramid levels: slow Python, but every branch of the kernel runs. The
simulator computes in NumPy float32, so it checks the algorithm and the order
of operations; that the GPU does not fuse a product into an addition is
checked by the test that runs only on a GPU, and by benchmark_tvl1_cuda.py.
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
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:28, 0:30].astype(np.float32)
    image = 128 + 70 * np.sin(x / 2.7) * np.cos(y / 2.1) + 25 * rng.random(x.shape)
    first = np.clip(image[:20, :20], 0, 255).astype(np.uint8)[np.newaxis]
    second = np.clip(image[1:21, 2:22], 0, 255).astype(np.uint8)[np.newaxis]
    want, want_it = tvl1.solve(first, second)
    got, got_it = tvl1_cuda.solve(first, second, threads=4)
    print(json.dumps({
        'identical': bool(np.array_equal(want, got)),
        'max_diff': float(np.abs(want - got).max()),
        'moved': float(np.abs(want).max()),
        'iterations': want_it.tolist(),
        'gpu_iterations': got_it.tolist(),
    }))
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
    # Two levels ran, and the flow moved: the kernel's paths were exercised.
    self.assertLen(report['iterations'][0], 2)
    self.assertGreater(report['moved'], 0.5)
    self.assertTrue(report['identical'], report)
    self.assertEqual(report['gpu_iterations'], report['iterations'])


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


class Tvl1CudaErrorsTest(absltest.TestCase):

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
