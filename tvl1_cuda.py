"""TV-L1 flow on an NVIDIA GPU: tvl1.py's solver as Numba CUDA kernels.

The same algorithm as tvl1.py (OpenCV's DualTVL1 with its defaults), step for
step and in the same float32 operations, so that the GPU's flow is tvl1.py's,
and so OpenCV's, bit for bit:

  * The pyramid and the flow's upscaling between levels are tvl1.py's (that
    is, cv2.resize on the host, in threads); each level runs on the GPU.
  * One thread block solves one frame pair at one level: the 5 warps, the
    outer iterations with their median filter and the inner iterations, all
    inside one kernel launch, the phases separated by block barriers. So a
    batch of pairs needs one launch per level and no host round trip per
    iteration, and every pair keeps its own stopping rule.
  * Two kernels do the inner iterations. The columns kernel (the default)
    has a thread per column and goes down the rows once per `sweep`
    iterations, each iteration a row behind the one before, its values in
    registers and shared memory; the pixels kernel (for levels wider than
    the columns kernel takes) passes over all pixels twice per iteration.
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

import concurrent.futures
import math
import os
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
THREADS = 512  # Threads per block of the pixels kernel; a power of 2.
SWEEP = 2  # Inner iterations per pass of the columns kernel (measured best).
KERNELS = ('columns', 'pixels')
MAX_PAIRS = 1024  # Pairs per launch: bounds the GPU memory (11 MB a pair).

# Work planes per pair, float32 [H, W] each.
_I1, _I1X, _I1Y = 0, 1, 2  # I1 and its centred gradient.
_WX, _WY = 3, 4  # The gradient warped by the flow.
_GRAD, _RHO = 5, 6
_TMP1, _TMP2 = 7, 8  # Copies of u for the median filter.
_CHANGE = 9
# Two buffers of the solver's state, planes _STATE + (_U1 ... _P22) and the
# same + _STATE_PLANES: the columns kernel reads one and writes the other.
_STATE = 10
_U1, _U2, _P11, _P12, _P21, _P22 = range(6)
_STATE_PLANES = 6
_PLANES = _STATE + 2 * _STATE_PLANES
# 64 registers a thread allow blocks of 1024 threads. The simulator takes no
# options.
_KERNEL_OPTIONS = {} if SIMULATED else {'max_registers': 64}
_CHUNK = 4096  # Values staged in shared memory for the row-order sum.
_PARTIAL = 512  # float64 slots for a block sum; blocks up to 1024 threads.
_SHARED_FLOATS = 10240  # float32 shared memory of the columns kernel.
# A bound on float32 rounding, relative, for the stopping rule's slack (as
# tvl1._above's). Tests raise it to send every check down the row-order path.
_ROUNDING = 6.0e-8


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


@cuda.jit(device=True)
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


@cuda.jit(device=True)
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
_median_of = cuda.jit(device=True)(_namespace['_median_of'])


@cuda.jit(device=True)
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


@cuda.jit(device=True)
def _first_pixel(tid, width):
  """(row, column) of a thread's first pixel in row-major order."""
  y = tid // width
  return y, tid - y * width


@cuda.jit(device=True)
def _next_pixel(y, x, step, width):
  """(row, column) `step` pixels further, without a 64-bit division."""
  x += step
  while x >= width:
    x -= width
    y += 1
  return y, x


@cuda.jit(device=True)
def _start_level(i1, u1s, u2s, planes, tid, step):
  """I1 and its centred gradient (one-sided halves at the borders); the
  caller's u into state buffer 0; p = 0."""
  height = i1.shape[0]
  width = i1.shape[1]
  half = np.float32(0.5)
  zero = np.float32(0.0)
  y, x = _first_pixel(tid, width)
  while y < height:
    v = i1[y, x]
    planes[_I1, y, x] = v
    xp = max(x - 1, 0)
    xn = min(x + 1, width - 1)
    yp = max(y - 1, 0)
    yn = min(y + 1, height - 1)
    if x == 0:
      planes[_I1X, y, x] = _fmul(half, i1[y, 1] - v)
    elif x == width - 1:
      planes[_I1X, y, x] = _fmul(half, v - i1[y, width - 2])
    else:
      planes[_I1X, y, x] = _fmul(half, i1[y, xn] - i1[y, xp])
    planes[_I1Y, y, x] = _fmul(half, i1[yn, x] - i1[yp, x])
    planes[_STATE + _U1, y, x] = u1s[y, x]
    planes[_STATE + _U2, y, x] = u2s[y, x]
    for k in range(_P11, _P22 + 1):
      planes[_STATE + k, y, x] = zero
    y, x = _next_pixel(y, x, step, width)
  cuda.syncthreads()


