r"""TV-L1 frame pairs per second: OpenCV's DualTVL1 against tvl1.py (Numba).

For each frame size and kind of motion it generates --pairs + 1 frames
(`synthetic_videos`: 'small' = a pan of about 2 pixels per frame with a slow
zoom, 'large' = a fast non-rigid warp with occluding patches) and measures,
after a warm-up, one timed run of `recipe.compute_flow` for each of:

  opencv x1     OpenCV in this process, one thread;
  opencv xN     OpenCV in N worker processes, one thread each (all cores);
  numba x1      tvl1.py on one thread;
  numba xN      tvl1.py, pairs on N threads (all cores).

It also checks the fidelity the issue asks for (per pair, against OpenCV:
median and 99th percentile endpoint error, in pixels, before clipping) and
reports the inner iterations tvl1.py ran at the finest level (1500 = OpenCV's
limit). With --crop_margins it measures computing flow on the centre crop
plus a margin instead of the whole frame: the error inside the 224x224 crop
against the whole-frame flow, and the speed.

With --footage=street it times something else: OpenCV's DualTVL1 alone, one
thread, per frame pair, on a generated street-like scene at --street_size
(default 272x640, a wide street shot) with large, non-rigid motion: the whole
scene pans by each of --street_pans source pixels per frame, a smooth swirl
warps it by as much, and textured blobs ("people", "cars") cross it at their
own speeds. Frames are resized to a shorter side of 256 (as the recipe does)
and turned to gray; wall and CPU seconds per pair are reported.

With --footage=mediapipe it times nothing: for each size and motion it
measures the error, in pixels, that recipe 'mediapipe' adds to the clipped
flow by storing it as MediaPipe's graph does (8-bit quantisation, then JPEG
quality 100), against the float flow, per flow pixel and channel.

Other processes skew the figures; the load average is recorded. Run it
alone:

  python benchmark_tvl1.py \
      --json_out=benchmarks/benchmark_tvl1_cpu.json
  python benchmark_tvl1.py --footage=street \
      --pairs=3 --json_out=benchmarks/benchmark_tvl1_street_cpu.json
  python benchmark_tvl1.py --footage=mediapipe \
      --json_out=benchmarks/benchmark_tvl1_mediapipe_storage.json
"""

import runtime  # pylint: disable=g-bad-import-order

runtime.setup()  # Before TensorFlow loads: its oneDNN kernels on.

import os
import platform
import statistics
import time
from typing import Any, Callable, Dict, List, Sequence, Tuple

from absl import app
from absl import flags
import cv2
import numba
import numpy as np

import fileio
import recipe
import synthetic_videos
import tvl1

_FOOTAGE = flags.DEFINE_enum(
    'footage',
    'synthetic',
    ['synthetic', 'street', 'mediapipe'],
    'synthetic: pairs/s and fidelity of OpenCV against tvl1.py at --sizes '
    'and --motions; street: OpenCV seconds per pair on street-like footage '
    '(--street_size, --street_pans); mediapipe: the error that recipe '
    "'mediapipe' adds to tvl1.py's flow at --sizes and --motions (no "
    'timing).',
)
_SIZES = flags.DEFINE_list(
    'sizes', ['256x455', '256x340'], 'Frame sizes, HEIGHTxWIDTH.'
)
_MOTIONS = flags.DEFINE_list(
    'motions', ['small', 'large'], 'Kinds of motion: small, large.'
)
_PAIRS = flags.DEFINE_integer(
    'pairs', 4, 'Frame pairs per measurement.', lower_bound=1
)
_CROP_MARGINS = flags.DEFINE_list(
    'crop_margins',
    ['0', '16', '32', '64'],
    'Margins (pixels) around the 224x224 centre crop to try computing flow '
    'on; empty to skip.',
)
_STREET_SIZE = flags.DEFINE_string(
    'street_size', '272x640', 'With --footage=street: source HEIGHTxWIDTH.'
)
_STREET_PANS = flags.DEFINE_list(
    'street_pans',
    ['2', '8', '16'],
    'With --footage=street: pan speeds in source pixels per frame to time '
    '(the swirl and blobs scale with them).',
)
_JSON_OUT = flags.DEFINE_string(
    'json_out', None, 'Also write the results here as JSON.'
)

CROP = recipe.CROP_SIZE


def frames_for(motion: str, height: int, width: int, count: int) -> np.ndarray:
  """uint8 gray [count, H, W] generated frames."""
  if motion not in synthetic_videos.MOTIONS:
    raise app.UsageError(
        f'--motions must be among {", ".join(synthetic_videos.MOTIONS)}; got '
        f'{motion!r}.'
    )
  return synthetic_videos.gray_frames(motion, height, width, count)


