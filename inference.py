"""Fast, exact I3D inference: folded BatchNorm, bounded-memory whole videos.

Two computation paths give the same numbers as the plain module
(`model(video, is_training=False)`), to float32 round-off:

  * 'plain': the Sonnet module itself, run in a traced tf.function.
  * 'fast':  every Unit3D's inference-time BatchNorm folded into its conv
    (w' = w * rsqrt(var + eps) per output channel, b' = offset - mean *
    rsqrt(var + eps)), so a unit is conv3d + bias + relu; and in each Mixed
    block the three 1x1x1 convs that read the block input (Branch_0, and the
    reduces of Branch_1 and Branch_2) run as one wider conv and a split.

Whole videos. A clip longer than `chunk_frames` is streamed through the trunk
in chunks: every layer with a temporal kernel > 1 keeps the few input frames
its next window still needs, pads with zeros in time exactly where the
whole-video 'SAME' pass would (at the real start and end of the video), and
runs 'VALID' in time in between. Every layer's per-frame output is therefore
identical to that of one whole-video pass, nothing is recomputed, and memory
is set by the chunk size, not by the video length. The Logits head is applied
once at the end to the per-timestep [7,7]-pooled Mixed_5c features.

'SAME' padding and the stride grid. With 'SAME', a layer of kernel k and
stride s on n frames pads k - s frames in all when s divides n, else
k - (n mod s), the larger half after. So the before-padding of the stride-2
layers depends on the parity of their input length: Conv3d_1a_7x7 pads 2
frames before an even-length input and 3 before an odd one, MaxPool3d_4a_3x3
0 or 1. The whole-video stride grid thus depends on T mod 4, and a stream
must know it from its first frame: `logits_stream` takes `num_frames`; when
the length is unknown the stream is computed on the grid of T mod 4 == 0 and
the last T mod 4 frames are dropped (at most 3), so the result equals
`logits(video[:, :T - T % 4])` exactly.

Usage:

  inference.configure_threads()            # entry points, before any op runs
  model = i3d.InceptionI3d(400, final_endpoint='Logits')
  checkpoints.restore(model, 'data/checkpoints/rgb_imagenet/model.ckpt')
  predictor = inference.make_predictor(model)        # path 'fast'
  logits = predictor.logits(video)                   # [B, 400]
  logits = predictor.logits_stream(frame_chunks)     # [400], batch 1
  feats = predictor.features(video, 'Mixed_5c')      # [B, 1024]
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import runtime  # pylint: disable=g-bad-import-order
runtime.setup()  # Before TensorFlow loads: its oneDNN kernels on.
from absl import logging
import numpy as np
import tensorflow as tf

import i3d

# Computation paths of a Predictor; see the module docstring.
PATHS = ('fast', 'plain')
DEFAULT_PATH = 'fast'

# Frames per streamed chunk when a Predictor is not given `chunk_frames`.
# Peak memory grows by about 5 MB per 224x224 RGB frame of it; streaming
# costs ~7% of throughput against one whole pass at 128 (copies of the
# carried frames), ~9% at 64.
DEFAULT_CHUNK_FRAMES = 128

# Inter-op threads set by configure_threads. The net is a chain of big convs,
# each of which already uses every core, so more inter-op threads only
# oversubscribe the cores.
INTER_OP_THREADS = 1

# Endpoints whose features are class scores rather than trunk activations.
HEAD_ENDPOINTS = ('Logits', 'Predictions')
TRUNK_ENDPOINTS = tuple(spec.name for spec in i3d.LAYER_SPECS)

# Total temporal stride of the trunk (at Mixed_5c); chunk sizes are rounded
# up to a multiple of it so that every chunk advances every layer regularly.
_TIME_STRIDE = i3d.strides_up_to('Mixed_5c')[0]


def configure_threads(num_threads: Optional[int] = None,
                      inter_op_threads: int = INTER_OP_THREADS
                      ) -> Tuple[int, int]:
  """Sets TensorFlow's thread pools for inference; call before any op runs.

  Args:
    num_threads: intra-op threads; the number of cores this process may use
      when None.
    inter_op_threads: inter-op threads.

  Returns:
    (intra-op threads, inter-op threads) as requested.

  Raises:
    ValueError: if a thread count is not a positive int.
  """
  if num_threads is None:
    num_threads = len(os.sched_getaffinity(0))
  for arg, value in (('num_threads', num_threads),
                     ('inter_op_threads', inter_op_threads)):
    if not isinstance(value, int) or value < 1:
      raise ValueError(f'`{arg}` must be a positive int; got {value!r}.')
  try:
    tf.config.threading.set_intra_op_parallelism_threads(num_threads)
    tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
  except RuntimeError as e:  # The runtime is already initialized.
    logging.warning('Thread pools left as they are (%s): %s', (
        tf.config.threading.get_intra_op_parallelism_threads(),
        tf.config.threading.get_inter_op_parallelism_threads()), e)
  return num_threads, inter_op_threads


# --------------------------------------------------------------------------
# Temporal geometry: 'SAME' padding, receptive fields, streaming context.


def same_padding(size: int, kernel: int, stride: int) -> Tuple[int, int]:
  """(before, after) padding of TensorFlow 'SAME' along one axis."""
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


@dataclasses.dataclass(frozen=True)
class TemporalOp:
  """A layer as seen along time: kernel and stride (max over branches)."""
  name: str
  kernel: int
  stride: int


def temporal_ops(endpoint: str = 'Mixed_5c') -> List[TemporalOp]:
  """The trunk's layers up to `endpoint`, in time.

  A Mixed block counts as one kernel-3 stride-1 op: its widest branches (the
  3x3x3 convs and the 3x3x3 pool) see 3 frames. With 'Logits' or
  'Predictions' the head's 2-frame 'VALID' average pool is the last op.

  Raises:
    ValueError: on an unknown endpoint.
  """
  _check_endpoint('endpoint', endpoint, i3d.VALID_ENDPOINTS)
  ops = []
  for spec in i3d.LAYER_SPECS:
    if isinstance(spec, i3d.MixedSpec):
      ops.append(TemporalOp(spec.name, 3, 1))
    else:
      ops.append(TemporalOp(spec.name, spec.kernel[0], spec.stride[0]))
    if spec.name == endpoint:
      return ops
  ops.append(TemporalOp('Logits', i3d.LOGITS_POOL[0], 1))
  return ops


def _time_pads(endpoint: str, num_frames: int) -> List[Tuple[int, int]]:
  """(before, after) time padding of each trunk op on `num_frames` frames."""
  pads = []
  n = num_frames
  for op in temporal_ops(endpoint):
    if op.name == 'Logits':  # 'VALID'
      pads.append((0, 0))
      continue
    pads.append(same_padding(n, op.kernel, op.stride))
    n = -(-n // op.stride)
  return pads


@dataclasses.dataclass(frozen=True)
class TemporalGeometry:
  """Which input frames one endpoint output sees, in a whole-video pass.

  Output i is computed from input frames [i * stride - before,
  i * stride - before + receptive_field - 1] (indices below 0 or past the end
  are the zero padding). `context_before` and `context_after` are the frames
  a block of `stride` new frames needs on each side.
  """
  endpoint: str
  receptive_field: int
  stride: int
  before: int

  @property
  def context_before(self) -> int:
    return self.before

  @property
  def context_after(self) -> int:
    return self.receptive_field - self.stride - self.before


def temporal_geometry(endpoint: str = 'Mixed_5c',
                      num_frames: Optional[int] = None) -> TemporalGeometry:
  """The temporal receptive field of `endpoint`, computed from LAYER_SPECS.

  Args:
    endpoint: one of i3d.VALID_ENDPOINTS ('Predictions' is the same as
      'Logits').
    num_frames: the video length, which sets the 'SAME' before-padding of the
      stride-2 layers (see the module docstring); None means a multiple of 8.

  Returns:
    The geometry; at Mixed_5c on a multiple of 8 frames: receptive field 99,
    stride 8, before 44.

  Raises:
    ValueError: on an unknown endpoint or a non-positive `num_frames`.
  """
  ops = temporal_ops(endpoint)
  if num_frames is None:
    num_frames = 8 * _TIME_STRIDE
  if not isinstance(num_frames, int) or num_frames < 1:
    raise ValueError(
        f'`num_frames` must be a positive int; got {num_frames!r}.')
  rf, jump, before = 1, 1, 0
  for op, (pad, _) in zip(ops, _time_pads(endpoint, num_frames)):
    rf += (op.kernel - 1) * jump
    before += pad * jump
    jump *= op.stride
  return TemporalGeometry(endpoint, rf, jump, before)


def first_chunk_frames(endpoint: str = 'Mixed_5c') -> int:
  """Frames a stream's first chunk needs for `endpoint` to output a frame.

  Every layer must emit at least one frame from the first chunk, so that no
  later chunk hands a layer an empty input. The worst case over the four
  'SAME' grids (T mod 4) is returned.
  """
  ops = [op for op in temporal_ops(endpoint) if op.name != 'Logits']
  worst = 0
  for num_frames in (8, 9, 10, 11):
    need = 1
    for op, (pad, _) in reversed(list(zip(ops, _time_pads(endpoint,
                                                          num_frames)))):
      need = max((need - 1) * op.stride + op.kernel - pad, 1)
    worst = max(worst, need)
  return worst


# --------------------------------------------------------------------------
# Analytic FLOPs.


def conv_flops(frames: int, height: int = 224, width: int = 224,
               in_channels: int = 3, num_classes: int = 400,
               final_endpoint: str = 'Logits') -> Dict[str, int]:
  """Multiply-add FLOPs (2 per MAC) of the convs of each endpoint.

  Counts every conv's output positions (after its stride) times its kernel
  volume times input and output channels, times 2. Pools, BatchNorm, bias
  and ReLU are left out: together they are well under 1% of the total.

  Returns:
    endpoint -> FLOPs, in network order, up to `final_endpoint`.
  """
  _check_endpoint('final_endpoint', final_endpoint, i3d.VALID_ENDPOINTS)
  shape = [frames, height, width]
  channels = in_channels
  out = collections.OrderedDict()

  def conv(size, c_in, c_out, kernel, stride=(1, 1, 1)):
    size = [-(-n // s) for n, s in zip(size, stride)]
    return size, 2 * math.prod(size) * math.prod(kernel) * c_in * c_out

  for spec in i3d.LAYER_SPECS:
    if isinstance(spec, i3d.ConvSpec):
      shape, flops = conv(shape, channels, spec.channels, spec.kernel,
                          spec.stride)
      channels = spec.channels
    elif isinstance(spec, i3d.PoolSpec):
      shape = [-(-n // s) for n, s in zip(shape, spec.stride)]
      flops = 0
    else:
      # The 3x3x3 convs read their branch's reduce; the 1x1x1s the input.
      reduced = {'Branch_1': spec.b1[0], 'Branch_2': spec.b2[0]}
      flops = 0
      for path, c_out, kernel in i3d.mixed_branches(spec):
        c_in = (reduced[path.split('/')[0]] if kernel == (3, 3, 3) else
                channels)
        flops += conv(shape, c_in, c_out, kernel)[1]
      channels = spec.out_channels
    out[spec.name] = flops
    if spec.name == final_endpoint:
      return out
  pooled = [n - p + 1 for n, p in zip(shape, i3d.LOGITS_POOL)]
  out['Logits'] = conv(pooled, channels, num_classes, (1, 1, 1))[1]
  if final_endpoint == 'Predictions':
    out['Predictions'] = 0
  return out


# --------------------------------------------------------------------------
# The units' arithmetic: plain (conv, BatchNorm) or folded (conv + bias).


def _check_endpoint(arg: str, value: str, valid: Sequence[str]) -> None:
  if value not in valid:
    raise ValueError(f'Unknown `{arg}` {value!r}; valid values are: '
                     f'{", ".join(valid)}.')


def _reduce_paths(spec: i3d.MixedSpec) -> Tuple[str, str, str]:
  return (f'{spec.name}/Branch_0/Conv3d_0a_1x1',
          f'{spec.name}/Branch_1/Conv3d_0a_1x1',
          f'{spec.name}/Branch_2/Conv3d_0a_1x1')


class _PlainUnits:
  """Runs the module's own units, with a choice of conv padding."""

  def __init__(self, model: i3d.InceptionI3d):
    self._model = model

  def unit(self, path: str, x: tf.Tensor, padding: str = 'SAME') -> tf.Tensor:
    unit = self._model.units[path]
    net = tf.nn.conv3d(x, unit.conv_3d.w, [1, *unit.stride, 1], padding)
    if unit.use_bias:
      net = tf.nn.bias_add(net, unit.conv_3d.b)
    if unit.batch_norm is not None:
      net = unit.batch_norm(net, is_training=False, test_local_stats=False)
    if unit.activation_fn is not None:
      net = unit.activation_fn(net)
    return net

  def reduces(self, spec: i3d.MixedSpec, x: tf.Tensor):
    return tuple(self.unit(p, x) for p in _reduce_paths(spec))


