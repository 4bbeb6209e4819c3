"""Per-window I3D features of many videos, resumable, in bounded memory.

What extract_features.py runs:

  * `find_videos`: what `inputs` names (a folder, a glob, a file or a list
    file) -> videos, each with a unique output name.
  * `window_starts` / `iter_windows`: fixed-length windows of a recipe.Clip
    (the published recipe, both streams from one decoding pass).
  * `Extractor`: windows -> batched features -> resumable .npy + .json
    outputs, with decoding and flow running in a background thread while the
    network runs.

Windows. Every window has exactly `window` frames at 25 fps. They start at
frames 0, stride, 2 * stride, ... while they fit; if the last of them ends
before the video does, one more window is aligned to the end of the video
(it overlaps the one before), so the end is always covered. A video shorter
than `window` gives one window: its frames repeated from the start up to
`window` frames (looped), as video.py loops clips too short for I3D. A
window's feature is the endpoint's output averaged over time and space
(Mixed_5c: 1024 values; Logits: one per class).

Outputs of `Extractor.run`, per video and stream (names mirror the video's
path relative to the input folder, see `find_videos`):

  <output_dir>/<name>_<stream>.npy   float32 [num_windows, dim]
  <output_dir>/<name>.json           windows (seconds and frames), fps, frame
                                     count, source, checkpoint per stream,
                                     endpoint, window/stride, preprocessing,
                                     whether looped

Resuming. Every file is written to a temporary file in its folder and renamed
into place, the JSON last. A video counts as finished when its JSON exists,
was made with the same endpoint, window, stride, preprocessing and
checkpoint names, and lists every requested stream whose .npy exists with the
recorded shape. Finished videos are skipped; for the others only the streams
not yet finished are computed. An interrupted run thus never leaves a file
that looks finished: a killed run leaves at most .npy files without a JSON
(recomputed next time) or hidden `.*.tmp` files (ignored; safe to delete).
Do not run two extractions into one output folder at the same time.

Memory, independent of the video's length: `Extractor` holds about
(2 x batch_size + 2) windows of model input (RGB, window 64: 38.5 MB each)
plus the activations of one batch (about 4 MB per frame: 1 GB for 4 windows
of 64 frames), and the features.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import glob
import json
import os
import sys
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Set,
    Tuple,
)

from absl import logging
import numpy as np
import tqdm

import fileio
import i3d
import inference
import recipe
import video

STREAMS = recipe.VALID_STREAMS

# What a folder given as --inputs contributes (case-insensitive).
# Containers taken by their extension in a folder scan; any other file
# (except NOT_VIDEO_EXTENSIONS) is probed with PyAV and taken if it opens as a
# video, so every container PyAV reads is found.
VIDEO_EXTENSIONS = (
    '.3g2', '.3gp', '.asf', '.avi', '.divx', '.dv', '.f4v', '.flv', '.m2ts',
    '.m2v', '.m4v', '.mkv', '.mov', '.mp4', '.mpeg', '.mpg', '.mts', '.mxf',
    '.nut', '.ogv', '.qt', '.rm', '.rmvb', '.ts', '.vob', '.webm', '.wmv',
    '.y4m',
)  # fmt: skip
# Never probed: common files that sit beside videos.
NOT_VIDEO_EXTENSIONS = (
    '.csv', '.json', '.md', '.npy', '.npz', '.txt', '.srt', '.vtt', '.xml',
    '.jpg', '.jpeg', '.png', '.py', '.sh', '.pdf', '.html', '.yaml', '.yml',
)  # fmt: skip

DEFAULT_ENDPOINT = 'Mixed_5c'
DEFAULT_WINDOW = 64
DEFAULT_STRIDE = 64
DEFAULT_BATCH_SIZE = 4

# Written into, and required of, every features JSON.
FORMAT = 'i3d-window-features/1'

# The recipe, as recorded in every features JSON.
PREPROCESSING = {
    'fps': video.FPS,
    'resize_short_side': video.RESIZE_SHORT_SIDE,
    'resize': 'bilinear',
    'crop': 'center',
    'crop_size': recipe.CROP_SIZE,
    'rgb_range': [-1.0, 1.0],
    'flow': 'TV-L1 (OpenCV DualTVL1, default settings) on grayscale resized '
    'frames; flow[t] is frame t -> t + 1, the last repeats the one '
    'before',
    'flow_bound': recipe.FLOW_BOUND,
    'flow_range': [-1.0, 1.0],
}
# The same for each of recipe.RECIPES ('kinetics_i3d' records PREPROCESSING
# as before, so earlier outputs stay resumable).
PREPROCESSINGS = {
    'kinetics_i3d': PREPROCESSING,
    'mediapipe': {
        **PREPROCESSING,
        'recipe': 'mediapipe',
        'resize_short_side': None,
        'resize': 'MediaPipe ScaleImageCalculator: height 256 (aspect kept, '
        'wider than 16:9 or narrower than 9:16 centre-cropped first, width '
        'even), INTER_AREA down, linear-light INTER_CUBIC up',
        'rgb_storage': 'JPEG quality 100 (OpenCV), decoded with the fast '
        'integer DCT',
        'flow': 'TV-L1 (OpenCV DualTVL1, default settings) on grayscale scaled '
        'frames, quantised to 8 bits over [-20, 20] px (truncated) and stored '
        'as JPEG quality 100; flow[t] is frame t -> t + 1, the last repeats '
        'the one before',
    },
}


class InputError(ValueError):
  """`--inputs` names no video, or a list file cannot be read."""


# --------------------------------------------------------------------------
# Which videos.


@dataclasses.dataclass(frozen=True)
class VideoInput:
  """One video to process.

  Attributes:
    path: The file, as found or listed (list entries made absolute).
    name: Its output name: the path relative to the input folder (or the
      common folder of a glob's or list's files), '/'-separated, without the
      extension (kept only where two videos would otherwise share a name).
  """

  path: str
  name: str


def find_videos(inputs: str) -> List[VideoInput]:
  """The videos that `inputs` names, in a stable (sorted or listed) order.

  Args:
    inputs: One of
      * a folder: every file in it and its subfolders, recursively, whose
        extension is one of VIDEO_EXTENSIONS (any case); hidden files and
        folders are skipped. Names are paths relative to the folder.
      * '@' followed by a list file: one video path per line; blank lines and
        lines starting with '#' are skipped; relative paths are relative to
        the list file's folder. Any extension is taken. Listed files that do
        not exist are kept, so that they are reported as failures.
      * a glob pattern (with *, ? or [...]; ** matches subfolders): the
        files it matches, any extension.
      * a single file.
      For the last three, names are relative to the files' common folder.

  Returns:
    VideoInput per video, with unique names.

  Raises:
    InputError: if `inputs` is none of these, a list file cannot be read, or
      no video is found.
  """
  if inputs.startswith('@'):
    paths = _read_list(inputs[1:])
    return _name_videos(paths, _common_folder(paths), f'list {inputs[1:]!r}')
  if os.path.isdir(inputs):
    paths, skipped = [], []
    for folder, subfolders, files in os.walk(inputs):
      subfolders[:] = sorted(d for d in subfolders if not d.startswith('.'))
      for f in sorted(files):
        if f.startswith('.'):
          continue
        path = os.path.join(folder, f)
        if _looks_like_video(path):
          paths.append(path)
        else:
          skipped.append(path)
    if skipped:
      logging.warning(
          'Skipped %d files of folder %r that are not videos: %s%s',
          len(skipped),
          inputs,
          ', '.join(os.path.relpath(p, inputs) for p in skipped[:5]),
          ', ...' if len(skipped) > 5 else '',
      )
    if not paths:
      raise InputError(
          f'Folder {inputs!r} has no video files (searched recursively; '
          f'{len(skipped)} other files skipped); pass another folder, a glob '
          'such as "clips/*.mpg", or @list.txt.'
      )
    return _name_videos(paths, inputs, f'folder {inputs!r}')
  if glob.has_magic(inputs):
    paths = sorted(
        p for p in glob.glob(inputs, recursive=True) if os.path.isfile(p)
    )
    if not paths:
      raise InputError(
          f'The glob {inputs!r} matches no file; check the '
          'pattern (quote it so that the shell leaves it alone).'
      )
    return _name_videos(paths, _common_folder(paths), f'glob {inputs!r}')
  if os.path.isfile(inputs):
    return _name_videos([inputs], os.path.dirname(inputs) or '.', inputs)
  raise InputError(
      f'`inputs` {inputs!r} is not a folder, a file, a glob that matches '
      'files, or @ followed by a list file (one video path per line).'
  )


def _looks_like_video(path: str) -> bool:
  """A video extension, or (any other but NOT_VIDEO_EXTENSIONS) PyAV opens it."""
  ext = os.path.splitext(path)[1].lower()
  if ext in VIDEO_EXTENSIONS:
    return True
  if ext in NOT_VIDEO_EXTENSIONS:
    return False
  try:
    video.probe(path)
  except video.VideoError:
    return False
  return True


def _read_list(path: str) -> List[str]:
  try:
    with open(path, encoding='utf-8') as f:
      lines = [line.strip() for line in f]
  except (OSError, UnicodeDecodeError) as e:
    raise InputError(
        f'Cannot read the list file {path!r}: {e}. Pass '
        '@FILE with one video path per line.'
    ) from e
  folder = os.path.dirname(os.path.abspath(path))
  paths = []
  for line in lines:
    if line and not line.startswith('#'):
      paths.append(os.path.normpath(os.path.join(folder, line)))
  if not paths:
    raise InputError(
        f'The list file {path!r} names no video; write one '
        'video path per line.'
    )
  return list(dict.fromkeys(paths))  # Drop repeats, keep the order.


def _common_folder(paths: Sequence[str]) -> str:
  return os.path.commonpath(
      [os.path.dirname(os.path.abspath(p)) for p in paths]
  )


def _name_videos(
    paths: Sequence[str], root: str, source: str
) -> List[VideoInput]:
  """Names = paths relative to `root`; extensions kept where names clash."""
  relative = [
      os.path.relpath(os.path.abspath(p), os.path.abspath(root)) for p in paths
  ]
  stems = [os.path.splitext(r)[0] for r in relative]
  counts = collections.Counter(stems)
  names = [
      (r if counts[s] > 1 else s).replace(os.sep, '/')
      for r, s in zip(relative, stems)
  ]
  if len(set(names)) != len(names):  # Only if a list names one file twice.
    raise InputError(f'The {source} names one video twice: {names}.')
  return [VideoInput(p, n) for p, n in zip(paths, names)]


# --------------------------------------------------------------------------
# Windows.


def check_window(
    window: int, stride: int, endpoint: str = DEFAULT_ENDPOINT
) -> None:
  """Raises ValueError unless `window` and `stride` fit `endpoint`."""
  if endpoint not in i3d.VALID_ENDPOINTS:
    raise ValueError(
        f'`endpoint` must be one of {i3d.VALID_ENDPOINTS}; got '
        f'{endpoint!r}.'
    )
  min_frames = i3d.min_input_size(endpoint)[0]
  if not isinstance(window, int) or window < min_frames:
    raise ValueError(
        f'`window` must be an int of at least {min_frames} '
        f'frames for endpoint {endpoint!r}; got {window!r}.'
    )
  if not isinstance(stride, int) or stride < 1:
    raise ValueError(
        f'`stride` must be a positive int (frames); got ' f'{stride!r}.'
    )


def window_starts(num_frames: int, window: int, stride: int) -> List[int]:
  """First frames of the windows of a `num_frames`-frame video.

  0, stride, 2 * stride, ... while a whole window fits; then, if the video
  goes on past the last of them, num_frames - window (aligned to the end). A
  video shorter than `window` has one window at 0 (looped).

  Raises:
    ValueError: for non-positive arguments.
  """
  for arg, value in (
      ('num_frames', num_frames),
      ('window', window),
      ('stride', stride),
  ):
    if not isinstance(value, int) or value < 1:
      raise ValueError(f'`{arg}` must be a positive int; got {value!r}.')
  if num_frames <= window:
    return [0]
  starts = list(range(0, num_frames - window + 1, stride))
  if starts[-1] + window < num_frames:
    starts.append(num_frames - window)
  return starts


@dataclasses.dataclass(frozen=True, eq=False)
class Window:
  """One window of model input.

  Attributes:
    index: Its number in the video, from 0.
    start: First frame.
    end: One past the last frame of the video it holds (start + window,
      or the video's length when looped).
    looped: Whether the video was shorter than the window and repeated.
    inputs: stream -> float32 [window, 224, 224, C].
  """

  index: int
  start: int
  end: int
  looped: bool
  inputs: Dict[str, np.ndarray]


def iter_windows(
    frames: Iterable[Mapping[str, np.ndarray]], window: int, stride: int
) -> Iterator[Window]:
  """Cuts a stream of frames into the windows of `window_starts`.

  Holds at most `window` frames besides the window being yielded, however
  long the stream.

  Args:
    frames: {stream: [H, W, C]} per frame, e.g. a Clip.
    window: Frames per window.
    stride: Frames between window starts.

  Yields:
    Windows in order.

  Raises:
    ValueError: for an empty stream or bad `window`/`stride`.
  """
  window_starts(1, window, stride)  # Checks the arguments.
  ring: collections.deque = collections.deque(maxlen=window)
  count = last_end = index = 0
  for frame in frames:
    ring.append(frame)
    count += 1
    if count >= window and (count - window) % stride == 0:
      yield Window(index, count - window, count, False, _stack(ring))
      index += 1
      last_end = count
  if not count:
    raise ValueError(
        'The stream of frames is empty; there is nothing to cut '
        'into windows.'
    )
  if count < window:
    looped = [ring[i % count] for i in range(window)]
    yield Window(0, 0, count, True, _stack(looped))
  elif last_end < count:
    yield Window(index, count - window, count, False, _stack(ring))


def _stack(frames: Sequence[Mapping[str, np.ndarray]]) -> Dict[str, np.ndarray]:
  return {s: np.stack([f[s] for f in frames]) for s in frames[0]}


# --------------------------------------------------------------------------
# Extraction.


@dataclasses.dataclass
class Extracted:
  """Features of one video.

  Attributes:
    features: stream -> float32 [num_windows, dim].
    record: The JSON-ready metadata (see `Extractor.record`).
  """

  features: Dict[str, np.ndarray]
  record: Dict[str, Any]


@dataclasses.dataclass
class Summary:
  """What `Extractor.run` did.

  Attributes:
    extracted: Videos whose outputs were written.
    skipped: Videos already finished before the run.
    failed: (video, message) per video that failed.
  """

  extracted: List[VideoInput] = dataclasses.field(default_factory=list)
  skipped: List[VideoInput] = dataclasses.field(default_factory=list)
  failed: List[Tuple[VideoInput, str]] = dataclasses.field(default_factory=list)


def output_paths(
    output_dir: str, name: str, streams: Sequence[str]
) -> Tuple[str, Dict[str, str]]:
  """(<output_dir>/<name>.json, {stream: <output_dir>/<name>_<stream>.npy})."""
  base = os.path.join(output_dir, *name.split('/'))
  return base + '.json', {s: f'{base}_{s}.npy' for s in streams}


def describe_error(error: BaseException) -> str:
  """One line for a failed video: the message, with the type if unexpected."""
  text = str(error).strip() or type(error).__name__
  if isinstance(error, video.VideoError):
    return text
  return f'{type(error).__name__}: {text}'


class _Batcher:
  """Collects one video's windows into batches and runs the network on them.

  Windows are copied into a preallocated [batch, window, H, W, C] array as
  they come, so a batch never exists twice.
  """

  def __init__(self, extractor: 'Extractor', streams: Sequence[str]):
    self._x = extractor
    self._streams = streams
    self._batch: Dict[str, np.ndarray] = {}
    self._filled = 0
    self._features: Dict[str, List[np.ndarray]] = {s: [] for s in streams}
    self.windows: List[Tuple[int, int, bool]] = []

  def add(self, window: Window) -> None:
    if not self._batch:
      self._batch = {
          s: np.empty(
              (self._x.batch_size,) + window.inputs[s].shape, np.float32
          )
          for s in self._streams
      }
    for s in self._streams:
      self._batch[s][self._filled] = window.inputs[s]
    self._filled += 1
    self.windows.append((window.start, window.end, window.looped))
    if self._filled == self._x.batch_size:
      self._flush()

  def _flush(self) -> None:
    if self._filled:
      for s in self._streams:
        out = self._x.predictors[s].features(
            self._batch[s][: self._filled], self._x.endpoint
        )
        self._features[s].append(np.asarray(out, np.float32))
    self._batch = {}
    self._filled = 0

  def finish(self) -> Dict[str, np.ndarray]:
    self._flush()
    return {s: np.concatenate(f) for s, f in self._features.items()}


class Extractor:
  """Per-window features of videos, with restored models loaded once.

  Usage:

    extractor = features.Extractor.load({'rgb': prefix}, 'Mixed_5c')
    summary = extractor.run(features.find_videos('clips/'), 'out/feats')
  """

  @classmethod
  def load(
      cls,
      checkpoint_prefixes: Mapping[str, str],
      endpoint: str,
      num_classes: Optional[int] = None,
      **settings,
  ) -> 'Extractor':
    """Restores each stream's checkpoint, up to `endpoint`, into a Predictor.

    Args:
      checkpoint_prefixes: stream -> checkpoint prefix.
      endpoint: One of i3d.VALID_ENDPOINTS.
      num_classes: The classes every checkpoint must have, or None for any
        (see inference.load_predictors).
      **settings: window, stride, batch_size, flow_workers as for __init__.

    Returns:
      The Extractor.

    Raises:
      checkpoints.CheckpointError: a checkpoint is missing or does not fit.
    """
    final_endpoint = (
        'Logits' if endpoint in inference.HEAD_ENDPOINTS else endpoint
    )
    predictors = inference.load_predictors(
        checkpoint_prefixes, final_endpoint, num_classes=num_classes
    )
    return cls(predictors, checkpoint_prefixes, endpoint=endpoint, **settings)

  def __init__(
      self,
      predictors: Mapping[str, inference.Predictor],
      checkpoint_prefixes: Mapping[str, str],
      endpoint: str = DEFAULT_ENDPOINT,
      window: int = DEFAULT_WINDOW,
      stride: int = DEFAULT_STRIDE,
      batch_size: int = DEFAULT_BATCH_SIZE,
      flow_workers: Optional[int] = None,
      flow_backend: str = recipe.DEFAULT_FLOW_BACKEND,
      recipe_name: str = recipe.DEFAULT_RECIPE,
  ):
    """Checks the settings.

    Args:
      predictors: stream -> Predictor; their streams are the ones extracted.
      checkpoint_prefixes: stream -> the checkpoint each Predictor was
        restored from (recorded in the JSON; its folder name is the
        checkpoint name that resuming compares).
      endpoint: One of i3d.VALID_ENDPOINTS that the predictors compute.
      window: Frames per window (at least i3d.min_input_size(endpoint)).
      stride: Frames between window starts.
      batch_size: Windows per forward pass.
      flow_workers: Processes for TV-L1; None = all cores.
      flow_backend: TV-L1 implementation, one of recipe.FLOW_BACKENDS.
      recipe_name: One of recipe.RECIPES (recorded as `preprocessing`).

    Raises:
      ValueError: on a bad setting.
    """
    self.streams = recipe.check_streams(list(predictors))
    missing = [s for s in self.streams if s not in checkpoint_prefixes]
    if missing:
      raise ValueError(
          f'`checkpoint_prefixes` lacks the streams {missing}; '
          'give the checkpoint of every predictor.'
      )
    check_window(window, stride, endpoint)
    for stream in self.streams:
      if endpoint not in predictors[stream].endpoints:
        raise ValueError(
            f'The {stream} model stops before endpoint {endpoint!r}; build it '
            f'with final_endpoint={endpoint!r} or later (valid: '
            f'{", ".join(predictors[stream].endpoints)}).'
        )
    if not isinstance(batch_size, int) or batch_size < 1:
      raise ValueError(
          f'`batch_size` must be a positive int; got ' f'{batch_size!r}.'
      )
    self.predictors = dict(predictors)
    self.checkpoint_prefixes = {s: checkpoint_prefixes[s] for s in self.streams}
    self.endpoint = endpoint
    self.window = window
    self.stride = stride
    self.batch_size = batch_size
    self.flow_workers = flow_workers
    self.flow_backend = recipe.check_backend(flow_backend)
    self.recipe_name = recipe.check_recipe(recipe_name)
    self.preprocessing = PREPROCESSINGS[recipe_name]

  # ---- one video, in this thread -------------------------------------------

  def extract(
      self, path: str, streams: Optional[Sequence[str]] = None
  ) -> Extracted:
    """Features of one video, computed in this thread (no outputs written).

    Args:
      path: A video file.
      streams: A subset of self.streams; all of them when None.

    Returns:
      The features and their metadata record.

    Raises:
      video.VideoError: for a bad file.
    """
    streams = self.streams if streams is None else recipe.check_streams(streams)
    clip = recipe.Clip(
        path,
        streams,
        workers=self.flow_workers,
        flow_backend=self.flow_backend,
        recipe_name=self.recipe_name,
    )
    batcher = _Batcher(self, streams)
    for window in iter_windows(clip, self.window, self.stride):
      batcher.add(window)
    features = batcher.finish()
    return Extracted(
        features, self.record(path, clip, batcher.windows, features)
    )

  def record(
      self,
      path: str,
      clip: recipe.Clip,
      windows: Sequence[Tuple[int, int, bool]],
      features: Mapping[str, np.ndarray],
      name: Optional[str] = None,
  ) -> Dict[str, Any]:
    """The JSON-ready metadata of one video's features.

    Args:
      path: The video file.
      clip: Its Clip, iterated to the end.
      windows: (start frame, end frame, looped) per window.
      features: stream -> [num_windows, dim].
      name: The output name, if written by `run`.
    """
    fps = video.FPS
    first = next(iter(features.values()))
    streams = {}
    for stream, array in features.items():
      prefix = self.checkpoint_prefixes[stream]
      streams[stream] = {
          'shape': list(array.shape),
          'checkpoint': os.path.basename(
              os.path.dirname(os.path.abspath(prefix))
          ),
          'checkpoint_path': os.path.abspath(prefix),
      }
      if name is not None:
        streams[stream]['file'] = os.path.basename(
            output_paths('', name, [stream])[1][stream]
        )
    return {
        'format': FORMAT,
        'source': os.path.abspath(path),
        **({'name': name} if name is not None else {}),
        'streams': streams,
        'endpoint': self.endpoint,
        'feature_dim': int(first.shape[1]),
        'pooling': 'mean over time and space of the endpoint within each '
        'window',
        'window': self.window,
        'stride': self.stride,
        'tail': 'windows start every `stride` frames while they fit; one more '
        'is aligned to the end if the video goes on; a video shorter '
        'than `window` is looped from its start to one window',
        'num_windows': len(windows),
        'windows': [
            {
                'start_s': round(clip.start_time + a / fps, 6),
                'end_s': round(clip.start_time + b / fps, 6),
                'start_frame': a,
                'end_frame': b,
            }
            for a, b, _ in windows
        ],
        'fps': fps,
        'num_frames': clip.num_frames,
        'duration_s': round(clip.num_frames / fps, 6),
        'looped': any(looped for _, _, looped in windows),
        'frame_size': list(clip.frame_size),
        'crop_offset': list(clip.crop_offset),
        'preprocessing': self.preprocessing,
        'inference_mode': next(iter(self.predictors.values())).mode,
    }

  # ---- many videos, resumable ----------------------------------------------

  def finished_streams(self, json_path: str) -> Tuple[Set[str], Optional[Dict]]:
    """Which streams of an earlier run's outputs can be kept.

    Returns:
      (streams whose .npy exists with the recorded shape and whose settings
      and checkpoint match this extractor's, the earlier JSON record or None).
    """
    try:
      with open(json_path, encoding='utf-8') as f:
        old = json.load(f)
    except FileNotFoundError:
      return set(), None
    except (OSError, ValueError) as e:
      logging.warning('Recomputing: cannot read %s (%s).', json_path, e)
      return set(), None
    settings = {
        'format': FORMAT,
        'endpoint': self.endpoint,
        'window': self.window,
        'stride': self.stride,
        'preprocessing': self.preprocessing,
    }
    if not isinstance(old, dict) or any(
        old.get(k) != v for k, v in settings.items()
    ):
      logging.warning(
          'Recomputing %s: it was made with other settings.', json_path
      )
      return set(), None
    folder = os.path.dirname(json_path)
    done = set()
    for stream, entry in (old.get('streams') or {}).items():
      if stream not in self.streams or not isinstance(entry, dict):
        continue
      prefix = self.checkpoint_prefixes[stream]
      name = os.path.basename(os.path.dirname(os.path.abspath(prefix)))
      if entry.get('checkpoint') != name:
        continue
      npy = os.path.join(folder, str(entry.get('file')))
      try:
        shape = list(np.load(npy, mmap_mode='r').shape)
      except (OSError, ValueError):
        continue
      if shape == entry.get('shape'):
        done.add(stream)
    return done, old

  def run(
      self,
      videos: Sequence[VideoInput],
      output_dir: str,
      progress: bool = True,
      log: Optional[Callable[[str], None]] = None,
  ) -> Summary:
    """Extracts and writes the features of every unfinished video.

    Videos are decoded (and their flow computed) in a background thread,
    up to `batch_size` windows ahead of the network. A video that fails is
    reported through `log` and skipped; the run goes on.

    Args:
      videos: From `find_videos`.
      output_dir: Root of the outputs (see the module docstring).
      progress: Show tqdm bars over the videos and the current video's
        windows on stderr.
      log: Called with one line per failed video; logging.warning if None.

    Returns:
      A Summary.
    """
    log = log or logging.warning
    summary = Summary()
    todo = []
    for item in videos:
      json_path, _ = output_paths(output_dir, item.name, self.streams)
      done, old = self.finished_streams(json_path)
      streams = tuple(s for s in self.streams if s not in done)
      if streams:
        todo.append((item, streams, old, done))
      else:
        summary.skipped.append(item)

    def events() -> Iterator[Tuple[str, int, Any]]:
      for key, (item, streams, _, _) in enumerate(todo):
        try:
          clip = recipe.Clip(
              item.path,
              streams,
              workers=self.flow_workers,
              flow_backend=self.flow_backend,
              recipe_name=self.recipe_name,
          )
          for window in iter_windows(clip, self.window, self.stride):
            yield 'window', key, window
          yield 'done', key, clip
        except Exception as e:  # pylint: disable=broad-except
          yield 'error', key, e  # One bad video must not stop the others.

    failed: Set[int] = set()

    def fail(key: int, error: BaseException) -> None:
      item = todo[key][0]
      message = describe_error(error)
      failed.add(key)
      summary.failed.append((item, message))
      log(f'FAILED {item.path}: {message}')

    bar = tqdm.tqdm(
        total=len(videos),
        initial=len(summary.skipped),
        unit='video',
        desc='videos',
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    )
    # Windows of the current video as the network takes them (TV-L1 flow of
    # one window can take minutes), reset for each video.
    windows_bar = tqdm.tqdm(
        unit='window',
        desc='windows',
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
        position=1,
        leave=False,
    )
    batcher = None
    current = -1
    # closing(): an exception here (even KeyboardInterrupt) stops the
    # background thread at once rather than when the traceback is freed.
    stream = contextlib.closing(recipe.prefetch(events(), self.batch_size))
    with bar, windows_bar, stream as queued:
      for kind, key, payload in queued:
        item, streams, old, done = todo[key]
        if key != current:
          current, batcher = key, _Batcher(self, streams)
        if kind == 'error':
          if key not in failed:
            fail(key, payload)
        elif key in failed:
          pass
        elif kind == 'window':
          try:
            batcher.add(payload)
            windows_bar.update(1)
          except Exception as e:  # pylint: disable=broad-except
            fail(key, e)
        else:
          try:
            features = batcher.finish()
            self._write(
                output_dir, item, payload, batcher.windows, features, old, done
            )
            summary.extracted.append(item)
          except Exception as e:  # pylint: disable=broad-except
            fail(key, e)
        if kind != 'window':
          batcher = None
          windows_bar.reset()
          bar.update(1)
          bar.set_postfix(failed=len(summary.failed), refresh=False)
    return summary

  def _write(
      self,
      output_dir: str,
      item: VideoInput,
      clip: recipe.Clip,
      windows: Sequence[Tuple[int, int, bool]],
      features: Mapping[str, np.ndarray],
      old: Optional[Dict],
      done: Set[str],
  ) -> None:
    """Writes the .npy files, then the JSON, each atomically."""
    json_path, npys = output_paths(output_dir, item.name, features)
    os.makedirs(os.path.dirname(json_path) or '.', exist_ok=True)
    for stream, array in features.items():
      fileio.write_npy(npys[stream], array)
    record = self.record(item.path, clip, windows, features, name=item.name)
    if old and done and old.get('num_frames') == record['num_frames']:
      kept = {s: old['streams'][s] for s in self.streams if s in done}
      record['streams'] = {
          s: {**kept, **record['streams']}[s]
          for s in self.streams
          if s in kept or s in record['streams']
      }
    fileio.write_json(json_path, record)
