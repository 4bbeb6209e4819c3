"""Tests for inference: every mode and the streaming match the module."""

from __future__ import annotations

import functools
from unittest import mock

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import checkpoints
import i3d
import inference
import runtime
import streaming

# A Logits clip: the smallest length whose Mixed_5c has 2 frames is 9; 16
# keeps it cheap. Trunk-only checks use small frames, which are far cheaper.
_CLIP = (1, 16, 224, 224, 3)
_SMALL = 32
_TOL = 1e-4
# bfloat16 keeps 8 significant bits (relative round-off 2^-9 per value). On
# the synthetic weights its Mixed_5c features differ from float32 by about
# 0.5% of their largest value (and its logits on the real rgb_scratch
# weights by at most 0.14, pypi_release_test); the bound, relative to the
# largest float32 value, leaves four times that.
_BF16_REL_TOL = 0.02


@functools.lru_cache(maxsize=None)
def _model(final_endpoint: str = 'Logits') -> i3d.InceptionI3d:
  model = i3d.InceptionI3d(400, final_endpoint=final_endpoint)
  checkpoints.assign_synthetic(model, 'rgb', seed=0)
  return model


def _video(shape, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def _changed_outputs(model, video, frame):
  """Mixed_5c time positions that change when one input frame changes."""
  base = model(video, is_training=False)[0].numpy()
  other = video.copy()
  other[:, frame] = _video(other[:, frame].shape, seed=7)
  moved = model(other, is_training=False)[0].numpy()
  diff = np.abs(moved - base).max(axis=(0, 2, 3, 4))
  return set(np.flatnonzero(diff > 1e-5).tolist())


class GeometryTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(
      # (size, kernel, stride, expected): TF's 'SAME' rule.
      (10, 7, 2, (2, 3)),
      (9, 7, 2, (3, 3)),
      (40, 3, 2, (0, 1)),
      (41, 3, 2, (1, 1)),
      (20, 2, 2, (0, 0)),
      (21, 2, 2, (0, 1)),
      (5, 3, 1, (1, 1)),
      (5, 1, 1, (0, 0)),
  )
  def test_same_padding(self, size, kernel, stride, expected):
    self.assertEqual(streaming.same_padding(size, kernel, stride), expected)

  def test_mixed_5c_geometry(self):
    g = streaming.temporal_geometry('Mixed_5c')
    self.assertEqual((g.receptive_field, g.stride, g.before), (99, 8, 44))
    self.assertEqual((g.context_before, g.context_after), (44, 47))
    # An odd length pads Conv3d_1a_7x7 by one more frame in front.
    self.assertEqual(streaming.temporal_geometry('Mixed_5c', 79).before, 45)
    self.assertEqual(streaming.temporal_geometry('Logits').receptive_field, 107)

  @parameterized.parameters((128, 3), (128, 100), (127, 60))
  def test_receptive_field_matches_module(self, frames, frame):
    g = streaming.temporal_geometry('Mixed_5c', frames)
    positions = -(-frames // g.stride)
    expected = {
        i
        for i in range(positions)
        if i * g.stride - g.before
        <= frame
        < i * g.stride - g.before + g.receptive_field
    }
    video = _video([1, frames, 16, 16, 3])
    self.assertEqual(
        _changed_outputs(_model('Mixed_5c'), video, frame), expected
    )

  def test_first_chunk_frames(self):
    # Output 0 of Mixed_5c ends at frame 98 - 44 = 54 on the even grid.
    self.assertEqual(streaming.first_chunk_frames('Mixed_5c'), 55)
    self.assertEqual(streaming.first_chunk_frames('Conv3d_1a_7x7'), 5)


class PredictorTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(*inference.MODES)
  def test_logits_match_module(self, mode):
    model = _model()
    video = _video(_CLIP)
    expected = model(video, is_training=False)[0].numpy()
    predictor = inference.make_predictor(model, mode)
    self.assertAllClose(predictor.logits(video), expected, atol=_TOL, rtol=0)
    self.assertAllClose(
        predictor.features(video, 'Logits'), expected, atol=_TOL, rtol=0
    )
    self.assertAllClose(
        predictor.features(video, 'Predictions'),
        tf.nn.softmax(expected),
        atol=_TOL,
        rtol=0,
    )
    per_time = predictor.temporal_features(video, 'Logits')
    self.assertEqual(per_time.shape, (1, 1, 400))
    self.assertAllClose(per_time.mean(axis=1), expected, atol=_TOL, rtol=0)

  @parameterized.product(
      mode=inference.MODES,
      endpoint=('Conv3d_1a_7x7', 'MaxPool3d_3a_3x3', 'Mixed_4f', 'Mixed_5c'),
  )
  def test_features_match_module(self, mode, endpoint):
    model = _model('Mixed_5c')
    video = _video([2, 11, _SMALL, _SMALL, 3])
    expected = model(video, is_training=False)[1][endpoint].numpy()
    predictor = inference.make_predictor(model, mode)
    self.assertAllClose(
        predictor.features(video, endpoint),
        expected.mean(axis=(1, 2, 3)),
        atol=_TOL,
        rtol=0,
    )
    self.assertAllClose(
        predictor.temporal_features(video, endpoint),
        expected.mean(axis=(2, 3)),
        atol=_TOL,
        rtol=0,
    )

  @parameterized.parameters(
      # Lengths covering the four 'SAME' grids (T mod 4); 'plain' once.
      ('fast', 97, 'Mixed_5c'),
      ('fast', 98, 'Mixed_5c'),
      ('fast', 99, 'Mixed_4f'),
      ('fast', 100, 'Conv3d_2c_3x3'),
      ('plain', 99, 'Mixed_5c'),
  )
  def test_streamed_trunk_matches_whole(self, mode, frames, endpoint):
    model = _model('Mixed_5c')
    video = _video([1, frames, _SMALL, _SMALL, 3])
    expected = model(video, is_training=False)[1][endpoint].numpy()
    # 8-frame chunks: a 56-frame first chunk, then 5 or 6 more.
    predictor = inference.make_predictor(model, mode, chunk_frames=8)
    self.assertAllClose(
        predictor.temporal_features(video, endpoint),
        expected.mean(axis=(2, 3)),
        atol=_TOL,
        rtol=0,
    )
    self.assertAllClose(
        predictor.features(video, endpoint),
        expected.mean(axis=(1, 2, 3)),
        atol=_TOL,
        rtol=0,
    )

  def test_streamed_logits_match_module(self):
    model = _model()
    video = _video([1, 75, 224, 224, 3])  # Odd, and 75 mod 4 == 3.
    expected = model(video, is_training=False)[0].numpy()
    predictor = inference.make_predictor(model, 'fast', chunk_frames=8)
    self.assertAllClose(predictor.logits(video), expected, atol=_TOL, rtol=0)
    # The same video as a stream of uneven pieces.
    pieces = [video[0, i : i + 7] for i in range(0, 75, 7)]
    self.assertAllClose(
        predictor.logits_stream(iter(pieces), num_frames=75),
        expected[0],
        atol=_TOL,
        rtol=0,
    )
    # Without its length, a stream drops its last 75 mod 4 frames.
    expected_72 = model(video[:, :72], is_training=False)[0].numpy()
    self.assertAllClose(
        predictor.logits_stream(iter(pieces)), expected_72[0], atol=_TOL, rtol=0
    )

  def test_rechunk_bounds_the_buffer(self):
    pieces = [np.zeros([n, 2, 2, 3], np.float32) for n in (1, 300, 5, 40)]
    sizes = [
        (c.shape[1], last)
        for c, _, last in streaming.rechunk(  # pylint: disable=protected-access
            pieces,
            first=56,
            chunk=16,
            period=4,
            batched=False,
            channels=3,
            num_frames=None,
        )
    ]
    self.assertEqual(sizes[0], (56, False))
    self.assertEqual({s for s, _ in sizes[1:-1]}, {16})
    self.assertEqual(sum(s for s, _ in sizes), 346)
    self.assertTrue(sizes[-1][1])
    self.assertBetween(sizes[-1][0], 4, 16 + 3)

  def test_fast_is_traced_once(self):
    predictor = inference.make_predictor(_model('Mixed_5c'), 'fast')
    for frames in (3, 5, 8):
      predictor.features(_video([1, frames, _SMALL, _SMALL, 3]), 'Mixed_4b')
    fn = predictor._whole('Mixed_4b', 'mean')  # pylint: disable=protected-access
    self.assertEqual(fn.experimental_get_tracing_count(), 1)


class Bfloat16Test(tf.test.TestCase, parameterized.TestCase):

  def _assert_near(self, low, expected):
    error = np.abs(low - expected).max()
    self.assertLess(error, _BF16_REL_TOL * np.abs(expected).max())
    # It really computed in bfloat16: float32 would agree to round-off.
    self.assertGreater(error, _TOL)

  @parameterized.parameters('Mixed_3b', 'Mixed_5c')
  def test_features_near_float32(self, endpoint):
    model = _model('Mixed_5c')
    video = _video([1, 11, _SMALL, _SMALL, 3])
    expected = inference.make_predictor(model).temporal_features(
        video, endpoint
    )
    low = inference.make_predictor(
        model, precision='bfloat16'
    ).temporal_features(video, endpoint)
    self.assertEqual(low.dtype, np.float32)
    self._assert_near(low, expected)

  def test_streamed_near_float32(self):
    model = _model('Mixed_5c')
    video = _video([1, 59, _SMALL, _SMALL, 3])
    expected = inference.make_predictor(model).temporal_features(video)
    streamed = inference.make_predictor(
        model, chunk_frames=8, precision='bfloat16'
    ).temporal_features(video)
    self._assert_near(streamed, expected)

  def test_trunk_weights_are_bfloat16_and_logits_float32(self):
    folded = inference.FoldedI3D(_model(), dtype=tf.bfloat16)
    dtypes = [v.dtype for v in folded.variables]
    self.assertEqual(dtypes.count(tf.float32), 2)  # Logits w and b.
    self.assertEqual(set(dtypes), {tf.float32, tf.bfloat16})

  def test_warns_without_bfloat16_units(self):
    info = {**runtime.cpu_info(), 'flags': ['avx2', 'fma']}
    with mock.patch.object(runtime, 'cpu_info', return_value=info):
      with self.assertLogs(level='WARNING') as logs:
        inference.make_predictor(_model('Mixed_5c'), precision='bfloat16')
    self.assertIn('no bfloat16 units', ''.join(logs.output))


class ErrorsTest(tf.test.TestCase):

  def test_bad_precision(self):
    with self.assertRaisesRegex(
        ValueError, r"`precision` 'float16'.*float32, bfloat16"
    ):
      inference.make_predictor(_model('Mixed_5c'), precision='float16')

  def test_bfloat16_needs_fast_mode(self):
    with self.assertRaisesRegex(
        ValueError, r"`precision` 'bfloat16' needs mode 'fast'.*'plain'"
    ):
      inference.make_predictor(
          _model('Mixed_5c'), 'plain', precision='bfloat16'
      )

  def test_bad_mode(self):
    with self.assertRaisesRegex(ValueError, r"`mode` 'slow'.*fast, plain"):
      inference.make_predictor(_model('Mixed_5c'), 'slow')

  def test_bad_chunk_frames(self):
    with self.assertRaisesRegex(
        ValueError, r'`chunk_frames`.*multiple of 8' r'.*12'
    ):
      inference.make_predictor(_model('Mixed_5c'), chunk_frames=12)

  def test_model_without_variables(self):
    with self.assertRaisesRegex(ValueError, r'`model` has no variables'):
      inference.make_predictor(i3d.InceptionI3d(final_endpoint='Mixed_3b'))

  def test_unknown_endpoint(self):
    predictor = inference.make_predictor(_model('Mixed_5c'))
    with self.assertRaisesRegex(
        ValueError, r'`endpoint` \'Mixed_9z\'.*Mixed_5c'
    ):
      predictor.features(_video([1, 4, 8, 8, 3]), 'Mixed_9z')

  def test_endpoint_past_the_model(self):
    predictor = inference.make_predictor(_model('Mixed_5c'))
    with self.assertRaisesRegex(
        ValueError, r'`endpoint` \'Logits\'.*' r'Conv3d_1a_7x7.*Mixed_5c\.$'
    ):
      predictor.logits(_video([1, 9, 224, 224, 3]))

  def test_bad_video_shape(self):
    predictor = inference.make_predictor(_model('Mixed_5c'))
    with self.assertRaisesRegex(
        ValueError,
        r'`video` must be \[batch, '
        r'frames, height, width, 3\].*\(1, 4, 8, 8, 2',
    ):
      predictor.features(_video([1, 4, 8, 8, 2]))

  def test_video_too_short_for_logits(self):
    predictor = inference.make_predictor(_model())
    with self.assertRaisesRegex(
        ValueError, r'at least 9 frames.*got 8 ' r'frames'
    ):
      predictor.logits(_video([1, 8, 224, 224, 3]))

  def test_frames_too_large_to_squeeze(self):
    predictor = inference.make_predictor(_model())
    with self.assertRaisesRegex(ValueError, r'2x2 logits map.*193 to 224'):
      predictor.logits(np.zeros([1, 9, 256, 256, 3], np.float32))

  def test_stream_length_differs(self):
    predictor = inference.make_predictor(_model('Mixed_5c'), chunk_frames=8)
    chunks = [np.zeros([4, 8, 8, 3], np.float32)] * 3
    with self.assertRaisesRegex(
        ValueError, r'12 frames but `num_frames` is ' r'20'
    ):
      predictor._stream(chunks, 'Mixed_5c', 20, batched=False)  # pylint: disable=protected-access

  def test_empty_stream(self):
    predictor = inference.make_predictor(_model())
    with self.assertRaisesRegex(ValueError, r'stream of frames is empty'):
      predictor.logits_stream([])

  def test_stream_chunks_differ_in_size(self):
    predictor = inference.make_predictor(_model())
    chunks = [
        np.zeros([4, 224, 224, 3], np.float32),
        np.zeros([4, 200, 224, 3], np.float32),
    ]
    with self.assertRaisesRegex(
        ValueError, r'same size as the first; got ' r'shape \(4, 200, 224, 3\)'
    ):
      predictor.logits_stream(chunks)

  def test_bad_threads(self):
    with self.assertRaisesRegex(
        ValueError, r'`num_threads`.*positive int.*' r'0'
    ):
      inference.configure_threads(0)

  def test_bad_geometry_frames(self):
    with self.assertRaisesRegex(ValueError, r'`num_frames`.*positive.*-1'):
      streaming.temporal_geometry('Mixed_5c', -1)


if __name__ == '__main__':
  tf.test.main()