class FoldedI3D(tf.Module):
  """The inference-time I3D with each BatchNorm folded into its conv.

  Holds its own copies of the folded weights as variables, so it can be
  saved; build a new one after the model's weights change.
  """

  def __init__(self, model: i3d.InceptionI3d, merge_reduces: bool = True,
               name: str = 'folded_i3d'):
    """Folds `model`'s weights.

    Args:
      model: a built InceptionI3d with its weights loaded.
      merge_reduces: run the three 1x1x1 convs that read a Mixed block's
        input as one conv and a split.
      name: module name.

    Raises:
      ValueError: if the model has no variables yet.
    """
    super().__init__(name=name)
    if model.in_channels is None:
      raise ValueError('`model` has no variables yet: restore a checkpoint '
                       'or call model.create_variables(in_channels) first.')
    self.in_channels = model.in_channels
    self.num_classes = model.num_classes
    self.spatial_squeeze = model.spatial_squeeze
    self.final_endpoint = model.final_endpoint
    self.merge_reduces = merge_reduces
    self._strides = {path: unit.stride for path, unit in model.units.items()}
    self._index = {}
    self._w = []
    self._b = []
    folded = {path: self._fold(unit) for path, unit in model.units.items()}
    if merge_reduces:
      for spec in i3d.LAYER_SPECS:
        if isinstance(spec, i3d.MixedSpec) and spec.name in model.layers:
          paths = _reduce_paths(spec)
          w = np.concatenate([folded[p][0] for p in paths], axis=-1)
          b = np.concatenate([folded[p][1] for p in paths], axis=-1)
          for p in paths:
            del folded[p]
          folded[f'{spec.name}/reduces'] = (w, b)
    with self.name_scope:
      for path, (w, b) in folded.items():
        self._index[path] = len(self._w)
        self._w.append(tf.Variable(w, trainable=False, name='w'))
        self._b.append(tf.Variable(b, trainable=False, name='b'))

  @staticmethod
  def _fold(unit: i3d.Unit3D) -> Tuple[np.ndarray, np.ndarray]:
    # In float64, so that folding adds no round-off of its own.
    w = unit.conv_3d.w.numpy().astype(np.float64)
    if unit.use_bias:
      b = unit.conv_3d.b.numpy().astype(np.float64)
    else:
      b = np.zeros(w.shape[-1])
    bn = unit.batch_norm
    if bn is not None:
      mean = bn.moving_mean.value.numpy().astype(np.float64).reshape(-1)
      var = bn.moving_variance.value.numpy().astype(np.float64).reshape(-1)
      inv = 1.0 / np.sqrt(var + bn._eps)  # pylint: disable=protected-access
      offset = bn.offset.numpy().astype(np.float64).reshape(-1)
      b = offset + (b - mean) * inv
      w = w * inv
    return w.astype(np.float32), b.astype(np.float32)

  def unit(self, path: str, x: tf.Tensor, padding: str = 'SAME') -> tf.Tensor:
    i = self._index[path]
    net = tf.nn.conv3d(x, self._w[i], [1, *self._strides[path], 1], padding)
    net = tf.nn.bias_add(net, self._b[i])
    return net if path == i3d.LOGITS_UNIT else tf.nn.relu(net)

  def trunk(self, x: tf.Tensor, endpoint: str = 'Mixed_5c') -> tf.Tensor:
    """The trunk's output at `endpoint` for a whole clip ('SAME' padding)."""
    _check_endpoint('endpoint', endpoint, TRUNK_ENDPOINTS)
    return _trunk(self, x, endpoint)

  def head(self, mixed_5c: tf.Tensor) -> tf.Tensor:
    """Averaged logits from Mixed_5c, as the module's Logits endpoint."""
    pooled = tf.nn.avg_pool3d(mixed_5c, [1, *i3d.LOGITS_POOL, 1], [1] * 5,
                              'VALID')
    logits = self.unit(i3d.LOGITS_UNIT, pooled)
    if self.spatial_squeeze:
      logits = tf.squeeze(logits, [2, 3])
    return tf.reduce_mean(logits, axis=1)

  def reduces(self, spec: i3d.MixedSpec, x: tf.Tensor):
    if not self.merge_reduces:
      return tuple(self.unit(p, x) for p in _reduce_paths(spec))
    i = self._index[f'{spec.name}/reduces']
    net = tf.nn.conv3d(x, self._w[i], [1, 1, 1, 1, 1], 'SAME')
    net = tf.nn.relu(tf.nn.bias_add(net, self._b[i]))
    return tf.split(net, [spec.b0, spec.b1[0], spec.b2[0]], axis=-1)


