"""Training and fine-tuning I3D by the paper's recipe, on tf.distribute.

The model, optimiser and checkpoints are the paper's and the release's:

  * Starting point: any release-format checkpoint (checkpoints.restore), or
    random initialisation (Sonnet's defaults, as the release's *_scratch
    models). When the checkpoint's class count differs from the config's,
    every tensor but the Logits layer is restored and the new Logits layer
    starts at zero (weights and bias): the first predictions are uniform
    (loss = log N) and the first gradients reach only the head, so the
    pretrained features are not hit by a random head's large errors.
  * Modes (the paper's Table 4): 'full' trains every variable with BatchNorm
    in training mode; 'fixed' trains only the Logits layer and runs the rest
    in test mode, so its weights and BatchNorm statistics do not change.
  * BatchNorm moving statistics use decay 0.999 and continue from the
    restored ones (checkpoints.assign sets Sonnet 2's EMA `hidden` and
    `counter` so the debiased average equals the restored value).
  * Dropout keep probability 0.5 before the logits, with stateless masks
    seeded by (seed, step) so a resumed run draws the same masks.
  * SGD with momentum 0.9 (TF1's MomentumOptimizer: a <- 0.9 a + g;
    w <- w - lr a) and weight decay as TF-slim's l2_regularizer added to the
    loss: weight_decay * sum(||w||^2) / 2 over the convolution kernels.
  * Piecewise-constant learning rate (training_configs).
  * Mixed precision (Config.mixed_precision): the convolutions in bfloat16
    or float16, the variables, BatchNorm, logits and loss in float32
    (i3d.InceptionI3d compute_dtype); float16 with DynamicLossScale.

Distribution: a Trainer runs on one device, on tf.distribute's
MirroredStrategy (all local devices) or MultiWorkerMirroredStrategy (several
machines, from TF_CONFIG). Variables are replica-local copies kept equal by
all-reducing the gradients (Sonnet's Replicator scheme), which leaves
BatchNorm statistics per replica, like the original; `cross_replica_bn` uses
Sonnet's CrossReplicaBatchNorm instead.

Checkpoints: a tf.train.CheckpointManager in `workdir/checkpoints` saves the
step, the variables and the momentum slots every `checkpoint_every` steps and
at exit, including on SIGINT and SIGTERM (the run stops after the current
step). TensorFlow writes the files under temporary names and the manager
lists a checkpoint only once it is complete, so a run killed at any moment
resumes from the last complete one. The data position is the step itself:
`make_dataset(start_step)` must return the batches for steps start_step,
start_step + 1, ... (see `step_seed`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import time
from typing import Callable, List, Optional, Tuple

from absl import logging
import numpy as np
import sonnet as snt
import tensorflow as tf
from tensorflow.core.framework import summary_pb2
import tqdm

import assets
import checkpoints
import datasets
import fileio
import i3d
import pipeline
import training_configs

Config = training_configs.Config
MakeDataset = Callable[[int], tf.data.Dataset]

CHECKPOINT_SUBDIR = 'checkpoints'
EXPORT_SUBDIR = 'export'
LABEL_MAP_NAME = 'label_map.txt'
# TensorBoard's scalars plugin reads events tagged with this metadata.
_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name='scalars')
)


def step_seed(seed: int, step) -> tf.Tensor:
  """The int32 [2] stateless seed of one step's randomness."""
  return tf.stack([tf.constant(seed, tf.int32), tf.cast(step, tf.int32)])


def make_strategy(kind: str) -> tf.distribute.Strategy:
  """'default' (one device), 'mirrored' (local devices) or 'multi_worker'."""
  if kind == 'default':
    return tf.distribute.get_strategy()
  if kind == 'mirrored':
    return tf.distribute.MirroredStrategy()
  if kind == 'multi_worker':
    return tf.distribute.MultiWorkerMirroredStrategy()
  raise ValueError(
      f'Unknown `strategy` {kind!r}; valid values are '
      f'{", ".join(training_configs.STRATEGIES)}.'
  )


