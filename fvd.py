"""Fréchet Video Distance (FVD) on the released I3D, in TF2.

FVD (Unterthiner et al. 2018) compares two sets of videos by the Fréchet
distance between Gaussians fitted to their I3D embeddings. Two protocols are
offered (PROTOCOLS; the README compares them side by side):

  * 'reference': the google-research `frechet_video_distance` code. Videos
    with values in 0..255 (any dtype) are resized frame by frame to 224x224
    with TF1's `resize_bilinear` (align_corners=False and no half-pixel
    centres, unlike TF2's `tf.image.resize`), scaled by 2x/255 - 1, and
    embedded as the 400 logits of rgb_scratch averaged over time, before the
    softmax (the TF-Hub graph's `RGB/inception_i3d/Mean:0`). The distance is
    TF-GAN's `frechet_classifier_distance_from_activations`: float64, the
    mean and the unbiased covariance, and
    ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr(sqrt(sqrt(S1) S2 sqrt(S1)))
    with a symmetric matrix square root. Every frame of every video is used.
  * 'stylegan_v': StyleGAN-V's `fvd2048_16f`. One clip of 16 consecutive
    frames per video, from the first 2048 videos (in sorted order) that are
    long enough (shorter ones are skipped); a real clip starts at a random
    offset (here from a seeded generator), a generated one at frame 0.
    Resizing is half-pixel bilinear (PyTorch `interpolate(...,
    align_corners=False)`), statistics are the biased (divide by N)
    covariance, and the square root is scipy's `sqrtm(S_gen @ S_real)`.

The network is this project's fast path (inference.make_predictor); the
statistics are accumulated in float64 batch by batch (Chan et al.'s
pairwise merge), so memory is set by the batch, not the number of videos.

Usage:

  embedder = fvd.load_embedder('data/checkpoints/rgb_scratch/model.ckpt')
  real = fvd.compute_stats(fvd.iter_clips(real_source, protocol, 'real'),
                           embedder, protocol)
  fake = fvd.compute_stats(fvd.iter_clips(fake_source, protocol,
                                          'generated'), embedder, protocol)
  distance = fvd.fvd_from_stats(real, fake, protocol.sqrt)
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
)

import numpy as np
import tensorflow as tf

import checkpoints
import features
import fileio
import i3d
import inference
import video

# Protocols, resize methods, covariance estimators and square-root routes.
PROTOCOLS = ('reference', 'stylegan_v')
RESIZE_METHODS = ('legacy', 'half_pixel')
COVARIANCES = ('unbiased', 'biased')
SQRT_METHODS = ('symmetric', 'sqrtm')
OFFSETS = ('start', 'random')
ROLES = ('real', 'generated')

# The embedding: rgb_scratch's 400 Kinetics logits at 224x224.
SIZE = 224
NUM_CLASSES = 400
MIN_FRAMES = i3d.min_input_size('Logits')[0]  # 9: the Logits head's minimum.
MAX_VALUE = 255.0

DEFAULT_CHECKPOINT = os.path.join(
    'data', 'checkpoints', 'rgb_scratch', 'model.ckpt'
)
DEFAULT_BATCH_SIZE = 8
DEFAULT_SEED = 0
STATS_FORMAT = 'i3d-fvd-stats/1'


class FVDError(ValueError):
  """Bad input to FVD: a set, a clip, cached statistics or a setting."""


# --------------------------------------------------------------------------
# Protocols.


@dataclasses.dataclass(frozen=True)
class Protocol:
  """Every choice that changes an FVD value.

  Attributes:
    name: one of PROTOCOLS.
    resize: one of RESIZE_METHODS.
    covariance: one of COVARIANCES.
    sqrt: one of SQRT_METHODS.
    clip_frames: frames per clip; None takes every frame of each video.
    num_clips: clips per set (the first that qualify); None takes all.
    real_offset: where a real clip starts, one of OFFSETS.
    generated_offset: where a generated clip starts, one of OFFSETS.
    skip_short: skip videos shorter than `clip_frames` rather than fail.
    seed: seed of the random clip offsets.
  """

  name: str
  resize: str
  covariance: str
  sqrt: str
  clip_frames: Optional[int]
  num_clips: Optional[int]
  real_offset: str
  generated_offset: str
  skip_short: bool
  seed: int = DEFAULT_SEED

  def settings(self) -> Dict[str, Any]:
    """The fields that cached statistics must share (all but `sqrt`)."""
    out = dataclasses.asdict(self)
    del out['sqrt']
    return out


_PROTOCOLS = {
    'reference': Protocol(
        name='reference',
        resize='legacy',
        covariance='unbiased',
        sqrt='symmetric',
        clip_frames=None,
        num_clips=None,
        real_offset='start',
        generated_offset='start',
        skip_short=False,
    ),
    'stylegan_v': Protocol(
        name='stylegan_v',
        resize='half_pixel',
        covariance='biased',
        sqrt='sqrtm',
        clip_frames=16,
        num_clips=2048,
        real_offset='random',
        generated_offset='start',
        skip_short=True,
    ),
}


def _check_choice(arg: str, value, valid: Sequence[Any]) -> None:
  if value not in valid:
    raise FVDError(
        f'`{arg}` must be one of {", ".join(map(str, valid))}; '
        f'got {value!r}.'
    )


def get_protocol(name: str, **overrides) -> Protocol:
  """A named protocol, with some fields replaced.

  Args:
    name: one of PROTOCOLS.
    **overrides: Protocol fields to change, e.g. clip_frames=32, seed=1.
      None values are ignored (they keep the protocol's default).

  Raises:
    FVDError: on an unknown name, field or value.
  """
  _check_choice('protocol', name, PROTOCOLS)
  unknown = set(overrides) - {f.name for f in dataclasses.fields(Protocol)}
  if unknown:
    raise FVDError(f'Unknown protocol fields {sorted(unknown)}.')
  protocol = dataclasses.replace(
      _PROTOCOLS[name], **{k: v for k, v in overrides.items() if v is not None}
  )
  _check_choice('resize', protocol.resize, RESIZE_METHODS)
  _check_choice('covariance', protocol.covariance, COVARIANCES)
  _check_choice('sqrt', protocol.sqrt, SQRT_METHODS)
  _check_choice('real_offset', protocol.real_offset, OFFSETS)
  _check_choice('generated_offset', protocol.generated_offset, OFFSETS)
  if protocol.clip_frames is not None and (
      not isinstance(protocol.clip_frames, int)
      or protocol.clip_frames < MIN_FRAMES
  ):
    raise FVDError(
        f'`clip_frames` must be an int >= {MIN_FRAMES} (the fewest frames '
        f"I3D's logits need) or None; got {protocol.clip_frames!r}."
    )
  if protocol.num_clips is not None and (
      not isinstance(protocol.num_clips, int) or protocol.num_clips < 2
  ):
    raise FVDError(
        '`num_clips` must be an int >= 2 (a covariance needs two '
        f'clips) or None; got {protocol.num_clips!r}.'
    )
  return protocol


# --------------------------------------------------------------------------
# Checking, resizing and scaling videos.


def check_videos(videos, arg: str = 'videos') -> np.ndarray:
  """Checks a batch of videos [N, T, H, W, 3] with values in 0..255.

  Returns:
    The array, unchanged in dtype.

  Raises:
    FVDError: on a wrong rank or channel count, an empty batch or frame,
      fewer than MIN_FRAMES frames, or values outside 0..255 (or NaN).
  """
  videos = np.asarray(videos)
  if videos.ndim != 5 or videos.shape[-1] != 3:
    raise FVDError(
        f'`{arg}` must be [videos, frames, height, width, 3] RGB; '
        f'got shape {videos.shape}.'
    )
  if 0 in videos.shape:
    raise FVDError(f'`{arg}` is empty: shape {videos.shape}.')
  if videos.shape[1] < MIN_FRAMES:
    raise FVDError(
        f"`{arg}` has clips of {videos.shape[1]} frames; I3D's logits need "
        f'at least {MIN_FRAMES}. Use longer clips.'
    )
  if not (
      np.issubdtype(videos.dtype, np.integer)
      or np.issubdtype(videos.dtype, np.floating)
  ):
    raise FVDError(f'`{arg}` must hold numbers; got dtype {videos.dtype}.')
  low, high = np.min(videos), np.max(videos)
  if not (low >= 0 and high <= MAX_VALUE):  # Also catches NaN.
    raise FVDError(
        f'`{arg}` must have values in 0..255; got values from {low} to '
        f'{high}. Pass uint8 frames or floats scaled to 0..255 (for [0, 1] '
        'data multiply by 255, for [-1, 1] data map x to (x + 1) * 127.5).'
    )
  return videos


def resize_frames(
    videos: np.ndarray, method: str = 'legacy', size: int = SIZE
) -> tf.Tensor:
  """Resizes every frame of [N, T, H, W, C] videos to size x size, float32.

  Args:
    videos: any dtype that ResizeBilinear takes (ints, floats).
    method: 'legacy' is TF1's `resize_bilinear` (align_corners=False, no
      half-pixel centres: source x = dest x * in / out), as the reference;
      'half_pixel' samples at (dest x + 0.5) * in / out - 0.5, as TF2's
      `tf.image.resize` and PyTorch's `interpolate(align_corners=False)`
      without antialiasing.
    size: the output height and width.
  """
  _check_choice('method', method, RESIZE_METHODS)
  n, t, h, w, c = videos.shape
  frames = tf.reshape(tf.convert_to_tensor(videos), [n * t, h, w, c])
  resized = tf.raw_ops.ResizeBilinear(
      images=frames,
      size=[size, size],
      align_corners=False,
      half_pixel_centers=(method == 'half_pixel'),
  )
  return tf.reshape(resized, [n, t, size, size, c])


def preprocess(videos: np.ndarray, method: str = 'legacy') -> tf.Tensor:
  """0..255 videos -> float32 [N, T, 224, 224, 3] in [-1, 1] (2x/255 - 1)."""
  resized = resize_frames(videos, method)
  return 2.0 * tf.cast(resized, tf.float32) / MAX_VALUE - 1.0


# --------------------------------------------------------------------------
# The embedding.


class Embedder:
  """I3D logits averaged over time, of 0..255 videos, on a Predictor."""

  def __init__(self, predictor: inference.Predictor, resize: str = 'legacy'):
    model = predictor.model
    if (
        model.num_classes != NUM_CLASSES
        or predictor.in_channels != 3
        or not predictor.has_head
    ):
      raise FVDError(
          'FVD needs an RGB I3D with the 400-class Kinetics logits '
          f'(rgb_scratch); got {model.num_classes} classes, '
          f'{predictor.in_channels} input channels, final endpoint '
          f'{model.final_endpoint!r}.'
      )
    _check_choice('resize', resize, RESIZE_METHODS)
    self.predictor = predictor
    self.resize = resize

  def __call__(self, videos, arg: str = 'videos') -> np.ndarray:
    """[N, T, H, W, 3] values in 0..255 -> float32 [N, 400] logits."""
    videos = check_videos(videos, arg)
    return self.predictor.logits(preprocess(videos, self.resize).numpy())


def load_embedder(
    checkpoint: str = DEFAULT_CHECKPOINT,
    resize: str = 'legacy',
    mode: str = inference.DEFAULT_MODE,
) -> Embedder:
  """Restores rgb_scratch (or another 400-class RGB checkpoint).

  Raises:
    checkpoints.CheckpointError: a missing or unreadable checkpoint.
    FVDError: a checkpoint that is not a 400-class RGB I3D.
  """
  model = checkpoints.load_model(checkpoint)
  return Embedder(inference.make_predictor(model, mode=mode), resize)


# --------------------------------------------------------------------------
# Statistics.


class Stats:
  """The mean and covariance of embeddings, accumulated batch by batch.

  float64 throughout. Each batch's mean and centred scatter matrix are
  merged into the running ones (Chan, Golub and LeVeque's pairwise update),
  which avoids the cancellation of sum(x x^T) - N mu mu^T.
  """

  def __init__(self, dim: int = NUM_CLASSES):
    self.dim = dim
    self.count = 0
    self.mean = np.zeros([dim], np.float64)
    self.scatter = np.zeros([dim, dim], np.float64)  # sum (x - mu)(x - mu)^T

  def add(self, embeddings: np.ndarray) -> None:
    """Adds [n, dim] embeddings."""
    x = np.asarray(embeddings, np.float64)
    if x.ndim != 2 or x.shape[1] != self.dim:
      raise FVDError(
          f'`embeddings` must be [n, {self.dim}]; got shape ' f'{x.shape}.'
      )
    if not len(x):
      return
    mean = x.mean(axis=0)
    centred = x - mean
    self.merge_moments(len(x), mean, centred.T @ centred)

  def merge_moments(
      self, count: int, mean: np.ndarray, scatter: np.ndarray
  ) -> None:
    """Merges another set's count, mean and centred scatter matrix."""
    total = self.count + count
    delta = mean - self.mean
    self.scatter += scatter + np.outer(delta, delta) * (
        self.count * count / total
    )
    self.mean = self.mean + delta * (count / total)
    self.count = total

  def covariance(self, kind: str = 'unbiased') -> np.ndarray:
    """The covariance: 'unbiased' divides by N - 1, 'biased' by N.

    Raises:
      FVDError: with fewer than two embeddings.
    """
    _check_choice('kind', kind, COVARIANCES)
    if self.count < 2:
      raise FVDError(
          f'A covariance needs at least 2 clips; this set has {self.count}. '
          'Add videos (FVD is meaningful with hundreds to thousands).'
      )
    return self.scatter / (self.count - 1 if kind == 'unbiased' else self.count)


@dataclasses.dataclass
class SetStats:
  """What FVD needs of one set, and what made it."""

  mean: np.ndarray
  covariance: np.ndarray
  count: int
  protocol: Dict[str, Any]
  skipped: int = 0


def finish(stats: Stats, protocol: Protocol, skipped: int = 0) -> SetStats:
  """A set's final statistics, with the protocol's covariance estimator."""
  return SetStats(
      stats.mean.copy(),
      stats.covariance(protocol.covariance),
      stats.count,
      protocol.settings(),
      skipped,
  )


def save_stats(path: str, stats: SetStats) -> None:
  """Writes .npz {mean, covariance, count, protocol, format}, atomically."""
  buffer = io.BytesIO()
  np.savez(
      buffer,
      mean=stats.mean,
      covariance=stats.covariance,
      count=np.int64(stats.count),
      protocol=np.array(json.dumps(stats.protocol, sort_keys=True)),
      format=np.array(STATS_FORMAT),
  )
  fileio.write_bytes(path, buffer.getvalue())


def load_stats(path: str, protocol: Protocol) -> SetStats:
  """Reads statistics written by save_stats for the same protocol.

  Raises:
    FVDError: unreadable, not FVD statistics, or made with other settings.
  """
  try:
    with np.load(path, allow_pickle=False) as data:
      fields = {k: data[k] for k in data.files}
  except (OSError, ValueError, EOFError) as e:
    raise FVDError(f'Cannot read FVD statistics {path!r}: {e}') from e
  missing = {'mean', 'covariance', 'count', 'protocol'} - set(fields)
  if missing or str(fields.get('format', '')) != STATS_FORMAT:
    raise FVDError(
        f'{path!r} is not an FVD statistics file ({STATS_FORMAT}; '
        f'missing {sorted(missing)}); write one with save_stats.'
    )
  saved = json.loads(str(fields['protocol']))
  wanted = protocol.settings()
  if saved != wanted:
    diff = {
        k: (saved.get(k), wanted.get(k))
        for k in set(saved) | set(wanted)
        if saved.get(k) != wanted.get(k)
    }
    described = ', '.join(
        f'{k}: saved {a!r}, wanted {b!r}' for k, (a, b) in sorted(diff.items())
    )
    raise FVDError(
        f'The statistics in {path!r} were made with other '
        f'settings ({described}); recompute them with these '
        'settings or use the saved ones.'
    )
  mean = np.asarray(fields['mean'], np.float64)
  covariance = np.asarray(fields['covariance'], np.float64)
  if mean.ndim != 1 or covariance.shape != (len(mean), len(mean)):
    raise FVDError(
        f'{path!r} has a mean of shape {mean.shape} and a '
        f'covariance of shape {covariance.shape}; they must be '
        '[D] and [D, D].'
    )
  return SetStats(mean, covariance, int(fields['count']), saved)


# --------------------------------------------------------------------------
# The distance.


def symmetric_sqrt(matrix: np.ndarray) -> np.ndarray:
  """The PSD square root of a symmetric matrix, from its eigenvectors.

  Eigenvalues below zero (round-off on a PSD matrix) are taken as zero.
  """
  matrix = np.asarray(matrix, np.float64)
  values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
  return (vectors * np.sqrt(np.maximum(values, 0.0))) @ vectors.T


def trace_sqrt_product(
    cov1: np.ndarray, cov2: np.ndarray, method: str = 'symmetric'
) -> float:
  """tr(sqrt(cov1 cov2)), the cross term of the Fréchet distance.

  Args:
    cov1, cov2: symmetric PSD [D, D] matrices.
    method: 'symmetric' is TF-GAN's route, tr(sqrt(A cov2 A)) with A =
      sqrt(cov1), both roots of symmetric matrices (here by eigh); 'sqrtm'
      is scipy.linalg.sqrtm(cov1 @ cov2) (Schur method on a non-symmetric
      matrix), the real part of its trace.
  """
  _check_choice('method', method, SQRT_METHODS)
  cov1 = np.asarray(cov1, np.float64)
  cov2 = np.asarray(cov2, np.float64)
  if method == 'symmetric':
    root = symmetric_sqrt(cov1)
    return float(np.trace(symmetric_sqrt(root @ cov2 @ root)))
  import scipy.linalg  # pylint: disable=g-import-not-at-top

  root = scipy.linalg.sqrtm(cov1 @ cov2)
  return float(np.real(np.trace(root)))


def frechet_distance(
    mean1: np.ndarray,
    cov1: np.ndarray,
    mean2: np.ndarray,
    cov2: np.ndarray,
    sqrt: str = 'symmetric',
) -> float:
  """||mean1 - mean2||^2 + tr(cov1) + tr(cov2) - 2 tr(sqrt(cov1 cov2)).

  Raises:
    FVDError: if the shapes do not fit together.
  """
  mean1, mean2 = (np.asarray(m, np.float64) for m in (mean1, mean2))
  cov1, cov2 = (np.asarray(c, np.float64) for c in (cov1, cov2))
  d = mean1.shape[-1] if mean1.ndim == 1 else -1
  if (
      mean1.shape != (d,)
      or mean2.shape != (d,)
      or cov1.shape != (d, d)
      or cov2.shape != (d, d)
  ):
    raise FVDError(
        f'Means must be [D] and covariances [D, D] of one D; got '
        f'{mean1.shape}, {cov1.shape}, {mean2.shape}, '
        f'{cov2.shape}.'
    )
  diff = mean1 - mean2
  return float(
      diff @ diff
      + np.trace(cov1)
      + np.trace(cov2)
      - 2.0 * trace_sqrt_product(cov1, cov2, sqrt)
  )


def fvd_from_stats(
    real: SetStats, generated: SetStats, sqrt: str = 'symmetric'
) -> float:
  """The FVD of two sets' statistics."""
  return frechet_distance(
      generated.mean, generated.covariance, real.mean, real.covariance, sqrt
  )


def fvd_from_embeddings(
    real: np.ndarray,
    generated: np.ndarray,
    covariance: str = 'unbiased',
    sqrt: str = 'symmetric',
) -> float:
  """The FVD of two [N, D] embedding arrays (each N >= 2)."""
  out = []
  for x in (real, generated):
    stats = Stats(np.shape(x)[-1])
    stats.add(x)
    out.append((stats.mean, stats.covariance(covariance)))
  (m1, c1), (m2, c2) = out
  return frechet_distance(m2, c2, m1, c1, sqrt)


# --------------------------------------------------------------------------
# Sets of videos and their clips.


ARRAY_EXTENSIONS = ('.npy', '.npz')


@dataclasses.dataclass
class VideoSet:
  """A set of videos: arrays (one [N, T, H, W, 3] or a list of [T, H, W, 3])
  or video files."""

  description: str
  array: Optional[Sequence[np.ndarray]] = None
  paths: Optional[List[str]] = None

  def __len__(self) -> int:
    return len(self.array) if self.array is not None else len(self.paths)


def open_set(spec: str) -> VideoSet:
  """A set from a .npy/.npz file, a folder, a glob, a file or @list.

  A .npy is memory-mapped; an .npz must hold one array (or one named
  'videos') and is read whole.

  Raises:
    FVDError: if `spec` names nothing usable.
  """
  if spec.lower().endswith(ARRAY_EXTENSIONS) and os.path.isfile(spec):
    try:
      if spec.lower().endswith('.npy'):
        array = np.load(spec, mmap_mode='r', allow_pickle=False)
      else:
        with np.load(spec, allow_pickle=False) as data:
          keys = data.files
          if len(keys) != 1 and 'videos' not in keys:
            raise FVDError(
                f'{spec!r} holds arrays {keys}; store one array, '
                'or name it "videos".'
            )
          array = data['videos' if 'videos' in keys else keys[0]]
    except (OSError, ValueError) as e:
      if isinstance(e, FVDError):
        raise
      raise FVDError(f'Cannot read {spec!r}: {e}') from e
    if array.ndim != 5 or array.shape[-1] != 3:
      raise FVDError(
          f'{spec!r} must hold [videos, frames, height, width, 3]; '
          f'got shape {array.shape}.'
      )
    if not len(array):
      raise FVDError(f'{spec!r} holds no videos (shape {array.shape}).')
    return VideoSet(spec, array=array)
  try:
    found = features.find_videos(spec)
  except features.InputError as e:
    raise FVDError(str(e)) from e
  return VideoSet(spec, paths=[v.path for v in found])


@dataclasses.dataclass
class Clip:
  """One clip of a set, named by its video."""

  name: str
  frames: np.ndarray  # [T, H, W, 3], 0..255.


def _clip_start(
    length: int, clip_frames: int, offset: str, rng: np.random.Generator
) -> int:
  if offset == 'start':
    return 0
  return int(rng.integers(0, length - clip_frames + 1))


def iter_clips(
    videos: VideoSet,
    protocol: Protocol,
    role: str,
    fps: float = video.FPS,
    on_skip: Optional[Callable[[str, str], None]] = None,
) -> Iterator[Clip]:
  """The clips of a set that the protocol takes, in order.

  Args:
    videos: the set.
    protocol: which clips: `clip_frames` consecutive frames (all when None)
      from each video, starting at frame 0 or at a seeded random offset, for
      at most `num_clips` videos.
    role: 'real' or 'generated' (which offset rule applies).
    fps: the frame rate video files are decoded at (video.py resamples by
      the frames' timestamps); arrays are taken as they are.
    on_skip: called with (name, reason) for each skipped video.

  Yields:
    Clip per video taken.

  Raises:
    FVDError: on a video too short for the protocol (when it does not skip
      them). video.VideoError: on a file that cannot be decoded.
  """
  _check_choice('role', role, ROLES)
  offset = protocol.real_offset if role == 'real' else protocol.generated_offset
  rng = np.random.default_rng(protocol.seed)
  need = protocol.clip_frames or MIN_FRAMES
  taken = 0
  for index in range(len(videos)):
    if protocol.num_clips is not None and taken >= protocol.num_clips:
      return
    if videos.array is not None:
      name = f'{videos.description}[{index}]'
      frames = videos.array[index]
    else:
      name = videos.paths[index]
      frames, _ = video.load_frames(name, fps=fps, short_side=None)
    if len(frames) < need:
      reason = f'{len(frames)} frames, fewer than the {need} ' + (
          'of a clip' if protocol.clip_frames else "that I3D's logits need"
      )
      if protocol.skip_short:
        if on_skip:
          on_skip(name, reason)
        continue
      raise FVDError(
          f'Video {name} has {reason}; use longer videos'
          + (', or a smaller clip length.' if protocol.clip_frames else '.')
      )
    if protocol.clip_frames:
      start = _clip_start(len(frames), protocol.clip_frames, offset, rng)
      frames = frames[start : start + protocol.clip_frames]
    taken += 1
    yield Clip(name, np.asarray(frames))


def expected_clips(videos: VideoSet, protocol: Protocol) -> int:
  """At most this many clips come out of iter_clips (for progress bars)."""
  if protocol.num_clips is None:
    return len(videos)
  return min(len(videos), protocol.num_clips)


def _batches(
    clips: Iterable[Clip], batch_size: int
) -> Iterator[Tuple[List[str], np.ndarray]]:
  """Consecutive clips of one shape, at most batch_size at a time."""
  names, frames = [], []
  for clip in clips:
    if frames and (
        len(frames) == batch_size or clip.frames.shape != frames[0].shape
    ):
      yield names, np.stack(frames)
      names, frames = [], []
    names.append(clip.name)
    frames.append(clip.frames)
  if frames:
    yield names, np.stack(frames)


def compute_stats(
    clips: Iterable[Clip],
    embedder: Embedder,
    protocol: Protocol,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Optional[Callable[[int], None]] = None,
    skipped: int = 0,
) -> SetStats:
  """Embeds clips batch by batch into streaming statistics.

  Args:
    clips: from iter_clips, or any Clip objects.
    embedder: the network.
    protocol: gives the covariance estimator and is recorded.
    batch_size: clips per forward pass; memory grows with it.
    progress: called with the number of clips of each batch.
    skipped: the number of skipped videos, recorded.

  Raises:
    FVDError: an empty set, a single clip, or a bad clip (rank, channels,
      values, length).
  """
  if not isinstance(batch_size, int) or batch_size < 1:
    raise FVDError(f'`batch_size` must be a positive int; got {batch_size!r}.')
  stats = Stats()
  for names, batch in _batches(clips, batch_size):
    arg = names[0] if len(names) == 1 else f'{names[0]} .. {names[-1]}'
    stats.add(embedder(batch, arg))
    if progress:
      progress(len(names))
  if stats.count == 0:
    raise FVDError(
        'The set has no clip to embed'
        + (f' ({skipped} videos were too short)' if skipped else '')
        + '; pass videos with at least one clip.'
    )
  return finish(stats, protocol, skipped)
