"""tf.data input pipelines for training and testing I3D on a labelled Dataset.

Training (paper §2.4), per example:
  1. Decode the clip once by the recipe (video.py: 25 fps, shorter side 256),
     or read it from a clip_cache.ClipCache.
  2. A random start frame and a `num_frames` snippet (64 in the paper); a
     clip shorter than that is looped from its start (frames 0..T-1, 0, ...).
  3. Flow: TV-L1 only on the snippet's frames (flow[t] = frame t -> t+1, the
     last frame of the clip repeating flow[T-2], as recipe.iter_flow), so a
     64-frame snippet costs 64 TV-L1 pairs whatever the clip's length; or the
     cache's quantised flow.
  4. One random 224 crop of the 256-short-side frames (the same for RGB and
     flow), then a left-right flip of the whole clip with probability 0.5,
     which negates flow's x channel (recipe.flip_left_right).
  5. Scaling to [-1, 1]: RGB x / 127.5 - 1, flow clip(x, ±20) / 20.
Randomness comes from np.random.default_rng([seed, position]), where
`position` counts examples drawn since the start, and epochs are
permutations from default_rng([seed, epoch]); the map keeps its order, so a
seed gives the same batches however many parallel calls run. An unreadable
video is logged, counted in an `InputStats` and skipped; only if every video
of the dataset fails in a row does the pipeline raise.

Test: the centre crop over the whole clip (looped to recipe.MIN_FRAMES if
shorter), batch 1, one pass. For whole-video evaluation of long videos in
bounded memory use evaluate_split.py, which streams through
inference.Predictor instead.

Usage (the training loop):

  data = datasets.load('ucf101', root, 'train', fold=1)
  stats = pipeline.InputStats()
  ds = pipeline.train_dataset(data, 'rgb', batch_size=4, num_frames=64,
                              seed=0, cache_dir='/tmp/cache', stats=stats)
  for clips, labels in ds:    # float32 [4, 64, 224, 224, 3], int32 [4]
    ...
"""

from __future__ import annotations

import threading
from typing import Dict, Iterator, List, Optional, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

import assets
import clip_cache
import datasets
import recipe
import video

CHANNELS = assets.STREAM_CHANNELS
DEFAULT_NUM_FRAMES = 64
# Skipped videos listed in InputStats.skipped (the count has them all).
_MAX_LISTED = 100


class InputStats:
  """Thread-safe counts of the videos a pipeline loaded and skipped.

  Attributes:
    loaded: Examples turned into clips.
    skipped: Examples skipped because the video could not be read.
    skipped_sources: 'path (file:line): reason' of the first skipped ones.
  """

  def __init__(self):
    self._lock = threading.Lock()
    self.loaded = 0
    self.skipped = 0
    self.skipped_sources: List[str] = []
    self._failures_in_a_row = 0

  def add_loaded(self) -> None:
    with self._lock:
      self.loaded += 1
      self._failures_in_a_row = 0

  def add_skipped(self, example: datasets.Example, reason: str) -> int:
    """Counts a skipped example; returns how many failed in a row."""
    with self._lock:
      self.skipped += 1
      self._failures_in_a_row += 1
      if len(self.skipped_sources) < _MAX_LISTED:
        self.skipped_sources.append(
            f'{example.path} ({example.source}): {reason}'
        )
      return self._failures_in_a_row


# --------------------------------------------------------------------------
# One example, in NumPy.


def snippet_indices(
    num_clip_frames: int, num_frames: int, rng: np.random.Generator
) -> np.ndarray:
  """Frame indices of a random snippet, looping a clip that is too short.

  Args:
    num_clip_frames: T, frames in the clip (>= 1).
    num_frames: Frames wanted.
    rng: Draws the start, uniform over 0..T - num_frames (0 if T is shorter).

  Returns:
    int64 [num_frames]: start, start + 1, ..., modulo T.
  """
  if num_clip_frames < 1:
    raise ValueError(f'The clip has no frames ({num_clip_frames}).')
  start = int(rng.integers(0, max(num_clip_frames - num_frames, 0) + 1))
  return (start + np.arange(num_frames)) % num_clip_frames