@contextlib.contextmanager
def variable_scope(strategy: tf.distribute.Strategy):
  """Creates variables under `strategy` as replica-local copies.

  Every variable is SyncOnRead with ONLY_FIRST_REPLICA aggregation, as in
  Sonnet's Replicator: replicas apply the same all-reduced update, so their
  copies stay equal; BatchNorm statistics stay per replica.
  """
  with strategy.scope():
    if isinstance(
        strategy,
        (
            tf.distribute.MirroredStrategy,
            tf.distribute.MultiWorkerMirroredStrategy,
        ),
    ):
      with tf.variable_creator_scope(_replica_local_creator):
        yield
    else:
      yield


def _replica_local_creator(next_creator, **kwargs) -> tf.Variable:
  if kwargs['synchronization'] == tf.VariableSynchronization.AUTO:
    kwargs['synchronization'] = tf.VariableSynchronization.ON_READ
    if kwargs['aggregation'] == tf.VariableAggregation.NONE:
      kwargs['aggregation'] = tf.VariableAggregation.ONLY_FIRST_REPLICA
    if kwargs['trainable'] is None:
      kwargs['trainable'] = True
  return next_creator(**kwargs)


_COMPUTE_DTYPES = {'off': None, 'bfloat16': tf.bfloat16, 'float16': tf.float16}


def compute_dtype(mixed_precision: str) -> Optional[tf.DType]:
  """The i3d compute dtype of a Config.mixed_precision value.

  Raises:
    ValueError: an unknown value, or float16 on a machine without a GPU:
      TensorFlow has no CPU float16 kernel for MaxPool3D, and runs CPU
      float16 convolutions through a slow generic fallback.
  """
  if mixed_precision not in _COMPUTE_DTYPES:
    raise ValueError(
        f'Unknown `mixed_precision` {mixed_precision!r}; valid values are '
        f'{", ".join(_COMPUTE_DTYPES)}.'
    )
  if mixed_precision == 'float16' and not tf.config.list_physical_devices(
      'GPU'
  ):
    raise ValueError(
        "`mixed_precision` 'float16' needs a GPU, and none is visible: "
        "TensorFlow has no CPU float16 kernel for MaxPool3D; use 'bfloat16' "
        'on CPUs.'
    )
  return _COMPUTE_DTYPES[mixed_precision]


