"""Tests for the I3D module: shapes, errors, and numerics against NumPy."""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import checkpoints
import i3d
import numpy_reference

_IMAGE_SIZE = 224
_NUM_CLASSES = 400


def _output_shape(model, shape, **kwargs):
  """Traces the model on a symbolic input; no compute."""
  fn = tf.function(lambda x: model(x, **kwargs))
  concrete = fn.get_concrete_function(tf.TensorSpec(shape, tf.float32))
  return concrete.structured_outputs


class I3dTest(tf.test.TestCase, parameterized.TestCase):
  """The release's three tests, on TF2."""

  def test_model_shapes_with_squeeze(self):
    model = i3d.InceptionI3d(
        num_classes=_NUM_CLASSES, final_endpoint='Predictions'
    )
    predictions, end_points = _output_shape(
        model,
        [None, 64, _IMAGE_SIZE, _IMAGE_SIZE, 3],
        is_training=True,
        dropout_keep_prob=0.5,
    )
    self.assertEqual(predictions.shape.as_list(), [None, _NUM_CLASSES])
    self.assertEqual(end_points['Logits'].shape.as_list(), [None, _NUM_CLASSES])

  def test_model_shapes_without_squeeze(self):
    model = i3d.InceptionI3d(
        num_classes=_NUM_CLASSES,
        spatial_squeeze=False,
        final_endpoint='Predictions',
    )
    predictions, _ = _output_shape(
        model,
        [5, 64, _IMAGE_SIZE, _IMAGE_SIZE, 3],
        is_training=False,
        dropout_keep_prob=1.0,
    )
    self.assertEqual(predictions.shape.as_list(), [5, 1, 1, _NUM_CLASSES])

  def test_init_errors(self):
    with self.assertRaisesRegex(ValueError, 'Conv3d_1a_8x8'):
      i3d.InceptionI3d(num_classes=_NUM_CLASSES, final_endpoint='Conv3d_1a_8x8')


class EndpointTest(tf.test.TestCase, parameterized.TestCase):

  def test_valid_endpoints_are_the_release_eighteen(self):
    self.assertLen(i3d.VALID_ENDPOINTS, 18)
    self.assertEqual(i3d.VALID_ENDPOINTS[0], 'Conv3d_1a_7x7')
    self.assertEqual(i3d.VALID_ENDPOINTS[-1], 'Predictions')
    self.assertEqual(
        [s.name for s in i3d.LAYER_SPECS], list(i3d.VALID_ENDPOINTS[:-2])
    )

  def test_endpoint_shapes(self):
    model = i3d.InceptionI3d(final_endpoint='Predictions')
    _, end_points = _output_shape(
        model, [2, 79, 224, 224, 3], is_training=False
    )
    expect = {
        'Conv3d_1a_7x7': [2, 40, 112, 112, 64],
        'MaxPool3d_2a_3x3': [2, 40, 56, 56, 64],
        'Conv3d_2c_3x3': [2, 40, 56, 56, 192],
        'Mixed_3c': [2, 40, 28, 28, 480],
        'MaxPool3d_4a_3x3': [2, 20, 14, 14, 480],
        'Mixed_4e': [2, 20, 14, 14, 528],
        'Mixed_4f': [2, 20, 14, 14, 832],
        'MaxPool3d_5a_2x2': [2, 10, 7, 7, 832],
        'Mixed_5c': [2, 10, 7, 7, 1024],
        'Logits': [2, 400],
        'Predictions': [2, 400],
    }
    for name, shape in expect.items():
      self.assertEqual(end_points[name].shape.as_list(), shape, name)
    self.assertEqual(list(end_points), list(i3d.VALID_ENDPOINTS))

  @parameterized.parameters('Conv3d_1a_7x7', 'Mixed_3b', 'Mixed_5c')
  def test_final_endpoint_stops_there(self, endpoint):
    model = i3d.InceptionI3d(final_endpoint=endpoint)
    out, end_points = _output_shape(model, [1, 8, 64, 64, 3], is_training=False)
    self.assertEqual(list(end_points)[-1], endpoint)
    self.assertEqual(out.shape, end_points[endpoint].shape)
    self.assertIsNone(model.logits_unit)

  def test_min_input_size(self):
    self.assertEqual(i3d.min_input_size('Logits'), (9, 193))
    self.assertEqual(i3d.min_input_size('Mixed_5c'), (1, 1))
    self.assertEqual(i3d.strides_up_to('Mixed_4f'), (4, 16, 16))


