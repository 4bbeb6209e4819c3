"""Inception-v1 Inflated 3D ConvNet (I3D) as Sonnet 2 modules.

The architecture is that of "Quo Vadis, Action Recognition? A New Model and the
Kinetics Dataset" (Carreira and Zisserman, CVPR 2017), as released in
kinetics-i3d. Module and endpoint names follow the release so that the
released checkpoints map onto this module name for name (see checkpoints.py).

Usage:

  model = i3d.InceptionI3d(num_classes=400, final_endpoint='Logits')
  logits, end_points = model(video, is_training=False)  # video: [B,T,H,W,C]
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from typing import (
    Any,
    Callable,
    Dict,
    Optional,
    Protocol,
    Sequence,
    Tuple,
    Union,
)

import runtime  # pylint: disable=g-bad-import-order

runtime.setup()  # Before TensorFlow loads: its oneDNN kernels on.
import sonnet as snt
import tensorflow as tf

# The original 18 endpoints, in network order.
VALID_ENDPOINTS = (
    'Conv3d_1a_7x7',
    'MaxPool3d_2a_3x3',
    'Conv3d_2b_1x1',
    'Conv3d_2c_3x3',
    'MaxPool3d_3a_3x3',
    'Mixed_3b',
    'Mixed_3c',
    'MaxPool3d_4a_3x3',
    'Mixed_4b',
    'Mixed_4c',
    'Mixed_4d',
    'Mixed_4e',
    'Mixed_4f',
    'MaxPool3d_5a_2x2',
    'Mixed_5b',
    'Mixed_5c',
    'Logits',
    'Predictions',
)

# BatchNorm settings of the Sonnet 1 module the release was trained with. They
# are pinned here because Sonnet 2's defaults differ.
BN_DECAY = 0.999
BN_EPS = 1e-3

# The Logits head: a [2,7,7] VALID average pool over the Mixed_5c features.
LOGITS_POOL = (2, 7, 7)


@dataclasses.dataclass(frozen=True)
class ConvSpec:
  name: str
  channels: int
  kernel: Tuple[int, int, int]
  stride: Tuple[int, int, int] = (1, 1, 1)


@dataclasses.dataclass(frozen=True)
class PoolSpec:
  name: str
  kernel: Tuple[int, int, int]
  stride: Tuple[int, int, int]


@dataclasses.dataclass(frozen=True)
class MixedSpec:
  """An Inception block: four branches concatenated on channels.

  Branch_0: 1x1x1 conv. Branch_1: 1x1x1 reduce then 3x3x3 conv. Branch_2: the
  same with other widths. Branch_3: 3x3x3 stride-1 max pool then 1x1x1 conv.
  """

  name: str
  b0: int
  b1: Tuple[int, int]
  b2: Tuple[int, int]
  b3: int
  # The name of Branch_2's 3x3x3 conv. The original code wrote each block out
  # by hand, and in Mixed_5b that conv was called 'Conv3d_0a_3x3' instead of
  # 'Conv3d_0b_3x3'. The released checkpoints carry that name, so we keep it.
  b2_conv_name: str = 'Conv3d_0b_3x3'

  @property
  def out_channels(self) -> int:
    return self.b0 + self.b1[1] + self.b2[1] + self.b3


# The whole trunk, Conv3d_1a_7x7 to Mixed_5c, one row per endpoint.
LAYER_SPECS = (
    ConvSpec('Conv3d_1a_7x7', 64, (7, 7, 7), (2, 2, 2)),
    PoolSpec('MaxPool3d_2a_3x3', (1, 3, 3), (1, 2, 2)),
    ConvSpec('Conv3d_2b_1x1', 64, (1, 1, 1)),
    ConvSpec('Conv3d_2c_3x3', 192, (3, 3, 3)),
    PoolSpec('MaxPool3d_3a_3x3', (1, 3, 3), (1, 2, 2)),
    MixedSpec('Mixed_3b', 64, (96, 128), (16, 32), 32),
    MixedSpec('Mixed_3c', 128, (128, 192), (32, 96), 64),
    PoolSpec('MaxPool3d_4a_3x3', (3, 3, 3), (2, 2, 2)),
    MixedSpec('Mixed_4b', 192, (96, 208), (16, 48), 64),
    MixedSpec('Mixed_4c', 160, (112, 224), (24, 64), 64),
    MixedSpec('Mixed_4d', 128, (128, 256), (24, 64), 64),
    MixedSpec('Mixed_4e', 112, (144, 288), (32, 64), 64),
    MixedSpec('Mixed_4f', 256, (160, 320), (32, 128), 128),
    PoolSpec('MaxPool3d_5a_2x2', (2, 2, 2), (2, 2, 2)),
    MixedSpec(
        'Mixed_5b',
        256,
        (160, 320),
        (32, 128),
        128,
        b2_conv_name='Conv3d_0a_3x3',
    ),
    MixedSpec('Mixed_5c', 384, (192, 384), (48, 128), 128),
)
_SPECS_BY_NAME = {spec.name: spec for spec in LAYER_SPECS}

# The unit that computes the logits, under the 'Logits' scope.
LOGITS_UNIT = 'Logits/Conv3d_0c_1x1'
FEATURE_CHANNELS = 1024  # Mixed_5c output channels.

Spec = Union[ConvSpec, PoolSpec, MixedSpec]


def mixed_branches(spec: MixedSpec):
  """Yields (unit_path_suffix, out_channels, kernel) of a block's four convs..

  The paths are relative to the block, e.g. 'Branch_1/Conv3d_0b_3x3'.
  """
  yield 'Branch_0/Conv3d_0a_1x1', spec.b0, (1, 1, 1)
  yield 'Branch_1/Conv3d_0a_1x1', spec.b1[0], (1, 1, 1)
  yield 'Branch_1/Conv3d_0b_3x3', spec.b1[1], (3, 3, 3)
  yield 'Branch_2/Conv3d_0a_1x1', spec.b2[0], (1, 1, 1)
  yield f'Branch_2/{spec.b2_conv_name}', spec.b2[1], (3, 3, 3)
  yield 'Branch_3/Conv3d_0b_1x1', spec.b3, (1, 1, 1)


def strides_up_to(endpoint: str) -> Tuple[int, int, int]:
  """Total (time, height, width) stride of the trunk at `endpoint`."""
  _check_endpoint('endpoint', endpoint)
  total = [1, 1, 1]
  for spec in LAYER_SPECS:
    stride = getattr(spec, 'stride', (1, 1, 1))
    total = [t * s for t, s in zip(total, stride)]
    if spec.name == endpoint:
      break
  return tuple(total)


def min_input_size(endpoint: str = 'Logits') -> Tuple[int, int]:
  """The smallest (frames, pixels) an input may have to reach `endpoint`.

  Every trunk layer uses 'SAME' padding, so any size reaches Mixed_5c. The
  Logits head needs a Mixed_5c map of at least [2,7,7] for its VALID pool.
  With 'SAME' padding each stride-s layer maps n to ceil(n/s), so the input
  needs ceil(n/8) >= 2 frames and ceil(n/32) >= 7 pixels.
  """
  _check_endpoint('endpoint', endpoint)
  if endpoint not in ('Logits', 'Predictions'):
    return 1, 1
  st, sh, _ = strides_up_to('Mixed_5c')
  return (LOGITS_POOL[0] - 1) * st + 1, (LOGITS_POOL[1] - 1) * sh + 1


def _check_endpoint(
    arg: str, endpoint: str, valid: Sequence[str] = VALID_ENDPOINTS
) -> None:
  if endpoint not in valid:
    raise ValueError(
        f'Unknown `{arg}` {endpoint!r}; valid values are, in network order: '
        f'{", ".join(valid)}.'
    )


def release_batch_norm(
    decay_rate: float = BN_DECAY, eps: float = BN_EPS
) -> snt.BatchNorm:
  """Sonnet 1's snt.BatchNorm() as the release used it: offset only."""
  return snt.BatchNorm(
      create_scale=False,
      create_offset=True,
      decay_rate=decay_rate,
      eps=eps,
      name='batch_norm',
  )


