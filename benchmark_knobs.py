r"""The CPU knobs of the fast path, each timed against the default, in pairs.

Each knob (a thread setting, a `TF_ONEDNN_*` variable that TensorFlow 2.21
reads, or the opt-in bfloat16 mode) is measured by benchmark.py's rgb fast
row (`--frames --streams=rgb --modes=fast --long_video_seconds=`), run once
with the default and once with the knob, back to back, in fresh processes.
On a shared machine only such same-minute ratios mean anything, so every
pair records the load average before it, `--repeats` pairs are run per knob
(the order alternates: default first, then knob first), and the table gives
each pair's speed-up (default median time / knob median time; above 1 the
knob is faster).

Run it alone on the machine, e.g. under a lock:

  python benchmark_knobs.py --repeats=2 \
      --json_out=benchmarks/benchmark_knobs_amd_epyc.json

Knobs (KNOBS): intra-op threads of cores - 1 and 1 (the default is every
core), 2 inter-op threads (the default is 1), and the variables below,
whose names were checked against the strings of TensorFlow 2.21's
libtensorflow_framework.so.2.
"""

from __future__ import annotations

import runtime  # pylint: disable=g-bad-import-order

runtime.setup()  # Before TensorFlow loads: its oneDNN kernels on.

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Sequence, Tuple

from absl import flags
import tqdm

import cli
import fileio

_ROOT = os.path.dirname(os.path.abspath(__file__))

# name -> (environment variables, extra benchmark.py flags, what it does).
KNOBS: Dict[str, Tuple[Dict[str, str], List[str], str]] = {
    'intra_op_cores_minus_1': (
        {},
        ['--threads={cores_minus_1}'],
        'intra-op threads: cores - 1 (default: every core)',
    ),
    'intra_op_1': ({}, ['--threads=1'], 'intra-op threads: 1'),
    'inter_op_2': (
        {},
        ['--inter_op_threads=2'],
        'inter-op threads: 2 (default: 1)',
    ),
    'assume_frozen_weights': (
        {'TF_ONEDNN_ASSUME_FROZEN_WEIGHTS': '1'},
        [],
        'oneDNN caches the reordered (blocked) weights of every conv',
    ),
    'system_allocator': (
        {'TF_ONEDNN_USE_SYSTEM_ALLOCATOR': '1'},
        [],
        "malloc instead of TensorFlow's oneDNN CPU allocator",
    ),
    'caller_thread': (
        {'TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD': '1'},
        [],
        "oneDNN's threadpool also runs work on the calling thread",
    ),
    'primitive_memuse_off': (
        {'TF_MKL_OPTIMIZE_PRIMITIVE_MEMUSE': '0'},
        [],
        'keeps the primitives that the memory-use optimization frees',
    ),
    'fpmath_bf16': (
        {'TF_SET_ONEDNN_FPMATH_MODE': 'BF16'},
        [],
        'lets oneDNN compute float32 ops in bfloat16 (the "fpmath" attribute)',
    ),
    'bf16': (
        {},
        ['--modes=fast_bf16'],
        'the fast path in bfloat16 (inference precision opt-in)',
    ),
}

_KNOBS = flags.DEFINE_list(
    'knobs',
    list(KNOBS),
    f'Knobs to time against the default, of: {", ".join(KNOBS)}; empty for '
    'none.',
)
_CONV_LAYOUTS = flags.DEFINE_bool(
    'conv_layouts',
    False,
    'Also time single I3D convolutions (LAYOUT_CONVS) with channels last '
    '(NDHWC, what the network uses) and channels first (NCDHW).',
)
_REPEATS = flags.DEFINE_integer(
    'repeats', 2, 'Default/knob pairs per knob, in alternating order.'
)
_FRAMES = flags.DEFINE_integer('frames', 79, 'Clip length in frames.')
_ITERS = flags.DEFINE_integer('iters', 5, 'Timed calls per run (median kept).')
_MATMUL_ITERS = flags.DEFINE_integer(
    'matmul_iters', 3, "benchmark.py's timed matmuls per run."
)
_JSON_OUT = flags.DEFINE_string(
    'json_out', None, 'Also write every run to this JSON file.'
)


