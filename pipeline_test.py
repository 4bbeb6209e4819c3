"""Tests for pipeline.py and clip_cache.py: augmentation, tf.data, the cache.

Videos are tiny lossless clips written by the tests (testing.py); TV-L1
is replaced by testing.fake_iter_flow (same conventions, no cost) except
where snippet_flow is checked against recipe.compute_flow on small arrays.
"""

import os
from unittest import mock

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import clip_cache
import datasets
import pipeline
import recipe
import testing
import video

CROP = 48


def _fake_flow():
  return mock.patch.object(recipe, 'iter_flow', testing.fake_iter_flow)


class SnippetTest(parameterized.TestCase):

  @parameterized.parameters((30, 8), (8, 8), (5, 12), (1, 4))
  def test_indices_are_a_looped_run(self, clip, wanted):
    for seed in range(20):
      got = pipeline.snippet_indices(clip, wanted, np.random.default_rng(seed))
      self.assertLen(got, wanted)
      self.assertBetween(got[0], 0, max(clip - wanted, 0))
      np.testing.assert_array_equal(got, (got[0] + np.arange(wanted)) % clip)

  def test_start_covers_every_position(self):
    starts = {
        pipeline.snippet_indices(10, 8, np.random.default_rng(s))[0]
        for s in range(200)
    }
    self.assertEqual(starts, {0, 1, 2})

  @parameterized.parameters(
      ([2, 3, 4],), ([5, 6, 7],), ([7],), ([0, 1, 2, 3, 4, 5, 6, 7, 0, 1],)
  )
  def test_snippet_flow_equals_whole_clip_flow(self, indices):
    rng = np.random.default_rng(0)
    frames = (rng.random((8, 24, 32, 3)) * 255).astype(np.uint8)
    whole = recipe.compute_flow(frames, workers=1)
    got = pipeline.snippet_flow(frames, np.array(indices))
    np.testing.assert_allclose(got, whole[indices], atol=1e-5)