# Mixed-precision compute dtypes of InceptionI3d (None: float32 throughout).
COMPUTE_DTYPES = (None, tf.bfloat16, tf.float16)


class Unit3D(snt.Module):
  """Conv3D ('SAME', no bias) -> Sonnet-1-style BatchNorm -> activation."""

  def __init__(
      self,
      output_channels: int,
      kernel_shape: Sequence[int] = (1, 1, 1),
      stride: Sequence[int] = (1, 1, 1),
      activation_fn: Optional[Callable[[tf.Tensor], tf.Tensor]] = (tf.nn.relu),
      use_batch_norm: bool = True,
      use_bias: bool = False,
      name: str = 'unit_3d',
      compute_dtype: Optional[tf.DType] = None,
  ):
    """Builds the unit.

    Args:
      output_channels: channels of the convolution.
      kernel_shape: [T, H, W] of the kernel.
      stride: [T, H, W] of the stride.
      activation_fn: applied last, or None.
      use_batch_norm: whether a BatchNorm follows the convolution.
      use_bias: whether the convolution has a bias.
      name: the release's unit name.
      compute_dtype: mixed precision: the convolution runs in this dtype
        (tf.bfloat16 or tf.float16) on float32 weights cast on the fly, the
        BatchNorm and activation in float32, and the output is cast back to
        it (to float32 for a unit without BatchNorm, the Logits layer). None
        computes everything in the input's dtype.
    """
    super().__init__(name=name)
    self.compute_dtype = compute_dtype
    self.output_channels = output_channels
    self.kernel_shape = tuple(kernel_shape)
    self.stride = tuple(stride)
    self.activation_fn = activation_fn
    self.use_batch_norm = use_batch_norm
    self.use_bias = use_bias
    self.conv_3d = snt.Conv3D(
        output_channels=output_channels,
        kernel_shape=self.kernel_shape,
        stride=self.stride,
        padding='SAME',
        with_bias=use_bias,
        name='conv_3d',
    )
    self.batch_norm = release_batch_norm() if use_batch_norm else None

  def __call__(
      self, inputs: tf.Tensor, is_training: bool, padding: str = 'SAME'
  ) -> tf.Tensor:
    """Runs the unit.

    Args:
      inputs: [B, T, H, W, C].
      is_training: whether BatchNorm uses (and updates) batch statistics.
      padding: 'SAME' as built, or 'VALID' for inputs a caller has padded
        itself (streaming.py pads time with carried frames); the variables
        must exist already for 'VALID'.

    Returns:
      The unit's output.
    """
    dtype = self.compute_dtype
    if (
        dtype == tf.bfloat16
        and padding == 'SAME'
        and inputs.shape[1] is not None
        and inputs.shape[1] < self.kernel_shape[0]
    ):
      # TensorFlow's oneDNN bfloat16 Conv3DBackpropFilter returns NaNs now
      # and then when the time padding exceeds the input (seen for 2 frames
      # under a 3-frame kernel, as Mixed_5b/5c of a 9-16 frame clip), so
      # such a unit computes in float32.
      dtype = tf.float32
    if padding == 'SAME' and (dtype is None or not hasattr(self.conv_3d, 'w')):
      # Sonnet's Conv3D creates float32 weights on its first call.
      net = self.conv_3d(
          inputs if dtype is None else tf.cast(inputs, tf.float32)
      )
    else:
      dtype = dtype or inputs.dtype
      net = tf.nn.conv3d(
          tf.cast(inputs, dtype),
          tf.cast(self.conv_3d.w, dtype),
          [1, *self.stride, 1],
          padding=padding,
      )
      if self.use_bias:
        net = tf.nn.bias_add(net, tf.cast(self.conv_3d.b, dtype))
    if self.compute_dtype is not None:
      net = tf.cast(net, tf.float32)
    if self.batch_norm is not None:
      net = self.batch_norm(
          net, is_training=is_training, test_local_stats=False
      )
    if self.activation_fn is not None:
      net = self.activation_fn(net)
    if self.compute_dtype is not None and self.batch_norm is not None:
      net = tf.cast(net, self.compute_dtype)
    return net


