"""Tests of classification.py: one decoding pass, exact streamed logits."""

import os
import re
from unittest import mock

from absl.testing import parameterized
import av
import numpy as np
import tensorflow as tf
import tqdm

import assets
import classification
import inference
import recipe
import testing
import video

# Frames of the test video: more than the 16-frame chunks of predictors(16),
# so clip_logits streams it; at most the 64 of predictors(64), which run it
# whole.
_FRAMES = 20


class ClipLogitsTest(
    testing.FakeFlowMixin,
    testing.TempDirMixin,
    tf.test.TestCase,
    parameterized.TestCase,
):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    inference.configure_threads()
    cls.ckpt = testing.write_checkpoints(os.path.join(cls.tmp, 'ckpt'))
    cls.video = testing.write_moving_video(
        os.path.join(cls.tmp, 'v.mp4'), _FRAMES, seed=1
    )
    cls.prefixes = {
        s: assets.checkpoint_prefix(cls.ckpt, f'{s}_imagenet')
        for s in assets.STREAMS
    }

  _cache = {}

  def predictors(self, chunk_frames):
    """Fresh Predictors (a test may patch one) sharing cached models."""
    if chunk_frames not in self._cache:
      self._cache[chunk_frames] = inference.load_predictors(
          self.prefixes, chunk_frames=chunk_frames
      )
    return {
        s: inference.make_predictor(p.model, chunk_frames=chunk_frames)
        for s, p in self._cache[chunk_frames].items()
    }

  def test_joint_decodes_the_file_once(self):
    opens, decoded, converted = [], [], []
    real_open, real_decode, real_to_rgb = av.open, video._decode, video._to_rgb

    def counting_decode(*args, **kwargs):
      for frame in real_decode(*args, **kwargs):
        decoded.append(frame)
        yield frame

    with (
        mock.patch.object(
            av,
            'open',
            side_effect=lambda *a, **k: (
                opens.append(a[0]) or real_open(*a, **k)
            ),
        ),
        mock.patch.object(video, '_decode', counting_decode),
        mock.patch.object(
            video,
            '_to_rgb',
            side_effect=lambda *a: (converted.append(1) or real_to_rgb(*a)),
        ),
    ):
      # Longer than a chunk of 16: streamed, so the length is counted first.
      result = classification.clip_logits(self.predictors(16), self.video)
    self.assertTrue(result.streamed)
    self.assertEqual(result.num_frames, _FRAMES)
    self.assertEqual(set(result.logits), {'rgb', 'flow'})
    # One pass converts every frame once; the counting pass converts none.
    self.assertLen(converted, _FRAMES)
    # The decoding pass and the counting pass, _FRAMES frames each; no pass
    # per stream.
    self.assertLen(decoded, 2 * _FRAMES)
    # Each pass opens the file twice: to check the clip, then to decode.
    self.assertLen(opens, 4)

  def test_progress_counts_frames_once_every_network_has_run_them(self):
    # The issue: 132/132 at 0 s, before the network had run. Whenever the
    # bar has the clip's total, its count must not run ahead of the frames
    # that both streams' networks have finished.
    predictors = self.predictors(16)
    ran = dict.fromkeys(predictors, 0)

    def counting(stream, make_step):
      def make(endpoint):
        step = make_step(endpoint)

        def counted(frames, *args):
          out = step(frames, *args)
          ran[stream] += int(frames.shape[1])
          return out

        return counted

      return make

    for stream, predictor in predictors.items():
      predictor._step = counting(stream, predictor._step)
    shown = []

    class Bar(tqdm.tqdm):

      def update(self, n=1):
        super().update(n)
        if self.total:
          shown.append((self.n, min(ran.values())))

    with mock.patch.object(classification.tqdm, 'tqdm', Bar):
      result = classification.clip_logits(predictors, self.video, progress=True)
    self.assertTrue(result.streamed)
    self.assertEqual(ran, {'rgb': _FRAMES, 'flow': _FRAMES})
    self.assertEqual(shown[-1][0], _FRAMES)
    for count, done in shown:
      self.assertLessEqual(count, done)

  def test_streamed_joint_equals_whole_clip_passes(self):
    streamed = classification.clip_logits(self.predictors(16), self.video)
    whole = classification.clip_logits(self.predictors(64), self.video)
    self.assertFalse(whole.streamed)
    inputs = recipe.preprocess(self.video, workers=1)
    whole_predictors = self.predictors(64)
    for stream in assets.STREAMS:
      self.assertAllClose(
          streamed.logits[stream], whole.logits[stream], atol=1e-4, rtol=0
      )
      expected = whole_predictors[stream].logits(inputs[stream])[0]
      self.assertAllClose(whole.logits[stream], expected, atol=1e-5, rtol=0)

  def test_short_clip_is_looped(self):
    short = testing.write_moving_video(os.path.join(self.tmp, 's.mp4'), 6)
    counts = []

    class Bar(tqdm.tqdm):

      def update(self, n=1):
        super().update(n)
        counts.append(self.n)

    # A clip within one chunk shows progress too, over the frames prepared
    # (decoded, TV-L1 for flow: the slow part of a short joint clip).
    with mock.patch.object(classification.tqdm, 'tqdm', Bar):
      result = classification.clip_logits(
          self.predictors(16), short, progress=True
      )
    self.assertEqual(
        (result.num_frames, result.frames_used, result.looped),
        (6, recipe.MIN_FRAMES, True),
    )
    self.assertEqual(counts, [1, 2, 3, 4, 5, 6])

  def test_a_failing_stream_fails_the_clip(self):
    predictors = self.predictors(16)
    with mock.patch.object(
        predictors['flow'],
        'logits_stream',
        side_effect=RuntimeError('flow broke'),
    ):
      with self.assertRaisesRegex(RuntimeError, 'flow broke'):
        classification.clip_logits(predictors, self.video)


class LoadSampleTest(testing.TempDirMixin, tf.test.TestCase):

  def test_wrong_channels(self):
    path = os.path.join(self.tmp, 'rgb.npy')
    np.save(path, np.zeros([1, 9, 224, 224, 2], np.float32))
    with self.assertRaisesRegex(
        classification.InputError,
        re.escape(
            'must be shaped [batch, frames, 224, 224, 3]; got '
            '[1, 9, 224, 224, 2]'
        ),
    ):
      classification.load_sample(path, 'rgb')

  def test_unreadable(self):
    path = os.path.join(self.tmp, 'junk.npy')
    with open(path, 'w') as f:
      f.write('junk')
    with self.assertRaisesRegex(
        classification.InputError,
        r"flow sample .*junk.npy' is not a valid .npy file",
    ):
      classification.load_sample(path, 'flow')

  def test_integer_dtype(self):
    path = os.path.join(self.tmp, 'int.npy')
    np.save(path, np.zeros([1, 9, 224, 224, 3], np.int32))
    with self.assertRaisesRegex(
        classification.InputError, 'must be float32 in .* got dtype int32'
    ):
      classification.load_sample(path, 'rgb')


if __name__ == '__main__':
  tf.test.main()
