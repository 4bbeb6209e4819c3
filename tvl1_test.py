"""Tests for tvl1.py: each step and the whole flow against OpenCV's DualTVL1.

Pairs are small (64x80) generated textures moved by a known shift, rotation,
zoom or a large smooth non-rigid field; OpenCV's own DualTVL1 is the
reference.
"""

import inspect
import re
import threading

from absl.testing import absltest
from absl.testing import parameterized
import cv2
import numba
import numpy as np

import checkpoints
import recipe
import testing
import tvl1

HEIGHT, WIDTH = 64, 80


def texture(
    height: int, width: int, seed: int = 0, sigma: float = 2.0
) -> np.ndarray:
  """A smooth random float32 texture in 0..255."""
  rng = np.random.default_rng(seed)
  image = cv2.GaussianBlur(
      rng.random((height, width)).astype(np.float32), (0, 0), sigma
  )
  return cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX)


def moved_pair(
    kind: str, seed: int = 0, height: int = HEIGHT, width: int = WIDTH
):
  """uint8 (first, second) where second shows first's texture moved."""
  pad = 24
  big = texture(height + 2 * pad, width + 2 * pad, seed)
  y, x = np.mgrid[0:height, 0:width].astype(np.float32)
  cy, cx = (height - 1) / 2, (width - 1) / 2
  if kind == 'shift':
    src_x, src_y = x - 2.6, y + 1.3
  elif kind in ('rotation', 'zoom'):
    angle = np.deg2rad(4.0) if kind == 'rotation' else 0.0
    scale = 1.0 if kind == 'rotation' else 1.06
    dx, dy = x - cx, y - cy
    src_x = (np.cos(angle) * dx + np.sin(angle) * dy) / scale + cx
    src_y = (-np.sin(angle) * dx + np.cos(angle) * dy) / scale + cy
  elif kind == 'nonrigid':
    rng = np.random.default_rng(seed + 1)
    field = [
        cv2.GaussianBlur(
            rng.standard_normal((height, width)).astype(np.float32), (0, 0), 8
        )
        for _ in range(2)
    ]
    field = [f * (20.0 / np.abs(f).max()) for f in field]
    src_x, src_y = x - field[0], y - field[1]
  else:
    raise ValueError(kind)
  first = big[pad : pad + height, pad : pad + width]
  second = cv2.remap(
      big,
      (src_x + pad).astype(np.float32),
      (src_y + pad).astype(np.float32),
      cv2.INTER_LINEAR,
  )
  return (np.round(first).astype(np.uint8), np.round(second).astype(np.uint8))


def opencv_flow(first: np.ndarray, second: np.ndarray) -> np.ndarray:
  return cv2.optflow.DualTVL1OpticalFlow_create().calc(first, second, None)


class StepsTest(parameterized.TestCase):

  def test_cubic_remap_matches_opencv(self):
    rng = np.random.default_rng(0)
    src = texture(HEIGHT, WIDTH)
    u1 = (rng.standard_normal((HEIGHT, WIDTH)) * 3).astype(np.float32)
    u2 = (rng.standard_normal((HEIGHT, WIDTH)) * 3).astype(np.float32)
    u1[:6] += 70.0  # Some points far outside: border constant 0.
    grid_y, grid_x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    expected = cv2.remap(src, grid_x + u1, grid_y + u2, cv2.INTER_CUBIC)
    out = np.empty((2,) + src.shape, np.float32)
    tvl1.remap_cubic(np.stack([src, src * 2]), u1, u2, out, tvl1.CUBIC_WEIGHTS)
    np.testing.assert_array_equal(out[0], expected)
    np.testing.assert_array_equal(
        out[1], cv2.remap(src * 2, grid_x + u1, grid_y + u2, cv2.INTER_CUBIC)
    )

  def test_median_matches_opencv(self):
    src = (
        np.random.default_rng(1)
        .standard_normal((HEIGHT, WIDTH))
        .astype(np.float32)
    )
    out = np.empty_like(src)
    tvl1.median5(src, out, np.empty((HEIGHT + 4, WIDTH + 4), np.float32))
    np.testing.assert_array_equal(out, cv2.medianBlur(src, 5))

  def test_median_network_places_the_median(self):
    values = np.random.default_rng(2).integers(0, 6, (25, 20000))
    sorted_wires = values.copy()
    for lo, hi in tvl1.MEDIAN_25:
      a, b = sorted_wires[lo].copy(), sorted_wires[hi].copy()
      sorted_wires[lo], sorted_wires[hi] = np.minimum(a, b), np.maximum(a, b)
    np.testing.assert_array_equal(sorted_wires[12], np.median(values, axis=0))

  def test_written_out_network_is_median_25(self):
    source = inspect.getsource(tvl1._median_rows)
    written = re.findall(r'v(\d+), v(\d+) = _sort2', source)
    self.assertEqual(
        [tuple(map(int, p)) for p in written],
        [tuple(p) for p in tvl1.MEDIAN_25.tolist()],
    )