class DynamicLossScale:
  """Dynamic loss scaling for float16 training.

  The loss is multiplied by `scale` before the gradients are taken, so small
  float16 gradients do not flush to zero, and the gradients are divided by
  it again. A step whose gradients overflow (inf or NaN) is skipped and
  halves the scale; `period` finite steps in a row double it (the scheme of
  tf.keras.mixed_precision.LossScaleOptimizer). The state is checkpointed
  with the run, so a resumed run continues with the same scale.
  """

  def __init__(self, initial: float = 2.0**15, period: int = 2000):
    self.scale = tf.Variable(
        initial, dtype=tf.float32, trainable=False, name='loss_scale'
    )
    self.good_steps = tf.Variable(
        0, dtype=tf.int64, trainable=False, name='loss_scale_good_steps'
    )
    self.period = period

  def unscale(self, grads) -> Tuple[List[tf.Tensor], tf.Tensor]:
    """(grads / scale, whether every one of them is finite)."""
    grads = [g / self.scale for g in grads]
    finite = tf.reduce_all(
        tf.stack([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
    )
    return grads, finite

  def update(self, finite: tf.Tensor) -> None:
    """Halves the scale after an overflow; doubles it every `period` steps."""
    grow = tf.logical_and(finite, self.good_steps + 1 >= self.period)
    self.scale.assign(
        tf.where(
            finite,
            tf.where(grow, self.scale * 2.0, self.scale),
            self.scale / 2.0,
        )
    )
    self.good_steps.assign(
        tf.where(
            tf.logical_and(finite, tf.logical_not(grow)),
            self.good_steps + 1,
            tf.constant(0, tf.int64),
        )
    )


def build_model(
    num_classes: int,
    cross_replica_bn: bool = False,
    dtype: Optional[tf.DType] = None,
) -> i3d.InceptionI3d:
  """An InceptionI3d up to Logits: cross-replica BatchNorm, compute dtype."""
  model = i3d.InceptionI3d(
      num_classes=num_classes, final_endpoint='Logits', compute_dtype=dtype
  )
  if cross_replica_bn:
    for unit in model.units.values():
      if unit.batch_norm is None:
        continue
      with tf.name_scope(unit.name_scope.name):
        unit.batch_norm = snt.distribute.CrossReplicaBatchNorm(
            create_scale=False,
            create_offset=True,
            moving_mean=snt.ExponentialMovingAverage(
                i3d.BN_DECAY, name='moving_mean'
            ),
            moving_variance=snt.ExponentialMovingAverage(
                i3d.BN_DECAY, name='moving_variance'
            ),
            eps=i3d.BN_EPS,
            name='batch_norm',
        )
  return model


def initialize(
    model: i3d.InceptionI3d, stream: str, init_checkpoint: str = ''
) -> str:
  """Creates `model`'s variables and fills them from a starting point.

  Args:
    model: an unbuilt InceptionI3d with the wanted num_classes.
    stream: 'rgb' or 'flow' (3 or 2 input channels).
    init_checkpoint: a release-format checkpoint prefix, or '' for Sonnet's
      random initialisation.

  Returns:
    A sentence saying what was restored, for the log.

  Raises:
    checkpoints.CheckpointError: the checkpoint is unreadable, or does not
      fit the stream's input channels.
  """
  channels = assets.STREAM_CHANNELS[stream]
  model.create_variables(channels)
  if not init_checkpoint:
    return 'random initialisation (Sonnet defaults)'
  reader = checkpoints.open_checkpoint(init_checkpoint)
  shapes = reader.get_variable_to_shape_map()
  layout = checkpoints.detect_layout(shapes)
  head = {
      checkpoints.get_layout(layout).prefix + i3d.LOGITS_UNIT + suffix
      for suffix in ('/conv_3d/w', '/conv_3d/b')
  }
  names = checkpoints.variable_map(model, layout)
  same_head = all(tuple(shapes.get(n, ())) == names[n][1] for n in head)
  if same_head:
    checkpoints.restore(model, init_checkpoint, layout)
    return f'all of {init_checkpoint} ({layout} layout)'
  tensors = {}
  for name, (variable, shape) in names.items():
    if name in head:
      tensors[name] = np.zeros(shape, np.float32)
    elif name in shapes:
      tensors[name] = checkpoints.read_tensor(reader, init_checkpoint, name)
  checkpoints.assign(model, tensors, layout, source=init_checkpoint)
  old = shapes.get(sorted(head)[-1], ['?'])[-1]
  return (
      f'{init_checkpoint} ({layout} layout) but its {old}-class Logits; '
      f'the new {model.num_classes}-class Logits starts at zero'
  )


def trainable_variables(
    model: i3d.InceptionI3d, mode: str
) -> Tuple[tf.Variable, ...]:
  """What `mode` trains: everything ('full') or the Logits layer ('fixed')."""
  if mode == 'full':
    return tuple(model.trainable_variables)
  if mode == 'fixed':
    return tuple(model.logits_unit.trainable_variables)
  raise ValueError(
      f'Unknown `mode` {mode!r}; valid values are '
      f'{", ".join(training_configs.MODES)}.'
  )


def weight_decay_loss(variables, scale: float) -> tf.Tensor:
  """TF-slim's l2_regularizer: scale * sum(||w||^2) / 2 over conv kernels."""
  kernels = [v for v in variables if v.shape.rank == 5]
  if not kernels or not scale:
    return tf.constant(0.0)
  return scale * tf.add_n([tf.nn.l2_loss(v) for v in kernels])


def learning_rate(step, boundaries, values) -> tf.Tensor:
  """values[i] for boundaries[i-1] <= step < boundaries[i]."""
  step = tf.cast(step, tf.int64)
  lr = tf.constant(values[0], tf.float32)
  for boundary, value in zip(boundaries, values[1:]):
    lr = tf.where(step >= boundary, tf.constant(value, tf.float32), lr)
  return lr


def make_dataset_fn(config: Config, data: datasets.Dataset) -> MakeDataset:
  """The config's training input, as `Trainer.fit` takes it.

  Args:
    config: gives the stream, batch, frames, crop, flip, seed and cache.
    data: the labelled training examples.

  Returns:
    start_step -> pipeline.train_dataset batches for steps start_step,
    start_step + 1, ... (a stream position of start_step * batch_size).
  """

  def make(start_step: int) -> tf.data.Dataset:
    return pipeline.train_dataset(
        data,
        config.stream,
        config.batch_size,
        num_frames=config.num_frames,
        seed=config.seed,
        cache_dir=config.cache_dir or None,
        crop_size=config.crop_size,
        flip=config.flip,
        start_position=start_step * config.batch_size,
    )

  return make


@dataclasses.dataclass
class StepResult:
  loss: float
  accuracy: float
  learning_rate: float


class Trainer:
  """Builds the model, optimiser state and checkpoints for one config.

  Usage:

    trainer = training.Trainer(config, workdir)
    trainer.fit(make_dataset)              # resumes if workdir has a run
    trainer.export(label_names)            # release-format + label map
  """

  def __init__(
      self,
      config: Config,
      workdir: str,
      strategy: Optional[tf.distribute.Strategy] = None,
      use_tf_function: bool = True,
  ):
    """Builds everything; nothing is restored from workdir until `fit`.

    Args:
      config: the run's settings.
      workdir: folder of the training checkpoints, TensorBoard events and
        the export.
      strategy: overrides the one config.strategy names.
      use_tf_function: trace the step with tf.function (fast per step); False
        runs it eagerly on one replica, which saves the tracing time of a
        run of a step or two (tests, debugging).
    """
    training_configs.check(config)
    self.config = config
    self.workdir = workdir
    self.strategy = strategy or make_strategy(config.strategy)
    replicas = self.strategy.num_replicas_in_sync
    if config.batch_size % replicas:
      raise ValueError(
          f'`batch_size` {config.batch_size} must be a multiple of the '
          f'{replicas} replicas.'
      )
    tf.random.set_seed(config.seed)
    dtype = compute_dtype(config.mixed_precision)
    with variable_scope(self.strategy):
      self.model = build_model(
          config.num_classes, config.cross_replica_bn, dtype
      )
      if config.cross_replica_bn:
        # CrossReplicaBatchNorm may only be called in a replica context.
        channels = assets.STREAM_CHANNELS[config.stream]
        self.strategy.run(lambda: self.model.create_variables(channels))
      self.init_message = initialize(
          self.model, config.stream, config.init_checkpoint
      )
      self.variables = trainable_variables(self.model, config.mode)
      with tf.name_scope('momentum'):
        self.slots = [
            tf.Variable(
                tf.zeros_like(v),
                trainable=False,
                name=v.name.split(':')[0].replace('/', '_'),
            )
            for v in self.variables
        ]
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
      self.loss_scale = DynamicLossScale() if dtype == tf.float16 else None
    state = dict(model=self.model, slots=self.slots, step=self.step)
    if self.loss_scale is not None:
      state['loss_scale'] = self.loss_scale.scale
      state['loss_scale_good_steps'] = self.loss_scale.good_steps
    self.checkpoint = tf.train.Checkpoint(**state)
    self.manager = tf.train.CheckpointManager(
        self.checkpoint,
        os.path.join(workdir, CHECKPOINT_SUBDIR),
        max_to_keep=config.keep_checkpoints,
    )
    # Several replicas always trace: eager replica threads may issue their
    # collectives in different orders.
    traced = use_tf_function or replicas > 1
    self._train_step = (
        tf.function(self._distributed_step)
        if traced
        else self._distributed_step
    )

  # -- one step --------------------------------------------------------------

  def _replica_step(self, clips: tf.Tensor, labels: tf.Tensor, step):
    config = self.config
    ctx = tf.distribute.get_replica_context()
    replicas = ctx.num_replicas_in_sync
    seed = step_seed(config.seed, step) + tf.stack(
        [0, tf.cast(ctx.replica_id_in_sync_group, tf.int32) * 1_000_003]
    )
    with tf.GradientTape() as tape:
      logits, _ = self.model(
          clips,
          is_training=config.mode == 'full' and not config.freeze_bn,
          dropout_keep_prob=config.dropout_keep_prob,
          dropout_seed=seed,
      )
      xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
      # Sums over the replicas to the global-batch mean plus one L2 term.
      loss = (
          tf.reduce_sum(xent) / config.batch_size
          + weight_decay_loss(self.variables, config.weight_decay) / replicas
      )
      scaled = loss
      if self.loss_scale is not None:
        scaled = loss * self.loss_scale.scale
    grads = tape.gradient(scaled, self.variables)
    grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
    lr = learning_rate(step, config.lr_boundaries, config.lr_values)
    if self.loss_scale is None:
      for grad, var, slot in zip(grads, self.variables, self.slots):
        slot.assign(config.momentum * slot + grad)
        var.assign_sub(lr * slot)
    else:
      grads, finite = self.loss_scale.unscale(grads)
      for grad, var, slot in zip(grads, self.variables, self.slots):
        # An overflowing step leaves every variable and slot as it was.
        new_slot = tf.where(finite, config.momentum * slot + grad, slot)
        slot.assign(new_slot)
        var.assign_sub(tf.where(finite, lr * new_slot, tf.zeros_like(var)))
      self.loss_scale.update(finite)
    correct = tf.reduce_sum(
        tf.cast(
            tf.equal(tf.argmax(logits, -1, output_type=labels.dtype), labels),
            tf.float32,
        )
    )
    return loss, correct, lr

  def _distributed_step(self, clips, labels):
    step = self.step.read_value()
    loss, correct, lr = self.strategy.run(
        self._replica_step, (clips, labels, step)
    )
    sum_ = tf.distribute.ReduceOp.SUM
    loss = self.strategy.reduce(sum_, loss, axis=None)
    correct = self.strategy.reduce(sum_, correct, axis=None)
    lr = self.strategy.reduce(tf.distribute.ReduceOp.MEAN, lr, axis=None)
    self.step.assign_add(1)
    return loss, correct / self.config.batch_size, lr

  def train_step(self, clips, labels) -> StepResult:
    """One optimiser step on a global batch (a distributed value or tensors).

    Returns:
      The loss (cross-entropy + L2), batch accuracy and learning rate used.
    """
    loss, accuracy, lr = self._train_step(clips, labels)
    return StepResult(float(loss), float(accuracy), float(lr))

  # -- the loop --------------------------------------------------------------

  def restore_latest(self) -> int:
    """Restores the newest complete checkpoint in workdir; returns its step."""
    latest = self.manager.latest_checkpoint
    if latest:
      self.checkpoint.restore(latest).assert_existing_objects_matched()
      logging.info('Resumed from %s at step %d.', latest, int(self.step))
    else:
      logging.info('Starting from %s.', self.init_message)
    return int(self.step.numpy())

  def fit(
      self,
      make_dataset: MakeDataset,
      progress: bool = True,
      save_on_exit: bool = True,
      on_step: Optional[Callable[[int, StepResult], None]] = None,
  ) -> List[StepResult]:
    """Trains to config.steps, resuming from workdir's latest checkpoint.

    Args:
      make_dataset: start_step -> a dataset of global (clips, labels)
        batches for steps start_step, start_step + 1, ...; clips float32
        [batch, frames, size, size, channels] in [-1, 1], labels int32.
      progress: show a tqdm bar on stderr.
      save_on_exit: write a checkpoint when leaving, normally or not.
      on_step: called after each step with (step, result), e.g. for tests.

    Returns:
      The results of the steps run in this call.
    """
    config = self.config
    start = self.restore_latest()
    results: List[StepResult] = []
    if start >= config.steps:
      return results
    dataset = self.strategy.experimental_distribute_dataset(make_dataset(start))
    writer = None
    if self.strategy.extended.should_checkpoint:
      writer = tf.summary.create_file_writer(
          os.path.join(self.workdir, 'tensorboard')
      )
    stop = _StopFlag()
    bar = tqdm.tqdm(
        total=config.steps,
        initial=start,
        disable=not progress,
        desc='train',
        unit='step',
        dynamic_ncols=True,
    )
    tick, tick_step = time.perf_counter(), start
    try:
      with stop.installed():
        for clips, labels in dataset:
          result = self.train_step(clips, labels)
          step = int(self.step.numpy())
          results.append(result)
          bar.update(1)
          bar.set_postfix(
              loss=f'{result.loss:.3f}', lr=f'{result.learning_rate:g}'
          )
          if on_step:
            on_step(step, result)
          if step % config.log_every == 0 or step == config.steps:
            now = time.perf_counter()
            rate = (
                (step - tick_step) * config.batch_size / max(now - tick, 1e-9)
            )
            tick, tick_step = now, step
            self._log(writer, step, result, rate)
          if step % config.checkpoint_every == 0 and step < config.steps:
            self._save()
          if step >= config.steps or stop.requested:
            break
      if stop.requested:
        logging.warning(
            'Stopping at step %d on %s.', int(self.step), stop.requested
        )
    finally:
      bar.close()
      if save_on_exit:
        self._save()
      if writer is not None:
        writer.flush()
    return results

  def _save(self) -> None:
    if not self.strategy.extended.should_checkpoint:
      return  # Only the chief of a multi-worker run writes.
    step = int(self.step.numpy())
    latest = self.manager.latest_checkpoint
    if latest and latest.endswith(f'-{step}'):
      return
    path = self.manager.save(checkpoint_number=step)
    logging.info('Saved %s.', path)

  def _log(self, writer, step: int, result: StepResult, rate: float) -> None:
    logging.info(
        'step %d: loss %.4f, accuracy %.3f, lr %g, %.2f clips/s',
        step,
        result.loss,
        result.accuracy,
        result.learning_rate,
        rate,
    )
    if writer is None:
      return
    with writer.as_default(step=step):
      for tag, value in (
          ('loss', result.loss),
          ('accuracy', result.accuracy),
          ('learning_rate', result.learning_rate),
          ('clips_per_s', rate),
      ):
        # tf.summary.scalar would need the tensorboard package; this writes
        # the same event (the scalars plugin's metadata) with TF alone.
        tf.summary.write(
            tag, tf.constant(value, tf.float32), metadata=_SCALAR_METADATA
        )

  # -- the result ------------------------------------------------------------

  def export(self, label_names: List[str], folder: Optional[str] = None) -> str:
    """Saves the model with the release's names, and its label map.

    Writes `<folder>/model.ckpt.{index,data-*}` in the release's layout for
    the stream (RGB/inception_i3d/... or Flow/inception_i3d/...) and
    `<folder>/label_map.txt`, both atomically.

    Returns:
      The checkpoint prefix, for `--rgb_checkpoint`/`--flow_checkpoint`.
    """
    if len(label_names) != self.config.num_classes:
      raise ValueError(
          f'`label_names` has {len(label_names)} names but the model has '
          f'{self.config.num_classes} classes.'
      )
    folder = folder or os.path.join(self.workdir, EXPORT_SUBDIR)
    prefix = os.path.join(folder, 'model.ckpt')
    if not self.strategy.extended.should_checkpoint:
      return prefix  # Only the chief of a multi-worker run writes.
    os.makedirs(folder, exist_ok=True)
    checkpoints.save(self.model, prefix, self.config.stream)
    fileio.write_bytes(
        os.path.join(folder, LABEL_MAP_NAME),
        ''.join(f'{name}\n' for name in label_names).encode('utf-8'),
    )
    return prefix


class _StopFlag:
  """Turns SIGINT/SIGTERM into a request to stop after the current step."""

  def __init__(self):
    self.requested: Optional[str] = None

  @contextlib.contextmanager
  def installed(self):
    import threading  # pylint: disable=g-import-not-at-top

    if threading.current_thread() is not threading.main_thread():
      yield
      return
    previous = {}

    def handler(signum, frame):  # pylint: disable=unused-argument
      if self.requested:  # A second signal: stop now.
        signal.signal(signum, previous[signum])
        raise KeyboardInterrupt
      self.requested = signal.Signals(signum).name

    for signum in (signal.SIGINT, signal.SIGTERM):
      previous[signum] = signal.signal(signum, handler)
    try:
      yield
    finally:
      for signum, old in previous.items():
        signal.signal(signum, old)
