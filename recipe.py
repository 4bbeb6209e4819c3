"""The published recipe: 25 fps frames -> I3D inputs for both streams.

video.py turns a file into 25 fps frames whose shorter side is 256 pixels;
this module does the rest of the release's recipe:

  * RGB: scale to [-1, 1];
  * flow: convert to grayscale, run TV-L1 optical flow, clip to [-20, 20]
    pixels, divide by 20 to get [-1, 1], keep the two channels (x, y);
  * take a 224x224 centre crop at test time (a random crop, and optionally a
    left-right flip, when training);
  * loop clips shorter than the 9 frames the network needs.

`Clip` is the one place where this happens: iterating it decodes the file
once and yields, frame by frame, the model inputs of every requested stream
(RGB of frame t at once, its flow once frame t + 1 is decoded).
`preprocess`, feature extraction and classification are all built on it.
The TV-L1 worker processes import this module, so it must never import
TensorFlow (a test checks it).

That is the recipe named 'kinetics_i3d' (the default). `recipe_name=
'mediapipe'` follows MediaPipe's published Kinetics graph and reader instead:
frames 256 high as its ScaleImageCalculator sizes them, RGB and 8-bit flow
through JPEG (`mediapipe_scale`, `jpeg_round_trip`, `mediapipe_flow`); the
crop, scaling and looping are the same.

Conventions (each one is tested in recipe_test.py):

  * Centre crop: the offset is floor((size_in - crop) / 2), so an odd margin
    leaves the extra pixel on the bottom or the right.
  * Flow: flow[t] is the TV-L1 flow from frame t to frame t + 1, in pixels.
    There are as many flow frames as RGB frames: the last flow frame repeats
    the one before it (a single frame gets a zero flow). Channel 0 is x
    (horizontal, positive = motion to the right); channel 1 is y (vertical,
    positive = motion downwards), as OpenCV returns it. Flipping flow left to
    right negates channel 0.
  * Videos shorter than `min_frames` are looped from the start; RGB and flow
    are looped alike, and `preprocess` reports it.

The sample arrays are float32 with shapes (1, T, 224, 224, 3) for RGB and
(1, T, 224, 224, 2) for flow; `preprocess` returns exactly that layout. It
holds whole clips; long videos should go through `Clip`, which holds a few
frames of lookahead.

Usage:

  inputs = recipe.preprocess('v_CricketShot_g04_c01.avi')
  inputs['rgb'].shape   # (1, T, 224, 224, 3), float32 in [-1, 1]
  inputs['flow'].shape  # (1, T, 224, 224, 2), float32 in [-1, 1]
  for frame in recipe.Clip('long.mp4', ('rgb', 'flow')):
    frame['rgb'], frame['flow']   # [224, 224, 3] and [224, 224, 2]
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures
import contextlib
import functools
import itertools
import math
import multiprocessing
import numbers
import os
import queue
import signal
import sys
import threading
import types
from typing import (
    Any,
    Dict,
    Iterable,
    Iterator,
    List,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

import cv2
import numba
import numpy as np
from PIL import Image
import tqdm

import assets
import fileio
import tvl1
import video

RngLike = Union[None, int, np.random.Generator]
T = TypeVar('T')

# The published recipe (with video.FPS and video.RESIZE_SHORT_SIDE).
CROP_SIZE = 224
FLOW_BOUND = 20.0  # TV-L1 flow is clipped to [-FLOW_BOUND, FLOW_BOUND] pixels.
# The fewest frames the I3D Logits head accepts: its [2,7,7] VALID pool needs
# ceil(T / 8) >= 2 (see i3d.min_input_size('Logits')). Not imported from
# i3d.py so that this module does not need TensorFlow.
MIN_FRAMES = 9

VALID_STREAMS = assets.STREAMS
VALID_CROPS = ('center', 'random')

# Frame pairs per TV-L1 task sent to a worker process when streaming.
FLOW_CHUNK = 4
# TV-L1 implementations, the same flow: 'numba' is tvl1.py (pairs in
# parallel threads), 'opencv' is cv2.optflow.DualTVL1 (pairs in processes),
# 'cuda' is tvl1_cuda.py (pairs in parallel on an NVIDIA GPU).
FLOW_BACKENDS = ('numba', 'opencv', 'cuda')
# Frame pairs per GPU launch with backend 'cuda': enough to fill a large GPU
# (one thread block per pair), at about 6.5 MB of GPU memory per 256x455 pair.
CUDA_FLOW_CHUNK = 256
DEFAULT_FLOW_BACKEND = 'numba'

# Named recipes, both streams: 'kinetics_i3d' is this release's README (the
# shorter side resized to 256, float flow); 'mediapipe' is MediaPipe's
# published graph and reader (256 high, 8-bit JPEG flow and RGB).
RECIPES = ('kinetics_i3d', 'mediapipe')
DEFAULT_RECIPE = 'kinetics_i3d'
# The help of every command's --recipe.
RECIPE_HELP = (
    'Preprocessing recipe for both streams: kinetics_i3d (this release: '
    "shorter side 256, float flow) or mediapipe (MediaPipe's published "
    'graph: height 256, RGB and 8-bit flow through JPEG); see README.'
)
# ScaleImageCalculator in MediaPipe's graph: target_height, and its default
# aspect-ratio limits (min_aspect_ratio '9/16', max_aspect_ratio '16/9').
MEDIAPIPE_HEIGHT = 256
_MEDIAPIPE_MIN_ASPECT = 9.0 / 16.0
_MEDIAPIPE_MAX_ASPECT = 16.0 / 9.0


# ---------------------------------------------------------------------------
# Cropping, flipping, scaling, looping.


def _spatial_size(x: np.ndarray, name: str) -> Tuple[int, int]:
  if x.ndim < 3:
    raise ValueError(
        f'`{name}` must have shape [..., H, W, C]; got shape {x.shape}.'
    )
  return x.shape[-3], x.shape[-2]


def _check_crop_size(size, height: int, width: int) -> None:
  if not isinstance(size, numbers.Integral) or size < 1:
    raise ValueError(f'`size` must be a positive integer; got {size!r}.')
  if size > height or size > width:
    raise ValueError(
        f'Crop `size`={size} does not fit frames of {height}x{width} (HxW); '
        f'resize to a shorter side of at least {size} first.'
    )


def center_crop_offsets(
    height: int, width: int, size: int = CROP_SIZE
) -> Tuple[int, int]:
  """(top, left) of the centre crop: floor((height - size) / 2), etc.

  An odd margin leaves its extra pixel on the bottom or the right.
  """
  _check_crop_size(size, height, width)
  return (height - size) // 2, (width - size) // 2


def _as_rng(rng: RngLike) -> np.random.Generator:
  if isinstance(rng, np.random.Generator):
    return rng
  if rng is None or (
      isinstance(rng, numbers.Integral) and not isinstance(rng, bool)
  ):
    return np.random.default_rng(rng)
  raise ValueError(
      '`rng` must be a numpy.random.Generator, an integer seed or None; got '
      f'{type(rng).__name__} {rng!r}.'
  )


def random_crop_offsets(
    height: int, width: int, size: int = CROP_SIZE, rng: RngLike = None
) -> Tuple[int, int]:
  """(top, left) of a crop drawn uniformly from every position that fits.

  Args:
    height: Frame height.
    width: Frame width.
    size: Crop side.
    rng: A numpy Generator, an integer seed, or None for fresh entropy.

  Returns:
    (top, left).
  """
  _check_crop_size(size, height, width)
  rng = _as_rng(rng)
  top = int(rng.integers(0, height - size + 1))
  left = int(rng.integers(0, width - size + 1))
  return top, left


def crop_at(
    x: np.ndarray, top: int, left: int, size: int = CROP_SIZE
) -> np.ndarray:
  """The size x size window at (top, left) of every frame of [..., H, W, C]."""
  height, width = _spatial_size(x, 'x')
  _check_crop_size(size, height, width)
  if not (0 <= top <= height - size and 0 <= left <= width - size):
    raise ValueError(
        f'Crop at (top={top}, left={left}) of size {size} leaves frames of '
        f'{height}x{width}; valid tops are 0..{height - size} and lefts '
        f'0..{width - size}.'
    )
  return x[..., top : top + size, left : left + size, :]


def flip_left_right(x: np.ndarray) -> np.ndarray:
  """Mirrors [..., H, W, C] frames; for flow (C == 2) negates channel 0.

  Mirroring turns motion to the right into motion to the left, so the x
  component of flow changes sign; y is unchanged.

  Args:
    x: RGB (C == 3) or flow (C == 2) frames.

  Returns:
    A new array.

  Raises:
    ValueError: for another channel count, or unsigned flow.
  """
  _spatial_size(x, 'x')
  channels = x.shape[-1]
  if channels not in (2, 3):
    raise ValueError(
        f'`x` must have 3 channels (RGB) or 2 (flow x, y) in its last axis; '
        f'got shape {x.shape}.'
    )
  flipped = np.ascontiguousarray(x[..., ::-1, :])
  if channels == 2:
    if np.issubdtype(flipped.dtype, np.unsignedinteger):
      raise ValueError(
          f'Flow `x` must be signed or float to negate its x channel; got '
          f'dtype {x.dtype}.'
      )
    flipped[..., 0] = -flipped[..., 0]
  return flipped


def rgb_to_input(frames: np.ndarray) -> np.ndarray:
  """uint8 RGB [..., 3] -> float32 in [-1, 1]: x / 127.5 - 1.

  Adds no batch dimension.
  """
  frames = np.asarray(frames)
  if frames.dtype != np.uint8 or frames.ndim < 1 or frames.shape[-1] != 3:
    raise ValueError(
        '`frames` must be uint8 RGB with 3 channels last; got dtype '
        f'{frames.dtype} and shape {frames.shape}.'
    )
  return frames.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def flow_to_input(flow: np.ndarray, bound: float = FLOW_BOUND) -> np.ndarray:
  """Flow in pixels [..., 2] -> float32 in [-1, 1]: clip(flow, ±bound) / bound.

  Adds no batch dimension.
  """
  flow = np.asarray(flow)
  if flow.ndim < 1 or flow.shape[-1] != 2:
    raise ValueError(
        f'`flow` must have 2 channels (x, y) last; got shape {flow.shape}.'
    )
  if not bound > 0:
    raise ValueError(
        f'`bound` must be positive (the recipe uses '
        f'{FLOW_BOUND}); got {bound!r}.'
    )
  bound = np.float32(bound)
  return np.clip(flow.astype(np.float32), -bound, bound) / bound


def loop_to_min_frames(
    x: np.ndarray, min_frames: int, axis: int = 0
) -> Tuple[np.ndarray, bool]:
  """Repeats a clip from its start until it has `min_frames` frames.

  Args:
    x: An array with time on `axis`.
    min_frames: The fewest frames wanted.
    axis: The time axis.

  Returns:
    (x, looped): x itself and False when it is long enough, else the looped
    copy (frames 0, 1, ..., T-1, 0, 1, ...) of length `min_frames` and True.

  Raises:
    ValueError: for an empty clip or `min_frames` below 1.
  """
  if not isinstance(min_frames, numbers.Integral) or min_frames < 1:
    raise ValueError(
        f'`min_frames` must be a positive integer (I3D Logits needs '
        f'{MIN_FRAMES}); got {min_frames!r}.'
    )
  x = np.asarray(x)
  count = x.shape[axis]
  if count == 0:
    raise ValueError(
        f'Cannot loop an empty clip (shape {x.shape}, axis '
        f'{axis}); it has no frame to repeat.'
    )
  if count >= min_frames:
    return x, False
  return np.take(x, np.arange(min_frames) % count, axis=axis), True


# ---------------------------------------------------------------------------
# TV-L1 optical flow.

# One DualTVL1 object per thread and frame size. calc() keeps working
# buffers in the object, so threads (e.g. parallel tf.data calls) must not
# share one; and an object that has run on frames of another size gives
# different flow (by up to 0.4 pixels, tested), so a new size gets a new one.
_tvl1 = threading.local()


def _init_flow_worker() -> None:
  # One OpenCV thread per worker: the parallelism is across processes.
  cv2.setNumThreads(1)
  # Ctrl-C reaches the whole process group: the parent reports it once and
  # stops the workers; a worker's own traceback would only add noise.
  signal.signal(signal.SIGINT, signal.SIG_IGN)


def _worker_modules() -> List[str]:
  """The modules a worker process has loaded (for the tests)."""
  return sorted(sys.modules)


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
  """Starts worker processes without re-importing the running script.

  forkserver and spawn children import the parent's `__main__` (a command's
  script, which imports TensorFlow, whose start-up lines would land in the
  progress bar, and which costs seconds and memory per worker). The tasks
  need only this module, so the script is hidden while the workers start.
  """
  main = sys.modules.get('__main__')
  sys.modules['__main__'] = types.ModuleType('__main__')
  try:
    yield
  finally:
    sys.modules['__main__'] = main


def _flow_chunk(gray: np.ndarray, backend: str = 'opencv') -> np.ndarray:
  """TV-L1 flow between consecutive frames of uint8 [n+1, H, W] -> [n,H,W,2]."""
  if backend == 'numba':
    return tvl1.flow_sequence(gray)
  if backend == 'cuda':
    import tvl1_cuda  # pylint: disable=g-import-not-at-top

    return tvl1_cuda.flow(gray[:-1], gray[1:])
  solver = getattr(_tvl1, 'instance', None)
  if solver is None or getattr(_tvl1, 'shape', None) != gray.shape[1:]:
    solver = _tvl1.instance = cv2.optflow.DualTVL1OpticalFlow_create()
    _tvl1.shape = gray.shape[1:]
  out = np.empty((len(gray) - 1,) + gray.shape[1:] + (2,), np.float32)
  for i in range(len(gray) - 1):
    out[i] = solver.calc(gray[i], gray[i + 1], None)
  return out


def _to_gray(frame: np.ndarray) -> np.ndarray:
  frame = np.asarray(frame)
  if frame.dtype != np.uint8:
    raise ValueError(
        f'Flow input frames must be uint8 (RGB [H, W, 3] or gray [H, W]); got '
        f'dtype {frame.dtype}.'
    )
  if frame.ndim == 3 and frame.shape[-1] == 3:
    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
  if frame.ndim == 2:
    return np.ascontiguousarray(frame)
  raise ValueError(
      'Flow input frames must be RGB [H, W, 3] or gray [H, W]; got shape '
      f'{frame.shape}.'
  )


def _resolve_workers(workers: Optional[int]) -> int:
  if workers is None:
    return os.cpu_count() or 1
  if not isinstance(workers, numbers.Integral) or workers < 1:
    raise ValueError(
        f'`workers` must be a positive integer or None (= os.cpu_count(), '
        f'{os.cpu_count()} here); got {workers!r}.'
    )
  return int(workers)


def _executor(workers: int) -> concurrent.futures.ProcessPoolExecutor:
  # forkserver/spawn rather than fork: the caller may hold threads (TensorFlow,
  # FFmpeg) that a forked child would inherit in an undefined state. A worker
  # that dies (e.g. out of memory) raises BrokenProcessPool instead of hanging.
  methods = multiprocessing.get_all_start_methods()
  context = multiprocessing.get_context(
      'forkserver' if 'forkserver' in methods else 'spawn'
  )
  executor = concurrent.futures.ProcessPoolExecutor(
      workers, mp_context=context, initializer=_init_flow_worker
  )
  with _main_module_hidden():
    # The first task starts every worker (and the forkserver, once).
    executor.submit(os.getpid).result()
  return executor


def _stop(executor: concurrent.futures.ProcessPoolExecutor) -> None:
  """Ends the workers now (on an error or Ctrl-C), not after their chunk."""
  for process in list(getattr(executor, '_processes', {}).values()):
    process.terminate()
  executor.shutdown(wait=True, cancel_futures=True)


# One pool of TV-L1 worker processes, kept from one clip to the next: a new
# worker costs seconds (a Python start and the imports of this module, OpenCV,
# NumPy and Numba). `_pool_users` counts the iter_flow calls using it; a call
# that wants another worker count while it is in use gets a pool of its own.
# Idle workers end when the process exits (concurrent.futures joins them; the
# atexit hook below does it explicitly).
_POOL_LOCK = threading.Lock()
_pool: Optional[concurrent.futures.ProcessPoolExecutor] = None
_pool_workers = 0
_pool_users = 0


def _shutdown_pool() -> None:
  """Ends the kept pool's workers after their current task; for atexit."""
  global _pool
  with _POOL_LOCK:
    if _pool is not None:
      _pool.shutdown(wait=True, cancel_futures=True)
      _pool = None