class PyramidTest(absltest.TestCase):

  def test_levels_are_opencv_resizes_and_fill_the_given_arrays(self):
    rng = np.random.default_rng(0)
    frames = (rng.random((2, 33, 71)) * 255).astype(np.uint8)
    levels = tvl1._pyramid(frames)
    self.assertEqual(
        [level.shape[1:] for level in levels], tvl1.level_shapes(33, 71)
    )
    for i, frame in enumerate(frames):
      expected = frame.astype(np.float32)
      np.testing.assert_array_equal(levels[0][i], expected)
      for level in levels[1:]:
        expected = cv2.resize(
            expected,
            None,
            fx=tvl1.SCALE_STEP,
            fy=tvl1.SCALE_STEP,
            interpolation=cv2.INTER_LINEAR,
        )
        np.testing.assert_array_equal(level[i], expected)
    out = [np.full_like(level, np.nan) for level in levels]
    self.assertIs(tvl1._pyramid(frames, out), out)
    for got, want in zip(out, levels):
      np.testing.assert_array_equal(got, want)

  def test_misshapen_levels_are_refused_not_left_unfilled(self):
    frames = np.zeros((1, 33, 71), np.uint8)
    out = [
        np.empty((1, h, w), np.float32) for h, w in tvl1.level_shapes(33, 71)
    ]
    out[1] = np.empty((1, 26, 56), np.float32)
    with self.assertRaisesRegex(ValueError, r'`out` levels must be shaped'):
      tvl1._pyramid(frames, out)

  def test_level_shapes_stop_below_the_smallest_level(self):
    self.assertEqual(tvl1.level_shapes(20, 20), [(20, 20), (16, 16)])
    self.assertEqual(tvl1.level_shapes(16, 17), [(16, 17)])
    self.assertEqual(
        tvl1.level_shapes(256, 455),
        [(256, 455), (205, 364), (164, 291), (131, 233), (105, 186)],
    )

  def test_upscale_fills_the_given_array(self):
    rng = np.random.default_rng(1)
    u = rng.standard_normal((2, 16, 17)).astype(np.float32)
    out = np.full((2, 20, 21), np.nan, np.float32)
    self.assertIs(tvl1._upscale(u, 20, 21, out), out)
    for i in range(2):
      expected = cv2.resize(u[i], (21, 20), interpolation=cv2.INTER_LINEAR)
      np.testing.assert_array_equal(
          out[i], expected * np.float32(1 / tvl1.SCALE_STEP)
      )


