"""Tests for inflation: the boring-video fixed point, the flow conv, the round
trip through a release-named checkpoint, bad input and inflate.py."""

import os
import subprocess
import sys

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import checkpoints
import i3d
import inception_v1
import inflation
import testing

_HERE = os.path.dirname(os.path.abspath(__file__))


def _image(size, channels=3, seed=0):
  return (
      np.random.default_rng(seed)
      .uniform(-1, 1, [1, size, size, channels])
      .astype(np.float32)
  )


def _boring(image, frames):
  """[1,H,W,C] -> [1,frames,H,W,C]: the image repeated."""
  return np.repeat(image[:, np.newaxis], frames, axis=1)


def _rel_err(got, want):
  return float(
      np.max(np.abs(np.asarray(got) - np.asarray(want))) / np.max(np.abs(want))
  )


class KernelTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(1, 3, 7)
  def test_inflate_kernel_repeats_and_divides(self, time):
    kernel = (
        np.random.default_rng(0).normal(size=[3, 3, 4, 5]).astype(np.float32)
    )
    inflated = inflation.inflate_kernel(kernel, time)
    self.assertEqual(inflated.shape, (time, 3, 3, 4, 5))
    for t in range(time):
      self.assertAllClose(inflated[t], kernel / time)
    self.assertAllClose(inflated.sum(axis=0), kernel, rtol=1e-6, atol=1e-6)

  def test_temporal_sizes_come_from_the_spec_table(self):
    slim = inception_v1.synthetic_tensors(seed=1)
    out = inflation.inflate_tensors(slim, 'rgb', head='imagenet')
    self.assertEqual(
        {n: v.shape for n, v in out.items()},
        checkpoints.release_inventory('rgb', num_classes=1001),
    )
    p = 'RGB/inception_i3d/'
    self.assertEqual(out[p + 'Conv3d_1a_7x7/conv_3d/w'].shape[0], 7)
    self.assertEqual(
        out[p + 'Mixed_4c/Branch_1/Conv3d_0b_3x3/conv_3d/w'].shape,
        (3, 3, 3, 112, 224),
    )
    self.assertEqual(
        out[p + 'Mixed_5b/Branch_2/Conv3d_0a_3x3/conv_3d/w'].shape,
        (3, 3, 3, 32, 128),
    )
    self.assertEqual(out[p + 'Conv3d_2b_1x1/conv_3d/w'].shape[0], 1)
    for stat in ('beta', 'moving_mean', 'moving_variance'):
      self.assertAllEqual(
          out[p + f'Mixed_3c/Branch_2/Conv3d_0a_1x1/batch_norm/{stat}'],
          slim[f'InceptionV1/Mixed_3c/Branch_2/Conv2d_0a_1x1/BatchNorm/{stat}'],
      )
    self.assertAllEqual(
        out[p + 'Logits/Conv3d_0c_1x1/conv_3d/b'],
        slim['InceptionV1/Logits/Conv2d_0c_1x1/biases'],
    )

  @parameterized.parameters(('zeros', 0.0), ('normal', 0.01))
  def test_new_head(self, head_init, stddev):
    slim = inception_v1.synthetic_tensors(seed=1)
    out = inflation.inflate_tensors(
        slim, 'flow', num_classes=101, head_init=head_init
    )
    w = out['Flow/inception_i3d/Logits/Conv3d_0c_1x1/conv_3d/w']
    self.assertEqual(w.shape, (1, 1, 1, 1024, 101))
    self.assertAllClose(np.std(w), stddev, rtol=0.05)
    self.assertAllEqual(
        out['Flow/inception_i3d/Logits/Conv3d_0c_1x1/conv_3d/b'],
        np.zeros([101]),
    )

  def test_flow_inits(self):
    rgb = np.random.default_rng(0).normal(size=[7, 7, 3, 8]).astype(np.float32)
    mean = rgb.mean(axis=2)
    average = inflation.flow_kernel(rgb, 'average')
    tsn = inflation.flow_kernel(rgb, 'tsn')
    for c in range(2):
      self.assertAllClose(average[:, :, c], mean * 1.5)
      self.assertAllClose(tsn[:, :, c], mean)
    # 'average' keeps the kernel's sum over input channels.
    self.assertAllClose(average.sum(axis=2), rgb.sum(axis=2), atol=1e-5)
    self.assertAllEqual(inflation.flow_kernel(rgb, 'first_two'), rgb[:, :, :2])
    self.assertEqual(inflation.flow_kernel(rgb, 'random').shape, (7, 7, 2, 8))

  def test_exact_positions_by_hand(self):
    # Conv3d_1a_7x7 on 8 frames: kernel 7, stride 2, SAME pads 2 before and 3
    # after; output i reads frames 2i-2 .. 2i+4, inside [0, 8) for i = 1 only.
    self.assertEqual(inflation.exact_positions(8, 'Conv3d_1a_7x7'), range(1, 2))
    self.assertEqual(inflation.frames_for_exact(1, 'Conv3d_1a_7x7'), 8)
    self.assertEmpty(inflation.exact_positions(7, 'Conv3d_1a_7x7'))
    # Mixed_5c sees 99 frames, with positions 8 frames apart.
    self.assertEqual(inflation.frames_for_exact(1), 101)
    self.assertEqual(inflation.frames_for_exact(2), 109)


