"""A cache of decoded clips, so training does not decode or run TV-L1 each epoch.

For each video (and start/end) it stores, after the recipe's decoding
(video.iter_frames: 25 fps, shorter side 256, not cropped):

  <cache_dir>/<key>_rgb.npy   uint8 [T, H, W, 3], the resized RGB frames;
  <cache_dir>/<key>_flow.npy  uint8 [T, H, W, 2], TV-L1 flow quantised as the
                              original did (below).

`key` is a hash of the file's absolute path, size and modification time, the
clip's start/end and the recipe's parameters, so a changed video or recipe is
a new entry. Every file is written to a temporary name and renamed into place
(fileio.write_npy), so a killed build leaves no half-written entry and a rerun
continues where it stopped. Both streams come from one decoding pass.

Flow quantisation. The original stored TV-L1 flow as 8-bit images: flow in
pixels is truncated to [-20, 20] and mapped linearly to 256 levels,

  q = round((clip(f, -20, 20) + 20) * 255 / 40)        (uint8, 0..255)
  f' = q * 40 / 255 - 20                               (the exact inverse)

so |f' - clip(f, -20, 20)| <= 20 / 255 pixels (half a step of 40/255), i.e.
1/255 in model units (f / 20), plus float32 rounding. Zero flow comes back as
+0.078 pixels (q = 128, rounding half to even), as in the original's images.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Dict, Optional, Sequence, Tuple

from absl import logging
import numpy as np
import tqdm

import datasets
import fileio
import recipe
import video

# Bump when the stored format or the recipe changes.
FORMAT = 'i3d-clip-cache/1'
FLOW_LEVELS = 256
_FLOW_STEP = 2 * recipe.FLOW_BOUND / (FLOW_LEVELS - 1)  # 40 / 255 pixels.
# The largest |dequantise(quantise(f)) - clip(f)|, in pixels.
FLOW_MAX_ERROR = _FLOW_STEP / 2


def quantise_flow(
    flow: np.ndarray, bound: float = recipe.FLOW_BOUND
) -> np.ndarray:
  """Flow in pixels -> uint8: clip to [-bound, bound], 256 linear levels."""
  flow = np.clip(np.asarray(flow, np.float32), -bound, bound)
  levels = (flow + bound) * np.float32((FLOW_LEVELS - 1) / (2 * bound))
  return np.rint(levels).astype(np.uint8)


def dequantise_flow(
    q: np.ndarray, bound: float = recipe.FLOW_BOUND
) -> np.ndarray:
  """uint8 levels -> float32 flow in pixels, q * 2 * bound / 255 - bound."""
  q = np.asarray(q)
  if q.dtype != np.uint8:
    raise ValueError(f'Quantised flow must be uint8; got dtype {q.dtype}.')
  return q.astype(np.float32) * np.float32(
      2 * bound / (FLOW_LEVELS - 1)
  ) - np.float32(bound)


def decode(
    example: datasets.Example,
    streams: Sequence[str] = ('rgb', 'flow'),
    workers: Optional[int] = 1,
) -> Dict[str, np.ndarray]:
  """Decodes a clip once by the recipe; RGB frames and/or its TV-L1 flow.

  Args:
    example: The video and its start/end.
    streams: Which of 'rgb' and 'flow'.
    workers: Processes for TV-L1 (recipe.iter_flow); 1 = this thread.

  Returns:
    {'rgb': uint8 [T, H, W, 3], 'flow': float32 [T, H, W, 2] pixels,
    unclipped} for the streams asked for, not cropped (H, W: shorter side
    256).

  Raises:
    video.VideoError: for an unreadable video or clip.
  """
  frames = video.iter_frames(example.path, start=example.start, end=example.end)
  images = []

  def keep():
    for frame in frames:
      images.append(frame.image)
      yield frame.image

  out = {}
  if 'flow' in streams:
    flow = list(recipe.iter_flow(keep(), workers=workers))
    out['flow'] = np.stack(flow) if flow else None
  else:
    for _ in keep():
      pass
  if not images:
    raise video.VideoError(
        f'{example.path!r} gave no frames for the clip '
        f'{example.start}..{example.end} s.'
    )
  if 'rgb' in streams:
    out['rgb'] = np.stack(images)
  return out


class ClipCache:
  """Decoded clips on disk; see the module docstring.

  Attributes:
    cache_dir: The folder.
  """

  def __init__(self, cache_dir: str):
    self.cache_dir = os.fspath(cache_dir)
    os.makedirs(self.cache_dir, exist_ok=True)

  def key(self, example: datasets.Example) -> str:
    """The entry's name: a hash of the file's identity, clip and recipe."""
    path = os.path.abspath(example.path)
    stat = os.stat(path)
    identity = {
        'format': FORMAT,
        'path': path,
        'size': stat.st_size,
        'mtime_ns': stat.st_mtime_ns,
        'start': example.start,
        'end': example.end,
        'fps': video.FPS,
        'short_side': video.RESIZE_SHORT_SIDE,
        'flow_bound': recipe.FLOW_BOUND,
    }
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True).encode())
    stem = os.path.splitext(os.path.basename(path))[0][:40]
    return f'{stem}_{digest.hexdigest()[:16]}'

  def paths(self, example: datasets.Example) -> Dict[str, str]:
    key = self.key(example)
    return {
        s: os.path.join(self.cache_dir, f'{key}_{s}.npy')
        for s in recipe.VALID_STREAMS
    }

  def has(self, example: datasets.Example, streams: Sequence[str]) -> bool:
    paths = self.paths(example)
    return all(os.path.isfile(paths[s]) for s in streams)

  def get(
      self,
      example: datasets.Example,
      streams: Sequence[str],
      workers: Optional[int] = 1,
  ) -> Dict[str, np.ndarray]:
    """The cached arrays of `streams`, decoding and storing missing ones.

    Arrays are memory-mapped, so reading a snippet reads only its frames.

    Returns:
      {'rgb': uint8 [T, H, W, 3], 'flow': uint8 [T, H, W, 2] quantised}.

    Raises:
      video.VideoError: for an unreadable video.
    """
    paths = self.paths(example)
    todo = [s for s in streams if not os.path.isfile(paths[s])]
    if todo:
      decoded = decode(example, todo, workers)
      for stream in todo:
        array = decoded[stream]
        if stream == 'flow':
          array = quantise_flow(array)
        fileio.write_npy(paths[stream], array)
    return {
        s: np.load(paths[s], mmap_mode='r', allow_pickle=False) for s in streams
    }

  def build(
      self,
      dataset: datasets.Dataset,
      streams: Sequence[str],
      workers: Optional[int] = None,
      progress: bool = True,
  ) -> Tuple[int, int, int]:
    """Fills the cache for every example (resumable: done ones are skipped).

    Args:
      dataset: The examples.
      streams: Which of 'rgb' and 'flow' to store.
      workers: Processes for TV-L1; None = all cores.
      progress: A tqdm bar on stderr.

    Returns:
      (built, already there, failed); failures are logged and skipped.
    """
    built = present = failed = 0
    for example in tqdm.tqdm(
        dataset.examples,
        unit='video',
        desc='cache',
        disable=not progress,
        dynamic_ncols=True,
    ):
      try:
        if self.has(example, streams):
          present += 1
          continue
        self.get(example, streams, workers)
        built += 1
      except (video.VideoError, OSError) as e:
        failed += 1
        logging.warning('Skipped %s (%s): %s', example.path, example.source, e)
    return built, present, failed
