r"""Throughput and peak memory of the I3D inference paths on this machine.

Each configuration (stream x frames x mode) runs in a fresh subprocess, so
that its peak resident memory is its own: TensorFlow's oneDNN CPU allocator
keeps freed memory, so peaks measured in one long-lived process only grow.
Each one builds the model with random release-shaped weights, runs `--warmup`
untimed calls, then `--iters` timed calls of batch `--batch`, and reports
clips/s, frames/s, effective GFLOP/s (convolution FLOPs counted analytically,
see timing.conv_flops) and that as a percentage of two rates measured in
the same run: the cores' fp32 FMA limit (runtime.fma_peak, a register-resident
fused multiply-add loop on every core; left out without a C compiler) and
TensorFlow's sustained fp32 matmul rate. The header names the CPU, its vector
extensions (AVX2, AVX-512, AVX512_BF16, AMX) and whether TensorFlow's oneDNN
kernels are on (runtime.setup turns them on unless TF_ENABLE_ONEDNN_OPTS is
set; `TF_ENABLE_ONEDNN_OPTS=0 python benchmark.py` measures without).

Modes: 'eager' calls the module eagerly; 'plain' and 'fast' are
inference.MODES ('plain' runs the module's units in a traced tf.function,
'fast' folds BatchNorm); 'fast_bf16' is the fast mode in bfloat16
(inference.make_predictor's precision opt-in; only when asked for).
Clips longer than `--chunk_frames` are streamed in chunks (marked in the
table). The long-video rows stream a synthetic video of
`--long_video_seconds` at `--fps` through Predictor.logits_stream and show
that peak memory does not grow with the length.

Usage:
  python benchmark.py                                   # everything
  python benchmark.py --frames 79 --streams rgb --modes fast
  python benchmark.py --long_video_seconds 600 --frames=  # 10 min at 25 fps
  python benchmark.py --json_out out/benchmark.json
  python benchmark.py --frames 79 --streams rgb --modes fast \
      --long_video_seconds= --rgb_checkpoint=data/checkpoints/rgb_scratch/model.ckpt
"""

from __future__ import annotations

import runtime  # pylint: disable=g-bad-import-order

runtime.setup()  # Before TensorFlow loads: its oneDNN kernels on.

import json
import os
import resource
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

from absl import app
from absl import flags

import assets
import timing

STREAMS = assets.STREAM_CHOICES
# assets imports no TensorFlow, so this parent process, which only launches
# the measuring subprocesses, never does.
_CHANNELS = assets.STREAM_CHANNELS
_SIZE = 224
# The benchmark's name for the fast mode in bfloat16.
BF16_MODE = 'fast_bf16'