def timed(function: Callable[[], np.ndarray]) -> Tuple[float, np.ndarray]:
  begin = time.perf_counter()
  out = function()
  return time.perf_counter() - begin, out


def errors(flow: np.ndarray, expected: np.ndarray) -> Dict[str, float]:
  """Worst pair's median and 99th percentile endpoint error, and the max."""
  error = np.linalg.norm(flow - expected, axis=-1)
  axes = tuple(range(1, error.ndim))
  return {
      'median_epe': float(np.median(error, axis=axes).max()),
      'p99_epe': float(np.percentile(error, 99, axis=axes).max()),
      'max_epe': float(error.max()),
  }


def measure(motion: str, height: int, width: int, cores: int) -> Dict[str, Any]:
  frames = frames_for(motion, height, width, _PAIRS.value + 1)
  pairs = len(frames) - 1
  row: Dict[str, Any] = {
      'motion': motion,
      'size': [height, width],
      'pairs': pairs,
      'runs': {},
  }
  flows = {}
  for backend in ('opencv', 'numba'):
    for workers in sorted({1, cores}):
      numba.set_num_threads(workers)
      recipe.compute_flow(frames[:2], workers=workers, backend=backend)
      seconds, flow = timed(
          lambda: recipe.compute_flow(frames, workers=workers, backend=backend)[
              :pairs
          ]
      )
      flows[backend, workers] = flow
      row['runs'][f'{backend} x{workers}'] = {
          'seconds': seconds,
          'pairs_per_second': pairs / seconds,
      }
  reference = flows['opencv', 1]
  row['fidelity'] = errors(flows['numba', cores], reference)
  row['numba_threads_identical'] = bool(
      np.array_equal(flows['numba', 1], flows['numba', cores])
  )
  _, iterations = tvl1.solve(frames[:-1], frames[1:])
  row['finest_level_iterations'] = iterations[:, 0].tolist()
  row['speedup_all_cores'] = (
      row['runs'][f'numba x{cores}']['pairs_per_second']
      / row['runs'][f'opencv x{cores}']['pairs_per_second']
  )
  if _CROP_MARGINS.value and height >= CROP and width >= CROP:
    row['crop'] = crop_margins(frames, flows['numba', cores], cores)
  return row


def crop_margins(
    frames: np.ndarray, full: np.ndarray, cores: int
) -> List[Dict[str, Any]]:
  """Flow on the centre crop plus a margin, against the whole-frame flow."""
  height, width = frames.shape[1:]
  top, left = recipe.center_crop_offsets(height, width, CROP)
  expected = full[:, top : top + CROP, left : left + CROP]
  numba.set_num_threads(cores)
  results = []
  for margin in map(int, _CROP_MARGINS.value):
    y0, x0 = max(top - margin, 0), max(left - margin, 0)
    y1 = min(top + CROP + margin, height)
    x1 = min(left + CROP + margin, width)
    part = np.ascontiguousarray(frames[:, y0:y1, x0:x1])
    seconds, flow = timed(lambda: tvl1.flow(part[:-1], part[1:]))
    inside = flow[:, top - y0 : top - y0 + CROP, left - x0 : left - x0 + CROP]
    results.append(
        {
            'margin': margin,
            'size': [y1 - y0, x1 - x0],
            'pairs_per_second': len(part[:-1]) / seconds,
            **errors(inside, expected),
        }
    )
  return results


def step_costs(height: int, width: int) -> Dict[str, float]:
  """Nanoseconds per pixel of each step of tvl1.py on one thread (best of 5).

  An inner iteration runs up to 300 times per warp; the median filter twice
  per outer iteration (up to 10 per warp); the bicubic warp of I1 and its
  two gradients once per warp.
  """
  rng = np.random.default_rng(0)
  images = (rng.random((3, height, width)) * 255).astype(np.float32)
  u1, u2 = (rng.standard_normal((2, height, width)) * 3).astype(np.float32)
  p = np.zeros((4, height, width), np.float32)
  scratch = np.empty((4, width), np.float32)
  change = np.empty((height, width), np.float32)
  out = np.empty_like(images)
  padded = np.empty((height + 4, width + 4), np.float32)
  grad = images[1] * images[1] + images[2] * images[2]
  # pylint: disable=protected-access
  steps = {
      'inner iteration': lambda: tvl1._inner_iteration(
          images[1],
          images[2],
          grad,
          images[0] - 128,
          u1.copy(),
          u2.copy(),
          *p.copy(),
          change,
          np.float32(0.045),
          np.float32(0.3),
          np.float32(0.25 / 0.3),
          scratch,
      ),
      'median filter': lambda: tvl1.median5(u1, out[0], padded),
      'warp (3 images)': lambda: tvl1.remap_cubic(
          images, u1, u2, out, tvl1.CUBIC_WEIGHTS
      ),
  }
  numba.set_num_threads(1)
  costs = {}
  for name, step in steps.items():
    step()
    best = min(timed(step)[0] for _ in range(5))
    costs[name] = best / (height * width) * 1e9
  return costs