class ErrorTest(tf.test.TestCase, parameterized.TestCase):

  def test_unknown_endpoint_lists_valid_values(self):
    with self.assertRaisesRegex(
        ValueError, r"final_endpoint.*'Logitz'.*Mixed_5c, Logits"
    ):
      i3d.InceptionI3d(final_endpoint='Logitz')

  @parameterized.parameters(0.0, -0.5, 1.5)
  def test_dropout_keep_prob_out_of_range(self, keep):
    model = i3d.InceptionI3d(final_endpoint='Conv3d_1a_7x7')
    with self.assertRaisesRegex(
        ValueError, r'dropout_keep_prob.*\(0, 1\].*' + str(keep)
    ):
      model(
          tf.zeros([1, 2, 8, 8, 3]), is_training=False, dropout_keep_prob=keep
      )

  def test_input_rank(self):
    model = i3d.InceptionI3d(final_endpoint='Conv3d_1a_7x7')
    with self.assertRaisesRegex(ValueError, r'rank 5.*\(8, 224, 224, 3\)'):
      model(tf.zeros([8, 224, 224, 3]), is_training=False)

  def test_channels_differ_from_built_weights(self):
    model = i3d.InceptionI3d(final_endpoint='Conv3d_1a_7x7')
    model(tf.zeros([1, 2, 8, 8, 3]), is_training=False)
    with self.assertRaisesRegex(ValueError, 'has 2 channels.*built for 3'):
      model(tf.zeros([1, 2, 8, 8, 2]), is_training=False)

  @parameterized.parameters(
      ([1, 8, 224, 224, 3], '8 frames'),
      ([1, 16, 192, 224, 3], '192 pixels of height'),
      ([1, 16, 224, 100, 3], '100 pixels of width'),
  )
  def test_input_too_small_for_logits(self, shape, got):
    model = i3d.InceptionI3d()
    with self.assertRaisesRegex(
        ValueError, f'at least 9 frames and 193x193 pixels.*got {got}'
    ):
      model(tf.zeros(shape), is_training=False)

  def test_input_too_small_at_run_time(self):
    model = i3d.InceptionI3d()
    model.create_variables(3)
    fn = tf.function(
        lambda x: model(x, is_training=False)[0],
        input_signature=[
            tf.TensorSpec([None, None, None, None, 3], tf.float32)
        ],
    )
    with self.assertRaisesRegex(
        tf.errors.InvalidArgumentError, 'at least 9 frames and 193x193 pixels'
    ):
      fn(tf.zeros([1, 4, 200, 200, 3]))


def _random_bn_stats(unit: i3d.Unit3D, rng: np.random.Generator):
  """Gives a built unit's BatchNorm non-trivial moving statistics."""
  bn = unit.batch_norm
  c = unit.output_channels
  tensors = {
      'beta': rng.normal(0, 0.3, [c]),
      'mean': rng.normal(0, 0.3, [c]),
      'var': rng.uniform(0.3, 2.0, [c]),
  }
  bn.offset.assign(tensors['beta'].astype(np.float32))
  bn.moving_mean.average.assign(
      tensors['mean'].reshape(bn.moving_mean.average.shape).astype(np.float32)
  )
  bn.moving_variance.average.assign(
      tensors['var']
      .reshape(bn.moving_variance.average.shape)
      .astype(np.float32)
  )
  return tensors