@cuda.jit(device=True)
def _warp_level(i0, planes, state, weights, tid, step):
  """Warp I1 and its gradient by the flow in buffer `state` (cv2.remap
  INTER_CUBIC, border 0), then the data term's constant part."""
  height = i0.shape[0]
  width = i0.shape[1]
  tab = np.float32(32.0)
  limit = np.float32(1048576.0)
  src = planes[_I1]
  srcx = planes[_I1X]
  srcy = planes[_I1Y]
  u1 = planes[state + _U1]
  u2 = planes[state + _U2]
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
    planes[_WX, y, x] = gx
    planes[_WY, y, x] = gy
    planes[_GRAD, y, x] = _fmul(gx, gx) + _fmul(gy, gy)
    planes[_RHO, y, x] = ((iw - _fmul(gx, a1)) - _fmul(gy, a2)) - i0[y, x]
    y, x = _next_pixel(y, x, step, width)
  cuda.syncthreads()


@cuda.jit(device=True)
def _median_level(planes, state, tid, step):
  """The 5x5 median filter of u1 and u2 in buffer `state`, from copies."""
  height = planes.shape[1]
  width = planes.shape[2]
  u1 = planes[state + _U1]
  u2 = planes[state + _U2]
  tmp1 = planes[_TMP1]
  tmp2 = planes[_TMP2]
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


@cuda.jit(device=True)
def _finish_level(planes, state, u1s, u2s, tid, step):
  """The flow in buffer `state` back to the caller's arrays."""
  height = u1s.shape[0]
  width = u1s.shape[1]
  y, x = _first_pixel(tid, width)
  while y < height:
    u1s[y, x] = planes[state + _U1, y, x]
    u2s[y, x] = planes[state + _U2, y, x]
    y, x = _next_pixel(y, x, step, width)


@cuda.jit(device=True)
def _row_order_sum(change, staged, tid, step):
  """OpenCV's float32 sum of `change` in row order, for every thread.

  One thread adds, from chunks that the whole block stages in shared memory
  (`staged`, at least _CHUNK values); the result is broadcast through
  staged[0].
  """
  width = change.shape[1]
  size = change.shape[0] * width
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
    staged[0] = exact
  cuda.syncthreads()
  exact = staged[0]
  cuda.syncthreads()
  return exact


@cuda.jit(device=True)
def _verdict(total, size, threshold):
  """tvl1._above from a float64 sum: 1 above, 0 below, -1 in doubt (then
  OpenCV's float32 row-order sum decides)."""
  slack = 2.0 * size * _ROUNDING * total + 1e-30
  if total - slack > threshold:
    return 1
  if total + slack < threshold:
    return 0
  return -1


@cuda.jit(device=True)
def _block_sum(value, partial, tid, step):
  """The float64 sum of `value` over the block, for every thread.

  partial: shared float64 [_PARTIAL], _PARTIAL a power of 2; the block may
  have up to 2 * _PARTIAL threads.
  """
  for i in range(tid, _PARTIAL, step):
    partial[i] = 0.0
  cuda.syncthreads()
  if tid < _PARTIAL:
    partial[tid] = value
  cuda.syncthreads()
  if tid >= _PARTIAL:
    partial[tid - _PARTIAL] += value
  cuda.syncthreads()
  half = _PARTIAL // 2
  while half > 0:
    for i in range(tid, half, step):
      partial[i] += partial[i + half]
    cuda.syncthreads()
    half //= 2
  total = partial[0]
  cuda.syncthreads()
  return total


