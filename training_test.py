"""Tests of training.py and training_configs.py on tiny inputs.

The model runs at its smallest size that reaches Logits (i3d.min_input_size:
9 frames of 193x193), batch 2, for a few steps, from synthetic checkpoints
with the release's names. Two logical CPU devices are configured before
TensorFlow starts, so MirroredStrategy has two replicas to compare with one.
"""

import os
import signal
import subprocess
import sys
import tempfile

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices('CPU')[0],
    [tf.config.LogicalDeviceConfiguration()] * 2,
)

import checkpoints  # pylint: disable=g-import-not-at-top
import i3d
import testing
import training
import training_configs

_ROOT = os.path.dirname(os.path.abspath(__file__))
FRAMES, SIZE = i3d.min_input_size('Logits')
CLASSES = 3


def tiny_config(**changes) -> training_configs.Config:
  base = dict(
      num_classes=CLASSES,
      batch_size=2,
      num_frames=FRAMES,
      crop_size=SIZE,
      steps=3,
      lr_boundaries=(),
      lr_values=(0.01,),
      dropout_keep_prob=1.0,
      checkpoint_every=100,
      log_every=1,
  )
  base.update(changes)
  return training_configs.Config(**base)


def batch_at(step: int, batch: int = 2):
  """A deterministic batch for `step`: the in-memory source of these tests."""
  rng = np.random.default_rng([7, step])
  clips = rng.uniform(-1, 1, (batch, FRAMES, SIZE, SIZE, 3)).astype(np.float32)
  labels = (np.arange(batch) + step) % CLASSES
  return clips, labels.astype(np.int32)


def make_dataset(start: int) -> tf.data.Dataset:
  return (
      tf.data.Dataset.range(start, 1_000)
      .map(
          lambda s: tf.numpy_function(batch_at, [s], (tf.float32, tf.int32)),
      )
      .map(
          lambda x, y: (
              tf.ensure_shape(x, [2, FRAMES, SIZE, SIZE, 3]),
              tf.ensure_shape(y, [2]),
          )
      )
  )


def make_trainer(config, workdir, **kwargs) -> training.Trainer:
  """Eager steps: a test runs too few of them to repay tf.function's tracing."""
  return training.Trainer(config, workdir, use_tf_function=False, **kwargs)


def values(model) -> dict:
  return {v.name + str(i): v.numpy() for i, v in enumerate(model.variables)}


class TrainingTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp(prefix='TrainingTest_')
    cls.ckpt = os.path.join(cls.tmp, 'rgb', 'model.ckpt')
    checkpoints.write_synthetic(cls.ckpt, 'rgb', seed=3)

  def workdir(self) -> str:
    return tempfile.mkdtemp(dir=self.tmp)

  def test_full_step_lowers_loss_and_moves_bn_stats_only_in_training(self):
    trainer = make_trainer(
        tiny_config(init_checkpoint=self.ckpt), self.workdir()
    )
    clips, labels = batch_at(0)
    bn = trainer.model.units['Conv3d_1a_7x7'].batch_norm
    mean_before = bn.moving_mean.value.numpy()

    def loss():
      logits, _ = trainer.model(clips, is_training=True)
      return float(
          tf.reduce_mean(
              tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
          )
      )

    before = loss()  # Training mode: this updates the statistics once too.
    moved = bn.moving_mean.value.numpy()
    self.assertGreater(np.abs(moved - mean_before).max(), 1e-6)
    # Decay 0.999, continuing from the restored statistic.
    conv = trainer.model.units['Conv3d_1a_7x7'].conv_3d(clips)
    batch_mean = np.reshape(
        tf.reduce_mean(conv, [0, 1, 2, 3]).numpy(), moved.shape
    )
    self.assertAllClose(
        moved, 0.999 * mean_before + 0.001 * batch_mean, rtol=1e-4, atol=1e-6
    )
    trainer.model(clips, is_training=False)
    self.assertAllEqual(bn.moving_mean.value.numpy(), moved)
    trainer.train_step(clips, labels)
    self.assertLess(loss(), before - 1e-3)

  def test_fixed_mode_trains_only_the_new_zero_head(self):
    trainer = make_trainer(
        tiny_config(
            init_checkpoint=self.ckpt,
            mode='fixed',
            lr_values=(0.5,),
            dropout_keep_prob=0.5,
        ),
        self.workdir(),
    )
    head = trainer.model.logits_unit.conv_3d
    self.assertAllEqual(head.w.numpy(), np.zeros([1, 1, 1, 1024, CLASSES]))
    self.assertAllEqual(head.b.numpy(), np.zeros([CLASSES]))
    want = checkpoints.synthetic_tensors('rgb', seed=3)
    unit = trainer.model.units['Mixed_4c/Branch_1/Conv3d_0b_3x3']
    prefix = 'RGB/inception_i3d/Mixed_4c/Branch_1/Conv3d_0b_3x3/'
    self.assertAllEqual(unit.conv_3d.w.numpy(), want[prefix + 'conv_3d/w'])
    self.assertAllEqual(
        np.reshape(unit.batch_norm.moving_mean.value.numpy(), [-1]),
        want[prefix + 'batch_norm/moving_mean'],
    )

    before = values(trainer.model)
    trainer.train_step(*batch_at(0))
    after = values(trainer.model)
    head_names = {
        v.name + str(i)
        for i, v in enumerate(trainer.model.variables)
        if v.ref() in {w.ref() for w in trainer.model.logits_unit.variables}
    }
    self.assertLen(head_names, 2)
    for name in before:
      if name in head_names:
        self.assertGreater(np.abs(after[name] - before[name]).max(), 0, name)
      else:
        self.assertAllEqual(after[name], before[name], msg=name)

  def test_frozen_bn_trains_the_trunk_but_keeps_its_statistics(self):
    trainer = make_trainer(
        tiny_config(init_checkpoint=self.ckpt, freeze_bn=True), self.workdir()
    )
    unit = trainer.model.units['Conv3d_1a_7x7']
    before = [
        unit.conv_3d.w.numpy(),
        unit.batch_norm.offset.numpy(),
        unit.batch_norm.moving_mean.value.numpy(),
        unit.batch_norm.moving_variance.value.numpy(),
    ]
    trainer.train_step(*batch_at(0))
    trainer.train_step(*batch_at(1))  # The zero head passes no gradient yet.
    self.assertGreater(np.abs(unit.conv_3d.w.numpy() - before[0]).max(), 0)
    self.assertGreater(
        np.abs(unit.batch_norm.offset.numpy() - before[1]).max(), 0
    )
    self.assertAllEqual(unit.batch_norm.moving_mean.value.numpy(), before[2])
    self.assertAllEqual(
        unit.batch_norm.moving_variance.value.numpy(), before[3]
    )

  def test_interrupted_run_resumes_to_the_same_variables(self):
    config = tiny_config(
        init_checkpoint=self.ckpt,
        dropout_keep_prob=0.5,
        steps=2,
        lr_boundaries=(1,),
        lr_values=(0.01, 0.001),
    )
    straight = make_trainer(config, self.workdir())
    straight.fit(make_dataset, progress=False)

    workdir = self.workdir()
    first = make_trainer(config, workdir)

    def kill_after_first(step, result):
      del result
      if step == 1:
        os.kill(os.getpid(), signal.SIGTERM)

    done = first.fit(make_dataset, progress=False, on_step=kill_after_first)
    self.assertLen(done, 1)
    self.assertEqual(
        os.path.basename(first.manager.latest_checkpoint), 'ckpt-1'
    )
    resumed = make_trainer(config, workdir)
    self.assertLen(resumed.fit(make_dataset, progress=False), 1)
    self.assertEqual(int(resumed.step.numpy()), 2)
    want, got = values(straight.model), values(resumed.model)
    for name in want:
      self.assertAllClose(got[name], want[name], rtol=1e-5, atol=1e-6, msg=name)
    for a, b in zip(straight.slots, resumed.slots):
      self.assertAllClose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)

  def test_mirrored_two_replicas_match_one_device(self):
    # Per-replica BatchNorm (the default) sees one clip per replica, so its
    # statistics agree with one device's only when the two clips are equal.
    # (The cross_replica_bn=True variant, with two different clips, passed
    # too; it is left out because each two-replica trace costs a minute.)
    config = tiny_config(init_checkpoint=self.ckpt)
    clips, labels = batch_at(0)
    clips = np.stack([clips[0], clips[0]])
    one = make_trainer(config, self.workdir())
    start = values(one.model)
    one.train_step(clips, labels)
    strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
    two = make_trainer(config, self.workdir(), strategy=strategy)
    self.assertEqual(strategy.num_replicas_in_sync, 2)
    data = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors((clips, labels))
    )
    two.train_step(*next(iter(data)))
    want, got = values(one.model), values(two.model)
    self.assertEqual(set(want), set(got))
    moved = [n for n in want if np.abs(want[n] - start[n]).max() > 1e-7]
    self.assertGreater(len(moved), len(want) // 2)
    for name in want:
      self.assertAllClose(got[name], want[name], rtol=1e-3, atol=1e-5, msg=name)

  def test_exported_model_is_classified_with_its_own_labels(self):
    trainer = make_trainer(
        tiny_config(init_checkpoint=self.ckpt, mode='fixed', lr_values=(1.0,)),
        self.workdir(),
    )
    trainer.train_step(*batch_at(0))
    prefix = trainer.export(['alpha', 'beta', 'gamma'])
    self.assertEqual(checkpoints.load_model(prefix).num_classes, CLASSES)
    clip = testing.write_video(
        os.path.join(self.tmp, 'v.mkv'), testing.level_frames(12)
    )
    run = subprocess.run(
        [
            sys.executable,
            os.path.join(_ROOT, 'classify_video.py'),
            f'--video={clip}',
            '--eval_type=rgb',
            f'--rgb_checkpoint={prefix}',
            f'--label_map={os.path.join(os.path.dirname(prefix), "label_map.txt")}',
            '--noprogress',
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    self.assertEqual(run.returncode, 0, run.stderr[-2000:])
    rows = run.stdout.split('Top classes and probabilities\n')[1].split('\n')
    self.assertCountEqual(
        [r.split(' ', 2)[2] for r in rows if r], ['alpha', 'beta', 'gamma']
    )

  def test_export_needs_one_name_per_class(self):
    trainer = make_trainer(tiny_config(), self.workdir())
    with self.assertRaisesRegex(ValueError, 'has 2 names but the model has 3'):
      trainer.export(['a', 'b'])

  def test_bfloat16_step_lowers_loss_with_float32_variables(self):
    trainer = make_trainer(
        tiny_config(init_checkpoint=self.ckpt, mixed_precision='bfloat16'),
        self.workdir(),
    )
    clips, labels = batch_at(0)

    def loss():
      logits, end_points = trainer.model(clips, is_training=True)
      self.assertEqual(end_points['Mixed_5c'].dtype, tf.bfloat16)
      self.assertEqual(logits.dtype, tf.float32)
      return float(
          tf.reduce_mean(
              tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
          )
      )

    before = loss()
    result = trainer.train_step(clips, labels)
    self.assertTrue(np.isfinite(result.loss))
    self.assertLess(loss(), before - 1e-3)
    state = list(trainer.model.variables) + list(trainer.slots)
    self.assertEqual(
        {v.dtype for v in state if v.dtype.is_floating}, {tf.float32}
    )
    # float16's loss scaling (float16 itself needs a GPU): an overflowing
    # step changes nothing, a finite one trains.
    # (The forward pass still moves the BatchNorm statistics.)
    trainer.loss_scale = training.DynamicLossScale(initial=np.inf)
    weights = [v.numpy() for v in trainer.variables]
    slots = [s.numpy() for s in trainer.slots]
    trainer.train_step(clips, labels)
    for old, var in zip(weights, trainer.variables):
      self.assertAllEqual(var.numpy(), old, var.name)
    for old, slot in zip(slots, trainer.slots):
      self.assertAllEqual(slot.numpy(), old)
    trainer.loss_scale = training.DynamicLossScale(initial=2.0**10)
    trainer.train_step(clips, labels)
    self.assertFalse(np.allclose(trainer.slots[0].numpy(), slots[0]))
    self.assertEqual(int(trainer.loss_scale.good_steps), 1)

  def test_bfloat16_logits_are_close_to_float32(self):
    # Measured: max |difference| 0.072 for logits of std 4.8 (1.5%).
    full = checkpoints.load_model(self.ckpt)
    mixed = checkpoints.load_model(self.ckpt, compute_dtype=tf.bfloat16)
    clip = batch_at(1, batch=1)[0]
    want = full(clip, is_training=False)[0].numpy()
    got = mixed(clip, is_training=False)[0].numpy()
    self.assertEqual(got.dtype, np.float32)
    self.assertLess(np.abs(got - want).max(), 0.05 * want.std())
    self.assertGreater(np.abs(got - want).max(), 0.0)  # It did run bfloat16.
    self.assertEqual(got.argmax(), want.argmax())

  def test_loss_scale_skips_overflow_and_grows_after_period(self):
    scale = training.DynamicLossScale(initial=8.0, period=2)
    grads, finite = scale.unscale([tf.constant([4.0, np.inf])])
    self.assertFalse(finite)
    scale.update(finite)
    self.assertEqual(float(scale.scale), 4.0)
    grads, finite = scale.unscale([tf.constant([4.0, -8.0])])
    self.assertAllEqual(grads[0], [1.0, -2.0])
    for _ in range(2):
      scale.update(finite)
    self.assertEqual(float(scale.scale), 8.0)
    self.assertEqual(int(scale.good_steps), 0)

  def test_float16_needs_a_gpu(self):
    if tf.config.list_physical_devices('GPU'):
      self.skipTest('A GPU is visible.')
    with self.assertRaisesRegex(ValueError, "'float16' needs a GPU"):
      training.compute_dtype('float16')

  def test_bad_mixed_precision(self):
    with self.assertRaisesRegex(
        ValueError, '`mixed_precision` must be one of off, bfloat16, float16'
    ):
      training_configs.get_config('default', ['mixed_precision=fp8'])


class ScheduleTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(
      (0, 0.1),
      (96_999, 0.1),
      (97_000, 0.01),
      (107_999, 0.01),
      (108_000, 0.001),
      (114_999, 0.001),
  )
  def test_kinetics_rgb_schedule(self, step, want):
    config = training_configs.get_config('kinetics_rgb')
    self.assertAllClose(
        training.learning_rate(step, config.lr_boundaries, config.lr_values),
        want,
    )

  @parameterized.parameters(
      (104_499, 0.01),
      (104_500, 0.001),
      (115_000, 0.1),
      (140_000, 0.01),
      (150_000, 0.001),
  )
  def test_kinetics_flow_restart_schedule(self, step, want):
    config = training_configs.get_config('kinetics_flow')
    self.assertEqual(config.steps, 155_000)
    self.assertAllClose(
        training.learning_rate(step, config.lr_boundaries, config.lr_values),
        want,
    )

  def test_weight_decay_is_slim_l2_over_kernels(self):
    w = tf.Variable(tf.fill([1, 1, 1, 2, 2], 2.0))
    b = tf.Variable(tf.fill([2], 5.0))
    self.assertAllClose(
        training.weight_decay_loss([w, b], 1e-7), 1e-7 * 16.0 / 2
    )


class ConfigTest(tf.test.TestCase, parameterized.TestCase):

  def test_overrides_are_typed(self):
    config = training_configs.get_config(
        'ucf101_finetune',
        ['steps=2000', 'lr_values=0.5,0.05', 'flip=false', 'mode=fixed'],
    )
    self.assertEqual(config.steps, 2000)
    self.assertEqual(config.lr_values, (0.5, 0.05))
    self.assertFalse(config.flip)
    self.assertEqual(config.num_classes, 101)

  def test_variants_derive_from_the_default(self):
    base = training_configs.Config()
    for name in training_configs.CONFIGS:
      config = training_configs.get_config(name)
      self.assertEqual(config.momentum, base.momentum)
      self.assertEqual(config.weight_decay, 1e-7)

  def test_unknown_config(self):
    with self.assertRaisesRegex(ValueError, "Unknown config 'nope'; valid"):
      training_configs.get_config('nope')

  def test_unknown_field(self):
    with self.assertRaisesRegex(ValueError, "Bad override 'stepz=3'"):
      training_configs.get_config('default', ['stepz=3'])

  def test_bad_value(self):
    with self.assertRaisesRegex(ValueError, "`steps` needs a int; got 'x'"):
      training_configs.get_config('default', ['steps=x'])

  def test_bad_mode(self):
    with self.assertRaisesRegex(ValueError, '`mode` must be one of full'):
      training_configs.get_config('default', ['mode=half'])

  def test_schedule_lengths_must_agree(self):
    with self.assertRaisesRegex(ValueError, 'one more entry'):
      training_configs.get_config('default', ['lr_values=0.1'])


if __name__ == '__main__':
  tf.test.main()
