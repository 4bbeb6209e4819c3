"""Tests for the 2D Inception-v1: slim's names, the network, strict loading,
and getting slim's checkpoint (assets.fetch_inception_v1)."""

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import assets
import checkpoints
import inception_v1
import numpy_reference
import testing

_HERE = os.path.dirname(os.path.abspath(__file__))

# Transcribed by hand from TF-slim's nets/inception_v1.py (tensorflow/models,
# research/slim): each block's conv scopes with their output channels, in the
# order (Branch_0 1x1, Branch_1 1x1, Branch_1 3x3, Branch_2 1x1, Branch_2 3x3,
# Branch_3 1x1). Independent of i3d.LAYER_SPECS, which the module uses.
_SLIM_BLOCKS = {
    'Mixed_3b': (64, 96, 128, 16, 32, 32),
    'Mixed_3c': (128, 128, 192, 32, 96, 64),
    'Mixed_4b': (192, 96, 208, 16, 48, 64),
    'Mixed_4c': (160, 112, 224, 24, 64, 64),
    'Mixed_4d': (128, 128, 256, 24, 64, 64),
    'Mixed_4e': (112, 144, 288, 32, 64, 64),
    'Mixed_4f': (256, 160, 320, 32, 128, 128),
    'Mixed_5b': (256, 160, 320, 32, 128, 128),
    'Mixed_5c': (384, 192, 384, 48, 128, 128),
}


def _slim_names_by_hand():
  """Slim name -> shape, written out from slim's source."""
  out = {}

  def conv(scope, k, cin, cout):
    out[f'InceptionV1/{scope}/weights'] = (k, k, cin, cout)
    for stat in ('beta', 'moving_mean', 'moving_variance'):
      out[f'InceptionV1/{scope}/BatchNorm/{stat}'] = (cout,)

  conv('Conv2d_1a_7x7', 7, 3, 64)
  conv('Conv2d_2b_1x1', 1, 64, 64)
  conv('Conv2d_2c_3x3', 3, 64, 192)
  cin = 192
  for block, (b0, b1a, b1b, b2a, b2b, b3) in _SLIM_BLOCKS.items():
    # Slim's Mixed_5b names its Branch_2 3x3 conv 'Conv2d_0a_3x3'.
    b2_conv = 'Conv2d_0a_3x3' if block == 'Mixed_5b' else 'Conv2d_0b_3x3'
    conv(f'{block}/Branch_0/Conv2d_0a_1x1', 1, cin, b0)
    conv(f'{block}/Branch_1/Conv2d_0a_1x1', 1, cin, b1a)
    conv(f'{block}/Branch_1/Conv2d_0b_3x3', 3, b1a, b1b)
    conv(f'{block}/Branch_2/Conv2d_0a_1x1', 1, cin, b2a)
    conv(f'{block}/Branch_2/{b2_conv}', 3, b2a, b2b)
    conv(f'{block}/Branch_3/Conv2d_0b_1x1', 1, cin, b3)
    cin = b0 + b1b + b2b + b3
  out['InceptionV1/Logits/Conv2d_0c_1x1/weights'] = (1, 1, 1024, 1001)
  out['InceptionV1/Logits/Conv2d_0c_1x1/biases'] = (1001,)
  return out


def _numpy_2d(slim, image, stop):
  """slim's network in float64 NumPy: the independent NumPy I3D run on one
  frame with kernels of temporal size 1, which is the 2D network."""

  def get(release_name):
    name = (
        release_name.replace('Conv3d', 'Conv2d')
        .replace('conv_3d/w', 'weights')
        .replace('conv_3d/b', 'biases')
        .replace('batch_norm/', 'BatchNorm/')
    )
    value = slim['InceptionV1/' + name]
    return value[np.newaxis] if value.ndim == 4 else value

  ref = numpy_reference.NumpyI3D(get)
  return ref.endpoints(image[np.newaxis], stop=stop)[stop][0]


def write_v1_checkpoint(path, tensors):
  """A TF1 V1 checkpoint file, the format of slim's inception_v1.ckpt."""
  names = sorted(tensors)
  tf.raw_ops.Save(
      filename=path,
      tensor_names=names,
      data=[tf.constant(tensors[n]) for n in names],
  )


def write_archive(path, files):
  """A .tar.gz holding {member name: file path}."""
  with tarfile.open(path, 'w:gz', compresslevel=1) as tar:
    for member, src in files.items():
      tar.add(src, arcname=member)


