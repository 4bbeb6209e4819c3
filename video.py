"""Video files -> 25 fps frames, the first step of the release's recipe.

The release sampled its videos at 25 frames per second and resized them so
that the shorter side is 256 pixels (bilinear), keeping the aspect ratio.
This module does exactly that, for any file FFmpeg reads; recipe.py turns
the frames into model input (crops, RGB scaling, TV-L1 flow, looping).

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

Memory: `load_frames` holds a whole clip. A 10-minute video at 25 fps and
256x340 is about 3.9 GB of uint8 frames, so long videos should go through
the streaming forms: `iter_frames` / `iter_chunks` yield resampled frames one
at a time or in chunks. `count_frames` counts a clip's frames from their
timestamps without converting any.

Usage:

  frames, times = video.load_frames('v_CricketShot_g04_c01.avi')
  frames.shape   # (T, 256, 340, 3) uint8 RGB
  for frame in video.iter_frames('long.mp4', start=3.0, end=8.0):
    frame.image, frame.time
"""

from __future__ import annotations

import dataclasses
import fractions
import itertools
import math
import numbers
import os
from typing import (
    Any,
    Iterator,
    Optional,
    Tuple,
    Union,
)

import av
import cv2
import numpy as np

Fraction = fractions.Fraction
PathLike = Union[str, os.PathLike]

# The published recipe.
FPS = 25.0
RESIZE_SHORT_SIDE = 256