@cuda.jit(device=True)
def _data_step(a1, a2, gx, gy, g, rho_c, d1, d2, l_t, theta):
  """OpenCV's estimateV and estimateU for one pixel: the new (u1, u2)."""
  neg_l_t = -l_t
  rho = rho_c + (_fmul(gx, a1) + _fmul(gy, a2))
  if rho < _fmul(neg_l_t, g):
    e1 = _fmul(l_t, gx)
    e2 = _fmul(l_t, gy)
  elif rho > _fmul(l_t, g):
    e1 = _fmul(neg_l_t, gx)
    e2 = _fmul(neg_l_t, gy)
  elif g > _FLT_EPSILON:
    fi = -rho / g
    e1 = _fmul(fi, gx)
    e2 = _fmul(fi, gy)
  else:
    e1 = np.float32(0.0)
    e2 = np.float32(0.0)
  return (a1 + e1) + _fmul(theta, d1), (a2 + e2) + _fmul(theta, d2)


@cuda.jit(device=True)
def _divergence(y, x, pc1, pl1, pc2, pu2):
  """OpenCV's divergence at (y, x) from p1 here and left, p2 here and up."""
  if y == 0:
    if x == 0:
      return pc1 + pc2
    return (pc1 - pl1) + pc2
  if x == 0:
    return (pc1 + pc2) - pu2
  return (pc1 - pl1) + (pc2 - pu2)


@cuda.jit(device=True)
def _dual_step(q1, q2, ux, uy, taut):
  """OpenCV's estimateDualVariables for one component: the new (q1, q2).

  Float32 squares are exact in float64, so a fused multiply-add cannot
  change the norm's sum.
  """
  g = np.float32(math.sqrt(np.float64(ux) * ux + np.float64(uy) * uy))
  n = np.float32(1.0) + _fmul(taut, g)
  return (q1 + _fmul(taut, ux)) / n, (q2 + _fmul(taut, uy)) / n


@cuda.jit(device=True)
def _load_row(out, y, x, xl, wx, wy, grad, rho_c, u1, u2, p11, p12, p21, p22):
  """What the columns kernel reads of row y at column x, into out[12]."""
  out[0] = wx[y, x]
  out[1] = wy[y, x]
  out[2] = grad[y, x]
  out[3] = rho_c[y, x]
  out[4] = u1[y, x]
  out[5] = u2[y, x]
  out[6] = p11[y, x]
  out[7] = p12[y, x]
  out[8] = p21[y, x]
  out[9] = p22[y, x]
  out[10] = p11[y, xl]
  out[11] = p21[y, xl]