class FlowTest(parameterized.TestCase):

  def assert_faithful(self, flow, expected):
    """The issue's tolerances on the endpoint error, per frame pair."""
    self.assertEqual(flow.shape, expected.shape)
    error = np.linalg.norm(flow - expected, axis=-1)
    self.assertLessEqual(float(np.median(error)), 0.05)
    self.assertLessEqual(float(np.percentile(error, 99)), 0.5)

  @parameterized.named_parameters(
      ('shift', 'shift', (2.6, -1.3)),
      ('rotation', 'rotation', None),
      ('zoom', 'zoom', None),
  )
  def test_matches_opencv_on_known_motion(self, kind, mean):
    first, second = moved_pair(kind)
    expected = opencv_flow(first, second)
    flow = tvl1.flow(first, second)
    self.assert_faithful(flow, expected)
    if mean is not None:
      np.testing.assert_allclose(
          flow[12:-12, 12:-12].mean(axis=(0, 1)), mean, atol=0.1
      )

  def test_matches_opencv_where_it_runs_to_its_iteration_limit(self):
    pairs = [moved_pair('nonrigid', seed) for seed in (0, 3)]
    first = np.stack([p[0] for p in pairs])
    second = np.stack([p[1] for p in pairs])
    flow, iterations = tvl1.solve(first, second)
    limit = tvl1.WARPS * tvl1.OUTER_ITERATIONS * tvl1.INNER_ITERATIONS
    # The finest level runs every warp to the end: the hard case (with
    # these fields; others of this amplitude stop early on some warps).
    np.testing.assert_array_equal(iterations[:, 0], [limit, limit])
    for n in range(len(pairs)):
      self.assert_faithful(flow[n], opencv_flow(first[n], second[n]))

  def test_python_threads_at_once_agree(self):
    # Numba's default threading layer aborts the process when two Python
    # threads launch parallel kernels at once (as parallel tf.data calls
    # would): parallel batches take a lock, one-thread batches run serially.
    pairs = [moved_pair(kind) for kind in ('shift', 'zoom')]
    first = np.stack([p[0] for p in pairs])
    second = np.stack([p[1] for p in pairs])
    expected = tvl1.flow(first, second)
    results = []

    def run(threads):
      numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
      results.append(tvl1.flow(first, second))

    workers = [threading.Thread(target=run, args=(n,)) for n in (1, 1, 2, 2)]
    for worker in workers:
      worker.start()
    for worker in workers:
      worker.join()
    self.assertLen(results, 4)
    for flow in results:
      np.testing.assert_array_equal(flow, expected)

  def test_batch_equals_single_pairs(self):
    pairs = [moved_pair(kind) for kind in ('shift', 'zoom')]
    batch = tvl1.flow(
        np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    )
    for n, (first, second) in enumerate(pairs):
      np.testing.assert_array_equal(batch[n], tvl1.flow(first, second))

  def test_frames_must_be_uint8(self):
    with self.assertRaisesRegex(ValueError, r'`first` must be uint8 gray'):
      tvl1.flow(np.zeros((8, 8), np.float32), np.zeros((8, 8), np.float32))

  def test_shapes_must_agree(self):
    with self.assertRaisesRegex(ValueError, r'must have one shape; got'):
      tvl1.flow(np.zeros((8, 8), np.uint8), np.zeros((8, 9), np.uint8))

  def test_bad_backend(self):
    with self.assertRaisesRegex(
        ValueError,
        r"`backend` must be one of \('numba', 'opencv', 'cuda'\); got 'gpu'",
    ):
      recipe.compute_flow(np.zeros((2, 8, 8), np.uint8), backend='gpu')


class DownstreamTest(testing.TempDirMixin, absltest.TestCase):

  def test_flow_input_and_logits_agree_with_opencv(self):
    # A 9-frame clip moving non-rigidly, through the recipe's flow steps.
    frames = [moved_pair('nonrigid', seed=0, height=224, width=224)[0]]
    for seed in range(1, 9):
      frames.append(
          moved_pair('shift', seed=0, height=224, width=224)[1]
          if seed % 2
          else frames[0]
      )
    frames = np.stack(frames)
    inputs = {
        backend: recipe.flow_to_input(
            recipe.compute_flow(frames, workers=2, backend=backend)
        )[None]
        for backend in ('numba', 'opencv')  # 'cuda': tvl1_cuda_test.py.
    }
    self.assertLessEqual(
        float(np.abs(inputs['numba'] - inputs['opencv']).mean()), 0.01
    )
    prefix = self.path('model.ckpt')
    checkpoints.write_synthetic(prefix, 'flow', seed=3)
    model = checkpoints.load_model(prefix)
    logits = {
        k: model(v, is_training=False)[0].numpy() for k, v in inputs.items()
    }
    np.testing.assert_allclose(
        logits['numba'], logits['opencv'], atol=1e-4, rtol=1e-4
    )


if __name__ == '__main__':
  absltest.main()