class _Videos(testing.TempDirMixin, tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.videos = []
    for name, count, label in (
        ('a/long.mp4', 20, 0),
        ('b/short.mp4', 6, 1),
        ('a/mid.mp4', 12, 0),
    ):
      cls.videos.append(
          datasets.Example(
              testing.write_moving_video(cls.path(name), count, seed=count),
              label,
              source=name,
          )
      )
    cls.bad = cls.path('b/bad.mp4')
    with open(cls.bad, 'wb') as f:
      f.write(b'not a video\n' * 20)
    cls.dataset = datasets.Dataset(list(cls.videos), ['a', 'b'])


class TrainClipTest(_Videos):

  def test_crop_snippet_and_scaling_follow_the_draws(self):
    example = self.videos[0]
    frames = video.load_frames(example.path)[0]
    for seed in range(4):
      with _fake_flow():
        got = pipeline.train_clip(
            example, ('rgb', 'flow'), 8, np.random.default_rng(seed), CROP
        )
      rng = np.random.default_rng(seed)
      indices = pipeline.snippet_indices(len(frames), 8, rng)
      top, left = recipe.random_crop_offsets(*frames.shape[1:3], CROP, rng)
      self.assertBetween(top, 0, frames.shape[1] - CROP)
      self.assertBetween(left, 0, frames.shape[2] - CROP)
      rgb = recipe.rgb_to_input(
          recipe.crop_at(frames[indices], top, left, CROP)
      )
      if rng.random() < 0.5:
        rgb = recipe.flip_left_right(rgb)
      self.assertEqual(got['rgb'].shape, (8, CROP, CROP, 3))
      self.assertEqual(got['flow'].shape, (8, CROP, CROP, 2))
      np.testing.assert_array_equal(got['rgb'], rgb)
      self.assertBetween(float(got['flow'].min()), -1.0, 1.0)
      self.assertBetween(float(got['flow'].max()), -1.0, 1.0)

  def test_flip_mirrors_and_negates_flow_x(self):
    example = self.videos[0]
    flips = 0
    for seed in range(6):
      with _fake_flow():
        plain = pipeline.train_clip(
            example,
            ('rgb', 'flow'),
            8,
            np.random.default_rng(seed),
            CROP,
            flip=False,
        )
        maybe = pipeline.train_clip(
            example,
            ('rgb', 'flow'),
            8,
            np.random.default_rng(seed),
            CROP,
            flip=True,
        )
      if np.array_equal(plain['rgb'], maybe['rgb']):
        continue
      flips += 1
      np.testing.assert_array_equal(maybe['rgb'], plain['rgb'][:, :, ::-1])
      np.testing.assert_array_equal(
          maybe['flow'][..., 0], -plain['flow'][:, :, ::-1, 0]
      )
      np.testing.assert_array_equal(
          maybe['flow'][..., 1], plain['flow'][:, :, ::-1, 1]
      )
      self.assertGreater(np.abs(plain['flow'][..., 0]).max(), 0)
    self.assertBetween(flips, 1, 5)

  def test_short_clip_is_looped(self):
    example = self.videos[1]  # 6 frames.
    frames = video.load_frames(example.path)[0]
    got = pipeline.train_clip(
        example, ('rgb',), 16, np.random.default_rng(3), CROP, flip=False
    )
    rng = np.random.default_rng(3)
    pipeline.snippet_indices(6, 16, rng)
    top, left = recipe.random_crop_offsets(*frames.shape[1:3], CROP, rng)
    want = recipe.rgb_to_input(recipe.crop_at(frames, top, left, CROP))
    np.testing.assert_array_equal(got['rgb'][:6], want)
    np.testing.assert_array_equal(got['rgb'][6:12], want)
    np.testing.assert_array_equal(got['rgb'][12:], want[:4])


class TrainDatasetTest(_Videos):

  def batches(self, seed, dataset=None, count=3, **kwargs):
    with _fake_flow():
      ds = pipeline.train_dataset(
          dataset or self.dataset,
          'joint',
          2,
          num_frames=8,
          seed=seed,
          crop_size=CROP,
          num_parallel_calls=2,
          **kwargs,
      )
      return [
          (x['rgb'].numpy(), x['flow'].numpy(), y.numpy())
          for x, y in ds.take(count)
      ]

  def test_shapes_and_labels(self):
    ((rgb, flow, labels),) = self.batches(0, count=1)
    self.assertEqual(rgb.shape, (2, 8, CROP, CROP, 3))
    self.assertEqual(flow.shape, (2, 8, CROP, CROP, 2))
    self.assertEqual(labels.dtype, np.int32)
    self.assertContainsSubset(labels.tolist(), [0, 1])

  def test_same_seed_same_batches(self):
    first = self.batches(5)
    again = self.batches(5)
    other = self.batches(6)
    for (r1, f1, l1), (r2, f2, l2) in zip(first, again):
      np.testing.assert_array_equal(r1, r2)
      np.testing.assert_array_equal(f1, f2)
      np.testing.assert_array_equal(l1, l2)
    self.assertFalse(
        all(np.array_equal(a[0], b[0]) for a, b in zip(first, other))
    )

  def test_resumed_stream_continues(self):
    whole = self.batches(7, count=3)
    resumed = self.batches(7, count=2, start_position=2)
    for (r1, _, l1), (r2, _, l2) in zip(whole[1:], resumed):
      np.testing.assert_array_equal(r1, r2)
      np.testing.assert_array_equal(l1, l2)

  def test_unreadable_video_is_skipped_and_counted(self):
    bad = datasets.Example(self.bad, 1, source='list.txt:4')
    dataset = datasets.Dataset(self.videos + [bad], ['a', 'b'])
    stats = pipeline.InputStats()
    got = self.batches(1, dataset=dataset, count=4, stats=stats)
    self.assertLen(got, 4)
    self.assertGreaterEqual(stats.skipped, 1)
    self.assertGreaterEqual(stats.loaded, 8)
    self.assertRegex(
        stats.skipped_sources[0], r'bad\.mp4 \(list\.txt:4\): Cannot read'
    )

  def test_every_video_unreadable_stops(self):
    dataset = datasets.Dataset(
        [datasets.Example(self.bad, 0, source='x:1')], ['a']
    )
    with self.assertRaisesRegex(tf.errors.OpError, r'videos all failed'):
      self.batches(0, dataset=dataset, count=1)

  def test_rgb_stream_is_a_tensor(self):
    ds = pipeline.train_dataset(
        self.dataset, 'rgb', 1, num_frames=4, seed=0, crop_size=CROP
    )
    clips, labels = next(iter(ds))
    self.assertEqual(clips.shape, (1, 4, CROP, CROP, 3))
    self.assertEqual(labels.shape, (1,))


class TestDatasetTest(_Videos):

  def test_whole_clip_centre_crop(self):
    ds = pipeline.test_dataset(self.dataset, 'rgb', crop_size=CROP)
    got = [(x.numpy(), y.numpy()) for x, y in ds]
    self.assertEqual([x.shape[1] for x, _ in got], [20, 9, 12])  # 6 looped.
    self.assertEqual([int(y[0]) for _, y in got], [0, 1, 0])
    frames = video.load_frames(self.videos[2].path)[0]
    top, left = recipe.center_crop_offsets(*frames.shape[1:3], CROP)
    np.testing.assert_array_equal(
        got[2][0][0],
        recipe.rgb_to_input(recipe.crop_at(frames, top, left, CROP)),
    )


class ClipCacheTest(_Videos):

  def test_quantisation_error_bound(self):
    rng = np.random.default_rng(0)
    flow = rng.uniform(-30, 30, (100000,)).astype(np.float32)
    flow[:4] = [-20, 20, 0, 40 / 255 * 3 - 20]
    q = clip_cache.quantise_flow(flow)
    self.assertEqual(q.dtype, np.uint8)
    back = clip_cache.dequantise_flow(q)
    error = np.abs(back - np.clip(flow, -20, 20))
    self.assertAlmostEqual(clip_cache.FLOW_MAX_ERROR, 20 / 255)
    self.assertLessEqual(error.max(), 20 / 255 + 1e-5)
    self.assertGreater(error.max(), 0.99 * 20 / 255)  # The bound is tight.
    self.assertEqual((q[0], q[1], q[2]), (0, 255, 128))
    self.assertAlmostEqual(back[3], flow[3], places=5)  # Levels are exact.

  def test_round_trip_and_resume(self):
    cache = clip_cache.ClipCache(self.path('cache_round_trip'))
    example = self.videos[2]
    with _fake_flow():
      decoded = clip_cache.decode(example)
      self.assertFalse(cache.has(example, ('rgb', 'flow')))
      stored = cache.get(example, ('rgb', 'flow'))
    np.testing.assert_array_equal(stored['rgb'], decoded['rgb'])
    self.assertEqual(stored['flow'].dtype, np.uint8)
    error = np.abs(
        clip_cache.dequantise_flow(np.asarray(stored['flow']))
        - np.clip(decoded['flow'], -20, 20)
    )
    self.assertLessEqual(error.max(), 20 / 255 + 1e-5)
    self.assertTrue(cache.has(example, ('rgb', 'flow')))
    self.assertEmpty(
        [f for f in os.listdir(cache.cache_dir) if f.endswith('.tmp')]
    )
    with mock.patch.object(
        clip_cache, 'decode', side_effect=AssertionError('decoded again')
    ):
      again = cache.get(example, ('rgb', 'flow'))
      self.assertEqual(
          cache.build(
              self.dataset.__class__([example], ['a', 'b']),
              ('rgb', 'flow'),
              progress=False,
          ),
          (0, 1, 0),
      )
    np.testing.assert_array_equal(again['flow'], stored['flow'])

  def test_cached_training_clip_matches_decoded_one(self):
    cache = clip_cache.ClipCache(self.path('cache_train'))
    example = self.videos[0]
    with _fake_flow():
      direct = pipeline.train_clip(
          example, ('rgb', 'flow'), 8, np.random.default_rng(2), CROP
      )
      cached = pipeline.train_clip(
          example,
          ('rgb', 'flow'),
          8,
          np.random.default_rng(2),
          CROP,
          cache=cache,
      )
    np.testing.assert_array_equal(cached['rgb'], direct['rgb'])
    # Model units are pixels / 20, so the bound is 1 / 255.
    np.testing.assert_allclose(
        cached['flow'], direct['flow'], rtol=0, atol=1 / 255 + 1e-6
    )

  def test_build_skips_unreadable_videos(self):
    cache = clip_cache.ClipCache(self.path('cache_build'))
    dataset = datasets.Dataset(
        [self.videos[1], datasets.Example(self.bad, 0, source='x:1')],
        ['a', 'b'],
    )
    self.assertEqual(cache.build(dataset, ('rgb',), progress=False), (1, 0, 1))


if __name__ == '__main__':
  tf.test.main()