_FRAMES = flags.DEFINE_list(
    'frames',
    ['16', '64', '79', '250'],
    'Clip lengths in frames; empty for none.',
)
_STREAMS = flags.DEFINE_multi_enum(
    'streams',
    list(STREAMS),
    STREAMS,
    'Streams: rgb, flow, or joint (both, logits summed).',
)
_MODES = flags.DEFINE_multi_enum(
    'modes',
    None,
    ['eager', 'plain', 'fast', 'fast_bf16'],
    'Computation modes: eager, and the inference.MODES; all these when '
    'unset. fast_bf16 (the fast mode in bfloat16) only when named.',
)
_BATCH = flags.DEFINE_integer('batch', 1, 'Clips per call.')
_WARMUP = flags.DEFINE_integer('warmup', 1, 'Untimed calls first.')
_ITERS = flags.DEFINE_integer('iters', 3, 'Timed calls.')
_CHUNK_FRAMES = flags.DEFINE_integer(
    'chunk_frames',
    None,
    'Predictor chunk size; inference.DEFAULT_CHUNK_FRAMES when unset.',
)
_LONG_SECONDS = flags.DEFINE_list(
    'long_video_seconds',
    ['8', '32'],
    'Lengths in seconds of the streamed long videos; empty for none. 600 is '
    '10 minutes (15000 frames at 25 fps).',
)
_FPS = flags.DEFINE_integer('fps', 25, 'Frame rate of the long videos.')
_LONG_MODES = flags.DEFINE_multi_enum(
    'long_video_modes',
    ['fast'],
    ['plain', 'fast'],
    'Paths for the long-video rows.',
)
_LONG_STREAMS = flags.DEFINE_multi_enum(
    'long_video_streams', ['rgb'], STREAMS, 'Streams for the long-video rows.'
)
_THREADS = flags.DEFINE_integer(
    'threads', None, 'Intra-op threads; every core of this process if unset.'
)
_INTER_OP_THREADS = flags.DEFINE_integer(
    'inter_op_threads',
    None,
    'Inter-op threads; inference.INTER_OP_THREADS if unset.',
)
_MATMUL_SIZE = flags.DEFINE_integer(
    'matmul_size', 4096, 'Side of the square fp32 matmul that measures peak.'
)
_MATMUL_ITERS = flags.DEFINE_integer(
    'matmul_iters', 20, 'Timed matmuls (after 3 untimed).'
)
_RGB_CHECKPOINT = flags.DEFINE_string(
    'rgb_checkpoint',
    None,
    'A release-format RGB checkpoint prefix, e.g. '
    'data/checkpoints/rgb_scratch/model.ckpt: every rgb clip row is then run '
    'again with these weights, right after its row with random weights, to '
    'show that speed does not depend on the values.',
)
_JSON_OUT = flags.DEFINE_string(
    'json_out', None, 'Also write every result to this JSON file.'
)
_CONFIG = flags.DEFINE_string(
    'run_config',
    None,
    'Internal: run one configuration (JSON) in this process and print its '
    'result as JSON.',
)


def _peak_rss_mb() -> float:
  """This process's peak resident memory, in MiB."""
  try:
    with open('/proc/self/status') as f:
      for line in f:
        if line.startswith('VmHWM:'):
          return int(line.split()[1]) / 1024
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- one configuration, in its own process -------------------------------