def max_pool(
    inputs: tf.Tensor, kernel: Sequence[int], stride: Sequence[int]
) -> tf.Tensor:
  return tf.nn.max_pool3d(
      inputs, ksize=[1, *kernel, 1], strides=[1, *stride, 1], padding='SAME'
  )


class Mixed(snt.Module):
  """One Inception block's units, built from a MixedSpec; run_trunk runs it."""

  def __init__(self, spec: MixedSpec):
    super().__init__(name=spec.name)
    self.spec = spec
    self.units: Dict[str, Unit3D] = collections.OrderedDict()
    for path, channels, kernel in mixed_branches(spec):
      branch, unit_name = path.split('/')
      with tf.name_scope(branch):
        self.units[path] = Unit3D(channels, kernel, name=unit_name)


# --------------------------------------------------------------------------
# The one forward pass: the layer walk and the Logits head, parameterised by
# how a unit is computed (`Units`) and how time is padded (`TimePadding`).


def trunk_endpoint(endpoint: str) -> str:
  """The trunk layer an endpoint is computed from: Mixed_5c for the head."""
  _check_endpoint('endpoint', endpoint)
  if VALID_ENDPOINTS.index(endpoint) > VALID_ENDPOINTS.index('Mixed_5c'):
    return 'Mixed_5c'
  return endpoint


