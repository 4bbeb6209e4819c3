"""TV-L1 flow on an NVIDIA GPU: tvl1.py's solver as Numba CUDA kernels.

The same algorithm as tvl1.py (OpenCV's DualTVL1 with its defaults), step for
step and in the same float32 operations, so that the GPU's flow is tvl1.py's,
and so OpenCV's, bit for bit:

  * The pyramid and the flow's upscaling between levels are tvl1.py's (that
    is, cv2.resize on the host); each level runs on the GPU.
  * One thread block solves one frame pair at one level: the 5 warps, the
    outer iterations with their median filter and the inner iterations, all
    inside one kernel launch, the phases separated by block barriers. So a
    batch of pairs needs one launch per level and no host round trip per
    iteration, and every pair keeps its own stopping rule.
  * Every float32 product is `fmul_rn` and every sum an ordinary add: NVVM
    contracts a product and a sum into one fused multiply-add by default,
    which rounds once instead of twice. TV-L1 amplifies such last-bit
    differences (see the README), so contraction is ruled out by hand. The
    dual step's norm is taken in float64, as OpenCV and tvl1.py do.
  * The stopping rule: each block sums the squared flow changes in float64;
    only when that sum is too close to the threshold to be sure of OpenCV's
    float32 row-order sum does one thread redo the sum in that order.

Needs an NVIDIA GPU and numba's CUDA target (`numba-cuda`; see
requirements-gpu.txt). With NUMBA_ENABLE_CUDASIM=1 the kernels run in
Numba's CUDA simulator on the CPU: far too slow for real frames, but it lets
tests check the kernels bit for bit against tvl1.py on tiny ones.
"""

import math
import time
from typing import Any, Dict, Optional, Tuple

import numba
from numba import cuda
import numpy as np

import tvl1

SIMULATED = bool(numba.config.ENABLE_CUDASIM)

# Some numba-cuda releases still register np.row_stack, which NumPy 2.5
# removed, when they first compile a kernel (seen with the NumPy 2.5.2 of the
# GPU machines used here). It was an alias of np.vstack.
if not hasattr(np, 'row_stack'):
  np.row_stack = np.vstack

if SIMULATED:

  def _fmul(a, b):
    return np.float32(a) * np.float32(b)

  def _rint(a):
    return np.rint(np.float32(a))

else:
  from numba.cuda import libdevice

  _fmul = libdevice.fmul_rn
  _rint = libdevice.rintf

_FLT_EPSILON = np.float32(np.finfo(np.float32).eps)
THREADS = 512  # Threads per block, one block per frame pair; a power of 2.
MAX_PAIRS = 1024  # Pairs per launch: bounds the GPU memory (6.5 MB a pair).

# Work planes per pair, float32 [H, W] each.
_I1, _I1X, _I1Y = 0, 1, 2  # I1 and its centred gradient.
_W, _WX, _WY = 3, 4, 5  # The same warped by the flow.
_GRAD, _RHO = 6, 7
_P11, _P12, _P21, _P22 = 8, 9, 10, 11
_TMP1, _TMP2 = 12, 13  # Copies of u for the median filter.
_CHANGE = 14
_PLANES = 15
# 64 registers a thread allow blocks of 1024 threads. The compiled kernel is
# cached in __pycache__ (compiling it took 197 s on the GPU machine, whose
# first run also compiled tvl1.py). The simulator takes neither option.
_KERNEL_OPTIONS = {} if SIMULATED else {'max_registers': 64, 'cache': True}
_CHUNK = 4096  # Values staged in shared memory for the row-order sum.


class CudaUnavailable(RuntimeError):
  """No usable CUDA GPU, or no Numba CUDA target."""


def available() -> bool:
  """Whether kernels can run: a CUDA GPU, or the simulator."""
  try:
    return bool(cuda.is_available())
  except Exception:  # pylint: disable=broad-except
    return False