def _run_matmul(config: Dict[str, Any]) -> Dict[str, Any]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  n = config['size']
  a = tf.random.normal([n, n])
  b = tf.random.normal([n, n])
  matmul = tf.function(lambda a, b: tf.linalg.matmul(a, b))

  def call():
    matmul(a, b).numpy()

  times = timing.time_calls(call, 3, config['iters'])
  best = min(times)
  return {
      'kind': 'matmul',
      'size': n,
      'time_s': best,
      'gflops': 2 * n**3 / best / 1e9,
      'median_gflops': 2 * n**3 / sorted(times)[len(times) // 2] / 1e9,
  }


def _build(
    stream: str,
    mode: str,
    chunk_frames: Optional[int],
    rgb_checkpoint: Optional[str] = None,
):
  """Models (one per stream of `stream`) and a per-mode logits function.

  The weights are random and release-shaped, or restored from
  `rgb_checkpoint` for the rgb stream when it is set.
  """
  import checkpoints  # pylint: disable=g-import-not-at-top
  import i3d  # pylint: disable=g-import-not-at-top
  import inference  # pylint: disable=g-import-not-at-top

  parts = assets.streams_of(stream)
  models, predictors = [], []
  for part in parts:
    model = i3d.InceptionI3d(400, final_endpoint='Logits')
    if part == 'rgb' and rgb_checkpoint:
      checkpoints.restore(model, rgb_checkpoint)
    else:
      checkpoints.assign_synthetic(model, part, seed=len(models))
    models.append(model)
    if mode != 'eager':
      precision = 'bfloat16' if mode == BF16_MODE else 'float32'
      predictors.append(
          inference.make_predictor(
              model, mode.split('_')[0], chunk_frames, precision
          )
      )
  return parts, models, predictors


def _run_clip(config: Dict[str, Any]) -> Dict[str, Any]:
  import numpy as np  # pylint: disable=g-import-not-at-top

  parts, models, predictors = _build(
      config['stream'],
      config['mode'],
      config['chunk_frames'],
      config.get('rgb_checkpoint'),
  )
  rng = np.random.default_rng(0)
  frames = config['frames']
  videos = [
      rng.uniform(
          -1, 1, [config['batch'], frames, _SIZE, _SIZE, _CHANNELS[p]]
      ).astype(np.float32)
      for p in parts
  ]
  rss_built = _peak_rss_mb()
  if config['mode'] == 'eager':

    def call():
      return sum(
          m(v, is_training=False)[0].numpy() for m, v in zip(models, videos)
      )

  else:

    def call():
      return sum(p.logits(v) for p, v in zip(predictors, videos))

  times = timing.time_calls(call, config['warmup'], config['iters'])
  chunk = predictors[0].chunk_frames if predictors else None
  flops = config['batch'] * sum(
      sum(timing.conv_flops(frames, in_channels=_CHANNELS[p]).values())
      for p in parts
  )
  return {
      'kind': 'clip',
      **config,
      'times_s': times,
      'flops': flops,
      'chunked': bool(chunk and frames > chunk),
      'chunk': chunk,
      'rss_after_build_mb': rss_built,
      'peak_rss_mb': _peak_rss_mb(),
  }


def _run_long(config: Dict[str, Any]) -> Dict[str, Any]:
  import numpy as np  # pylint: disable=g-import-not-at-top

  import streaming  # pylint: disable=g-import-not-at-top

  parts, _, predictors = _build(
      config['stream'], config['mode'], config['chunk_frames']
  )
  total = config['frames']
  piece = config['fps']  # The caller's frames arrive a second at a time.
  rng = np.random.default_rng(0)
  bases = [
      rng.uniform(-1, 1, [piece, _SIZE, _SIZE, _CHANNELS[p]]).astype(np.float32)
      for p in parts
  ]

  def frames_of(base):
    for start in range(0, total, piece):
      yield base[: min(piece, total - start)]

  # Warm up (traces the step and head functions) on a short stream.
  warm = [streaming.first_chunk_frames('Mixed_5c') + 8] * len(parts)
  for p, base in zip(predictors, bases):
    p.logits_stream([base[:1]] * warm[0], num_frames=warm[0])
  rss_built = _peak_rss_mb()
  start = time.perf_counter()
  logits = sum(
      p.logits_stream(frames_of(base), num_frames=total)
      for p, base in zip(predictors, bases)
  )
  elapsed = time.perf_counter() - start
  del logits
  flops = sum(
      sum(timing.conv_flops(total, in_channels=_CHANNELS[p]).values())
      for p in parts
  )
  return {
      'kind': 'long',
      **config,
      'times_s': [elapsed],
      'flops': flops,
      'chunked': True,
      'chunk': predictors[0].chunk_frames,
      'rss_after_build_mb': rss_built,
      'peak_rss_mb': _peak_rss_mb(),
  }


def _run_one(config: Dict[str, Any]) -> Dict[str, Any]:
  import inference  # pylint: disable=g-import-not-at-top

  inference.configure_threads(
      config.get('threads'),
      config.get('inter_op_threads') or inference.INTER_OP_THREADS,
  )
  runner = {'matmul': _run_matmul, 'clip': _run_clip, 'long': _run_long}[
      config['kind']
  ]
  return {**runner(config), 'onednn': runtime.onednn_active()}


def _spawn(
    config: Dict[str, Any], script: Optional[str] = None
) -> Dict[str, Any]:
  """Runs one configuration in a fresh Python process.

  Args:
    config: the configuration, passed as `--run_config`.
    script: the entry point that runs it; this file when None.
  """
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  proc = subprocess.run(
      [
          sys.executable,
          os.path.abspath(script or __file__),
          '--run_config',
          json.dumps(config),
      ],
      capture_output=True,
      text=True,
      env=env,
      check=False,
  )
  lines = [line for line in proc.stdout.splitlines() if line.startswith('{')]
  if proc.returncode or not lines:
    raise RuntimeError(
        f'Configuration {config} failed (exit '
        f'{proc.returncode}):\n{proc.stderr[-4000:]}'
    )
  return json.loads(lines[-1])


# ---- the table -----------------------------------------------------------


def _flops_table(frames: List[int]) -> str:
  lengths = frames or [79]
  per = {t: timing.conv_flops(t) for t in lengths}
  rows = [
      'Convolution GFLOPs per 224x224 RGB clip, by endpoint (flow differs '
      'only at Conv3d_1a_7x7: 2/3 of it):',
      f'  {"endpoint":18s}' + ''.join(f'{f"T={t}":>10s}' for t in lengths),
  ]
  for name in per[lengths[0]]:
    rows.append(
        f'  {name:18s}'
        + ''.join(f'{per[t][name] / 1e9:10.2f}' for t in lengths)
    )
  rows.append(
      f'  {"total":18s}'
      + ''.join(f'{sum(per[t].values()) / 1e9:10.2f}' for t in lengths)
  )
  return '\n'.join(rows)


_HEADER = (
    f'{"kind":5s} {"stream":6s} {"mode":9s} {"weights":11s} {"frames":>6s} '
    f'{"chunk":>6s} {"time s":>8s} {"clips/s":>8s} {"frames/s":>9s} '
    f'{"GFLOP/s":>8s} {"%FMA":>6s} {"%matmul":>7s} '
    f'{"peak RSS MB":>11s}'
)


def _row(result: Dict[str, Any], peak: float, fma: Optional[float]) -> str:
  times = sorted(result['times_s'])
  median = times[len(times) // 2]
  batch = result.get('batch', 1)
  gflops = result['flops'] / median / 1e9
  result.update(
      median_s=median,
      clips_per_s=batch / median,
      frames_per_s=batch * result['frames'] / median,
      gflops_per_s=gflops,
      percent_of_matmul=100 * gflops / peak,
      percent_of_fma=100 * gflops / fma if fma else None,
  )
  chunk = str(result['chunk']) if result['chunked'] else '-'
  of_fma = f'{result["percent_of_fma"]:6.1f}' if fma else f'{"-":>6s}'
  checkpoint = result.get('rgb_checkpoint')
  weights = (
      os.path.basename(os.path.dirname(checkpoint)) if checkpoint else 'random'
  )
  return (
      f'{result["kind"]:5s} {result["stream"]:6s} {result["mode"]:9s} '
      f'{weights[:11]:11s} '
      f'{result["frames"]:6d} {chunk:>6s} {median:8.3f} '
      f'{result["clips_per_s"]:8.3f} {result["frames_per_s"]:9.1f} '
      f'{gflops:8.1f} {of_fma} {result["percent_of_matmul"]:7.1f} '
      f'{result["peak_rss_mb"]:11.0f}'
  )


def machine_header(threads: Optional[int]) -> Dict[str, Any]:
  """Prints and returns the CPU, load and FMA limit of this run."""
  load = os.getloadavg()
  cpu = runtime.cpu_info()
  print(
      f'CPU: {cpu["model"]}, {cpu["cores"]} cores usable; extensions: '
      f'{", ".join(cpu["isa"]) or "none of interest"}.'
  )
  print(
      f'Load average before the run: {load[0]:.2f} {load[1]:.2f} '
      f'{load[2]:.2f}.'
  )
  fma = runtime.fma_peak(threads)
  if fma:
    print(
        f'FMA limit ({fma["threads"]} threads, {fma["isa"]}): '
        f'{fma["gflops"]:.1f} GFLOP/s ('
        + ', '.join(f'{isa} {g:.1f}' for isa, g in fma['by_isa'].items())
        + ')',
        flush=True,
    )
  else:
    print(
        'FMA limit: not measured (needs a C compiler, cc/gcc/clang, and '
        'AVX2 + FMA); %FMA is left out.',
        flush=True,
    )
  knobs = {
      k: v
      for k, v in os.environ.items()
      if k.startswith(('TF_ONEDNN', 'ONEDNN_', 'DNNL_', 'OMP_', 'KMP_'))
      or k == runtime.ONEDNN_VAR
  }
  return {
      'date': time.strftime('%Y-%m-%d'),
      'cpu': cpu,
      'fma': fma,
      'load_before': load,
      'env': knobs,
  }


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if _CONFIG.value:
    print(json.dumps(_run_one(json.loads(_CONFIG.value))))
    return
  import inference  # pylint: disable=g-import-not-at-top

  modes = _MODES.value or ['eager', *inference.MODES]
  frames = [int(f) for f in _FRAMES.value]
  seconds = [float(s) for s in _LONG_SECONDS.value]
  common = {
      'threads': _THREADS.value,
      'inter_op_threads': _INTER_OP_THREADS.value,
      'chunk_frames': _CHUNK_FRAMES.value,
  }
  machine = machine_header(_THREADS.value)
  fma = machine['fma']['gflops'] if machine['fma'] else None
  print(_flops_table(frames), flush=True)

  matmul_cfg = {
      'kind': 'matmul',
      'size': _MATMUL_SIZE.value,
      'iters': _MATMUL_ITERS.value,
      **common,
  }
  matmuls = [_spawn(matmul_cfg)]
  print(
      f'oneDNN: {"on" if matmuls[0]["onednn"] else "off"} '
      f'({runtime.ONEDNN_VAR}={os.environ.get(runtime.ONEDNN_VAR)})'
  )
  print(
      f'fp32 matmul {_MATMUL_SIZE.value}^2: '
      f'{matmuls[0]["gflops"]:.1f} GFLOP/s (best), '
      f'{matmuls[0]["median_gflops"]:.1f} (median)',
      flush=True,
  )

  configs = []
  for stream in _STREAMS.value:
    for t in frames:
      for mode in modes:
        configs.append(
            {
                'kind': 'clip',
                'stream': stream,
                'mode': mode,
                'frames': t,
                'batch': _BATCH.value,
                'warmup': _WARMUP.value,
                'iters': _ITERS.value,
                **common,
            }
        )
        if stream != 'flow' and _RGB_CHECKPOINT.value:
          configs.append(
              {**configs[-1], 'rgb_checkpoint': _RGB_CHECKPOINT.value}
          )
  for stream in _LONG_STREAMS.value:
    for mode in _LONG_MODES.value:
      for s in seconds:
        configs.append(
            {
                'kind': 'long',
                'stream': stream,
                'mode': mode,
                'frames': int(round(s * _FPS.value)),
                'fps': _FPS.value,
                **common,
            }
        )
  results = []
  peak = matmuls[0]['gflops']
  print(
      f'%FMA is relative to {fma or 0:.1f} GFLOP/s, %matmul to '
      f'{peak:.1f}.\n{_HEADER}',
      flush=True,
  )
  for config in configs:
    result = _spawn(config)
    print(_row(result, peak, fma), flush=True)
    results.append(result)
  matmuls.append(_spawn(matmul_cfg))
  print(
      f'fp32 matmul again at the end: {matmuls[1]["gflops"]:.1f} GFLOP/s '
      f'(best). Load average after: '
      f'{" ".join(f"{x:.2f}" for x in os.getloadavg())}'
  )
  if _JSON_OUT.value:
    os.makedirs(
        os.path.dirname(os.path.abspath(_JSON_OUT.value)), exist_ok=True
    )
    with open(_JSON_OUT.value, 'w') as f:
      json.dump(
          {
              **machine,
              'matmul': matmuls,
              'load_after': os.getloadavg(),
              'results': results,
          },
          f,
          indent=1,
      )
    print(f'Wrote {_JSON_OUT.value}')


if __name__ == '__main__':
  app.run(main)
