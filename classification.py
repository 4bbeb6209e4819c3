"""Classifying clips with the released checkpoints.

Two inputs, one result: the release's preprocessed sample arrays
(evaluate_sample.py) and any video file, preprocessed here by the published
recipe and streamed through the network in bounded memory
(classify_video.py). Both sum the streams' logits for the joint model and
pick checkpoints the same way (assets.checkpoint_names).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from absl import logging
import numpy as np

import assets
import checkpoints
import features
import inference
import report
import video

CHANNELS = checkpoints.STREAM_CHANNELS


class InputError(ValueError):
  """A sample input file is missing or malformed."""


def model_files(eval_type: str, imagenet_pretrained: bool,
                checkpoint_dir: str, label_maps: Mapping[str, str]
                ) -> Tuple[Dict[str, str], Dict[str, str], str]:
  """The release checkpoints and label map that `eval_type` uses.

  Args:
    eval_type: one of assets.EVAL_TYPES.
    imagenet_pretrained: see assets.checkpoint_names.
    checkpoint_dir: folder of <name>/model.ckpt checkpoints.
    label_maps: 'kinetics400' and 'kinetics600' -> label map path.

  Returns:
    (stream -> checkpoint name, stream -> checkpoint prefix, label map path).
  """
  names = assets.checkpoint_names(eval_type, imagenet_pretrained)
  if eval_type == 'rgb600' and imagenet_pretrained:
    logging.info('rgb600: the release has no ImageNet-pretrained Kinetics-600 '
                 'checkpoint; using rgb_scratch_kin600.')
  label_map = label_maps['kinetics600' if eval_type == 'rgb600'
                         else 'kinetics400']
  prefixes = {s: features.checkpoint_prefix(checkpoint_dir, n)
              for s, n in names.items()}
  return names, prefixes, label_map


def _raise_if_missing(needed: Mapping[str, str], flags_hint: str) -> None:
  missing = features.missing_message(needed, flags_hint)
  if missing:
    raise FileNotFoundError(missing)


def load_sample(path: str, stream: str) -> np.ndarray:
  """Loads and checks one stream's preprocessed input, [B, T, 224, 224, C]."""
  try:
    sample = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise InputError(f'Cannot read the {stream} sample {path!r}: {e}. Run '
                     '`python fetch_assets.py` to fetch it again.') from e
  channels = CHANNELS[stream]
  if (sample.ndim != 5 or sample.shape[-1] != channels
      or sample.shape[2:4] != (224, 224)):
    raise InputError(
        f'The {stream} sample {path!r} must be shaped [batch, frames, 224, '
        f'224, {channels}]; got {list(sample.shape)}.')
  if not np.issubdtype(sample.dtype, np.floating):
    raise InputError(f'The {stream} sample {path!r} must be float32 in '
                     f'[-1, 1]; got dtype {sample.dtype}.')
  return sample.astype(np.float32, copy=False)


@dataclasses.dataclass
class Classification:
  """What `classify` found.

  Attributes:
    logits: [num_classes], summed over the streams.
    labels: The class names.
    details: JSON-ready facts about the clip and the models.
  """
  logits: np.ndarray
  labels: Sequence[str]
  details: Dict[str, Any]


