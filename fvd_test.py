"""Tests of fvd.py and compute_fvd.py.

The network runs on a synthetic checkpoint with rgb_scratch's exact names
and shapes, on a few clips of 9 frames (the fewest the logits need) at 8x8
pixels, resized to 224 as the protocol does. The distance, the statistics
and the clip sampling are tested without the network. The reference's own
example (16 videos of 15 frames, zeros against 255) runs on the real
rgb_scratch weights when data/checkpoints/rgb_scratch holds them.
"""

import json
import os
import shutil
import tempfile
from typing import List

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import checkpoints
import fvd
import inference
import testing

_ROOT = os.path.dirname(os.path.abspath(__file__))
_REAL_CHECKPOINT = os.path.join(_ROOT, fvd.DEFAULT_CHECKPOINT)


def _random_videos(
    n: int, seed: int, frames: int = fvd.MIN_FRAMES, size: int = 8
) -> np.ndarray:
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, [n, frames, size, size, 3], dtype=np.uint8)


def _random_psd(d: int, rank: int, seed: int) -> np.ndarray:
  a = np.random.default_rng(seed).normal(size=[d, rank])
  return a @ a.T / rank


def _indexed_videos(lengths, size: int = 4) -> List[np.ndarray]:
  """Videos whose pixel values are their frame numbers (for clip offsets)."""
  return [
      np.broadcast_to(
          np.arange(n, dtype=np.uint8)[:, None, None, None], [n, size, size, 3]
      )
      for n in lengths
  ]


class DistanceTest(tf.test.TestCase, parameterized.TestCase):
  """The distance and the statistics, without the network."""

  @parameterized.parameters('symmetric', 'sqrtm')
  def test_closed_form_for_gaussians_of_known_mean_and_covariance(self, sqrt):
    # Covariances with common eigenvectors: then tr(sqrt(S1 S2)) is
    # sum(sqrt(a_i b_i)) and the distance is ||m1-m2||^2 + sum((sqrt(a) -
    # sqrt(b))^2).
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=[20, 20]))
    a, b = rng.uniform(0.1, 3, 20), rng.uniform(0.1, 3, 20)
    m1, m2 = rng.normal(size=20), rng.normal(size=20)
    want = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = fvd.frechet_distance(m1, (q * a) @ q.T, m2, (q * b) @ q.T, sqrt)
    self.assertAllClose(got, want, rtol=1e-9, atol=0)

  def test_sampled_gaussian_features_approach_the_closed_form(self):
    rng = np.random.default_rng(1)
    d, n = 6, 200_000
    cov1, cov2 = np.diag(rng.uniform(0.5, 2, d)), np.diag(
        rng.uniform(0.5, 2, d)
    )
    m1, m2 = np.zeros(d), np.full(d, 0.5)
    x = rng.multivariate_normal(m1, cov1, n)
    y = rng.multivariate_normal(m2, cov2, n)
    want = np.sum((m1 - m2) ** 2) + np.sum(
        (np.sqrt(np.diag(cov1)) - np.sqrt(np.diag(cov2))) ** 2
    )
    got = fvd.fvd_from_embeddings(x, y)
    self.assertAllClose(got, want, rtol=0.02, atol=0)

  @parameterized.named_parameters(('full_rank', 40, 400), ('low_rank', 40, 12))
  def test_square_root_routes_agree(self, d, rank):
    # low_rank is FVD's usual case: fewer clips than the 400 logits.
    cov1, cov2 = _random_psd(d, rank, 1), _random_psd(d, rank, 2)
    m1, m2 = np.zeros(d), np.ones(d)
    symmetric = fvd.frechet_distance(m1, cov1, m2, cov2, 'symmetric')
    sqrtm = fvd.frechet_distance(m1, cov1, m2, cov2, 'sqrtm')
    self.assertAllClose(symmetric, sqrtm, rtol=1e-6, atol=0)
    self.assertGreater(symmetric, d)  # Not a trivial agreement at 0.

  def test_symmetric_sqrt_squares_back(self):
    cov = _random_psd(30, 10, 3)
    root = fvd.symmetric_sqrt(cov)
    self.assertAllClose(root @ root, cov, atol=1e-10)
    self.assertAllClose(root, root.T, atol=0)

  @parameterized.parameters('unbiased', 'biased')
  def test_streaming_statistics_equal_batch_statistics(self, kind):
    # An offset of 1e4 would lose digits in sum(x x^T) - N mu mu^T.
    x = np.random.default_rng(4).normal(size=[37, 5]) * 3 + 1e4
    x = x.astype(np.float32)  # Embeddings are float32.
    stats = fvd.Stats(5)
    for start, stop in ((0, 1), (1, 8), (8, 8), (8, 30), (30, 37)):
      stats.add(x[start:stop])
    x = x.astype(np.float64)
    self.assertEqual(stats.count, 37)
    self.assertAllClose(stats.mean, x.mean(0), rtol=1e-12, atol=0)
    self.assertAllClose(
        stats.covariance(kind),
        np.cov(x.T, ddof=1 if kind == 'unbiased' else 0),
        rtol=1e-9,
        atol=1e-9,
    )

  def test_a_set_against_itself_is_zero(self):
    x = np.random.default_rng(5).normal(size=[6, 400])
    for sqrt in fvd.SQRT_METHODS:
      self.assertAllClose(
          fvd.fvd_from_embeddings(x, x, sqrt=sqrt),
          0,
          atol=1e-6 * np.trace(np.cov(x.T)),
      )

  def test_single_clip_has_no_covariance(self):
    stats = fvd.Stats(4)
    stats.add(np.ones([1, 4]))
    with self.assertRaisesRegex(
        fvd.FVDError, 'covariance needs at least 2 clips.*has 1'
    ):
      stats.covariance()

  def test_mismatched_shapes_are_refused(self):
    with self.assertRaisesRegex(fvd.FVDError, r'\[D\] and covariances'):
      fvd.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


class ResizeTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(
      (7, 13, np.uint8),
      (225, 301, np.float64),
      (64, 64, np.float32),
      (1, 3, np.int32),
  )
  def test_legacy_resize_is_tf1_resize_bilinear(self, h, w, dtype):
    x = np.random.default_rng(h).uniform(0, 255, [2, 3, h, w, 3]).astype(dtype)
    got = fvd.resize_frames(x, 'legacy').numpy()
    want = tf.compat.v1.image.resize_bilinear(
        x.reshape(6, h, w, 3), [224, 224], align_corners=False
    ).numpy()
    self.assertAllEqual(got.reshape(6, 224, 224, 3), want)

  def test_half_pixel_resize_is_tf2_resize_and_differs_from_legacy(self):
    x = np.random.default_rng(0).uniform(0, 255, [1, 2, 7, 13, 3])
    half = fvd.resize_frames(x, 'half_pixel').numpy()[0]
    tf2 = tf.image.resize(x[0], [224, 224], 'bilinear').numpy()
    self.assertAllClose(half, tf2, atol=1e-3)
    legacy = fvd.resize_frames(x, 'legacy').numpy()[0]
    self.assertGreater(np.abs(legacy - half).max(), 1.0)

  def test_scaling_maps_0_and_255_to_minus_1_and_1(self):
    x = np.zeros([1, 9, 5, 5, 3], np.uint8)
    x[:, :, :, :, 1] = 255
    out = fvd.preprocess(x).numpy()
    self.assertAllEqual(out[..., 0], -np.ones([1, 9, 224, 224]))
    self.assertAllEqual(out[..., 1], np.ones([1, 9, 224, 224]))