atexit.register(_shutdown_pool)


def _acquire_executor(
    workers: int,
) -> Tuple[concurrent.futures.ProcessPoolExecutor, bool]:
  """(pool of `workers` processes, whether it is the kept one)."""
  global _pool, _pool_workers, _pool_users
  with _POOL_LOCK:
    if _pool is not None and _pool_users == 0:
      if getattr(_pool, '_broken', False):
        _stop(_pool)
        _pool = None
      elif _pool_workers != workers:
        _pool.shutdown(wait=True)
        _pool = None
    if _pool is None:
      _pool, _pool_workers = _executor(workers), workers
    if _pool_workers == workers and not getattr(_pool, '_broken', False):
      _pool_users += 1
      return _pool, True
  return _executor(workers), False


def _release_executor(
    executor: concurrent.futures.ProcessPoolExecutor, kept: bool, ok: bool
) -> None:
  """Gives back a pool from `_acquire_executor`; `ok` False after an error.

  After an error or Ctrl-C the workers are stopped at once (the kept pool
  only if no other call uses it); otherwise the kept pool stays for the
  next clip and a pool of its own is shut down.
  """
  global _pool, _pool_users
  if not kept:
    if ok:
      executor.shutdown(wait=True)
    else:
      _stop(executor)
    return
  with _POOL_LOCK:
    _pool_users -= 1
    if not ok and _pool_users == 0 and _pool is executor:
      _stop(executor)
      _pool = None