def classify_video(video_path: str, eval_type: str, imagenet_pretrained: bool,
             checkpoint_dir: str, label_maps: Mapping[str, str],
             start: Optional[float] = None, end: Optional[float] = None,
             inference_path: str = inference.DEFAULT_PATH,
             chunk_frames: Optional[int] = None,
             flow_workers: Optional[int] = None,
             progress: bool = False) -> Classification:
  """Classifies one video clip, streaming long ones in bounded memory.

  Args:
    video_path: The video file.
    eval_type: One of assets.EVAL_TYPES.
    imagenet_pretrained: See --imagenet_pretrained.
    checkpoint_dir: Folder of <name>/model.ckpt checkpoints.
    label_maps: 'kinetics400' and 'kinetics600' -> label map path.
    start: Clip start in seconds, or None.
    end: Clip end in seconds, or None.
    inference_path: One of inference.PATHS.
    chunk_frames: Frames per streamed chunk; see inference.make_predictor.
    flow_workers: Processes for TV-L1; None = all cores.
    progress: Show a progress bar over the frames of a streamed clip.

  Returns:
    A Classification.

  Raises:
    FileNotFoundError: checkpoints or a label map are missing, with what to
      fetch or pass.
    video.VideoError: the video is missing, empty, corrupt or not a video.
    checkpoints.CheckpointError, report.LabelError: bad model files.
  """
  names, prefixes, label_map = model_files(
      eval_type, imagenet_pretrained, checkpoint_dir, label_maps)
  _raise_if_missing({'label map': label_map,
                     **features.checkpoint_files(prefixes)},
                    '--checkpoint_dir, --label_map or --label_map_600')
  info = video.probe(video_path)  # A bad file fails before the models load.

  predictors = features.load_predictors(prefixes, path=inference_path,
                                        chunk_frames=chunk_frames)
  labels = None
  total = None
  num_frames = None
  per_stream = {}
  for stream, predictor in predictors.items():
    if labels is None:
      labels = report.load_labels(label_map, predictor.model.num_classes)
    result = features.stream_logits(
        predictor, video_path, stream, start=start, end=end,
        num_frames=num_frames, flow_workers=flow_workers, progress=progress)
    num_frames = result.num_frames
    per_stream[stream] = result
    total = result.logits if total is None else total + result.logits
  result = next(iter(per_stream.values()))
  details = {
      'video': os.path.abspath(video_path),
      'eval_type': eval_type,
      'streams': list(predictors),
      'checkpoints': dict(names),
      'imagenet_pretrained': eval_type != 'rgb600' and imagenet_pretrained,
      'start_s': start,
      'end_s': end,
      'fps': video.FPS,
      'frames': result.num_frames,
      'duration_s': round(result.num_frames / video.FPS, 6),
      'looped': result.looped,
      'frames_used': result.frames_used,
      'streamed': result.streamed,
      'source': {'width': info.width, 'height': info.height,
                 'fps': info.fps, 'duration_s': info.duration,
                 'codec': info.codec},
      'inference_path': inference_path,
  }
  return Classification(total, labels, details)


def classify_arrays(eval_type: str, imagenet_pretrained: bool,
                    checkpoint_dir: str, samples: Mapping[str, str],
                    label_maps: Mapping[str, str],
                    inference_path: str = inference.DEFAULT_PATH
                    ) -> Classification:
  """Classifies preprocessed inputs, as the release's sample script did.

  Args:
    eval_type: one of assets.EVAL_TYPES.
    imagenet_pretrained: see assets.checkpoint_names.
    checkpoint_dir: folder of <name>/model.ckpt checkpoints.
    samples: stream -> .npy of float32 [1, T, 224, 224, C] in [-1, 1].
    label_maps: 'kinetics400' and 'kinetics600' -> label map path.
    inference_path: one of inference.PATHS.

  Returns:
    A Classification of the first clip in the batch.

  Raises:
    FileNotFoundError: with a message saying what to fetch or pass.
    checkpoints.CheckpointError, InputError, report.LabelError: bad inputs.
  """
  names, prefixes, label_map = model_files(
      eval_type, imagenet_pretrained, checkpoint_dir, label_maps)
  needed = {'label map': label_map}
  for stream in prefixes:
    needed[f'{stream} sample'] = samples[stream]
  needed.update(features.checkpoint_files(prefixes))
  _raise_if_missing(needed, '--checkpoint_dir, --rgb_sample, --flow_sample, '
                    '--label_map or --label_map_600')
  predictors = features.load_predictors(prefixes, path=inference_path)
  total = None
  labels = None
  for stream, predictor in predictors.items():
    if labels is None:
      labels = report.load_labels(label_map, predictor.model.num_classes)
    logits = predictor.logits(load_sample(samples[stream], stream))
    total = logits if total is None else total + logits
  details = {'eval_type': eval_type, 'streams': list(predictors),
             'checkpoints': dict(names), 'inference_path': inference_path}
  return Classification(total[0], labels, details)