# `iter_frames` seeks (to the keyframe before `start`) only for starts at
# least this far into the video; nearer starts are cheaper to decode through.
_SEEK_MIN_S = 2.0


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
      shown at several output times is one shared array); None from
      `count_frames`, which converts nothing.
    index: k, the output frame number from 0.
    time: t_k = start + k / fps, in seconds.
    source_time: Timestamp in seconds of the source frame shown.
  """

  image: Optional[np.ndarray]
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
        f'Video path {path!r} is a directory; pass a video file instead.'
    )
  if os.path.getsize(path) == 0:
    raise VideoError(
        f'Video file {path!r} is empty (0 bytes); re-download or re-encode '
        'it.'
    )
  try:
    container = av.open(path, mode='r')
  except (av.FFmpegError, OSError) as e:
    raise VideoError(
        f'Cannot read {path!r} as a video ({_reason(e)}); expected a video '
        'file such as mp4, avi, webm or mkv. It may be corrupt, truncated or '
        'not a video.'
    ) from e
  if not container.streams.video:
    kinds = sorted({s.type for s in container.streams}) or ['none']
    container.close()
    raise VideoError(
        f'{path!r} has no video stream (its streams: {", ".join(kinds)}); '
        'pass a file with video.'
    )
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
          'it.'
      )
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
        rotation=90 * steps,
    )


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
        'it.'
    ) from e


# ---------------------------------------------------------------------------
# Decoding and resampling to a fixed frame rate.


def resized_shape(
    height: int, width: int, short_side: Optional[int] = RESIZE_SHORT_SIDE
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


def _to_rgb(
    frame: av.VideoFrame, size: Optional[Tuple[int, int]]
) -> np.ndarray:
  """Decoded frame -> upright uint8 RGB, resized to `size` if given."""
  image = frame.to_ndarray(format='rgb24')
  steps = _rotation_steps(frame)
  if steps:
    image = np.ascontiguousarray(np.rot90(image, steps))
  if size is not None and image.shape[:2] != size:
    image = cv2.resize(
        image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR
    )
  return image


def _as_time(name: str, value, path: str) -> Optional[Fraction]:
  if value is None:
    return None
  if (
      not isinstance(value, numbers.Real)
      or isinstance(value, bool)
      or not math.isfinite(value)
  ):
    raise VideoError(
        f'`{name}` for {path!r} must be a finite number of seconds or None; '
        f'got {value!r}.'
    )
  if value < 0:
    raise VideoError(
        f'`{name}`={value} for {path!r} is negative; times are seconds from '
        'the start of the video, so pass a value >= 0.'
    )
  return Fraction(value).limit_denominator(1_000_000)


def check_fps(fps) -> Fraction:
  if (
      not isinstance(fps, numbers.Real)
      or isinstance(fps, bool)
      or not math.isfinite(fps)
      or fps <= 0
  ):
    raise ValueError(
        f'`fps` must be a positive number of frames per second (the recipe '
        f'uses {FPS}); got {fps!r}.'
    )
  return Fraction(fps).limit_denominator(1_000_000)


def _check_short_side(short_side) -> None:
  if short_side is not None and (
      not isinstance(short_side, numbers.Integral) or short_side < 1
  ):
    raise ValueError(
        '`short_side` must be a positive integer number of pixels or None '
        f'(the recipe uses {RESIZE_SHORT_SIDE}); got {short_side!r}.'
    )


def _check_clip(
    path: str, start, end, period: Fraction, container, stream
) -> Tuple[Fraction, Optional[Fraction]]:
  """Validates start/end against each other and the header duration."""
  t_start = _as_time('start', start, path) or Fraction(0)
  t_end = _as_time('end', end, path)
  if t_end is not None and t_end <= t_start:
    raise VideoError(
        f'`end`={end} must be greater than `start`={start or 0} for {path!r}; '
        'pass an end time after the start time.'
    )
  duration = _stream_duration(container, stream)
  if duration is not None and container.duration:
    # Be lenient: the stream and container headers can disagree a little.
    duration = max(duration, Fraction(container.duration, av.time_base))
  if duration is not None:
    _check_within(path, t_start, t_end, duration, period, 'which lasts')
  return t_start, t_end


def _check_within(
    path: str,
    t_start: Fraction,
    t_end: Optional[Fraction],
    video_end: Fraction,
    period: Fraction,
    what: str,
) -> None:
  """Raises VideoError when a clip starts or ends after the video does.

  An end may overshoot the video by less than one output frame period.
  `what` words the end time: 'which lasts' (from the headers) or 'whose
  frames end at' (from the decoded frames).
  """
  if t_start >= video_end:
    raise VideoError(
        f'`start`={float(t_start):g} is at or past the end of {path!r}, {what} '
        f'{float(video_end):.3f} s; pass a start below that.'
    )
  if t_end is not None and t_end >= video_end + period:
    raise VideoError(
        f'`end`={float(t_end):g} is past the end of {path!r}, {what} '
        f'{float(video_end):.3f} s; pass an end of at most that, or None for '
        'the end of the video.'
    )


def _open_stream(path: str):
  container = _open(path)
  stream = container.streams.video[0]
  stream.thread_type = 'AUTO'
  return container, stream


def _timed(
    container, stream, path: str, origin: Optional[Fraction]
) -> Iterator[Tuple[Fraction, Any]]:
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


def iter_frames(
    path: PathLike,
    start: Optional[float] = None,
    end: Optional[float] = None,
    fps: float = FPS,
    short_side: Optional[int] = RESIZE_SHORT_SIDE,
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
  period = 1 / check_fps(fps)
  _check_short_side(short_side)
  container, stream = _open_stream(path)
  with container:
    t_start, t_end = _check_clip(path, start, end, period, container, stream)
  return _iter_frames(path, t_start, t_end, period, short_side)


def _iter_frames(
    path: str,
    t_start: Fraction,
    t_end: Optional[Fraction],
    period: Fraction,
    short_side: Optional[int],
    convert: bool = True,
) -> Iterator[Frame]:
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
        container.seek(
            math.floor((origin + t_start) / stream.time_base),
            stream=stream,
            backward=True,
            any_frame=False,
        )
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
    yield from _resample(
        path, stream, timed, t_start, t_end, period, short_side, convert
    )
  finally:
    container.close()


def _resample(
    path: str,
    stream,
    timed: Iterator[Tuple[Fraction, Any]],
    t_start: Fraction,
    t_end: Optional[Fraction],
    period: Fraction,
    short_side: Optional[int],
    convert: bool = True,
) -> Iterator[Frame]:
  """The frame-selection rule of `iter_frames`; see its docstring.

  With `convert` False, frames carry no image: only their times.
  """
  k = 0
  t_k = t_start
  stamp = frame = image = None
  size = None
  last_gap = None

  def emit() -> Frame:
    nonlocal image, size
    if image is None and convert:
      if size is None:
        steps = _rotation_steps(frame)
        height, width = frame.height, frame.width
        if steps % 2:
          height, width = width, height
        size = resized_shape(height, width, short_side)
      image = _to_rgb(frame, size)
      image.flags.writeable = False
    return Frame(
        image=image, index=k, time=float(t_k), source_time=float(stamp)
    )

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
        'file is probably truncated or corrupt. Re-download or re-encode it.'
    )
  video_end = stamp + (_frame_duration(frame, stream) or last_gap or period)
  _check_within(path, t_start, t_end, video_end, period, 'whose frames end at')
  stop = video_end if t_end is None else t_end
  while t_k < stop:
    yield emit()
    k += 1
    t_k = t_start + k * period


def count_frames(
    path: PathLike,
    start: Optional[float] = None,
    end: Optional[float] = None,
    fps: float = FPS,
) -> int:
  """How many frames `iter_frames` yields for a clip, from timestamps alone.

  The frames are decoded (their timestamps come from decoding), but none is
  converted to RGB or resized, so this costs a fraction of a decoding pass.

  Args:
    path: A video file.
    start: As for `iter_frames`.
    end: As for `iter_frames`.
    fps: As for `iter_frames`.

  Returns:
    The number of output frames.

  Raises:
    VideoError, ValueError: as `iter_frames`.
  """
  path = os.fspath(path)
  period = 1 / check_fps(fps)
  container, stream = _open_stream(path)
  with container:
    t_start, t_end = _check_clip(path, start, end, period, container, stream)
  return sum(
      1 for _ in _iter_frames(path, t_start, t_end, period, None, convert=False)
  )


def iter_chunks(
    path: PathLike,
    chunk_frames: int,
    start: Optional[float] = None,
    end: Optional[float] = None,
    fps: float = FPS,
    short_side: Optional[int] = RESIZE_SHORT_SIDE,
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
        f'`chunk_frames` must be a positive integer; got {chunk_frames!r}.'
    )
  frames = iter_frames(
      path, start=start, end=end, fps=fps, short_side=short_side
  )
  while True:
    chunk = list(itertools.islice(frames, chunk_frames))
    if not chunk:
      return
    yield (
        np.stack([f.image for f in chunk]),
        np.array([f.time for f in chunk], np.float64),
    )


def load_frames(
    path: PathLike,
    start: Optional[float] = None,
    end: Optional[float] = None,
    fps: float = FPS,
    short_side: Optional[int] = RESIZE_SHORT_SIDE,
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
  frames = list(
      iter_frames(path, start=start, end=end, fps=fps, short_side=short_side)
  )
  return (
      np.stack([f.image for f in frames]),
      np.array([f.time for f in frames], np.float64),
  )
