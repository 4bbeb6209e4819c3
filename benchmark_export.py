r"""The project's fast path against OpenVINO and onnxruntime, on this CPU.

One run, one machine, the same clip (random release-shaped weights, batch
`--batch`, `--frames` frames, 224x224), every row in a fresh subprocess.
This script imports benchmark.py and takes its --streams, --frames, --batch,
--warmup, --iters, --threads and --json_out (with defaults rgb, 79, 1, 1, 5,
every core, none). The rows:

  tf fast        inference.Predictor's fast path (benchmark.py's own
                 configuration, reused), with TF_ENABLE_ONEDNN_OPTS=1 (what
                 runtime.setup() chooses when it is unset) and =0.
  openvino f32   the exported IR on OpenVINO's CPU plugin, float32
                 inference precision (exact to 1e-4).
  openvino dflt  the same IR with the plugin's default precision: bf16 on
                 CPUs with AVX512-BF16 or AMX, so not exact.
  onnxruntime    the exported ONNX model on onnxruntime's CPU provider.

The models are first exported once (exporters.export) to `--work_dir`; each
row's `max |dlogits|` is against the plain Sonnet module's logits on the
same clip. `--warmup` untimed calls, then `--iters` timed calls; the median
is reported. The table ends with the project path's speed over OpenVINO's,
against the goal of 1.5x. The header (benchmark.machine_header) names the
CPU, its extensions, the load average and the FMA limit; the load average is
printed again after: run it alone on the machine (the README's figures ran
while other jobs shared it).

Usage:
  python benchmark_export.py --json_out=benchmarks/benchmark_export_cpu.json
  python benchmark_export.py --streams=rgb --streams=joint --frames=16,79
"""

from __future__ import annotations

import runtime  # pylint: disable=g-bad-import-order

runtime.setup()  # Before TensorFlow loads: its oneDNN kernels on.

import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Dict, List

from absl import app
from absl import flags

import assets
import benchmark
import fileio
import timing

_GOAL = 1.5
# benchmark.py's flags, which importing it defines, mean the same here:
# --streams, --frames, --batch, --warmup, --iters, --threads, --json_out
# (its --modes, --chunk_frames, long-video and matmul flags are not used).
FLAGS = flags.FLAGS
FLAGS.set_default('streams', ['rgb'])
FLAGS.set_default('frames', ['79'])
FLAGS.set_default('iters', 5)
_ONEDNN = flags.DEFINE_list(
    'onednn',
    ['1', '0'],
    'TF_ENABLE_ONEDNN_OPTS values for the project rows; "unset" leaves it '
    'to runtime.setup(), which turns oneDNN on.',
)
_WORK_DIR = flags.DEFINE_string(
    'work_dir',
    None,
    'Where the exported models go; a temporary folder, '
    'removed at the end, when unset.',
)


# ---- steps, each in its own process --------------------------------------


def _clip(config: Dict[str, Any]) -> Dict[str, Any]:
  import numpy as np  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  shape = [config['batch'], config['frames'], 224, 224]
  return {
      p: rng.uniform(-1, 1, [*shape, assets.STREAM_CHANNELS[p]]).astype(
          np.float32
      )
      for p in assets.streams_of(config['stream'])
  }


def _run_export(config: Dict[str, Any]) -> Dict[str, Any]:
  """Exports the stream's synthetic models and saves the module's logits."""
  import exporters  # pylint: disable=g-import-not-at-top

  parts, models, _ = benchmark._build(config['stream'], 'eager', None)  # pylint: disable=protected-access
  models = dict(zip(parts, models))
  clips = _clip(config)
  logits = sum(
      m(clips[p], is_training=False)[0].numpy() for p, m in models.items()
  )
  fileio.write_npy(os.path.join(config['dir'], 'logits.npy'), logits)
  seconds = {}
  for fmt in ('openvino', 'onnx'):
    start = time.perf_counter()
    exporters.export(
        models, os.path.join(config['dir'], fmt), fmt, overwrite=True
    )
    seconds[fmt] = time.perf_counter() - start
  return {'kind': 'export', 'convert_s': seconds}