def reduce_paths(spec: MixedSpec) -> Tuple[str, str, str]:
  """The block's three 1x1x1 convs that read the block input."""
  return (
      f'{spec.name}/Branch_0/Conv3d_0a_1x1',
      f'{spec.name}/Branch_1/Conv3d_0a_1x1',
      f'{spec.name}/Branch_2/Conv3d_0a_1x1',
  )


class Units(Protocol):
  """How run_trunk computes a unit, by its release path."""

  def unit(self, path: str, x: tf.Tensor, padding: str = 'SAME') -> tf.Tensor:
    """The unit at `path` on `x`; `padding` as Unit3D.__call__'s."""

  def reduces(self, spec: MixedSpec, x: tf.Tensor) -> Sequence[tf.Tensor]:
    """The outputs of the reduce_paths(spec) units on the block input."""


class ModuleUnits:
  """Units computed by the module's own Unit3Ds: conv, BatchNorm, ReLU."""

  def __init__(self, units: Dict[str, Unit3D], is_training: bool):
    self._units = units
    self._is_training = is_training

  def unit(self, path: str, x: tf.Tensor, padding: str = 'SAME') -> tf.Tensor:
    return self._units[path](x, self._is_training, padding=padding)

  def reduces(self, spec: MixedSpec, x: tf.Tensor) -> Sequence[tf.Tensor]:
    return tuple(self.unit(p, x) for p in reduce_paths(spec))


class SameTime:
  """Time padding of a whole clip: 'SAME' in time as in space.

  streaming.py has the other kind: 'VALID' in time with carried frames.
  """

  def begin(self, layer_index: int) -> None:
    """Called before each LAYER_SPECS row."""
    del layer_index

  def conv(
      self,
      unit: Callable[[tf.Tensor, str], tf.Tensor],
      x: tf.Tensor,
      kernel: Sequence[int],
      stride: Sequence[int],
  ) -> tf.Tensor:
    """`unit(x, padding)` for a unit of this kernel and stride."""
    del kernel, stride
    return unit(x, 'SAME')

  def pool(
      self, x: tf.Tensor, kernel: Sequence[int], stride: Sequence[int]
  ) -> tf.Tensor:
    return max_pool(x, kernel, stride)

  def concat(self, branches: Sequence[tf.Tensor]) -> tf.Tensor:
    """Joins a block's four branches on channels."""
    return tf.concat(branches, axis=4)