@cuda.jit(**_KERNEL_OPTIONS)
def _pixels_kernel(
    i0s, i1s, u1s, u2s, work, weights, scalars, iterations, serial
):
  """tvl1._one_level for pair blockIdx.x, a pass over all pixels a phase.

  i0s, i1s, u1s, u2s: float32 [N, H, W]; work: float32 [N, _PLANES, H, W];
  scalars: float32 [l_t, theta, taut, threshold]; iterations: int64 [N],
  the inner iterations run; serial: int64 [N], zeroed by the caller, how many
  times the stopping rule needed the row-order sum. Updates u in place.
  """
  n = cuda.blockIdx.x
  tid = cuda.threadIdx.x
  step = cuda.blockDim.x
  partial = cuda.shared.array(_PARTIAL, numba.float64)
  staged = cuda.shared.array(_CHUNK, numba.float32)
  i0 = i0s[n]
  planes = work[n]
  height = i0.shape[0]
  width = i0.shape[1]
  l_t = scalars[0]
  theta = scalars[1]
  taut = scalars[2]
  threshold = scalars[3]
  zero = np.float32(0.0)
  wx = planes[_WX]
  wy = planes[_WY]
  grad = planes[_GRAD]
  rho_c = planes[_RHO]
  change = planes[_CHANGE]
  u1 = planes[_STATE + _U1]
  u2 = planes[_STATE + _U2]
  p11 = planes[_STATE + _P11]
  p12 = planes[_STATE + _P12]
  p21 = planes[_STATE + _P21]
  p22 = planes[_STATE + _P22]

  _start_level(i1s[n], u1s[n], u2s[n], planes, tid, step)
  total_iterations = 0
  for _ in range(tvl1.WARPS):
    _warp_level(i0, planes, _STATE, weights, tid, step)
    above = True
    outer = 0
    while above and outer < tvl1.OUTER_ITERATIONS:
      _median_level(planes, _STATE, tid, step)
      inner = 0
      while above and inner < tvl1.INNER_ITERATIONS:
        # Thresholding, divergence of p and the flow update (old p).
        local = 0.0
        y, x = _first_pixel(tid, width)
        while y < height:
          xl = max(x - 1, 0)
          yu = max(y - 1, 0)
          a1 = u1[y, x]
          a2 = u2[y, x]
          b1, b2 = _data_step(
              a1,
              a2,
              wx[y, x],
              wy[y, x],
              grad[y, x],
              rho_c[y, x],
              _divergence(y, x, p11[y, x], p11[y, xl], p12[y, x], p12[yu, x]),
              _divergence(y, x, p21[y, x], p21[y, xl], p22[y, x], p22[yu, x]),
              l_t,
              theta,
          )
          u1[y, x] = b1
          u2[y, x] = b2
          c1 = b1 - a1
          c2 = b2 - a2
          c = _fmul(c1, c1) + _fmul(c2, c2)
          change[y, x] = c
          local += np.float64(c)
          y, x = _next_pixel(y, x, step, width)
        cuda.syncthreads()

        # Forward gradient of the new u and the dual update.
        y, x = _first_pixel(tid, width)
        while y < height:
          a1 = u1[y, x]
          a2 = u2[y, x]
          u1x = zero
          u2x = zero
          u1y = zero
          u2y = zero
          if x < width - 1:
            u1x = u1[y, x + 1] - a1
            u2x = u2[y, x + 1] - a2
          if y < height - 1:
            u1y = u1[y + 1, x] - a1
            u2y = u2[y + 1, x] - a2
          p11[y, x], p12[y, x] = _dual_step(
              p11[y, x], p12[y, x], u1x, u1y, taut
          )
          p21[y, x], p22[y, x] = _dual_step(
              p21[y, x], p22[y, x], u2x, u2y, taut
          )
          y, x = _next_pixel(y, x, step, width)

        verdict = _verdict(
            _block_sum(local, partial, tid, step), height * width, threshold
        )
        if verdict < 0:
          exact = _row_order_sum(change, staged, tid, step)
          verdict = 1 if exact > threshold else 0
          if tid == 0:
            serial[n] += 1
        above = verdict != 0
        inner += 1
      total_iterations += inner
      outer += 1
  _finish_level(planes, _STATE, u1s[n], u2s[n], tid, step)
  if tid == 0:
    iterations[n] = total_iterations


def check_sweep(sweep: int) -> None:
  """Raises ValueError unless `sweep` can be the columns kernel's."""
  if sweep < 2 or tvl1.INNER_ITERATIONS % sweep:
    raise ValueError(
        f'`sweep` must be at least 2 and divide {tvl1.INNER_ITERATIONS}; '
        f'got {sweep}.'
    )


def _columns_width(sweep: int) -> int:
  """The widest level (a multiple of 32) the columns kernel can take."""
  width = _SHARED_FLOATS // (4 * sweep - 2) // 32 * 32
  return min(1024, width)


_COLUMNS_KERNELS = {}


