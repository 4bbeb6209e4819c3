"""The 2D Inception-v1 that I3D is inflated from, with TF-slim's names.

This is TF-slim's `inception_v1` (GoogLeNet with BatchNorm, tensorflow/models
research/slim/nets/inception_v1.py) as a Sonnet 2 module. It is built from
I3D's own layer table (i3d.LAYER_SPECS) by dropping the time axis of every
kernel and stride, so the two networks cannot drift apart:

  I3D (i3d.py)                         2D Inception-v1 (this file)
  Conv3d_1a_7x7  [7,7,7] stride 2      Conv2d_1a_7x7  [7,7] stride 2
  MaxPool3d_2a_3x3 [1,3,3] / [1,2,2]   MaxPool_2a_3x3 [3,3] / 2
  Conv3d_2c_3x3  [3,3,3]               Conv2d_2c_3x3  [3,3]
  MaxPool3d_3a_3x3 [1,3,3] / [1,2,2]   MaxPool_3a_3x3 [3,3] / 2
  MaxPool3d_4a_3x3 [3,3,3] / 2         MaxPool_4a_3x3 [3,3] / 2
  MaxPool3d_5a_2x2 [2,2,2] / 2         MaxPool_5a_2x2 [2,2] / 2
  Mixed_*: 1x1x1 and 3x3x3 convs,      Mixed_*: 1x1 and 3x3 convs,
    Branch_3 [3,3,3] / 1 max pool        Branch_3 MaxPool_0a_3x3 [3,3] / 1
  Logits: [2,7,7] VALID avg pool,      Logits: AvgPool_0a_7x7 [7,7] VALID,
    dropout, Conv3d_0c_1x1 (+bias)       Dropout_0b, Conv2d_0c_1x1 (+bias),
                                         SpatialSqueeze

All convs and max pools are 'SAME'; only the logits average pool is 'VALID'.
Every conv but the logits one is conv (no bias) -> BatchNorm (offset, no
scale, eps 0.001, decay 0.9997, slim's `inception_arg_scope`) -> ReLU.

Checkpoint names (TF-slim), for the unit at I3D path P with 'Conv3d' read as
'Conv2d' (e.g. 'Mixed_3b/Branch_1/Conv2d_0b_3x3'):

  InceptionV1/P/weights                     [k, k, in, out]
  InceptionV1/P/BatchNorm/beta              [out]
  InceptionV1/P/BatchNorm/moving_mean       [out]
  InceptionV1/P/BatchNorm/moving_variance   [out]
  InceptionV1/Logits/Conv2d_0c_1x1/biases   [1001]  (the logits unit only,
                                                     which has no BatchNorm)

Slim has I3D's Mixed_5b quirk too: 'Mixed_5b/Branch_2/Conv2d_0a_3x3'.
ImageNet checkpoints have 1001 classes (class 0 is 'background').

Usage:

  model = inception_v1.load_model(
      'data/imagenet/inception_v1/inception_v1.ckpt')
  logits, end_points = model(images, is_training=False)  # images [B,H,W,3]
"""

from __future__ import annotations

import collections
from typing import Dict, Iterator, Mapping, Optional, Sequence, Tuple

from absl import logging
import numpy as np
import sonnet as snt
import tensorflow as tf

import checkpoints
import i3d

SCOPE = 'InceptionV1'
IMAGENET_CLASSES = 1001
IN_CHANNELS = 3
# slim's inception_arg_scope: batch_norm_decay and batch_norm_epsilon.
BN_DECAY = 0.9997
BN_EPS = 1e-3
LOGITS_POOL = i3d.LOGITS_POOL[1:]  # AvgPool_0a_7x7, VALID.
LOGITS_UNIT = i3d.LOGITS_UNIT.replace('Conv3d', 'Conv2d')
# Tensors a slim training checkpoint may carry besides the model's.
IGNORED_NAMES = ('global_step',)
FETCH_COMMAND = 'python fetch_inception_v1.py'

# Checkpoint name suffix of each role of checkpoints.unit_inventory.
_ROLE_SUFFIX = {
    'w': 'weights',
    'b': 'biases',
    'beta': 'BatchNorm/beta',
    'moving_mean': 'BatchNorm/moving_mean',
    'moving_variance': 'BatchNorm/moving_variance',
}