def run_trunk(
    units: Units,
    x: tf.Tensor,
    final_endpoint: str,
    time: Optional[SameTime] = None,
) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
  """Runs the LAYER_SPECS rows up to `final_endpoint` (at most Mixed_5c).

  Args:
    units: how a unit is computed: ModuleUnits, or inference.FoldedI3D.
    x: [B, T, H, W, C].
    final_endpoint: a trunk endpoint, Conv3d_1a_7x7 to Mixed_5c.
    time: how time is padded; SameTime() when None.

  Returns:
    (output at final_endpoint, dict of every endpoint computed).
  """
  time = time or SameTime()
  end_points = {}
  for index, spec in enumerate(LAYER_SPECS):
    time.begin(index)
    if isinstance(spec, ConvSpec):
      x = time.conv(
          functools.partial(units.unit, spec.name), x, spec.kernel, spec.stride
      )
    elif isinstance(spec, PoolSpec):
      x = time.pool(x, spec.kernel, spec.stride)
    else:
      b0, b1, b2 = units.reduces(spec, x)
      b1 = time.conv(
          functools.partial(units.unit, f'{spec.name}/Branch_1/Conv3d_0b_3x3'),
          b1,
          (3, 3, 3),
          (1, 1, 1),
      )
      b2 = time.conv(
          functools.partial(
              units.unit, f'{spec.name}/Branch_2/{spec.b2_conv_name}'
          ),
          b2,
          (3, 3, 3),
          (1, 1, 1),
      )
      b3 = time.pool(x, (3, 3, 3), (1, 1, 1))
      b3 = units.unit(f'{spec.name}/Branch_3/Conv3d_0b_1x1', b3)
      x = time.concat([b0, b1, b2, b3])
    end_points[spec.name] = x
    if spec.name == final_endpoint:
      return x, end_points
  raise ValueError(
      f'`final_endpoint` must be a trunk endpoint, '
      f'{LAYER_SPECS[0].name} to {LAYER_SPECS[-1].name}; got {final_endpoint!r}.'
  )


def logits_pool(mixed_5c: tf.Tensor) -> tf.Tensor:
  """The head's [2,7,7] 'VALID' average pool of the Mixed_5c features."""
  return tf.nn.avg_pool3d(
      mixed_5c, [1, *LOGITS_POOL, 1], [1, 1, 1, 1, 1], 'VALID'
  )


def logits_head(
    logits_unit: Callable[[tf.Tensor], tf.Tensor],
    pooled: tf.Tensor,
    spatial_squeeze: bool,
    per_time: bool = False,
    dropout_keep_prob: Union[float, tf.Tensor] = 1.0,
    dropout_seed: Optional[tf.Tensor] = None,
) -> tf.Tensor:
  """Dropout, the 1x1x1 logits conv, squeeze and time average.

  Args:
    logits_unit: computes the 'Logits/Conv3d_0c_1x1' unit.
    pooled: [B, T', H', W', 1024], the logits_pool-ed Mixed_5c map.
    spatial_squeeze: whether to squeeze the [1, 1] space of the logits.
    per_time: return each time position's logits averaged over space,
      [B, T', classes], instead of the time average.
    dropout_keep_prob: keep probability of the dropout; as in the release it
      applies whenever it is below 1.
    dropout_seed: a [2] int seed for stateless dropout (training.py draws the
      same masks again when a run resumes); None for tf.nn.dropout.

  Returns:
    [B, num_classes] logits averaged over T' ([B, H', W', classes] when not
    squeezed; [B, T', classes] when per_time).
  """
  net = pooled
  if not (
      isinstance(dropout_keep_prob, (int, float)) and dropout_keep_prob == 1.0
  ):
    rate = 1.0 - dropout_keep_prob
    if dropout_seed is None:
      net = tf.nn.dropout(net, rate=rate)
    else:
      net = tf.nn.experimental.stateless_dropout(
          net, rate=rate, seed=dropout_seed
      )
  logits = logits_unit(net)
  if per_time:
    return tf.reduce_mean(logits, [2, 3])
  if spatial_squeeze:
    logits = tf.squeeze(logits, [2, 3], name='SpatialSqueeze')
  return tf.reduce_mean(logits, axis=1)


