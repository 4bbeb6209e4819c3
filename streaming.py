"""Whole videos through I3D in bounded memory: 'SAME' time geometry, chunks.

The network is convolutional in time, so a clip longer than one chunk is
streamed through the trunk: every layer with a temporal kernel > 1 keeps the
few input frames its next window still needs, pads with zeros in time
exactly where the whole-video 'SAME' pass would (at the real start and end of
the video), and runs 'VALID' in time in between. Every layer's per-frame
output is therefore identical to that of one whole-video pass, nothing is
recomputed, and memory is set by the chunk size, not by the video length.

'SAME' padding and the stride grid. With 'SAME', a layer of kernel k and
stride s on n frames pads k - s frames in all when s divides n, else
k - (n mod s), the larger half after. So the before-padding of the stride-2
layers depends on the parity of their input length: Conv3d_1a_7x7 pads 2
frames before an even-length input and 3 before an odd one, MaxPool3d_4a_3x3
0 or 1. The whole-video stride grid thus depends on T mod 4, and a stream
must know it from its first frame (inference.Predictor.logits_stream takes
`num_frames`); when the length is unknown the stream is computed on the grid
of T mod 4 == 0 and the last T mod 4 frames are dropped (at most 3).

This module holds the geometry (`same_padding`, `temporal_geometry`,
`first_chunk_frames`, ...), the time padding of one chunk (`CarriedTime`,
with which `stream_trunk` runs i3d.run_trunk, the one layer walk) and the
regrouping of frames into chunks (`rechunk`).
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

import i3d

# Total temporal stride of the trunk (at Mixed_5c); chunk sizes are rounded
# up to a multiple of it so that every chunk advances every layer regularly.
TIME_STRIDE = i3d.strides_up_to('Mixed_5c')[0]


def check_endpoint(arg: str, value: str, valid: Sequence[str]) -> None:
  """Raises ValueError naming `arg` unless `value` is one of `valid`."""
  if value not in valid:
    raise ValueError(
        f'Unknown `{arg}` {value!r}; valid values are: ' f'{", ".join(valid)}.'
    )


def spatial_logits_pool(mixed_5c: tf.Tensor) -> tf.Tensor:
  """The spatial half of i3d.logits_pool, on each new frame of a stream."""
  k = i3d.LOGITS_POOL
  return tf.nn.avg_pool3d(mixed_5c, [1, 1, k[1], k[2], 1], [1] * 5, 'VALID')


def time_logits_pool(spatially_pooled: tf.Tensor) -> tf.Tensor:
  """The time half of i3d.logits_pool, on a whole stream's spatial pools."""
  assert i3d.LOGITS_POOL[0] == 2
  return (spatially_pooled[:, :-1] + spatially_pooled[:, 1:]) * 0.5


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
  check_endpoint('endpoint', endpoint, i3d.VALID_ENDPOINTS)
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


def time_pads(endpoint: str, num_frames: int) -> List[Tuple[int, int]]:
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


def temporal_geometry(
    endpoint: str = 'Mixed_5c', num_frames: Optional[int] = None
) -> TemporalGeometry:
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
    num_frames = 8 * TIME_STRIDE
  if not isinstance(num_frames, int) or num_frames < 1:
    raise ValueError(
        f'`num_frames` must be a positive int; got {num_frames!r}.'
    )
  rf, jump, before = 1, 1, 0
  for op, (pad, _) in zip(ops, time_pads(endpoint, num_frames)):
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
    for op, (pad, _) in reversed(
        list(zip(ops, time_pads(endpoint, num_frames)))
    ):
      need = max((need - 1) * op.stride + op.kernel - pad, 1)
    worst = max(worst, need)
  return worst


# --------------------------------------------------------------------------
# Streaming computation: 'VALID' in time with carried frames.


