"""A slow, independent NumPy I3D, used by the tests as ground truth.

It shares no code with i3d.py or checkpoints.py: it writes the architecture
out again from the paper's table, implements TF 'SAME' padding by hand, and
reads tensors by their release names straight from a checkpoint reader or a
dict. Tests compare the Sonnet module, the fast paths and evaluate_sample.py
against it on small inputs.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import numpy as np

EPS = 1e-3

# name, (b0, b1 reduce, b1, b2 reduce, b2, b3), name of Branch_2's 3x3 conv.
_BLOCKS = {
    'Mixed_3b': ((64, 96, 128, 16, 32, 32), 'Conv3d_0b_3x3'),
    'Mixed_3c': ((128, 128, 192, 32, 96, 64), 'Conv3d_0b_3x3'),
    'Mixed_4b': ((192, 96, 208, 16, 48, 64), 'Conv3d_0b_3x3'),
    'Mixed_4c': ((160, 112, 224, 24, 64, 64), 'Conv3d_0b_3x3'),
    'Mixed_4d': ((128, 128, 256, 24, 64, 64), 'Conv3d_0b_3x3'),
    'Mixed_4e': ((112, 144, 288, 32, 64, 64), 'Conv3d_0b_3x3'),
    'Mixed_4f': ((256, 160, 320, 32, 128, 128), 'Conv3d_0b_3x3'),
    'Mixed_5b': ((256, 160, 320, 32, 128, 128), 'Conv3d_0a_3x3'),
    'Mixed_5c': ((384, 192, 384, 48, 128, 128), 'Conv3d_0b_3x3'),
}


def same_padding(size: int, kernel: int, stride: int):
  """TF 'SAME': out = ceil(size/stride); the odd pixel of padding goes after."""
  out = math.ceil(size / stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


def _windows(
    x: np.ndarray,
    kernel: Sequence[int],
    stride: Sequence[int],
    pad_value: float,
) -> np.ndarray:
  """[T,H,W,C] -> strided windows [T',H',W',C,kt,kh,kw] with SAME padding."""
  pads = [same_padding(x.shape[i], kernel[i], stride[i]) for i in range(3)]
  xp = np.pad(x, pads + [(0, 0)], constant_values=pad_value)
  win = np.lib.stride_tricks.sliding_window_view(xp, kernel, axis=(0, 1, 2))
  return win[:: stride[0], :: stride[1], :: stride[2]]


def conv3d_same(
    x: np.ndarray, w: np.ndarray, stride: Sequence[int] = (1, 1, 1)
) -> np.ndarray:
  """One example [T,H,W,Cin] * [kt,kh,kw,Cin,Cout] with TF 'SAME' padding."""
  x = x.astype(np.float64)
  w = w.astype(np.float64)
  if w.shape[:3] == (1, 1, 1) and tuple(stride) == (1, 1, 1):
    return x @ w[0, 0, 0]
  win = _windows(x, w.shape[:3], stride, 0.0)
  return np.tensordot(win, w, axes=([3, 4, 5, 6], [3, 0, 1, 2]))


def max_pool_same(
    x: np.ndarray, kernel: Sequence[int], stride: Sequence[int]
) -> np.ndarray:
  """TF 'SAME' max pool: padded positions never win."""
  return _windows(x, kernel, stride, -np.inf).max(axis=(4, 5, 6))


def avg_pool_valid(x: np.ndarray, kernel: Sequence[int]) -> np.ndarray:
  win = np.lib.stride_tricks.sliding_window_view(x, kernel, axis=(0, 1, 2))
  return win.mean(axis=(4, 5, 6))


def batch_norm_test(x, beta, mean, variance, eps: float = EPS):
  """Offset-only BatchNorm with moving statistics."""
  flat = lambda a: np.reshape(a, [-1]).astype(np.float64)
  return (x - flat(mean)) / np.sqrt(flat(variance) + eps) + flat(beta)


class NumpyI3D:
  """Inference-only I3D over release-named tensors.

  Args:
    get: a function from a release name (without the 'RGB/inception_i3d/'
      style prefix) to its array; e.g. `lambda n: reader.get_tensor(p + n)`.
  """

  def __init__(self, get: Callable[[str], np.ndarray]):
    self._get = get

  @classmethod
  def from_checkpoint(cls, prefix: str, scope: str) -> 'NumpyI3D':
    import tensorflow as tf  # Only to read the checkpoint file.

    reader = tf.train.load_checkpoint(prefix)
    return cls(lambda n: reader.get_tensor(scope + n))

  @classmethod
  def from_dict(
      cls, tensors: Mapping[str, np.ndarray], scope: str
  ) -> 'NumpyI3D':
    return cls(lambda n: tensors[scope + n])

  def unit(self, x, path: str, stride=(1, 1, 1)):
    g = self._get
    y = conv3d_same(x, g(f'{path}/conv_3d/w'), stride)
    y = batch_norm_test(
        y,
        g(f'{path}/batch_norm/beta'),
        g(f'{path}/batch_norm/moving_mean'),
        g(f'{path}/batch_norm/moving_variance'),
    )
    return np.maximum(y, 0.0)

  def mixed(self, x, name: str):
    _, conv_name = _BLOCKS[name]
    b0 = self.unit(x, f'{name}/Branch_0/Conv3d_0a_1x1')
    b1 = self.unit(
        self.unit(x, f'{name}/Branch_1/Conv3d_0a_1x1'),
        f'{name}/Branch_1/Conv3d_0b_3x3',
    )
    b2 = self.unit(
        self.unit(x, f'{name}/Branch_2/Conv3d_0a_1x1'),
        f'{name}/Branch_2/{conv_name}',
    )
    b3 = self.unit(
        max_pool_same(x, (3, 3, 3), (1, 1, 1)), f'{name}/Branch_3/Conv3d_0b_1x1'
    )
    return np.concatenate([b0, b1, b2, b3], axis=-1)

  def endpoints(self, video: np.ndarray, stop: str = 'Logits'):
    """One example [T,H,W,C] -> dict of endpoint arrays, up to `stop`."""
    out = {}

    def record(name, value):
      out[name] = value
      return name == stop

    x = video.astype(np.float64)
    x = self.unit(x, 'Conv3d_1a_7x7', (2, 2, 2))
    if record('Conv3d_1a_7x7', x):
      return out
    x = max_pool_same(x, (1, 3, 3), (1, 2, 2))
    if record('MaxPool3d_2a_3x3', x):
      return out
    x = self.unit(x, 'Conv3d_2b_1x1')
    if record('Conv3d_2b_1x1', x):
      return out
    x = self.unit(x, 'Conv3d_2c_3x3')
    if record('Conv3d_2c_3x3', x):
      return out
    x = max_pool_same(x, (1, 3, 3), (1, 2, 2))
    if record('MaxPool3d_3a_3x3', x):
      return out
    for name in ('Mixed_3b', 'Mixed_3c'):
      x = self.mixed(x, name)
      if record(name, x):
        return out
    x = max_pool_same(x, (3, 3, 3), (2, 2, 2))
    if record('MaxPool3d_4a_3x3', x):
      return out
    for name in ('Mixed_4b', 'Mixed_4c', 'Mixed_4d', 'Mixed_4e', 'Mixed_4f'):
      x = self.mixed(x, name)
      if record(name, x):
        return out
    x = max_pool_same(x, (2, 2, 2), (2, 2, 2))
    if record('MaxPool3d_5a_2x2', x):
      return out
    for name in ('Mixed_5b', 'Mixed_5c'):
      x = self.mixed(x, name)
      if record(name, x):
        return out
    x = avg_pool_valid(x, (2, 7, 7))
    w = self._get('Logits/Conv3d_0c_1x1/conv_3d/w').astype(np.float64)
    b = self._get('Logits/Conv3d_0c_1x1/conv_3d/b').astype(np.float64)
    per_time = x @ w[0, 0, 0] + b  # [T', H', W', classes]
    logits = per_time.mean(axis=0)
    if logits.shape[:2] == (1, 1):
      logits = logits[0, 0]
    record('Logits', logits)
    return out

  def logits(self, video: np.ndarray) -> np.ndarray:
    """[B,T,H,W,C] -> [B, classes] averaged logits (float64)."""
    return np.stack([self.endpoints(v)['Logits'] for v in video])