def _run_runtime(config: Dict[str, Any]) -> Dict[str, Any]:
  """Times one exported model on its runtime."""
  import numpy as np  # pylint: disable=g-import-not-at-top

  import exporters  # pylint: disable=g-import-not-at-top

  path = os.path.join(config['dir'], config['format'])
  start = time.perf_counter()
  if config['format'] == 'openvino':
    runner = exporters.OpenVINORunner(
        path, config['precision'], config['threads']
    )
    precision = runner.precision
  else:
    runner = exporters.ONNXRunner(path, config['threads'])
    precision = 'f32'
  load_s = time.perf_counter() - start
  clips = _clip(config)
  rss_built = benchmark._peak_rss_mb()  # pylint: disable=protected-access
  logits = runner(**clips)['logits']
  times = timing.time_calls(
      lambda: runner(**clips), config['warmup'], config['iters']
  )
  want = np.load(os.path.join(config['dir'], 'logits.npy'))
  return {
      'kind': 'runtime',
      **config,
      'precision': precision,
      'load_s': load_s,
      'times_s': times,
      'max_abs_logits_diff': float(np.abs(logits - want).max()),
      'rss_after_build_mb': rss_built,
      'peak_rss_mb': benchmark._peak_rss_mb(),
  }  # pylint: disable=protected-access


def _spawn(config: Dict[str, Any]) -> Dict[str, Any]:
  """Runs one step of this script in a fresh process."""
  return benchmark._spawn(config, __file__)  # pylint: disable=protected-access


def _spawn_project(config: Dict[str, Any], onednn: str) -> Dict[str, Any]:
  """benchmark.py's fast-path row, with TF_ENABLE_ONEDNN_OPTS as asked."""
  saved = os.environ.pop(runtime.ONEDNN_VAR, None)
  try:
    if onednn != 'unset':
      os.environ[runtime.ONEDNN_VAR] = onednn
    return benchmark._spawn(config)  # pylint: disable=protected-access
  finally:
    os.environ.pop(runtime.ONEDNN_VAR, None)
    if saved is not None:
      os.environ[runtime.ONEDNN_VAR] = saved


# ---- the machine and the table -------------------------------------------


_HEADER = (
    f'{"stream":6s} {"runtime":34s} {"precision":9s} {"time s":>7s} '
    f'{"clips/s":>8s} {"GFLOP/s":>8s} {"max |dlogits|":>13s} '
    f'{"peak RSS MB":>11s}'
)