def why_unavailable() -> str:
  """A sentence for users: why backend 'cuda' cannot run here."""
  try:
    cuda.detect()
  except Exception as e:  # pylint: disable=broad-except
    # Numba's message spans lines and ends in advice about its own variables.
    reason = ' '.join(str(e).split()).split(' If you are sure')[0]
    return f'Numba found no CUDA GPU ({reason.strip() or type(e).__name__})'
  return (
      'Numba found no usable CUDA GPU or driver; install numba-cuda '
      '(requirements-gpu.txt) on a machine with an NVIDIA GPU'
  )


@cuda.jit(device=True, inline=True)
def _cubic_tap(src, sx, sy, w, weights):
  """One bicubic sample, summed in OpenCV's order (row by row)."""
  total = (
      (
          _fmul(src[sy, sx], weights[w, 0])
          + _fmul(src[sy, sx + 1], weights[w, 1])
      )
      + _fmul(src[sy, sx + 2], weights[w, 2])
  ) + _fmul(src[sy, sx + 3], weights[w, 3])
  for i in range(1, 4):
    row = (
        (
            _fmul(src[sy + i, sx], weights[w, 4 * i])
            + _fmul(src[sy + i, sx + 1], weights[w, 4 * i + 1])
        )
        + _fmul(src[sy + i, sx + 2], weights[w, 4 * i + 2])
    ) + _fmul(src[sy + i, sx + 3], weights[w, 4 * i + 3])
    total = total + row
  return total


@cuda.jit(device=True, inline=True)
def _cubic_border(src, sx, sy, w, weights):
  """A bicubic sample near the border: taps outside count as 0."""
  height = src.shape[0]
  width = src.shape[1]
  total = np.float32(0.0)
  if sx >= width or sx + 4 <= 0 or sy >= height or sy + 4 <= 0:
    return total
  for i in range(4):
    yi = sy + i
    if yi >= 0 and yi < height:
      for k in range(4):
        xk = sx + k
        if xk >= 0 and xk < width:
          total = total + _fmul(src[yi, xk], weights[w, 4 * i + k])
  return total


def _median_source(network: np.ndarray) -> str:
  """Python source of `_median_of(v0, ..., v24)`: the comparators written out.

  Each comparator is tvl1's (a, b) if a < b else (b, a), so the values stay
  in registers (an array indexed from a table would live in slow local
  memory) and the median is the one tvl1.median5 picks.
  """
  names = [f'v{i}' for i in range(MEDIAN_SIZE)]
  lines = [f'def _median_of({", ".join(names)}):']
  for lo, hi in network:
    lines.append(
        f'  v{lo}, v{hi} = (v{lo} if v{lo} < v{hi} else v{hi}), '
        f'(v{hi} if v{lo} < v{hi} else v{lo})'
    )
  lines.append(f'  return v{MEDIAN_SIZE // 2}')
  return '\n'.join(lines) + '\n'


MEDIAN_SIZE = tvl1.MEDIAN_FILTERING * tvl1.MEDIAN_FILTERING
_namespace = {}
exec(_median_source(tvl1.MEDIAN_25), _namespace)  # pylint: disable=exec-used
_median_of = cuda.jit(device=True, inline=True)(_namespace['_median_of'])


@cuda.jit(device=True, inline=True)
def _median25(src, y, x):
  """The 5x5 median at (y, x) of src, replicated border (cv2.medianBlur)."""
  height = src.shape[0]
  width = src.shape[1]
  r0 = max(y - 2, 0)
  r1 = max(y - 1, 0)
  r3 = min(y + 1, height - 1)
  r4 = min(y + 2, height - 1)
  c0 = max(x - 2, 0)
  c1 = max(x - 1, 0)
  c3 = min(x + 1, width - 1)
  c4 = min(x + 2, width - 1)
  return _median_of(
      src[r0, c0],
      src[r0, c1],
      src[r0, x],
      src[r0, c3],
      src[r0, c4],
      src[r1, c0],
      src[r1, c1],
      src[r1, x],
      src[r1, c3],
      src[r1, c4],
      src[y, c0],
      src[y, c1],
      src[y, x],
      src[y, c3],
      src[y, c4],
      src[r3, c0],
      src[r3, c1],
      src[r3, x],
      src[r3, c3],
      src[r3, c4],
      src[r4, c0],
      src[r4, c1],
      src[r4, x],
      src[r4, c3],
      src[r4, c4],
  )