# --------------------------------------------------------------------------
# Whole-clip computation ('SAME' everywhere).


def _max_pool(x: tf.Tensor, kernel, stride) -> tf.Tensor:
  return tf.nn.max_pool3d(x, [1, *kernel, 1], [1, *stride, 1], 'SAME')


def _trunk(units, x: tf.Tensor, endpoint: str) -> tf.Tensor:
  """The trunk up to `endpoint` on a whole clip."""
  for spec in i3d.LAYER_SPECS:
    if isinstance(spec, i3d.ConvSpec):
      x = units.unit(spec.name, x)
    elif isinstance(spec, i3d.PoolSpec):
      x = _max_pool(x, spec.kernel, spec.stride)
    else:
      b0, b1, b2 = units.reduces(spec, x)
      b1 = units.unit(f'{spec.name}/Branch_1/Conv3d_0b_3x3', b1)
      b2 = units.unit(f'{spec.name}/Branch_2/{spec.b2_conv_name}', b2)
      b3 = _max_pool(x, (3, 3, 3), (1, 1, 1))
      b3 = units.unit(f'{spec.name}/Branch_3/Conv3d_0b_1x1', b3)
      x = tf.concat([b0, b1, b2, b3], axis=4)
    if spec.name == endpoint:
      return x
  raise AssertionError(endpoint)