def iter_flow(
    frames: Iterable[np.ndarray],
    workers: Optional[int] = None,
    chunk_size: int = FLOW_CHUNK,
    backend: str = DEFAULT_FLOW_BACKEND,
) -> Iterator[np.ndarray]:
  """Streams TV-L1 optical flow, one flow frame per input frame.

  flow[t] is the flow from frame t to frame t + 1, in pixels, unclipped.
  With T input frames it yields T flow frames: the last one repeats flow[T-2]
  (one input frame yields a zero flow). Channel 0 is x (positive = motion to
  the right), channel 1 is y (positive = motion downwards). Frames are turned
  to grayscale (RGB order) and fed to OpenCV's DualTVL1 with its default
  settings, or to tvl1.py, which gives the same flow (see `backend`).

  Pairs are sent in chunks of `chunk_size` to `workers` processes, each with
  one OpenCV thread; at most 2 * workers chunks are in flight, so memory stays
  bounded on long streams (about 2 * workers * chunk_size frames of
  lookahead). The processes start only once a full chunk exists, and stay
  for the next call with as many workers (they end with this process, or at
  once after an error). With
  backend='numba' the pairs of a chunk (at least `workers` of them) run on
  `workers` threads in this process instead.

  Args:
    frames: uint8 RGB [H, W, 3] or gray [H, W] frames, all the same size;
      any iterable, e.g. `(f.image for f in iter_frames(path))`.
    workers: Processes to use; None = os.cpu_count(); 1 computes in this
      process.
    chunk_size: Frame pairs per task.
    backend: One of FLOW_BACKENDS; both give OpenCV's flow.

  Yields:
    float32 [H, W, 2] flow frames, in order.

  Raises:
    ValueError: for frames of other dtypes, shapes or changing sizes, or a
      bad `workers`/`chunk_size`.
  """
  workers = _resolve_workers(workers)
  if not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
    raise ValueError(
        f'`chunk_size` must be a positive integer; got {chunk_size!r}.'
    )
  check_backend(backend)
  return _iter_flow(frames, workers, int(chunk_size), backend)