class ClipsTest(testing.TempDirMixin, tf.test.TestCase, parameterized.TestCase):
  """Which clips each protocol takes, without the network."""

  def test_stylegan_v_skips_short_videos_and_samples_seeded_offsets(self):
    lengths = [20, 12, 16, 40, 30]
    videos = fvd.VideoSet('v', array=_indexed_videos(lengths))
    protocol = fvd.get_protocol('stylegan_v', num_clips=3, seed=7)
    skipped = []
    clips = list(
        fvd.iter_clips(
            videos, protocol, 'real', on_skip=lambda n, why: skipped.append(n)
        )
    )
    self.assertEqual(skipped, ['v[1]'])
    self.assertEqual([c.name for c in clips], ['v[0]', 'v[2]', 'v[3]'])
    starts = [int(c.frames[0, 0, 0, 0]) for c in clips]
    for clip, start in zip(clips, starts):
      self.assertAllEqual(clip.frames[:, 0, 0, 0], np.arange(start, start + 16))
    self.assertEqual(starts[1], 0)  # A 16-frame video has one clip.
    again = [
        int(c.frames[0, 0, 0, 0])
        for c in fvd.iter_clips(videos, protocol, 'real')
    ]
    self.assertEqual(again, starts)
    generated = [
        int(c.frames[0, 0, 0, 0])
        for c in fvd.iter_clips(videos, protocol, 'generated')
    ]
    self.assertEqual(generated, [0, 0, 0])
    others = [
        [
            int(c.frames[0, 0, 0, 0])
            for c in fvd.iter_clips(
                videos, fvd.get_protocol('stylegan_v', seed=s), 'real'
            )
        ]
        for s in range(8)
    ]
    self.assertGreater(len({tuple(o) for o in others}), 1)

  def test_reference_takes_every_frame_and_refuses_short_videos(self):
    videos = fvd.VideoSet('v', array=_indexed_videos([15, 15]))
    clips = list(fvd.iter_clips(videos, fvd.get_protocol('reference'), 'real'))
    self.assertEqual([c.frames.shape[0] for c in clips], [15, 15])
    short = fvd.VideoSet('s', array=_indexed_videos([8, 8]))
    with self.assertRaisesRegex(
        fvd.FVDError, r's\[0\] has 8 frames, fewer than the 9'
    ):
      list(fvd.iter_clips(short, fvd.get_protocol('reference'), 'real'))

  def test_video_files_are_decoded_into_clips(self):
    tmp = self.path('videos')
    for i, count in enumerate((18, 10, 20)):
      testing.write_moving_video(
          os.path.join(tmp, f'v{i}.mp4'), count, seed=i, height=16, width=24
      )
    videos = fvd.open_set(tmp)
    protocol = fvd.get_protocol('stylegan_v', clip_frames=16)
    clips = list(fvd.iter_clips(videos, protocol, 'real'))
    self.assertEqual(
        [os.path.basename(c.name) for c in clips], ['v0.mp4', 'v2.mp4']
    )
    self.assertEqual(clips[0].frames.shape, (16, 16, 24, 3))
    self.assertEqual(clips[0].frames.dtype, np.uint8)

  def test_stats_file_round_trip_and_protocol_mismatch(self):
    path = self.path('s.npz')
    protocol = fvd.get_protocol('reference')
    stats = fvd.Stats(3)
    stats.add(np.random.default_rng(0).normal(size=[5, 3]))
    fvd.save_stats(path, fvd.finish(stats, protocol))
    loaded = fvd.load_stats(path, protocol)
    self.assertEqual(loaded.count, 5)
    self.assertAllClose(loaded.covariance, stats.covariance())
    with self.assertRaisesRegex(
        fvd.FVDError,
        'made with other settings.*name: saved '
        "'reference', wanted 'stylegan_v'",
    ):
      fvd.load_stats(path, fvd.get_protocol('stylegan_v'))

  @parameterized.named_parameters(
      ('wrong_rank', np.zeros([9, 8, 8, 3]), r'must be \[videos, frames'),
      ('wrong_channels', np.zeros([2, 9, 8, 8, 1]), r'must be \[videos, fr'),
      ('empty', np.zeros([2, 9, 0, 8, 3]), 'is empty'),
      ('short', np.zeros([2, 8, 8, 8, 3]), 'clips of 8 frames.*at least 9'),
      ('above_255', np.full([2, 9, 8, 8, 3], 256.0), 'values in 0..255.*256'),
      ('negative', np.full([2, 9, 8, 8, 3], -1.0), r'0..255.*from -1'),
      ('nan', np.full([2, 9, 8, 8, 3], np.nan), r'0..255.*nan'),
  )
  def test_bad_videos_are_refused(self, videos, message):
    with self.assertRaisesRegex(fvd.FVDError, message):
      fvd.check_videos(videos)

  def test_empty_array_set_is_refused(self):
    path = self.path('empty.npy')
    np.save(path, np.zeros([0, 9, 8, 8, 3], np.uint8))
    with self.assertRaisesRegex(fvd.FVDError, 'holds no videos'):
      fvd.open_set(path)

  def test_empty_folder_is_refused(self):
    os.makedirs(self.path('none'))
    with self.assertRaisesRegex(fvd.FVDError, 'has no video files'):
      fvd.open_set(self.path('none'))

  def test_bad_protocol_settings_are_refused(self):
    with self.assertRaisesRegex(fvd.FVDError, 'clip_frames.*>= 9.*got 8'):
      fvd.get_protocol('stylegan_v', clip_frames=8)


