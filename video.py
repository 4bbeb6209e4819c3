"""Video files -> I3D inputs, by the recipe of the kinetics-i3d release.

The release's README describes the preprocessing of its sample:

  * sample the video at 25 frames per second;
  * resize so that the shorter side is 256 pixels (bilinear), keeping the
    aspect ratio;
  * RGB: scale to [-1, 1];
  * flow: convert to grayscale, run TV-L1 optical flow, clip to [-20, 20]
    pixels, divide by 20 to get [-1, 1], keep the two channels (x, y);
  * take a 224x224 centre crop at test time (a random crop, and optionally a
    left-right flip, when training).

The sample arrays are float32 with shapes (1, T, 224, 224, 3) for RGB and
(1, T, 224, 224, 2) for flow; `preprocess` returns exactly that layout.

Conventions (each one is tested in video_test.py):

  * Times are seconds from the start of the video stream, so the first frame
    of an ordinary file is at 0. Output frame k stands for the time
    t_k = start + k / fps, for every t_k before the end of the clip, and
    shows the *latest source frame whose timestamp is <= t_k*: the frame on
    screen at t_k. Source timestamps are the frames' own (pts * time_base),
    so variable-frame-rate files resample correctly. Times before the first
    frame show the first frame; the video ends at the last frame's timestamp
    plus that frame's duration.
  * Frames are RGB uint8, never BGR. A display-rotation tag (phone videos) is
    applied, so frames come out upright.
  * Resizing: the shorter side becomes `short_side`; the longer side is
    long * short_side / short, rounded half up. Every frame of a video gets
    the size computed from its first output frame.
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

Memory: `preprocess` and `load_frames` hold whole clips. A 10-minute video at
25 fps and 256x340 is about 3.9 GB of uint8 frames, so long videos should go
through the streaming forms: `iter_frames` / `iter_chunks` yield resampled
frames one at a time or in chunks, and `iter_flow` turns any iterable of
frames into flow with one frame of lookahead.

Usage:

  inputs = video.preprocess('v_CricketShot_g04_c01.avi')
  inputs['rgb'].shape   # (1, T, 224, 224, 3), float32 in [-1, 1]
  inputs['flow'].shape  # (1, T, 224, 224, 2), float32 in [-1, 1]
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import fractions
import itertools
import math
import multiprocessing
import numbers
import os
import uuid
from typing import (Any, BinaryIO, Callable, Dict, Iterable, Iterator, List,
                    Optional, Sequence, Tuple, Union)

import av
import cv2
import numpy as np
from PIL import Image
import tqdm

Fraction = fractions.Fraction
PathLike = Union[str, os.PathLike]
RngLike = Union[None, int, np.random.Generator]

# The published recipe.
FPS = 25.0
RESIZE_SHORT_SIDE = 256
CROP_SIZE = 224
FLOW_BOUND = 20.0  # TV-L1 flow is clipped to [-FLOW_BOUND, FLOW_BOUND] pixels.

# The fewest frames the I3D Logits head accepts: its [2,7,7] VALID pool needs
# ceil(T / 8) >= 2 (see i3d.min_input_size('Logits')). Not imported from
# i3d.py so that this module does not need TensorFlow.
MIN_FRAMES = 9

VALID_STREAMS = ('rgb', 'flow')
VALID_CROPS = ('center', 'random')

# `iter_frames` seeks (to the keyframe before `start`) only for starts at
# least this far into the video; nearer starts are cheaper to decode through.
_SEEK_MIN_S = 2.0

# Frame pairs per TV-L1 task sent to a worker process when streaming.
FLOW_CHUNK = 4


class VideoError(ValueError):
  """A video file is missing, unreadable, or does not cover the asked clip."""


@dataclasses.dataclass(frozen=True)
class VideoInfo:
  """What `probe` learns about a video file.

  Attributes:
    path: The file.
    width: Displayed width in pixels (after any rotation tag).
    height: Displayed height in pixels (after any rotation tag).
    fps: The container's average frame rate, an estimate (variable-frame-rate
      files have no single rate); None if unknown.
    duration: Seconds, from the stream or container header; None if unknown.
    num_frames: Frame count from the header; None if the header has none.
    codec: Decoder name, e.g. 'h264'.
    format: Container format name, e.g. 'mov,mp4,m4a,3gp,3g2,mj2'.
    rotation: Counter-clockwise display rotation in degrees (a multiple of 90)
      that decoding applies.
  """
  path: str
  width: int
  height: int
  fps: Optional[float]
  duration: Optional[float]
  num_frames: Optional[int]
  codec: str
  format: str
  rotation: int


@dataclasses.dataclass(frozen=True, eq=False)
class Frame:
  """One output frame of `iter_frames`.

  Attributes:
    image: uint8 [H, W, 3] RGB, resized, read-only (a source frame that is
      shown at several output times is one shared array).
    index: k, the output frame number from 0.
    time: t_k = start + k / fps, in seconds.
    source_time: Timestamp in seconds of the source frame shown.
  """
  image: np.ndarray
  index: int
  time: float
  source_time: float


# ---------------------------------------------------------------------------
# Opening and probing.


def _open(path: str) -> av.container.InputContainer:
  """Opens `path` with PyAV, or raises VideoError saying what is wrong."""
  if not os.path.exists(path):
    raise VideoError(f'Video file {path!r} does not exist; check the path.')
  if os.path.isdir(path):
    raise VideoError(
        f'Video path {path!r} is a directory; pass a video file instead.')
  if os.path.getsize(path) == 0:
    raise VideoError(
        f'Video file {path!r} is empty (0 bytes); re-download or re-encode '
        'it.')
  try:
    container = av.open(path, mode='r')
  except (av.FFmpegError, OSError) as e:
    raise VideoError(
        f'Cannot read {path!r} as a video ({_reason(e)}); expected a video '
        'file such as mp4, avi, webm or mkv. It may be corrupt, truncated or '
        'not a video.') from e
  if not container.streams.video:
    kinds = sorted({s.type for s in container.streams}) or ['none']
    container.close()
    raise VideoError(
        f'{path!r} has no video stream (its streams: {", ".join(kinds)}); '
        'pass a file with video.')
  return container


def _reason(error: BaseException) -> str:
  return getattr(error, 'strerror', None) or str(error) or type(error).__name__


def _stream_duration(container, stream) -> Optional[Fraction]:
  """Duration in seconds from the headers, or None."""
  if stream.duration and stream.time_base:
    return stream.duration * stream.time_base
  if container.duration:
    return Fraction(container.duration, av.time_base)
  return None


def _rotation_steps(frame: av.VideoFrame) -> int:
  """Counter-clockwise quarter turns that make `frame` upright."""
  try:
    degrees = frame.rotation
  except (AttributeError, ValueError):
    return 0
  if degrees is None or not math.isfinite(degrees):
    return 0
  return int(round(degrees / 90.0)) % 4


def probe(path: PathLike) -> VideoInfo:
  """Reads a video's headers and decodes its first frame.

  Args:
    path: A video file.

  Returns:
    A VideoInfo.

  Raises:
    VideoError: if the file is missing, empty, not a video, or no frame can
      be decoded.
  """
  path = os.fspath(path)
  container = _open(path)
  with container:
    stream = container.streams.video[0]
    duration = _stream_duration(container, stream)
    rate = stream.average_rate or stream.guessed_rate
    first = next(_decode(container, stream, path), None)
    if first is None:
      raise VideoError(
          f'{path!r} has a video stream but no frame could be decoded; the '
          'file is probably truncated or corrupt. Re-download or re-encode '
          'it.')
    steps = _rotation_steps(first)
    width, height = first.width, first.height
    if steps % 2:
      width, height = height, width
    return VideoInfo(
        path=path,
        width=width,
        height=height,
        fps=float(rate) if rate else None,
        duration=float(duration) if duration is not None else None,
        num_frames=stream.frames or None,
        codec=stream.codec_context.name,
        format=container.format.name,
        rotation=90 * steps)


def _decode(container, stream, path: str) -> Iterator[av.VideoFrame]:
  """Decodes `stream`, turning FFmpeg errors into VideoError."""
  count = 0
  try:
    for frame in container.decode(stream):
      count += 1
      yield frame
  except av.FFmpegError as e:
    raise VideoError(
        f'Decoding {path!r} failed after {count} frame(s) ({_reason(e)}); the '
        'file is probably truncated or corrupt. Re-download or re-encode '
        'it.') from e


# ---------------------------------------------------------------------------
# Decoding and resampling to a fixed frame rate.


def resized_shape(height: int, width: int,
                  short_side: Optional[int] = RESIZE_SHORT_SIDE
                 ) -> Tuple[int, int]:
  """(height, width) after resizing the shorter side to `short_side`.

  The longer side is long * short_side / short, rounded half up. Square
  frames become short_side x short_side.

  Args:
    height: Source height in pixels.
    width: Source width in pixels.
    short_side: Target length of the shorter side; None keeps the size.

  Returns:
    (height, width).
  """
  if short_side is None:
    return height, width
  if height <= width:
    return short_side, max(1, (2 * width * short_side + height) // (2 * height))
  return max(1, (2 * height * short_side + width) // (2 * width)), short_side


def _to_rgb(frame: av.VideoFrame,
            size: Optional[Tuple[int, int]]) -> np.ndarray:
  """Decoded frame -> upright uint8 RGB, resized to `size` if given."""
  image = frame.to_ndarray(format='rgb24')
  steps = _rotation_steps(frame)
  if steps:
    image = np.ascontiguousarray(np.rot90(image, steps))
  if size is not None and image.shape[:2] != size:
    image = cv2.resize(image, (size[1], size[0]),
                       interpolation=cv2.INTER_LINEAR)
  return image


def _as_time(name: str, value, path: str) -> Optional[Fraction]:
  if value is None:
    return None
  if (not isinstance(value, numbers.Real) or isinstance(value, bool) or
      not math.isfinite(value)):
    raise VideoError(
        f'`{name}` for {path!r} must be a finite number of seconds or None; '
        f'got {value!r}.')
  if value < 0:
    raise VideoError(
        f'`{name}`={value} for {path!r} is negative; times are seconds from '
        'the start of the video, so pass a value >= 0.')
  return Fraction(value).limit_denominator(1_000_000)


def _check_fps(fps) -> Fraction:
  if (not isinstance(fps, numbers.Real) or isinstance(fps, bool) or
      not math.isfinite(fps) or fps <= 0):
    raise ValueError(
        f'`fps` must be a positive number of frames per second (the recipe '
        f'uses {FPS}); got {fps!r}.')
  return Fraction(fps).limit_denominator(1_000_000)


def _check_short_side(short_side) -> None:
  if short_side is not None and (not isinstance(short_side, numbers.Integral)
                                 or short_side < 1):
    raise ValueError(
        '`short_side` must be a positive integer number of pixels or None '
        f'(the recipe uses {RESIZE_SHORT_SIDE}); got {short_side!r}.')


def _check_clip(path: str, start, end, period: Fraction, container, stream
               ) -> Tuple[Fraction, Optional[Fraction]]:
  """Validates start/end against each other and the header duration."""
  t_start = _as_time('start', start, path) or Fraction(0)
  t_end = _as_time('end', end, path)
  if t_end is not None and t_end <= t_start:
    raise VideoError(
        f'`end`={end} must be greater than `start`={start or 0} for {path!r}; '
        'pass an end time after the start time.')
  duration = _stream_duration(container, stream)
  if duration is not None and container.duration:
    # Be lenient: the stream and container headers can disagree a little.
    duration = max(duration, Fraction(container.duration, av.time_base))
  if duration is not None:
    _check_within(path, t_start, t_end, duration, period, 'which lasts')
  return t_start, t_end


def _check_within(path: str, t_start: Fraction, t_end: Optional[Fraction],
                  video_end: Fraction, period: Fraction, what: str) -> None:
  """Raises VideoError when a clip starts or ends after the video does.

  An end may overshoot the video by less than one output frame period.
  `what` words the end time: 'which lasts' (from the headers) or 'whose
  frames end at' (from the decoded frames).
  """
  if t_start >= video_end:
    raise VideoError(
        f'`start`={float(t_start):g} is at or past the end of {path!r}, {what} '
        f'{float(video_end):.3f} s; pass a start below that.')
  if t_end is not None and t_end >= video_end + period:
    raise VideoError(
        f'`end`={float(t_end):g} is past the end of {path!r}, {what} '
        f'{float(video_end):.3f} s; pass an end of at most that, or None for '
        'the end of the video.')


def _open_stream(path: str):
  container = _open(path)
  stream = container.streams.video[0]
  stream.thread_type = 'AUTO'
  return container, stream


def _timed(container, stream, path: str,
           origin: Optional[Fraction]) -> Iterator[Tuple[Fraction, Any]]:
  """Yields (seconds since `origin`, frame); None origin = first frame."""
  period = Fraction(1) / (stream.average_rate or stream.guessed_rate or 25)
  previous = None
  for frame in _decode(container, stream, path):
    if frame.pts is None:
      stamp = Fraction(0) if previous is None else previous + period
      if origin is None:
        origin = Fraction(0)
    else:
      absolute = frame.pts * (frame.time_base or stream.time_base)
      if origin is None:
        origin = absolute
      stamp = absolute - origin
    previous = stamp
    yield stamp, frame


def _frame_duration(frame, stream) -> Optional[Fraction]:
  base = frame.time_base or stream.time_base
  duration = getattr(frame, 'duration', None)
  if duration and base:
    return duration * base
  return None


def iter_frames(path: PathLike,
                start: Optional[float] = None,
                end: Optional[float] = None,
                fps: float = FPS,
                short_side: Optional[int] = RESIZE_SHORT_SIDE
               ) -> Iterator[Frame]:
  """Streams a video resampled to `fps` and resized, one frame at a time.

  Output frame k stands for t_k = start + k / fps (start defaults to 0) and
  shows the latest source frame whose timestamp (pts * time_base, in seconds
  from the start of the stream) is <= t_k, i.e. the frame on screen at t_k.
  Frames are produced for every t_k < end, where end defaults to the end of
  the video: the last frame's timestamp plus its duration. Because the
  frames' own timestamps are used, variable-frame-rate files work; source
  frames shown at no t_k are decoded but never converted or resized.

  The file is opened and `start`/`end` are checked against its header before
  this returns; decoding happens as the iterator is consumed.

  Args:
    path: A video file (anything FFmpeg reads: mp4, avi, webm, mkv, ...).
    start: Clip start in seconds, or None for the start of the video.
    end: Clip end in seconds (exclusive), or None for the end of the video.
      It may pass the end of the video by less than one output frame
      (1/fps), to absorb rounding in container durations; the last frame is
      then held.
    fps: Output frame rate.
    short_side: Resize so the shorter side has this many pixels (bilinear),
      keeping the aspect ratio; None keeps the source size.

  Yields:
    Frame objects, in time order.

  Raises:
    VideoError: if the file is missing, empty, not a video or corrupt, or
      `start`/`end` are negative, out of order or outside the video. A
      problem found only while decoding (a corrupt frame, or `end` past an
      end that the header did not tell) is raised during iteration.
    ValueError: for a bad `fps` or `short_side`.
  """
  path = os.fspath(path)
  period = 1 / _check_fps(fps)
  _check_short_side(short_side)
  container, stream = _open_stream(path)
  with container:
    t_start, t_end = _check_clip(path, start, end, period, container, stream)
  return _iter_frames(path, t_start, t_end, period, short_side)


def _iter_frames(path: str, t_start: Fraction, t_end: Optional[Fraction],
                 period: Fraction,
                 short_side: Optional[int]) -> Iterator[Frame]:
  container, stream = _open_stream(path)
  try:
    timed = None
    origin = None
    if stream.start_time is not None and stream.time_base:
      origin = stream.start_time * stream.time_base
    if origin is not None and t_start >= _SEEK_MIN_S:
      # Jump to the keyframe before `start`. If the demuxer lands after it
      # (some formats seek inexactly), decode from the beginning instead.
      try:
        container.seek(math.floor((origin + t_start) / stream.time_base),
                       stream=stream, backward=True, any_frame=False)
        timed = _timed(container, stream, path, origin)
        first = next(timed, None)
        if first is not None and first[0] <= t_start:
          timed = itertools.chain([first], timed)
        else:
          timed = None
      except (av.FFmpegError, VideoError):
        timed = None  # Decoding from the start reports any real problem.
      if timed is None:
        container.close()
        container, stream = _open_stream(path)
    if timed is None:
      timed = _timed(container, stream, path, origin)
    yield from _resample(path, stream, timed, t_start, t_end, period,
                         short_side)
  finally:
    container.close()


def _resample(path: str, stream, timed: Iterator[Tuple[Fraction, Any]],
              t_start: Fraction, t_end: Optional[Fraction], period: Fraction,
              short_side: Optional[int]) -> Iterator[Frame]:
  """The frame-selection rule of `iter_frames`; see its docstring."""
  k = 0
  t_k = t_start
  stamp = frame = image = None
  size = None
  last_gap = None

  def emit() -> Frame:
    nonlocal image, size
    if image is None:
      if size is None:
        steps = _rotation_steps(frame)
        height, width = frame.height, frame.width
        if steps % 2:
          height, width = width, height
        size = resized_shape(height, width, short_side)
      image = _to_rgb(frame, size)
      image.flags.writeable = False
    return Frame(image=image, index=k, time=float(t_k),
                 source_time=float(stamp))

  for next_stamp, next_frame in timed:
    if frame is not None:
      # `frame` is on screen until `next_stamp`.
      while t_k < next_stamp and (t_end is None or t_k < t_end):
        yield emit()
        k += 1
        t_k = t_start + k * period
      if t_end is not None and t_k >= t_end:
        return
      if next_stamp > stamp:
        last_gap = next_stamp - stamp
    stamp, frame, image = next_stamp, next_frame, None

  if frame is None:
    raise VideoError(
        f'{path!r} has a video stream but no frame could be decoded; the '
        'file is probably truncated or corrupt. Re-download or re-encode it.')
  video_end = stamp + (_frame_duration(frame, stream) or last_gap or period)
  _check_within(path, t_start, t_end, video_end, period,
                'whose frames end at')
  stop = video_end if t_end is None else t_end
  while t_k < stop:
    yield emit()
    k += 1
    t_k = t_start + k * period


def iter_chunks(path: PathLike,
                chunk_frames: int,
                start: Optional[float] = None,
                end: Optional[float] = None,
                fps: float = FPS,
                short_side: Optional[int] = RESIZE_SHORT_SIDE
               ) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
  """`iter_frames` in chunks of up to `chunk_frames` frames.

  Args:
    path: A video file.
    chunk_frames: Frames per chunk (the last chunk may be shorter).
    start: As for `iter_frames`.
    end: As for `iter_frames`.
    fps: As for `iter_frames`.
    short_side: As for `iter_frames`.

  Yields:
    (frames, times): uint8 [n, H, W, 3] RGB and float64 [n] output times.

  Raises:
    VideoError, ValueError: as `iter_frames`, and ValueError for a
      `chunk_frames` below 1.
  """
  if not isinstance(chunk_frames, numbers.Integral) or chunk_frames < 1:
    raise ValueError(
        f'`chunk_frames` must be a positive integer; got {chunk_frames!r}.')
  frames = iter_frames(path, start=start, end=end, fps=fps,
                       short_side=short_side)
  while True:
    chunk = list(itertools.islice(frames, chunk_frames))
    if not chunk:
      return
    yield (np.stack([f.image for f in chunk]),
           np.array([f.time for f in chunk], np.float64))


def load_frames(path: PathLike,
                start: Optional[float] = None,
                end: Optional[float] = None,
                fps: float = FPS,
                short_side: Optional[int] = RESIZE_SHORT_SIDE
               ) -> Tuple[np.ndarray, np.ndarray]:
  """A whole clip as one array; see `iter_frames` for the rules.

  Args:
    path: A video file.
    start: Clip start in seconds, or None.
    end: Clip end in seconds, or None.
    fps: Output frame rate.
    short_side: Shorter side after resizing, or None to keep the size.

  Returns:
    (frames, times): uint8 [T, H, W, 3] RGB and float64 [T] output times.

  Raises:
    VideoError, ValueError: as `iter_frames`.
  """
  frames = list(iter_frames(path, start=start, end=end, fps=fps,
                            short_side=short_side))
  return (np.stack([f.image for f in frames]),
          np.array([f.time for f in frames], np.float64))


# ---------------------------------------------------------------------------
# Cropping, flipping, scaling, looping.


def _spatial_size(x: np.ndarray, name: str) -> Tuple[int, int]:
  if x.ndim < 3:
    raise ValueError(
        f'`{name}` must have shape [..., H, W, C]; got shape {x.shape}.')
  return x.shape[-3], x.shape[-2]


def _check_crop_size(size, height: int, width: int) -> None:
  if not isinstance(size, numbers.Integral) or size < 1:
    raise ValueError(f'`size` must be a positive integer; got {size!r}.')
  if size > height or size > width:
    raise ValueError(
        f'Crop `size`={size} does not fit frames of {height}x{width} (HxW); '
        f'resize to a shorter side of at least {size} first.')


def center_crop_offsets(height: int, width: int,
                        size: int = CROP_SIZE) -> Tuple[int, int]:
  """(top, left) of the centre crop: floor((height - size) / 2), etc.

  An odd margin leaves its extra pixel on the bottom or the right.
  """
  _check_crop_size(size, height, width)
  return (height - size) // 2, (width - size) // 2


def _as_rng(rng: RngLike) -> np.random.Generator:
  if isinstance(rng, np.random.Generator):
    return rng
  if rng is None or (isinstance(rng, numbers.Integral) and
                     not isinstance(rng, bool)):
    return np.random.default_rng(rng)
  raise ValueError(
      '`rng` must be a numpy.random.Generator, an integer seed or None; got '
      f'{type(rng).__name__} {rng!r}.')


def random_crop_offsets(height: int, width: int, size: int = CROP_SIZE,
                        rng: RngLike = None) -> Tuple[int, int]:
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


def crop_at(x: np.ndarray, top: int, left: int,
            size: int = CROP_SIZE) -> np.ndarray:
  """The size x size window at (top, left) of every frame of [..., H, W, C]."""
  height, width = _spatial_size(x, 'x')
  _check_crop_size(size, height, width)
  if not (0 <= top <= height - size and 0 <= left <= width - size):
    raise ValueError(
        f'Crop at (top={top}, left={left}) of size {size} leaves frames of '
        f'{height}x{width}; valid tops are 0..{height - size} and lefts '
        f'0..{width - size}.')
  return x[..., top:top + size, left:left + size, :]


def center_crop(frames: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
  """Centre crop of [..., H, W, C] frames; see `center_crop_offsets`."""
  height, width = _spatial_size(frames, 'frames')
  top, left = center_crop_offsets(height, width, size)
  return crop_at(frames, top, left, size)


def random_crop(frames: np.ndarray, size: int = CROP_SIZE,
                rng: RngLike = None) -> np.ndarray:
  """One random crop, the same for every frame of [..., H, W, C].

  To crop RGB and flow alike, draw once with `random_crop_offsets` and call
  `crop_at` on each.

  Args:
    frames: [..., H, W, C].
    size: Crop side.
    rng: A numpy Generator, an integer seed, or None for fresh entropy.

  Returns:
    [..., size, size, C], a view of `frames`.
  """
  height, width = _spatial_size(frames, 'frames')
  top, left = random_crop_offsets(height, width, size, rng)
  return crop_at(frames, top, left, size)


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
        f'got shape {x.shape}.')
  flipped = np.ascontiguousarray(x[..., ::-1, :])
  if channels == 2:
    if np.issubdtype(flipped.dtype, np.unsignedinteger):
      raise ValueError(
          f'Flow `x` must be signed or float to negate its x channel; got '
          f'dtype {x.dtype}.')
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
        f'{frames.dtype} and shape {frames.shape}.')
  return frames.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def flow_to_input(flow: np.ndarray, bound: float = FLOW_BOUND) -> np.ndarray:
  """Flow in pixels [..., 2] -> float32 in [-1, 1]: clip(flow, ±bound) / bound.

  Adds no batch dimension.
  """
  flow = np.asarray(flow)
  if flow.ndim < 1 or flow.shape[-1] != 2:
    raise ValueError(
        f'`flow` must have 2 channels (x, y) last; got shape {flow.shape}.')
  if not bound > 0:
    raise ValueError(f'`bound` must be positive (the recipe uses '
                     f'{FLOW_BOUND}); got {bound!r}.')
  bound = np.float32(bound)
  return np.clip(flow.astype(np.float32), -bound, bound) / bound


def loop_to_min_frames(x: np.ndarray, min_frames: int,
                       axis: int = 0) -> Tuple[np.ndarray, bool]:
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
        f'{MIN_FRAMES}); got {min_frames!r}.')
  x = np.asarray(x)
  count = x.shape[axis]
  if count == 0:
    raise ValueError(f'Cannot loop an empty clip (shape {x.shape}, axis '
                     f'{axis}); it has no frame to repeat.')
  if count >= min_frames:
    return x, False
  return np.take(x, np.arange(min_frames) % count, axis=axis), True


# ---------------------------------------------------------------------------
# TV-L1 optical flow.

_tvl1 = None


def _init_flow_worker() -> None:
  # One OpenCV thread per worker: the parallelism is across processes.
  cv2.setNumThreads(1)


def _flow_chunk(gray: np.ndarray) -> np.ndarray:
  """TV-L1 flow between consecutive frames of uint8 [n+1, H, W] -> [n,H,W,2]."""
  global _tvl1
  if _tvl1 is None:
    _tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
  out = np.empty((len(gray) - 1,) + gray.shape[1:] + (2,), np.float32)
  for i in range(len(gray) - 1):
    out[i] = _tvl1.calc(gray[i], gray[i + 1], None)
  return out


def _to_gray(frame: np.ndarray) -> np.ndarray:
  frame = np.asarray(frame)
  if frame.dtype != np.uint8:
    raise ValueError(
        f'Flow input frames must be uint8 (RGB [H, W, 3] or gray [H, W]); got '
        f'dtype {frame.dtype}.')
  if frame.ndim == 3 and frame.shape[-1] == 3:
    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
  if frame.ndim == 2:
    return np.ascontiguousarray(frame)
  raise ValueError(
      'Flow input frames must be RGB [H, W, 3] or gray [H, W]; got shape '
      f'{frame.shape}.')


def _resolve_workers(workers: Optional[int]) -> int:
  if workers is None:
    return os.cpu_count() or 1
  if not isinstance(workers, numbers.Integral) or workers < 1:
    raise ValueError(
        f'`workers` must be a positive integer or None (= os.cpu_count(), '
        f'{os.cpu_count()} here); got {workers!r}.')
  return int(workers)


def _executor(workers: int) -> concurrent.futures.ProcessPoolExecutor:
  # forkserver/spawn rather than fork: the caller may hold threads (TensorFlow,
  # FFmpeg) that a forked child would inherit in an undefined state. A worker
  # that dies (e.g. out of memory) raises BrokenProcessPool instead of hanging.
  methods = multiprocessing.get_all_start_methods()
  context = multiprocessing.get_context(
      'forkserver' if 'forkserver' in methods else 'spawn')
  return concurrent.futures.ProcessPoolExecutor(
      workers, mp_context=context, initializer=_init_flow_worker)


def iter_flow(frames: Iterable[np.ndarray],
              workers: Optional[int] = None,
              chunk_size: int = FLOW_CHUNK) -> Iterator[np.ndarray]:
  """Streams TV-L1 optical flow, one flow frame per input frame.

  flow[t] is the flow from frame t to frame t + 1, in pixels, unclipped.
  With T input frames it yields T flow frames: the last one repeats flow[T-2]
  (one input frame yields a zero flow). Channel 0 is x (positive = motion to
  the right), channel 1 is y (positive = motion downwards). Frames are turned
  to grayscale (RGB order) and fed to OpenCV's DualTVL1 with its default
  settings.

  Pairs are sent in chunks of `chunk_size` to `workers` processes, each with
  one OpenCV thread; at most 2 * workers chunks are in flight, so memory stays
  bounded on long streams (about 2 * workers * chunk_size frames of
  lookahead). The processes start only once a full chunk exists.

  Args:
    frames: uint8 RGB [H, W, 3] or gray [H, W] frames, all the same size;
      any iterable, e.g. `(f.image for f in iter_frames(path))`.
    workers: Processes to use; None = os.cpu_count(); 1 computes in this
      process.
    chunk_size: Frame pairs per task.

  Yields:
    float32 [H, W, 2] flow frames, in order.

  Raises:
    ValueError: for frames of other dtypes, shapes or changing sizes, or a
      bad `workers`/`chunk_size`.
  """
  workers = _resolve_workers(workers)
  if not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
    raise ValueError(
        f'`chunk_size` must be a positive integer; got {chunk_size!r}.')
  return _iter_flow(frames, workers, int(chunk_size))


def _iter_flow(frames: Iterable[np.ndarray], workers: int,
               chunk_size: int) -> Iterator[np.ndarray]:
  grays = map(_to_gray, frames)
  first = next(grays, None)
  if first is None:
    return
  # Results in order: arrays computed here, or futures from the workers.
  pending = collections.deque()
  max_pending = 0 if workers == 1 else 2 * workers - 1
  executor = None
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
              f'{first.shape} and a later one {gray.shape}.')
        chunk.append(gray)
        if len(chunk) <= chunk_size:
          continue
      if len(chunk) > 1:
        batch = np.stack(chunk)
        chunk = [chunk[-1]]
        if workers == 1 or (final and executor is None):
          pending.append(_flow_chunk(batch))
        else:
          if executor is None:
            executor = _executor(workers)
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
      executor.shutdown(wait=True, cancel_futures=not finished)


def compute_flow(frames: np.ndarray,
                 workers: Optional[int] = None) -> np.ndarray:
  """TV-L1 flow of a whole clip; see `iter_flow` for the conventions.

  Args:
    frames: uint8 [T, H, W, 3] RGB or [T, H, W] gray, T >= 1.
    workers: Processes to use; None = os.cpu_count().

  Returns:
    float32 [T, H, W, 2] flow in pixels, unclipped; flow[t] is frame t -> t+1
    and flow[T-1] repeats flow[T-2] (zero if T == 1).

  Raises:
    ValueError: for a bad dtype or shape, or no frames.
  """
  frames = np.asarray(frames)
  if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or (
      frames.ndim == 4 and frames.shape[-1] != 3) or not len(frames):
    raise ValueError(
        '`frames` must be uint8 [T, H, W, 3] RGB or [T, H, W] gray with T >= '
        f'1; got dtype {frames.dtype} and shape {frames.shape}.')
  workers = _resolve_workers(workers)
  pairs = len(frames) - 1
  # Split the pairs evenly over the workers, in chunks of at most 8.
  chunk = max(1, min(8, math.ceil(pairs / workers)))
  out = np.empty(frames.shape[:3] + (2,), np.float32)
  for t, flow in enumerate(_iter_flow(iter(frames), workers, chunk)):
    out[t] = flow
  return out


# ---------------------------------------------------------------------------
# The whole recipe.


def _expected_frames(info: VideoInfo, start: Optional[float],
                     end: Optional[float], fps: float) -> Optional[int]:
  """About how many frames a clip gives at `fps`, for progress bars."""
  stop = end if end is not None else info.duration
  if stop is None:
    return None
  return max(0, math.ceil((stop - (start or 0.0)) * fps))


def preprocess(path: PathLike,
               streams: Sequence[str] = VALID_STREAMS,
               start: Optional[float] = None,
               end: Optional[float] = None,
               min_frames: int = MIN_FRAMES,
               crop: str = 'center',
               rng: RngLike = None,
               flip: bool = False,
               workers: Optional[int] = None,
               fps: float = FPS,
               progress: bool = False) -> Dict[str, Any]:
  """A video file -> I3D inputs in the layout of the release's sample arrays.

  Decodes and resamples with `iter_frames` (25 fps, shorter side 256), crops
  224x224, scales RGB and flow to [-1, 1] (flow: TV-L1 on the resized frames,
  clipped to ±20 pixels), and loops clips shorter than `min_frames`. Frames
  stream through, so memory is about the size of the outputs.

  Args:
    path: A video file.
    streams: Which of 'rgb' and 'flow' to compute.
    start: Clip start in seconds, or None.
    end: Clip end in seconds, or None.
    min_frames: Loop shorter clips up to this many frames (9 for the I3D
      Logits head; 1 never loops).
    crop: 'center' (test time) or 'random' (training; one crop per clip,
      the same for RGB and flow).
    rng: Generator, seed or None, for crop='random' and `flip`. Offsets are
      drawn first (top, then left), then the flip.
    flip: If True, mirror the clip left to right with probability 0.5 (flow
      x negated).
    workers: Processes for TV-L1; None = os.cpu_count().
    progress: Show a tqdm bar over the frames on stderr.
    fps: Output frame rate.

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
    VideoError: for a bad file or clip (see `iter_frames`).
    ValueError: for a bad argument.
  """
  path = os.fspath(path)
  streams = (streams,) if isinstance(streams, str) else tuple(streams)
  if not streams or any(s not in VALID_STREAMS for s in streams):
    raise ValueError(
        f'`streams` must be a non-empty subset of {VALID_STREAMS}; got '
        f'{streams!r}.')
  if crop not in VALID_CROPS:
    raise ValueError(f'`crop` must be one of {VALID_CROPS}; got {crop!r}.')
  if not isinstance(min_frames, numbers.Integral) or min_frames < 1:
    raise ValueError(
        f'`min_frames` must be a positive integer (I3D Logits needs '
        f'{MIN_FRAMES}); got {min_frames!r}.')
  workers = _resolve_workers(workers)
  generator = _as_rng(rng) if (crop == 'random' or flip) else None
  info = probe(path)
  frames = iter_frames(path, start=start, end=end, fps=fps)
  if progress:
    frames = tqdm.tqdm(frames, total=_expected_frames(info, start, end, fps),
                       unit='frame', desc=os.path.basename(path),
                       dynamic_ncols=True)

  times: List[float] = []
  source_times: List[float] = []
  rgb_crops: List[np.ndarray] = []
  layout: Dict[str, Any] = {}

  def images() -> Iterator[np.ndarray]:
    for frame in frames:
      if not layout:
        height, width = frame.image.shape[:2]
        if crop == 'center':
          offset = center_crop_offsets(height, width, CROP_SIZE)
        else:
          offset = random_crop_offsets(height, width, CROP_SIZE, generator)
        layout['frame_size'] = (height, width)
        layout['crop_offset'] = offset
        layout['flipped'] = bool(flip and generator.random() < 0.5)
      times.append(frame.time)
      source_times.append(frame.source_time)
      if 'rgb' in streams:
        rgb_crops.append(crop_at(frame.image, *layout['crop_offset']))
      yield frame.image

  flows: List[np.ndarray] = []
  if 'flow' in streams:
    for flow in iter_flow(images(), workers=workers):
      flows.append(flow_to_input(crop_at(flow, *layout['crop_offset'])))
  else:
    for _ in images():
      pass

  count = len(times)
  looped = count < min_frames
  result: Dict[str, Any] = {}
  if rgb_crops:
    rgb = np.stack(rgb_crops)
    del rgb_crops[:]
    if layout['flipped']:
      rgb = flip_left_right(rgb)
    rgb, _ = loop_to_min_frames(rgb_to_input(rgb), min_frames)
    result['rgb'] = rgb[np.newaxis]
  if flows:
    flow = np.stack(flows)
    del flows[:]
    if layout['flipped']:
      flow = flip_left_right(flow)
    flow, _ = loop_to_min_frames(flow, min_frames)
    result['flow'] = flow[np.newaxis]
  result['timestamps'], _ = loop_to_min_frames(
      np.array(times, np.float64), min_frames)
  result['source_times'], _ = loop_to_min_frames(
      np.array(source_times, np.float64), min_frames)
  result.update(
      num_frames=count,
      looped=looped,
      frame_size=layout['frame_size'],
      crop_offset=layout['crop_offset'],
      flipped=layout['flipped'],
      info=info)
  return result


# ---------------------------------------------------------------------------
# Saving.


def _atomic_write(path: PathLike, write: Callable[[BinaryIO], None]) -> None:
  """Writes through `write` into a temporary file, then renames it to `path`.

  Readers never see a partial file; on failure the temporary is removed.
  """
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  temp = os.path.join(
      directory,
      f'.{os.path.basename(path)}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp')
  try:
    with open(temp, 'xb') as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(temp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.unlink(temp)
    raise


def save_npy(path: PathLike, array: np.ndarray) -> None:
  """np.save to exactly `path`, atomically (temporary file + os.replace)."""
  array = np.asarray(array)
  _atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))


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
          f'shape {x.shape}.')
    x = x[0]
  if x.ndim != 4 or x.shape[-1] not in (2, 3):
    raise ValueError(
        '`array` must be (1, T, H, W, C) or (T, H, W, C) with C = 3 (RGB) or '
        f'2 (flow); got shape {np.shape(array)}.')
  if x.shape[-1] == 3:
    image = (x + 1.0) / 2.0
  else:
    image = np.concatenate([x, np.zeros_like(x[..., :1])], axis=-1) + 0.5
  return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def write_gif(path: PathLike, array: np.ndarray, fps: float = FPS) -> None:
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
  duration = int(round(1000.0 / _check_fps(fps)))
  _atomic_write(
      path, lambda f: images[0].save(
          f, format='GIF', save_all=True, append_images=images[1:],
          duration=duration, loop=0))