def snippet_flow(frames: np.ndarray, indices: np.ndarray) -> np.ndarray:
  """TV-L1 flow (pixels) at `indices` of a clip, computing only what is needed.

  Same values as recipe.compute_flow(frames)[indices]: flow[t] is frame t ->
  t + 1 and flow[T-1] repeats flow[T-2]. For a contiguous run (no looping)
  only frames first..last+1 are used.

  Args:
    frames: uint8 [T, H, W, 3] RGB frames of the clip.
    indices: Frame indices, e.g. from snippet_indices.

  Returns:
    float32 [len(indices), H, W, 2].
  """
  total = len(frames)
  first, last = int(indices.min()), int(indices.max())
  contiguous = np.array_equal(indices, np.arange(first, first + len(indices)))
  if not contiguous:
    first, last = 0, total - 1
  # Frames first..last+1 give flow[first..last]; at the clip's end the
  # repeat of flow[T-2] needs frame T-2 as well.
  lo = min(first, max(total - 2, 0)) if last == total - 1 else first
  hi = min(last + 2, total)
  flow = np.stack(list(recipe.iter_flow(iter(frames[lo:hi]), workers=1)))
  return flow[indices - lo]


def train_clip(
    example: datasets.Example,
    streams: Tuple[str, ...],
    num_frames: int,
    rng: np.random.Generator,
    crop_size: int = recipe.CROP_SIZE,
    flip: bool = True,
    cache: Optional[clip_cache.ClipCache] = None,
) -> Dict[str, np.ndarray]:
  """One augmented training snippet of an example (see the module docstring).

  Draws, in order: the start frame, the crop (top, then left), the flip.

  Args:
    example: The video and its clip times.
    streams: 'rgb' and/or 'flow'.
    num_frames: Snippet length.
    rng: The example's generator.
    crop_size: Crop side.
    flip: Whether to flip left-right with probability 0.5.
    cache: Read and fill this cache instead of decoding each time.

  Returns:
    stream -> float32 [num_frames, crop_size, crop_size, C] in [-1, 1].

  Raises:
    video.VideoError: for an unreadable video.
  """
  if cache is not None:
    stored = cache.get(example, streams)
    frames = stored.get('rgb', stored.get('flow'))
  else:
    stored = clip_cache.decode(example, ('rgb',))
    frames = stored['rgb']
  height, width = frames.shape[1:3]
  indices = snippet_indices(len(frames), num_frames, rng)
  top, left = recipe.random_crop_offsets(height, width, crop_size, rng)
  flipped = flip and rng.random() < 0.5
  out = {}
  for stream in streams:
    if stream == 'rgb':
      clip = recipe.crop_at(
          np.asarray(stored['rgb'][indices]), top, left, crop_size
      )
      clip = recipe.rgb_to_input(clip)
    elif cache is not None:
      clip = recipe.crop_at(
          np.asarray(stored['flow'][indices]), top, left, crop_size
      )
      clip = recipe.flow_to_input(clip_cache.dequantise_flow(clip))
    else:
      clip = recipe.flow_to_input(
          recipe.crop_at(snippet_flow(frames, indices), top, left, crop_size)
      )
    out[stream] = recipe.flip_left_right(clip) if flipped else clip
  return out


def test_clip(
    example: datasets.Example,
    streams: Tuple[str, ...],
    crop_size: int = recipe.CROP_SIZE,
    cache: Optional[clip_cache.ClipCache] = None,
    workers: Optional[int] = 1,
) -> Dict[str, np.ndarray]:
  """The whole clip, centre-cropped, looped to recipe.MIN_FRAMES if shorter.

  Returns:
    stream -> float32 [T, crop_size, crop_size, C] in [-1, 1].
  """
  if cache is not None:
    stored = {s: np.asarray(a) for s, a in cache.get(example, streams).items()}
    if 'flow' in stored:
      stored['flow'] = clip_cache.dequantise_flow(stored['flow'])
  else:
    stored = clip_cache.decode(example, streams, workers)
  out = {}
  for stream in streams:
    height, width = stored[stream].shape[1:3]
    top, left = recipe.center_crop_offsets(height, width, crop_size)
    clip = recipe.crop_at(stored[stream], top, left, crop_size)
    clip = (
        recipe.rgb_to_input(clip)
        if stream == 'rgb'
        else recipe.flow_to_input(clip)
    )
    out[stream], _ = recipe.loop_to_min_frames(clip, recipe.MIN_FRAMES)
  return out