class NetworkTest(tf.test.TestCase, parameterized.TestCase):
  """FVD through the network, on a synthetic rgb_scratch-shaped checkpoint."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    inference.configure_threads()
    cls.tmp = tempfile.mkdtemp(prefix='FVDTest_')
    cls.ckpt = os.path.join(cls.tmp, 'rgb_scratch', 'model.ckpt')
    checkpoints.write_synthetic(cls.ckpt, 'rgb', seed=3)
    cls.embedder = fvd.load_embedder(cls.ckpt)
    cls.x = _random_videos(3, seed=1)
    cls.y = _random_videos(3, seed=2) // 2
    cls.ex, cls.ey = cls.embedder(cls.x), cls.embedder(cls.y)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.tmp, ignore_errors=True)
    super().tearDownClass()

  _runs = {}

  def stats(self, videos, batch_size=2):
    protocol = fvd.get_protocol('reference')
    clips = fvd.iter_clips(fvd.VideoSet('x', array=videos), protocol, 'real')
    return fvd.compute_stats(clips, self.embedder, protocol, batch_size)

  def test_embedding_is_the_plain_module_time_averaged_logits(self):
    model = checkpoints.load_model(self.ckpt)
    x = tf.compat.v1.image.resize_bilinear(
        self.x.reshape(-1, 8, 8, 3), [224, 224]
    )
    x = 2 * tf.reshape(x, [3, fvd.MIN_FRAMES, 224, 224, 3]) / 255 - 1
    want = model(x, is_training=False)[0].numpy()
    self.assertAllClose(self.ex, want, atol=1e-4, rtol=0)

  def test_fvd_of_a_set_with_itself_is_zero(self):
    a, b = self.stats(self.x), self.stats(self.x, batch_size=3)
    self.assertAllClose(
        fvd.fvd_from_stats(a, b), 0, atol=1e-6 * np.trace(a.covariance)
    )

  def test_fvd_is_symmetric_and_positive(self):
    xy = fvd.fvd_from_embeddings(self.ex, self.ey)
    yx = fvd.fvd_from_embeddings(self.ey, self.ex)
    self.assertAllClose(xy, yx, rtol=1e-9, atol=0)
    self.assertGreater(xy, 0.01)

  def test_streaming_batches_equal_one_batch(self):
    streamed = self.stats(self.x, batch_size=2)  # Batches of 2 and 1.
    self.assertEqual(streamed.count, 3)
    self.assertAllClose(
        streamed.mean, self.ex.astype(np.float64).mean(0), atol=1e-5
    )
    self.assertAllClose(
        streamed.covariance, np.cov(self.ex.astype(np.float64).T), atol=1e-5
    )

  def test_single_video_is_refused(self):
    with self.assertRaisesRegex(fvd.FVDError, 'at least 2 clips.*has 1'):
      self.stats(self.x[:1])

  def test_empty_set_is_refused(self):
    protocol = fvd.get_protocol('reference')
    with self.assertRaisesRegex(fvd.FVDError, 'no clip to embed'):
      fvd.compute_stats([], self.embedder, protocol)

  def test_flow_checkpoint_is_refused(self):
    flow = os.path.join(self.tmp, 'flow', 'model.ckpt')
    checkpoints.write_synthetic(flow, 'flow')
    with self.assertRaisesRegex(fvd.FVDError, 'RGB I3D.*2 input channels'):
      fvd.load_embedder(flow)

  # ---- the entry point -----------------------------------------------------

  def run_command(self):
    """compute_fvd's cases, run in order in one process (cached)."""
    if 'command' not in self._runs:
      real, fake = (os.path.join(self.tmp, n) for n in ('r.npy', 'f.npz'))
      np.save(real, self.x)
      np.savez(fake, videos=self.y)
      stats, out = (os.path.join(self.tmp, n) for n in ('s.npz', 'o.json'))
      bad = os.path.join(self.tmp, 'bad.npy')
      np.save(bad, np.full([2, 9, 8, 8, 3], 300.0, np.float32))
      base = [f'--checkpoint={self.ckpt}', '--noprogress']
      cases = {
          'fvd': [
              f'--real={real}',
              f'--generated={fake}',
              f'--stats_out={stats}',
              f'--json_out={out}',
              '--batch_size=2',
          ],
          # Refused before the network loads: one line, exit code 1.
          'mismatch': [
              f'--stats_in={stats}',
              f'--generated={fake}',
              '--protocol=stylegan_v',
          ],
          'bad_values': [f'--real={bad}', f'--generated={bad}'],
          'no_real': ['--generated=x.npy'],
          'no_generated': ['--real=x.npy'],
          'bad_batch': ['--batch_size=0'],
          'positional': ['x'],
      }
      results = testing.entry_cases(
          'compute_fvd', [base + c for c in cases.values()], cwd=self.tmp
      )
      self._runs['command'] = dict(zip(cases, results))
      self._runs['paths'] = (fake, stats, out, bad)
    return self._runs['command'], self._runs['paths']

  def test_command_prints_fvd_writes_json_and_saves_stats(self):
    runs, (_, stats, out, _) = self.run_command()
    run = runs['fvd']
    self.assertEqual(run['code'], 0, run['stderr'])
    want = fvd.fvd_from_embeddings(self.ex, self.ey)
    self.assertRegex(run['stdout'], r'FVD \(reference\): \d+\.\d{4}')
    with open(out) as f:
      result = json.load(f)
    self.assertAllClose(result['fvd'], want, rtol=1e-4)
    self.assertEqual(result['real']['clips'], 3)
    cached = fvd.load_stats(stats, fvd.get_protocol('reference'))
    self.assertAllClose(
        fvd.fvd_from_stats(cached, self.stats(self.y)), want, rtol=1e-4
    )
    # Refused before the network loads: one line, exit code 1.
    mismatch = runs['mismatch']
    self.assertEqual(mismatch['code'], 1)
    self.assertNotIn('Traceback', mismatch['stderr'])
    self.assertRegex(
        mismatch['stderr'].splitlines()[-1],
        r'^compute_fvd: error: The statistics .*name: saved '
        r"'reference', wanted 'stylegan_v'.*; recompute them",
    )

  def test_command_bad_values_give_one_line(self):
    runs, (_, _, _, bad) = self.run_command()
    run = runs['bad_values']
    self.assertEqual(run['code'], 1)
    self.assertNotIn('Traceback', run['stderr'])
    self.assertEqual(
        run['stderr'].splitlines()[-1],
        f'compute_fvd: error: `{bad}[0] .. {bad}[1]` must have values in '
        '0..255; got values from 300.0 to 300.0. Pass uint8 frames or floats '
        'scaled to 0..255 (for [0, 1] data multiply by 255, for [-1, 1] data '
        'map x to (x + 1) * 127.5).',
    )

  @parameterized.parameters(
      ('no_real', 'give exactly one of --real and --stats_in'),
      ('no_generated', '--generated is required'),
      ('bad_batch', 'flag --batch_size=0: 0 is not a positive integer'),
      ('positional', r"unexpected arguments \['x'\]"),
  )
  def test_command_usage_error_is_one_line(self, case, pattern):
    run = self.run_command()[0][case]
    self.assertEqual(run['code'], 2, run)
    self.assertRegex(
        run['stderr'],
        f'^compute_fvd: error: {pattern}.*; run `python compute_fvd.py '
        '--helpshort` for the flags\n$',
    )
    self.assertEqual(run['stdout'], '')