@cuda.jit(device=True, inline=True)
def _first_pixel(tid, width):
  """(row, column) of a thread's first pixel in row-major order."""
  y = tid // width
  return y, tid - y * width


@cuda.jit(device=True, inline=True)
def _next_pixel(y, x, step, width):
  """(row, column) `step` pixels further, without a 64-bit division."""
  x += step
  while x >= width:
    x -= width
    y += 1
  return y, x


@cuda.jit(**_KERNEL_OPTIONS)
def _level_kernel(
    i0s, i1s, u1s, u2s, work, weights, scalars, iterations, serial
):
  """tvl1._one_level for pair blockIdx.x; updates u in place.

  i0s, i1s, u1s, u2s: float32 [N, H, W]; work: float32 [N, _PLANES, H, W];
  scalars: float32 [l_t, theta, taut, threshold]; iterations: int64 [N],
  the inner iterations run; serial: int64 [N], zeroed by the caller, how many
  times the stopping rule needed the row-order sum.
  """
  n = cuda.blockIdx.x
  tid = cuda.threadIdx.x
  step = cuda.blockDim.x
  partial = cuda.shared.array(1024, numba.float64)
  flag = cuda.shared.array(1, numba.int32)
  staged = cuda.shared.array(_CHUNK, numba.float32)
  i0 = i0s[n]
  u1 = u1s[n]
  u2 = u2s[n]
  planes = work[n]
  height = i0.shape[0]
  width = i0.shape[1]
  size = height * width
  l_t = scalars[0]
  theta = scalars[1]
  taut = scalars[2]
  threshold = scalars[3]
  neg_l_t = -l_t
  half = np.float32(0.5)
  zero = np.float32(0.0)
  one = np.float32(1.0)
  eps = _FLT_EPSILON
  tab = np.float32(32.0)
  limit = np.float32(1048576.0)
  src = planes[_I1]
  srcx = planes[_I1X]
  srcy = planes[_I1Y]
  i1w = planes[_W]
  i1wx = planes[_WX]
  i1wy = planes[_WY]
  grad = planes[_GRAD]
  rho_c = planes[_RHO]
  p11 = planes[_P11]
  p12 = planes[_P12]
  p21 = planes[_P21]
  p22 = planes[_P22]
  tmp1 = planes[_TMP1]
  tmp2 = planes[_TMP2]
  change = planes[_CHANGE]

  # I1, its centred gradient (one-sided halves at the borders), p = 0.
  y, x = _first_pixel(tid, width)
  while y < height:
    v = i1s[n, y, x]
    src[y, x] = v
    xp = max(x - 1, 0)
    xn = min(x + 1, width - 1)
    yp = max(y - 1, 0)
    yn = min(y + 1, height - 1)
    if x == 0:
      srcx[y, x] = _fmul(half, i1s[n, y, 1] - v)
    elif x == width - 1:
      srcx[y, x] = _fmul(half, v - i1s[n, y, width - 2])
    else:
      srcx[y, x] = _fmul(half, i1s[n, y, xn] - i1s[n, y, xp])
    srcy[y, x] = _fmul(half, i1s[n, yn, x] - i1s[n, yp, x])
    p11[y, x] = zero
    p12[y, x] = zero
    p21[y, x] = zero
    p22[y, x] = zero
    y, x = _next_pixel(y, x, step, width)
  cuda.syncthreads()

  total_iterations = 0
  for _ in range(tvl1.WARPS):
    # Warp I1 and its gradient (cv2.remap INTER_CUBIC, border 0), then the
    # data term's constant part.
    y, x = _first_pixel(tid, width)
    while y < height:
      a1 = u1[y, x]
      a2 = u2[y, x]
      sxf = _fmul(np.float32(x) + a1, tab)
      syf = _fmul(np.float32(y) + a2, tab)
      sxf = min(max(sxf, -limit), limit)
      syf = min(max(syf, -limit), limit)
      ix = int(_rint(sxf))
      iy = int(_rint(syf))
      w = (iy & 31) * 32 + (ix & 31)
      sx = (ix >> 5) - 1
      sy = (iy >> 5) - 1
      if sx >= 0 and sy >= 0 and sx < width - 3 and sy < height - 3:
        iw = _cubic_tap(src, sx, sy, w, weights)
        gx = _cubic_tap(srcx, sx, sy, w, weights)
        gy = _cubic_tap(srcy, sx, sy, w, weights)
      else:
        iw = _cubic_border(src, sx, sy, w, weights)
        gx = _cubic_border(srcx, sx, sy, w, weights)
        gy = _cubic_border(srcy, sx, sy, w, weights)
      i1w[y, x] = iw
      i1wx[y, x] = gx
      i1wy[y, x] = gy
      grad[y, x] = _fmul(gx, gx) + _fmul(gy, gy)
      rho_c[y, x] = ((iw - _fmul(gx, a1)) - _fmul(gy, a2)) - i0[y, x]
      y, x = _next_pixel(y, x, step, width)
    cuda.syncthreads()

    above = True
    outer = 0
    while above and outer < tvl1.OUTER_ITERATIONS:
      # The 5x5 median filter of u1 and u2, from copies.
      y, x = _first_pixel(tid, width)
      while y < height:
        tmp1[y, x] = u1[y, x]
        tmp2[y, x] = u2[y, x]
        y, x = _next_pixel(y, x, step, width)
      cuda.syncthreads()
      y, x = _first_pixel(tid, width)
      while y < height:
        u1[y, x] = _median25(tmp1, y, x)
        u2[y, x] = _median25(tmp2, y, x)
        y, x = _next_pixel(y, x, step, width)
      cuda.syncthreads()

      inner = 0
      while above and inner < tvl1.INNER_ITERATIONS:
        # Thresholding, divergence of p and the flow update (old p).
        local = 0.0
        y, x = _first_pixel(tid, width)
        while y < height:
          if y == 0:
            if x == 0:
              d1 = p11[y, x] + p12[y, x]
              d2 = p21[y, x] + p22[y, x]
            else:
              d1 = (p11[y, x] - p11[y, x - 1]) + p12[y, x]
              d2 = (p21[y, x] - p21[y, x - 1]) + p22[y, x]
          elif x == 0:
            d1 = (p11[y, x] + p12[y, x]) - p12[y - 1, x]
            d2 = (p21[y, x] + p22[y, x]) - p22[y - 1, x]
          else:
            d1 = (p11[y, x] - p11[y, x - 1]) + (p12[y, x] - p12[y - 1, x])
            d2 = (p21[y, x] - p21[y, x - 1]) + (p22[y, x] - p22[y - 1, x])
          a1 = u1[y, x]
          a2 = u2[y, x]
          gx = i1wx[y, x]
          gy = i1wy[y, x]
          g = grad[y, x]
          rho = rho_c[y, x] + (_fmul(gx, a1) + _fmul(gy, a2))
          if rho < _fmul(neg_l_t, g):
            e1 = _fmul(l_t, gx)
            e2 = _fmul(l_t, gy)
          elif rho > _fmul(l_t, g):
            e1 = _fmul(neg_l_t, gx)
            e2 = _fmul(neg_l_t, gy)
          elif g > eps:
            fi = -rho / g
            e1 = _fmul(fi, gx)
            e2 = _fmul(fi, gy)
          else:
            e1 = zero
            e2 = zero
          b1 = (a1 + e1) + _fmul(theta, d1)
          b2 = (a2 + e2) + _fmul(theta, d2)
          u1[y, x] = b1
          u2[y, x] = b2
          c1 = b1 - a1
          c2 = b2 - a2
          c = _fmul(c1, c1) + _fmul(c2, c2)
          change[y, x] = c
          local += np.float64(c)
          y, x = _next_pixel(y, x, step, width)
        partial[tid] = local
        cuda.syncthreads()

        # Forward gradient of the new u and the dual update.
        y, x = _first_pixel(tid, width)
        while y < height:
          a1 = u1[y, x]
          a2 = u2[y, x]
          if x < width - 1:
            u1x = u1[y, x + 1] - a1
            u2x = u2[y, x + 1] - a2
          else:
            u1x = zero
            u2x = zero
          if y < height - 1:
            u1y = u1[y + 1, x] - a1
            u2y = u2[y + 1, x] - a2
          else:
            u1y = zero
            u2y = zero
          # Float32 squares are exact in float64, so a fused multiply-add
          # cannot change this sum.
          g1 = np.float32(
              math.sqrt(np.float64(u1x) * u1x + np.float64(u1y) * u1y)
          )
          n1 = one + _fmul(taut, g1)
          p11[y, x] = (p11[y, x] + _fmul(taut, u1x)) / n1
          p12[y, x] = (p12[y, x] + _fmul(taut, u1y)) / n1
          g2 = np.float32(
              math.sqrt(np.float64(u2x) * u2x + np.float64(u2y) * u2y)
          )
          n2 = one + _fmul(taut, g2)
          p21[y, x] = (p21[y, x] + _fmul(taut, u2x)) / n2
          p22[y, x] = (p22[y, x] + _fmul(taut, u2y)) / n2
          y, x = _next_pixel(y, x, step, width)

        # The stopping rule, as tvl1._above: a float64 block sum decides
        # unless OpenCV's float32 row-order sum could fall on the other side.
        half_step = step // 2
        while half_step > 0:
          if tid < half_step:
            partial[tid] += partial[tid + half_step]
          cuda.syncthreads()
          half_step //= 2
        if tid == 0:
          total = partial[0]
          slack = 2.0 * size * 6.0e-8 * total + 1e-30
          if total - slack > threshold:
            flag[0] = 1
          elif total + slack < threshold:
            flag[0] = 0
          else:
            flag[0] = -1
        cuda.syncthreads()
        if flag[0] < 0:
          # In doubt: OpenCV's float32 sum in row order, by one thread, from
          # chunks that the whole block stages in shared memory.
          exact = np.float32(0.0)
          for base in range(0, size, _CHUNK):
            count = min(_CHUNK, size - base)
            for i in range(tid, count, step):
              row = (base + i) // width
              staged[i] = change[row, base + i - row * width]
            cuda.syncthreads()
            if tid == 0:
              for i in range(count):
                exact = exact + staged[i]
            cuda.syncthreads()
          if tid == 0:
            flag[0] = 1 if exact > threshold else 0
            serial[n] += 1
        cuda.syncthreads()
        above = flag[0] != 0
        inner += 1
      total_iterations += inner
      outer += 1
  if tid == 0:
    iterations[n] = total_iterations


