"""How the project runs TensorFlow on a CPU: oneDNN on, quiet start, CPU facts.

TensorFlow 2.21 uses its oneDNN CPU kernels by default only on CPUs that it
recognises as recent Intel-class (AVX-512 VNNI / BF16 / AMX). Elsewhere, for
instance on an AVX2-only AMD EPYC, it falls back to the Eigen kernels, which
run the I3D convolutions at about half the speed. The variable that turns
oneDNN on, `TF_ENABLE_ONEDNN_OPTS`, is read once, when TensorFlow is
imported, so `setup()` must run before that:

  import runtime
  runtime.setup()          # before anything imports tensorflow
  import tensorflow as tf  # or i3d, checkpoints, inference, ...

Every entry point does this first, and the libraries that import TensorFlow
(i3d, checkpoints, inference, serving) call `setup()` just before they do, so
research code that imports them first gets oneDNN too. A value the user set
is always kept (`TF_ENABLE_ONEDNN_OPTS=0` turns oneDNN off). When TensorFlow
was imported before `setup()` and oneDNN is off, it logs how to turn it on.

`setup()` also makes TensorFlow start quietly. Its shared libraries print
lines such as `oneDNN custom operations are on` and `Could not find cuda
drivers` from static initialisers, before any log setting is read, so no
environment variable silences them: the import that follows `setup()` holds
them back (`_QuietImport`). It sets `TF_CPP_MIN_LOG_LEVEL=1` for the INFO
lines after that and, where no NVIDIA driver is installed,
`TF_ENABLED_DEVICE_TYPES=CPU`, so TensorFlow does not log a failed cuInit.
The user's values of these variables are kept.

This module imports no TensorFlow itself. It also reads the CPU's model and
vector extensions from /proc/cpuinfo, and measures the cores' fused
multiply-add rate with a tiny C kernel (`fma_peak`), the physical limit the
benchmarks compare against.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.abc
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, Iterator, List, Optional

from absl import logging

ONEDNN_VAR = 'TF_ENABLE_ONEDNN_OPTS'
# TensorFlow's C++ log threshold: 1 hides its INFO lines once its logging is
# set up ("This TensorFlow binary is optimized to use ..."), keeps warnings
# and errors.
LOG_LEVEL_VAR = 'TF_CPP_MIN_LOG_LEVEL'
DEFAULT_LOG_LEVEL = '1'
# The device types TensorFlow registers. On a machine without an NVIDIA
# driver, 'CPU' keeps it from calling cuInit, which fails there with an
# error line ("failed call to cuInit ... UNKNOWN ERROR (303)") that no log
# level below 3 hides. Left alone where a driver exists.
DEVICE_TYPES_VAR = 'TF_ENABLED_DEVICE_TYPES'
# Any of these means an NVIDIA driver (or WSL's GPU bridge) is installed.
_GPU_DRIVER_PATHS = (
    '/dev/nvidiactl',
    '/proc/driver/nvidia/version',
    '/dev/dxg',
)

# Vector extensions that matter for the convolutions, as /proc/cpuinfo
# names them, and how the benchmarks print them.
ISA_FLAGS = {
    'avx2': 'AVX2',
    'fma': 'FMA',
    'avx512f': 'AVX-512',
    'avx512_vnni': 'AVX512_VNNI',
    'avx512_bf16': 'AVX512_BF16',
    'amx_bf16': 'AMX_BF16',
    'amx_tile': 'AMX',
}

_warned = False


def setup() -> Optional[bool]:
  """Prepares the environment for TensorFlow; call before importing it.

  Unless the user set them: `TF_ENABLE_ONEDNN_OPTS=1`,
  `TF_CPP_MIN_LOG_LEVEL=1` and, on a machine without an NVIDIA driver,
  `TF_ENABLED_DEVICE_TYPES=CPU`. Before TensorFlow is imported, it also
  arranges that its import, wherever it happens, is quiet (see
  `_QuietImport`). If TensorFlow is already imported the variables no
  longer matter; then, when oneDNN is off and the user did not turn it off,
  this logs (once) how to turn it on.

  Returns:
    Whether oneDNN is on, when TensorFlow is already imported; else None.
  """
  global _warned
  os.environ.setdefault(LOG_LEVEL_VAR, DEFAULT_LOG_LEVEL)
  if 'tensorflow' not in sys.modules:
    os.environ.setdefault(ONEDNN_VAR, '1')
    if not any(os.path.exists(p) for p in _GPU_DRIVER_PATHS):
      os.environ.setdefault(DEVICE_TYPES_VAR, 'CPU')
    if not any(isinstance(f, _QuietImport) for f in sys.meta_path):
      sys.meta_path.insert(0, _QuietImport())
    return None
  active = onednn_active()
  chosen_off = os.environ.get(ONEDNN_VAR, '').lower() in ('0', 'false')
  if active is False and not chosen_off and not _warned:
    _warned = True
    logging.warning(
        'TensorFlow was imported before runtime.setup(), with its oneDNN CPU '
        'kernels off; on this CPU the network may run about 2x slower. '
        'Import runtime and call runtime.setup() before TensorFlow, or set '
        '%s=1 in the environment.',
        ONEDNN_VAR,
    )
  return active


# TensorFlow's start-up lines that no variable silences: its shared
# libraries log them from static initialisers, before its C++ logging is
# set up and reads TF_CPP_MIN_LOG_LEVEL (each library that links its own
# copy of absl logs them again).
START_UP_NOISE = (
    'All log messages before absl::InitializeLog() is called',
    'port.cc:',  # "oneDNN custom operations are on ..."
    'cudart_stub.cc:',  # "Could not find cuda drivers ..."
    'cuda_platform.cc:',  # "failed call to cuInit ..."
    'cuda_executor.cc:',
    'cuda_dnn.cc:',
    'cuda_fft.cc:',
    'cuda_blas.cc:',
    'computation_placer.cc:',
    'cpu_feature_guard.cc:',  # "This TensorFlow binary is optimized ..."
    'rebuild TensorFlow with the appropriate compiler flags',  # Its 2nd line.
)


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
  """Holds back file descriptor 2; then writes all but START_UP_NOISE.

  Around TensorFlow's import (see `_QuietImport`), and around the few calls
  that start its CUDA platform however TF_ENABLED_DEVICE_TYPES is set (e.g.
  Grappler's cluster in tf2onnx's conversion, which logs a failed cuInit on
  a machine without a GPU).
  """
  sys.stderr.flush()
  saved = os.dup(2)
  captured = tempfile.TemporaryFile()
  os.dup2(captured.fileno(), 2)
  try:
    yield
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)
    captured.seek(0)
    text = captured.read().decode('utf-8', errors='replace')
    captured.close()
    kept = [
        line
        for line in text.splitlines()
        if line.strip() and not any(n in line for n in START_UP_NOISE)
    ]
    if kept:
      sys.stderr.write('\n'.join(kept) + '\n')
      sys.stderr.flush()


class _QuietImport(importlib.abc.MetaPathFinder):
  """Imports the `tensorflow` package with its start-up noise held back.

  TensorFlow's C++ code writes to file descriptor 2 directly, so Python's
  sys.stderr cannot filter it: while the package loads, descriptor 2 goes to
  a temporary file, and afterwards every line that is not START_UP_NOISE
  goes to stderr, so real warnings and errors still show. `setup()` puts
  this first on sys.meta_path; it steps aside after that one import.
  """

  def find_spec(self, fullname, path=None, target=None):
    del path, target  # Only the top-level package is ours.
    if fullname != 'tensorflow':
      return None
    sys.meta_path.remove(self)
    spec = importlib.util.find_spec(fullname)
    if spec is None or spec.loader is None:
      return spec
    spec.loader = _QuietLoader(spec.loader)
    return spec


class _QuietLoader(importlib.abc.Loader):
  """Runs another loader's exec_module inside `quiet_stderr`."""

  def __init__(self, loader: importlib.abc.Loader):
    self._loader = loader

  def create_module(self, spec):
    return self._loader.create_module(spec)

  def exec_module(self, module) -> None:
    # The package keeps its own loader (resources, reloading).
    module.__loader__ = module.__spec__.loader = self._loader
    with quiet_stderr():
      self._loader.exec_module(module)


