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

This module imports no TensorFlow itself. It also reads the CPU's model and
vector extensions from /proc/cpuinfo, and measures the cores' fused
multiply-add rate with a tiny C kernel (`fma_peak`), the physical limit the
benchmarks compare against.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional

from absl import logging

ONEDNN_VAR = 'TF_ENABLE_ONEDNN_OPTS'
# TensorFlow's C++ log threshold: 1 hides its start-up INFO lines (CUDA
# stubs, CPU-feature notes, "oneDNN custom operations are on"), keeps
# warnings and errors.
LOG_LEVEL_VAR = 'TF_CPP_MIN_LOG_LEVEL'
DEFAULT_LOG_LEVEL = '1'

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

  Sets `TF_ENABLE_ONEDNN_OPTS=1` and `TF_CPP_MIN_LOG_LEVEL=1` unless the
  user set them. If TensorFlow is already imported the variables no longer
  matter; then, when oneDNN is off and the user did not turn it off, this
  logs (once) how to turn it on.

  Returns:
    Whether oneDNN is on, when TensorFlow is already imported; else None.
  """
  global _warned
  os.environ.setdefault(LOG_LEVEL_VAR, DEFAULT_LOG_LEVEL)
  if 'tensorflow' not in sys.modules:
    os.environ.setdefault(ONEDNN_VAR, '1')
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


# TensorFlow's start-up lines that no variable silences: they are written
# before its C++ logging reads TF_CPP_MIN_LOG_LEVEL, or at error level for a
# missing GPU driver on a CPU machine.
_START_UP_NOISE = (
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
)


def import_tensorflow_quietly() -> None:
  """Imports TensorFlow (after `setup()`) without its start-up noise.

  For the commands: stderr (file descriptor 2, where TensorFlow's C++ code
  writes) goes to a temporary file while TensorFlow loads and finds its
  devices; afterwards every line that is not known start-up noise
  (_START_UP_NOISE) is written to stderr, so real warnings and errors still
  show. Does nothing when TensorFlow is already imported.
  """
  if 'tensorflow' in sys.modules:
    return
  setup()
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      import tensorflow as tf  # pylint: disable=g-import-not-at-top

      tf.config.list_physical_devices()  # Where the cuInit error comes.
    finally:
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      text = captured.read().decode('utf-8', errors='replace')
      kept = [
          line
          for line in text.splitlines()
          if line.strip() and not any(n in line for n in _START_UP_NOISE)
      ]
      if kept:
        sys.stderr.write('\n'.join(kept) + '\n')


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