def _columns_kernel(sweep: int, max_registers: Optional[int]):
  """The columns kernel for `sweep` inner iterations a pass, and its widest
  level; made once per (sweep, max_registers).

  One thread block solves one pair at one level, as _pixels_kernel does, but
  with one thread per column: each pass goes down the rows once and carries
  `sweep` inner iterations along, each a row behind the one before, so that
  the flow and the dual variable cross the GPU's memory once per `sweep`
  iterations instead of twice per iteration. A pixel's own values from the
  row above stay in registers; the neighbours' go through shared memory.

  The stopping rule is checked after each pass, for each of its iterations in
  turn; when it stops the pass early, the pass is run again from its start
  for that many iterations (the state is double-buffered, so nothing is
  lost). The same float32 operations in the same order as _pixels_kernel.
  """
  key = (sweep, max_registers)
  if key in _COLUMNS_KERNELS:
    return _COLUMNS_KERNELS[key]
  max_width = _columns_width(sweep)
  buffer_floats = (4 * sweep - 2) * max_width
  sp_base = 2 * sweep * max_width
  float32 = numba.float32
  float64 = numba.float64

  @cuda.jit(device=True)
  def sweep_pass(
      planes,
      src,
      dst,
      count,
      change_at,
      sums,
      buf,
      partial,
      tid,
      step,
      l_t,
      theta,
      taut,
  ):
    """`count` (<= sweep) inner iterations from buffer src into dst.

    sums[j] gets iteration j's float64 sum of squared flow changes; iteration
    `change_at`'s changes go to the change plane.
    """
    height = planes.shape[1]
    width = planes.shape[2]
    x = tid
    live = x < width
    xl = min(max(x - 1, 0), width - 1)
    zero = float32(0.0)
    uo1 = cuda.local.array(sweep, float32)
    uo2 = cuda.local.array(sweep, float32)
    un1 = cuda.local.array(sweep, float32)
    un2 = cuda.local.array(sweep, float32)
    po11 = cuda.local.array(sweep, float32)
    po12 = cuda.local.array(sweep, float32)
    po21 = cuda.local.array(sweep, float32)
    po22 = cuda.local.array(sweep, float32)
    pn11 = cuda.local.array(sweep, float32)
    pn12 = cuda.local.array(sweep, float32)
    pn21 = cuda.local.array(sweep, float32)
    pn22 = cuda.local.array(sweep, float32)
    acc = cuda.local.array(sweep, float64)
    for j in range(sweep):
      uo1[j] = zero
      uo2[j] = zero
      un1[j] = zero
      un2[j] = zero
      po11[j] = zero
      po12[j] = zero
      po21[j] = zero
      po22[j] = zero
      pn11[j] = zero
      pn12[j] = zero
      pn21[j] = zero
      pn22[j] = zero
      acc[j] = 0.0
    su1 = planes[src + _U1]
    su2 = planes[src + _U2]
    sp11 = planes[src + _P11]
    sp12 = planes[src + _P12]
    sp21 = planes[src + _P21]
    sp22 = planes[src + _P22]
    wx = planes[_WX]
    wy = planes[_WY]
    grad = planes[_GRAD]
    rho_c = planes[_RHO]
    # Every global value a row needs is loaded a step ahead (`ahead`, for row
    # t + 1) and handed down the iterations in registers (iteration j uses
    # at step t what iteration j - 1 used at step t - 1), so no step waits
    # for the GPU's memory. ahead: the data term's wx, wy, grad, rho_c; the
    # source's u1, u2; its p11, p12, p21, p22; p11 and p21 on the left.
    ahead = cuda.local.array(12, float32)
    data = cuda.local.array((sweep, 4), float32)
    for i in range(12):
      ahead[i] = zero
    for j in range(sweep):
      for i in range(4):
        data[j, i] = zero
    if live:
      _load_row(
          ahead, 0, x, xl, wx, wy, grad, rho_c, su1, su2, sp11, sp12, sp21, sp22
      )
    a_src1 = zero
    a_src2 = zero
    # The source's p at this thread's column: row t (q) and row t - 1 (r).
    q11 = zero
    q12 = zero
    q21 = zero
    q22 = zero
    l11 = zero
    l21 = zero
    r11 = zero
    r12 = zero
    r21 = zero
    r22 = zero
    for t in range(height + count):
      for j in range(sweep - 1, 0, -1):
        for i in range(4):
          data[j, i] = data[j - 1, i]
      for i in range(4):
        data[0, i] = ahead[i]
      a_src1 = ahead[4]
      a_src2 = ahead[5]
      r11 = q11
      r12 = q12
      r21 = q21
      r22 = q22
      q11 = ahead[6]
      q12 = ahead[7]
      q21 = ahead[8]
      q22 = ahead[9]
      l11 = ahead[10]
      l21 = ahead[11]
      if live and t + 1 < height:
        _load_row(
            ahead,
            t + 1,
            x,
            xl,
            wx,
            wy,
            grad,
            rho_c,
            su1,
            su2,
            sp11,
            sp12,
            sp21,
            sp22,
        )
      for j in range(sweep):
        cuda.syncthreads()
        # Publish u of iteration k's newest row for its dual step's left
        # neighbour: k = j - 1, computed in this step, or the last
        # iteration's, computed in the step before. Its readers are done.
        k = j - 1 if j > 0 else sweep - 1
        if live:
          buf[2 * k * max_width + x] = un1[k]
          buf[(2 * k + 1) * max_width + x] = un2[k]
        if j < count:
          ra = t - j  # Iteration j's flow update is at row ra,
          rb = ra - 1  # its dual step at the row above.
          uo1[j] = un1[j]
          uo2[j] = un2[j]
          if live and ra >= 0 and ra < height:
            if j == 0:
              a1 = a_src1
              a2 = a_src2
              d1 = _divergence(ra, x, q11, l11, q12, r12)
              d2 = _divergence(ra, x, q21, l21, q22, r22)
            else:
              a1 = uo1[j - 1]
              a2 = uo2[j - 1]
              left = sp_base + 2 * (j - 1) * max_width + xl
              d1 = _divergence(
                  ra, x, pn11[j - 1], buf[left], pn12[j - 1], po12[j - 1]
              )
              d2 = _divergence(
                  ra,
                  x,
                  pn21[j - 1],
                  buf[left + max_width],
                  pn22[j - 1],
                  po22[j - 1],
              )
            b1, b2 = _data_step(
                a1,
                a2,
                data[j, 0],
                data[j, 1],
                data[j, 2],
                data[j, 3],
                d1,
                d2,
                l_t,
                theta,
            )
            un1[j] = b1
            un2[j] = b2
            c1 = b1 - a1
            c2 = b2 - a2
            c = _fmul(c1, c1) + _fmul(c2, c2)
            acc[j] += float64(c)
            if j == change_at:
              planes[_CHANGE, ra, x] = c
            if j == count - 1:
              planes[dst + _U1, ra, x] = b1
              planes[dst + _U2, ra, x] = b2
          po11[j] = pn11[j]
          po12[j] = pn12[j]
          po21[j] = pn21[j]
          po22[j] = pn22[j]
          if live and rb >= 0 and rb < height:
            a1 = uo1[j]
            a2 = uo2[j]
            u1x = zero
            u2x = zero
            u1y = zero
            u2y = zero
            if x < width - 1:
              u1x = buf[2 * j * max_width + x + 1] - a1
              u2x = buf[(2 * j + 1) * max_width + x + 1] - a2
            if rb < height - 1:
              u1y = un1[j] - a1
              u2y = un2[j] - a2
            if j == 0:
              o11 = r11
              o12 = r12
              o21 = r21
              o22 = r22
            else:
              o11 = po11[j - 1]
              o12 = po12[j - 1]
              o21 = po21[j - 1]
              o22 = po22[j - 1]
            n11, n12 = _dual_step(o11, o12, u1x, u1y, taut)
            n21, n22 = _dual_step(o21, o22, u2x, u2y, taut)
            pn11[j] = n11
            pn12[j] = n12
            pn21[j] = n21
            pn22[j] = n22
            if j < sweep - 1:
              buf[sp_base + 2 * j * max_width + x] = n11
              buf[sp_base + (2 * j + 1) * max_width + x] = n21
            if j == count - 1:
              planes[dst + _P11, rb, x] = n11
              planes[dst + _P12, rb, x] = n12
              planes[dst + _P21, rb, x] = n21
              planes[dst + _P22, rb, x] = n22
    for j in range(sweep):
      total = _block_sum(acc[j], partial, tid, step)
      if tid == 0 and j < count:
        sums[j] = total
    cuda.syncthreads()

  options = (
      {} if SIMULATED or not max_registers else {'max_registers': max_registers}
  )

  @cuda.jit(**options)
  def kernel(i0s, i1s, u1s, u2s, work, weights, scalars, iterations, serial):
    """tvl1._one_level for pair blockIdx.x; arguments as _pixels_kernel's."""
    n = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    step = cuda.blockDim.x
    buf = cuda.shared.array(buffer_floats, float32)
    partial = cuda.shared.array(_PARTIAL, float64)
    sums = cuda.shared.array(sweep, float64)
    i0 = i0s[n]
    planes = work[n]
    size = i0.shape[0] * i0.shape[1]
    l_t = scalars[0]
    theta = scalars[1]
    taut = scalars[2]
    threshold = scalars[3]
    _start_level(i1s[n], u1s[n], u2s[n], planes, tid, step)
    state = _STATE
    total_iterations = 0
    for _ in range(tvl1.WARPS):
      _warp_level(i0, planes, state, weights, tid, step)
      above = True
      outer = 0
      while above and outer < tvl1.OUTER_ITERATIONS:
        _median_level(planes, state, tid, step)
        inner = 0
        while above and inner < tvl1.INNER_ITERATIONS:
          other = 2 * _STATE + _STATE_PLANES - state
          sweep_pass(
              planes,
              state,
              other,
              sweep,
              -1,
              sums,
              buf,
              partial,
              tid,
              step,
              l_t,
              theta,
              taut,
          )
          # The stopping rule after each iteration of the pass, in turn.
          ran = sweep  # Iterations whose state is in `other`.
          stop = sweep
          j = 0
          while j < sweep:
            verdict = _verdict(sums[j], size, threshold)
            if verdict < 0:
              sweep_pass(
                  planes,
                  state,
                  other,
                  j + 1,
                  j,
                  sums,
                  buf,
                  partial,
                  tid,
                  step,
                  l_t,
                  theta,
                  taut,
              )
              ran = j + 1
              exact = _row_order_sum(planes[_CHANGE], buf, tid, step)
              verdict = 1 if exact > threshold else 0
              if tid == 0:
                serial[n] += 1
            if verdict == 0:
              stop = j + 1
              above = False
              break
            j += 1
          if ran != stop:
            sweep_pass(
                planes,
                state,
                other,
                stop,
                -1,
                sums,
                buf,
                partial,
                tid,
                step,
                l_t,
                theta,
                taut,
            )
          state = other
          inner += stop
        total_iterations += inner
        outer += 1
    _finish_level(planes, state, u1s[n], u2s[n], tid, step)
    if tid == 0:
      iterations[n] = total_iterations

  _COLUMNS_KERNELS[key] = (kernel, max_width)
  return _COLUMNS_KERNELS[key]