def _same_pad_spatial(
    x: tf.Tensor, kernel: Sequence[int], stride: Sequence[int]
) -> tf.Tensor:
  """Pads height and width as 'SAME' would for this kernel and stride."""
  pads = [[0, 0], [0, 0]]
  shape = tf.shape(x)
  for axis, k, s in ((2, kernel[1], stride[1]), (3, kernel[2], stride[2])):
    n = shape[axis]
    total = tf.maximum(((n + s - 1) // s - 1) * s + k - n, 0)
    pads.append([total // 2, total - total // 2])
  pads.append([0, 0])
  return tf.pad(x, pads)


def _window(
    carried: tf.Tensor,
    new: tf.Tensor,
    pad_before: tf.Tensor,
    pad_after: tf.Tensor,
    kernel: int,
    stride: int,
):
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
    return tf.zeros(
        tf.stack([shape[0], frames, shape[2], shape[3], shape[4]]), new.dtype
    )

  seq = tf.concat([zeros(pad_before), carried, new, zeros(pad_after)], 1)
  outputs = tf.maximum((tf.shape(seq)[1] - kernel) // stride + 1, 0)
  return seq, outputs, seq[:, outputs * stride :]


def _time_max_pool(seq: tf.Tensor, kernel: int, stride: int) -> tf.Tensor:
  return tf.nn.max_pool3d(
      seq, [1, kernel, 1, 1, 1], [1, stride, 1, 1, 1], 'VALID'
  )


class CarriedTime(i3d.SameTime):
  """Time padding of one chunk of a stream: 'VALID' with carried frames.

  Every layer with a time kernel > 1 sees the frames carried from the last
  chunk, then this chunk's new frames, with the zero frames of `pads` before
  (first chunk) and after (last chunk); what its next window still needs is
  carried on. Space stays 'SAME'. Max pools are split into a 'SAME' spatial
  pool and a 'VALID' time pool (max is separable, so this is exact); their
  time padding is zeros, which equals 'SAME''s ignored padding because every
  pool input is a ReLU output. Branch_0 of a block has no time kernel, so it
  runs ahead of the other three: its newest frames wait in a queue for theirs.
  """

  def __init__(self, carried: Sequence[tf.Tensor], pads: tf.Tensor):
    """A chunk's time padding.

    Args:
      carried: the carried frames, as carry_specs lists them.
      pads: int32 [num layers, 2], the (before, after) zero frames each
        LAYER_SPECS row adds this chunk (see time_pads).
    """
    self._carried = iter(carried)
    self._pads = pads
    self._before = self._after = None
    self.carry: List[tf.Tensor] = []  # The next chunk's `carried`.

  def begin(self, layer_index: int) -> None:
    self._before = self._pads[layer_index, 0]
    self._after = self._pads[layer_index, 1]

  def _window(self, new: tf.Tensor, kernel: int, stride: int) -> tf.Tensor:
    seq, _, rest = _window(
        next(self._carried), new, self._before, self._after, kernel, stride
    )
    self.carry.append(rest)
    return seq

  def conv(self, unit, x, kernel, stride):
    if kernel[0] == 1:
      return unit(x, 'SAME')
    seq = self._window(x, kernel[0], stride[0])
    return unit(_same_pad_spatial(seq, kernel, stride), 'VALID')

  def pool(self, x, kernel, stride):
    x = i3d.max_pool(x, (1, *kernel[1:]), (1, *stride[1:]))
    if kernel[0] == 1:
      return x
    seq = self._window(x, kernel[0], stride[0])
    return _time_max_pool(seq, kernel[0], stride[0])

  def concat(self, branches):
    b0, *others = branches
    count = tf.shape(others[0])[1]
    queue = tf.concat([next(self._carried), b0], axis=1)
    self.carry.append(queue[:, count:])
    return tf.concat([queue[:, :count], *others], axis=4)


def stream_trunk(
    units: i3d.Units,
    x: tf.Tensor,
    carried: Sequence[tf.Tensor],
    pads: tf.Tensor,
    endpoint: str,
) -> Tuple[tf.Tensor, List[tf.Tensor]]:
  """One chunk of the trunk: i3d.run_trunk with CarriedTime.

  Args:
    units: how a unit is computed (i3d.ModuleUnits or inference.FoldedI3D).
    x: the chunk's new frames, [B, n, H, W, C].
    carried: the carried frames, as carry_specs lists them.
    pads: see CarriedTime.
    endpoint: the last layer.

  Returns:
    (the endpoint's new output frames, the new carried frames).
  """
  time = CarriedTime(carried, pads)
  out, _ = i3d.run_trunk(units, x, endpoint, time)
  return out, time.carry


def carry_specs(endpoint: str, in_channels: int) -> List[Tuple[int, int]]:
  """(spatial stride, channels) of each carried tensor, in stream_trunk order."""
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
      specs += [
          (stride, spec.b1[0]),
          (stride, spec.b2[0]),
          (stride, channels),
          (stride, spec.b0),
      ]
      channels = spec.out_channels
    if spec.name == endpoint:
      return specs
  raise AssertionError(endpoint)


def grid_period(endpoint: str) -> int:
  """The m such that every multiple of m frames gets the same time padding.

  The before-padding of the stride-2 layers depends on their input lengths
  (see the module docstring); up to Mixed_5c it is set by T mod 4.
  """
  for m in (1, 2, 4, 8, 16, 32):
    befores = {
        tuple(b for b, _ in time_pads(endpoint, m * q)) for q in (1, 2, 3, 5, 7)
    }
    if len(befores) == 1:
      return m
  raise AssertionError(endpoint)


# --------------------------------------------------------------------------
# Regrouping frames into chunks.


def round_up(n: int, m: int) -> int:
  return -(-n // m) * m


def rechunk(
    pieces: Iterable[np.ndarray],
    first: int,
    chunk: int,
    period: int,
    batched: bool,
    channels: int,
    num_frames: Optional[int],
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
    if (
        piece.ndim != 5
        or piece.shape[-1] != channels
        or (shape is not None and piece.shape[2:] != shape[2:])
        or (shape is not None and piece.shape[0] != shape[0])
    ):
      want = (
          '[batch, frames, height, width, {c}]'
          if batched
          else '[frames, height, width, {c}]'
      ).format(c=channels)
      got = piece.shape if batched else piece.shape[1:]
      raise ValueError(
          f'Every chunk of frames must be {want} with the same size as the '
          f'first; got shape {got}'
          + (f' after {shape[1:] if batched else shape[2:]}.' if shape else '.')
      )
    shape = piece.shape
    if piece.shape[1] == 0:
      continue
    buffered.append(piece)
    count += piece.shape[1]
    total += piece.shape[1]
    if num_frames is not None and total > num_frames:
      raise ValueError(
          f'The stream has more frames than `num_frames` ' f'{num_frames}.'
      )
    while count >= need + period:
      out = _take(buffered, need)
      count -= need
      yield out, total - count, False
      need = chunk
  if count == 0:
    raise ValueError('The stream of frames is empty.')
  if num_frames is not None and total != num_frames:
    raise ValueError(
        f'The stream has {total} frames but `num_frames` is ' f'{num_frames}.'
    )
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
