"""Tests for features.py: inputs, windows, the frame pipeline, extraction.

Videos are written by the tests with PyAV (tiny, lossless H.264 RGB) and the
checkpoints are synthetic ones with the release's names. Most tests replace
TV-L1 by a cheap stand-in (`testing.fake_iter_flow`); `ClipTest` runs the real one
on a few frames.
"""

import collections
import json
import os
import re
import shutil
import threading
from unittest import mock

from absl.testing import parameterized
import numpy as np
import tensorflow as tf
import tqdm

import assets
import features
import inference
import recipe
import testing

FPS = 25


def plain_features(model, clip: np.ndarray, endpoint: str) -> np.ndarray:
  """The plain Sonnet module's endpoint, averaged over time and space."""
  _, end_points = model(tf.constant(clip), is_training=False)
  return tf.reduce_mean(end_points[endpoint], axis=[1, 2, 3]).numpy()


class _TempDir(testing.TempDirMixin, tf.test.TestCase, parameterized.TestCase):
  """Test cases with one temporary folder per class."""


class WindowTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ('exact_fit', 128, 64, 64, [0, 64]),
      ('tail_aligned_to_end', 130, 64, 64, [0, 64, 66]),
      ('overlapping', 50, 16, 12, [0, 12, 24, 34]),
      ('gaps', 100, 16, 32, [0, 32, 64, 84]),
      ('one_window', 64, 64, 64, [0]),
      ('short_video', 10, 64, 64, [0]),
  )
  def test_window_starts(self, frames, window, stride, expected):
    self.assertEqual(features.window_starts(frames, window, stride), expected)

  @parameterized.parameters((1,), (7,), (16,), (17,), (50,), (51,))
  def test_iter_windows_follows_window_starts(self, count):
    window, stride = 16, 12
    frames = ({'rgb': np.full((1, 1, 3), i, np.float32)} for i in range(count))
    windows = list(features.iter_windows(frames, window, stride))
    starts = features.window_starts(count, window, stride)
    self.assertEqual([w.start for w in windows], starts)
    self.assertEqual([w.index for w in windows], list(range(len(starts))))
    for w in windows:
      shown = w.inputs['rgb'][:, 0, 0, 0].astype(int).tolist()
      self.assertEqual(w.inputs['rgb'].shape, (window, 1, 1, 3))
      if count < window:
        self.assertTrue(w.looped)
        self.assertEqual((w.start, w.end), (0, count))
        self.assertEqual(shown, [i % count for i in range(window)])
      else:
        self.assertFalse(w.looped)
        self.assertEqual(w.end, w.start + window)
        self.assertEqual(shown, list(range(w.start, w.end)))

  def test_empty_stream(self):
    with self.assertRaisesRegex(ValueError, 'stream of frames is empty'):
      list(features.iter_windows(iter([]), 16, 16))

  def test_window_too_short_for_logits(self):
    with self.assertRaisesRegex(
        ValueError,
        r'`window` must be an int of at least 9 frames for '
        r"endpoint 'Logits'; got 8",
    ):
      features.check_window(8, 8, 'Logits')

  def test_bad_stride(self):
    with self.assertRaisesRegex(ValueError, '`stride` must be a positive int'):
      features.check_window(16, 0, 'Mixed_5c')

  def test_unknown_endpoint(self):
    with self.assertRaisesRegex(ValueError, "must be one of .*'Mixed_5c'"):
      features.check_window(16, 16, 'Mixed_9z')