def build_trunk(
    final_endpoint: str,
    make_conv: Callable[[ConvSpec], Any],
    make_mixed: Callable[[MixedSpec], Any],
):
  """Builds the LAYER_SPECS rows up to `final_endpoint`, in order.

  Shared by InceptionI3d and the 2D Inception-v1 it is inflated from.

  Args:
    final_endpoint: one of VALID_ENDPOINTS.
    make_conv: ConvSpec -> conv unit.
    make_mixed: MixedSpec -> block with `.units`, keyed by paths relative to
      the block (see mixed_branches).

  Returns:
    (units by release path, e.g. 'Mixed_3b/Branch_1/Conv3d_0b_3x3'; layers by
    endpoint name: units, blocks, or the PoolSpec of each max pool).
  """
  units = collections.OrderedDict()
  layers = collections.OrderedDict()
  final_index = VALID_ENDPOINTS.index(final_endpoint)
  for spec in LAYER_SPECS:
    if VALID_ENDPOINTS.index(spec.name) > final_index:
      break
    if isinstance(spec, ConvSpec):
      unit = make_conv(spec)
      units[spec.name] = unit
      layers[spec.name] = unit
    elif isinstance(spec, MixedSpec):
      block = make_mixed(spec)
      for path, unit in block.units.items():
        units[f'{spec.name}/{path}'] = unit
      layers[spec.name] = block
    else:
      layers[spec.name] = spec
  return units, layers


