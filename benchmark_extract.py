r"""Measures end-to-end feature extraction: videos per minute.

Writes --videos synthetic test videos (a textured scene panning and zooming,
H.264 4:2:0 at --source_fps, --width x --height, --seconds long), then times
extract_features' pipeline on them: decoding, 25 fps resampling, resizing,
cropping, TV-L1 flow (for --streams=flow or joint), the network, and writing
the .npy and .json outputs. The models are loaded once (timed apart), one
video is extracted first as a warm-up (tracing), then the timed run
(features.Extractor.run, which decodes in a background thread while the
network runs) goes over all videos into a fresh folder. With --serial it also
times the same work without the background thread (Extractor.extract, one
video after the other), to show what the overlap gains.

Without --checkpoint_dir the checkpoints are synthetic (the release's names
and shapes, random values): the speed is the same as with the real ones.

Other processes on the machine skew the figures; the load average before
and after is printed with them.

  python benchmark_extract.py --videos=4 --seconds=4 --json_out=out/be.json
  python benchmark_extract.py --streams=joint --videos=2 --seconds=2
"""

from __future__ import annotations

import runtime  # pylint: disable=g-bad-import-order

runtime.setup()  # Before TensorFlow loads: its oneDNN kernels on.

import json
import os
import platform
import resource
import shutil
import tempfile
import time
from typing import Any, Dict, List, Sequence

from absl import app
from absl import flags

import assets
import checkpoints
import cli
import features
import fileio
import i3d
import inference
import synthetic_videos
import video

_VIDEOS = flags.DEFINE_integer(
    'videos', 4, 'Number of synthetic videos.', lower_bound=1
)
_SECONDS = flags.DEFINE_float(
    'seconds', 4.0, 'Length of each synthetic video.', lower_bound=0.1
)
_WIDTH = flags.DEFINE_integer(
    'width', 320, 'Width of the synthetic videos (even).', lower_bound=16
)
_HEIGHT = flags.DEFINE_integer(
    'height', 240, 'Height of the synthetic videos (even).', lower_bound=16
)
_SOURCE_FPS = flags.DEFINE_integer(
    'source_fps',
    30,
    'Frame rate of the synthetic videos (resampled to 25).',
    lower_bound=1,
)
_STREAMS = flags.DEFINE_enum(
    'streams',
    'rgb',
    list(assets.STREAM_CHOICES),
    'Which streams to extract: rgb, flow or joint (both).',
)
_ENDPOINT = flags.DEFINE_enum(
    'endpoint',
    features.DEFAULT_ENDPOINT,
    list(i3d.VALID_ENDPOINTS),
    'Which endpoint to average over each window.',
)
_WINDOW = flags.DEFINE_integer(
    'window', features.DEFAULT_WINDOW, 'Frames per window.', lower_bound=1
)
_STRIDE = flags.DEFINE_integer(
    'stride',
    features.DEFAULT_STRIDE,
    'Frames between window starts.',
    lower_bound=1,
)
_BATCH_SIZE = flags.DEFINE_integer(
    'batch_size',
    features.DEFAULT_BATCH_SIZE,
    'Windows per forward pass.',
    lower_bound=1,
)
_CHECKPOINT_DIR = flags.DEFINE_string(
    'checkpoint_dir',
    None,
    'Folder of release checkpoints as <name>/model.ckpt.*; default: write '
    'synthetic ones to a temporary folder.',
)
_FLOW = cli.define_flow_flags()
_SERIAL = flags.DEFINE_boolean(
    'serial',
    True,
    'Also time the same videos without the background ' 'decoding thread.',
)
_JSON_OUT = flags.DEFINE_string(
    'json_out', None, 'Also write the results here as JSON.'
)


def _peak_rss_mb() -> Dict[str, float]:
  """Peak resident memory of this process and of its finished children."""
  kb = 1024.0  # Linux reports ru_maxrss in kB.
  return {
      'self': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kb,
      'children': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / kb,
  }


