"""TV-L1 optical flow: OpenCV's DualTVL1 with its defaults, compiled with Numba.

This re-implements `cv2.optflow.DualTVL1OpticalFlow_create()` (opencv_contrib
`modules/optflow/src/tvl1flow.cpp`, OpenCV 4.12) with its default parameters,
step for step, so that its flow is OpenCV's bit for bit (on every pair the
tests and benchmark_tvl1.py tried):

  * Pyramid: frames as float32 in 0..255; each coarser level is
    `cv2.resize(fx=fy=0.8, INTER_LINEAR)` of the one before, stopping early
    when a side would drop below 16; at most 5 levels. cv2.resize itself
    makes them (on x86 it runs Intel IPP, whose rounding differs from
    OpenCV's own code in the last bit).
  * Per level, the flow starts from the coarser level's flow resized
    (cv2.resize INTER_LINEAR to the finer size) and multiplied by 1 / 0.8;
    the coarsest starts at zero. The dual variables p start at zero on every
    level.
  * 5 warps per level: I1 and its centred gradient (one-sided halves at the
    borders) are warped with `cv2.remap(INTER_CUBIC, BORDER_CONSTANT 0)`,
    which rounds each source coordinate to 1/32 pixel and uses a table of
    bicubic weights (a = -0.75); then the data term's constant part.
  * Per warp, up to 10 outer iterations, each a 5x5 median filter of the flow
    (`cv2.medianBlur`, replicated border) followed by up to 30 inner
    iterations: the thresholding step (lambda * theta = 0.045), the
    divergence of p (backward differences), the flow update (theta 0.3), the
    forward-difference gradient and the dual update (tau / theta). Both
    loops stop once the sum over pixels of the squared flow change is at most
    epsilon^2 * pixels (0.01^2); the sum is taken as OpenCV does, in float32
    in row order, whenever a vectorised sum leaves the comparison in doubt.

The pairs of a batch run in parallel on Numba threads, one pair per thread,
each as serial as OpenCV's own loops, so results do not depend on the thread
count. Numba's default threading layer must not be entered from two Python
threads at once, so parallel batches take a lock; with one Numba thread
(`numba.set_num_threads(1)`, as in parallel tf.data calls) pairs run in a
serial kernel without the lock and without the GIL. Each pixel's updates are fused into two passes per inner
iteration, vectorised along rows; the median filter is a pruned sorting
network, also vectorised along rows. Flow is in pixels at the input size;
channel 0 is x.
"""

import contextlib
import math
import threading
from typing import Callable, List, Optional, Tuple

import cv2
import numba
import numpy as np

# OpenCV's defaults (OpticalFlowDual_TVL1::OpticalFlowDual_TVL1()).
TAU = 0.25
LAMBDA = 0.15
THETA = 0.3
NSCALES = 5
WARPS = 5
EPSILON = 0.01
INNER_ITERATIONS = 30
OUTER_ITERATIONS = 10
SCALE_STEP = 0.8
MEDIAN_FILTERING = 5
MIN_LEVEL_SIZE = 16  # A level with a side below this is not used.

_TAB_BITS = 5  # cv2.remap rounds source coordinates to 1/32 pixel.
_TAB_SIZE = 1 << _TAB_BITS
_FLT_EPSILON = np.float32(np.finfo(np.float32).eps)


def _cubic_weights() -> np.ndarray:
  """cv2.remap's INTER_CUBIC table: float32 [32 * 32, 16], (y frac, x frac).

  As OpenCV computes it: 1D weights for x = i / 32 with a = -0.75 in float32,
  the last one 1 minus the others; 2D weights their float32 products.
  """
  a = np.float32(-0.75)
  one = np.float32(1.0)
  table_1d = np.empty((_TAB_SIZE, 4), np.float32)
  for i in range(_TAB_SIZE):
    x = np.float32(i) * np.float32(1.0 / _TAB_SIZE)
    x1 = x + one
    c0 = ((a * x1 - np.float32(5) * a) * x1 + np.float32(8) * a) * x1 - (
        np.float32(4) * a
    )
    c1 = ((a + np.float32(2)) * x - (a + np.float32(3))) * x * x + one
    y = one - x
    c2 = ((a + np.float32(2)) * y - (a + np.float32(3))) * y * y + one
    table_1d[i] = (c0, c1, c2, one - c0 - c1 - c2)
  table = np.einsum('ik,jl->ijkl', table_1d, table_1d)  # float32 products.
  return np.ascontiguousarray(
      table.reshape(_TAB_SIZE * _TAB_SIZE, 16).astype(np.float32)
  )