def name_2d(name: str) -> str:
  """The 2D name of an I3D layer, unit or endpoint name.

  'Conv3d_1a_7x7' -> 'Conv2d_1a_7x7', 'MaxPool3d_2a_3x3' -> 'MaxPool_2a_3x3',
  'Mixed_5b/Branch_2/Conv3d_0a_3x3' -> 'Mixed_5b/Branch_2/Conv2d_0a_3x3'.
  """
  return name.replace('Conv3d', 'Conv2d').replace('MaxPool3d', 'MaxPool')


VALID_ENDPOINTS = tuple(name_2d(n) for n in i3d.VALID_ENDPOINTS)


class Unit2D(snt.Module):
  """Conv2D ('SAME') -> slim BatchNorm (offset only) -> activation."""

  def __init__(
      self,
      output_channels: int,
      kernel_shape: Sequence[int],
      stride: Sequence[int] = (1, 1),
      use_batch_norm: bool = True,
      use_bias: bool = False,
      activation: bool = True,
      name: str = 'unit_2d',
  ):
    super().__init__(name=name)
    self.conv_2d = snt.Conv2D(
        output_channels,
        kernel_shape=tuple(kernel_shape),
        stride=tuple(stride),
        padding='SAME',
        with_bias=use_bias,
        name='conv_2d',
    )
    self.batch_norm = None
    if use_batch_norm:  # slim's decay, not the release's.
      self.batch_norm = i3d.release_batch_norm(BN_DECAY, BN_EPS)
    self.activation = activation

  def __call__(
      self, inputs: tf.Tensor, is_training: bool, padding: str = 'SAME'
  ) -> tf.Tensor:
    if padding != 'SAME':
      raise ValueError(f"`padding` must be 'SAME' for images; got {padding!r}.")
    net = self.conv_2d(inputs)
    if self.batch_norm is not None:
      net = self.batch_norm(
          net, is_training=is_training, test_local_stats=False
      )
    return tf.nn.relu(net) if self.activation else net


def max_pool(
    inputs: tf.Tensor, kernel: Sequence[int], stride: Sequence[int]
) -> tf.Tensor:
  return tf.nn.max_pool2d(
      inputs, ksize=[1, *kernel, 1], strides=[1, *stride, 1], padding='SAME'
  )


class Mixed2D(snt.Module):
  """One Inception block's units, from I3D's MixedSpec with 2D kernels."""

  def __init__(self, spec: i3d.MixedSpec):
    super().__init__(name=spec.name)
    self.spec = spec
    self.units: Dict[str, Unit2D] = collections.OrderedDict()
    for path, channels, kernel in i3d.mixed_branches(spec):
      branch, unit_name = name_2d(path).split('/')
      with tf.name_scope(branch):
        self.units[path] = Unit2D(channels, kernel[1:], name=unit_name)


class ImageSpace(i3d.SameTime):
  """i3d.run_trunk's layer walk on images: no time axis, 2D pools."""

  def pool(self, x, kernel, stride):
    return max_pool(x, kernel[1:], stride[1:])

  def concat(self, branches):
    return tf.concat(branches, axis=3)


