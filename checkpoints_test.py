"""Tests for the release-name mapping, strict restore and saving."""

import os
import shutil

from absl import logging
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import checkpoints
import i3d
import numpy_reference

_ROOT = os.path.dirname(os.path.abspath(__file__))
# The real index files: a downloaded release, or the reference copy beside
# the checkout (index files only, no weights).
_INDEX_ROOTS = (
    os.path.join(_ROOT, 'data', 'checkpoints'),
    os.path.join(
        _ROOT,
        '..',
        'shared',
        'reference',
        'kinetics-i3d-release',
        'data',
        'checkpoints',
    ),
)


def _real_index_prefix(name):
  for root in _INDEX_ROOTS:
    prefix = os.path.join(root, name, 'model.ckpt')
    if os.path.exists(prefix + '.index'):
      return prefix
  return None


def _small_video(channels, seed=0):
  return (
      np.random.default_rng(seed)
      .uniform(-1, 1, [1, 9, 193, 193, channels])
      .astype(np.float32)
  )


class ConformanceTest(tf.test.TestCase, parameterized.TestCase):
  """The project's inventory against the five real release index files."""

  @parameterized.parameters(*checkpoints.RELEASE_CHECKPOINTS.items())
  def test_inventory_equals_release_index(self, name, layout):
    prefix = _real_index_prefix(name)
    if prefix is None:
      self.skipTest(
          f'No model.ckpt.index for {name} in data/checkpoints/ '
          '(run fetch_assets.py) nor in ../shared/reference/.'
      )
    logging.info('Conformance of %s against %s', name, prefix)
    real = {n: tuple(s) for n, s in tf.train.list_variables(prefix)}
    # The inventory computed from the architecture table...
    self.assertEqual(
        checkpoints.release_inventory(layout, with_momentum=True), real
    )
    # ...and the one read off a built module's variables.
    lay = checkpoints.LAYOUTS[layout]
    model = i3d.InceptionI3d(num_classes=lay.num_classes)
    model.create_variables(lay.in_channels)
    from_model = {
        n: shape
        for n, (_, shape) in checkpoints.variable_map(model, layout).items()
    }
    self.assertEqual(
        from_model,
        {
            n: s
            for n, s in real.items()
            if not n.endswith(checkpoints.MOMENTUM_SUFFIX)
        },
    )
    # Each mapped variable holds as many values as the release tensor.
    for n, (variable, shape) in checkpoints.variable_map(model, layout).items():
      self.assertEqual(variable.shape.num_elements(), int(np.prod(shape)), n)

  def test_name_quirk_is_kept(self):
    names = checkpoints.release_inventory('rgb')
    self.assertIn(
        'RGB/inception_i3d/Mixed_5b/Branch_2/Conv3d_0a_3x3/conv_3d/w', names
    )
    self.assertNotIn(
        'RGB/inception_i3d/Mixed_5b/Branch_2/Conv3d_0b_3x3/conv_3d/w', names
    )
    self.assertIn(
        'RGB/inception_i3d/Mixed_5c/Branch_2/Conv3d_0b_3x3/conv_3d/w', names
    )

  def test_detect_layout(self):
    for layout in checkpoints.LAYOUTS:
      self.assertEqual(
          checkpoints.detect_layout(checkpoints.release_inventory(layout)),
          layout,
      )
    with self.assertRaisesRegex(
        checkpoints.CheckpointError, 'Cannot tell the checkpoint layout'
    ):
      checkpoints.detect_layout(['global_step'])


class RoundTripTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters('rgb', 'flow', 'kinetics600')
  def test_save_then_restore_gives_identical_outputs(self, layout):
    lay = checkpoints.LAYOUTS[layout]
    model = i3d.InceptionI3d(num_classes=lay.num_classes)
    checkpoints.assign_synthetic(model, layout, seed=7)
    prefix = os.path.join(self.get_temp_dir(), layout, 'model.ckpt')
    checkpoints.save(model, prefix, layout)
    # Exactly the release's names and shapes, minus optimizer slots.
    saved = {n: tuple(s) for n, s in tf.train.list_variables(prefix)}
    self.assertEqual(saved, checkpoints.release_inventory(layout))
    # No temporary files are left behind.
    self.assertCountEqual(
        os.listdir(os.path.dirname(prefix)),
        ['model.ckpt.index', 'model.ckpt.data-00000-of-00001'],
    )

    restored = checkpoints.load_model(prefix)
    self.assertEqual(restored.num_classes, lay.num_classes)
    self.assertEqual(restored.in_channels, lay.in_channels)
    x = _small_video(lay.in_channels)
    self.assertAllEqual(
        model(x, is_training=False)[0], restored(x, is_training=False)[0]
    )

  def test_synthetic_kinetics600_has_momentum_slots_that_restore_ignores(self):
    prefix = os.path.join(self.get_temp_dir(), 'k600', 'model.ckpt')
    checkpoints.write_synthetic(prefix, 'kinetics600', seed=1)
    names = dict(tf.train.list_variables(prefix))
    self.assertEqual(
        {n: tuple(s) for n, s in names.items()},
        checkpoints.release_inventory('kinetics600', with_momentum=True),
    )
    model = checkpoints.load_model(prefix)
    self.assertEqual(model.num_classes, 600)
    # BatchNorm tensors were reshaped from [1,1,1,1,C]: compare values.
    reader = tf.train.load_checkpoint(prefix)
    unit = model.units['Mixed_4c/Branch_1/Conv3d_0b_3x3']
    self.assertAllEqual(
        np.reshape(unit.batch_norm.offset, [-1]),
        np.reshape(
            reader.get_tensor(
                'Mixed_4c/Branch_1/Conv3d_0b_3x3/batch_norm/beta'
            ),
            [-1],
        ),
    )

  def test_restored_statistics_are_what_inference_uses(self):
    prefix = os.path.join(self.get_temp_dir(), 'rgb', 'model.ckpt')
    checkpoints.write_synthetic(prefix, 'rgb', seed=2)
    model = checkpoints.load_model(prefix, final_endpoint='Conv3d_2b_1x1')
    reader = tf.train.load_checkpoint(prefix)
    bn = model.units['Conv3d_2b_1x1'].batch_norm
    scope = 'RGB/inception_i3d/Conv3d_2b_1x1/batch_norm/'
    expect_mean = reader.get_tensor(scope + 'moving_mean')
    self.assertAllEqual(np.reshape(bn.moving_mean.value, [-1]), expect_mean)
    # The EMA stays consistent: hidden == average, so a training update
    # continues from the restored value.
    self.assertAllEqual(bn.moving_mean._hidden, bn.moving_mean.average)  # pylint: disable=protected-access
    self.assertEqual(
        int(bn.moving_variance._counter),  # pylint: disable=protected-access
        checkpoints.RESTORED_EMA_COUNTER,
    )
    # And the outputs are the NumPy computation with these statistics.
    x = (
        np.random.default_rng(0)
        .uniform(-1, 1, [1, 4, 20, 22, 3])
        .astype(np.float32)
    )
    out = model(x, is_training=False)[0]
    reference = numpy_reference.NumpyI3D.from_checkpoint(
        prefix, 'RGB/inception_i3d/'
    )
    self.assertAllClose(
        out[0],
        reference.endpoints(x[0], 'Conv3d_2b_1x1')['Conv3d_2b_1x1'],
        atol=1e-4,
        rtol=1e-4,
    )

  def test_partial_model_restores_from_full_checkpoint(self):
    prefix = os.path.join(self.get_temp_dir(), 'flow', 'model.ckpt')
    checkpoints.write_synthetic(prefix, 'flow', seed=3)
    model = checkpoints.load_model(prefix, final_endpoint='Mixed_3b')
    self.assertEqual(model.in_channels, 2)
    self.assertNotIn(i3d.LOGITS_UNIT, model.units)


class SyntheticReleaseTest(tf.test.TestCase):
  """write_synthetic_release's refusals (its files: cli_test, fetch_assets)."""

  def test_unknown_checkpoint_is_refused(self):
    with self.assertRaisesRegex(
        ValueError, r"Unknown checkpoints or streams \['rgb_kin600'\]"
    ):
      checkpoints.write_synthetic_release(
          self.get_temp_dir(), names=('rgb_kin600',)
      )

  def test_too_few_frames_are_refused(self):
    with self.assertRaisesRegex(
        ValueError, '`frames` must be at least 9; got 8'
    ):
      checkpoints.write_synthetic_release(self.get_temp_dir(), frames=8)
    self.assertEmpty(os.listdir(self.get_temp_dir()))


class StrictnessTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.tensors = checkpoints.synthetic_tensors('rgb', seed=0)
    self.model = i3d.InceptionI3d()
    self.model.create_variables(3)

  def _write(self, tensors):
    prefix = os.path.join(self.get_temp_dir(), 'model.ckpt')
    checkpoints.write_tensors(prefix, tensors)
    return prefix

  def test_600_classes_into_400_says_so(self):
    prefix = os.path.join(self.get_temp_dir(), 'k600', 'model.ckpt')
    checkpoints.write_synthetic(prefix, 'kinetics600')
    with self.assertRaisesRegex(
        checkpoints.CheckpointError,
        'the checkpoint has 600 classes but the model has 400',
    ):
      checkpoints.restore(self.model, prefix)

  def test_flow_checkpoint_into_rgb_model_says_so(self):
    prefix = os.path.join(self.get_temp_dir(), 'flow', 'model.ckpt')
    checkpoints.write_synthetic(prefix, 'flow')
    with self.assertRaisesRegex(
        checkpoints.CheckpointError,
        'takes 2 input channels but the model was built for 3',
    ):
      checkpoints.restore(self.model, prefix)

  def test_one_error_lists_missing_unexpected_and_mismatched(self):
    tensors = dict(self.tensors)
    gone = 'RGB/inception_i3d/Mixed_4d/Branch_0/Conv3d_0a_1x1/conv_3d/w'
    del tensors[gone]
    tensors['RGB/inception_i3d/Mixed_9z/extra'] = np.zeros(3, np.float32)
    bad = 'RGB/inception_i3d/Conv3d_2c_3x3/batch_norm/beta'
    tensors[bad] = np.zeros(7, np.float32)
    prefix = self._write(tensors)
    with self.assertRaises(checkpoints.CheckpointError) as ctx:
      checkpoints.restore(self.model, prefix)
    message = str(ctx.exception)
    self.assertIn(f'1 missing from the checkpoint:\n    {gone}', message)
    self.assertIn(
        '1 in the checkpoint but not in the model:\n'
        '    RGB/inception_i3d/Mixed_9z/extra',
        message,
    )
    self.assertIn(
        f'1 with the wrong shape:\n    {bad}: checkpoint [7], ' 'model [192]',
        message,
    )

  def test_failed_restore_changes_nothing(self):
    before = [v.numpy() for v in self.model.trainable_variables]
    tensors = dict(self.tensors)
    del tensors['RGB/inception_i3d/Logits/Conv3d_0c_1x1/conv_3d/b']
    with self.assertRaises(checkpoints.CheckpointError):
      checkpoints.restore(self.model, self._write(tensors))
    for a, b in zip(before, self.model.trainable_variables):
      self.assertAllEqual(a, b)

  def test_missing_checkpoint_says_what_to_run(self):
    with self.assertRaisesRegex(
        checkpoints.CheckpointError,
        r'No checkpoint at .*nowhere/model.ckpt.*fetch_assets.py',
    ):
      checkpoints.restore(
          self.model, os.path.join(self.get_temp_dir(), 'nowhere', 'model.ckpt')
      )

  def test_folder_instead_of_prefix_gets_a_hint(self):
    folder = os.path.join(self.get_temp_dir(), 'ckpt_folder')
    os.makedirs(folder)
    with self.assertRaisesRegex(
        checkpoints.CheckpointError, r'that is a folder; pass .*model\.ckpt'
    ):
      checkpoints.restore(self.model, folder)

  def test_truncated_index_names_the_file(self):
    prefix = self._write(self.tensors)
    with open(prefix + '.index', 'r+b') as f:
      f.truncate(100)
    with self.assertRaisesRegex(
        checkpoints.CheckpointError,
        r'Cannot read checkpoint .*model\.ckpt\.index: it is truncated or '
        'corrupt',
    ):
      checkpoints.restore(self.model, prefix)

  def test_truncated_data_names_the_file(self):
    prefix = self._write(self.tensors)
    data = prefix + '.data-00000-of-00001'
    with open(data, 'r+b') as f:
      f.truncate(os.path.getsize(data) // 2)
    with self.assertRaisesRegex(
        checkpoints.CheckpointError,
        r'Cannot read tensor .* from .*model\.ckpt\.data-\*: the data file '
        'is truncated or corrupt',
    ):
      checkpoints.restore(self.model, prefix)

  def test_unknown_layout(self):
    with self.assertRaisesRegex(
        ValueError,
        "Unknown `layout` 'rgb400'; valid values are rgb, flow, " 'kinetics600',
    ):
      checkpoints.release_inventory('rgb400')

  def test_unbuilt_model(self):
    with self.assertRaisesRegex(
        checkpoints.CheckpointError, 'create_variables'
    ):
      checkpoints.variable_map(i3d.InceptionI3d(), 'rgb')

  def test_interrupted_save_leaves_previous_checkpoint(self):
    prefix = self._write(self.tensors)
    before = open(prefix + '.index', 'rb').read()
    with self.assertRaises(Exception):
      checkpoints.write_tensors(prefix, {'bad': object()})
    self.assertEqual(open(prefix + '.index', 'rb').read(), before)
    self.assertEqual(
        [f for f in os.listdir(os.path.dirname(prefix)) if f.startswith('.')],
        [],
    )
    shutil.rmtree(os.path.dirname(prefix))


if __name__ == '__main__':
  tf.test.main()
