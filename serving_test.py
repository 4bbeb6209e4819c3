"""Tests for serving and export_saved_model: the reloaded SavedModel."""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import checkpoints
import i3d
import serving
import testing

# The shortest clip the Logits head accepts.
_FRAMES = 9
_TOL = 1e-4


@functools.lru_cache(maxsize=None)
def _model(part: str, num_classes: int = 400) -> i3d.InceptionI3d:
  model = i3d.InceptionI3d(num_classes, final_endpoint='Logits')
  checkpoints.assign_synthetic(model, part, seed={'rgb': 0, 'flow': 1}[part])
  return model


def _clip(part: str, seed: int, batch: int = 1) -> np.ndarray:
  shape = [
      batch,
      _FRAMES,
      serving.CLIP_SIZE,
      serving.CLIP_SIZE,
      serving.CHANNELS[part],
  ]
  return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def _export(args) -> subprocess.CompletedProcess:
  return testing.run_python(['export_saved_model.py', *args])


class ExportTest(
    testing.TempDirMixin, tf.test.TestCase, parameterized.TestCase
):

  _joint = None

  def joint_export(self):
    """The joint SavedModel with features, exported and loaded once.

    Returns:
      (its folder, its reloaded serving signature).
    """
    if ExportTest._joint is None:
      models = {'rgb': _model('rgb'), 'flow': _model('flow')}
      os.makedirs(self.path('joint'))
      out_dir = self.path('joint/joint')
      serving.export(models, out_dir, with_features=True)
      loaded = tf.saved_model.load(out_dir)
      ExportTest._joint = out_dir, loaded
    out_dir, loaded = ExportTest._joint
    return out_dir, loaded.signatures[serving.SIGNATURE_KEY]

  def test_joint_round_trip_with_features(self):
    models = {'rgb': _model('rgb'), 'flow': _model('flow')}
    out_dir, served = self.joint_export()
    self.assertEqual(
        [f for f in os.listdir(os.path.dirname(out_dir))], ['joint']
    )
    self.assertEqual(
        sorted(served.structured_input_signature[1]), ['flow', 'rgb']
    )
    clips = {'rgb': _clip('rgb', 0, batch=2), 'flow': _clip('flow', 1, batch=2)}
    out = served(rgb=tf.constant(clips['rgb']), flow=tf.constant(clips['flow']))
    self.assertEqual(
        sorted(out),
        ['flow_features', 'logits', 'probabilities', 'rgb_features'],
    )
    logits = 0
    for part, model in models.items():
      part_logits, end_points = model(clips[part], is_training=False)
      logits += part_logits.numpy()
      self.assertAllClose(
          out[f'{part}_features'],
          end_points['Mixed_5c'].numpy().mean(axis=(1, 2, 3)),
          atol=_TOL,
          rtol=0,
      )
    self.assertAllClose(out['logits'], logits, atol=_TOL, rtol=0)
    self.assertAllClose(
        out['probabilities'], tf.nn.softmax(logits), atol=_TOL, rtol=0
    )

  @parameterized.named_parameters(
      ('frames', [1, 10], 0, r'`rgb` and `flow` must have the same number'),
      ('batch', [2, 9], 0, r'`rgb` and `flow` must have the same batch size'),
      ('nan', [1, 9], np.nan, r'`rgb` holds NaN or Inf values'),
      ('pixels', [1, 9], 255, r'`rgb` holds values far outside the \[-1, 1\]'),
  )
  def test_reloaded_joint_refuses_what_evaluate_sample_refuses(
      self, rgb_batch_frames, rgb_value, pattern
  ):
    # Against a flow clip of batch 1 and 9 frames.
    _, served = self.joint_export()
    rgb = np.zeros([*rgb_batch_frames, 224, 224, 3], np.float32)
    rgb[0, 0, 0, 0, 0] = rgb_value
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, pattern):
      served(rgb=tf.constant(rgb), flow=tf.zeros([1, 9, 224, 224, 2]))

  def test_flow_entry_point_overwrites(self):
    out_dir = os.path.join(tempfile.mkdtemp(dir=self.get_temp_dir()), 'flow')
    os.makedirs(out_dir)
    with open(os.path.join(out_dir, 'stale.txt'), 'w') as f:
      f.write('from an older export')
    # In a subprocess: its flags would clash with other entry points'.
    run = _export(
        [
            '--streams=flow',
            f'--output_dir={out_dir}',
            '--synthetic',
            '--overwrite',
            '--allow_out_of_range',
        ]
    )
    self.assertEqual(run.returncode, 0, run.stderr[-2000:])
    self.assertIn(f'Exported the flow model to {out_dir}', run.stdout)
    self.assertNotIn('stale.txt', os.listdir(out_dir))
    served = tf.saved_model.load(out_dir).signatures[serving.SIGNATURE_KEY]
    self.assertEqual(list(served.structured_input_signature[1]), ['flow'])
    clip = _clip('flow', 2)
    out = served(flow=tf.constant(clip))
    self.assertEqual(sorted(out), ['logits', 'probabilities'])
    # The entry point's synthetic flow weights are those of seed 0.
    model = i3d.InceptionI3d(400, final_endpoint='Logits')
    checkpoints.assign_synthetic(model, 'flow', seed=0)
    self.assertAllClose(
        out['logits'], model(clip, is_training=False)[0], atol=_TOL, rtol=0
    )
    # --allow_out_of_range: flow in pixels (unclipped, not divided by 20).
    pixels = served(flow=tf.constant(clip * 20))['logits']
    self.assertAllClose(
        pixels, model(clip * 20, is_training=False)[0], atol=1e-2, rtol=1e-4
    )

  def test_serving_rejects_short_clips(self):
    module = serving.ServingModule({'rgb': _model('rgb')})
    with self.assertRaisesRegex(
        tf.errors.InvalidArgumentError, r'`rgb` needs at least 9 frames'
    ):
      module.serve(tf.zeros([1, 8, 224, 224, 3]))

  def test_serving_rejects_joint_of_different_lengths(self):
    module = serving.ServingModule(
        {'rgb': _model('rgb'), 'flow': _model('flow')}
    )
    with self.assertRaisesRegex(
        tf.errors.InvalidArgumentError,
        r'`rgb` and `flow` must have the same number of frames',
    ):
      module.serve(
          rgb=tf.zeros([1, 10, 224, 224, 3]), flow=tf.zeros([1, 9, 224, 224, 2])
      )

  def test_serving_rejects_inf(self):
    module = serving.ServingModule({'flow': _model('flow')})
    clip = _clip('flow', 0)
    clip[0, 3, 5, 5, 1] = -np.inf
    with self.assertRaisesRegex(
        tf.errors.InvalidArgumentError, r'`flow` holds NaN or Inf values'
    ):
      module.serve(tf.constant(clip))

  def test_serving_out_of_range_only_when_allowed(self):
    pixels = tf.constant((_clip('rgb', 0) + 1) * 127.5)
    with self.assertRaisesRegex(
        tf.errors.InvalidArgumentError,
        r'`rgb` holds values far outside .*x / 127.5 - 1.*allow_out_of_range',
    ):
      serving.ServingModule({'rgb': _model('rgb')}).serve(pixels)
    allowed = serving.ServingModule(
        {'rgb': _model('rgb')}, allow_out_of_range=True
    )
    logits = allowed.serve(pixels)['logits']
    expected, _ = _model('rgb')(pixels, is_training=False)
    self.assertAllClose(logits, expected, atol=1e-2, rtol=1e-4)