class InceptionV1(snt.Module):
  """TF-slim's Inception-v1 on images, from the input to `final_endpoint`.

  Calling it returns `(output, end_points)`, keyed by slim's endpoint names.
  Shapes for a [B, 224, 224, 3] input:

    Conv2d_1a_7x7   [B, 112, 112, 64]     MaxPool_4a_3x3  [B, 14, 14, 480]
    MaxPool_2a_3x3  [B,  56,  56, 64]     Mixed_4b..4f    [B, 14, 14, ...]
    Conv2d_2c_3x3   [B,  56,  56, 192]    MaxPool_5a_2x2  [B,  7,  7, 832]
    MaxPool_3a_3x3  [B,  28,  28, 192]    Mixed_5c        [B,  7,  7, 1024]
    Mixed_3c        [B,  28,  28, 480]    AvgPool_0a_7x7  [B,  1,  1, 1024]
                                          Logits          [B, num_classes]
  """

  def __init__(
      self,
      num_classes: int = IMAGENET_CLASSES,
      final_endpoint: str = 'Logits',
      name: str = SCOPE,
  ):
    """Builds the submodules up to `final_endpoint`.

    Args:
      num_classes: classes of the logits layer; 1001 for slim's ImageNet.
      final_endpoint: the last endpoint to compute; one of VALID_ENDPOINTS.
      name: module name.

    Raises:
      ValueError: on an unknown `final_endpoint` or a bad `num_classes`.
    """
    i3d._check_endpoint(  # pylint: disable=protected-access
        'final_endpoint', final_endpoint, VALID_ENDPOINTS
    )
    if not isinstance(num_classes, int) or num_classes < 1:
      raise ValueError(
          f'`num_classes` must be a positive int; got {num_classes!r}.'
      )
    super().__init__(name=name)
    self.num_classes = num_classes
    self.final_endpoint = final_endpoint
    self.in_channels: Optional[int] = None
    # Every Unit2D by its I3D release path, as in InceptionI3d.units.
    self.units, self.layers = i3d.build_trunk(
        i3d.VALID_ENDPOINTS[VALID_ENDPOINTS.index(final_endpoint)],
        lambda spec: Unit2D(
            spec.channels,
            spec.kernel[1:],
            spec.stride[1:],
            name=name_2d(spec.name),
        ),
        Mixed2D,
    )
    last = VALID_ENDPOINTS.index(final_endpoint)
    self.logits_unit = None
    if last >= VALID_ENDPOINTS.index('Logits'):
      with tf.name_scope('Logits'):
        self.logits_unit = Unit2D(
            num_classes,
            (1, 1),
            use_batch_norm=False,
            use_bias=True,
            activation=False,
            name='Conv2d_0c_1x1',
        )
      self.units[i3d.LOGITS_UNIT] = self.logits_unit

  def __call__(
      self, images: tf.Tensor, is_training: bool, dropout_keep_prob: float = 1.0
  ):
    """Runs the network on `images` up to `final_endpoint`.

    Args:
      images: float32 [batch, height, width, channels] in [-1, 1].
      is_training: BatchNorm uses batch statistics (True) or its moving ones.
      dropout_keep_prob: keep probability of Dropout_0b (applies below 1).

    Returns:
      (output at final_endpoint, dict of every endpoint computed).

    Raises:
      ValueError: on a bad input shape or channel count.
    """
    images = tf.convert_to_tensor(images)
    shape = images.shape
    if shape.rank != 4:
      raise ValueError(
          f'`images` must be rank 4, [batch, height, width, '
          f'channels]; got shape {shape}.'
      )
    if self.in_channels is not None and shape[-1] != self.in_channels:
      raise ValueError(
          f"`images` has {shape[-1]} channels but this model's weights were "
          f'built for {self.in_channels}; got shape {shape}.'
      )
    min_pixels = i3d.min_input_size(
        i3d.VALID_ENDPOINTS[VALID_ENDPOINTS.index(self.final_endpoint)]
    )[1]
    if any(n is not None and n < min_pixels for n in shape[1:3]):
      raise ValueError(
          f'`images` is too small for final_endpoint {self.final_endpoint!r}: '
          f'it needs at least {min_pixels}x{min_pixels} pixels (AvgPool_0a_7x7 '
          f'is VALID over Mixed_5c); got shape {shape}.'
      )
    if self.in_channels is None:
      self.in_channels = shape[-1]
    final_3d = i3d.VALID_ENDPOINTS[VALID_ENDPOINTS.index(self.final_endpoint)]
    net, trunk_points = i3d.run_trunk(
        i3d.ModuleUnits(self.units, is_training),
        images,
        i3d.trunk_endpoint(final_3d),
        ImageSpace(),
    )
    end_points = {name_2d(n): x for n, x in trunk_points.items()}
    if self.final_endpoint in end_points:
      return net, end_points
    net = tf.nn.avg_pool2d(
        net, ksize=[1, *LOGITS_POOL, 1], strides=[1, 1, 1, 1], padding='VALID'
    )
    end_points['AvgPool_0a_7x7'] = net
    if dropout_keep_prob < 1.0:
      net = tf.nn.dropout(net, rate=1.0 - dropout_keep_prob)  # Dropout_0b
    net = self.logits_unit(net, is_training)
    net = tf.squeeze(net, [1, 2], name='SpatialSqueeze')
    end_points['Logits'] = net
    if self.final_endpoint == 'Logits':
      return net, end_points
    end_points['Predictions'] = tf.nn.softmax(net)
    return end_points['Predictions'], end_points

  def create_variables(self, in_channels: int = IN_CHANNELS) -> None:
    """Creates every variable with a 1x1 input (all trunk layers are SAME)."""
    if self.in_channels is not None:
      return
    final_3d = i3d.VALID_ENDPOINTS[VALID_ENDPOINTS.index(self.final_endpoint)]
    net, _ = i3d.run_trunk(
        i3d.ModuleUnits(self.units, False),
        tf.zeros([1, 1, 1, in_channels]),
        i3d.trunk_endpoint(final_3d),
        ImageSpace(),
    )
    if self.logits_unit is not None:
      self.logits_unit(net, is_training=False)
    self.in_channels = in_channels