# --------------------------------------------------------------------------
# tf.data.


def _positions(
    num_examples: int, seed: int, start: int, shuffle: bool, repeat: bool
) -> Iterator[Tuple[int, int]]:
  """(example index, position) in seeded per-epoch permutations."""
  epoch, offset = divmod(start, num_examples)
  while True:
    order = (
        np.random.default_rng([seed, epoch]).permutation(num_examples)
        if shuffle
        else np.arange(num_examples)
    )
    for i in range(offset, num_examples):
      yield int(order[i]), epoch * num_examples + i
    if not repeat:
      return
    epoch += 1
    offset = 0


def _check_int(name: str, value, minimum: int) -> None:
  if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
    raise ValueError(f'`{name}` must be an int >= {minimum}; got {value!r}.')


def _loader(
    dataset: datasets.Dataset,
    streams: Tuple[str, ...],
    frames_shape: Tuple[Optional[int], int, int],
    make_clip,
    stats: InputStats,
):
  """A tf.data map function (index, position) -> (*clips, label, ok)."""

  def load(index, position):
    example = dataset.examples[int(index)]
    try:
      clips = make_clip(example, int(position))
      stats.add_loaded()
      return [clips[s] for s in streams] + [np.int32(example.label), True]
    except (video.VideoError, OSError) as e:
      reason = str(e).splitlines()[0] if str(e) else type(e).__name__
      in_a_row = stats.add_skipped(example, reason)
      logging.warning(
          'Skipped unreadable video %s (%s): %s',
          example.path,
          example.source,
          reason,
      )
      if in_a_row >= len(dataset):
        raise datasets.DatasetError(
            f'The last {in_a_row} videos all failed, as many as the dataset '
            f'has; the last was {example.path} ({example.source}): {reason}'
        ) from e
      length = frames_shape[0] or recipe.MIN_FRAMES
      return [
          np.zeros((length,) + frames_shape[1:] + (CHANNELS[s],), np.float32)
          for s in streams
      ] + [np.int32(-1), False]

  def map_fn(index, position):
    outputs = tf.numpy_function(
        load,
        [index, position],
        [tf.float32] * len(streams) + [tf.int32, tf.bool],
        stateful=True,
    )
    clips = outputs[: len(streams)]
    for clip, stream in zip(clips, streams):
      clip.set_shape(frames_shape + (CHANNELS[stream],))
    label, ok = outputs[-2], outputs[-1]
    label.set_shape(())
    ok.set_shape(())
    return tuple(clips) + (label, ok)

  return map_fn


def _features(streams: Tuple[str, ...], stream: str):
  def pack(*values):
    clips, label = values[: len(streams)], values[len(streams)]
    if stream == 'joint':
      return dict(zip(streams, clips)), label
    return clips[0], label

  return pack


def _indices(
    dataset: datasets.Dataset,
    seed: int,
    start: int,
    shuffle: bool,
    repeat: bool,
) -> tf.data.Dataset:
  if not dataset.examples:
    raise datasets.DatasetError('The dataset has no examples.')
  return tf.data.Dataset.from_generator(
      lambda: _positions(len(dataset.examples), seed, start, shuffle, repeat),
      output_signature=(
          tf.TensorSpec((), tf.int64),
          tf.TensorSpec((), tf.int64),
      ),
  )


def _clips(
    indices: tf.data.Dataset,
    map_fn,
    stream: str,
    num_parallel_calls: Optional[int],
) -> tf.data.Dataset:
  """Loads the examples in order, drops the skipped ones, packs the streams."""
  pack = _features(assets.streams_of(stream), stream)
  return (
      indices.map(
          map_fn,
          num_parallel_calls=num_parallel_calls or tf.data.AUTOTUNE,
          deterministic=True,
      )
      .filter(lambda *values: values[-1])
      .map(lambda *values: pack(*values[:-1]))
  )