def check_backend(backend: str) -> str:
  """Returns `backend`; raises ValueError unless it is in FLOW_BACKENDS."""
  if backend not in FLOW_BACKENDS:
    raise ValueError(
        f'`backend` must be one of {FLOW_BACKENDS}; got {backend!r}.'
    )
  if backend == 'cuda':
    import tvl1_cuda  # pylint: disable=g-import-not-at-top

    if not tvl1_cuda.available():
      raise ValueError(
          f"TV-L1 backend 'cuda' cannot run here: "
          f'{tvl1_cuda.why_unavailable()}; use backend numba (the same flow '
          'on the CPU).'
      )
  return backend


def _iter_flow(
    frames: Iterable[np.ndarray], workers: int, chunk_size: int, backend: str
) -> Iterator[np.ndarray]:
  if backend == 'numba':
    # Threads in this process: one chunk of at least `workers` pairs.
    numba.set_num_threads(min(workers, numba.config.NUMBA_NUM_THREADS))
    chunk_size = max(chunk_size, workers)
    workers = 1
  elif backend == 'cuda':
    # One GPU launch per level for a whole batch of pairs.
    chunk_size = max(chunk_size, CUDA_FLOW_CHUNK)
    workers = 1
  grays = map(_to_gray, frames)
  first = next(grays, None)
  if first is None:
    return
  # Results in order: arrays computed here, or futures from the workers.
  pending = collections.deque()
  max_pending = 0 if workers == 1 else 2 * workers - 1
  executor = None
  kept = False
  last = np.zeros(first.shape + (2,), np.float32)  # What one frame yields.
  chunk = [first]
  finished = False
  try:
    for gray in itertools.chain(grays, [None]):
      final = gray is None
      if not final:
        if gray.shape != first.shape:
          raise ValueError(
              f'Flow input frames must all have one size; the first was '
              f'{first.shape} and a later one {gray.shape}.'
          )
        chunk.append(gray)
        if len(chunk) <= chunk_size:
          continue
      if len(chunk) > 1:
        batch = np.stack(chunk)
        chunk = [chunk[-1]]
        if workers == 1 or (final and executor is None):
          pending.append(_flow_chunk(batch, backend))
        else:
          if executor is None:
            executor, kept = _acquire_executor(workers)
          pending.append(executor.submit(_flow_chunk, batch))
      while pending and (final or len(pending) > max_pending):
        done = pending.popleft()
        for flow in (done if isinstance(done, np.ndarray) else done.result()):
          last = flow
          yield flow
    yield last.copy()
    finished = True
  finally:
    if executor is not None:
      for done in pending:
        if not isinstance(done, np.ndarray):
          done.cancel()
      _release_executor(executor, kept, finished)


def compute_flow(
    frames: np.ndarray,
    workers: Optional[int] = None,
    backend: str = DEFAULT_FLOW_BACKEND,
) -> np.ndarray:
  """TV-L1 flow of a whole clip; see `iter_flow` for the conventions.

  Args:
    frames: uint8 [T, H, W, 3] RGB or [T, H, W] gray, T >= 1.
    workers: Processes (or threads) to use; None = os.cpu_count().
    backend: One of FLOW_BACKENDS.

  Returns:
    float32 [T, H, W, 2] flow in pixels, unclipped; flow[t] is frame t -> t+1
    and flow[T-1] repeats flow[T-2] (zero if T == 1).

  Raises:
    ValueError: for a bad dtype or shape, or no frames.
  """
  frames = np.asarray(frames)
  if (
      frames.dtype != np.uint8
      or frames.ndim not in (3, 4)
      or (frames.ndim == 4 and frames.shape[-1] != 3)
      or not len(frames)
  ):
    raise ValueError(
        '`frames` must be uint8 [T, H, W, 3] RGB or [T, H, W] gray with T >= '
        f'1; got dtype {frames.dtype} and shape {frames.shape}.'
    )
  workers = _resolve_workers(workers)
  check_backend(backend)
  pairs = len(frames) - 1
  # Split the pairs evenly over the workers, in chunks of at most 8.
  chunk = max(1, min(8, math.ceil(pairs / workers)))
  out = np.empty(frames.shape[:3] + (2,), np.float32)
  for t, flow in enumerate(_iter_flow(iter(frames), workers, chunk, backend)):
    out[t] = flow
  return out