def slim_name(unit_path: str, role: str) -> str:
  """The slim checkpoint name of a unit's tensor.

  Args:
    unit_path: the unit's I3D release path, e.g.
      'Mixed_3b/Branch_1/Conv3d_0b_3x3'.
    role: 'w', 'b', 'beta', 'moving_mean' or 'moving_variance'.
  """
  return f'{SCOPE}/{name_2d(unit_path)}/{_ROLE_SUFFIX[role]}'


def inventory(
    num_classes: Optional[int] = IMAGENET_CLASSES,
    in_channels: int = IN_CHANNELS,
    final_endpoint: str = 'Logits',
) -> Iterator[Tuple[str, str, Tuple[int, ...], str]]:
  """Yields (I3D unit path, slim name, slim shape, role) of every tensor.

  Read off I3D's inventory (checkpoints.unit_inventory) by dropping the time
  axis of each kernel, so the 2D net has exactly I3D's units and widths.

  Args:
    num_classes: classes of the logits layer.
    in_channels: input channels of Conv2d_1a_7x7.
    final_endpoint: a 2D (or I3D) endpoint name; only layers up to it.
  """
  endpoint = i3d.VALID_ENDPOINTS[VALID_ENDPOINTS.index(name_2d(final_endpoint))]
  for path, _, shape, role in checkpoints.unit_inventory(
      'rgb', num_classes, endpoint
  ):
    if role == 'w':
      shape = shape[1:]
      if path == i3d.LAYER_SPECS[0].name:
        shape = (*shape[:2], in_channels, shape[3])
    yield path, slim_name(path, role), tuple(shape), role


def slim_inventory(
    num_classes: int = IMAGENET_CLASSES,
) -> Dict[str, Tuple[int, ...]]:
  """Slim name -> shape of every tensor of an ImageNet Inception-v1."""
  return {name: shape for _, name, shape, _ in inventory(num_classes)}


def check_inventory(
    shapes: Mapping[str, Sequence[int]],
    source: str,
    num_classes: int = IMAGENET_CLASSES,
) -> None:
  """Raises one CheckpointError listing every missing, unexpected or
  mismatched tensor between a slim Inception-v1 and a name->shape map.

  Args:
    shapes: name -> shape of the checkpoint's tensors.
    source: the checkpoint's path, for the message.
    num_classes: the classes the logits layer must have.
  """
  expected = slim_inventory(num_classes)
  missing, unexpected, mismatched = checkpoints.compare_shapes(
      expected, shapes, ignore=lambda n: n in IGNORED_NAMES
  )
  if not (missing or unexpected or mismatched):
    return
  lines = [
      f'Checkpoint {source} is not a TF-slim Inception-v1 with '
      f'{num_classes} classes ({len(expected)} tensors under {SCOPE}/):'
  ]
  ours = [n for n in shapes if n.startswith(SCOPE + '/')]
  if not ours:
    kind = (
        'an I3D checkpoint (it is already 3D)'
        if any(
            n.startswith(('RGB/', 'Flow/', 'Conv3d_1a_7x7/')) for n in shapes
        )
        else 'another architecture'
    )
    lines.append(
        f'  none of its {len(shapes)} tensors is under {SCOPE}/; it '
        f'looks like {kind}.'
    )
  conv1 = slim_name(i3d.LAYER_SPECS[0].name, 'w')
  for name, got, want in mismatched:
    if name == conv1 and len(got) == 4:
      lines.append(
          f'  its first conv takes {got[2]} input channels; an '
          f'ImageNet Inception-v1 takes {want[2]} (RGB).'
      )
  lines += checkpoints.mismatch_lines(missing, unexpected, mismatched)
  raise checkpoints.CheckpointError('\n'.join(lines))


def check_file(path: str, num_classes: int = IMAGENET_CLASSES) -> None:
  """Checks that a checkpoint file is a slim Inception-v1, by names and shapes.

  Raises:
    CheckpointError: it is unreadable or its inventory differs.
  """
  reader = checkpoints.open_checkpoint(path, fetch_command=FETCH_COMMAND)
  check_inventory(reader.get_variable_to_shape_map(), path, num_classes)