def _batcher_pairs(n: int) -> List[Tuple[int, int]]:
  """Batcher's odd-even merge sort on the next power of two, restricted to n."""
  size = 1
  while size < n:
    size *= 2
  pairs = []
  p = 1
  while p < size:
    k = p
    while k >= 1:
      for j in range(k % p, size - k, 2 * k):
        for i in range(min(k, size - j - k)):
          if (i + j) // (2 * p) == (i + j + k) // (2 * p):
            pairs.append((i + j, i + j + k))
      k //= 2
    p *= 2
  # Padding wires hold +inf and never move, so comparators on them drop out.
  return [(a, b) for a, b in pairs if b < n]


def _median_network(n: int) -> np.ndarray:
  """Comparators (lo, hi) of a sorting network that still place the median.

  Batcher's network, pruned backwards to the comparators that the middle
  output depends on. int64 [count, 2].
  """
  needed = {n // 2}
  kept = []
  for a, b in reversed(_batcher_pairs(n)):
    if a in needed or b in needed:
      kept.append((a, b))
      needed.update((a, b))
  return np.array(kept[::-1], np.int64)


CUBIC_WEIGHTS = _cubic_weights()
MEDIAN_25 = _median_network(MEDIAN_FILTERING * MEDIAN_FILTERING)

_jit = numba.njit(cache=True, nogil=True, error_model='numpy')


@_jit
def centered_gradient(src, dx, dy):
  """Central differences / 2, one-sided halves on the borders (as OpenCV)."""
  height, width = src.shape
  half = np.float32(0.5)
  for y in range(height):
    yp = max(y - 1, 0)
    yn = min(y + 1, height - 1)
    for x in range(1, width - 1):
      dx[y, x] = half * (src[y, x + 1] - src[y, x - 1])
    dx[y, 0] = half * (src[y, 1] - src[y, 0])
    dx[y, width - 1] = half * (src[y, width - 1] - src[y, width - 2])
    for x in range(width):
      dy[y, x] = half * (src[yn, x] - src[yp, x])


@numba.njit(inline='always')
def _cubic_tap(src, sx, sy, w, weights):
  """One bicubic sample, summed in OpenCV's order (row by row)."""
  total = (
      src[sy, sx] * weights[w, 0]
      + src[sy, sx + 1] * weights[w, 1]
      + src[sy, sx + 2] * weights[w, 2]
      + src[sy, sx + 3] * weights[w, 3]
  )
  total += (
      src[sy + 1, sx] * weights[w, 4]
      + src[sy + 1, sx + 1] * weights[w, 5]
      + src[sy + 1, sx + 2] * weights[w, 6]
      + src[sy + 1, sx + 3] * weights[w, 7]
  )
  total += (
      src[sy + 2, sx] * weights[w, 8]
      + src[sy + 2, sx + 1] * weights[w, 9]
      + src[sy + 2, sx + 2] * weights[w, 10]
      + src[sy + 2, sx + 3] * weights[w, 11]
  )
  total += (
      src[sy + 3, sx] * weights[w, 12]
      + src[sy + 3, sx + 1] * weights[w, 13]
      + src[sy + 3, sx + 2] * weights[w, 14]
      + src[sy + 3, sx + 3] * weights[w, 15]
  )
  return total


@numba.njit(inline='always')
def _cubic_border(src, sx, sy, w, weights):
  """A bicubic sample near the border: taps outside count as 0."""
  height, width = src.shape
  if sx >= width or sx + 4 <= 0 or sy >= height or sy + 4 <= 0:
    return np.float32(0.0)
  total = np.float32(0.0)
  for i in range(4):
    yi = sy + i
    if yi < 0 or yi >= height:
      continue
    for k in range(4):
      xk = sx + k
      if 0 <= xk < width:
        total += src[yi, xk] * weights[w, 4 * i + k]
  return total


@_jit
def remap_cubic(sources, u1, u2, outs, weights):
  """cv2.remap(src, x + u1, y + u2, INTER_CUBIC), border constant 0.

  Warps each of `sources` (float32 [K, H, W]) into `outs` with one set of
  coordinates: x + u1 formed in float32, rounded to 1/32 pixel (half to
  even) and looked up in OpenCV's weight table.
  """
  height, width = u1.shape
  for y in range(height):
    fy0 = np.float32(y)
    for x in range(width):
      sxf = (np.float32(x) + u1[y, x]) * np.float32(_TAB_SIZE)
      syf = (fy0 + u2[y, x]) * np.float32(_TAB_SIZE)
      sxf = min(max(sxf, np.float32(-1048576.0)), np.float32(1048576.0))
      syf = min(max(syf, np.float32(-1048576.0)), np.float32(1048576.0))
      ix = int(np.rint(sxf))
      iy = int(np.rint(syf))
      w = (iy & (_TAB_SIZE - 1)) * _TAB_SIZE + (ix & (_TAB_SIZE - 1))
      sx = (ix >> _TAB_BITS) - 1
      sy = (iy >> _TAB_BITS) - 1
      if sx >= 0 and sy >= 0 and sx < width - 3 and sy < height - 3:
        for k in range(sources.shape[0]):
          outs[k, y, x] = _cubic_tap(sources[k], sx, sy, w, weights)
      else:
        for k in range(sources.shape[0]):
          outs[k, y, x] = _cubic_border(sources[k], sx, sy, w, weights)


@numba.njit(inline='always')
def _sort2(a, b):
  return (a, b) if a < b else (b, a)


@_jit
def _median_rows(r0, r1, r2, r3, r4, out):
  """The 5x5 medians of one output row from five padded input rows.

  The comparators are `MEDIAN_25`, written out so that each pixel's 25
  values stay in registers and the loop vectorises (a test checks that they
  are the same list). Only the median is needed, so the compiler drops
  every comparator output that does not lead to it.
  """
  for x in range(out.shape[0]):
    v0, v1, v2, v3, v4 = (r0[x], r0[x + 1], r0[x + 2], r0[x + 3], r0[x + 4])
    v5, v6, v7, v8, v9 = (r1[x], r1[x + 1], r1[x + 2], r1[x + 3], r1[x + 4])
    v10, v11, v12, v13, v14 = (
        r2[x],
        r2[x + 1],
        r2[x + 2],
        r2[x + 3],
        r2[x + 4],
    )
    v15, v16, v17, v18, v19 = (
        r3[x],
        r3[x + 1],
        r3[x + 2],
        r3[x + 3],
        r3[x + 4],
    )
    v20, v21, v22, v23, v24 = (
        r4[x],
        r4[x + 1],
        r4[x + 2],
        r4[x + 3],
        r4[x + 4],
    )
    v0, v1 = _sort2(v0, v1)
    v2, v3 = _sort2(v2, v3)
    v4, v5 = _sort2(v4, v5)
    v6, v7 = _sort2(v6, v7)
    v8, v9 = _sort2(v8, v9)
    v10, v11 = _sort2(v10, v11)
    v12, v13 = _sort2(v12, v13)
    v14, v15 = _sort2(v14, v15)
    v16, v17 = _sort2(v16, v17)
    v18, v19 = _sort2(v18, v19)
    v20, v21 = _sort2(v20, v21)
    v22, v23 = _sort2(v22, v23)
    v0, v2 = _sort2(v0, v2)
    v1, v3 = _sort2(v1, v3)
    v4, v6 = _sort2(v4, v6)
    v5, v7 = _sort2(v5, v7)
    v8, v10 = _sort2(v8, v10)
    v9, v11 = _sort2(v9, v11)
    v12, v14 = _sort2(v12, v14)
    v13, v15 = _sort2(v13, v15)
    v16, v18 = _sort2(v16, v18)
    v17, v19 = _sort2(v17, v19)
    v20, v22 = _sort2(v20, v22)
    v21, v23 = _sort2(v21, v23)
    v1, v2 = _sort2(v1, v2)
    v5, v6 = _sort2(v5, v6)
    v9, v10 = _sort2(v9, v10)
    v13, v14 = _sort2(v13, v14)
    v17, v18 = _sort2(v17, v18)
    v21, v22 = _sort2(v21, v22)
    v0, v4 = _sort2(v0, v4)
    v1, v5 = _sort2(v1, v5)
    v2, v6 = _sort2(v2, v6)
    v3, v7 = _sort2(v3, v7)
    v8, v12 = _sort2(v8, v12)
    v9, v13 = _sort2(v9, v13)
    v10, v14 = _sort2(v10, v14)
    v11, v15 = _sort2(v11, v15)
    v16, v20 = _sort2(v16, v20)
    v17, v21 = _sort2(v17, v21)
    v18, v22 = _sort2(v18, v22)
    v19, v23 = _sort2(v19, v23)
    v2, v4 = _sort2(v2, v4)
    v3, v5 = _sort2(v3, v5)
    v10, v12 = _sort2(v10, v12)
    v11, v13 = _sort2(v11, v13)
    v18, v20 = _sort2(v18, v20)
    v19, v21 = _sort2(v19, v21)
    v1, v2 = _sort2(v1, v2)
    v3, v4 = _sort2(v3, v4)
    v5, v6 = _sort2(v5, v6)
    v9, v10 = _sort2(v9, v10)
    v11, v12 = _sort2(v11, v12)
    v13, v14 = _sort2(v13, v14)
    v17, v18 = _sort2(v17, v18)
    v19, v20 = _sort2(v19, v20)
    v21, v22 = _sort2(v21, v22)
    v0, v8 = _sort2(v0, v8)
    v1, v9 = _sort2(v1, v9)
    v2, v10 = _sort2(v2, v10)
    v3, v11 = _sort2(v3, v11)
    v4, v12 = _sort2(v4, v12)
    v5, v13 = _sort2(v5, v13)
    v6, v14 = _sort2(v6, v14)
    v7, v15 = _sort2(v7, v15)
    v16, v24 = _sort2(v16, v24)
    v4, v8 = _sort2(v4, v8)
    v5, v9 = _sort2(v5, v9)
    v6, v10 = _sort2(v6, v10)
    v7, v11 = _sort2(v7, v11)
    v20, v24 = _sort2(v20, v24)
    v2, v4 = _sort2(v2, v4)
    v3, v5 = _sort2(v3, v5)
    v6, v8 = _sort2(v6, v8)
    v7, v9 = _sort2(v7, v9)
    v10, v12 = _sort2(v10, v12)
    v11, v13 = _sort2(v11, v13)
    v18, v20 = _sort2(v18, v20)
    v19, v21 = _sort2(v19, v21)
    v22, v24 = _sort2(v22, v24)
    v1, v2 = _sort2(v1, v2)
    v3, v4 = _sort2(v3, v4)
    v5, v6 = _sort2(v5, v6)
    v7, v8 = _sort2(v7, v8)
    v9, v10 = _sort2(v9, v10)
    v11, v12 = _sort2(v11, v12)
    v13, v14 = _sort2(v13, v14)
    v17, v18 = _sort2(v17, v18)
    v19, v20 = _sort2(v19, v20)
    v21, v22 = _sort2(v21, v22)
    v23, v24 = _sort2(v23, v24)
    v0, v16 = _sort2(v0, v16)
    v1, v17 = _sort2(v1, v17)
    v2, v18 = _sort2(v2, v18)
    v3, v19 = _sort2(v3, v19)
    v4, v20 = _sort2(v4, v20)
    v5, v21 = _sort2(v5, v21)
    v6, v22 = _sort2(v6, v22)
    v7, v23 = _sort2(v7, v23)
    v8, v24 = _sort2(v8, v24)
    v8, v16 = _sort2(v8, v16)
    v9, v17 = _sort2(v9, v17)
    v10, v18 = _sort2(v10, v18)
    v11, v19 = _sort2(v11, v19)
    v12, v20 = _sort2(v12, v20)
    v13, v21 = _sort2(v13, v21)
    v6, v10 = _sort2(v6, v10)
    v7, v11 = _sort2(v7, v11)
    v12, v16 = _sort2(v12, v16)
    v13, v17 = _sort2(v13, v17)
    v10, v12 = _sort2(v10, v12)
    v11, v13 = _sort2(v11, v13)
    v11, v12 = _sort2(v11, v12)
    out[x] = v12


@_jit
def median5(src, dst, padded):
  """cv2.medianBlur(src, 5) for float32: 5x5 median, replicated border.

  padded: float32 scratch [H + 4, W + 4]. dst may be src.
  """
  height, width = src.shape
  for y in range(height + 4):
    row = src[min(max(y - 2, 0), height - 1)]
    padded[y, 0] = row[0]
    padded[y, 1] = row[0]
    padded[y, 2 : width + 2] = row
    padded[y, width + 2] = row[width - 1]
    padded[y, width + 3] = row[width - 1]
  for y in range(height):
    _median_rows(
        padded[y],
        padded[y + 1],
        padded[y + 2],
        padded[y + 3],
        padded[y + 4],
        dst[y],
    )


@numba.njit(cache=True, nogil=True, fastmath=True)
def _sum_any_order(values):
  total = np.float32(0.0)
  for y in range(values.shape[0]):
    row = values[y]
    for x in range(row.shape[0]):
      total += row[x]
  return total


@_jit
def _sum32(values):
  """The float32 sum in row order, as OpenCV's estimateU accumulates it."""
  total = np.float32(0.0)
  for v in values.ravel():
    total += v
  return total


@_jit
def _update_flow(d1, d2, gx, gy, g, rc, u1, u2, change, l_t, theta):
  """Thresholding step and flow update of one row (estimateV, estimateU).

  d1, d2: the divergence of p; u1, u2 updated in place; change: each pixel's
  squared flow change, in float32 as OpenCV sums it.
  """
  zero = np.float32(0.0)
  neg_l_t = -l_t
  for x in range(u1.shape[0]):
    a1 = u1[x]
    a2 = u2[x]
    rho = rc[x] + (gx[x] * a1 + gy[x] * a2)
    fi = -rho / g[x]
    small = g[x] > _FLT_EPSILON
    low = rho < neg_l_t * g[x]
    high = rho > l_t * g[x]
    e1 = (
        l_t * gx[x]
        if low
        else neg_l_t * gx[x]
        if high
        else fi * gx[x]
        if small
        else zero
    )
    e2 = (
        l_t * gy[x]
        if low
        else neg_l_t * gy[x]
        if high
        else fi * gy[x]
        if small
        else zero
    )
    b1 = (a1 + e1) + theta * d1[x]
    b2 = (a2 + e2) + theta * d2[x]
    u1[x] = b1
    u2[x] = b2
    c1 = b1 - a1
    c2 = b2 - a2
    change[x] = c1 * c1 + c2 * c2


@_jit
def _divergence_row(p1, p2, p2_up, first_row, out):
  """OpenCV's divergence (backward differences) of one row, its edge cases.

  p2_up: the row above (ignored on the first row).
  """
  if first_row:
    out[0] = p1[0] + p2[0]
    for x in range(1, out.shape[0]):
      out[x] = p1[x] - p1[x - 1] + p2[x]
  else:
    out[0] = p1[0] + p2[0] - p2_up[0]
    for x in range(1, out.shape[0]):
      out[x] = (p1[x] - p1[x - 1]) + (p2[x] - p2_up[x])


@_jit
def _update_dual(ux, uy, p1, p2, taut):
  """OpenCV's estimateDualVariables for one flow component, one row.

  hypot in float64 then rounded to float32, as OpenCV's
  static_cast<float>(hypot(a, b)): float32 squares are exact in float64.
  """
  one = np.float32(1.0)
  for x in range(ux.shape[0]):
    a = ux[x]
    b = uy[x]
    g = np.float32(math.sqrt(np.float64(a) * a + np.float64(b) * b))
    n = one + taut * g
    p1[x] = (p1[x] + taut * a) / n
    p2[x] = (p2[x] + taut * b) / n


@_jit
def _forward_row(u, u_down, last_row, ux, uy):
  """OpenCV's forwardGradient of one row (zero past the last column/row)."""
  width = u.shape[0]
  for x in range(width - 1):
    ux[x] = u[x + 1] - u[x]
  ux[width - 1] = np.float32(0.0)
  if last_row:
    uy[:] = np.float32(0.0)
  else:
    for x in range(width):
      uy[x] = u_down[x] - u[x]


@_jit
def _inner_iteration(
    i1wx,
    i1wy,
    grad,
    rho_c,
    u1,
    u2,
    p11,
    p12,
    p21,
    p22,
    change,
    l_t,
    theta,
    taut,
    scratch,
):
  """One inner iteration: threshold, divergence, flow update, dual update.

  Updates u and p in place and writes each pixel's squared flow change
  (float32, as OpenCV) into `change`. scratch: float32 [4, W].
  """
  height = u1.shape[0]
  # Row y's dual update needs the new flow of rows y and y + 1, and row
  # y + 1's flow update needs the old p of rows y and y + 1: so the dual
  # update runs one row behind, while the rows are still in cache.
  for y in range(height + 1):
    if y < height:
      up = max(y - 1, 0)
      _divergence_row(p11[y], p12[y], p12[up], y == 0, scratch[0])
      _divergence_row(p21[y], p22[y], p22[up], y == 0, scratch[1])
      _update_flow(
          scratch[0],
          scratch[1],
          i1wx[y],
          i1wy[y],
          grad[y],
          rho_c[y],
          u1[y],
          u2[y],
          change[y],
          l_t,
          theta,
      )
    if y > 0:
      row = y - 1
      down = min(y, height - 1)
      last = row == height - 1
      _forward_row(u1[row], u1[down], last, scratch[2], scratch[3])
      _update_dual(scratch[2], scratch[3], p11[row], p12[row], taut)
      _forward_row(u2[row], u2[down], last, scratch[2], scratch[3])
      _update_dual(scratch[2], scratch[3], p21[row], p22[row], taut)


@_jit
def _above(change, threshold):
  """OpenCV's `error > scaledEpsilon`, with its float32 row-order sum.

  A vectorised float32 sum decides unless the two sums could fall on
  different sides: each is within (n - 1) * 2^-24 of the exact sum of the n
  non-negative terms. Then the row-order sum is taken.
  """
  total = np.float64(_sum_any_order(change))
  slack = 2.0 * change.size * 6.0e-8 * total + 1e-30
  if total - slack > threshold:
    return True
  if total + slack < threshold:
    return False
  return _sum32(change) > threshold


@_jit
def _one_level(i0, i1, u1, u2, weights):
  """OpenCV's procOneScale with the default parameters; updates u in place.

  Returns the inner iterations run, summed over the warps (at most
  WARPS * OUTER_ITERATIONS * INNER_ITERATIONS = 1500).
  """
  height, width = i0.shape
  l_t = np.float32(LAMBDA * THETA)
  taut = np.float32(TAU / THETA)
  theta = np.float32(THETA)
  threshold = np.float32(EPSILON * EPSILON * height * width)
  sources = np.empty((3, height, width), np.float32)
  sources[0] = i1
  centered_gradient(i1, sources[1], sources[2])
  warped = np.empty((3, height, width), np.float32)
  i1w = warped[0]
  i1wx = warped[1]
  i1wy = warped[2]
  grad = np.empty_like(i0)
  rho_c = np.empty_like(i0)
  p11 = np.zeros_like(i0)
  p12 = np.zeros_like(i0)
  p21 = np.zeros_like(i0)
  p22 = np.zeros_like(i0)
  change = np.empty_like(i0)
  scratch = np.empty((4, width), np.float32)
  padded = np.empty((height + 4, width + 4), np.float32)
  iterations = 0
  for _ in range(WARPS):
    remap_cubic(sources, u1, u2, warped, weights)
    for y in range(height):
      for x in range(width):
        gx = i1wx[y, x]
        gy = i1wy[y, x]
        grad[y, x] = gx * gx + gy * gy
        rho_c[y, x] = i1w[y, x] - gx * u1[y, x] - gy * u2[y, x] - i0[y, x]
    above = True
    outer = 0
    while above and outer < OUTER_ITERATIONS:
      median5(u1, u1, padded)
      median5(u2, u2, padded)
      inner = 0
      while above and inner < INNER_ITERATIONS:
        _inner_iteration(
            i1wx,
            i1wy,
            grad,
            rho_c,
            u1,
            u2,
            p11,
            p12,
            p21,
            p22,
            change,
            l_t,
            theta,
            taut,
            scratch,
        )
        above = _above(change, threshold)
        inner += 1
      iterations += inner
      outer += 1
  return iterations


@numba.njit(cache=True, nogil=True, parallel=True)
def _levels(first, second, u1, u2, weights, iterations):
  """_one_level on every pair of a batch, pairs in parallel."""
  for n in numba.prange(first.shape[0]):
    iterations[n] = _one_level(first[n], second[n], u1[n], u2[n], weights)


@numba.njit(cache=True, nogil=True)
def _levels_serial(first, second, u1, u2, weights, iterations):
  """_levels on the calling thread: safe from several Python threads."""
  for n in range(first.shape[0]):
    iterations[n] = _one_level(first[n], second[n], u1[n], u2[n], weights)


# Numba's default (workqueue) threading layer aborts the process when two
# Python threads launch parallel kernels at once.
_PARALLEL_LOCK = threading.Lock()


def level_shapes(height: int, width: int) -> List[Tuple[int, int]]:
  """The (height, width) of each pyramid level, finest first, as OpenCV's."""
  shapes = [(height, width)]
  for _ in range(1, NSCALES):
    height, width = shapes[-1]
    height, width = round(height * SCALE_STEP), round(width * SCALE_STEP)
    if height < MIN_LEVEL_SIZE or width < MIN_LEVEL_SIZE:
      break
    shapes.append((height, width))
  return shapes


def _pyramid(
    frames: np.ndarray, out: Optional[List[np.ndarray]] = None
) -> List[np.ndarray]:
  """OpenCV's image pyramid of uint8 [N, H, W]: float32 [N, h, w] per level.

  cv2.resize itself makes the levels: on x86 builds it uses Intel IPP, whose
  rounding differs from OpenCV's own code in the last bit, and the solver is
  sensitive enough for that to show. `out`, if given, receives the levels
  (shaped as level_shapes says).
  """
  if out is None:
    out = [
        np.empty((len(frames), h, w), np.float32)
        for h, w in level_shapes(*frames.shape[1:])
    ]
  for i, frame in enumerate(frames):
    out[0][i] = frame
    for finer, level in zip(out, out[1:]):
      made = cv2.resize(
          finer[i],
          None,
          dst=level[i],
          fx=SCALE_STEP,
          fy=SCALE_STEP,
          interpolation=cv2.INTER_LINEAR,
      )
      if made.shape != level[i].shape:
        # cv2 would have written a new array and left the level unfilled.
        raise ValueError(
            f'`out` levels must be shaped as level_shapes says: OpenCV made '
            f'{made.shape} for a level of {level[i].shape}.'
        )
  return out


def _upscale(
    u: np.ndarray, height: int, width: int, out: Optional[np.ndarray] = None
) -> np.ndarray:
  """A coarser level's flow [N, h, w] -> the finer level's, times 1 / 0.8."""
  if out is None:
    out = np.empty((len(u), height, width), np.float32)
  for f, o in zip(u, out):
    cv2.resize(f, (width, height), dst=o, interpolation=cv2.INTER_LINEAR)
  out *= np.float32(1.0 / SCALE_STEP)
  return out


def _check_gray(name: str, x: np.ndarray) -> np.ndarray:
  x = np.asarray(x)
  if x.dtype != np.uint8 or x.ndim != 3:
    raise ValueError(
        f'`{name}` must be uint8 gray frames [N, H, W]; got dtype {x.dtype} '
        f'and shape {x.shape}.'
    )
  if min(x.shape[1:]) < 4:
    raise ValueError(
        f'`{name}` frames must be at least 4x4 pixels; got {x.shape[1:]}.'
    )
  return np.ascontiguousarray(x)


def flow(first: np.ndarray, second: np.ndarray) -> np.ndarray:
  """TV-L1 flow from each frame of `first` to the same frame of `second`.

  The same flow as `cv2.optflow.DualTVL1OpticalFlow_create().calc(a, b,
  None)` for each pair, to float round-off. Pairs run in parallel on Numba's
  threads (`numba.set_num_threads` limits them).

  Args:
    first: uint8 gray [N, H, W] or [H, W].
    second: uint8 gray of the same shape.

  Returns:
    float32 [N, H, W, 2] (or [H, W, 2]) flow in pixels, channel 0 = x.

  Raises:
    ValueError: for other dtypes, ranks or unequal shapes.
  """
  return flow_with(solve, first, second)


def flow_with(
    solver: Callable[[np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray]],
    first: np.ndarray,
    second: np.ndarray,
) -> np.ndarray:
  """`flow` through `solver` (a `solve`): [N, H, W] or one [H, W] pair."""
  single = np.ndim(first) == 2
  if single:
    first = np.asarray(first)[np.newaxis]
    second = np.asarray(second)[np.newaxis]
  out, _ = solver(first, second)
  return out[0] if single else out


def solve(
    first: np.ndarray, second: np.ndarray
) -> Tuple[np.ndarray, np.ndarray]:
  """`flow` of uint8 [N, H, W] pairs, and how hard each level worked.

  Returns:
    flow float32 [N, H, W, 2], and int64 [N, levels] inner iterations per
    level, finest first (each at most 1500: OpenCV's limit is 5 warps of 10
    outer times 30 inner iterations).
  """
  first = _check_gray('first', first)
  second = _check_gray('second', second)
  if first.shape != second.shape:
    raise ValueError(
        f'`first` and `second` must have one shape; got {first.shape} and '
        f'{second.shape}.'
    )
  levels0 = _pyramid(first)
  levels1 = _pyramid(second)
  iterations = np.zeros((len(first), len(levels0)), np.int64)
  u1 = np.zeros_like(levels0[-1])
  u2 = np.zeros_like(levels0[-1])
  parallel = numba.get_num_threads() > 1 and len(first) > 1
  levels = _levels if parallel else _levels_serial
  with _PARALLEL_LOCK if parallel else contextlib.nullcontext():
    for s in range(len(levels0) - 1, -1, -1):
      levels(levels0[s], levels1[s], u1, u2, CUBIC_WEIGHTS, iterations[:, s])
      if s:
        height, width = levels0[s - 1].shape[1:]
        u1 = _upscale(u1, height, width)
        u2 = _upscale(u2, height, width)
  return np.stack([u1, u2], axis=-1), iterations


def flow_sequence(gray: np.ndarray) -> np.ndarray:
  """Flow between consecutive frames: uint8 [n + 1, H, W] -> [n, H, W, 2]."""
  gray = np.asarray(gray)
  return flow(gray[:-1], gray[1:])