# ---------------------------------------------------------------------------
# MediaPipe's published recipe (recipe_name='mediapipe').
#
# DeepMind's later Kinetics pipeline: MediaPipe's graph
# mediapipe/graphs/media_sequence/tvl1_flow_and_rgb_from_file.pbtxt writes
# JPEG frames and JPEG flow into SequenceExamples, and
# mediapipe/examples/desktop/media_sequence/kinetics_dataset.py reads them
# back. The functions below redo each step that changes pixels; README.md
# ("MediaPipe's published recipe") lists every difference from the default.


class MediaPipeLayout(NamedTuple):
  """Where ScaleImageCalculator crops a frame and what size it scales it to.

  Attributes:
    crop: (top, left, height, width) of the source region kept.
    size: (height, width) of the scaled frame.
  """

  crop: Tuple[int, int, int, int]
  size: Tuple[int, int]


def mediapipe_layout(height: int, width: int) -> MediaPipeLayout:
  """ScaleImageCalculator's sizing with the graph's options, for one frame.

  The graph sets target_height 256 and preserve_aspect_ratio; the other
  options keep their defaults. So (scale_image_utils.cc): a frame wider than
  16:9 is first centre-cropped to int(height * 16 / 9) columns, one narrower
  than 9:16 to int(width / (9 / 16)) rows, each rounded down to even; then the
  height becomes 256 and the width int(256 / crop_height * crop_width),
  rounded down to even. Portrait frames therefore come out narrower than
  256, unlike the default recipe's shorter side of 256.

  Args:
    height: Source height in pixels.
    width: Source width in pixels.

  Returns:
    The crop and the output size.
  """
  if height < 1 or width < 1:
    raise ValueError(
        f'Frame `height` and `width` must be positive; got {height}x{width}.'
    )
  top, left, crop_h, crop_w = 0, 0, height, width
  aspect = width / height
  if aspect > _MEDIAPIPE_MAX_ASPECT:
    crop_w = int(height * _MEDIAPIPE_MAX_ASPECT) // 2 * 2
    left = (width - crop_w) // 2
  elif aspect < _MEDIAPIPE_MIN_ASPECT:
    crop_h = int(width / _MEDIAPIPE_MIN_ASPECT) // 2 * 2
    top = (height - crop_h) // 2
  out_w = max(int(MEDIAPIPE_HEIGHT / crop_h * crop_w) // 2 * 2, 1)
  return MediaPipeLayout((top, left, crop_h, crop_w), (MEDIAPIPE_HEIGHT, out_w))


@functools.lru_cache(maxsize=1)
def _srgb_luts() -> Tuple[np.ndarray, np.ndarray]:
  """image_frame_util.cc's sRGB <-> 16-bit linear RGB lookup tables."""
  to_linear = [
      int(i / 255 / 12.92 * 65535 + 0.5)
      if i < 0.04045 * 255
      else int(math.pow((i / 255 + 0.055) / 1.055, 2.4) * 65535 + 0.5)
      for i in range(256)
  ]
  to_srgb = [
      int(i / 65535 * 12.92 * 255 + 0.5)
      if i < 0.0031308 * 65535
      else int((1.055 * math.pow(i / 65535, 1 / 2.4) - 0.055) * 255 + 0.5)
      for i in range(65536)
  ]
  return np.array(to_linear, np.uint16), np.array(to_srgb, np.uint8)


def mediapipe_scale(image: np.ndarray) -> np.ndarray:
  """A frame as the graph's ScaleImageCalculator scales it.

  Crop and size from `mediapipe_layout`. Shrinking (neither side grows) is
  OpenCV's INTER_AREA on the 8-bit sRGB values (MediaPipe's open-source
  ImageResizer); growing goes through 16-bit linear light: sRGB -> linear by
  lookup table, INTER_CUBIC, linear -> sRGB (image_frame_util.cc).

  Args:
    image: uint8 RGB [H, W, 3].

  Returns:
    uint8 RGB [256, W', 3].
  """
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(
        '`image` must be uint8 RGB [H, W, 3]; got dtype '
        f'{image.dtype} and shape {image.shape}.'
    )
  (top, left, crop_h, crop_w), (out_h, out_w) = mediapipe_layout(
      *image.shape[:2]
  )
  image = np.ascontiguousarray(image[top : top + crop_h, left : left + crop_w])
  if (crop_h, crop_w) == (out_h, out_w):
    return image
  if crop_h >= out_h and crop_w >= out_w:
    return cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_AREA)
  to_linear, to_srgb = _srgb_luts()
  linear = cv2.resize(
      to_linear[image], (out_w, out_h), interpolation=cv2.INTER_CUBIC
  )
  return to_srgb[linear]


def jpeg_round_trip(image: np.ndarray) -> np.ndarray:
  """A uint8 RGB frame stored as the graph stores it and read back.

  Encoding is OpenCvImageEncoderCalculator's: RGB -> BGR, then cv2.imencode
  at JPEG quality 100 (OpenCV's other defaults: 4:2:0 chroma subsampling).
  Decoding is the reader's tf.image.decode_jpeg with its defaults, whose DCT
  is libjpeg's fast integer one; simplejpeg with fastdct=True gives the same
  pixels without TensorFlow.

  Args:
    image: uint8 RGB [H, W, 3].

  Returns:
    uint8 RGB [H, W, 3].
  """
  ok, data = cv2.imencode(
      '.jpg',
      cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR),
      [cv2.IMWRITE_JPEG_QUALITY, 100],
  )
  if not ok:
    raise ValueError(f'OpenCV could not encode a JPEG of shape {image.shape}.')
  import simplejpeg  # pylint: disable=g-import-not-at-top  # Only this recipe.

  return simplejpeg.decode_jpeg(
      data.tobytes(), colorspace='RGB', fastdct=True, fastupsample=False
  )