class ErrorsTest(tf.test.TestCase):

  def test_bad_streams(self):
    with self.assertRaisesRegex(
        ValueError, r"`streams` 'rgbflow'.*rgb, flow," r' joint'
    ):
      serving.stream_parts('rgbflow')

  def test_wrong_channels(self):
    with self.assertRaisesRegex(
        ValueError,
        r'flow model takes 3 input ' r'channels; valid for flow is 2',
    ):
      serving.ServingModule({'flow': _model('rgb')})

  def test_unknown_stream_key(self):
    with self.assertRaisesRegex(
        ValueError, r'rgb, flow, or both; got ' r"\['depth'\]"
    ):
      serving.ServingModule({'depth': _model('rgb')})

  def test_classes_differ(self):
    with self.assertRaisesRegex(
        ValueError, r'same num_classes; got ' r'\[400, 600\]'
    ):
      serving.ServingModule({'rgb': _model('rgb', 600), 'flow': _model('flow')})

  def test_output_exists(self):
    out_dir = tempfile.mkdtemp(dir=self.get_temp_dir())
    with self.assertRaisesRegex(
        FileExistsError, r'already exists.*' r'overwrite=True'
    ):
      serving.export({'rgb': _model('rgb')}, out_dir)

  def test_entry_point_output_exists(self):
    out_dir = tempfile.mkdtemp(dir=self.get_temp_dir())
    run = _export([f'--output_dir={out_dir}', '--synthetic'])
    self.assertEqual(run.returncode, 1)
    self.assertRegex(
        run.stderr,
        r'export_saved_model: error: --output_dir=.*'
        r'already exists; pass --overwrite',
    )

  def test_missing_checkpoint_prefix(self):
    with self.assertRaisesRegex(
        ValueError, r'needs a flow checkpoint for ' r"streams 'joint'"
    ):
      serving.load_models('joint', {'rgb': 'x/model.ckpt'})

  def test_entry_point_bad_streams(self):
    run = _export(['--streams=rgbflow', '--output_dir=unused', '--synthetic'])
    self.assertNotEqual(run.returncode, 0)
    self.assertRegex(
        run.stderr, r'--streams=rgbflow.*one of <rgb\|flow\|' r'joint>'
    )


if __name__ == '__main__':
  tf.test.main()