def solve(
    first: np.ndarray,
    second: np.ndarray,
    threads: int = THREADS,
    stats: Optional[Dict[str, Any]] = None,
) -> Tuple[np.ndarray, np.ndarray]:
  """tvl1.solve on the GPU: flow float32 [N, H, W, 2] and iterations.

  Args:
    first: uint8 gray [N, H, W].
    second: uint8 gray of the same shape.
    threads: threads per block (one block per pair), a power of 2 <= 1024.
    stats: if a dict, it receives 'serial_sums', int64 [N, levels]: how often
      the stopping rule needed OpenCV's row-order sum, and 'level_seconds',
      the GPU time of each level's launch (finest first), summed over
      batches of MAX_PAIRS.

  Raises:
    ValueError: for bad frames or `threads`.
    CudaUnavailable: when no CUDA GPU (or simulator) can run the kernels.
  """
  if threads < 1 or threads > 1024 or threads & (threads - 1):
    raise ValueError(
        f'`threads` must be a power of 2 from 1 to 1024; got {threads}.'
    )
  first = tvl1._check_gray('first', first)  # pylint: disable=protected-access
  second = tvl1._check_gray('second', second)  # pylint: disable=protected-access
  if first.shape != second.shape:
    raise ValueError(
        f'`first` and `second` must have one shape; got {first.shape} and '
        f'{second.shape}.'
    )
  if not available():
    raise CudaUnavailable(why_unavailable())
  flows = []
  iterations = []
  serial = []
  seconds = None
  for start in range(0, len(first), MAX_PAIRS):
    f, it, se, sec = _solve_batch(
        first[start : start + MAX_PAIRS],
        second[start : start + MAX_PAIRS],
        threads,
    )
    flows.append(f)
    iterations.append(it)
    serial.append(se)
    seconds = sec if seconds is None else seconds + sec
  if stats is not None:
    stats['serial_sums'] = np.concatenate(serial)
    stats['level_seconds'] = seconds.tolist()
  return np.concatenate(flows), np.concatenate(iterations)