def import_tensorflow_quietly() -> None:
  """Imports TensorFlow now, after `setup()`, without its start-up noise.

  Equivalent to `runtime.setup(); import tensorflow`, for commands that
  want the import (and its seconds) at the start.
  """
  setup()
  import tensorflow  # pylint: disable=g-import-not-at-top,unused-import  # noqa: F401


def onednn_active() -> Optional[bool]:
  """Whether TensorFlow's oneDNN kernels are on; None before its import.

  TensorFlow decides once, at import, from `TF_ENABLE_ONEDNN_OPTS` and the
  CPU; `IsMklEnabled()` reports that decision.
  """
  if 'tensorflow' not in sys.modules:
    return None
  from tensorflow.python.util import _pywrap_util_port  # pylint: disable=g-import-not-at-top

  return bool(_pywrap_util_port.IsMklEnabled())


def cpu_info(path: str = '/proc/cpuinfo') -> Dict[str, object]:
  """The CPU's model name, logical cores and vector extensions.

  Returns:
    {'model': str, 'cores': int (this process may use), 'isa': list of
    ISA_FLAGS names present, 'flags': the raw flags of interest}.
  """
  model, flags = 'unknown', set()
  try:
    with open(path) as f:
      for line in f:
        key, _, value = line.partition(':')
        key = key.strip()
        if key == 'model name' and model == 'unknown':
          model = value.strip()
        elif key == 'flags' and not flags:
          flags = set(value.split())
  except OSError:
    pass
  present = [flag for flag in ISA_FLAGS if flag in flags]
  return {
      'model': model,
      'cores': len(os.sched_getaffinity(0)),
      'isa': [ISA_FLAGS[f] for f in present],
      'flags': present,
  }