class FindVideosTest(_TempDir):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    for name in (
        'b.mp4',
        'a.MKV',
        'sub/b.mp4',
        'sub/deep/c.webm',
        'same.mp4',
        'same.avi',
        'notes.txt',
        '.hidden.mp4',
        '.cache/x.mp4',
    ):
      path = os.path.join(cls.tmp, 'videos', name)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path, 'wb') as f:
        f.write(b'x')

  def test_folder_is_searched_recursively_and_mirrored(self):
    root = os.path.join(self.tmp, 'videos')
    found = features.find_videos(root)
    self.assertEqual(
        [v.name for v in found],
        ['a', 'b', 'same.avi', 'same.mp4', 'sub/b', 'sub/deep/c'],
    )
    self.assertEqual(found[0].path, os.path.join(root, 'a.MKV'))

  def test_glob(self):
    found = features.find_videos(
        os.path.join(self.tmp, 'videos', '**', 'b.mp4')
    )
    self.assertEqual([v.name for v in found], ['b', 'sub/b'])

  def test_list_file_relative_to_its_folder(self):
    listing = os.path.join(self.tmp, 'videos', 'sub', 'list.txt')
    with open(listing, 'w') as f:
      f.write('# a comment\n\nb.mp4\ndeep/c.webm\n../b.mp4\nmissing.mp4\n')
    found = features.find_videos('@' + listing)
    self.assertEqual(
        [v.name for v in found], ['sub/b', 'sub/deep/c', 'b', 'sub/missing']
    )
    self.assertEqual(
        found[3].path, os.path.join(self.tmp, 'videos', 'sub', 'missing.mp4')
    )

  def test_folder_without_videos(self):
    empty = os.path.join(self.tmp, 'empty')
    os.makedirs(empty, exist_ok=True)
    with self.assertRaisesRegex(
        features.InputError, 'has no video files .*searched recursively'
    ):
      features.find_videos(empty)

  def test_nothing_there(self):
    with self.assertRaisesRegex(
        features.InputError, 'is not a folder, a file, a glob'
    ):
      features.find_videos(os.path.join(self.tmp, 'nope'))

  def test_missing_list_file(self):
    with self.assertRaisesRegex(
        features.InputError, 'Cannot read the list file'
    ):
      features.find_videos('@' + os.path.join(self.tmp, 'nope.txt'))