class FixedPointTest(tf.test.TestCase):
  """The paper's boring-video fixed point, on random weights and statistics."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.slim = inception_v1.synthetic_tensors(seed=7)
    cls.net_2d = inception_v1.InceptionV1()
    cls.net_2d.create_variables()
    inception_v1.assign(cls.net_2d, cls.slim)
    cls.net_3d = inflation.inflate_model(cls.slim, 'rgb', head='imagenet')

  def test_boring_video_gives_the_2d_features(self):
    # 193 pixels is the least that keeps AvgPool_0a_7x7's 7x7 VALID window
    # (Mixed_5c is 7x7); 109 frames give 2 exact Mixed_5c positions, what the
    # logits' [2,7,7] pool needs.
    image = _image(193, seed=11)
    frames = inflation.frames_for_exact(2)
    _, ends_2d = self.net_2d(image, is_training=False)
    _, ends_3d = self.net_3d(_boring(image, frames), is_training=False)

    for endpoint in ('Conv3d_1a_7x7', 'Mixed_3c', 'Mixed_4f', 'Mixed_5c'):
      want = ends_2d[inception_v1.name_2d(endpoint)][0]
      got = ends_3d[endpoint][0]
      exact = inflation.exact_positions(frames, endpoint)
      self.assertGreaterEqual(len(exact), 2, endpoint)
      for t in exact:
        self.assertLess(_rel_err(got[t], want), 1e-5, f'{endpoint} frame {t}')
      # The first frame's window hangs over the zero padding: it differs.
      self.assertGreater(_rel_err(got[0], want), 1e-3, f'{endpoint} frame 0')

    exact = inflation.exact_positions(frames)
    interior = ends_3d['Mixed_5c'][:, exact.start : exact.stop]
    pooled = tf.nn.avg_pool3d(
        interior, [1, *i3d.LOGITS_POOL, 1], [1, 1, 1, 1, 1], 'VALID'
    )
    self.assertEqual(pooled.shape, [1, 1, 1, 1, 1024])
    self.assertLess(_rel_err(pooled[0, 0], ends_2d['AvgPool_0a_7x7'][0]), 1e-5)
    logits = self.net_3d.logits_head(pooled, is_training=False)
    self.assertEqual(logits.shape, [1, 1001])
    self.assertLess(_rel_err(logits, ends_2d['Logits']), 1e-5)
    # The head is not trivially equal: the logits vary across classes.
    self.assertGreater(np.std(ends_2d['Logits']), 1e-2)

  def test_flow_conv_on_a_gray_image(self):
    # A flow clip whose two channels both equal the mean of an RGB image,
    # against the 2D network on that mean as a gray RGB image.
    mean = _image(32, seed=12).mean(axis=-1, keepdims=True)
    gray_rgb = np.repeat(mean, 3, axis=-1)
    flow_clip = _boring(np.repeat(mean, 2, axis=-1), 8)
    conv_2d = inception_v1.InceptionV1(final_endpoint='Conv2d_1a_7x7')
    conv_2d.create_variables()
    inception_v1.assign(conv_2d, self.slim)
    want, _ = conv_2d(gray_rgb, is_training=False)
    exact = inflation.exact_positions(8, 'Conv3d_1a_7x7')
    self.assertNotEmpty(exact)
    results = {}
    for flow_init in ('average', 'tsn'):
      flow = inflation.inflate_model(
          self.slim, 'flow', flow_init=flow_init, final_endpoint='Conv3d_1a_7x7'
      )
      got, _ = flow(flow_clip, is_training=False)
      results[flow_init] = _rel_err(got[0, exact.start], want[0])
    self.assertLess(results['average'], 1e-5)
    # TSN's plain average gives 2/3 of the response before BatchNorm.
    self.assertGreater(results['tsn'], 1e-2)


class CheckpointTest(
    testing.TempDirMixin, tf.test.TestCase, parameterized.TestCase
):
  """inflate_checkpoint: release names, strict restore, bad input."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.slim = inception_v1.synthetic_tensors(seed=9)
    cls.source = os.path.join(cls.tmp, 'slim', 'model.ckpt')
    checkpoints.write_tensors(cls.source, cls.slim)

  def _write(self, name, tensors):
    prefix = os.path.join(self.tmp, name, 'model.ckpt')
    checkpoints.write_tensors(prefix, tensors)
    return prefix

  @parameterized.parameters(('rgb', 'new', 400), ('flow', 'imagenet', 1001))
  def test_round_trip(self, stream, head, classes):
    output = os.path.join(self.tmp, f'{stream}_{head}', 'model.ckpt')
    summary = inflation.inflate_checkpoint(
        self.source, output, stream, head, head_init='normal'
    )
    self.assertRegex(
        summary.line(),
        r'trunk kernels: 37 to t=1, 19 to t=3, ' r'1 to t=7; head: ' + head,
    )
    names = {n for n, _ in tf.train.list_variables(output)}
    self.assertEqual(
        names, set(checkpoints.release_inventory(stream, num_classes=classes))
    )
    loaded = checkpoints.load_model(output)  # Strict, layout from the names.
    self.assertEqual(loaded.num_classes, classes)
    inflated = inflation.inflate_tensors(
        self.slim, stream, head, head_init='normal'
    )
    restored = checkpoints.export_tensors(loaded, stream)
    self.assertEqual(set(restored), set(inflated))
    for name, value in inflated.items():
      self.assertAllEqual(restored[name], value, msg=name)
    # Identical outputs (on an early endpoint, to keep the test fast).
    loaded = checkpoints.load_model(output, final_endpoint='Mixed_4b')
    direct = inflation.inflate_model(
        self.slim, stream, head, head_init='normal', final_endpoint='Mixed_4b'
    )
    clip = (
        np.random.default_rng(2)
        .uniform(-1, 1, [1, 8, 32, 32, checkpoints.STREAM_CHANNELS[stream]])
        .astype(np.float32)
    )
    got, _ = loaded(clip, is_training=False)
    want, _ = direct(clip, is_training=False)
    self.assertAllEqual(got, want)

  def test_refuses_to_overwrite(self):
    output = os.path.join(self.tmp, 'twice', 'model.ckpt')
    inflation.inflate_checkpoint(self.source, output)
    with self.assertRaisesRegex(FileExistsError, 'already exists'):
      inflation.inflate_checkpoint(self.source, output)
    inflation.inflate_checkpoint(self.source, output, 'flow', overwrite=True)
    self.assertEqual(
        checkpoints.detect_layout(
            n for n, _ in tf.train.list_variables(output)
        ),
        'flow',
    )

  def test_partial_slim_checkpoint(self):
    tensors = dict(self.slim)
    del tensors['InceptionV1/Mixed_3b/Branch_3/Conv2d_0b_1x1/weights']
    source = self._write('partial', tensors)
    with self.assertRaisesRegex(
        checkpoints.CheckpointError,
        r'1 missing from the checkpoint:\n'
        r'    InceptionV1/Mixed_3b/Branch_3/Conv2d_0b_1x1/weights',
    ):
      inflation.inflate_checkpoint(source, os.path.join(self.tmp, 'x', 'm'))

  def test_resnet_checkpoint(self):
    source = self._write(
        'resnet',
        {
            'resnet_v1_50/conv1/weights': np.zeros([7, 7, 3, 64], np.float32),
            'resnet_v1_50/conv1/BatchNorm/gamma': np.zeros([64], np.float32),
        },
    )
    with self.assertRaisesRegex(
        checkpoints.CheckpointError,
        r'(?s)looks like another architecture.*2 in the checkpoint but not in '
        r'the model:\n    resnet_v1_50/conv1/BatchNorm/gamma\n'
        r'    resnet_v1_50/conv1/weights',
    ):
      inflation.inflate_checkpoint(source, os.path.join(self.tmp, 'x', 'm'))

  def test_wrong_channel_count(self):
    tensors = dict(self.slim)
    tensors['InceptionV1/Conv2d_1a_7x7/weights'] = np.zeros(
        [7, 7, 2, 64], np.float32
    )
    source = self._write('two_channels', tensors)
    with self.assertRaisesRegex(
        checkpoints.CheckpointError,
        r'(?s)its first conv takes 2 input channels.*'
        r'InceptionV1/Conv2d_1a_7x7/weights: checkpoint \[7, 7, 2, 64\], '
        r'model \[7, 7, 3, 64\]',
    ):
      inflation.inflate_checkpoint(source, os.path.join(self.tmp, 'x', 'm'))

  def test_unknown_option(self):
    with self.assertRaisesRegex(
        ValueError,
        "Unknown `flow_init` 'mean'; valid values are average, "
        'tsn, first_two, random',
    ):
      inflation.inflate_tensors(self.slim, 'flow', flow_init='mean')

  def test_command(self):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
    output = os.path.join(self.tmp, 'command', 'model.ckpt')
    command = [
        sys.executable,
        os.path.join(_HERE, 'inflate.py'),
        f'--source={self.source}',
        f'--output={output}',
        '--stream=flow',
        '--num_classes=51',
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertIn(f'-> {output} (flow stream', result.stdout)
    self.assertEqual(checkpoints.load_model(output).num_classes, 51)
    missing = subprocess.run(
        command[:2] + [f'--source={self.tmp}/none.ckpt'],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    self.assertEqual(missing.returncode, 1)
    self.assertRegex(
        missing.stderr,
        r'(?m)^inflate.py: error: No checkpoint at .*'
        'Run `python fetch_inception_v1.py` to download it.',
    )
    self.assertNotIn('Traceback', missing.stderr)


if __name__ == '__main__':
  tf.test.main()