def _row(
    name: str, seconds: float, videos: int, frames: int, windows: int
) -> Dict[str, Any]:
  return {
      'run': name,
      'seconds': round(seconds, 3),
      'videos_per_minute': round(60.0 * videos / seconds, 2),
      'frames_per_second': round(frames / seconds, 2),
      'windows_per_second': round(windows / seconds, 3),
      'realtime_factor': round(frames / video.FPS / seconds, 3),
  }


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected positional arguments {argv[1:]}.')
  features.check_window(_WINDOW.value, _STRIDE.value, _ENDPOINT.value)
  inference.configure_threads()
  streams = list(assets.streams_of(_STREAMS.value))
  tmp = tempfile.mkdtemp(prefix='benchmark_extract_')
  try:
    folder = os.path.join(tmp, 'videos')
    os.makedirs(folder)
    for i in range(_VIDEOS.value):
      synthetic_videos.write_panning_video(
          os.path.join(folder, f'video_{i:03d}.mp4'),
          _SECONDS.value,
          _WIDTH.value,
          _HEIGHT.value,
          _SOURCE_FPS.value,
          seed=i,
      )
    videos = features.find_videos(folder)
    checkpoint_dir = _CHECKPOINT_DIR.value
    if checkpoint_dir is None:
      checkpoint_dir = os.path.join(tmp, 'checkpoints')
    resolved = assets.resolve(_STREAMS.value, True, checkpoint_dir)
    prefixes = resolved.prefixes
    if _CHECKPOINT_DIR.value is None:
      for stream, prefix in prefixes.items():
        checkpoints.write_synthetic(
            prefix,
            checkpoints.RELEASE_CHECKPOINTS[resolved.checkpoints[stream]],
            seed=1,
        )

    endpoint = _ENDPOINT.value
    begin = time.perf_counter()
    extractor = features.Extractor.load(
        prefixes,
        endpoint,
        window=_WINDOW.value,
        stride=_STRIDE.value,
        batch_size=_BATCH_SIZE.value,
        flow_workers=_FLOW.workers.value,
        flow_backend=_FLOW.backend.value,
        recipe_name=_FLOW.recipe.value,
    )
    load_s = time.perf_counter() - begin

    begin = time.perf_counter()
    extractor.extract(videos[0].path)
    warmup_s = time.perf_counter() - begin

    load_before = os.getloadavg()
    rows: List[Dict[str, Any]] = []
    out = os.path.join(tmp, 'features')
    begin = time.perf_counter()
    summary = extractor.run(videos, out, progress=False)
    seconds = time.perf_counter() - begin
    if summary.failed:
      raise RuntimeError(f'Extraction failed: {summary.failed}')
    frames = windows = 0
    for item in videos:
      with open(features.output_paths(out, item.name, [])[0]) as f:
        record = json.load(f)
      frames += record['num_frames']
      windows += record['num_windows']
    rows.append(
        _row(
            'overlapped (Extractor.run)', seconds, len(videos), frames, windows
        )
    )
    if _SERIAL.value:
      begin = time.perf_counter()
      for item in videos:
        extractor.extract(item.path)
      rows.append(
          _row(
              'serial (Extractor.extract)',
              time.perf_counter() - begin,
              len(videos),
              frames,
              windows,
          )
      )
    load_after = os.getloadavg()
  finally:
    shutil.rmtree(tmp, ignore_errors=True)

  results = {
      'config': {
          'videos': _VIDEOS.value,
          'seconds': _SECONDS.value,
          'source': f'{_WIDTH.value}x{_HEIGHT.value} H.264 at '
          f'{_SOURCE_FPS.value} fps',
          'streams': streams,
          'endpoint': endpoint,
          'window': _WINDOW.value,
          'stride': _STRIDE.value,
          'batch_size': _BATCH_SIZE.value,
          'inference_mode': inference.DEFAULT_MODE,
          'checkpoints': 'synthetic'
          if _CHECKPOINT_DIR.value is None
          else _CHECKPOINT_DIR.value,
          'flow_workers': _FLOW.workers.value,
          'flow_backend': _FLOW.backend.value,
          'recipe': _FLOW.recipe.value,
      },
      'frames_at_25_fps': frames,
      'windows': windows,
      'model_load_s': round(load_s, 3),
      'warmup_s': round(warmup_s, 3),
      'runs': rows,
      'peak_rss_mb': _peak_rss_mb(),
      'load_average': {'before': load_before, 'after': load_after},
      'machine': {
          'cpus': len(os.sched_getaffinity(0)),
          'platform': platform.platform(),
          'python': platform.python_version(),
      },
  }

  print(
      f'{len(videos)} videos x {_SECONDS.value:g} s, {_WIDTH.value}x'
      f'{_HEIGHT.value} at {_SOURCE_FPS.value} fps -> {frames} frames at '
      f'25 fps, {windows} windows; streams {"+".join(streams)}, {endpoint}, '
      f'window {_WINDOW.value}, stride {_STRIDE.value}, batch '
      f'{_BATCH_SIZE.value}'
  )
  print(f'model load {load_s:.2f} s, warm-up {warmup_s:.2f} s')
  header = (
      f'{"run":<28} {"seconds":>8} {"videos/min":>11} {"frames/s":>9} '
      f'{"windows/s":>10} {"x realtime":>11}'
  )
  print(header)
  print('-' * len(header))
  for row in rows:
    print(
        f'{row["run"]:<28} {row["seconds"]:>8.2f} '
        f'{row["videos_per_minute"]:>11.2f} '
        f'{row["frames_per_second"]:>9.2f} '
        f'{row["windows_per_second"]:>10.3f} '
        f'{row["realtime_factor"]:>11.3f}'
    )
  rss = results['peak_rss_mb']
  print(
      f'peak RSS {rss["self"]:.0f} MB (child processes '
      f'{rss["children"]:.0f} MB); load average {load_before[0]:.2f} -> '
      f'{load_after[0]:.2f} on {results["machine"]["cpus"]} cores'
  )
  if _JSON_OUT.value:
    fileio.write_json(_JSON_OUT.value, results)
    print(f'wrote {_JSON_OUT.value}')


if __name__ == '__main__':
  app.run(main)
