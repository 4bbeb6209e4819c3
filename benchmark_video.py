r"""Measures how fast video.py decodes, preprocesses RGB and runs TV-L1.

Without --video it writes a synthetic test video first: a textured scene
panning and zooming, H.264 4:2:0 at --source_fps, --width x --height. Each
stage gets one untimed warm-up run, then --repeats timed runs; the table
shows the median. Figures are frames per second:

  decode        source frames decoded to RGB arrays (PyAV, no resampling);
  iter_frames   25 fps output frames, resampled and resized to 256;
  rgb           the whole RGB recipe: recipe.preprocess(streams=('rgb',));
  tvl1 (N)      TV-L1 flow frames on resized frames with N worker processes
                (1 = in this process), one OpenCV thread each.

Other processes on the machine skew the figures; the load average before and
after is printed with them.

  python benchmark_video.py --seconds=4 --flow_frames=16 --json_out=out/b.json
"""

import runtime  # pylint: disable=g-bad-import-order

runtime.setup()  # Before TensorFlow loads: its oneDNN kernels on.

import json
import os
import platform
import resource
import statistics
import tempfile
import time
from typing import Any, Callable, Dict, List, Sequence

from absl import app
from absl import flags
import av
import cv2
import numpy as np

import recipe
import synthetic_videos
import video

_VIDEO = flags.DEFINE_string(
    'video', None, 'Video to measure; default: write a synthetic one.'
)
_SECONDS = flags.DEFINE_float(
    'seconds', 4.0, 'Length of the synthetic video.', lower_bound=0.1
)
_WIDTH = flags.DEFINE_integer(
    'width', 640, 'Width of the synthetic video (even).', lower_bound=16
)
_HEIGHT = flags.DEFINE_integer(
    'height', 360, 'Height of the synthetic video (even).', lower_bound=16
)
_SOURCE_FPS = flags.DEFINE_integer(
    'source_fps', 30, 'Frame rate of the synthetic video.', lower_bound=1
)
_FLOW_FRAMES = flags.DEFINE_integer(
    'flow_frames',
    16,
    'Resized frames to run TV-L1 on (it is slow).',
    lower_bound=2,
)
_WORKERS = flags.DEFINE_integer(
    'workers',
    None,
    'Worker processes for the parallel TV-L1 run; default: ' 'os.cpu_count().',
    lower_bound=1,
)
_REPEATS = flags.DEFINE_integer(
    'repeats',
    3,
    'Timed runs per stage (the median is reported).',
    lower_bound=1,
)
_JSON_OUT = flags.DEFINE_string(
    'json_out', None, 'Also write the results here as JSON.'
)


def decode_all(path: str) -> int:
  """Decodes every source frame to an RGB array; returns the count."""
  count = 0
  with av.open(path) as container:
    stream = container.streams.video[0]
    stream.thread_type = 'AUTO'
    for frame in container.decode(stream):
      frame.to_ndarray(format='rgb24')
      count += 1
  return count


def timed(function: Callable[[], int], repeats: int) -> Dict[str, Any]:
  """Warms up once, then times `repeats` runs of function() -> frames."""
  function()
  seconds: List[float] = []
  frames = 0
  for _ in range(repeats):
    begin = time.perf_counter()
    frames = function()
    seconds.append(time.perf_counter() - begin)
  median = statistics.median(seconds)
  return {'frames': frames, 'seconds': median, 'fps': frames / median}


def peak_rss_mib() -> float:
  """Peak resident memory of this process (flow workers not included)."""
  scale = 1 / 1024 if platform.system() != 'Darwin' else 1 / 2**20
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def run(path: str) -> Dict[str, Any]:
  """All measurements on `path`."""
  info = video.probe(path)
  workers = _WORKERS.value or os.cpu_count() or 1
  results: Dict[str, Any] = {
      'video': {
          'path': path,
          'size': [info.width, info.height],
          'codec': info.codec,
          'fps': info.fps,
          'duration': info.duration,
      },
      'cpu_count': os.cpu_count(),
      'load_average_before': list(os.getloadavg()),
  }
  stages = results['stages'] = {}
  stages['decode'] = timed(lambda: decode_all(path), _REPEATS.value)
  stages['iter_frames'] = timed(
      lambda: sum(1 for _ in video.iter_frames(path)), _REPEATS.value
  )
  stages['rgb'] = timed(
      lambda: recipe.preprocess(path, streams=('rgb',), min_frames=1)[
          'num_frames'
      ],
      _REPEATS.value,
  )

  frames = []
  for frame in video.iter_frames(path):
    frames.append(frame.image)
    if len(frames) == _FLOW_FRAMES.value:
      break
  frames = np.stack(frames)
  results['flow_frame_size'] = list(frames.shape[1:3])
  # workers=1 runs in this process: give it one OpenCV thread too, so that
  # both rows measure one TV-L1 per core.
  cv2.setNumThreads(1)
  for count in sorted({1, workers}):
    # Flow is slow: one timed run, after a two-frame warm-up.
    recipe.compute_flow(frames[:2], workers=count)
    begin = time.perf_counter()
    recipe.compute_flow(frames, workers=count)
    seconds = time.perf_counter() - begin
    stages[f'tvl1 ({count} worker{"s" if count > 1 else ""})'] = {
        'frames': len(frames),
        'seconds': seconds,
        'fps': len(frames) / seconds,
        'workers': count,
    }
  results['peak_rss_mib'] = peak_rss_mib()
  results['load_average_after'] = list(os.getloadavg())
  return results


def table(results: Dict[str, Any]) -> str:
  """The results as aligned text."""
  source = results['video']
  lines = [
      f'video: {source["size"][0]}x{source["size"][1]} {source["codec"]}, '
      f'{source["fps"]:.2f} fps, {source["duration"]:.2f} s; '
      f'{results["cpu_count"]} cores, load average before '
      f'{results["load_average_before"][0]:.2f}',
      f'{"stage":<20} {"frames":>7} {"seconds":>9} {"frames/s":>10}',
  ]
  for name, stage in results['stages'].items():
    lines.append(
        f'{name:<20} {stage["frames"]:>7} {stage["seconds"]:>9.3f} '
        f'{stage["fps"]:>10.1f}'
    )
  size = results['flow_frame_size']
  lines.append(
      f'TV-L1 on {size[0]}x{size[1]} frames, one OpenCV thread per '
      f'worker; load average after '
      f'{results["load_average_after"][0]:.2f}; peak RSS of this '
      f'process {results["peak_rss_mib"]:.0f} MiB'
  )
  return '\n'.join(lines)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}.')
  with tempfile.TemporaryDirectory(prefix='benchmark_video_') as folder:
    path = _VIDEO.value
    if path is None:
      path = synthetic_videos.write_panning_video(
          os.path.join(folder, 'synthetic.mp4'),
          _SECONDS.value,
          _WIDTH.value,
          _HEIGHT.value,
          _SOURCE_FPS.value,
      )
    try:
      results = run(path)
    except video.VideoError as e:
      raise app.UsageError(str(e)) from e
  print(table(results))
  if _JSON_OUT.value:
    directory = os.path.dirname(_JSON_OUT.value)
    if directory:
      os.makedirs(directory, exist_ok=True)
    with open(_JSON_OUT.value, 'w') as f:
      json.dump(results, f, indent=2)
      f.write('\n')
    print(f'JSON: {_JSON_OUT.value}')


if __name__ == '__main__':
  app.run(main)
