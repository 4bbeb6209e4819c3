"""Fast, exact I3D inference: folded BatchNorm, and the Predictor.

Both computation modes run the one forward pass, i3d.run_trunk and
i3d.logits_head, and give the same numbers as the module
(`model(video, is_training=False)`), to float32 round-off:

  * 'plain': the module's own units (conv, BatchNorm, ReLU), traced.
  * 'fast':  FoldedI3D, derived from the module: every Unit3D's
    inference-time BatchNorm folded into its conv
    (w' = w * rsqrt(var + eps) per output channel, b' = offset - mean *
    rsqrt(var + eps)), so a unit is conv3d + bias + relu; and in each Mixed
    block the three 1x1x1 convs that read the block input (Branch_0, and the
    reduces of Branch_1 and Branch_2) run as one wider conv and a split.

Precision. The fast mode also computes in bfloat16 when asked
(`make_predictor(model, precision='bfloat16')`): the folded trunk weights
and the activations are rounded to bfloat16, and oneDNN runs the convs on
the CPU's bfloat16 units (AVX512_BF16 or AMX; elsewhere they are emulated
and slower). The Logits head stays in float32. This is an opt-in: bfloat16
keeps 8 significant bits, so the logits move and the results are no longer
the module's to round-off (README "Speed" gives the measured error and
speed).

Whole videos. A clip longer than `chunk_frames` is streamed through the trunk
in chunks with the same result as one whole pass (streaming.py explains how,
and why a stream must know its length: `logits_stream` takes `num_frames`;
without it the last T mod 4 frames are dropped, so the result equals
`logits(video[:, :T - T % 4])` exactly). The Logits head is applied once at
the end to the per-timestep [7,7]-pooled Mixed_5c features.

Usage:

  inference.configure_threads()            # entry points, before any op runs
  model = checkpoints.load_model('data/checkpoints/rgb_imagenet/model.ckpt')
  predictor = inference.make_predictor(model)        # mode 'fast'
  logits = predictor.logits(video)                   # [B, 400]
  logits = predictor.logits_stream(frame_chunks)     # [400], batch 1
  feats = predictor.features(video, 'Mixed_5c')      # [B, 1024]
  fast16 = inference.make_predictor(model, precision='bfloat16')  # opt-in
"""

from __future__ import annotations

import functools
import os
from typing import (
    Callable,
    Dict,
    Iterable,
    Mapping,
    Optional,
    Sequence,
    Tuple,
)

import runtime  # pylint: disable=g-bad-import-order

runtime.setup()  # Before TensorFlow loads: its oneDNN kernels on.
from absl import logging
import numpy as np
import tensorflow as tf

import checkpoints
import i3d
import streaming

# Computation modes of a Predictor; see the module docstring. 'plain' is the
# check of 'fast' in the tests and benchmark.py.
MODES = ('fast', 'plain')
DEFAULT_MODE = 'fast'

# Precisions of the fast mode's trunk; see the module docstring. bfloat16
# changes the numbers, so it is never the default.
PRECISIONS = ('float32', 'bfloat16')
DEFAULT_PRECISION = 'float32'
# /proc/cpuinfo flags of the CPUs that compute bfloat16 natively.
BF16_CPU_FLAGS = ('avx512_bf16', 'amx_bf16')

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


