"""Generated videos for the tests and benchmarks: no downloads needed.

`write_video` encodes uint8 RGB frames with PyAV, with any codec, pixel
format and timestamps (for variable frame rates). `panning_texture` makes a
smooth coloured texture that pans and slowly zooms, which gives TV-L1
something real to track and the decoder realistic work; `warping_texture`
moves one non-rigidly and fast, the hard case for TV-L1.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Iterable, Iterator, Mapping, Optional, Sequence

import cv2
import numpy as np


def write_video(
    path: str,
    frames: Iterable[np.ndarray],
    rate: int = 25,
    codec: str = 'libx264',
    pix_fmt: str = 'yuv420p',
    options: Optional[Mapping[str, str]] = None,
    pts: Optional[Sequence[int]] = None,
    time_base: Optional[Fraction] = None,
    rotation: Optional[int] = None,
) -> str:
  """Encodes uint8 RGB [H, W, 3] frames into a video file.

  Args:
    path: the file to write; its extension picks the container.
    frames: the frames, all of one size (even sides for yuv420p).
    rate: the nominal frame rate.
    codec: e.g. 'libx264', 'libx264rgb' (lossless with qp=0), 'ffv1'.
    pix_fmt: the encoder's pixel format, e.g. 'yuv420p' or 'rgb24'.
    options: encoder options, e.g. {'crf': '20'} or {'qp': '0'}.
    pts: each frame's timestamp in `time_base` units; 0, 1, 2... if None.
    time_base: the timestamps' unit; 1/rate if None.
    rotation: a display rotation tag in degrees, as phones write.

  Returns:
    `path`.
  """
  import av  # pylint: disable=g-import-not-at-top  # Only here: GPU hosts lack it.

  time_base = time_base or Fraction(1, rate)
  with av.open(path, 'w') as container:
    stream = None
    for i, image in enumerate(frames):
      if stream is None:
        stream = container.add_stream(codec, rate=rate)
        stream.height, stream.width = image.shape[:2]
        stream.pix_fmt = pix_fmt
        stream.codec_context.time_base = time_base
        if options:
          stream.options = dict(options)
        if rotation is not None:
          stream.set_display_rotation(rotation)
      frame = av.VideoFrame.from_ndarray(
          np.ascontiguousarray(image), format='rgb24'
      )
      if pix_fmt != 'rgb24':
        frame = frame.reformat(format=pix_fmt)
      frame.pts = i if pts is None else pts[i]
      frame.time_base = time_base
      for packet in stream.encode(frame):
        container.mux(packet)
    if stream is None:
      raise ValueError(f'`frames` is empty; nothing to write to {path!r}.')
    for packet in stream.encode():
      container.mux(packet)
  return path


def panning_texture(
    count: int, height: int, width: int, seed: int = 0
) -> Iterator[np.ndarray]:
  """Yields `count` uint8 RGB frames of a panning, slowly zooming texture."""
  rng = np.random.default_rng(seed)
  scene = rng.random((height * 2, width * 2, 3), np.float32)
  scene = cv2.GaussianBlur(scene, (0, 0), 3.0)
  scene = cv2.normalize(scene, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
  for i in range(count):
    zoom = 1.0 + 0.2 * i / count
    matrix = np.float32([[zoom, 0, -2.0 * i], [0, zoom, -1.0 * i]])
    yield cv2.warpAffine(
        scene, matrix, (width, height), borderMode=cv2.BORDER_REFLECT
    )


def warping_texture(
    count: int, height: int, width: int, amplitude: float = 30.0, seed: int = 0
) -> Iterator[np.ndarray]:
  """Yields uint8 RGB frames of a texture under large non-rigid motion.

  Frame t shows the texture displaced by amplitude * (cos(t/2) F1 + sin(t/2)
  F2), two smooth random fields of unit peak, plus a pan of 3 pixels per
  frame, so that neighbouring frames differ by up to about amplitude
  pixels in directions that vary across the frame; three opaque patches
  cross it at 6 to 15 pixels per frame.
  """
  rng = np.random.default_rng(seed)
  pad = int(amplitude) + 3 * count + 8
  scene = rng.random((height + 2 * pad, width + 2 * pad, 3), np.float32)
  scene = cv2.GaussianBlur(scene, (0, 0), 3.0)
  scene = cv2.normalize(scene, None, 0, 255, cv2.NORM_MINMAX)
  fields = []
  for _ in range(2):
    field = cv2.GaussianBlur(
        rng.standard_normal((height, width, 2)).astype(np.float32),
        (0, 0),
        min(height, width) / 20,
    )
    fields.append(field / np.abs(field).max())
  y, x = np.mgrid[0:height, 0:width].astype(np.float32)
  patches = [
      (int(rng.integers(height)), int(rng.integers(width))) for _ in range(3)
  ]
  for t in range(count):
    move = amplitude * (np.cos(t) * fields[0] + np.sin(t) * fields[1])
    map_x = x + pad + 3.0 * t - move[..., 0]
    map_y = y + pad - move[..., 1]
    frame = cv2.remap(
        scene,
        map_x.astype(np.float32),
        map_y.astype(np.float32),
        cv2.INTER_LINEAR,
    )
    for k, (top, left) in enumerate(patches):
      # Opaque patches crossing the frame: occlusions and motion edges.
      size = min(height, width) // 4
      py = int(top + (k - 1) * 6 * t) % (height - size)
      px = int(left + 14 * t * (-1) ** k) % (width - size)
      frame[py : py + size, px : px + size] = scene[
          k * size : (k + 1) * size, -size:
      ]
    yield np.round(frame).astype(np.uint8)


def write_panning_video(
    path: str, seconds: float, width: int, height: int, rate: int, seed: int = 0
) -> str:
  """A panning texture as ordinary lossy H.264 4:2:0; returns `path`."""
  count = max(1, int(round(seconds * rate)))
  return write_video(
      path,
      panning_texture(count, height, width, seed),
      rate=rate,
      options={'crf': '20', 'preset': 'veryfast'},
  )


MOTIONS = ('small', 'large')


def gray_frames(motion: str, height: int, width: int, count: int) -> np.ndarray:
  """uint8 gray [count, H, W] frames for the TV-L1 benchmarks.

  'small': `panning_texture` (a pan of about 2 pixels per frame, with the
  zoom of a 100-frame clip); 'large': `warping_texture`.
  """
  if motion == 'small':
    rgb = list(panning_texture(max(100, count), height, width))[:count]
  elif motion == 'large':
    rgb = list(warping_texture(count, height, width))
  else:
    raise ValueError(f'`motion` must be one of {MOTIONS}; got {motion!r}.')
  return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in rgb])