class InceptionI3d(snt.Module):
  """Inception-v1 I3D, from the input video to `final_endpoint`.

  Calling the module returns `(output, end_points)`: the output of
  `final_endpoint` and a dict of every endpoint up to it. Shapes for a
  [B, T, 224, 224, C] input (SAME padding: each stride s maps n to ceil(n/s)):

    Conv3d_1a_7x7     [B, T/2, 112, 112, 64]
    MaxPool3d_2a_3x3  [B, T/2,  56,  56, 64]
    Conv3d_2b_1x1     [B, T/2,  56,  56, 64]
    Conv3d_2c_3x3     [B, T/2,  56,  56, 192]
    MaxPool3d_3a_3x3  [B, T/2,  28,  28, 192]
    Mixed_3b          [B, T/2,  28,  28, 256]
    Mixed_3c          [B, T/2,  28,  28, 480]
    MaxPool3d_4a_3x3  [B, T/4,  14,  14, 480]
    Mixed_4b..4e      [B, T/4,  14,  14, 512, 512, 512, 528]
    Mixed_4f          [B, T/4,  14,  14, 832]
    MaxPool3d_5a_2x2  [B, T/8,   7,   7, 832]
    Mixed_5b          [B, T/8,   7,   7, 832]
    Mixed_5c          [B, T/8,   7,   7, 1024]
    Logits            [B, num_classes]  (averaged over T/8 - 1 positions;
                                         [B, 1, 1, num_classes] unsqueezed)
    Predictions       softmax of Logits
  """

  VALID_ENDPOINTS = VALID_ENDPOINTS

  def __init__(
      self,
      num_classes: int = 400,
      spatial_squeeze: bool = True,
      final_endpoint: str = 'Logits',
      name: str = 'inception_i3d',
      compute_dtype: Optional[tf.DType] = None,
  ):
    """Builds the submodules up to `final_endpoint`.

    Args:
      num_classes: Number of output classes of the Logits layer.
      spatial_squeeze: Whether to squeeze the spatial dims of the logits.
      final_endpoint: The last endpoint to compute; one of VALID_ENDPOINTS.
      name: Module name; 'inception_i3d' matches the release.
      compute_dtype: mixed precision: tf.bfloat16 or tf.float16 runs every
        convolution, pool and trunk endpoint in that dtype, while the
        variables, BatchNorm (statistics included), the logits and the
        predictions stay float32 (see Unit3D). None: all float32.

    Raises:
      ValueError: if `final_endpoint`, `num_classes` or `compute_dtype` is
        not valid.
    """
    _check_endpoint('final_endpoint', final_endpoint)
    if not isinstance(num_classes, int) or num_classes < 1:
      raise ValueError(
          f'`num_classes` must be a positive int; got {num_classes!r}.'
      )
    if compute_dtype not in COMPUTE_DTYPES:
      raise ValueError(
          f'`compute_dtype` must be one of '
          f'{", ".join(str(d) for d in COMPUTE_DTYPES)}; got {compute_dtype!r}.'
      )
    super().__init__(name=name)
    self.num_classes = num_classes
    self.spatial_squeeze = spatial_squeeze
    self.final_endpoint = final_endpoint
    self.in_channels: Optional[int] = None

    # Every Unit3D by its release path, e.g. 'Mixed_3b/Branch_1/Conv3d_0b_3x3'.
    self.units, self.layers = build_trunk(
        final_endpoint,
        lambda spec: Unit3D(
            spec.channels, spec.kernel, spec.stride, name=spec.name
        ),
        Mixed,
    )
    final_index = VALID_ENDPOINTS.index(final_endpoint)
    self.logits_unit = None
    if final_index >= VALID_ENDPOINTS.index('Logits'):
      with tf.name_scope('Logits'):
        self.logits_unit = Unit3D(
            num_classes,
            (1, 1, 1),
            activation_fn=None,
            use_batch_norm=False,
            use_bias=True,
            name='Conv3d_0c_1x1',
        )
      self.units[LOGITS_UNIT] = self.logits_unit
    self.compute_dtype = compute_dtype
    for unit in self.units.values():
      unit.compute_dtype = compute_dtype

  def _check_inputs(
      self, inputs: tf.Tensor, dropout_keep_prob: Union[float, tf.Tensor]
  ) -> None:
    if isinstance(dropout_keep_prob, (int, float)) and not (
        0.0 < dropout_keep_prob <= 1.0
    ):
      raise ValueError(
          f'`dropout_keep_prob` must be in (0, 1]; got {dropout_keep_prob!r}.'
      )
    shape = inputs.shape
    if shape.rank != 5:
      raise ValueError(
          f'`inputs` must be rank 5, [batch, frames, height, width, channels];'
          f' got shape {shape}.'
      )
    channels = shape[-1]
    if channels is None:
      raise ValueError(
          f'`inputs` must have a known channel count; got shape ' f'{shape}.'
      )
    if self.in_channels is not None and channels != self.in_channels:
      raise ValueError(
          f"`inputs` has {channels} channels but this model's weights were "
          f'built for {self.in_channels} (3 for RGB, 2 for flow); got shape '
          f'{shape}.'
      )
    min_frames, min_pixels = min_input_size(self.final_endpoint)
    for axis, minimum, what in (
        (1, min_frames, 'frames'),
        (2, min_pixels, 'pixels of height'),
        (3, min_pixels, 'pixels of width'),
    ):
      if shape[axis] is not None and shape[axis] < minimum:
        raise ValueError(
            f'`inputs` is too small for final_endpoint '
            f'{self.final_endpoint!r}: it needs at least {min_frames} frames '
            f'and {min_pixels}x{min_pixels} pixels (the Logits head pools '
            f'[2,7,7] VALID over Mixed_5c); got {shape[axis]} {what} in '
            f'shape {shape}.'
        )

  def _dynamic_size_check(self, inputs: tf.Tensor):
    """Runtime version of the size check for dims unknown while tracing."""
    min_frames, min_pixels = min_input_size(self.final_endpoint)
    if min_frames == 1 or None not in inputs.shape[1:4]:
      return []
    dyn = tf.shape(inputs)
    message = (
        f'`inputs` is too small for final_endpoint '
        f'{self.final_endpoint!r}: it needs at least {min_frames} '
        f'frames and {min_pixels}x{min_pixels} pixels.'
    )
    return [
        tf.debugging.assert_greater_equal(
            dyn[1:4],
            tf.constant([min_frames, min_pixels, min_pixels]),
            message=message,
        )
    ]

  def __call__(
      self,
      inputs: tf.Tensor,
      is_training: bool,
      dropout_keep_prob: Union[float, tf.Tensor] = 1.0,
      dropout_seed: Optional[tf.Tensor] = None,
  ):
    """Runs the network on `inputs` up to `final_endpoint`.

    Args:
      inputs: float32 [batch, frames, height, width, channels] in [-1, 1];
        cast to compute_dtype when that is set.
      is_training: Whether BatchNorm uses batch statistics and updates its
        moving averages (True) or uses the moving averages (False).
      dropout_keep_prob: Keep probability of the dropout before the logits.
        As in the release it applies whenever it is below 1.
      dropout_seed: An int32 [2] seed for a stateless dropout mask, so that a
        resumed training run draws the same masks; stateful when None.

    Returns:
      (output at final_endpoint, dict of every endpoint computed).

    Raises:
      ValueError: on a bad `dropout_keep_prob` or input shape.
    """
    inputs = tf.convert_to_tensor(inputs)
    self._check_inputs(inputs, dropout_keep_prob)
    checks = self._dynamic_size_check(inputs)
    with tf.control_dependencies(checks):
      net = tf.identity(inputs)
    if self.compute_dtype is not None:
      net = tf.cast(net, self.compute_dtype)
    if self.in_channels is None:
      self.in_channels = inputs.shape[-1]
    units = ModuleUnits(self.units, is_training)
    trunk_end = trunk_endpoint(self.final_endpoint)
    net, end_points = run_trunk(units, net, trunk_end)
    if self.final_endpoint == trunk_end:
      return net, end_points
    net = self.logits_head(
        logits_pool(net), is_training, dropout_keep_prob, dropout_seed
    )
    end_points['Logits'] = net
    if self.final_endpoint == 'Logits':
      return net, end_points
    predictions = tf.nn.softmax(net)
    end_points['Predictions'] = predictions
    return predictions, end_points

  def logits_head(
      self,
      pooled: tf.Tensor,
      is_training: bool,
      dropout_keep_prob: Union[float, tf.Tensor] = 1.0,
      dropout_seed: Optional[tf.Tensor] = None,
  ) -> tf.Tensor:
    """The module-level logits_head with this module's logits unit.

    Args:
      pooled: [B, T', H', W', 1024], the [2,7,7]-pooled Mixed_5c map.
      is_training: passed to the conv unit (it has no BatchNorm).
      dropout_keep_prob: keep probability of the dropout.
      dropout_seed: an int32 [2] seed for a stateless mask, or None.

    Returns:
      [B, num_classes] logits averaged over T' ([B, H', W', classes] when
      spatial_squeeze is False).
    """
    return logits_head(
        functools.partial(self.logits_unit, is_training=is_training),
        pooled,
        self.spatial_squeeze,
        dropout_keep_prob=dropout_keep_prob,
        dropout_seed=dropout_seed,
    )

  def create_variables(self, in_channels: int) -> None:
    """Creates every variable without a full-size forward pass.

    All trunk layers are 'SAME', so a 1x1x1 input creates their weights; the
    logits unit is then run directly on that 1x1x1 Mixed_5c output.

    Args:
      in_channels: 3 for RGB, 2 for flow.
    """
    if self.in_channels is not None:
      if in_channels != self.in_channels:
        raise ValueError(
            f'`in_channels` {in_channels} differs from the {self.in_channels} '
            'this model was built for.'
        )
      return
    if not isinstance(in_channels, int) or in_channels < 1:
      raise ValueError(
          f'`in_channels` must be a positive int; got {in_channels!r}.'
      )
    net = tf.zeros([1, 1, 1, 1, in_channels])
    trunk_end = trunk_endpoint(self.final_endpoint)
    net, _ = run_trunk(ModuleUnits(self.units, False), net, trunk_end)
    if self.logits_unit is not None:
      self.logits_unit(net, is_training=False)
    self.in_channels = in_channels