def _solve_batch(first, second, threads):
  """solve for at most MAX_PAIRS pairs: flow, iterations, serial sums, times."""
  levels0 = tvl1._pyramid(first)  # pylint: disable=protected-access
  levels1 = tvl1._pyramid(second)  # pylint: disable=protected-access
  count = len(first)
  iterations = np.zeros((count, len(levels0)), np.int64)
  serial = np.zeros((count, len(levels0)), np.int64)
  seconds = np.zeros(len(levels0))
  weights = cuda.to_device(tvl1.CUBIC_WEIGHTS)
  u1 = np.zeros_like(levels0[-1])
  u2 = np.zeros_like(levels0[-1])
  for s in range(len(levels0) - 1, -1, -1):
    height, width = levels0[s].shape[1:]
    scalars = np.array(
        [
            tvl1.LAMBDA * tvl1.THETA,
            tvl1.THETA,
            tvl1.TAU / tvl1.THETA,
            tvl1.EPSILON * tvl1.EPSILON * height * width,
        ]
    ).astype(np.float32)
    d_u1 = cuda.to_device(np.ascontiguousarray(u1))
    d_u2 = cuda.to_device(np.ascontiguousarray(u2))
    work = cuda.device_array((count, _PLANES, height, width), np.float32)
    d_iterations = cuda.device_array(count, np.int64)
    d_serial = cuda.to_device(np.zeros(count, np.int64))
    d_i0 = cuda.to_device(levels0[s])
    d_i1 = cuda.to_device(levels1[s])
    d_scalars = cuda.to_device(scalars)
    cuda.synchronize()
    begin = time.perf_counter()
    _level_kernel[count, threads](
        d_i0, d_i1, d_u1, d_u2, work, weights, d_scalars, d_iterations, d_serial
    )
    cuda.synchronize()
    seconds[s] = time.perf_counter() - begin
    u1 = d_u1.copy_to_host()
    u2 = d_u2.copy_to_host()
    iterations[:, s] = d_iterations.copy_to_host()
    serial[:, s] = d_serial.copy_to_host()
    if s:
      height, width = levels0[s - 1].shape[1:]
      u1 = tvl1._upscale(u1, height, width)  # pylint: disable=protected-access
      u2 = tvl1._upscale(u2, height, width)  # pylint: disable=protected-access
  return np.stack([u1, u2], axis=-1), iterations, serial, seconds


def flow(first: np.ndarray, second: np.ndarray) -> np.ndarray:
  """tvl1.flow on the GPU: float32 [N, H, W, 2] (or [H, W, 2]) in pixels."""
  return tvl1.flow_with(solve, first, second)
