"""Wall-clock timing of repeated calls, shared by the benchmarks."""

from __future__ import annotations

import statistics
import time
from typing import Callable, List


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