def read_tensors(
    path: str,
    num_classes: Optional[int] = None,
    fetch_command: str = FETCH_COMMAND,
) -> Dict[str, np.ndarray]:
  """Reads a slim Inception-v1 checkpoint, strictly.

  Args:
    path: a V1 checkpoint file (slim's `inception_v1.ckpt`) or a V2 prefix.
    num_classes: the classes of its logits layer; read from the checkpoint
      when None.
    fetch_command: how to get the checkpoint, named in errors.

  Returns:
    Slim name -> array for every tensor of the inventory.

  Raises:
    CheckpointError: the checkpoint is missing, unreadable or does not match.
  """
  reader = checkpoints.open_checkpoint(path, fetch_command=fetch_command)
  shapes = reader.get_variable_to_shape_map()
  if num_classes is None:
    logits_b = shapes.get(slim_name(i3d.LOGITS_UNIT, 'b'))
    num_classes = logits_b[0] if logits_b else IMAGENET_CLASSES
  check_inventory(shapes, path, num_classes)
  ignored = sorted(n for n in shapes if n in IGNORED_NAMES)
  if ignored:
    logging.info('%s: ignoring %s.', path, ', '.join(ignored))
  return {
      name: checkpoints.read_tensor(reader, path, name)
      for name in slim_inventory(num_classes)
  }


def variable_map(
    model: InceptionV1,
) -> Dict[str, Tuple[tf.Variable, Tuple[int, ...]]]:
  """Slim name -> (model variable, slim shape) for a built model."""
  if model.in_channels is None:
    raise checkpoints.CheckpointError(
        'The model has no variables yet: call `model.create_variables()` or '
        'run it once first.'
    )
  out = {}
  for path, name, shape, role in inventory(
      model.num_classes, model.in_channels, model.final_endpoint
  ):
    unit = model.units[path]
    if role == 'w':
      variable = unit.conv_2d.w
    elif role == 'b':
      variable = unit.conv_2d.b
    elif role == 'beta':
      variable = unit.batch_norm.offset
    else:
      variable = getattr(unit.batch_norm, role).average
    out[name] = (variable, shape)
  return out


def assign(
    model: InceptionV1,
    tensors: Mapping[str, np.ndarray],
    source: str = 'the given tensors',
) -> None:
  """Assigns slim-named arrays to a built model (extra names are ignored)."""
  variables = variable_map(model)
  missing, _, mismatched = checkpoints.compare_shapes(
      {n: s for n, (_, s) in variables.items()},
      {n: np.shape(v) for n, v in tensors.items()},
  )
  if missing or mismatched:
    raise checkpoints.CheckpointError(
        '\n'.join(
            [
                f'{source} do not match the 2D Inception-v1 (num_classes='
                f'{model.num_classes}, in_channels={model.in_channels}):'
            ]
            + checkpoints.mismatch_lines(missing, [], mismatched)
        )
    )
  for name, (variable, _) in variables.items():
    variable.assign(np.reshape(tensors[name], variable.shape))
  for unit in model.units.values():
    if unit.batch_norm is not None:
      checkpoints.sync_restored_statistics(unit.batch_norm)


def load_model(path: str, final_endpoint: str = 'Logits') -> InceptionV1:
  """Builds an InceptionV1 shaped like a slim checkpoint and restores it."""
  tensors = read_tensors(path)
  num_classes = tensors[slim_name(i3d.LOGITS_UNIT, 'b')].shape[0]
  model = InceptionV1(num_classes=num_classes, final_endpoint=final_endpoint)
  model.create_variables()
  assign(model, tensors, source=path)
  return model


def save(model: InceptionV1, prefix: str) -> None:
  """Saves `model` with slim's names, as a V2 checkpoint at `prefix`."""
  checkpoints.write_tensors(
      prefix,
      {
          name: np.reshape(variable.numpy(), shape)
          for name, (variable, shape) in variable_map(model).items()
      },
  )


def synthetic_tensors(
    seed: int = 0, num_classes: int = IMAGENET_CLASSES
) -> Dict[str, np.ndarray]:
  """Random tensors with exactly slim's Inception-v1 names and shapes."""
  rng = np.random.default_rng(seed)
  return {
      name: checkpoints.random_tensor(role, shape, rng)
      for _, name, shape, role in inventory(num_classes)
  }