def _row(result: Dict[str, Any], flops: float) -> str:
  times = sorted(result['times_s'])
  median = times[len(times) // 2]
  result.update(
      median_s=median,
      clips_per_s=result['batch'] / median,
      gflops_per_s=flops / median / 1e9,
  )
  diff = result.get('max_abs_logits_diff')
  diff = '-' if diff is None else f'{diff:.1e}'
  return (
      f'{result["stream"]:6s} {result["label"]:34s} '
      f'{result["precision"]:9s} {median:7.3f} '
      f'{result["clips_per_s"]:8.3f} {result["gflops_per_s"]:8.1f} '
      f'{diff:>13s} {result["peak_rss_mb"]:11.0f}'
  )


def _summary(rows: List[Dict[str, Any]]) -> List[str]:
  """The project path's speed over OpenVINO's, against the goal."""
  lines = []
  for ours in rows:
    if ours['kind'] != 'clip':
      continue
    for peer in rows:
      if peer.get('format') != 'openvino' or (
          peer['stream'],
          peer['frames'],
      ) != (ours['stream'], ours['frames']):
        continue
      ratio = ours['clips_per_s'] / peer['clips_per_s']
      verdict = (
          f'meets the {_GOAL}x goal'
          if ratio >= _GOAL
          else f'misses the {_GOAL}x goal: {_GOAL / ratio:.2f}x short'
      )
      lines.append(
          f'  {ours["stream"]} T={ours["frames"]}: {ours["label"]}'
          f' / {peer["label"]}: {ratio:.2f}x; {verdict}'
      )
  return lines


def _steps(stream: str, folder: str, common: Dict[str, Any]):
  """(label, thunk) for each row of one stream."""
  steps = []
  for onednn in _ONEDNN.value:
    config = {
        'kind': 'clip',
        'stream': stream,
        'mode': 'fast',
        'chunk_frames': None,
        **common,
    }
    steps.append(
        (
            f'tf fast, TF_ENABLE_ONEDNN_OPTS={onednn}',
            lambda c=config, o=onednn: _spawn_project(c, o),
        )
    )
  for fmt, precision, label in (
      ('openvino', 'f32', 'openvino, f32'),
      ('openvino', 'default', 'openvino, default precision'),
      ('onnx', 'f32', 'onnxruntime'),
  ):
    config = {
        'kind': 'runtime',
        'stream': stream,
        'format': fmt,
        'precision': precision,
        'dir': folder,
        **common,
    }
    steps.append((label, lambda c=config: _spawn(c)))
  return steps


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if FLAGS.run_config:
    config = json.loads(FLAGS.run_config)
    step = {'export': _run_export, 'runtime': _run_runtime}[config['kind']]
    print(json.dumps(step(config)))
    return
  import exporters  # pylint: disable=g-import-not-at-top

  absent = exporters.missing(['openvino', 'onnx', 'tf2onnx', 'onnxruntime'])
  if absent:
    sys.exit(
        f'benchmark_export: error: {", ".join(absent)} not '
        f'installed; install them with `{exporters.INSTALL_HINT}`.'
    )
  # The CPU, its extensions, the load before the run and the FMA limit.
  machine = benchmark.machine_header(FLAGS.threads)
  work = _WORK_DIR.value or tempfile.mkdtemp(prefix='benchmark_export_')
  rows, exports = [], {}
  print(_HEADER, flush=True)
  try:
    for frames in [int(f) for f in FLAGS.frames]:
      common = {
          'frames': frames,
          'batch': FLAGS.batch,
          'warmup': FLAGS.warmup,
          'iters': FLAGS.iters,
          'threads': FLAGS.threads,
      }
      for stream in FLAGS.streams:
        folder = os.path.join(work, f'{stream}_{frames}')
        os.makedirs(folder, exist_ok=True)
        exports[f'{stream}_{frames}'] = _spawn(
            {'kind': 'export', 'stream': stream, 'dir': folder, **common}
        )
        flops = FLAGS.batch * sum(
            sum(
                timing.conv_flops(
                    frames, in_channels=assets.STREAM_CHANNELS[p]
                ).values()
            )
            for p in assets.streams_of(stream)
        )
        for label, step in _steps(stream, folder, common):
          result = step()
          result.setdefault('precision', 'f32')
          result.update(label=label, stream=stream)
          print(_row(result, flops), flush=True)
          rows.append(result)
  finally:
    if not _WORK_DIR.value:
      shutil.rmtree(work, ignore_errors=True)
  load_after = os.getloadavg()
  print(
      'Load average after the run: '
      f'{" ".join(f"{x:.2f}" for x in load_after)}.'
  )
  print('Speed-up of the project path over OpenVINO (clips/s ratio):')
  for line in _summary(rows):
    print(line)
  if FLAGS.json_out:
    fileio.write_json(
        FLAGS.json_out,
        {
            **machine,
            'load_after': load_after,
            'goal': _GOAL,
            'exports': exports,
            'results': rows,
        },
    )
    print(f'Wrote {FLAGS.json_out}')


if __name__ == '__main__':
  app.run(main)