def _run(env: Dict[str, str], extra: Sequence[str]) -> Dict[str, Any]:
  """One benchmark.py run of the rgb fast row; its JSON, with the load."""
  load = os.getloadavg()
  modes = [x for x in extra if x.startswith('--modes=')] or ['--modes=fast']
  extra = [x for x in extra if not x.startswith('--modes=')]
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, 'run.json')
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(_ROOT, 'benchmark.py'),
            f'--frames={_FRAMES.value}',
            '--streams=rgb',
            *modes,
            '--long_video_seconds=',
            f'--iters={_ITERS.value}',
            f'--matmul_iters={_MATMUL_ITERS.value}',
            f'--json_out={out}',
            *extra,
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, **env),
        check=False,
    )
    if proc.returncode:
      raise cli.Failure(
          f'benchmark.py {" ".join(extra)} with {env} failed (exit '
          f'{proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}; run '
          'it alone to see why'
      )
    with open(out) as f:
      run = json.load(f)
  result = run['results'][0]
  return {
      'env': env,
      'flags': [*modes, *extra],
      'load_before': load,
      'median_s': sorted(result['times_s'])[len(result['times_s']) // 2],
      'times_s': result['times_s'],
      'mode': result['mode'],
      'onednn': result['onednn'],
      'matmul_gflops': run['matmul'][0]['gflops'],
      'fma_gflops': run['fma']['gflops'] if run['fma'] else None,
      'flops': result['flops'],
  }


# (name, input [B, T, H, W, C], output channels, kernel, stride): convs of
# the network at T=79, for the layout probe.
LAYOUT_CONVS = (
    ('Conv3d_1a_7x7', (1, 79, 224, 224, 3), 64, 7, 2),
    ('Conv3d_2c_3x3', (1, 40, 56, 56, 64), 192, 3, 1),
    ('Mixed_4b/Branch_1/Conv3d_0b_3x3', (1, 20, 14, 14, 96), 208, 3, 1),
)


def _layout_probe(rounds: int, iters: int) -> List[Dict[str, Any]]:
  """Median times of each LAYOUT_CONVS conv (+ bias + ReLU) per layout."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  import inference  # pylint: disable=g-import-not-at-top
  import timing  # pylint: disable=g-import-not-at-top

  inference.configure_threads()
  rows = []
  for name, shape, out, k, stride in LAYOUT_CONVS:
    x = tf.random.uniform(shape, -1, 1)
    w = tf.random.normal([k, k, k, shape[-1], out], stddev=0.05)
    b = tf.zeros([out])
    calls = {}
    for layout in ('NDHWC', 'NCDHW'):
      first = layout == 'NCDHW'
      xl = tf.transpose(x, [0, 4, 1, 2, 3]) if first else x
      s = [1, 1, stride, stride, stride] if first else [1, *[stride] * 3, 1]
      fn = tf.function(
          lambda x, s=s, f=layout: tf.nn.relu(
              tf.nn.bias_add(
                  tf.nn.conv3d(x, w, s, 'SAME', data_format=f),
                  b,
                  data_format='NC...' if f == 'NCDHW' else None,
              )
          )
      )
      calls[layout] = lambda fn=fn, xl=xl: fn(xl).numpy()
    times = {layout: [] for layout in calls}
    for r in range(rounds):
      for layout in list(calls)[:: 1 if r % 2 == 0 else -1]:
        times[layout] += timing.time_calls(calls[layout], 1, iters)
    medians = {lay: sorted(t)[len(t) // 2] for lay, t in times.items()}
    rows.append(
        {
            'conv': name,
            'input': shape,
            'out_channels': out,
            'median_s': medians,
            'ncdhw_slowdown': medians['NCDHW'] / medians['NDHWC'],
        }
    )
    print(
        f'{name:34s} NDHWC {medians["NDHWC"]:8.4f} s  NCDHW '
        f'{medians["NCDHW"]:8.4f} s  NCDHW/NDHWC '
        f'{rows[-1]["ncdhw_slowdown"]:6.2f}',
        flush=True,
    )
  return rows


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise cli.Failure(f'unexpected arguments {argv[1:]}; pass flags only')
  if _REPEATS.value < 1:
    raise cli.Failure(f'--repeats must be >= 1; got {_REPEATS.value}')
  cores = len(os.sched_getaffinity(0))
  names = list(dict.fromkeys(_KNOBS.value))
  unknown = [n for n in names if n not in KNOBS]
  if unknown:
    raise cli.Failure(
        f'unknown --knobs {", ".join(unknown)}; valid knobs are '
        f'{", ".join(KNOBS)}'
    )
  if cores - 1 in (0, 1) and 'intra_op_cores_minus_1' in names:
    # With 2 cores it is the 1-thread knob; with 1 it is not a setting.
    names.remove('intra_op_cores_minus_1')
  cpu = runtime.cpu_info()
  print(
      f'CPU: {cpu["model"]}, {cores} cores; {", ".join(cpu["isa"])}. '
      f'Load average: {" ".join(f"{x:.2f}" for x in os.getloadavg())}.'
  )
  print(
      f'rgb fast path, T={_FRAMES.value}, batch 1, median of {_ITERS.value} '
      'calls; speed-up = default time / knob time.'
  )
  header = (
      f'{"knob":24s} {"pair":>4s} {"load":>5s} {"default s":>9s} '
      f'{"knob s":>8s} {"speed-up":>8s}'
  )
  print(header, flush=True)
  pairs = []
  bar = tqdm.tqdm(total=2 * len(names) * _REPEATS.value, file=sys.stderr)
  for name in names:
    env, extra, _ = KNOBS[name]
    extra = [x.format(cores_minus_1=max(1, cores - 1)) for x in extra]
    for repeat in range(_REPEATS.value):
      order = ['default', 'knob'] if repeat % 2 == 0 else ['knob', 'default']
      runs = {}
      for which in order:
        runs[which] = _run(*(({}, []) if which == 'default' else (env, extra)))
        bar.update()
      speedup = runs['default']['median_s'] / runs['knob']['median_s']
      load = runs[order[0]]['load_before'][0]
      pairs.append({'name': name, 'order': order, 'speedup': speedup, **runs})
      print(
          f'{name:24s} {repeat + 1:4d} {load:5.2f} '
          f'{runs["default"]["median_s"]:9.3f} '
          f'{runs["knob"]["median_s"]:8.3f} {speedup:8.3f}',
          flush=True,
      )
  bar.close()
  layouts = None
  if _CONV_LAYOUTS.value:
    print(
        f'Layout probe: single convs, median of {2 * _ITERS.value} calls; '
        f'load {os.getloadavg()[0]:.2f}.',
        flush=True,
    )
    layouts = _layout_probe(2, _ITERS.value)
  print(f'Load average after: {" ".join(f"{x:.2f}" for x in os.getloadavg())}')
  if _JSON_OUT.value:
    fileio.write_json(
        _JSON_OUT.value,
        {
            'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
            'cpu': cpu,
            'frames': _FRAMES.value,
            'iters': _ITERS.value,
            'knobs': {n: KNOBS[n][2] for n in names},
            'pairs': pairs,
            'conv_layouts': layouts,
            'load_after': os.getloadavg(),
        },
    )
    print(f'Wrote {_JSON_OUT.value}')


if __name__ == '__main__':
  cli.run(main)