def train_dataset(
    dataset: datasets.Dataset,
    stream: str,
    batch_size: int,
    num_frames: int = DEFAULT_NUM_FRAMES,
    seed: int = 0,
    cache_dir: Optional[str] = None,
    crop_size: int = recipe.CROP_SIZE,
    flip: bool = True,
    start_position: int = 0,
    num_parallel_calls: Optional[int] = None,
    stats: Optional[InputStats] = None,
) -> tf.data.Dataset:
  """The endless, shuffled, augmented training stream (paper §2.4).

  Args:
    dataset: The labelled examples.
    stream: 'rgb', 'flow' or 'joint' (both from one decode, same snippet,
      crop and flip).
    batch_size: Clips per batch (the last partial batch of the stream is
      never reached: the stream repeats).
    num_frames: Frames per snippet.
    seed: Fixes the order, snippets, crops and flips.
    cache_dir: A clip_cache folder to read and fill; None decodes (and, for
      flow, runs TV-L1 on the snippet) every time.
    crop_size: Crop side (224).
    flip: Random left-right flips.
    start_position: Examples already drawn (e.g. step * batch_size of a
      resumed run), so the stream continues where it stopped.
    num_parallel_calls: Clips decoded in parallel; None = tf.data.AUTOTUNE.
    stats: Counts loaded and skipped videos; pass one to read them.

  Returns:
    A tf.data.Dataset of (clips, labels): clips float32 [batch_size,
    num_frames, crop_size, crop_size, C] in [-1, 1] (a dict {'rgb', 'flow'}
    for 'joint'), labels int32 [batch_size].
  """
  streams = assets.streams_of(stream)
  _check_int('batch_size', batch_size, 1)
  _check_int('num_frames', num_frames, 1)
  _check_int('start_position', start_position, 0)
  cache = clip_cache.ClipCache(cache_dir) if cache_dir else None
  stats = stats if stats is not None else InputStats()

  def make_clip(example, position):
    rng = np.random.default_rng([seed, position])
    return train_clip(example, streams, num_frames, rng, crop_size, flip, cache)

  indices = _indices(dataset, seed, start_position, True, True)
  map_fn = _loader(
      dataset, streams, (num_frames, crop_size, crop_size), make_clip, stats
  )
  return (
      _clips(indices, map_fn, stream, num_parallel_calls)
      .batch(batch_size, drop_remainder=True)
      .prefetch(tf.data.AUTOTUNE)
  )


def test_dataset(
    dataset: datasets.Dataset,
    stream: str,
    cache_dir: Optional[str] = None,
    crop_size: int = recipe.CROP_SIZE,
    num_parallel_calls: Optional[int] = None,
    stats: Optional[InputStats] = None,
) -> tf.data.Dataset:
  """Every example once, in order: the centre crop over the whole clip.

  Whole clips are held in memory (a 10 s clip is ~150 MB of RGB input); for
  long videos use evaluate_split.py, which streams.

  Args:
    dataset: The labelled examples.
    stream: 'rgb', 'flow' or 'joint'.
    cache_dir: A clip_cache folder to read and fill, or None.
    crop_size: Crop side (224).
    num_parallel_calls: Clips decoded in parallel; None = tf.data.AUTOTUNE.
    stats: Counts loaded and skipped videos.

  Returns:
    A tf.data.Dataset of (clips [1, T, crop, crop, C] (dict for 'joint'),
    labels int32 [1]); unreadable videos are skipped and counted.
  """
  streams = assets.streams_of(stream)
  cache = clip_cache.ClipCache(cache_dir) if cache_dir else None
  stats = stats if stats is not None else InputStats()

  def make_clip(example, position):
    del position
    return test_clip(example, streams, crop_size, cache)

  indices = _indices(dataset, 0, 0, False, False)
  map_fn = _loader(
      dataset, streams, (None, crop_size, crop_size), make_clip, stats
  )
  return (
      _clips(indices, map_fn, stream, num_parallel_calls).batch(1).prefetch(1)
  )