class RealWeightsTest(tf.test.TestCase):
  """The reference's example on the real rgb_scratch weights."""

  def setUp(self):
    super().setUp()
    if not os.path.exists(_REAL_CHECKPOINT + '.index'):
      self.skipTest(
          f'real rgb_scratch weights not found at ' f'{_REAL_CHECKPOINT}.'
      )

  def test_reference_example_zeros_against_255(self):
    inference.configure_threads()
    embedder = fvd.load_embedder(_REAL_CHECKPOINT)
    protocol = fvd.get_protocol('reference')
    zeros = np.zeros([16, 15, 64, 64, 3], np.float32)
    sets = [
        fvd.compute_stats(
            fvd.iter_clips(fvd.VideoSet(n, array=v), protocol, 'real'),
            embedder,
            protocol,
            batch_size=16,
        )
        for n, v in (('zeros', zeros), ('full', zeros + 255))
    ]
    got = fvd.fvd_from_stats(*sets)
    # The independent route: 16 identical videos have no covariance, so FVD
    # is the squared distance of the plain module's two logit vectors.
    model = embedder.predictor.model
    logits = []
    for value in (0.0, 255.0):
      x = tf.compat.v1.image.resize_bilinear(
          tf.fill([15, 64, 64, 3], value), [224, 224]
      )
      logits.append(
          model(2 * x[None] / 255 - 1, is_training=False)[0]
          .numpy()[0]
          .astype(np.float64)
      )
    want = np.sum((logits[0] - logits[1]) ** 2)
    self.assertAllClose(sets[0].covariance, np.zeros([400, 400]), atol=1e-9)
    self.assertAllClose(got, want, rtol=1e-5, atol=0)
    print(
        f'\nReference example on real rgb_scratch: FVD {got:.6f} '
        f'(plain module, squared logit distance: {want:.6f})'
    )


if __name__ == '__main__':
  tf.test.main()