def solve(
    first: np.ndarray,
    second: np.ndarray,
    threads: int = THREADS,
    stats: Optional[Dict[str, Any]] = None,
    kernel: str = 'columns',
    sweep: int = SWEEP,
    max_registers: Optional[int] = None,
) -> Tuple[np.ndarray, np.ndarray]:
  """tvl1.solve on the GPU: flow float32 [N, H, W, 2] and iterations.

  Args:
    first: uint8 gray [N, H, W].
    second: uint8 gray of the same shape.
    threads: threads per block of the pixels kernel, a power of 2 <= 1024.
    stats: if a dict, it receives 'serial_sums', int64 [N, levels]: how often
      the stopping rule needed OpenCV's row-order sum, 'level_seconds', the
      GPU time of each level's launch (finest first), summed over batches of
      MAX_PAIRS, and 'kernels', the kernel that ran each level.
    kernel: 'columns' (one thread a column, `sweep` iterations a pass over
      the rows; levels wider than it takes fall back to 'pixels') or
      'pixels' (`threads` threads, one pass over the pixels a phase). Both
      give the same flow, bit for bit.
    sweep: inner iterations per pass of the columns kernel; at least 2, and
      a divisor of tvl1.INNER_ITERATIONS.
    max_registers: a cap on the columns kernel's registers a thread (None:
      128, or 64 for levels wider than 512, so that a block can start).

  Raises:
    ValueError: for bad frames, `threads`, `kernel` or `sweep`.
    CudaUnavailable: when no CUDA GPU (or simulator) can run the kernels.
  """
  if threads < 1 or threads > 1024 or threads & (threads - 1):
    raise ValueError(
        f'`threads` must be a power of 2 from 1 to 1024; got {threads}.'
    )
  if kernel not in KERNELS:
    raise ValueError(f'`kernel` must be one of {KERNELS}; got {kernel!r}.')
  check_sweep(sweep)
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
  kernels = None
  for start in range(0, len(first), MAX_PAIRS):
    f, it, se, sec, kernels = _solve_batch(
        first[start : start + MAX_PAIRS],
        second[start : start + MAX_PAIRS],
        threads,
        kernel,
        sweep,
        max_registers,
    )
    flows.append(f)
    iterations.append(it)
    serial.append(se)
    seconds = sec if seconds is None else seconds + sec
  if stats is not None:
    stats['serial_sums'] = np.concatenate(serial)
    stats['level_seconds'] = seconds.tolist()
    stats['kernels'] = kernels
  return np.concatenate(flows), np.concatenate(iterations)


