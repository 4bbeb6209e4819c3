r"""This project's fast path against the PyTorch port, in the same run.

Optional: runs only where torch and the port's model file are present; torch
is not a dependency of this project. The port is piergiaj/pytorch-i3d on
GitHub; download its `pytorch_i3d.py` (the `InceptionI3d` module) anywhere
and pass its path. Nothing of the port is kept in this repository.

One run, on one machine, back to back:
  1. benchmark.py for this project's fast path (`--frames`, batch 1, rgb;
     with `--tf_modes=fast_bf16` also the fast path in bfloat16): its table
     gives the CPU, the FMA limit, the matmul rate and oneDNN's state;
  2. the port's InceptionI3d (random weights, eval mode, no grad) eagerly
     and under torch.compile, with `--torch_python` (an interpreter that has
     torch; this one by default), same threads, same clip size.
Then one table: clips/s, GFLOP/s (the same analytic conv FLOPs for both
networks, timing.conv_flops, read from benchmark.py's JSON) and each as a percentage of the FMA limit and
of the matmul rate, plus the fast path's speed-up over each torch row.

  python benchmark_torch.py --port_file=/tmp/pytorch_i3d.py \
      --torch_python=/path/to/venv-with-torch/bin/python \
      --json_out=benchmarks/benchmark_torch_cpu.json
"""

from __future__ import annotations

import runtime  # pylint: disable=g-bad-import-order

runtime.setup()  # Before TensorFlow loads: its oneDNN kernels on.

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Sequence

from absl import app
from absl import flags

_ROOT = os.path.dirname(os.path.abspath(__file__))

_PORT_FILE = flags.DEFINE_string(
    'port_file',
    None,
    "Path of piergiaj/pytorch-i3d's pytorch_i3d.py (not part of this "
    'project).',
)
_TORCH_PYTHON = flags.DEFINE_string(
    'torch_python',
    sys.executable,
    'Python interpreter that has torch installed; this one by default.',
)
_FRAMES = flags.DEFINE_integer('frames', 79, 'Clip length in frames.')
_WARMUP = flags.DEFINE_integer('warmup', 1, 'Untimed calls first.')
_ITERS = flags.DEFINE_integer('iters', 3, 'Timed calls (best is kept).')
_THREADS = flags.DEFINE_integer(
    'threads', None, 'Threads for both; every core of this process if unset.'
)
_TF_MODES = flags.DEFINE_multi_enum(
    'tf_modes',
    ['fast'],
    ['fast', 'fast_bf16'],
    "This project's rows: the fast path, and/or the fast path in bfloat16 "
    '(the opt-in, which changes the numbers). The speed-up column is '
    'against the first.',
)
_TORCH_MODES = flags.DEFINE_multi_enum(
    'torch_modes',
    ['eager', 'compile'],
    ['eager', 'compile'],
    'How to run the port: eagerly and/or under torch.compile.',
)
_JSON_OUT = flags.DEFINE_string(
    'json_out', None, 'Also write every result to this JSON file.'
)
_RUN_TORCH = flags.DEFINE_string(
    'run_torch',
    None,
    'Internal: time the port (JSON config) in this process and print JSON.',
)

_SIZE = 224


def _time_torch(config: Dict[str, Any]) -> Dict[str, Any]:
  """Times the port's InceptionI3d; runs in the torch interpreter."""
  import torch  # pylint: disable=g-import-not-at-top

  spec = importlib.util.spec_from_file_location(
      'pytorch_i3d', config['port_file']
  )
  port = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(port)
  torch.set_num_threads(config['threads'])
  torch.manual_seed(0)
  model = port.InceptionI3d(400, in_channels=3).eval()
  clip = torch.rand(1, 3, config['frames'], _SIZE, _SIZE) * 2 - 1
  results = []
  for mode in config['modes']:
    net = torch.compile(model) if mode == 'compile' else model
    with torch.inference_mode():
      start = time.perf_counter()
      net(clip)  # The first call compiles under torch.compile.
      first_s = time.perf_counter() - start
      for _ in range(config['warmup'] - 1):
        net(clip)
      times = []
      for _ in range(config['iters']):
        start = time.perf_counter()
        net(clip)
        times.append(time.perf_counter() - start)
    results.append({'mode': mode, 'times_s': times, 'first_call_s': first_s})
  return {
      'torch': torch.__version__,
      'threads': torch.get_num_threads(),
      'mkldnn': torch.backends.mkldnn.is_available(),
      'results': results,
  }


