r"""Videos per minute: the Beam pipeline (DirectRunner) against extract_features.

Writes --videos synthetic videos (benchmark_extract.py's panning texture),
then runs, each as a whole command in a fresh process and output folder:

  * extract_features.py (the single-machine extractor),
  * extract_features_beam.py --num_workers=W for each W in --workers,

and then each again on its finished folder (everything skipped), which
measures its fixed cost: start-up, model loading and, for Beam, starting the
runner and its worker processes. Overhead = Beam's wall time minus the
single-machine one on the same videos. Synthetic checkpoints (same speed as
the real ones). Needs apache-beam (run it with .venv-beam/bin/python); run it
alone on the machine. The load average before and after is recorded.

  .venv-beam/bin/python benchmark_beam.py \
      --videos=12 --json_out=benchmarks/benchmark_beam_cpu.json
"""

from __future__ import annotations

import runtime  # pylint: disable=g-bad-import-order

runtime.setup()  # Before TensorFlow loads: its oneDNN kernels on.

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Sequence

from absl import app
from absl import flags

import assets
import checkpoints
import fileio
import synthetic_videos

_ROOT = os.path.dirname(os.path.abspath(__file__))

_VIDEOS = flags.DEFINE_integer(
    'videos', 12, 'Number of synthetic videos.', lower_bound=1
)
_SECONDS = flags.DEFINE_float(
    'seconds', 4.0, 'Length of each synthetic video.', lower_bound=0.1
)
_WORKERS = flags.DEFINE_list(
    'workers', ['1', '2'], 'DirectRunner worker counts to time.'
)
_ENDPOINT = flags.DEFINE_string(
    'endpoint', 'Mixed_5c', 'Endpoint (extract_features.py --endpoint).'
)
_WINDOW = flags.DEFINE_integer(
    'window', 64, 'Frames per window.', lower_bound=1
)
_JSON_OUT = flags.DEFINE_string(
    'json_out', None, 'Also write the results here as JSON.'
)


def _time(command: List[str]) -> float:
  """Runs `command` in this folder; its wall time in seconds."""
  begin = time.perf_counter()
  run = subprocess.run(
      command,
      cwd=_ROOT,
      capture_output=True,
      text=True,
      check=False,
      env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3'},
  )
  seconds = time.perf_counter() - begin
  if run.returncode:
    raise RuntimeError(f'{command} failed:\n{run.stderr[-3000:]}')
  return seconds


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected positional arguments {argv[1:]}.')
  tmp = tempfile.mkdtemp(prefix='benchmark_beam_')
  rows: List[Dict[str, Any]] = []
  try:
    folder = os.path.join(tmp, 'videos')
    os.makedirs(folder)
    for i in range(_VIDEOS.value):
      synthetic_videos.write_panning_video(
          os.path.join(folder, f'video_{i:03d}.mp4'),
          _SECONDS.value,
          320,
          240,
          30,
          seed=i,
      )
    ckpt = os.path.join(tmp, 'checkpoints')
    checkpoints.write_synthetic(
        assets.checkpoint_prefix(ckpt, 'rgb_imagenet'),
        checkpoints.RELEASE_CHECKPOINTS['rgb_imagenet'],
        seed=1,
    )
    common = [
        f'--inputs={folder}',
        f'--checkpoint_dir={ckpt}',
        f'--endpoint={_ENDPOINT.value}',
        f'--window={_WINDOW.value}',
        f'--stride={_WINDOW.value}',
        '--noprogress',
    ]
    runs = [('extract_features.py', [])] + [
        ('extract_features_beam.py', [f'--num_workers={w}'])
        for w in _WORKERS.value
    ]
    load_before = os.getloadavg()
    for script, extra in runs:
      out = os.path.join(tmp, f'out_{len(rows)}')
      command = [sys.executable, script, f'--output_dir={out}'] + common
      first = _time(command + extra)
      again = _time(command + extra)
      name = script + (' ' + ' '.join(extra) if extra else '')
      rows.append(
          {
              'run': name,
              'seconds': round(first, 2),
              'videos_per_minute': round(60 * _VIDEOS.value / first, 2),
              'fixed_cost_s': round(again, 2),
              'videos_per_minute_without_fixed_cost': round(
                  60 * _VIDEOS.value / max(first - again, 1e-9), 2
              ),
          }
      )
    load_after = os.getloadavg()
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  base = rows[0]['seconds']
  for row in rows:
    row['slower_than_single_machine'] = round(row['seconds'] / base - 1, 3)
  results = {
      'config': {
          'videos': _VIDEOS.value,
          'seconds': _SECONDS.value,
          'source': '320x240 H.264 at 30 fps',
          'streams': ['rgb'],
          'endpoint': _ENDPOINT.value,
          'window': _WINDOW.value,
          'checkpoints': 'synthetic',
      },
      'runs': rows,
      'load_average': {'before': load_before, 'after': load_after},
      'machine': {
          'cpus': len(os.sched_getaffinity(0)),
          'platform': platform.platform(),
          'python': platform.python_version(),
      },
  }
  print(
      f'{_VIDEOS.value} videos x {_SECONDS.value:g} s, 320x240 at 30 fps; '
      f'rgb, {_ENDPOINT.value}, window {_WINDOW.value}; whole commands'
  )
  header = (
      f'{"run":<45} {"seconds":>8} {"videos/min":>11} {"fixed s":>8} '
      f'{"v/min w/o fixed":>16} {"vs single":>10}'
  )
  print(header)
  print('-' * len(header))
  for row in rows:
    print(
        f'{row["run"]:<45} {row["seconds"]:>8.2f} '
        f'{row["videos_per_minute"]:>11.2f} {row["fixed_cost_s"]:>8.2f} '
        f'{row["videos_per_minute_without_fixed_cost"]:>16.2f} '
        f'{row["slower_than_single_machine"]:>+10.1%}'
    )
  print(
      f'load average {load_before[0]:.2f} -> {load_after[0]:.2f} on '
      f'{results["machine"]["cpus"]} cores'
  )
  if _JSON_OUT.value:
    fileio.write_json(_JSON_OUT.value, results)
    print(f'wrote {_JSON_OUT.value}')


if __name__ == '__main__':
  app.run(main)