def _launch(kernel, sweep, max_registers, threads, width):
  """The kernel for a level of this width, its block size and its name."""
  if kernel == 'columns':
    # Whole warps on a GPU; in the simulator, where every thread is a Python
    # thread, only the threads that have a column.
    block = width if SIMULATED else -(-width // 32) * 32
    registers = max_registers
    if registers is None:
      # Any more and a block of this size could not start.
      registers = 64 if block > 512 else 128
    columns, max_width = _columns_kernel(sweep, registers)
    if width <= max_width:
      return columns, block, 'columns'
  return _pixels_kernel, threads, 'pixels'


def _solve_batch(first, second, threads, kernel, sweep, max_registers):
  """solve for at most MAX_PAIRS pairs: flow, iterations, serial sums, times
  and the kernel of each level."""
  levels0, levels1 = _pyramids(first, second)
  count = len(first)
  iterations = np.zeros((count, len(levels0)), np.int64)
  serial = np.zeros((count, len(levels0)), np.int64)
  seconds = np.zeros(len(levels0))
  names = [''] * len(levels0)
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
    level_kernel, block, names[s] = _launch(
        kernel, sweep, max_registers, threads, width
    )
    cuda.synchronize()
    begin = time.perf_counter()
    level_kernel[count, block](
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
      u1, u2 = _upscale(u1, u2, height, width)
  return np.stack([u1, u2], axis=-1), iterations, serial, seconds, names


def _in_chunks(function, count: int) -> None:
  """function(start, stop) over [0, count) in chunks, one thread a core.

  For the host's share of the work (the pyramid and the flow's upscaling):
  cv2.resize releases the GIL, and each frame is resized alone, into its own
  slot, so the result does not depend on the threads.
  """
  workers = min(os.cpu_count() or 1, 16, count)
  bounds = np.linspace(0, count, workers + 1).astype(int)
  if workers < 2:
    function(0, count)
    return
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    for future in [
        pool.submit(function, i, j) for i, j in zip(bounds, bounds[1:])
    ]:
      future.result()


def _upscale(u1, u2, height, width):
  """tvl1._upscale of both flow components, in threads."""
  out1 = np.empty((len(u1), height, width), np.float32)
  out2 = np.empty_like(out1)

  def chunk(i, j):
    tvl1._upscale(u1[i:j], height, width, out1[i:j])  # pylint: disable=protected-access
    tvl1._upscale(u2[i:j], height, width, out2[i:j])  # pylint: disable=protected-access

  _in_chunks(chunk, len(u1))
  return out1, out2


def _pyramids(first, second):
  """tvl1._pyramid of both frames of each pair, in threads.

  The pairs of a video share frames (second[i] is first[i + 1]); those are
  resized once.
  """
  count = len(first)
  if count > 1 and np.array_equal(first[1:], second[:-1]):
    frames = np.concatenate([first, second[-1:]])
    index0, index1 = slice(0, count), slice(1, count + 1)
  else:
    frames = np.concatenate([first, second])
    index0, index1 = slice(0, count), slice(count, 2 * count)
  levels = [
      np.empty((len(frames), h, w), np.float32)
      for h, w in tvl1.level_shapes(*frames.shape[1:])
  ]

  def chunk(i, j):
    tvl1._pyramid(frames[i:j], [level[i:j] for level in levels])  # pylint: disable=protected-access

  _in_chunks(chunk, len(frames))
  return [v[index0] for v in levels], [v[index1] for v in levels]


def flow(first: np.ndarray, second: np.ndarray) -> np.ndarray:
  """tvl1.flow on the GPU: float32 [N, H, W, 2] (or [H, W, 2]) in pixels."""
  return tvl1.flow_with(solve, first, second)
