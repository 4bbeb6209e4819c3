r"""Seconds per frame pair of TV-L1 flow on street-like footage, one thread.

Generates a textured scene at --width x --height (default 640x272, a wide
street shot) with large, non-rigid motion: the whole scene pans by
--pan_px pixels per frame, a smooth swirl warps it by up to --warp_px
pixels, and a few textured blobs ("people", "cars") cross it at their own
speeds. Each frame is resized to a shorter side of 256 (as the recipe does),
turned to gray and fed pairwise to OpenCV's DualTVL1 with its default
settings, in this process with one OpenCV thread. Prints a table with the
load average and writes JSON:

  python benchmark_tvl1_street.py --pairs=6 --json_out=benchmarks/benchmark_tvl1_street_cpu.json
"""

from __future__ import annotations

import runtime  # pylint: disable=g-bad-import-order

runtime.setup()  # Like every command (this one never loads TensorFlow).

import json
import os
import platform
import statistics
import time
from typing import Sequence

from absl import app
from absl import flags
import cv2
import numpy as np

_WIDTH = flags.DEFINE_integer('width', 640, 'Source width in pixels.')
_HEIGHT = flags.DEFINE_integer('height', 272, 'Source height in pixels.')
_PAIRS = flags.DEFINE_integer('pairs', 6, 'Frame pairs timed per motion.')
_MOTIONS = flags.DEFINE_list(
    'motions',
    ['2', '8', '16'],
    'Pan speeds in source pixels per frame to time (the swirl and blobs '
    'scale with it).',
)
_JSON_OUT = flags.DEFINE_string('json_out', None, 'Also write JSON here.')


def _texture(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
  """A street-like texture: edges at several scales, gray uint8."""
  out = np.zeros((height, width), np.float32)
  for scale in (4, 16, 64):
    noise = rng.random((height // scale + 2, width // scale + 2))
    out += (
        cv2.resize(
            noise.astype(np.float32),
            (width + scale, height + scale),
            interpolation=cv2.INTER_CUBIC,
        )[:height, :width]
        * scale
    )
  out -= out.min()
  return (255 * out / out.max()).astype(np.uint8)


def scene(num_frames: int, height: int, width: int, speed: float):
  """uint8 RGB frames of a panning, swirling scene with crossing blobs."""
  rng = np.random.default_rng(0)
  margin = int(speed * num_frames) + 64
  background = _texture(height + 128, width + 2 * margin, rng)
  blobs = [
      (
          _texture(80, 60, rng),
          rng.uniform(0, width),
          rng.uniform(0, height - 80),
          rng.uniform(-2, 2) * speed,
      )
      for _ in range(4)
  ]
  ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
  frames = []
  for t in range(num_frames):
    phase = 0.7 * t
    dx = speed * np.sin(ys / 37.0 + phase) + margin + speed * t
    dy = 0.5 * speed * np.cos(xs / 53.0 + phase) + 64
    frame = cv2.remap(background, xs + dx, ys + dy, cv2.INTER_LINEAR)
    for patch, x0, y0, v in blobs:
      x = int(x0 + v * t) % (width - patch.shape[1])
      y = int(y0)
      frame[y : y + patch.shape[0], x : x + patch.shape[1]] = patch
    frames.append(cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB))
  return frames


def main(argv: Sequence[str]) -> None:
  del argv
  cv2.setNumThreads(1)
  width, height = _WIDTH.value, _HEIGHT.value
  size = (
      (round(width * 256 / height), 256)
      if width > height
      else (256, round(height * 256 / width))
  )
  load_before = os.getloadavg()
  rows = []
  for speed in map(float, _MOTIONS.value):
    frames = scene(_PAIRS.value + 1, height, width, speed)
    gray = [
        cv2.cvtColor(
            cv2.resize(f, size, interpolation=cv2.INTER_LINEAR),
            cv2.COLOR_RGB2GRAY,
        )
        for f in frames
    ]
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
    times, cpu_times, magnitudes = [], [], []
    for a, b in zip(gray, gray[1:]):
      start, cpu_start = time.perf_counter(), time.process_time()
      flow = tvl1.calc(a, b, None)
      times.append(time.perf_counter() - start)
      cpu_times.append(time.process_time() - cpu_start)
      magnitudes.append(float(np.median(np.hypot(flow[..., 0], flow[..., 1]))))
    rows.append(
        {
            'pan_px_per_frame_source': speed,
            'median_flow_px_256': statistics.median(magnitudes),
            'seconds_per_pair_median': statistics.median(times),
            'seconds_per_pair_min': min(times),
            'seconds_per_pair_max': max(times),
            # CPU seconds of this (single-threaded) process: what an idle core
            # would take, roughly, when other processes share the cores.
            'cpu_seconds_per_pair_median': statistics.median(cpu_times),
            'pairs': len(times),
        }
    )
  load_after = os.getloadavg()
  print(
      f'TV-L1 (OpenCV DualTVL1 defaults, 1 thread), {width}x{height} '
      f'resized to {size[0]}x{size[1]}; load average before '
      f'{load_before[0]:.2f}, after {load_after[0]:.2f}'
  )
  print(
      '| pan px/frame (source) | median flow px (256) | s/pair median | min '
      '| max | CPU s/pair median |'
  )
  print('|---|---|---|---|---|---|')
  for r in rows:
    print(
        f'| {r["pan_px_per_frame_source"]:g} | '
        f'{r["median_flow_px_256"]:.1f} | '
        f'{r["seconds_per_pair_median"]:.2f} | '
        f'{r["seconds_per_pair_min"]:.2f} | '
        f'{r["seconds_per_pair_max"]:.2f} | '
        f'{r["cpu_seconds_per_pair_median"]:.2f} |'
    )
  if _JSON_OUT.value:
    with open(_JSON_OUT.value, 'w') as f:
      json.dump(
          {
              'cpu': platform.processor() or platform.machine(),
              'source': [width, height],
              'resized': list(size),
              'load_before': load_before,
              'load_after': load_after,
              'opencv': cv2.__version__,
              'rows': rows,
          },
          f,
          indent=2,
      )


if __name__ == '__main__':
  app.run(main)