def quantize_flow(flow: np.ndarray) -> np.ndarray:
  """FlowToImageCalculator: flow in pixels [..., 2] -> uint8 [..., 2].

  Each channel becomes (v + 20) / 40, clamped to [0, 1], times 255 and
  truncated, in float32: steps of 40/255 pixels.
  """
  flow = np.asarray(flow, np.float32)
  if flow.ndim < 1 or flow.shape[-1] != 2:
    raise ValueError(
        f'`flow` must have 2 channels (x, y) last; got shape {flow.shape}.'
    )
  low = np.float32(-FLOW_BOUND)
  unit = np.clip((flow - low) / np.float32(2 * FLOW_BOUND), 0, 1)
  return (unit * np.float32(255)).astype(np.uint8)


def dequantize_flow(levels: np.ndarray) -> np.ndarray:
  """The reader's inverse of `quantize_flow`: uint8 -> float32 pixels.

  kinetics_dataset.py: tf.image.convert_image_dtype (q * float32(1 / 255)),
  then (v - 0.5) * 2 * 20, in float32. Truncation in `quantize_flow` makes
  the round trip lose up to one step of 40/255 pixels, about 0.08 px on
  average.
  """
  levels = np.asarray(levels)
  if levels.dtype != np.uint8:
    raise ValueError(f'`levels` must be uint8; got dtype {levels.dtype}.')
  unit = levels.astype(np.float32) * np.float32(1 / 255)
  return (unit - np.float32(0.5)) * np.float32(2) * np.float32(FLOW_BOUND)


def mediapipe_flow(flow: np.ndarray) -> np.ndarray:
  """TV-L1 flow [H, W, 2] as the graph stores it and the reader decodes it.

  `quantize_flow`, an RGB image of (x, y, 0) through `jpeg_round_trip`, then
  `dequantize_flow` of its first two channels.
  """
  levels = quantize_flow(flow)
  image = np.concatenate([levels, np.zeros_like(levels[..., :1])], axis=-1)
  return dequantize_flow(jpeg_round_trip(image)[..., :2])


def check_recipe(
    recipe_name: str, info: Optional[video.VideoInfo] = None
) -> str:
  """Returns `recipe_name` if it is in RECIPES and fits the video.

  Args:
    recipe_name: The name to check.
    info: The video's `video.probe`, to check that the recipe's frames hold
      a CROP_SIZE crop; None skips that check.

  Returns:
    `recipe_name`.

  Raises:
    ValueError: for a name not in RECIPES.
    video.VideoError: with 'mediapipe', for a video whose frames come out
      narrower than the crop (portrait videos taller than 8:7).
  """
  if recipe_name not in RECIPES:
    raise ValueError(
        f'`recipe_name` must be one of {RECIPES}; got {recipe_name!r}.'
    )
  if recipe_name == 'mediapipe' and info is not None:
    size = mediapipe_layout(info.height, info.width).size
    if size[1] < CROP_SIZE:
      raise video.VideoError(
          f'{info.path!r} is {info.width}x{info.height} (WxH); recipe '
          f"'mediapipe' keeps the height at {MEDIAPIPE_HEIGHT}, which makes its "
          f'frames {size[1]}x{size[0]}, narrower than the {CROP_SIZE}x'
          f"{CROP_SIZE} crop; use recipe 'kinetics_i3d' (shorter side "
          f'{video.RESIZE_SHORT_SIDE}) for this video.'
      )
  return recipe_name


# ---------------------------------------------------------------------------
# The whole recipe, from one decoding pass.