def _spatial_logits_pool(mixed_5c: tf.Tensor) -> tf.Tensor:
  """The spatial half of the head's [2,7,7] 'VALID' average pool."""
  k = i3d.LOGITS_POOL
  return tf.nn.avg_pool3d(mixed_5c, [1, 1, k[1], k[2], 1], [1] * 5, 'VALID')


def _per_time_logits(units, spatially_pooled: tf.Tensor) -> tf.Tensor:
  """Head before its time mean: [B, T5, H', W', 1024] -> [B, T', H', W', N]."""
  pooled = (spatially_pooled[:, :-1] + spatially_pooled[:, 1:]) * 0.5
  return units.unit(i3d.LOGITS_UNIT, pooled)


# --------------------------------------------------------------------------
# Streaming computation: 'VALID' in time with carried frames.


def _same_pad_spatial(x: tf.Tensor, kernel: Sequence[int],
                      stride: Sequence[int]) -> tf.Tensor:
  """Pads height and width as 'SAME' would for this kernel and stride."""
  pads = [[0, 0], [0, 0]]
  shape = tf.shape(x)
  for axis, k, s in ((2, kernel[1], stride[1]), (3, kernel[2], stride[2])):
    n = shape[axis]
    total = tf.maximum(((n + s - 1) // s - 1) * s + k - n, 0)
    pads.append([total // 2, total - total // 2])
  pads.append([0, 0])
  return tf.pad(x, pads)


def _window(carried: tf.Tensor, new: tf.Tensor, pad_before: tf.Tensor,
            pad_after: tf.Tensor, kernel: int, stride: int):
  """The frames one time op sees this step, and what it carries to the next.

  Args:
    carried: frames left over from the previous step, [B, t, H, W, C].
    new: this step's new input frames, [B, n, H, W, C].
    pad_before: zero frames to put first ('SAME' padding; first step only).
    pad_after: zero frames to put last ('SAME' padding; last step only).
    kernel: the op's time kernel.
    stride: the op's time stride.

  Returns:
    (frames, outputs, carry): the padded sequence, the number of whole
    windows in it (= the op's output frames this step) and the frames the
    next window starts with.
  """
  shape = tf.shape(new)

  def zeros(frames):
    return tf.zeros(tf.stack([shape[0], frames, shape[2], shape[3],
                              shape[4]]), new.dtype)

  seq = tf.concat([zeros(pad_before), carried, new, zeros(pad_after)], 1)
  outputs = tf.maximum((tf.shape(seq)[1] - kernel) // stride + 1, 0)
  return seq, outputs, seq[:, outputs * stride:]


def _time_max_pool(seq: tf.Tensor, kernel: int, stride: int) -> tf.Tensor:
  return tf.nn.max_pool3d(seq, [1, kernel, 1, 1, 1], [1, stride, 1, 1, 1],
                          'VALID')


def _stream_trunk(units, x: tf.Tensor, carried: Sequence[tf.Tensor],
                  pads: tf.Tensor, endpoint: str
                  ) -> Tuple[tf.Tensor, List[tf.Tensor]]:
  """One chunk of the trunk: 'VALID' in time, with carried frames.

  Max pools are split into a 'SAME' spatial pool and a 'VALID' time pool
  (max is separable, so this is exact); their time padding is zeros, which
  equals 'SAME''s ignored padding because every pool input is a ReLU output.

  Args:
    units: _PlainUnits or FoldedI3D.
    x: the chunk's new frames, [B, n, H, W, C].
    carried: the carried frames, as _carry_specs lists them.
    pads: int32 [num layers, 2], the (before, after) zero frames each layer
      adds this step (see _time_pads).
    endpoint: the last layer.

  Returns:
    (the endpoint's new output frames, the new carried frames).
  """
  carried = iter(carried)
  carry = []
  for li, spec in enumerate(i3d.LAYER_SPECS):
    before, after = pads[li, 0], pads[li, 1]
    if isinstance(spec, i3d.ConvSpec):
      kt, st = spec.kernel[0], spec.stride[0]
      if kt > 1:
        seq, _, rest = _window(next(carried), x, before, after, kt, st)
        carry.append(rest)
        x = units.unit(spec.name, _same_pad_spatial(seq, spec.kernel,
                                                    spec.stride), 'VALID')
      else:
        x = units.unit(spec.name, x)
    elif isinstance(spec, i3d.PoolSpec):
      kt, st = spec.kernel[0], spec.stride[0]
      x = _max_pool(x, (1, *spec.kernel[1:]), (1, *spec.stride[1:]))
      if kt > 1:
        seq, _, rest = _window(next(carried), x, before, after, kt, st)
        carry.append(rest)
        x = _time_max_pool(seq, kt, st)
    else:
      b0, b1, b2 = units.reduces(spec, x)
      b3 = _max_pool(x, (1, 3, 3), (1, 1, 1))
      # The three kernel-3 branches all pad one frame each side.
      seq1, count, rest = _window(next(carried), b1, before, after, 3, 1)
      carry.append(rest)
      seq2, _, rest = _window(next(carried), b2, before, after, 3, 1)
      carry.append(rest)
      seq3, _, rest = _window(next(carried), b3, before, after, 3, 1)
      carry.append(rest)
      b1 = units.unit(f'{spec.name}/Branch_1/Conv3d_0b_3x3',
                      _same_pad_spatial(seq1, (3, 3, 3), (1, 1, 1)), 'VALID')
      b2 = units.unit(f'{spec.name}/Branch_2/{spec.b2_conv_name}',
                      _same_pad_spatial(seq2, (3, 3, 3), (1, 1, 1)), 'VALID')
      b3 = units.unit(f'{spec.name}/Branch_3/Conv3d_0b_1x1',
                      _time_max_pool(seq3, 3, 1))
      # Branch_0 has no time kernel, so it runs ahead of the other three:
      # its newest frames wait in a queue for theirs.
      queue = tf.concat([next(carried), b0], axis=1)
      carry.append(queue[:, count:])
      x = tf.concat([queue[:, :count], b1, b2, b3], axis=4)
    if spec.name == endpoint:
      return x, carry
  raise AssertionError(endpoint)


def _carry_specs(endpoint: str, in_channels: int
                 ) -> List[Tuple[int, int]]:
  """(spatial stride, channels) of each carried tensor, in _stream_trunk order.
  """
  specs = []
  stride, channels = 1, in_channels
  for spec in i3d.LAYER_SPECS:
    if isinstance(spec, i3d.ConvSpec):
      if spec.kernel[0] > 1:
        specs.append((stride, channels))
      stride *= spec.stride[1]
      channels = spec.channels
    elif isinstance(spec, i3d.PoolSpec):
      stride *= spec.stride[1]
      if spec.kernel[0] > 1:
        specs.append((stride, channels))
    else:
      specs += [(stride, spec.b1[0]), (stride, spec.b2[0]),
                (stride, channels), (stride, spec.b0)]
      channels = spec.out_channels
    if spec.name == endpoint:
      return specs
  raise AssertionError(endpoint)


def _grid_period(endpoint: str) -> int:
  """The m such that every multiple of m frames gets the same time padding.

  The before-padding of the stride-2 layers depends on their input lengths
  (see the module docstring); up to Mixed_5c it is set by T mod 4.
  """
  for m in (1, 2, 4, 8, 16, 32):
    befores = {tuple(b for b, _ in _time_pads(endpoint, m * q))
               for q in (1, 2, 3, 5, 7)}
    if len(befores) == 1:
      return m
  raise AssertionError(endpoint)


# --------------------------------------------------------------------------
# The Predictor.


class Predictor:
  """Logits and features of a built, weight-loaded InceptionI3d.

  Create with make_predictor. Every method takes float32 frames in [-1, 1]
  and returns numpy arrays. Inputs longer than `chunk_frames` are streamed
  (see the module docstring), with the same result as one whole pass.
  """

  def __init__(self, model: i3d.InceptionI3d, path: str, chunk_frames: int):
    self.model = model
    self.path = path
    self.chunk_frames = chunk_frames
    self.in_channels = model.in_channels
    self.has_head = model.final_endpoint in HEAD_ENDPOINTS
    last = (len(i3d.VALID_ENDPOINTS) if self.has_head else
            i3d.VALID_ENDPOINTS.index(model.final_endpoint) + 1)
    self.endpoints = i3d.VALID_ENDPOINTS[:last]
    if path == 'plain':
      self._units = _PlainUnits(model)
    else:
      self._units = FoldedI3D(model)
    self._whole_fns = {}
    self._step_fns = {}
    self._head_fn = None

  # ---- public API ----------------------------------------------------------

  def logits(self, video: np.ndarray) -> np.ndarray:
    """Logits averaged over time, as `model(video, is_training=False)`.

    Args:
      video: float32 [B, T, H, W, C] with T >= 9 and 193 <= H, W <= 224
        (any H, W >= 193 when the model does not squeeze space).

    Returns:
      [B, num_classes] ([B, H', W', num_classes] without spatial squeeze).

    Raises:
      ValueError: if the model has no Logits head or the video's shape does
        not fit.
    """
    video = self._check_video(video, 'Logits')
    if video.shape[1] <= self.chunk_frames:
      return self._whole('Logits', 'mean')(video).numpy()
    pooled = self._stream([video], 'Logits', video.shape[1], batched=True)
    return self._head(pooled, time_mean=True)

  def logits_stream(self, chunks: Iterable[np.ndarray],
                    num_frames: Optional[int] = None) -> np.ndarray:
    """Logits of one long video given as consecutive chunks of frames.

    Holds at most about `chunk_frames` frames at a time, whatever the length.

    Args:
      chunks: arrays of frames, [t, H, W, C] each (any t >= 1), in order.
      num_frames: the video's total length, if known. Then the result equals
        `logits(video[None])[0]`; else the last T mod 4 frames are dropped
        (see the module docstring) and it equals `logits` of the rest.

    Returns:
      [num_classes] ([H', W', num_classes] without spatial squeeze).

    Raises:
      ValueError: on a missing head, a bad chunk, or a stream whose length
        differs from `num_frames` or is too short.
    """
    self._check_endpoint('Logits')
    pooled = self._stream(chunks, 'Logits', num_frames, batched=False)
    return self._head(pooled, time_mean=True)[0]

  def features(self, video: np.ndarray,
               endpoint: str = 'Mixed_5c') -> np.ndarray:
    """The endpoint's output averaged over time and space.

    Args:
      video: float32 [B, T, H, W, C].
      endpoint: one of `self.endpoints`. For 'Logits' these are the logits,
        for 'Predictions' their softmax.

    Returns:
      [B, channels] ([B, num_classes] for the head endpoints).

    Raises:
      ValueError: on an unknown or unavailable endpoint or a bad video.
    """
    if endpoint in HEAD_ENDPOINTS:
      self._check_endpoint(endpoint)
      logits = self.logits(video)
      return logits if endpoint == 'Logits' else _softmax(logits)
    video = self._check_video(video, endpoint)
    if video.shape[1] <= self.chunk_frames:
      return self._whole(endpoint, 'mean')(video).numpy()
    per_time = self._stream([video], endpoint, video.shape[1], batched=True)
    return per_time.mean(axis=1, dtype=np.float64).astype(np.float32)

  def temporal_features(self, video: np.ndarray,
                        endpoint: str = 'Mixed_5c') -> np.ndarray:
    """The endpoint's output averaged over space, per output timestep.

    Args:
      video: float32 [B, T, H, W, C].
      endpoint: one of `self.endpoints`. For 'Logits', the logits of each of
        the head's T/8 - 1 time positions before their average (averaged over
        space when not squeezed); for 'Predictions' their softmax.

    Returns:
      [B, T_e, channels].

    Raises:
      ValueError: on an unknown or unavailable endpoint or a bad video.
    """
    video = self._check_video(video, endpoint)
    head = endpoint in HEAD_ENDPOINTS
    if video.shape[1] <= self.chunk_frames:
      out = self._whole(endpoint, 'time')(video).numpy()
    elif head:
      pooled = self._stream([video], 'Logits', video.shape[1], batched=True)
      out = self._head(pooled, time_mean=False)
    else:
      out = self._stream([video], endpoint, video.shape[1], batched=True)
    return _softmax(out) if endpoint == 'Predictions' else out

  # ---- checks --------------------------------------------------------------

  def _check_endpoint(self, endpoint: str) -> None:
    _check_endpoint('endpoint', endpoint, self.endpoints)

  def _check_video(self, video, endpoint: str) -> np.ndarray:
    self._check_endpoint(endpoint)
    video = np.asarray(video, dtype=np.float32)
    if video.ndim != 5 or video.shape[-1] != self.in_channels:
      raise ValueError(
          f'`video` must be [batch, frames, height, width, '
          f'{self.in_channels}]; got shape {video.shape}.')
    self._check_size(video.shape[1:4], endpoint, 'video')
    return video

  def _check_size(self, size: Sequence[int], endpoint: str, arg: str):
    frames, height, width = size
    min_frames, min_pixels = i3d.min_input_size(endpoint)
    if frames < min_frames or min(height, width) < min_pixels or 0 in size:
      raise ValueError(
          f'`{arg}` is too small for endpoint {endpoint!r}: it needs at least '
          f'{min_frames} frames of {min_pixels}x{min_pixels} pixels; got '
          f'{frames} frames of {height}x{width}.')
    if endpoint in HEAD_ENDPOINTS and self.model.spatial_squeeze:
      sh = i3d.strides_up_to('Mixed_5c')[1]
      pooled = [-(-n // sh) - i3d.LOGITS_POOL[1] + 1 for n in (height, width)]
      if pooled != [1, 1]:
        raise ValueError(
            f'`{arg}` frames of {height}x{width} pixels leave a {pooled[0]}x'
            f'{pooled[1]} logits map, which a spatially squeezed model cannot'
            f' squeeze; valid sizes are {(i3d.LOGITS_POOL[1] - 1) * sh + 1} '
            f'to {i3d.LOGITS_POOL[1] * sh} pixels.')

  # ---- whole clips ---------------------------------------------------------

  def _whole(self, endpoint: str, reduction: str):
    """A traced whole-clip function: 'mean' over T,H,W or per 'time'."""
    key = (endpoint, reduction)
    if key not in self._whole_fns:
      spec = tf.TensorSpec([None, None, None, None, self.in_channels],
                           tf.float32)
      fn = self._whole_plain if self.path == 'plain' else self._whole_fast
      self._whole_fns[key] = tf.function(
          lambda x: fn(x, endpoint, reduction), input_signature=[spec])
    return self._whole_fns[key]

  def _whole_fast(self, x, endpoint, reduction):
    if endpoint not in HEAD_ENDPOINTS:
      out = _trunk(self._units, x, endpoint)
      return tf.reduce_mean(out, [1, 2, 3] if reduction == 'mean' else [2, 3])
    mixed_5c = _trunk(self._units, x, 'Mixed_5c')
    if reduction == 'mean':
      return self._units.head(mixed_5c)
    pooled = tf.nn.avg_pool3d(mixed_5c, [1, *i3d.LOGITS_POOL, 1], [1] * 5,
                              'VALID')
    return self._finish_logits(self._units.unit(i3d.LOGITS_UNIT, pooled),
                               reduction)

  def _whole_plain(self, x, endpoint, reduction):
    if endpoint in HEAD_ENDPOINTS and reduction == 'mean':
      return self.model(x, is_training=False)[1]['Logits']
    _, end_points = self.model(x, is_training=False)
    if endpoint not in HEAD_ENDPOINTS:
      out = end_points[endpoint]
      return tf.reduce_mean(out, [1, 2, 3] if reduction == 'mean' else [2, 3])
    pooled = tf.nn.avg_pool3d(end_points['Mixed_5c'],
                              [1, *i3d.LOGITS_POOL, 1], [1] * 5, 'VALID')
    return self._finish_logits(self._units.unit(i3d.LOGITS_UNIT, pooled),
                               reduction)

  def _finish_logits(self, logits: tf.Tensor, reduction: str) -> tf.Tensor:
    """[B, T', H', W', N] -> the module's averaged logits, or per time."""
    if reduction == 'time':
      return tf.reduce_mean(logits, [2, 3])
    if self.model.spatial_squeeze:
      logits = tf.squeeze(logits, [2, 3])
    return tf.reduce_mean(logits, axis=1)

  def _head(self, spatially_pooled: np.ndarray, time_mean: bool) -> np.ndarray:
    """The head on per-timestep [7,7]-pooled Mixed_5c features."""
    if self._head_fn is None:
      spec = tf.TensorSpec([None, None, None, None, i3d.FEATURE_CHANNELS],
                           tf.float32)
      self._head_fn = tf.function(
          lambda p: _per_time_logits(self._units, p), input_signature=[spec])
    logits = self._head_fn(spatially_pooled)
    return self._finish_logits(
        logits, 'mean' if time_mean else 'time').numpy()

  # ---- streams -------------------------------------------------------------

  def _step(self, endpoint: str):
    """The traced streaming step of the trunk up to `endpoint`.

    For 'Logits' it runs to Mixed_5c and returns each new frame's [7,7]
    average-pooled map; otherwise the spatial mean of each new frame.
    """
    if endpoint not in self._step_fns:
      trunk_end = 'Mixed_5c' if endpoint in HEAD_ENDPOINTS else endpoint
      carry = [tf.TensorSpec([None, None, None, None, c], tf.float32)
               for _, c in _carry_specs(trunk_end, self.in_channels)]
      specs = [tf.TensorSpec([None, None, None, None, self.in_channels],
                             tf.float32),
               carry,
               tf.TensorSpec([None, 2], tf.int32)]

      def step(x, carried, pads):
        out, carried = _stream_trunk(self._units, x, carried, pads, trunk_end)
        if endpoint in HEAD_ENDPOINTS:
          return _spatial_logits_pool(out), carried
        return tf.reduce_mean(out, [2, 3]), carried

      self._step_fns[endpoint] = tf.function(step, input_signature=specs)
    return self._step_fns[endpoint]

  def _stream(self, chunks: Iterable[np.ndarray], endpoint: str,
              num_frames: Optional[int], batched: bool) -> np.ndarray:
    """Streams frames through the trunk; returns [B, T_e, ...] outputs."""
    trunk_end = 'Mixed_5c' if endpoint in HEAD_ENDPOINTS else endpoint
    if num_frames is not None and (not isinstance(num_frames, int) or
                                   num_frames < 1):
      raise ValueError(
          f'`num_frames` must be a positive int or None; got {num_frames!r}.')
    period = _grid_period(trunk_end)
    first = _round_up(max(self.chunk_frames, first_chunk_frames(trunk_end)),
                      _TIME_STRIDE)
    step = self._step(endpoint)
    carried = None
    outputs = []
    grid_frames = num_frames or period  # Any multiple of the period.
    befores = np.array([b for b, _ in _time_pads(trunk_end, grid_frames)],
                       np.int32)
    for frames, total, is_last in _rechunk(chunks, first, self.chunk_frames,
                                           period, batched,
                                           self.in_channels, num_frames):
      if carried is None:
        self._check_size((max(num_frames or 0, frames.shape[1]),
                          *frames.shape[2:4]), endpoint, 'chunks')
        carried = [
            tf.zeros([frames.shape[0], 0, -(-frames.shape[2] // s),
                      -(-frames.shape[3] // s), c])
            for s, c in _carry_specs(trunk_end, self.in_channels)]
        pads = np.zeros([len(befores), 2], np.int32)
        pads[:, 0] = befores
      else:
        pads = np.zeros([len(befores), 2], np.int32)
      if is_last:
        if num_frames is None and total % period:
          logging.info('Stream of %d frames: dropping the last %d to keep '
                       'the stride grid of its first frames.', total,
                       total % period)
          frames = frames[:, :frames.shape[1] - total % period]
          total -= total % period
        self._check_size((total, *frames.shape[2:4]), endpoint, 'chunks')
        pads[:, 1] = [a for _, a in _time_pads(trunk_end, total)]
      out, carried = step(tf.constant(frames), carried, tf.constant(pads))
      outputs.append(out.numpy())
    return np.concatenate(outputs, axis=1)


def _softmax(logits: np.ndarray) -> np.ndarray:
  return tf.nn.softmax(logits).numpy()


def _round_up(n: int, m: int) -> int:
  return -(-n // m) * m


def _rechunk(pieces: Iterable[np.ndarray], first: int, chunk: int,
             period: int, batched: bool, channels: int,
             num_frames: Optional[int]
             ) -> Iterator[Tuple[np.ndarray, int, bool]]:
  """Regroups frame arrays into a `first` chunk, then `chunk`-frame chunks.

  Yields (frames [B, t, H, W, C], frames so far, is_last). The last chunk
  keeps at least `period` frames (when there are that many), so that a
  stream of unknown length can drop up to period - 1 frames from its end.
  """
  buffered: collections.deque = collections.deque()
  count = total = 0
  need = first
  shape = None
  for piece in pieces:
    piece = np.asarray(piece, dtype=np.float32)
    if not batched:
      piece = piece[None]
    if (piece.ndim != 5 or piece.shape[-1] != channels or
        (shape is not None and piece.shape[2:] != shape[2:]) or
        (shape is not None and piece.shape[0] != shape[0])):
      want = ('[batch, frames, height, width, {c}]' if batched else
              '[frames, height, width, {c}]').format(c=channels)
      got = piece.shape if batched else piece.shape[1:]
      raise ValueError(
          f'Every chunk of frames must be {want} with the same size as the '
          f'first; got shape {got}' +
          (f' after {shape[1:] if batched else shape[2:]}.' if shape else '.'))
    shape = piece.shape
    if piece.shape[1] == 0:
      continue
    buffered.append(piece)
    count += piece.shape[1]
    total += piece.shape[1]
    if num_frames is not None and total > num_frames:
      raise ValueError(f'The stream has more frames than `num_frames` '
                       f'{num_frames}.')
    while count >= need + period:
      out = _take(buffered, need)
      count -= need
      yield out, total - count, False
      need = chunk
  if count == 0:
    raise ValueError('The stream of frames is empty.')
  if num_frames is not None and total != num_frames:
    raise ValueError(f'The stream has {total} frames but `num_frames` is '
                     f'{num_frames}.')
  yield _take(buffered, count), total, True


def _take(buffered: collections.deque, frames: int) -> np.ndarray:
  """Pops the first `frames` frames off a deque of [B, t, ...] arrays."""
  parts = []
  while frames:
    piece = buffered.popleft()
    if piece.shape[1] > frames:
      buffered.appendleft(piece[:, frames:])
      piece = piece[:, :frames]
    parts.append(piece)
    frames -= piece.shape[1]
  return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def make_predictor(model: i3d.InceptionI3d, path: str = DEFAULT_PATH,
                   chunk_frames: Optional[int] = None) -> Predictor:
  """A Predictor for a built, weight-loaded model.

  Args:
    model: an InceptionI3d whose variables exist (restored or assigned).
    path: one of PATHS.
    chunk_frames: inputs longer than this are streamed in chunks of this
      many frames; a positive multiple of 8; DEFAULT_CHUNK_FRAMES when None.

  Returns:
    The Predictor. The fast path copies the folded weights: make a new
    Predictor after the model's weights change.

  Raises:
    ValueError: on a bad `path` or `chunk_frames`, or a model without
      variables.
  """
  _check_endpoint('path', path, PATHS)
  if chunk_frames is None:
    chunk_frames = DEFAULT_CHUNK_FRAMES
  if (not isinstance(chunk_frames, int) or chunk_frames < 1 or
      chunk_frames % _TIME_STRIDE):
    raise ValueError(f'`chunk_frames` must be a positive multiple of '
                     f'{_TIME_STRIDE} or None; got {chunk_frames!r}.')
  if model.in_channels is None:
    raise ValueError('`model` has no variables yet: restore a checkpoint or '
                     'call model.create_variables(in_channels) first.')
  return Predictor(model, path, chunk_frames)