# A register-resident FMA loop: ACC independent accumulators, enough to cover
# the FMA latency (4-5 cycles) times the FMA units (2) of current x86 cores.
_FMA_SOURCE = r"""
#include <immintrin.h>
#define ACC 12
#define LOOP(T, SET1, FMA, ADD, STORE, LANES)                               \
  T acc[ACC]; T m = SET1(0.999999f); T c = SET1(1e-7f);                  \
  for (int k = 0; k < ACC; ++k) acc[k] = SET1(1.0f + k);                   \
  for (long i = 0; i < iters; ++i) {                                       \
    for (int k = 0; k < ACC; ++k) acc[k] = FMA(acc[k], m, c);              \
  }                                                                        \
  for (int k = 1; k < ACC; ++k) acc[0] = ADD(acc[0], acc[k]);              \
  float out[LANES]; STORE(out, acc[0]);                                    \
  return out[0];

__attribute__((target("avx2,fma"))) float fma_avx2(long iters) {
  LOOP(__m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps,
       _mm256_storeu_ps, 8)
}
__attribute__((target("avx512f"))) float fma_avx512(long iters) {
  LOOP(__m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps,
       _mm512_storeu_ps, 16)
}
"""
_FMA_PER_ITER = 12  # ACC
_LANES = {'avx2': 8, 'avx512': 16}


def _compile_fma_kernel() -> Optional[ctypes.CDLL]:
  """The FMA loop as a shared library, or None without a C compiler."""
  compiler = next(
      (
          c
          for c in (os.environ.get('CC'), 'cc', 'gcc', 'clang')
          if c and shutil.which(c)
      ),
      None,
  )
  if compiler is None:
    return None
  folder = tempfile.mkdtemp(prefix='fma_probe_')
  try:
    source = os.path.join(folder, 'fma.c')
    library = os.path.join(folder, 'fma.so')
    with open(source, 'w') as f:
      f.write(_FMA_SOURCE)
    result = subprocess.run(
        [
            compiler,
            '-O3',
            '-funroll-loops',
            '-shared',
            '-fPIC',
            source,
            '-o',
            library,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode:
      logging.warning('FMA probe not compiled: %s', result.stderr[-500:])
      return None
    lib = ctypes.CDLL(library)
  finally:
    shutil.rmtree(folder, ignore_errors=True)
  for name in ('fma_avx2', 'fma_avx512'):
    getattr(lib, name).argtypes = [ctypes.c_long]
    getattr(lib, name).restype = ctypes.c_float
  return lib


def fma_peak(
    threads: Optional[int] = None, seconds: float = 0.5, repeats: int = 3
) -> Optional[Dict[str, object]]:
  """Measures the cores' fp32 FMA rate: the physical limit of the convs.

  Runs a register-resident fused multiply-add loop on `threads` threads at
  once (ctypes releases the GIL), with 256-bit (AVX2) and, where the CPU has
  it, 512-bit (AVX-512) vectors, and keeps the best rate. Each FMA counts as
  2 FLOPs, as in the convolutions' FLOP counts.

  Args:
    threads: concurrent threads; every core this process may use when None.
    seconds: about how long each timed run lasts.
    repeats: timed runs per vector width; the best is kept.

  Returns:
    {'gflops': best GFLOP/s, 'isa': 'avx2' or 'avx512', 'threads': int,
    'by_isa': {isa: GFLOP/s}}, or None when no C compiler is available or
    the CPU lacks AVX2 and FMA.
  """
  info = cpu_info()
  if not {'avx2', 'fma'} <= set(info['flags']):
    return None
  lib = _compile_fma_kernel()
  if lib is None:
    return None
  threads = threads or info['cores']
  isas = ['avx2'] + (['avx512'] if 'avx512f' in info['flags'] else [])
  by_isa = {}
  for isa in isas:
    kernel = getattr(lib, f'fma_{isa}')
    # Calibrate the iteration count to about `seconds`.
    iters = 1 << 20
    while True:
      start = time.perf_counter()
      kernel(iters)
      elapsed = time.perf_counter() - start
      if elapsed > 0.05:
        break
      iters *= 4
    iters = max(1, int(iters * seconds / elapsed))
    best = 0.0
    for _ in range(repeats):
      workers = [
          threading.Thread(target=kernel, args=(iters,)) for _ in range(threads)
      ]
      start = time.perf_counter()
      for w in workers:
        w.start()
      for w in workers:
        w.join()
      elapsed = time.perf_counter() - start
      flops = threads * iters * _FMA_PER_ITER * _LANES[isa] * 2
      best = max(best, flops / elapsed / 1e9)
    by_isa[isa] = best
  isa = max(by_isa, key=by_isa.get)
  return {
      'gflops': by_isa[isa],
      'isa': isa,
      'threads': threads,
      'by_isa': by_isa,
  }


def describe() -> List[str]:
  """Lines naming the CPU, its extensions and whether oneDNN is on."""
  info = cpu_info()
  active = onednn_active()
  state = {None: 'TensorFlow not imported yet', True: 'on', False: 'off'}[
      active
  ]
  return [
      f'CPU: {info["model"]}, {info["cores"]} cores usable; '
      f'extensions: {", ".join(info["isa"]) or "none of interest"}',
      f'oneDNN: {state} ({ONEDNN_VAR}='
      f'{os.environ.get(ONEDNN_VAR, "unset")})',
  ]