class Clip:
  """One video's I3D inputs, streamed frame by frame from one decoding pass.

  Iterating (once) yields, for each output frame at `fps`, a dict
  {stream: float32 [224, 224, C]} of the requested streams: resized to a
  shorter side of 256, cropped to 224, RGB scaled to [-1, 1], flow computed
  by TV-L1 on the resized frames (with one frame of lookahead, on `workers`
  threads or processes), clipped to +-20 pixels and divided by 20, and mirrored when
  flipped. Nothing is looped here. The file is decoded once whatever the
  streams. With recipe_name='mediapipe' the frames are sized by
  `mediapipe_scale` instead, and RGB and flow go through MediaPipe's JPEG
  storage before the crop.

  Attributes:
    path: The file.
    streams: The streams yielded, in VALID_STREAMS order.
    recipe_name: One of RECIPES; the above is 'kinetics_i3d'.
    start_time: Seconds of frame 0 (frame k is at start_time + k / fps).
    times: The video time t_k of each frame yielded so far.
    source_times: The timestamp of the source frame shown, likewise.
    num_frames: Frames yielded, once iteration is over (else None).
    frame_size: (height, width) after resizing, once a frame is out.
    crop_offset: (top, left) of the crop, once a frame is out.
    flipped: Whether the clip is mirrored, once a frame is out.
  """

  def __init__(
      self,
      path: video.PathLike,
      streams: Sequence[str] = VALID_STREAMS,
      start: Optional[float] = None,
      end: Optional[float] = None,
      crop: str = 'center',
      rng: RngLike = None,
      flip: bool = False,
      workers: Optional[int] = None,
      fps: float = video.FPS,
      flow_backend: str = DEFAULT_FLOW_BACKEND,
      recipe_name: str = DEFAULT_RECIPE,
  ):
    """Opens the video and checks the arguments and `start`/`end`.

    Args:
      path: A video file.
      streams: Which of VALID_STREAMS to yield.
      start: Clip start in seconds, or None for the start of the video.
      end: Clip end in seconds, or None for the end of the video.
      crop: 'center' (test time) or 'random' (training; one crop per clip,
        the same for RGB and flow).
      rng: Generator, seed or None, for crop='random' and `flip`. Offsets
        are drawn first (top, then left), then the flip.
      flip: If True, mirror the clip left to right with probability 0.5
        (flow x negated).
      workers: Processes (or threads) for TV-L1; None = os.cpu_count().
      fps: Output frame rate.
      flow_backend: TV-L1 implementation, one of FLOW_BACKENDS.
      recipe_name: One of RECIPES: 'kinetics_i3d' (the default, above) or
        'mediapipe': frames sized by `mediapipe_scale` instead, RGB through
        `jpeg_round_trip` and flow through `mediapipe_flow` before the crop.

    Raises:
      video.VideoError: if the file is missing, empty, not a video or the
        clip is outside it (decoding problems are raised while iterating),
        or does not fit the recipe (see `check_recipe`).
      ValueError: for a bad argument.
    """
    self.path = os.fspath(path)
    self.streams = check_streams(streams)
    check_recipe(recipe_name)
    self.recipe_name = recipe_name
    if crop not in VALID_CROPS:
      raise ValueError(f'`crop` must be one of {VALID_CROPS}; got {crop!r}.')
    self._workers = _resolve_workers(workers)
    self._flow_backend = check_backend(flow_backend)
    self._crop = crop
    self._flip = flip
    self._rng = _as_rng(rng) if (crop == 'random' or flip) else None
    self.start_time = float(start or 0.0)
    self.times: List[float] = []
    self.source_times: List[float] = []
    self.num_frames: Optional[int] = None
    self.frame_size: Optional[Tuple[int, int]] = None
    self.crop_offset: Optional[Tuple[int, int]] = None
    self.flipped: Optional[bool] = None
    short_side = video.RESIZE_SHORT_SIDE
    if self.recipe_name == 'mediapipe':
      short_side = None  # mediapipe_scale sizes the source frames.
      check_recipe(recipe_name, video.probe(self.path))
    self._frames = video.iter_frames(
        self.path, start=start, end=end, fps=fps, short_side=short_side
    )
    self._iterated = False

  def __iter__(self) -> Iterator[Dict[str, np.ndarray]]:
    if self._iterated:
      raise RuntimeError(
          f'The Clip of {self.path!r} was iterated already; '
          'make a new Clip to read the video again.'
      )
    self._iterated = True
    return self._iterate()

  def _layout(self, image: np.ndarray) -> None:
    """Fixes the crop and the flip from the first frame."""
    height, width = image.shape[:2]
    if self._crop == 'center':
      offset = center_crop_offsets(height, width, CROP_SIZE)
    else:
      offset = random_crop_offsets(height, width, CROP_SIZE, self._rng)
    self.frame_size = (height, width)
    self.crop_offset = offset
    self.flipped = bool(self._flip and self._rng.random() < 0.5)

  def _mirror(self, x: np.ndarray) -> np.ndarray:
    return flip_left_right(x) if self.flipped else x

  def _iterate(self) -> Iterator[Dict[str, np.ndarray]]:
    rgb = collections.deque()  # RGB inputs waiting for their flow frame.
    mediapipe = self.recipe_name == 'mediapipe'

    def images() -> Iterator[np.ndarray]:
      for frame in self._frames:
        image = mediapipe_scale(frame.image) if mediapipe else frame.image
        if self.crop_offset is None:
          self._layout(image)
        self.times.append(frame.time)
        self.source_times.append(frame.source_time)
        if 'rgb' in self.streams:
          stored = jpeg_round_trip(image) if mediapipe else image
          rgb.append(
              rgb_to_input(self._mirror(crop_at(stored, *self.crop_offset)))
          )
        yield image

    if 'flow' in self.streams:
      for flow in iter_flow(
          images(), workers=self._workers, backend=self._flow_backend
      ):
        if mediapipe:
          flow = mediapipe_flow(flow)
        out = {
            'flow': self._mirror(
                flow_to_input(crop_at(flow, *self.crop_offset))
            )
        }
        if rgb:
          out = {'rgb': rgb.popleft(), **out}
        yield out
    else:
      for _ in images():
        yield {'rgb': rgb.popleft()}
    self.num_frames = len(self.times)


def check_streams(streams: Sequence[str]) -> Tuple[str, ...]:
  """`streams` as a tuple in VALID_STREAMS order; raises on bad names."""
  streams = (streams,) if isinstance(streams, str) else tuple(streams)
  if not streams or any(s not in VALID_STREAMS for s in streams):
    raise ValueError(
        f'`streams` must be a non-empty subset of {VALID_STREAMS}; got '
        f'{streams!r}.'
    )
  return tuple(s for s in VALID_STREAMS if s in streams)


def _expected_frames(
    info: video.VideoInfo,
    start: Optional[float],
    end: Optional[float],
    fps: float,
) -> Optional[int]:
  """About how many frames a clip gives at `fps`, for progress bars."""
  stop = end if end is not None else info.duration
  if stop is None:
    return None
  return max(0, math.ceil((stop - (start or 0.0)) * fps))