class ExtractorTest(testing.FakeFlowMixin, _TempDir):
  """Extraction on synthetic checkpoints, with the cheap stand-in flow."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    inference.configure_threads()
    cls.ckpt = testing.write_checkpoints(os.path.join(cls.tmp, 'ckpt'))
    cls.prefixes = {
        s: assets.checkpoint_prefix(cls.ckpt, f'{s}_imagenet')
        for s in features.STREAMS
    }
    cls.predictors = inference.load_predictors(
        cls.prefixes, final_endpoint='Mixed_5c'
    )
    videos = os.path.join(cls.tmp, 'videos')
    cls.paths = {
        'long': testing.write_moving_video(
            os.path.join(videos, 'long.mp4'), 42, seed=1
        ),
        'short': testing.write_moving_video(
            os.path.join(videos, 'sub', 'short.mp4'), 6, seed=2
        ),
        'other': testing.write_moving_video(
            os.path.join(videos, 'sub', 'other.mp4'), 20, seed=3
        ),
    }
    cls.videos_dir = videos

  def extractor(
      self,
      streams=('rgb',),
      endpoint='Mixed_4f',
      window=16,
      stride=16,
      batch_size=2,
      recipe_name=recipe.DEFAULT_RECIPE,
  ) -> features.Extractor:
    return features.Extractor(
        {s: self.predictors[s] for s in streams},
        self.prefixes,
        endpoint=endpoint,
        window=window,
        stride=stride,
        batch_size=batch_size,
        flow_workers=1,
        recipe_name=recipe_name,
    )

  def out_dir(self, name: str) -> str:
    path = os.path.join(self.tmp, 'out', name)
    shutil.rmtree(path, ignore_errors=True)
    return path

  def test_mixed_5c_features_equal_the_plain_module(self):
    extracted = self.extractor(endpoint='Mixed_5c').extract(self.paths['long'])
    rgb = recipe.preprocess(self.paths['long'], streams=('rgb',))['rgb']
    got = extracted.features['rgb']
    self.assertEqual(got.shape, (3, 1024))  # Starts 0, 16 and 26 (the tail).
    self.assertEqual(
        [w['start_frame'] for w in extracted.record['windows']], [0, 16, 26]
    )
    model = self.predictors['rgb'].model
    for i, start in enumerate((0, 16, 26)):
      window = rgb[:, start : start + 16]
      self.assertAllClose(
          got[i],
          plain_features(model, window, 'Mixed_5c')[0],
          atol=1e-4,
          rtol=0,
      )
      self.assertAllClose(
          got[i],
          self.predictors['rgb'].features(window, 'Mixed_5c')[0],
          atol=1e-4,
          rtol=0,
      )

  def test_short_video_is_one_looped_window(self):
    extracted = self.extractor(streams=('rgb', 'flow')).extract(
        self.paths['short']
    )
    record = extracted.record
    self.assertTrue(record['looped'])
    self.assertEqual(
        record['windows'],
        [{'start_s': 0.0, 'end_s': 0.24, 'start_frame': 0, 'end_frame': 6}],
    )
    inputs = recipe.preprocess(self.paths['short'], min_frames=16)
    self.assertTrue(inputs['looped'])
    for stream, dim in (('rgb', 832), ('flow', 832)):
      self.assertEqual(extracted.features[stream].shape, (1, dim))
      self.assertAllClose(
          extracted.features[stream][0],
          self.predictors[stream].features(inputs[stream], 'Mixed_4f')[0],
          atol=1e-4,
          rtol=0,
      )

  def test_run_writes_shapes_and_json(self):
    out = self.out_dir('run')
    updates = collections.Counter()

    class Bar(tqdm.tqdm):

      def update(self, n=1):
        super().update(n)
        updates[self.unit] += n

    with mock.patch.object(features.tqdm, 'tqdm', Bar):
      summary = self.extractor(
          streams=('rgb', 'flow'), window=16, stride=8
      ).run(features.find_videos(self.videos_dir), out, progress=True)
    self.assertEqual(
        sorted(v.name for v in summary.extracted),
        ['long', 'sub/other', 'sub/short'],
    )
    self.assertEmpty(summary.failed)
    expect_windows = {'long': 42, 'sub/other': 20, 'sub/short': 6}
    # Progress: the videos, and each video's windows as the network takes
    # them (TV-L1 of one window can take minutes).
    self.assertEqual(
        updates,
        {
            'video': 3,
            'window': sum(
                len(features.window_starts(n, 16, 8))
                for n in expect_windows.values()
            ),
        },
    )
    for name, frames in expect_windows.items():
      with open(os.path.join(out, name + '.json')) as f:
        record = json.load(f)
      starts = features.window_starts(frames, 16, 8)
      self.assertEqual(record['num_frames'], frames)
      self.assertEqual(record['num_windows'], len(starts))
      self.assertEqual(
          record['source'], os.path.abspath(self.paths[name.split('/')[-1]])
      )
      self.assertEqual(
          (record['window'], record['stride'], record['fps']), (16, 8, 25.0)
      )
      self.assertEqual(record['endpoint'], 'Mixed_4f')
      self.assertEqual(record['looped'], frames < 16)
      self.assertEqual(record['preprocessing']['resize_short_side'], 256)
      self.assertEqual(record['preprocessing']['crop_size'], 224)
      self.assertEqual(record['preprocessing']['flow_bound'], 20.0)
      for w, start in zip(record['windows'], starts):
        self.assertEqual(w['start_frame'], start)
        self.assertEqual(w['end_frame'], min(start + 16, frames))
        self.assertAlmostEqual(w['start_s'], start / 25)
        self.assertAlmostEqual(w['end_s'], w['end_frame'] / 25)
      for stream in ('rgb', 'flow'):
        entry = record['streams'][stream]
        self.assertEqual(entry['checkpoint'], f'{stream}_imagenet')
        array = np.load(
            os.path.join(
                os.path.dirname(os.path.join(out, name)), entry['file']
            )
        )
        self.assertEqual(array.shape, (len(starts), 832))
        self.assertEqual(array.dtype, np.float32)
        self.assertEqual(entry['shape'], list(array.shape))

  def _outputs(self, out):
    return testing.read_tree(out)

  def test_the_recipe_is_recorded_and_a_change_recomputes(self):
    videos = [
        v for v in features.find_videos(self.videos_dir) if v.name == 'long'
    ]
    out = self.out_dir('recipes')
    self.extractor().run(videos, out, progress=False)
    with self.assertLogs(level='WARNING') as logs:
      summary = self.extractor(recipe_name='mediapipe').run(
          videos, out, progress=False
      )
    self.assertEqual([v.name for v in summary.extracted], ['long'])
    self.assertIn('made with other settings', ''.join(logs.output))
    with open(os.path.join(out, 'long.json')) as f:
      record = json.load(f)
    self.assertEqual(record['preprocessing']['recipe'], 'mediapipe')
    self.assertEqual(record['frame_size'], [256, 320])

  def test_resume_after_a_kill_gives_the_uninterrupted_outputs(self):
    videos = features.find_videos(self.videos_dir)
    reference = self.out_dir('reference')
    self.extractor().run(videos, reference, progress=False)
    expected = self._outputs(reference)

    # Kill the run while it computes the second video's features.
    out = self.out_dir('killed')
    predictor = self.predictors['rgb']
    features_of = predictor.features
    calls = []

    def dying(batch, endpoint):
      calls.append(len(batch))
      if len(calls) == 3:  # long.mp4 takes 2 batches; then sub/other.
        raise KeyboardInterrupt
      return features_of(batch, endpoint)

    threads = threading.active_count()
    with (
        mock.patch.object(predictor, 'features', dying),
        self.assertRaises(KeyboardInterrupt),
    ):
      self.extractor().run(videos, out, progress=False)
    self.assertEqual(threading.active_count(), threads)
    self.assertEqual(sorted(self._outputs(out)), ['long.json', 'long_rgb.npy'])
    # A stray temporary file, as a kill during a write leaves.
    with open(os.path.join(out, '.long_rgb.npy.123.abcd.tmp'), 'wb') as f:
      f.write(b'\x93NUMPY partial')
    mtime = os.stat(os.path.join(out, 'long.json')).st_mtime_ns

    summary = self.extractor().run(videos, out, progress=False)
    self.assertEqual([v.name for v in summary.skipped], ['long'])
    self.assertEqual(
        [v.name for v in summary.extracted], ['sub/other', 'sub/short']
    )
    self.assertEqual(os.stat(os.path.join(out, 'long.json')).st_mtime_ns, mtime)
    got = self._outputs(out)
    del got['.long_rgb.npy.123.abcd.tmp']
    self.assertEqual(sorted(got), sorted(expected))
    for name, data in expected.items():
      if name.endswith('.npy'):
        self.assertAllClose(
            np.load(os.path.join(out, name)),
            np.load(os.path.join(reference, name)),
            atol=1e-6,
            rtol=0,
        )
      else:
        self.assertEqual(got[name], data, name)

    # Features without a JSON (a kill between the two) are recomputed.
    os.remove(os.path.join(out, 'sub', 'short.json'))
    summary = self.extractor().run(videos, out, progress=False)
    self.assertEqual([v.name for v in summary.extracted], ['sub/short'])
    self.assertLen(summary.skipped, 2)

  def test_only_missing_streams_are_computed(self):
    videos = features.find_videos(os.path.join(self.videos_dir, 'sub'))
    out = self.out_dir('streams')
    self.extractor(streams=('rgb',)).run(videos, out, progress=False)
    rgb_npy = os.path.join(out, 'short_rgb.npy')
    mtime = os.stat(rgb_npy).st_mtime_ns
    summary = self.extractor(streams=('rgb', 'flow')).run(
        videos, out, progress=False
    )
    self.assertLen(summary.extracted, 2)
    self.assertEqual(os.stat(rgb_npy).st_mtime_ns, mtime)
    with open(os.path.join(out, 'short.json')) as f:
      self.assertEqual(sorted(json.load(f)['streams']), ['flow', 'rgb'])
    summary = self.extractor(streams=('rgb', 'flow')).run(
        videos, out, progress=False
    )
    self.assertLen(summary.skipped, 2)
    # Other settings: everything is computed again.
    summary = self.extractor(stride=8).run(videos, out, progress=False)
    self.assertLen(summary.extracted, 2)

  def test_a_failing_video_does_not_stop_the_others(self):
    bad = os.path.join(self.tmp, 'bad', 'corrupt.mp4')
    os.makedirs(os.path.dirname(bad), exist_ok=True)
    with open(self.paths['other'], 'rb') as f:
      data = f.read()
    with open(bad, 'wb') as f:
      f.write(data[: len(data) // 3])
    listing = os.path.join(self.tmp, 'bad', 'list.txt')
    with open(listing, 'w') as f:
      f.write(
          f'{self.paths["short"]}\ncorrupt.mp4\n{self.paths["other"]}\n'
          'missing.mp4\n'
      )
    lines = []
    summary = self.extractor().run(
        features.find_videos('@' + listing),
        self.out_dir('failing'),
        progress=False,
        log=lines.append,
    )
    self.assertEqual(
        sorted(v.path for v in summary.extracted),
        sorted([self.paths['short'], self.paths['other']]),
    )
    self.assertEqual(
        [v.path for v, _ in summary.failed],
        [bad, os.path.join(self.tmp, 'bad', 'missing.mp4')],
    )
    self.assertRegex(summary.failed[0][1], re.escape(repr(bad)))
    self.assertRegex(summary.failed[1][1], 'does not exist')
    self.assertLen(lines, 2)

  def test_endpoint_beyond_the_model(self):
    with self.assertRaisesRegex(ValueError, "stops before endpoint 'Logits'"):
      self.extractor(endpoint='Logits')


if __name__ == '__main__':
  tf.test.main()
