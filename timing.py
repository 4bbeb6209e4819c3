"""Wall-clock timing and analytic FLOP counts, shared by the benchmarks."""

from __future__ import annotations

import math
import statistics
import time
from typing import Callable, Dict, List

import i3d


def time_calls(
    fn: Callable[[], object], warmup: int, iters: int
) -> List[float]:
  """Seconds of each of `iters` calls of `fn`, after `warmup` untimed ones.

  Args:
    fn: What to time; it must block until its work is done (call .numpy()
      on a TensorFlow result).
    warmup: Untimed calls first (tracing, allocation, caches).
    iters: Timed calls.

  Returns:
    The `iters` durations in seconds, in call order.
  """
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(iters):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return times


def median_time(fn: Callable[[], object], warmup: int, iters: int) -> float:
  """The median of `time_calls(fn, warmup, iters)`, in seconds."""
  return statistics.median(time_calls(fn, warmup, iters))


def conv_flops(
    frames: int,
    height: int = 224,
    width: int = 224,
    in_channels: int = 3,
    num_classes: int = 400,
    final_endpoint: str = 'Logits',
) -> Dict[str, int]:
  """Multiply-add FLOPs (2 per MAC) of the convs of each endpoint.

  Counts every conv's output positions (after its stride) times its kernel
  volume times input and output channels, times 2. Pools, BatchNorm, bias
  and ReLU are left out: together they are well under 1% of the total.

  Returns:
    endpoint -> FLOPs, in network order, up to `final_endpoint`.
  """
  if final_endpoint not in i3d.VALID_ENDPOINTS:
    raise ValueError(
        f'Unknown `final_endpoint` {final_endpoint!r}; valid '
        f'values are: {", ".join(i3d.VALID_ENDPOINTS)}.'
    )
  shape = [frames, height, width]
  channels = in_channels
  out = {}

  def conv(size, c_in, c_out, kernel, stride=(1, 1, 1)):
    size = [-(-n // s) for n, s in zip(size, stride)]
    return size, 2 * math.prod(size) * math.prod(kernel) * c_in * c_out

  for spec in i3d.LAYER_SPECS:
    if isinstance(spec, i3d.ConvSpec):
      shape, flops = conv(
          shape, channels, spec.channels, spec.kernel, spec.stride
      )
      channels = spec.channels
    elif isinstance(spec, i3d.PoolSpec):
      shape = [-(-n // s) for n, s in zip(shape, spec.stride)]
      flops = 0
    else:
      # The 3x3x3 convs read their branch's reduce; the 1x1x1s the input.
      reduced = {'Branch_1': spec.b1[0], 'Branch_2': spec.b2[0]}
      flops = 0
      for path, c_out, kernel in i3d.mixed_branches(spec):
        c_in = reduced[path.split('/')[0]] if kernel == (3, 3, 3) else channels
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