def table(results: Dict[str, Any]) -> str:
  cores = results['cpu_count']
  lines = [
      f'{cores} cores; load average before {results["load_before"][0]:.2f}, '
      f'after {results["load_after"][0]:.2f}; pairs/s',
      f'{"size":<8} {"motion":<6} {"opencv x1":>9} {f"opencv x{cores}":>9} '
      f'{"numba x1":>9} {f"numba x{cores}":>9} {"speedup":>8} '
      f'{"median":>8} {"p99":>8} {"max":>8}  finest-level iterations',
  ]
  for row in results['rows']:
    runs = row['runs']
    size = f'{row["size"][0]}x{row["size"][1]}'
    lines.append(
        f'{size:<8} {row["motion"]:<6} '
        f'{runs["opencv x1"]["pairs_per_second"]:>9.3f} '
        f'{runs[f"opencv x{cores}"]["pairs_per_second"]:>9.3f} '
        f'{runs["numba x1"]["pairs_per_second"]:>9.3f} '
        f'{runs[f"numba x{cores}"]["pairs_per_second"]:>9.3f} '
        f'{row["speedup_all_cores"]:>7.2f}x '
        f'{row["fidelity"]["median_epe"]:>8.2g} '
        f'{row["fidelity"]["p99_epe"]:>8.2g} '
        f'{row["fidelity"]["max_epe"]:>8.2g}  '
        f'{row["finest_level_iterations"]}'
    )
  crops = [(row, c) for row in results['rows'] for c in row.get('crop', [])]
  if crops:
    lines.append('')
    lines.append(
        'flow on the centre crop + margin vs the whole frame, inside '
        'the crop (worst pair):'
    )
    lines.append(
        f'{"size":<8} {"motion":<6} {"margin":>6} {"computed":>9} '
        f'{"pairs/s":>8} {"median":>8} {"p99":>8} {"max":>8}'
    )
    for row, c in crops:
      size = f'{row["size"][0]}x{row["size"][1]}'
      lines.append(
          f'{size:<8} {row["motion"]:<6} {c["margin"]:>6} '
          f'{c["size"][0]:>4}x{c["size"][1]:<4} {c["pairs_per_second"]:>8.3f} '
          f'{c["median_epe"]:>8.2g} {c["p99_epe"]:>8.2g} {c["max_epe"]:>8.2g}'
      )
  lines.append('')
  size = results['rows'][0]['size']
  lines.append(
      f'tvl1.py steps, one thread, ns per pixel at {size[0]}x'
      f'{size[1]}: '
      + ', '.join(f'{k} {v:.2f}' for k, v in results['step_costs'].items())
  )
  return '\n'.join(lines)


def parse_size(text: str, flag: str = 'sizes') -> Tuple[int, int]:
  try:
    height, width = (int(v) for v in text.lower().split('x'))
  except ValueError:
    raise app.UsageError(
        f'--{flag} takes HEIGHTxWIDTH, e.g. 256x455; got {text!r}.'
    ) from None
  return height, width


# ---------------------------------------------------------------------------
# --footage=street: OpenCV alone on street-like footage.


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


def street_scene(
    num_frames: int, height: int, width: int, speed: float
) -> List[np.ndarray]:
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


def street(height: int, width: int) -> Dict[str, Any]:
  """OpenCV DualTVL1 seconds per pair, one thread, per pan speed."""
  size = (
      (round(width * 256 / height), 256)
      if width > height
      else (256, round(height * 256 / width))
  )
  load_before = os.getloadavg()
  rows = []
  for speed in map(float, _STREET_PANS.value):
    frames = street_scene(_PAIRS.value + 1, height, width, speed)
    gray = [
        cv2.cvtColor(
            cv2.resize(f, size, interpolation=cv2.INTER_LINEAR),
            cv2.COLOR_RGB2GRAY,
        )
        for f in frames
    ]
    solver = cv2.optflow.DualTVL1OpticalFlow_create()
    times, cpu_times, magnitudes = [], [], []
    for a, b in zip(gray, gray[1:]):
      start, cpu_start = time.perf_counter(), time.process_time()
      flow = solver.calc(a, b, None)
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
  return {
      'cpu': platform.processor() or platform.machine(),
      'source': [width, height],
      'resized': list(size),
      'load_before': load_before,
      'load_after': os.getloadavg(),
      'opencv': cv2.__version__,
      'rows': rows,
  }