def configure_threads(
    num_threads: Optional[int] = None, inter_op_threads: int = INTER_OP_THREADS
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
  for arg, value in (
      ('num_threads', num_threads),
      ('inter_op_threads', inter_op_threads),
  ):
    if not isinstance(value, int) or value < 1:
      raise ValueError(f'`{arg}` must be a positive int; got {value!r}.')
  try:
    tf.config.threading.set_intra_op_parallelism_threads(num_threads)
    tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
  except RuntimeError as e:  # The runtime is already initialized.
    logging.warning(
        'Thread pools left as they are (%s): %s',
        (
            tf.config.threading.get_intra_op_parallelism_threads(),
            tf.config.threading.get_inter_op_parallelism_threads(),
        ),
        e,
    )
  return num_threads, inter_op_threads


# --------------------------------------------------------------------------
# The folded units: conv + bias (+ ReLU), for i3d.run_trunk.


class FoldedI3D(tf.Module):
  """The inference-time I3D with each BatchNorm folded into its conv.

  Holds its own copies of the folded weights as variables, so it can be
  saved; build a new one after the model's weights change. The trunk's
  units compute in `dtype` (their inputs must have it: `trunk` casts); the
  Logits unit always in float32.
  """

  def __init__(
      self,
      model: i3d.InceptionI3d,
      merge_reduces: bool = True,
      name: str = 'folded_i3d',
      dtype: tf.DType = tf.float32,
  ):
    """Folds `model`'s weights.

    Args:
      model: a built InceptionI3d with its weights loaded.
      merge_reduces: run the three 1x1x1 convs that read a Mixed block's
        input as one conv and a split.
      name: module name.
      dtype: the trunk's compute dtype, tf.float32 or tf.bfloat16 (the
        weights are folded in float64, then rounded to it).

    Raises:
      ValueError: if the model has no variables yet.
    """
    super().__init__(name=name)
    if model.in_channels is None:
      raise ValueError(
          '`model` has no variables yet: restore a checkpoint '
          'or call model.create_variables(in_channels) first.'
      )
    self.in_channels = model.in_channels
    self.num_classes = model.num_classes
    self.spatial_squeeze = model.spatial_squeeze
    self.final_endpoint = model.final_endpoint
    self.merge_reduces = merge_reduces
    self.dtype = tf.as_dtype(dtype)
    self._strides = {path: unit.stride for path, unit in model.units.items()}
    self._linear = tuple(
        path for path, unit in model.units.items() if unit.activation_fn is None
    )
    self._index = {}
    self._w = []
    self._b = []
    folded = {path: self._fold(unit) for path, unit in model.units.items()}
    if merge_reduces:
      for spec in i3d.LAYER_SPECS:
        if isinstance(spec, i3d.MixedSpec) and spec.name in model.layers:
          paths = i3d.reduce_paths(spec)
          w = np.concatenate([folded[p][0] for p in paths], axis=-1)
          b = np.concatenate([folded[p][1] for p in paths], axis=-1)
          for p in paths:
            del folded[p]
          folded[f'{spec.name}/reduces'] = (w, b)
    with self.name_scope:
      for path, (w, b) in folded.items():
        dtype = tf.float32 if path == i3d.LOGITS_UNIT else self.dtype
        self._index[path] = len(self._w)
        self._w.append(
            tf.Variable(tf.cast(w, dtype), trainable=False, name='w')
        )
        self._b.append(
            tf.Variable(tf.cast(b, dtype), trainable=False, name='b')
        )

  @staticmethod
  def _fold(unit: i3d.Unit3D) -> Tuple[np.ndarray, np.ndarray]:
    if unit.activation_fn not in (None, tf.nn.relu):
      raise ValueError(
          f'Only ReLU or linear units can be folded; got {unit.activation_fn}.'
      )
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
    """The folded unit at `path`: conv, bias, and ReLU where it has one."""
    i = self._index[path]
    net = tf.nn.conv3d(x, self._w[i], [1, *self._strides[path], 1], padding)
    net = tf.nn.bias_add(net, self._b[i])
    return net if path in self._linear else tf.nn.relu(net)

  def reduces(self, spec: i3d.MixedSpec, x: tf.Tensor):
    """The block's three reduces, as one conv and a split when merged."""
    if not self.merge_reduces:
      return tuple(self.unit(p, x) for p in i3d.reduce_paths(spec))
    i = self._index[f'{spec.name}/reduces']
    net = tf.nn.conv3d(x, self._w[i], [1, 1, 1, 1, 1], 'SAME')
    net = tf.nn.relu(tf.nn.bias_add(net, self._b[i]))
    return tf.split(net, [spec.b0, spec.b1[0], spec.b2[0]], axis=-1)

  def trunk(self, x: tf.Tensor, endpoint: str = 'Mixed_5c') -> tf.Tensor:
    """The trunk's float32 output at `endpoint` for a whole clip ('SAME')."""
    streaming.check_endpoint('endpoint', endpoint, TRUNK_ENDPOINTS)
    out = i3d.run_trunk(self, tf.cast(x, self.dtype), endpoint)[0]
    return tf.cast(out, tf.float32)

  def head(self, mixed_5c: tf.Tensor) -> tf.Tensor:
    """Averaged logits from Mixed_5c, as the module's Logits endpoint."""
    return i3d.logits_head(
        functools.partial(self.unit, i3d.LOGITS_UNIT),
        i3d.logits_pool(mixed_5c),
        self.spatial_squeeze,
    )


# --------------------------------------------------------------------------
# The Predictor.


class Predictor:
  """Logits and features of a built, weight-loaded InceptionI3d.

  Create with make_predictor. Every method takes float32 frames in [-1, 1]
  and returns numpy arrays. Inputs longer than `chunk_frames` are streamed
  (see the module docstring), with the same result as one whole pass.
  """

  def __init__(
      self,
      model: i3d.InceptionI3d,
      mode: str,
      chunk_frames: int,
      precision: str = DEFAULT_PRECISION,
  ):
    self.model = model
    self.mode = mode
    self.chunk_frames = chunk_frames
    self.precision = precision
    self._dtype = tf.as_dtype(precision)
    self.in_channels = model.in_channels
    self.has_head = model.final_endpoint in HEAD_ENDPOINTS
    last = (
        len(i3d.VALID_ENDPOINTS)
        if self.has_head
        else i3d.VALID_ENDPOINTS.index(model.final_endpoint) + 1
    )
    self.endpoints = i3d.VALID_ENDPOINTS[:last]
    if mode == 'plain':
      self._units = i3d.ModuleUnits(model.units, is_training=False)
    else:
      self._units = FoldedI3D(model, dtype=self._dtype)
    self._whole_fns = {}
    self._step_fns = {}
    self._head_fns = {}

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

  def logits_stream(
      self,
      chunks: Iterable[np.ndarray],
      num_frames: Optional[int] = None,
      on_frames: Optional[Callable[[int], object]] = None,
  ) -> np.ndarray:
    """Logits of one long video given as consecutive chunks of frames.

    Holds at most about `chunk_frames` frames at a time, whatever the length.

    Args:
      chunks: arrays of frames, [t, H, W, C] each (any t >= 1), in order.
      num_frames: the video's total length, if known. Then the result equals
        `logits(video[None])[0]`; else the last T mod 4 frames are dropped
        (see the module docstring) and it equals `logits` of the rest.
      on_frames: called with the number of frames after each chunk has run
        through the network (e.g. a progress bar's `update`).

    Returns:
      [num_classes] ([H', W', num_classes] without spatial squeeze).

    Raises:
      ValueError: on a missing head, a bad chunk, or a stream whose length
        differs from `num_frames` or is too short.
    """
    self._check_endpoint('Logits')
    pooled = self._stream(
        chunks, 'Logits', num_frames, batched=False, on_frames=on_frames
    )
    return self._head(pooled, time_mean=True)[0]

  def features(
      self, video: np.ndarray, endpoint: str = 'Mixed_5c'
  ) -> np.ndarray:
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

  def temporal_features(
      self, video: np.ndarray, endpoint: str = 'Mixed_5c'
  ) -> np.ndarray:
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
    streaming.check_endpoint('endpoint', endpoint, self.endpoints)

  def _check_video(self, video, endpoint: str) -> np.ndarray:
    self._check_endpoint(endpoint)
    video = np.asarray(video, dtype=np.float32)
    if video.ndim != 5 or video.shape[-1] != self.in_channels:
      raise ValueError(
          f'`video` must be [batch, frames, height, width, '
          f'{self.in_channels}]; got shape {video.shape}.'
      )
    self._check_size(video.shape[1:4], endpoint, 'video')
    return video

  def _check_size(self, size: Sequence[int], endpoint: str, arg: str):
    frames, height, width = size
    min_frames, min_pixels = i3d.min_input_size(endpoint)
    if frames < min_frames or min(height, width) < min_pixels or 0 in size:
      raise ValueError(
          f'`{arg}` is too small for endpoint {endpoint!r}: it needs at least '
          f'{min_frames} frames of {min_pixels}x{min_pixels} pixels; got '
          f'{frames} frames of {height}x{width}.'
      )
    if endpoint in HEAD_ENDPOINTS and self.model.spatial_squeeze:
      sh = i3d.strides_up_to('Mixed_5c')[1]
      pooled = [-(-n // sh) - i3d.LOGITS_POOL[1] + 1 for n in (height, width)]
      if pooled != [1, 1]:
        raise ValueError(
            f'`{arg}` frames of {height}x{width} pixels leave a {pooled[0]}x'
            f'{pooled[1]} logits map, which a spatially squeezed model cannot'
            f' squeeze; valid sizes are {(i3d.LOGITS_POOL[1] - 1) * sh + 1} '
            f'to {i3d.LOGITS_POOL[1] * sh} pixels.'
        )

  # ---- whole clips ---------------------------------------------------------

  def _whole(self, endpoint: str, reduction: str):
    """A traced whole-clip function: 'mean' over T,H,W or per 'time'."""
    key = (endpoint, reduction)
    if key not in self._whole_fns:
      spec = tf.TensorSpec(
          [None, None, None, None, self.in_channels], tf.float32
      )
      self._whole_fns[key] = tf.function(
          lambda x: self._whole_graph(x, endpoint, reduction),
          input_signature=[spec],
      )
    return self._whole_fns[key]

  def _whole_graph(self, x, endpoint, reduction):
    x = tf.cast(x, self._dtype)
    out, _ = i3d.run_trunk(self._units, x, i3d.trunk_endpoint(endpoint))
    out = tf.cast(out, tf.float32)
    if endpoint not in HEAD_ENDPOINTS:
      return tf.reduce_mean(out, [1, 2, 3] if reduction == 'mean' else [2, 3])
    return self._logits(i3d.logits_pool(out), reduction == 'time')

  def _logits(self, pooled: tf.Tensor, per_time: bool) -> tf.Tensor:
    return i3d.logits_head(
        functools.partial(self._units.unit, i3d.LOGITS_UNIT),
        pooled,
        self.model.spatial_squeeze,
        per_time=per_time,
    )

  def _head(self, spatially_pooled: np.ndarray, time_mean: bool) -> np.ndarray:
    """The head on per-timestep [7,7]-pooled Mixed_5c features."""
    per_time = not time_mean
    if per_time not in self._head_fns:
      spec = tf.TensorSpec(
          [None, None, None, None, i3d.FEATURE_CHANNELS], tf.float32
      )
      self._head_fns[per_time] = tf.function(
          lambda p: self._logits(streaming.time_logits_pool(p), per_time),
          input_signature=[spec],
      )
    return self._head_fns[per_time](spatially_pooled).numpy()

  # ---- streams -------------------------------------------------------------

  def _step(self, endpoint: str):
    """The traced streaming step of the trunk up to `endpoint`.

    For 'Logits' it runs to Mixed_5c and returns each new frame's [7,7]
    average-pooled map; otherwise the spatial mean of each new frame.
    """
    if endpoint not in self._step_fns:
      trunk_end = i3d.trunk_endpoint(endpoint)
      carry = [
          tf.TensorSpec([None, None, None, None, c], self._dtype)
          for _, c in streaming.carry_specs(trunk_end, self.in_channels)
      ]
      specs = [
          tf.TensorSpec([None, None, None, None, self.in_channels], tf.float32),
          carry,
          tf.TensorSpec([None, 2], tf.int32),
      ]

      def step(x, carried, pads):
        out, carried = streaming.stream_trunk(
            self._units, tf.cast(x, self._dtype), carried, pads, trunk_end
        )
        out = tf.cast(out, tf.float32)
        if endpoint in HEAD_ENDPOINTS:
          return streaming.spatial_logits_pool(out), carried
        return tf.reduce_mean(out, [2, 3]), carried

      self._step_fns[endpoint] = tf.function(step, input_signature=specs)
    return self._step_fns[endpoint]

  def _stream(
      self,
      chunks: Iterable[np.ndarray],
      endpoint: str,
      num_frames: Optional[int],
      batched: bool,
      on_frames: Optional[Callable[[int], object]] = None,
  ) -> np.ndarray:
    """Streams frames through the trunk; returns [B, T_e, ...] outputs."""
    trunk_end = i3d.trunk_endpoint(endpoint)
    if num_frames is not None and (
        not isinstance(num_frames, int) or num_frames < 1
    ):
      raise ValueError(
          f'`num_frames` must be a positive int or None; got {num_frames!r}.'
      )
    period = streaming.grid_period(trunk_end)
    first = streaming.round_up(
        max(self.chunk_frames, streaming.first_chunk_frames(trunk_end)),
        streaming.TIME_STRIDE,
    )
    step = self._step(endpoint)
    carried = None
    outputs = []
    grid_frames = num_frames or period  # Any multiple of the period.
    befores = np.array(
        [b for b, _ in streaming.time_pads(trunk_end, grid_frames)], np.int32
    )
    for frames, total, is_last in streaming.rechunk(
        chunks,
        first,
        self.chunk_frames,
        period,
        batched,
        self.in_channels,
        num_frames,
    ):
      if carried is None:
        self._check_size(
            (max(num_frames or 0, frames.shape[1]), *frames.shape[2:4]),
            endpoint,
            'chunks',
        )
        carried = [
            tf.zeros(
                [
                    frames.shape[0],
                    0,
                    -(-frames.shape[2] // s),
                    -(-frames.shape[3] // s),
                    c,
                ],
                self._dtype,
            )
            for s, c in streaming.carry_specs(trunk_end, self.in_channels)
        ]
        pads = np.zeros([len(befores), 2], np.int32)
        pads[:, 0] = befores
      else:
        pads = np.zeros([len(befores), 2], np.int32)
      if is_last:
        if num_frames is None and total % period:
          logging.info(
              'Stream of %d frames: dropping the last %d to keep '
              'the stride grid of its first frames.',
              total,
              total % period,
          )
          frames = frames[:, : frames.shape[1] - total % period]
          total -= total % period
        self._check_size((total, *frames.shape[2:4]), endpoint, 'chunks')
        pads[:, 1] = [a for _, a in streaming.time_pads(trunk_end, total)]
      out, carried = step(tf.constant(frames), carried, tf.constant(pads))
      outputs.append(out.numpy())
      if on_frames is not None:
        on_frames(frames.shape[1])
    return np.concatenate(outputs, axis=1)


def _softmax(logits: np.ndarray) -> np.ndarray:
  return tf.nn.softmax(logits).numpy()


def make_predictor(
    model: i3d.InceptionI3d,
    mode: str = DEFAULT_MODE,
    chunk_frames: Optional[int] = None,
    precision: str = DEFAULT_PRECISION,
) -> Predictor:
  """A Predictor for a built, weight-loaded model.

  Args:
    model: an InceptionI3d whose variables exist (restored or assigned).
    mode: one of MODES.
    chunk_frames: inputs longer than this are streamed in chunks of this
      many frames; a positive multiple of 8; DEFAULT_CHUNK_FRAMES when None.
    precision: one of PRECISIONS; 'bfloat16' (an opt-in that changes the
      numbers, see the module docstring) only with mode 'fast'.

  Returns:
    The Predictor. The fast mode copies the folded weights: make a new
    Predictor after the model's weights change.

  Raises:
    ValueError: on a bad `mode`, `chunk_frames` or `precision`, or a model
      without variables.
  """
  streaming.check_endpoint('mode', mode, MODES)
  streaming.check_endpoint('precision', precision, PRECISIONS)
  if precision != 'float32' and mode != 'fast':
    raise ValueError(
        f"`precision` {precision!r} needs mode 'fast'; got mode {mode!r}."
    )
  if precision == 'bfloat16' and not set(BF16_CPU_FLAGS) & set(
      runtime.cpu_info()['flags']
  ):
    logging.warning(
        'This CPU has no bfloat16 units (AVX512_BF16 or AMX): bfloat16 is '
        'emulated and may be slower than float32.'
    )
  if chunk_frames is None:
    chunk_frames = DEFAULT_CHUNK_FRAMES
  if (
      not isinstance(chunk_frames, int)
      or chunk_frames < 1
      or chunk_frames % streaming.TIME_STRIDE
  ):
    raise ValueError(
        f'`chunk_frames` must be a positive multiple of '
        f'{streaming.TIME_STRIDE} or None; got {chunk_frames!r}.'
    )
  if model.in_channels is None:
    raise ValueError(
        '`model` has no variables yet: restore a checkpoint or '
        'call model.create_variables(in_channels) first.'
    )
  return Predictor(model, mode, chunk_frames, precision)


def load_predictors(
    prefixes: Mapping[str, str],
    final_endpoint: str = 'Logits',
    mode: str = DEFAULT_MODE,
    chunk_frames: Optional[int] = None,
    num_classes: Optional[int] = None,
    precision: str = DEFAULT_PRECISION,
) -> Dict[str, Predictor]:
  """Restores each stream's checkpoint into a model and wraps it.

  Args:
    prefixes: stream -> checkpoint prefix.
    final_endpoint: the last endpoint the models compute.
    mode: one of MODES.
    chunk_frames: see make_predictor.
    num_classes: the classes every checkpoint must have (400 for the
      Kinetics-400 slots, 600 for rgb_scratch_kin600), or None for any.
    precision: see make_predictor.

  Returns:
    stream -> Predictor.

  Raises:
    checkpoints.CheckpointError: a checkpoint is missing or does not fit.
    ValueError: a checkpoint's input channels do not fit its stream.
  """
  predictors = {}
  for stream, prefix in prefixes.items():
    logging.info('%s: restoring %s', stream, prefix)
    model = checkpoints.load_model(prefix, final_endpoint=final_endpoint)
    if model.in_channels != checkpoints.STREAM_CHANNELS[stream]:
      raise checkpoints.CheckpointError(
          f'Checkpoint {prefix!r} takes {model.in_channels} input channels, '
          f'but the {stream} stream has {checkpoints.STREAM_CHANNELS[stream]}: use an RGB '
          'checkpoint for rgb and a flow checkpoint for flow.'
      )
    if num_classes is not None and model.num_classes != num_classes:
      raise checkpoints.CheckpointError(
          f'Checkpoint {prefix!r} has {model.num_classes} classes, but '
          f'{num_classes} are expected here (Kinetics-{num_classes}); put the '
          f"Kinetics-{num_classes} checkpoint at that path (the release's "
          'rgb_scratch_kin600 is the only 600-class one)'
      )
    predictors[stream] = make_predictor(
        model, mode=mode, chunk_frames=chunk_frames, precision=precision
    )
  return predictors