def preprocess(
    path: video.PathLike,
    streams: Sequence[str] = VALID_STREAMS,
    start: Optional[float] = None,
    end: Optional[float] = None,
    min_frames: int = MIN_FRAMES,
    crop: str = 'center',
    rng: RngLike = None,
    flip: bool = False,
    workers: Optional[int] = None,
    fps: float = video.FPS,
    progress: bool = False,
    flow_backend: str = DEFAULT_FLOW_BACKEND,
    recipe_name: str = DEFAULT_RECIPE,
) -> Dict[str, Any]:
  """A video file -> I3D inputs in the layout of the release's sample arrays.

  The frames of a `Clip`, stacked, with clips shorter than `min_frames`
  looped. Memory is about the size of the outputs.

  Args:
    path: A video file.
    streams: Which of 'rgb' and 'flow' to compute.
    start: Clip start in seconds, or None.
    end: Clip end in seconds, or None.
    min_frames: Loop shorter clips up to this many frames (9 for the I3D
      Logits head; 1 never loops).
    crop: 'center' or 'random'; see `Clip`.
    rng: Generator, seed or None; see `Clip`.
    flip: Mirror with probability 0.5; see `Clip`.
    workers: Processes for TV-L1; None = os.cpu_count().
    fps: Output frame rate.
    progress: Show a tqdm bar over the frames on stderr.
    flow_backend: TV-L1 implementation, one of FLOW_BACKENDS.
    recipe_name: One of RECIPES; see `Clip`.

  Returns:
    A dict with
      'rgb': float32 (1, T, 224, 224, 3) in [-1, 1] (if asked for);
      'flow': float32 (1, T, 224, 224, 2) in [-1, 1] (if asked for);
      'timestamps': float64 [T], the video time t_k of each output frame
        (looped frames repeat their times);
      'source_times': float64 [T], the timestamp of the source frame shown;
      'num_frames': frames before looping;
      'looped': whether the clip was looped to `min_frames`;
      'frame_size': (H, W) after resizing, before cropping;
      'crop_offset': (top, left) of the crop in the resized frames;
      'flipped': whether the clip was mirrored;
      'info': the file's VideoInfo.

  Raises:
    VideoError: for a bad file or clip (see `video.iter_frames`).
    ValueError: for a bad argument.
  """
  path = os.fspath(path)
  streams = (streams,) if isinstance(streams, str) else tuple(streams)
  if not isinstance(min_frames, numbers.Integral) or min_frames < 1:
    raise ValueError(
        f'`min_frames` must be a positive integer (I3D Logits needs '
        f'{MIN_FRAMES}); got {min_frames!r}.'
    )
  clip = Clip(
      path,
      streams,
      start=start,
      end=end,
      crop=crop,
      rng=rng,
      flip=flip,
      workers=workers,
      fps=fps,
      flow_backend=flow_backend,
      recipe_name=recipe_name,
  )
  info = video.probe(path)
  frames: Iterable[Dict[str, np.ndarray]] = clip
  if progress:
    frames = tqdm.tqdm(
        frames,
        total=_expected_frames(info, start, end, fps),
        unit='frame',
        desc=os.path.basename(path),
        dynamic_ncols=True,
    )
  stacked: Dict[str, List[np.ndarray]] = {s: [] for s in clip.streams}
  for frame in frames:
    for stream, array in frame.items():
      stacked[stream].append(array)
  result: Dict[str, Any] = {}
  for stream, arrays in stacked.items():
    array = np.stack(arrays)
    del arrays[:]
    result[stream] = loop_to_min_frames(array, min_frames)[0][np.newaxis]
  result['timestamps'], looped = loop_to_min_frames(
      np.array(clip.times, np.float64), min_frames
  )
  result['source_times'], _ = loop_to_min_frames(
      np.array(clip.source_times, np.float64), min_frames
  )
  result.update(
      num_frames=clip.num_frames,
      looped=looped,
      frame_size=clip.frame_size,
      crop_offset=clip.crop_offset,
      flipped=clip.flipped,
      info=info,
  )
  return result


_END = object()


def prefetch(items: Iterable[T], max_items: int) -> Iterator[T]:
  """Iterates `items` in a background thread, at most `max_items` ahead.

  Decoding, resizing and TV-L1 bookkeeping then overlap with TensorFlow,
  which releases the GIL while it runs. An exception raised by `items` is
  re-raised by the returned iterator. Closing the returned iterator (or
  leaving a for loop over it) stops the thread and closes `items`.

  Args:
    items: Any iterable; iterated in the background thread only.
    max_items: Queue bound, >= 1.

  Returns:
    An iterator over the same items, in order.
  """
  if not isinstance(max_items, int) or max_items < 1:
    raise ValueError(f'`max_items` must be a positive int; got {max_items!r}.')
  slots: queue.Queue = queue.Queue(max_items)
  stop = threading.Event()

  def put(entry) -> bool:
    while not stop.is_set():
      try:
        slots.put(entry, timeout=0.1)
        return True
      except queue.Full:
        pass
    return False

  def produce() -> None:
    iterator = iter(items)
    try:
      for item in iterator:
        if not put((True, item)):
          return
      put((True, _END))
    except BaseException as e:  # pylint: disable=broad-except
      put((False, e))
    finally:
      close = getattr(iterator, 'close', None)
      if close is not None:
        close()

  def consume() -> Iterator[T]:
    thread = threading.Thread(
        target=produce, name='recipe-prefetch', daemon=True
    )
    thread.start()
    interrupted = False
    try:
      while True:
        ok, item = slots.get()
        if not ok:
          raise item
        if item is _END:
          return
        yield item
    except KeyboardInterrupt:
      # Ctrl-C must not wait for the item in the making (a TV-L1 chunk can
      # take many seconds); the thread is a daemon and stops on its own.
      interrupted = True
      raise
    finally:
      stop.set()
      if not interrupted:
        thread.join()

  return consume()


# ---------------------------------------------------------------------------
# GIFs.


def gif_frames(array: np.ndarray) -> np.ndarray:
  """Model input -> uint8 [T, H, W, 3] GIF frames, as the release drew them.

  RGB (C == 3) shows (x + 1) / 2; flow (C == 2) shows x + 0.5 with a zero
  third channel (red = x, green = y); both are clipped to [0, 1].

  Args:
    array: float (1, T, H, W, C) or (T, H, W, C) in [-1, 1], C = 3 or 2.

  Returns:
    uint8 [T, H, W, 3].
  """
  x = np.asarray(array, np.float32)
  if x.ndim == 5:
    if x.shape[0] != 1:
      raise ValueError(
          f'`array` must hold one clip, (1, T, H, W, C) or (T, H, W, C); got '
          f'shape {x.shape}.'
      )
    x = x[0]
  if x.ndim != 4 or x.shape[-1] not in (2, 3):
    raise ValueError(
        '`array` must be (1, T, H, W, C) or (T, H, W, C) with C = 3 (RGB) or '
        f'2 (flow); got shape {np.shape(array)}.'
    )
  if x.shape[-1] == 3:
    image = (x + 1.0) / 2.0
  else:
    image = np.concatenate([x, np.zeros_like(x[..., :1])], axis=-1) + 0.5
  return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def write_gif(
    path: video.PathLike, array: np.ndarray, fps: float = video.FPS
) -> None:
  """Writes model input as an endlessly looping GIF, atomically.

  Pillow merges identical consecutive frames into one (adding up their
  durations), so a clip whose last flow frame repeats the one before it gives
  a GIF with one frame fewer but the same running time.

  Args:
    path: Output file.
    array: float (1, T, H, W, C) or (T, H, W, C), see `gif_frames`.
    fps: Playback rate.
  """
  images = [Image.fromarray(f) for f in gif_frames(array)]
  duration = int(round(1000.0 / video.check_fps(fps)))
  fileio.write_with(
      path,
      lambda f: images[0].save(
          f,
          format='GIF',
          save_all=True,
          append_images=images[1:],
          duration=duration,
          loop=0,
      ),
  )