def street_table(results: Dict[str, Any]) -> str:
  (width, height), (out_w, out_h) = results['source'], results['resized']
  lines = [
      f'TV-L1 (OpenCV DualTVL1 defaults, 1 thread), {width}x{height} '
      f'resized to {out_w}x{out_h}; load average before '
      f'{results["load_before"][0]:.2f}, after '
      f'{results["load_after"][0]:.2f}',
      '| pan px/frame (source) | median flow px (256) | s/pair median | min '
      '| max | CPU s/pair median |',
      '|---|---|---|---|---|---|',
  ]
  for r in results['rows']:
    lines.append(
        f'| {r["pan_px_per_frame_source"]:g} | '
        f'{r["median_flow_px_256"]:.1f} | '
        f'{r["seconds_per_pair_median"]:.2f} | '
        f'{r["seconds_per_pair_min"]:.2f} | '
        f'{r["seconds_per_pair_max"]:.2f} | '
        f'{r["cpu_seconds_per_pair_median"]:.2f} |'
    )
  return '\n'.join(lines)


# ---------------------------------------------------------------------------
# --footage=mediapipe: the error of MediaPipe's flow storage.


def mediapipe_storage(sizes: Sequence[Tuple[int, int]]) -> Dict[str, Any]:
  """Flow error of recipe 'mediapipe''s storage, per size and motion."""
  rows = []
  for height, width in sizes:
    for motion in _MOTIONS.value:
      frames = frames_for(motion, height, width, _PAIRS.value + 1)
      flow = recipe.compute_flow(frames)[:-1]
      clipped = np.clip(flow, -recipe.FLOW_BOUND, recipe.FLOW_BOUND)
      quantized = recipe.dequantize_flow(recipe.quantize_flow(flow))
      stored = np.stack([recipe.mediapipe_flow(f) for f in flow])
      row = {'motion': motion, 'size': [height, width], 'pairs': len(flow)}
      for name, got in (('quantized', quantized), ('stored', stored)):
        error = got - clipped
        row[name] = {
            'mean_error_px': float(error.mean()),
            'mean_abs_error_px': float(np.abs(error).mean()),
            'p99_abs_error_px': float(np.percentile(np.abs(error), 99)),
            'max_abs_error_px': float(np.abs(error).max()),
        }
      rows.append(row)
  return {
      'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
      'opencv': cv2.__version__,
      'rows': rows,
  }


def mediapipe_table(results: Dict[str, Any]) -> str:
  lines = [
      "recipe 'mediapipe': flow error (px) of 8-bit storage (quantized) and "
      'of 8-bit + JPEG q100 (stored), against the clipped float flow',
      f'{"size":<8} {"motion":<6} {"":<9} {"mean":>7} {"mean|e|":>7} '
      f'{"p99|e|":>7} {"max|e|":>7}',
  ]
  for row in results['rows']:
    size = f'{row["size"][0]}x{row["size"][1]}'
    for name in ('quantized', 'stored'):
      e = row[name]
      lines.append(
          f'{size:<8} {row["motion"]:<6} {name:<9} '
          f'{e["mean_error_px"]:>7.3f} {e["mean_abs_error_px"]:>7.3f} '
          f'{e["p99_abs_error_px"]:>7.3f} {e["max_abs_error_px"]:>7.3f}'
      )
  return '\n'.join(lines)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}.')
  cv2.setNumThreads(1)
  if _FOOTAGE.value == 'street':
    results = street(*parse_size(_STREET_SIZE.value, 'street_size'))
    print(street_table(results))
    if _JSON_OUT.value:
      fileio.write_json(_JSON_OUT.value, results)
      print(f'JSON: {_JSON_OUT.value}')
    return
  sizes = [parse_size(s) for s in _SIZES.value]
  if _FOOTAGE.value == 'mediapipe':
    results = mediapipe_storage(sizes)
    print(mediapipe_table(results))
    if _JSON_OUT.value:
      fileio.write_json(_JSON_OUT.value, results)
      print(f'JSON: {_JSON_OUT.value}')
    return
  cores = os.cpu_count() or 1
  results: Dict[str, Any] = {
      'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
      'cpu_count': cores,
      'opencv': cv2.__version__,
      'numba': numba.__version__,
      'load_before': list(os.getloadavg()),
      'rows': [],
  }
  for height, width in sizes:
    for motion in _MOTIONS.value:
      results['rows'].append(measure(motion, height, width, cores))
  results['step_costs'] = step_costs(*sizes[0])
  results['load_after'] = list(os.getloadavg())
  print(table(results))
  if _JSON_OUT.value:
    fileio.write_json(_JSON_OUT.value, results)
    print(f'JSON: {_JSON_OUT.value}')


if __name__ == '__main__':
  app.run(main)
