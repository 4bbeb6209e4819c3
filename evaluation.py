"""Accuracy of video classifications on a labelled split, and its reports.

`summarize` gives top-1, top-5, mean per-class accuracy and the number of
videos from per-video logits; `confusion_matrix`, `per_class_accuracy` and
`top_k_correct` are the pieces. `evaluate_split` runs a model over a split
(whole videos, streamed; resumable) and writes the per-video CSV, the
metrics JSON and a confusion-matrix PNG, each atomically (fileio.py).

Ties: a video counts as top-k correct when fewer than k classes have a
logit strictly greater than its true class's.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

from absl import logging
import numpy as np
import tqdm

import classification
import datasets
import fileio
import inference
import recipe
import video


def _check(logits: np.ndarray, labels: np.ndarray) -> None:
  if logits.ndim != 2 or labels.ndim != 1 or len(logits) != len(labels):
    raise ValueError(
        f'`logits` must be [videos, classes] and `labels` [videos]; got '
        f'shapes {logits.shape} and {labels.shape}.'
    )
  if len(labels) and (labels.min() < 0 or labels.max() >= logits.shape[1]):
    raise ValueError(
        f'`labels` must be class indices 0..{logits.shape[1] - 1}'
        f'; got values {labels.min()}..{labels.max()}.'
    )


def top_k_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
  """bool [videos]: is the true class among the k highest logits.

  Args:
    logits: [videos, classes].
    labels: int [videos], the true classes.
    k: >= 1.
  """
  logits = np.asarray(logits, np.float64)
  labels = np.asarray(labels, np.int64)
  _check(logits, labels)
  if not isinstance(k, int) or k < 1:
    raise ValueError(f'`k` must be a positive int; got {k!r}.')
  true = logits[np.arange(len(labels)), labels]
  rank = (logits > true[:, None]).sum(axis=1)
  return rank < k


def confusion_matrix(
    labels: np.ndarray, predictions: np.ndarray, num_classes: int
) -> np.ndarray:
  """int64 [classes, classes]: row = true class, column = predicted class."""
  labels = np.asarray(labels, np.int64)
  predictions = np.asarray(predictions, np.int64)
  matrix = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(matrix, (labels, predictions), 1)
  return matrix


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
  """float64 [classes]: top-1 accuracy per true class; NaN for absent ones."""
  matrix = np.asarray(matrix)
  totals = matrix.sum(axis=1)
  with np.errstate(invalid='ignore', divide='ignore'):
    return np.where(totals > 0, np.diag(matrix) / totals, np.nan)


def summarize(
    logits: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    top_k: Sequence[int] = (1, 5),
) -> Dict[str, Any]:
  """The split's metrics as JSON-ready data.

  Args:
    logits: [videos, classes].
    labels: int [videos].
    class_names: [classes].
    top_k: The k of the top-k accuracies reported.

  Returns:
    {'num_videos', 'top1', 'top5' (each k of top_k),
     'mean_class_accuracy' (mean over the classes that have videos),
     'classes_with_videos', 'per_class': [{'class', 'videos', 'accuracy'}]}.
  """
  logits = np.asarray(logits, np.float64)
  labels = np.asarray(labels, np.int64)
  _check(logits, labels)
  if not len(labels):
    raise ValueError('No videos to summarize.')
  if len(class_names) != logits.shape[1]:
    raise ValueError(
        f'`class_names` has {len(class_names)} names for '
        f'{logits.shape[1]} classes.'
    )
  matrix = confusion_matrix(labels, logits.argmax(axis=1), logits.shape[1])
  per_class = per_class_accuracy(matrix)
  present = ~np.isnan(per_class)
  out: Dict[str, Any] = {'num_videos': int(len(labels))}
  for k in top_k:
    out[f'top{k}'] = float(top_k_correct(logits, labels, k).mean())
  out['mean_class_accuracy'] = float(per_class[present].mean())
  out['classes_with_videos'] = int(present.sum())
  out['per_class'] = [
      {'class': name, 'videos': int(n), 'accuracy': float(a)}
      for name, n, a in zip(class_names, matrix.sum(axis=1), per_class)
      if n
  ]
  return out


def write_predictions_csv(
    path: str,
    rows: Sequence[Mapping[str, Any]],
    columns: Optional[Sequence[str]] = None,
) -> None:
  """One row per video, atomically; columns from the first row if not given."""
  if not rows:
    raise ValueError('No rows to write.')
  columns = list(columns or rows[0].keys())
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, columns, lineterminator='\n')
  writer.writeheader()
  writer.writerows(rows)
  fileio.write_bytes(path, buffer.getvalue().encode('utf-8'))


def prediction_row(
    video: str,
    logits: np.ndarray,
    label: int,
    class_names: Sequence[str],
    k: int = 5,
) -> Dict[str, Any]:
  """One CSV row: the video, its true class, the top-k classes and logits."""
  logits = np.asarray(logits, np.float64)
  order = np.argsort(-logits, kind='stable')[:k]
  return {
      'video': video,
      'label': class_names[label],
      'prediction': class_names[order[0]],
      'correct': int(order[0] == label),
      f'top{k}_correct': int(
          top_k_correct(logits[None], np.array([label]), k)[0]
      ),
      'true_class_logit': f'{logits[label]:.6g}',
      f'top{k}': '|'.join(class_names[i] for i in order),
      f'top{k}_logits': '|'.join(f'{logits[i]:.6g}' for i in order),
  }


def save_confusion_png(
    path: str,
    matrix: np.ndarray,
    class_names: Sequence[str],
    title: str = '',
    max_tick_labels: int = 60,
) -> None:
  """Saves the row-normalised confusion matrix as a PNG, atomically.

  Class names label the axes when there are at most `max_tick_labels`
  classes (Kinetics' 400 would be unreadable; the CSV has them).
  """
  import matplotlib  # Imported here: only the chart needs it.

  matplotlib.use('Agg')
  from matplotlib import pyplot as plt

  matrix = np.asarray(matrix, np.float64)
  totals = matrix.sum(axis=1, keepdims=True)
  normalised = np.divide(
      matrix, totals, out=np.zeros_like(matrix), where=totals > 0
  )
  n = len(class_names)
  side = min(4 + 0.25 * n, 20)
  fig, ax = plt.subplots(figsize=(side, side))
  image = ax.imshow(
      normalised, cmap='Blues', vmin=0, vmax=1, interpolation='nearest'
  )
  fig.colorbar(
      image, ax=ax, fraction=0.046, pad=0.04, label='fraction of the true class'
  )
  if n <= max_tick_labels:
    ax.set_xticks(range(n), class_names, rotation=90, fontsize=7)
    ax.set_yticks(range(n), class_names, fontsize=7)
  ax.set_xlabel('predicted class')
  ax.set_ylabel('true class')
  ax.set_title(title or 'Confusion matrix')
  fig.tight_layout()
  try:
    fileio.write_with(path, lambda f: fig.savefig(f, format='png', dpi=100))
  finally:
    plt.close(fig)


def metrics_table(metrics: Mapping[str, Any]) -> List[str]:
  """Printable lines of the headline figures."""
  lines = [f'videos: {metrics["num_videos"]}']
  for key in ('top1', 'top5'):
    if key in metrics:
      lines.append(f'{key}: {100 * metrics[key]:.2f}%')
  lines.append(
      f'mean per-class accuracy: '
      f'{100 * metrics["mean_class_accuracy"]:.2f}% over '
      f'{metrics["classes_with_videos"]} classes'
  )
  return lines


# --------------------------------------------------------------------------
# Evaluating a split, resumably.

RESULTS_FILE = 'per_video.jsonl'
METRICS_FILE = 'metrics.json'
PREDICTIONS_FILE = 'predictions.csv'
CONFUSION_FILE = 'confusion.png'


def class_mapping(
    dataset_classes: Sequence[str], model_classes: Sequence[str]
) -> np.ndarray:
  """int [dataset classes]: each dataset class's index in the model's labels.

  Raises:
    datasets.DatasetError: naming the dataset classes the model lacks.
  """
  index = {name: i for i, name in enumerate(model_classes)}
  unknown = [name for name in dataset_classes if name not in index]
  if unknown:
    raise datasets.DatasetError(
        f"{len(unknown)} class(es) of the split are not in the model's label "
        f'map ({len(model_classes)} classes), e.g. {unknown[:3]}; evaluate '
        'with the label map the model was trained with.'
    )
  return np.array([index[name] for name in dataset_classes], np.int64)


def centre_window(
    example: datasets.Example, frames: int, fps: float = video.FPS
) -> datasets.Example:
  """The example restricted to its middle `frames` frames (if longer).

  The clip's length comes from its start/end or the file's header
  (video.probe); a clip of unknown length is left whole.
  """
  start = example.start or 0.0
  end = example.end
  if end is None:
    duration = video.probe(example.path).duration
    if duration is None:
      return example
    end = duration
  length = frames / fps
  if end - start <= length:
    return example
  middle = start + ((end - start) - length) / 2
  # Whole frames of the 25 fps grid from the clip's start.
  first = start + math.floor((middle - start) * fps) / fps
  return dataclasses.replace(example, start=first, end=first + length)


@dataclasses.dataclass
class SplitResult:
  """What `evaluate_split` produced.

  Attributes:
    metrics: The summary (see `summarize`), with 'failed' and settings.
    failed: 'path (file:line): reason' of videos that could not be read.
    reused: Videos whose results came from an earlier, interrupted run.
  """

  metrics: Dict[str, Any]
  failed: List[str]
  reused: int


def _read_results(path: str, settings_key: str) -> Dict[str, Dict[str, Any]]:
  """Earlier per-video results with the same settings; a torn line is ignored."""
  done = {}
  if not os.path.exists(path):
    return done
  with open(path, encoding='utf-8') as f:
    for line in f:
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        continue  # The last line of a killed run.
      if record.get('settings') == settings_key:
        done[record['id']] = record
  return done


def _example_id(example: datasets.Example) -> str:
  return json.dumps([os.path.abspath(example.path), example.start, example.end])


def evaluate_split(
    dataset: datasets.Dataset,
    predictors: Mapping[str, inference.Predictor],
    model_classes: Sequence[str],
    output_dir: str,
    settings: Mapping[str, Any],
    clip_frames: Optional[int] = None,
    workers: Optional[int] = None,
    progress: bool = True,
    flow_backend: str = recipe.DEFAULT_FLOW_BACKEND,
    recipe_name: str = recipe.DEFAULT_RECIPE,
) -> SplitResult:
  """Whole-video top-k accuracy of a model on a labelled split.

  Each video is classified by the centre crop over all its frames, streamed
  through each stream's Predictor in bounded memory from one decoding pass
  (classification.clip_logits); the joint model sums the streams' logits. Each
  video's logits are appended to <output_dir>/per_video.jsonl as soon as
  they exist, so a killed run started again with the same settings reuses
  them. At the end metrics.json, predictions.csv and confusion.png are
  written (atomically).

  Args:
    dataset: The labelled split; its classes must be in `model_classes`.
    predictors: stream -> Predictor with a Logits head.
    model_classes: The model's label map.
    output_dir: Where the outputs go.
    settings: What identifies the model and options (checkpoints,
      eval_type, ...); stored in the JSON and part of the resume key.
    clip_frames: Evaluate only the middle `clip_frames` frames of each clip
      (e.g. 79 for a fixed-length protocol); None = the whole clip.
    workers: Processes for TV-L1; None = all cores.
    progress: A tqdm bar over the videos on stderr.
    flow_backend: TV-L1 implementation, one of recipe.FLOW_BACKENDS.
    recipe_name: One of recipe.RECIPES; a name other than the default joins
      `settings` (and so the resume key).

  Returns:
    A SplitResult.

  Raises:
    datasets.DatasetError: classes the model lacks, or no video readable.
  """
  mapping = class_mapping(dataset.class_names, model_classes)
  os.makedirs(output_dir, exist_ok=True)
  settings = dict(settings, clip_frames=clip_frames)
  if recipe.check_recipe(recipe_name) != recipe.DEFAULT_RECIPE:
    settings['recipe'] = recipe_name
  settings_key = hashlib.sha1(
      json.dumps(settings, sort_keys=True).encode()
  ).hexdigest()
  results_path = os.path.join(output_dir, RESULTS_FILE)
  done = _read_results(results_path, settings_key)
  reused = 0
  records = []
  with open(results_path, 'a', encoding='utf-8') as log:
    for example in tqdm.tqdm(
        dataset.examples,
        unit='video',
        desc='evaluate',
        disable=not progress,
        dynamic_ncols=True,
    ):
      key = _example_id(example)
      if key in done:
        records.append(done[key])
        reused += 1
        continue
      record = {
          'settings': settings_key,
          'id': key,
          'video': example.path,
          'source': example.source,
          'label': int(mapping[example.label]),
      }
      try:
        clip = centre_window(example, clip_frames) if clip_frames else example
        result = classification.clip_logits(
            predictors,
            clip.path,
            start=clip.start,
            end=clip.end,
            workers=workers,
            flow_backend=flow_backend,
            recipe_name=recipe_name,
        )
        total = sum(result.logits.values())  # joint: RGB + flow.
        record.update(
            frames=result.num_frames, logits=[float(x) for x in total]
        )
      except video.VideoError as e:
        record['error'] = str(e).splitlines()[0]
        logging.warning(
            'Skipped %s (%s): %s', example.path, example.source, record['error']
        )
      log.write(json.dumps(record) + '\n')
      log.flush()
      os.fsync(log.fileno())
      records.append(record)
  good = [r for r in records if 'logits' in r]
  failed = [
      f'{r["video"]} ({r["source"]}): {r["error"]}'
      for r in records
      if 'error' in r
  ]
  if not good:
    raise datasets.DatasetError(
        f'None of the {len(records)} videos could be read, e.g. {failed[0]}.'
    )
  logits = np.array([r['logits'] for r in good], np.float64)
  labels = np.array([r['label'] for r in good], np.int64)
  metrics = summarize(logits, labels, model_classes)
  metrics = {
      'num_videos': metrics.pop('num_videos'),
      **metrics,
      'failed_videos': len(failed),
      'failed': failed,
      'settings': settings,
  }
  write_predictions_csv(
      os.path.join(output_dir, PREDICTIONS_FILE),
      [
          dict(
              prediction_row(
                  r['video'], np.array(r['logits']), r['label'], model_classes
              ),
              frames=r['frames'],
          )
          for r in good
      ],
  )
  fileio.write_json(os.path.join(output_dir, METRICS_FILE), metrics)
  present = sorted(set(labels.tolist()) | set(logits.argmax(axis=1).tolist()))
  matrix = confusion_matrix(labels, logits.argmax(axis=1), len(model_classes))[
      np.ix_(present, present)
  ]
  save_confusion_png(
      os.path.join(output_dir, CONFUSION_FILE),
      matrix,
      [model_classes[i] for i in present],
      title=f'{metrics["num_videos"]} videos, top-1 '
      f'{100 * metrics["top1"]:.1f}%',
  )
  return SplitResult(metrics, failed, reused)
