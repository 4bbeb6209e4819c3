"""Classifying clips with the released checkpoints.

Two inputs, one result: the release's preprocessed sample arrays
(evaluate_sample.py) and any video file, preprocessed here by the published
recipe and streamed through the network in bounded memory
(classify_video.py). Both sum the streams' logits for the joint model and
pick checkpoints with assets.resolve.

A video is decoded once, whatever the streams: `clip_logits` reads one
recipe.Clip and hands each stream's frames to its model. A clip longer than
one chunk is streamed, which needs its length up front (the network's stride
grid depends on it, see streaming.py): one counting pass over the
timestamps (video.count_frames, which converts no frame) gives it.

Memory, independent of the video's length: about 2 x `chunk_frames` frames
of model input per stream (224 x 224 x C float32: 0.6 MB per RGB frame,
0.4 MB per flow frame), PREFETCH_FRAMES more queued, the decoder's and
TV-L1's few frames of lookahead, and the network's activations for one chunk
(a few MB per frame). Measured (RGB, CPU): a peak RSS of 1.26 GB with
chunk_frames=32 for an 8 s and for a 32 s clip alike, 1.9 GB at the default
128; about 1 GB of that is TensorFlow and the model.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
import itertools
import os
import queue
import threading
from typing import Any, Dict, List, Optional

import numpy as np
import tqdm

import assets
import inference
import recipe
import report
import video

# Model-input frames the background decoder may run ahead of the network.
PREFETCH_FRAMES = 32
# Frames per array handed to Predictor.logits_stream (it regroups them).
_STREAM_PIECE = 16


class InputError(ValueError):
  """An input (a sample array, or the frames of a video) cannot be used."""


def _raise_if_missing(needed: Mapping[str, str]) -> None:
  missing = assets.missing_message(needed)
  if missing:
    raise FileNotFoundError(missing)


# Values the model takes: RGB is x / 127.5 - 1 and flow is clipped to
# [-1, 1], so anything beyond this is another scaling (e.g. [0, 255]).
INPUT_RANGE = (-1.0, 1.0)
RANGE_SLACK = 0.5
# How model inputs are scaled, for the messages that refuse other scalings.
INPUT_SCALING = (
    'RGB: x / 127.5 - 1; flow: TV-L1 clipped to +-20 pixels and divided by 20'
)
_NPY_MAGIC = b'\x93NUMPY'


def check_input(
    sample: np.ndarray,
    stream: str,
    what: str,
    allow_out_of_range: bool = False,
) -> np.ndarray:
  """Checks one stream's model input, [B, T, 224, 224, C] float32 in [-1, 1].

  The dtype policy is float32 only, as the release's samples, the recipe's
  outputs and the SavedModel's signature are: float64 and integer arrays are
  refused with how to convert them, rather than silently cast.

  Args:
    sample: The array.
    stream: 'rgb' or 'flow'.
    what: How errors name the array, e.g. "the rgb sample 'x.npy'".
    allow_out_of_range: Accept finite values beyond [-1.5, 1.5].

  Returns:
    `sample`.

  Raises:
    InputError: a wrong shape, dtype, too few frames, NaN or Inf, or values
      far outside [-1, 1].
  """
  channels = assets.STREAM_CHANNELS[stream]
  if (
      sample.ndim != 5
      or sample.shape[-1] != channels
      or sample.shape[2:4] != (224, 224)
  ):
    raise InputError(
        f'{what} must be shaped [batch, frames, 224, 224, {channels}]; got '
        f'{list(sample.shape)}'
    )
  if sample.shape[1] < recipe.MIN_FRAMES or not sample.shape[0]:
    raise InputError(
        f'{what} has {sample.shape[1]} frames (batch {sample.shape[0]}); the '
        f'model needs at least {recipe.MIN_FRAMES} frames and a batch of 1 or '
        'more (preprocess_video.py loops short clips to 9 frames)'
    )
  if sample.dtype != np.float32:
    if np.issubdtype(sample.dtype, np.integer):
      how = 'scale RGB 0..255 with x / 127.5 - 1 and save float32'
    else:
      how = 'convert it with array.astype(np.float32)'
    raise InputError(
        f'{what} must be float32 in [-1, 1]; got dtype {sample.dtype}: {how}'
    )
  finite = np.isfinite(sample)
  if not finite.all():
    raise InputError(
        f'{what} holds {sample.size - int(finite.sum())} NaN or Inf values; '
        'the model needs finite float32 values in [-1, 1]'
    )
  low, high = float(sample.min()), float(sample.max())
  lo, hi = INPUT_RANGE
  if not allow_out_of_range and (
      low < lo - RANGE_SLACK or high > hi + RANGE_SLACK
  ):
    raise InputError(
        f'{what} holds values in [{low:g}, {high:g}], far outside the '
        f'[{lo:g}, {hi:g}] the model expects ({INPUT_SCALING}); rescale it, '
        'or allow it explicitly'
    )
  return sample


def load_sample(
    path: str, stream: str, allow_out_of_range: bool = False
) -> np.ndarray:
  """Loads and checks one stream's input, [B, T, 224, 224, C]; see check_input.

  Raises:
    InputError: the file is empty, not a .npy file, or holds a bad array.
  """
  what = f'The {stream} sample {path!r}'
  try:
    with open(path, 'rb') as f:
      magic = f.read(len(_NPY_MAGIC))
  except OSError as e:
    raise InputError(f'Cannot read {what[4:]}: {e.strerror}') from None
  if not magic:
    raise InputError(f'{what} is empty (0 bytes); write it again')
  if magic != _NPY_MAGIC:
    raise InputError(
        f'{what} is not a valid .npy file (it does not start with the .npy '
        'magic bytes); save arrays with numpy.save'
    )
  try:
    sample = np.load(path, allow_pickle=False)
  except (OSError, ValueError, EOFError) as e:
    raise InputError(
        f'{what} is not a valid .npy file ({type(e).__name__}: {e}); write '
        'it again with numpy.save'
    ) from None
  return check_input(sample, stream, what, allow_out_of_range)


@dataclasses.dataclass
class Classification:
  """What `classify_video` or `classify_arrays` found.

  Attributes:
    logits: [num_classes], summed over the streams.
    labels: The class names.
    details: JSON-ready facts about the clip and the models.
  """

  logits: np.ndarray
  labels: Sequence[str]
  details: Dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ClipLogits:
  """What `clip_logits` computed.

  Attributes:
    logits: Stream -> [num_classes].
    num_frames: Frames of the clip at 25 fps, before any looping.
    frames_used: Frames the network saw (recipe.MIN_FRAMES when looped).
    looped: Whether the clip was shorter than recipe.MIN_FRAMES and looped.
    streamed: Whether it ran in chunks (longer than one chunk).
  """

  logits: Dict[str, np.ndarray]
  num_frames: int
  frames_used: int
  looped: bool
  streamed: bool


def _pieces(frames: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
  """Stacks consecutive frames into arrays of up to `size` frames."""
  frames = iter(frames)
  while True:
    piece = list(itertools.islice(frames, size))
    if not piece:
      return
    yield np.stack(piece)


_DONE = object()


def _fan_out(
    frames: Iterable[Mapping[str, np.ndarray]],
    consumers: Mapping[str, Callable[[Iterable[np.ndarray]], Any]],
    max_queued: int,
) -> Dict[str, Any]:
  """Feeds each stream's frames to its consumer; returns their results.

  One consumer runs in this thread; the others each run in a thread of
  their own, fed through a bounded queue, so the frames are produced once
  and each consumer sees its stream in order.

  Args:
    frames: {stream: frame} per frame.
    consumers: Stream -> a function of an iterable of that stream's frames.
    max_queued: Frames each queue may hold.

  Returns:
    Stream -> what its consumer returned.
  """
  streams = list(consumers)
  if len(streams) == 1:
    (stream,) = streams
    return {stream: consumers[stream](f[stream] for f in frames)}
  queues = {s: queue.Queue(max_queued) for s in streams[1:]}
  results: Dict[str, Any] = {}
  failures: List[BaseException] = []  # In the order they happened.
  lock = threading.Lock()
  stop = threading.Event()

  def failed(error: BaseException) -> None:
    with lock:
      failures.append(error)
    stop.set()

  def drain(q: queue.Queue) -> Iterator[np.ndarray]:
    while True:
      item = q.get()
      if item is _DONE:
        return
      yield item

  def run(stream: str) -> None:
    try:
      results[stream] = consumers[stream](drain(queues[stream]))
    except BaseException as e:  # pylint: disable=broad-except
      failed(e)
      while queues[stream].get() is not _DONE:  # Unblock the producer.
        pass

  def first_stream() -> Iterator[np.ndarray]:
    for frame in frames:
      if stop.is_set():
        return
      for stream, q in queues.items():
        q.put(frame[stream])
      yield frame[streams[0]]

  threads = [
      threading.Thread(
          target=run, args=(s,), daemon=True, name=f'classification-{s}'
      )
      for s in queues
  ]
  for thread in threads:
    thread.start()
  try:
    results[streams[0]] = consumers[streams[0]](first_stream())
  except BaseException as e:  # pylint: disable=broad-except
    failed(e)
  finally:
    for q in queues.values():
      q.put(_DONE)  # Ends each stream; a failed consumer drains up to here.
    for thread in threads:
      thread.join()
  if failures:
    # The first failure is the cause; it stopped the other streams early.
    raise failures[0]
  return results


def clip_logits(
    predictors: Mapping[str, inference.Predictor],
    path: str,
    start: Optional[float] = None,
    end: Optional[float] = None,
    workers: Optional[int] = None,
    progress: bool = False,
    flow_backend: str = recipe.DEFAULT_FLOW_BACKEND,
    recipe_name: str = recipe.DEFAULT_RECIPE,
) -> ClipLogits:
  """Each stream's logits of a whole clip, from one decoding pass.

  The whole clip is evaluated convolutionally in time, as in the paper. The
  first `chunk_frames` frames are buffered: a clip that ends within them
  runs in one pass per stream (looped to recipe.MIN_FRAMES first if
  shorter). A longer clip is counted (video.count_frames: timestamps only)
  and streamed through each predictor's `logits_stream` with its length
  given, which equals one whole-clip pass to float32 round-off (1e-4).

  Args:
    predictors: Stream ('rgb', 'flow') -> a Predictor with a Logits head for
      that stream's channels; all with one chunk size.
    path: A video file.
    start: Clip start in seconds, or None.
    end: Clip end in seconds, or None.
    workers: Processes for TV-L1; None = all cores.
    progress: Show a tqdm bar on stderr: over the frames prepared (decoded,
      TV-L1) for the first chunk, with no total; then, for a clip longer than
      one chunk, over the frames of the clip's total that every stream's
      network has run.
    flow_backend: TV-L1 implementation, one of recipe.FLOW_BACKENDS.
    recipe_name: One of recipe.RECIPES.

  Returns:
    A ClipLogits.

  Raises:
    video.VideoError: for a bad file or clip.
    video.VideoError: also for frames the network cannot run.
  """
  streams = recipe.check_streams(list(predictors))
  chunk = min(predictors[s].chunk_frames for s in streams)
  clip = recipe.Clip(
      path,
      streams,
      start=start,
      end=end,
      workers=workers,
      flow_backend=flow_backend,
      recipe_name=recipe_name,
  )
  frames = recipe.prefetch(clip, PREFETCH_FRAMES)
  # One bar: first over the frames prepared for the first chunk (decoding
  # and, for flow, TV-L1, the slow part of a short clip), then, for a clip
  # longer than one chunk, over the frames as the network takes them.
  bar = tqdm.tqdm(
      unit='frame',
      desc=f'{"+".join(streams)} {os.path.basename(path)}',
      dynamic_ncols=True,
      disable=not progress,
      leave=False,
  )

  def counted(items: Iterable[Any]) -> Iterator[Any]:
    for item in items:
      bar.update(1)
      yield item

  try:
    head = list(itertools.islice(counted(frames), chunk + 1))
    if len(head) <= chunk:
      logits = {}
      for stream in streams:
        inputs, looped = recipe.loop_to_min_frames(
            np.stack([f[stream] for f in head]), recipe.MIN_FRAMES
        )
        logits[stream] = predictors[stream].logits(inputs[np.newaxis])[0]
      return ClipLogits(logits, len(head), len(inputs), looped, False)
    num_frames = video.count_frames(path, start, end)
    head = collections.deque(head)  # Let go of each frame once it is used.
    first = (head.popleft() for _ in range(len(head)))
    pending = itertools.chain(first, frames)
    bar.reset(total=num_frames)
    # The bar shows the frames every stream's network has run: the slowest.
    ran = dict.fromkeys(streams, 0)
    lock = threading.Lock()

    def consumer(stream: str):
      def on_frames(count: int) -> None:
        with lock:
          ran[stream] += count
          bar.update(min(ran.values()) - bar.n)

      def consume(stream_frames: Iterable[np.ndarray]) -> np.ndarray:
        return predictors[stream].logits_stream(
            _pieces(stream_frames, _STREAM_PIECE),
            num_frames=num_frames,
            on_frames=on_frames,
        )

      return consume

    try:
      logits = _fan_out(
          pending, {s: consumer(s) for s in streams}, max_queued=PREFETCH_FRAMES
      )
    except ValueError as e:
      if isinstance(e, video.VideoError):
        raise
      raise video.VideoError(
          f'Cannot run {"+".join(streams)} on {path!r}: ' f'{e}'
      ) from e
    return ClipLogits(logits, num_frames, num_frames, False, True)
  finally:
    bar.close()
    frames.close()


def _labels_and_predictors(
    resolved: assets.Resolved,
    label_map: str,
    inference_mode: str,
    chunk_frames: Optional[int] = None,
):
  predictors = inference.load_predictors(
      resolved.prefixes,
      mode=inference_mode,
      chunk_frames=chunk_frames,
      num_classes=resolved.expected_classes,
  )
  # The loaded models' class count: an override checkpoint (a model exported
  # by train.py) has its own, which its label map must match.
  num_classes = next(iter(predictors.values())).model.num_classes
  labels = report.load_labels(label_map, num_classes)
  return labels, predictors


def classify_video(
    video_path: str,
    eval_type: str,
    imagenet_pretrained: bool,
    checkpoint_dir: str,
    label_maps: Mapping[str, str],
    start: Optional[float] = None,
    end: Optional[float] = None,
    inference_mode: str = inference.DEFAULT_MODE,
    chunk_frames: Optional[int] = None,
    workers: Optional[int] = None,
    progress: bool = False,
    checkpoint_overrides: Optional[Mapping[str, str]] = None,
    flow_backend: str = recipe.DEFAULT_FLOW_BACKEND,
    recipe_name: str = recipe.DEFAULT_RECIPE,
) -> Classification:
  """Classifies one video clip, streaming long ones in bounded memory.

  Args:
    video_path: The video file.
    eval_type: One of assets.EVAL_TYPES.
    imagenet_pretrained: See assets.checkpoint_names.
    checkpoint_dir: Folder of <name>/model.ckpt checkpoints.
    label_maps: 'kinetics400' and 'kinetics600' -> label map path.
    start: Clip start in seconds, or None.
    end: Clip end in seconds, or None.
    inference_mode: One of inference.MODES; 'plain' checks 'fast' in tests.
    chunk_frames: Frames per streamed chunk; see inference.make_predictor.
    workers: Processes for TV-L1; None = all cores.
    progress: Show a progress bar over the frames of a streamed clip.
    checkpoint_overrides: Stream -> checkpoint prefix; see assets.resolve.
    flow_backend: TV-L1 implementation, one of recipe.FLOW_BACKENDS.
    recipe_name: One of recipe.RECIPES.

  Returns:
    A Classification.

  Raises:
    FileNotFoundError: checkpoints or a label map are missing, with what to
      fetch.
    video.VideoError: the video is missing, empty, corrupt or not a video.
    checkpoints.CheckpointError, report.LabelError: bad model files.
  """
  resolved = assets.resolve(
      eval_type, imagenet_pretrained, checkpoint_dir, checkpoint_overrides
  )
  label_map = label_maps[f'kinetics{resolved.num_classes}']
  _raise_if_missing(
      {'label map': label_map, **assets.restore_files(resolved.prefixes)}
  )
  info = video.probe(video_path)  # A bad file fails before the models load.
  recipe.check_recipe(recipe_name, info)
  labels, predictors = _labels_and_predictors(
      resolved, label_map, inference_mode, chunk_frames
  )
  result = clip_logits(
      predictors,
      video_path,
      start=start,
      end=end,
      workers=workers,
      progress=progress,
      flow_backend=flow_backend,
      recipe_name=recipe_name,
  )
  details = {
      'video': os.path.abspath(video_path),
      'eval_type': eval_type,
      'streams': list(predictors),
      'checkpoints': dict(resolved.checkpoints),
      'imagenet_pretrained': resolved.imagenet_pretrained,
      'start_s': start,
      'end_s': end,
      'fps': video.FPS,
      'frames': result.num_frames,
      'duration_s': round(result.num_frames / video.FPS, 6),
      'looped': result.looped,
      'frames_used': result.frames_used,
      'streamed': result.streamed,
      'source': {
          'width': info.width,
          'height': info.height,
          'fps': info.fps,
          'duration_s': info.duration,
          'codec': info.codec,
      },
      'inference_mode': inference_mode,
      'recipe': recipe_name,
  }
  return Classification(sum(result.logits.values()), labels, details)


def classify_arrays(
    eval_type: str,
    imagenet_pretrained: bool,
    checkpoint_dir: str,
    samples: Mapping[str, str],
    label_maps: Mapping[str, str],
    inference_mode: str = inference.DEFAULT_MODE,
    checkpoint_overrides: Optional[Mapping[str, str]] = None,
    allow_out_of_range: bool = False,
) -> Classification:
  """Classifies preprocessed inputs, as the release's sample script did.

  Args:
    eval_type: One of assets.EVAL_TYPES.
    imagenet_pretrained: See assets.checkpoint_names.
    checkpoint_dir: Folder of <name>/model.ckpt checkpoints.
    samples: Stream -> .npy of float32 [1, T, 224, 224, C] in [-1, 1].
    label_maps: 'kinetics400' and 'kinetics600' -> label map path.
    inference_mode: One of inference.MODES; 'plain' checks 'fast' in tests.
    checkpoint_overrides: Stream -> checkpoint prefix; see assets.resolve.
    allow_out_of_range: Accept finite inputs far outside [-1, 1].

  Returns:
    A Classification of the first clip in the batch.

  Raises:
    FileNotFoundError: with a message saying what to fetch.
    checkpoints.CheckpointError, InputError, report.LabelError: bad inputs.
  """
  resolved = assets.resolve(
      eval_type, imagenet_pretrained, checkpoint_dir, checkpoint_overrides
  )
  label_map = label_maps[f'kinetics{resolved.num_classes}']
  _raise_if_missing(
      {
          'label map': label_map,
          **{f'{s} sample': samples[s] for s in resolved.streams},
          **assets.restore_files(resolved.prefixes),
      }
  )
  # Every input is read and checked before any model loads.
  arrays = {
      s: load_sample(samples[s], s, allow_out_of_range)
      for s in resolved.streams
  }
  shapes = {s: a.shape[:2] for s, a in arrays.items()}
  if len(set(shapes.values())) > 1:
    raise InputError(
        'The rgb and flow samples must have the same batch size and number '
        'of frames (flow[t] is the flow from frame t to t + 1 of the same '
        'clip); got [batch, frames] '
        + ', '.join(f'{s} {list(v)}' for s, v in shapes.items())
    )
  labels, predictors = _labels_and_predictors(
      resolved, label_map, inference_mode
  )
  total = sum(
      predictor.logits(arrays[stream])
      for stream, predictor in predictors.items()
  )
  details = {
      'eval_type': eval_type,
      'streams': list(predictors),
      'checkpoints': dict(resolved.checkpoints),
      'inference_mode': inference_mode,
  }
  return Classification(total[0], labels, details)