def _fail(message: str) -> None:
  print(f'benchmark_torch.py: error: {message}', file=sys.stderr)
  sys.exit(1)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if _RUN_TORCH.value:
    print(json.dumps(_time_torch(json.loads(_RUN_TORCH.value))))
    return
  if not _PORT_FILE.value or not os.path.isfile(_PORT_FILE.value):
    _fail(
        f'the port file {_PORT_FILE.value!r} does not exist; download '
        'pytorch_i3d.py from github.com/piergiaj/pytorch-i3d and pass its '
        'path with --port_file'
    )
  check = subprocess.run(
      [_TORCH_PYTHON.value, '-c', 'import torch'],
      capture_output=True,
      check=False,
  )
  if check.returncode:
    _fail(
        f'{_TORCH_PYTHON.value} cannot import torch; install torch there '
        'or pass an interpreter that has it with --torch_python'
    )
  threads = _THREADS.value or len(os.sched_getaffinity(0))
  # 1. This project's fast path, with benchmark.py's header and rates.
  with tempfile.TemporaryDirectory() as tmp:
    tf_json = os.path.join(tmp, 'tf.json')
    subprocess.run(
        [
            sys.executable,
            os.path.join(_ROOT, 'benchmark.py'),
            f'--frames={_FRAMES.value}',
            '--streams=rgb',
            *(f'--modes={m}' for m in _TF_MODES.value),
            '--long_video_seconds=',
            f'--threads={threads}',
            f'--warmup={_WARMUP.value}',
            f'--iters={_ITERS.value}',
            f'--json_out={tf_json}',
        ],
        check=True,
    )
    with open(tf_json) as f:
      tf_run = json.load(f)
  flops = tf_run['results'][0]['flops']  # timing.conv_flops, per clip.

  # 2. The port, in the torch interpreter.
  config = {
      'port_file': os.path.abspath(_PORT_FILE.value),
      'frames': _FRAMES.value,
      'threads': threads,
      'warmup': max(1, _WARMUP.value),
      'iters': _ITERS.value,
      'modes': _TORCH_MODES.value,
  }
  proc = subprocess.run(
      [
          _TORCH_PYTHON.value,
          os.path.abspath(__file__),
          f'--run_torch={json.dumps(config)}',
      ],
      capture_output=True,
      text=True,
      check=False,
      env=dict(os.environ, PYTHONPATH=_ROOT),
  )
  lines = [x for x in proc.stdout.splitlines() if x.startswith('{')]
  if proc.returncode or not lines:
    _fail(
        f'the torch run failed (exit {proc.returncode}): '
        f'{proc.stderr.strip().splitlines()[-1:]}; run it alone with '
        f'{_TORCH_PYTHON.value} to see why'
    )
  torch_run = json.loads(lines[-1])

  fma = tf_run['fma']['gflops'] if tf_run['fma'] else None
  matmul = max(m['gflops'] for m in tf_run['matmul'])
  backend = '+ oneDNN' if tf_run['matmul'][0]['onednn'] else 'Eigen'
  rows: List[Dict[str, Any]] = [
      {
          'name': f'this project, {r["mode"]} (TensorFlow {backend})',
          'best_s': min(r['times_s']),
      }
      for r in tf_run['results']
  ]
  for r in torch_run['results']:
    rows.append(
        {
            'name': f'pytorch-i3d, torch {torch_run["torch"]}, ' f'{r["mode"]}',
            'best_s': min(r['times_s']),
            'first_call_s': r['first_call_s'],
        }
    )
  print(
      f'\nT={_FRAMES.value}, batch 1, RGB 224x224, {threads} threads; '
      f'{flops / 1e9:.1f} GFLOP per clip. FMA limit '
      f'{fma or 0:.1f} GFLOP/s, matmul {matmul:.1f} GFLOP/s.'
  )
  print(
      f'{"configuration":58s} {"clips/s":>8s} {"GFLOP/s":>8s} '
      f'{"%FMA":>6s} {"%matmul":>7s} {"fast path is":>12s}'
  )
  ours = rows[0]['best_s']
  for row in rows:
    gflops = flops / row['best_s'] / 1e9
    row.update(
        clips_per_s=1 / row['best_s'],
        gflops_per_s=gflops,
        percent_of_fma=100 * gflops / fma if fma else None,
        percent_of_matmul=100 * gflops / matmul,
        fast_path_speedup=row['best_s'] / ours,
    )
    of_fma = f'{row["percent_of_fma"]:6.1f}' if fma else f'{"-":>6s}'
    print(
        f'{row["name"]:58s} {row["clips_per_s"]:8.3f} {gflops:8.1f} '
        f'{of_fma} {row["percent_of_matmul"]:7.1f} '
        f'{row["fast_path_speedup"]:11.2f}x'
    )
  tf_rows = rows[: len(tf_run['results'])]
  for row in tf_rows[1:]:
    print(
        f'{row["name"]}: '
        + ', '.join(
            f'{other["best_s"] / row["best_s"]:.2f}x {other["name"]}'
            for other in rows
            if other is not row
        )
    )
  print(
      f'Load average after: ' f'{" ".join(f"{x:.2f}" for x in os.getloadavg())}'
  )
  if _JSON_OUT.value:
    out = os.path.abspath(_JSON_OUT.value)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with tempfile.NamedTemporaryFile(
        'w', dir=os.path.dirname(out), delete=False, suffix='.tmp'
    ) as f:
      json.dump(
          {
              'frames': _FRAMES.value,
              'flops': flops,
              'rows': rows,
              'tensorflow_run': tf_run,
              'torch_run': torch_run,
              'load_after': os.getloadavg(),
          },
          f,
          indent=1,
      )
    os.replace(f.name, out)
    print(f'Wrote {_JSON_OUT.value}')


if __name__ == '__main__':
  app.run(main)