class NumericsTest(tf.test.TestCase, parameterized.TestCase):
  """The layers against plain NumPy, on sizes where 'SAME' pads unevenly."""

  @parameterized.parameters(
      ((7, 7, 7), (2, 2, 2), (9, 13, 10)),  # Conv3d_1a: odd and even sizes.
      ((7, 7, 7), (2, 2, 2), (8, 11, 12)),
      ((3, 3, 3), (1, 1, 1), (5, 7, 6)),
      ((1, 1, 1), (1, 1, 1), (3, 5, 4)),
  )
  def test_unit3d_matches_numpy(self, kernel, stride, size):
    rng = np.random.default_rng(sum(size))
    x = rng.normal(size=[2, *size, 3]).astype(np.float32)
    unit = i3d.Unit3D(5, kernel, stride)
    out = unit(x, is_training=False)
    stats = _random_bn_stats(unit, rng)
    out = unit(x, is_training=False).numpy()
    w = unit.conv_3d.w.numpy()
    for b in range(2):
      expect = numpy_reference.conv3d_same(x[b], w, stride)
      expect = numpy_reference.batch_norm_test(
          expect, stats['beta'], stats['mean'], stats['var']
      )
      expect = np.maximum(expect, 0)
      self.assertEqual(out[b].shape, expect.shape)
      self.assertAllClose(out[b], expect, atol=1e-4, rtol=1e-4)

  def test_same_padding_is_asymmetric_at_stride_two(self):
    # 'SAME' with k=7, s=2 pads 2 before and 3 after 8 frames, but 3 and 3
    # around 9: the padding before depends on the parity of the length.
    self.assertEqual(numpy_reference.same_padding(8, 7, 2), (2, 3))
    self.assertEqual(numpy_reference.same_padding(9, 7, 2), (3, 3))
    self.assertEqual(numpy_reference.same_padding(8, 3, 2), (0, 1))
    self.assertEqual(numpy_reference.same_padding(7, 3, 2), (1, 1))

  @parameterized.parameters(
      ((1, 3, 3), (1, 2, 2), (3, 9, 8)),
      ((3, 3, 3), (2, 2, 2), (7, 7, 6)),
      ((2, 2, 2), (2, 2, 2), (5, 7, 3)),
      ((3, 3, 3), (1, 1, 1), (4, 5, 5)),
  )
  def test_max_pool_matches_numpy(self, kernel, stride, size):
    x = np.random.default_rng(1).normal(size=[1, *size, 4]).astype(np.float32)
    # All negative inputs: a zero-padded pool would wrongly return 0 at edges.
    x = -np.abs(x) - 0.1
    out = i3d.max_pool(x, kernel, stride).numpy()
    expect = numpy_reference.max_pool_same(x[0], kernel, stride)
    self.assertAllClose(out[0], expect)

  def test_batch_norm_is_sonnet1_offset_only(self):
    unit = i3d.Unit3D(4)
    unit(tf.zeros([1, 1, 1, 1, 2]), is_training=False)
    bn = unit.batch_norm
    self.assertFalse(bn.scale.trainable)
    self.assertTrue(bn.offset.trainable)
    self.assertEqual(bn._eps, 1e-3)  # pylint: disable=protected-access
    names = sorted(v.name.split('/')[-1] for v in unit.trainable_variables)
    self.assertEqual(names, ['offset:0', 'w:0'])

  def test_training_updates_restored_moving_average(self):
    # After a restore, one training step moves the statistic by (1 - decay)
    # towards the batch mean, as Sonnet 1's moving average did.
    model = i3d.InceptionI3d(final_endpoint='Conv3d_1a_7x7')
    model.create_variables(3)
    unit = model.units['Conv3d_1a_7x7']
    restored = np.linspace(-1, 1, 64).astype(np.float32)
    tensors = {
        'RGB/inception_i3d/Conv3d_1a_7x7/conv_3d/w': np.random.default_rng(
            0
        ).normal(0, 0.1, [7, 7, 7, 3, 64]),
        'RGB/inception_i3d/Conv3d_1a_7x7/batch_norm/beta': np.zeros(64),
        'RGB/inception_i3d/Conv3d_1a_7x7/batch_norm/moving_mean': restored,
        'RGB/inception_i3d/Conv3d_1a_7x7/batch_norm/moving_variance': np.ones(
            64
        ),
    }
    checkpoints.assign(model, tensors, 'rgb')
    bn = unit.batch_norm
    self.assertAllClose(np.reshape(bn.moving_mean.value, [-1]), restored)
    x = np.random.default_rng(1).normal(size=[2, 4, 8, 8, 3]).astype(np.float32)
    conv = unit.conv_3d(x).numpy()
    unit(x, is_training=True)
    batch_mean = conv.mean(axis=(0, 1, 2, 3))
    expect = i3d.BN_DECAY * restored + (1 - i3d.BN_DECAY) * batch_mean
    self.assertAllClose(
        np.reshape(bn.moving_mean.value, [-1]), expect, atol=1e-6
    )


class WholeModelTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.model = i3d.InceptionI3d(final_endpoint='Predictions')
    checkpoints.assign_synthetic(cls.model, 'rgb', seed=3)
    cls.tensors = checkpoints.synthetic_tensors('rgb', seed=3)

  def test_logits_match_numpy_reference(self):
    x = (
        np.random.default_rng(2)
        .uniform(-1, 1, [1, 10, 193, 200, 3])
        .astype(np.float32)
    )
    logits, end_points = self.model(x, is_training=False)
    reference = numpy_reference.NumpyI3D.from_dict(
        self.tensors, 'RGB/inception_i3d/'
    )
    expect = reference.logits(x)
    self.assertAllClose(end_points['Logits'], expect, atol=2e-4, rtol=0)
    self.assertAllClose(logits, tf.nn.softmax(expect), atol=1e-5)

  def test_eager_equals_tf_function(self):
    rng = np.random.default_rng(4)
    fn = tf.function(
        lambda x: self.model(x, is_training=False)[1]['Logits'],
        input_signature=[tf.TensorSpec([None, None, 224, 224, 3], tf.float32)],
    )
    # Several batch sizes and frame counts through one traced function.
    for batch, frames in ((1, 9), (2, 12)):
      x = rng.uniform(-1, 1, [batch, frames, 224, 224, 3]).astype(np.float32)
      eager = self.model(x, is_training=False)[1]['Logits']
      self.assertEqual(eager.shape, (batch, 400))
      self.assertAllClose(eager, fn(x), atol=1e-5, rtol=0)
    self.assertEqual(fn.experimental_get_tracing_count(), 1)

  def test_batch_items_are_independent(self):
    x = (
        np.random.default_rng(5)
        .uniform(-1, 1, [2, 9, 193, 193, 3])
        .astype(np.float32)
    )
    both = self.model(x, is_training=False)[1]['Logits']
    one = self.model(x[1:], is_training=False)[1]['Logits']
    self.assertAllClose(both[1:], one, atol=1e-5)

  def test_dropout_only_below_one(self):
    # As in the release, dropout applies whenever keep_prob < 1. (Running
    # with is_training=False keeps the shared model's statistics intact.)
    x = (
        np.random.default_rng(6)
        .uniform(-1, 1, [1, 9, 193, 193, 3])
        .astype(np.float32)
    )
    a = self.model(x, is_training=False, dropout_keep_prob=1.0)[1]['Logits']
    b = self.model(x, is_training=False, dropout_keep_prob=1.0)[1]['Logits']
    self.assertAllEqual(a, b)
    tf.random.set_seed(0)
    c = self.model(x, is_training=False, dropout_keep_prob=0.5)[1]['Logits']
    self.assertNotAllClose(a, c)


if __name__ == '__main__':
  tf.test.main()