class InceptionV1Test(
    testing.TempDirMixin, tf.test.TestCase, parameterized.TestCase
):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.slim = inception_v1.synthetic_tensors(seed=3)
    cls.model = inception_v1.InceptionV1()
    cls.model.create_variables()
    inception_v1.assign(cls.model, cls.slim)

  def test_inventory_is_slims(self):
    self.assertEqual(inception_v1.slim_inventory(), _slim_names_by_hand())

  def test_module_variables_are_the_inventory(self):
    variables = inception_v1.variable_map(self.model)
    self.assertEqual(
        {n: s for n, (_, s) in variables.items()}, _slim_names_by_hand()
    )
    for name, (variable, shape) in variables.items():
      self.assertEqual(variable.shape.num_elements(), np.prod(shape), name)
    from_model = variables
    self.assertEmpty([n for n in from_model if 'gamma' in n])
    self.assertLen(self.model.trainable_variables, 58 + 57 + 1)

  def test_batch_norm_settings(self):
    for unit in self.model.units.values():
      if unit.batch_norm is None:
        continue
      bn = unit.batch_norm
      self.assertFalse(bn.scale.trainable)  # A constant 1: slim has no gamma.
      self.assertAllEqual(bn.scale, tf.ones_like(bn.scale))
      self.assertEqual(bn._eps, 1e-3)  # pylint: disable=protected-access
      self.assertAllClose(bn.moving_mean._decay, 0.9997)  # pylint: disable=protected-access

  def test_endpoint_shapes_at_224(self):
    image = np.zeros([1, 224, 224, 3], np.float32)
    _, end_points = self.model(image, is_training=False)
    shapes = {n: v.shape.as_list() for n, v in end_points.items()}
    # SAME max pools: 112 -> 56 (VALID would give 55); VALID avg pool 7 -> 1.
    self.assertEqual(shapes['Conv2d_1a_7x7'], [1, 112, 112, 64])
    self.assertEqual(shapes['MaxPool_2a_3x3'], [1, 56, 56, 64])
    self.assertEqual(shapes['Conv2d_2c_3x3'], [1, 56, 56, 192])
    self.assertEqual(shapes['MaxPool_3a_3x3'], [1, 28, 28, 192])
    self.assertEqual(shapes['Mixed_3c'], [1, 28, 28, 480])
    self.assertEqual(shapes['MaxPool_4a_3x3'], [1, 14, 14, 480])
    self.assertEqual(shapes['Mixed_4f'], [1, 14, 14, 832])
    self.assertEqual(shapes['MaxPool_5a_2x2'], [1, 7, 7, 832])
    self.assertEqual(shapes['Mixed_5c'], [1, 7, 7, 1024])
    self.assertEqual(shapes['AvgPool_0a_7x7'], [1, 1, 1, 1024])
    self.assertEqual(shapes['Logits'], [1, 1001])
    self.assertAllClose(
        end_points['AvgPool_0a_7x7'][0, 0, 0],
        tf.reduce_mean(end_points['Mixed_5c'][0], [0, 1]),
        rtol=1e-5,
        atol=1e-5,
    )

  @parameterized.parameters(
      'Conv2d_1a_7x7', 'MaxPool_3a_3x3', 'Mixed_4b', 'Mixed_5c'
  )
  def test_matches_numpy_reference(self, endpoint):
    image = (
        np.random.default_rng(0)
        .uniform(-1, 1, [1, 37, 29, 3])
        .astype(np.float32)
    )
    model = inception_v1.InceptionV1(final_endpoint=endpoint)
    model.create_variables()
    inception_v1.assign(model, self.slim)
    got, _ = model(image, is_training=False)
    want = _numpy_2d(
        self.slim,
        image[0],
        endpoint.replace('Conv2d', 'Conv3d').replace('MaxPool', 'MaxPool3d'),
    )
    self.assertAllClose(got[0], want, rtol=1e-4, atol=1e-4)

  def test_save_and_load_round_trip(self):
    prefix = os.path.join(self.tmp, 'v2', 'model.ckpt')
    inception_v1.save(self.model, prefix)
    loaded = inception_v1.load_model(prefix, final_endpoint='Mixed_4b')
    direct = inception_v1.InceptionV1(final_endpoint='Mixed_4b')
    direct.create_variables()
    inception_v1.assign(direct, self.slim)
    image = (
        np.random.default_rng(1)
        .uniform(-1, 1, [1, 32, 32, 3])
        .astype(np.float32)
    )
    got, _ = loaded(image, is_training=False)
    want, _ = direct(image, is_training=False)
    self.assertEqual(got.shape, [1, 2, 2, 512])
    self.assertAllEqual(got, want)
    self.assertEqual(inception_v1.load_model(prefix).num_classes, 1001)

  def test_reads_a_v1_checkpoint_file(self):
    path = os.path.join(self.tmp, 'inception_v1.ckpt')
    write_v1_checkpoint(path, dict(self.slim, global_step=np.int64(7)))
    tensors = inception_v1.read_tensors(path)
    self.assertEqual(set(tensors), set(self.slim))
    for name in (
        'InceptionV1/Conv2d_1a_7x7/weights',
        'InceptionV1/Mixed_5b/Branch_2/Conv2d_0a_3x3/BatchNorm/beta',
    ):
      self.assertAllEqual(tensors[name], self.slim[name])

  def test_wrong_image_channels(self):
    with self.assertRaisesRegex(ValueError, 'has 2 channels but this model'):
      self.model(np.zeros([1, 224, 224, 2], np.float32), is_training=False)

  def test_unknown_endpoint(self):
    with self.assertRaisesRegex(
        ValueError,
        'Unknown `final_endpoint` '
        "'Conv3d_1a_7x7'; valid values are, in network "
        'order: Conv2d_1a_7x7, MaxPool_2a_3x3',
    ):
      inception_v1.InceptionV1(final_endpoint='Conv3d_1a_7x7')

  def test_image_too_small_for_logits(self):
    with self.assertRaisesRegex(ValueError, 'at least 193x193 pixels'):
      self.model(np.zeros([1, 64, 64, 3], np.float32), is_training=False)


class StrictTest(testing.TempDirMixin, tf.test.TestCase):
  """Bad slim checkpoints: each error lists what is wrong."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.slim = inception_v1.synthetic_tensors(seed=4)

  def _write(self, name, tensors):
    prefix = os.path.join(self.tmp, name, 'model.ckpt')
    checkpoints.write_tensors(prefix, tensors)
    return prefix

  def test_partial_checkpoint_lists_missing(self):
    tensors = dict(self.slim)
    del tensors['InceptionV1/Mixed_4d/Branch_1/Conv2d_0b_3x3/weights']
    del tensors['InceptionV1/Logits/Conv2d_0c_1x1/biases']
    prefix = self._write('partial', tensors)
    with self.assertRaisesRegex(
        checkpoints.CheckpointError,
        r'2 missing from the checkpoint:\n'
        r'    InceptionV1/Logits/Conv2d_0c_1x1/biases\n'
        r'    InceptionV1/Mixed_4d/Branch_1/Conv2d_0b_3x3/weights',
    ):
      inception_v1.read_tensors(prefix)

  def test_wrong_shape_lists_mismatch(self):
    tensors = dict(self.slim)
    tensors['InceptionV1/Mixed_3b/Branch_0/Conv2d_0a_1x1/BatchNorm/beta'] = (
        np.zeros([65], np.float32)
    )
    prefix = self._write('shape', tensors)
    with self.assertRaisesRegex(
        checkpoints.CheckpointError,
        re.escape(
            '1 with the wrong shape:\n    InceptionV1/Mixed_3b/Branch_0/'
            'Conv2d_0a_1x1/BatchNorm/beta: checkpoint [65], model '
            '[64]'
        ),
    ):
      inception_v1.read_tensors(prefix)

  def test_wrong_input_channels(self):
    tensors = dict(self.slim)
    tensors['InceptionV1/Conv2d_1a_7x7/weights'] = np.zeros(
        [7, 7, 4, 64], np.float32
    )
    prefix = self._write('channels', tensors)
    with self.assertRaisesRegex(
        checkpoints.CheckpointError,
        r'its first conv takes 4 input channels; an ImageNet Inception-v1 '
        r'takes 3 \(RGB\)',
    ):
      inception_v1.read_tensors(prefix)

  def test_other_architecture(self):
    resnet = {
        'resnet_v1_50/conv1/weights': np.zeros([7, 7, 3, 64], np.float32),
        'resnet_v1_50/block1/unit_1/bottleneck_v1/conv1/weights': np.zeros(
            [1, 1, 64, 64], np.float32
        ),
        'resnet_v1_50/logits/biases': np.zeros([1000], np.float32),
    }
    prefix = self._write('resnet', resnet)
    with self.assertRaisesRegex(
        checkpoints.CheckpointError,
        r'(?s)none of its 3 tensors is under InceptionV1/; it looks like '
        r'another architecture.*230 missing.*3 in the checkpoint but not in '
        r'the model:\n    resnet_v1_50/block1/',
    ):
      inception_v1.read_tensors(prefix)

  def test_i3d_checkpoint_is_not_2d(self):
    prefix = os.path.join(self.tmp, 'i3d', 'model.ckpt')
    checkpoints.write_synthetic(prefix, 'rgb')
    with self.assertRaisesRegex(
        checkpoints.CheckpointError, 'it looks like an I3D checkpoint'
    ):
      inception_v1.read_tensors(prefix)

  def test_missing_file_names_the_fetch_command(self):
    with self.assertRaisesRegex(
        checkpoints.CheckpointError, 'python fetch_inception_v1.py'
    ):
      inception_v1.read_tensors(os.path.join(self.tmp, 'nothing.ckpt'))


class FetchTest(testing.TempDirMixin, tf.test.TestCase):
  """assets.fetch_inception_v1 on archives the test builds itself."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    slim = inception_v1.synthetic_tensors(seed=5)
    good = os.path.join(cls.tmp, 'good.ckpt')
    write_v1_checkpoint(good, slim)
    cls.archive = os.path.join(cls.tmp, 'served', assets.INCEPTION_V1_ARCHIVE)
    os.makedirs(os.path.dirname(cls.archive))
    write_archive(cls.archive, {'inception_v1.ckpt': good})
    partial = os.path.join(cls.tmp, 'partial.ckpt')
    write_v1_checkpoint(
        partial,
        {
            n: v
            for n, v in slim.items()
            if not n.startswith('InceptionV1/Mixed_5c/Branch_3')
        },
    )
    cls.partial_archive = os.path.join(cls.tmp, 'partial.tar.gz')
    write_archive(cls.partial_archive, {'inception_v1.ckpt': partial})
    cls.wrong_archive = os.path.join(cls.tmp, 'wrong.tar.gz')
    readme = os.path.join(cls.tmp, 'README')
    with open(readme, 'w') as f:
      f.write('not a checkpoint')
    write_archive(cls.wrong_archive, {'model.ckpt': readme})

  def setUp(self):
    super().setUp()
    self.dest = tempfile.mkdtemp(dir=self.tmp)

  def _fetch(self, **kwargs):
    return assets.fetch_inception_v1(
        self.dest,
        inception_v1.check_file,
        progress=False,
        timeout_s=5,
        **kwargs,
    )

  def test_downloads_extracts_and_verifies(self):
    path = self._fetch(url='file://' + self.archive)
    self.assertEqual(path, os.path.join(self.dest, 'inception_v1.ckpt'))
    self.assertTrue(
        os.path.isfile(os.path.join(self.dest, assets.INCEPTION_V1_ARCHIVE))
    )
    self.assertLen(inception_v1.read_tensors(path), 230)
    self.assertEmpty([f for f in os.listdir(self.dest) if f.startswith('.')])
    # Already there and verified: nothing is downloaded again.
    self.assertEqual(self._fetch(url='http://127.0.0.1:9/none.tar.gz'), path)

  def test_uses_an_archive_put_in_place_by_hand(self):
    shutil.copy(self.archive, self.dest)
    path = self._fetch(url='http://127.0.0.1:9/none.tar.gz')
    inception_v1.check_file(path)

  def test_source_file(self):
    path = self._fetch(
        url='http://127.0.0.1:9/none.tar.gz', source_file=self.archive
    )
    inception_v1.check_file(path)

  def test_offline_says_where_to_put_the_file(self):
    with self.assertRaisesRegex(
        assets.AssetError,
        re.escape(
            'Could not download http://127.0.0.1:9/'
            'inception_v1_2016_08_28.tar.gz'
        )
        + '.*put it at '
        + re.escape(os.path.join(self.dest, assets.INCEPTION_V1_ARCHIVE)),
    ):
      self._fetch(url='http://127.0.0.1:9/inception_v1_2016_08_28.tar.gz')
    self.assertEmpty(os.listdir(self.dest))

  def test_wrong_inventory_is_listed_and_not_kept(self):
    with self.assertRaisesRegex(
        assets.AssetError,
        r'(?s)not the expected checkpoint.*4 missing from the checkpoint:\n'
        r'    InceptionV1/Mixed_5c/Branch_3/Conv2d_0b_1x1/BatchNorm/beta',
    ):
      self._fetch(source_file=self.partial_archive)
    self.assertFalse(
        os.path.exists(os.path.join(self.dest, 'inception_v1.ckpt'))
    )

  def test_archive_without_the_checkpoint(self):
    with self.assertRaisesRegex(
        assets.AssetError, "holds no file 'inception_v1.ckpt'"
    ):
      self._fetch(source_file=self.wrong_archive)

  def test_not_an_archive(self):
    junk = os.path.join(self.tmp, 'junk.tar.gz')
    with open(junk, 'wb') as f:
      f.write(b'not a tarball')
    with self.assertRaisesRegex(assets.AssetError, 'is not a complete .tar.gz'):
      self._fetch(source_file=junk)

  def test_command_offline_exits_with_one_message(self):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(_HERE, 'fetch_inception_v1.py'),
            f'--dest_dir={self.dest}',
            '--url=http://127.0.0.1:9/x.tar.gz',
            '--noprogress',
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    self.assertEqual(result.returncode, 1)
    self.assertIn(
        'fetch_inception_v1.py: error: Could not download', result.stderr
    )
    self.assertIn('--source_file', result.stderr)
    self.assertNotIn('Traceback', result.stderr)


if __name__ == '__main__':
  tf.test.main()
