"""Class labels and the release's text report of a video's logits.

The report is exactly what the release's evaluate_sample.py printed (and what
out/*.txt holds):

  Norm of logits: 138.468658

  Top classes and probabilities
  1.0 41.813675 playing cricket
  ... (20 lines of: probability, logit, class name, in float32 formatting)
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence

import numpy as np

import fileio

TOP_K = 20


class LabelError(ValueError):
  """A label map is missing or does not fit the model."""


def load_labels(path: str, num_classes: Optional[int] = None) -> List[str]:
  """Reads a label map: one class name per line, in logit order.

  Raises:
    LabelError: the file is missing, or has a different number of classes
      than `num_classes`.
  """
  if not os.path.isfile(path):
    raise LabelError(f'Label map {path!r} does not exist.')
  with open(path, encoding='utf-8') as f:
    labels = [line.strip() for line in f if line.strip()]
  if num_classes is not None and len(labels) != num_classes:
    raise LabelError(
        f'Label map {path!r} has {len(labels)} classes but the model has '
        f'{num_classes}: use data/label_map.txt for 400 classes and '
        'data/label_map_600.txt for 600.'
    )
  return labels


def softmax(logits: np.ndarray) -> np.ndarray:
  """Softmax in float32, like tf.nn.softmax on the release's logits."""
  logits = np.asarray(logits, np.float32)
  z = np.exp(logits - logits.max(axis=-1, keepdims=True))
  return (z / z.sum(axis=-1, keepdims=True)).astype(np.float32)


def top_classes(
    logits: np.ndarray, labels: Sequence[str], k: int = TOP_K
) -> List[Dict[str, object]]:
  """The k most probable classes of one video's [num_classes] logits."""
  logits = np.asarray(logits, np.float32)
  probs = softmax(logits)
  order = np.argsort(probs)[::-1][:k]
  return [
      {
          'index': int(i),
          'label': labels[i],
          'probability': probs[i],
          'logit': logits[i],
      }
      for i in order
  ]


def format_report(
    logits: np.ndarray, labels: Sequence[str], k: int = TOP_K
) -> str:
  """The release's report, as one string ending in a newline."""
  logits = np.asarray(logits, np.float32)
  lines = [
      f'Norm of logits: {np.linalg.norm(logits):f}',
      '',
      'Top classes and probabilities',
  ]
  # str() of numpy float32 is the shortest repr that round-trips, which is
  # how the release's print() wrote them.
  for row in top_classes(logits, labels, k):
    lines.append(
        f"{str(row['probability'])} {str(row['logit'])} " f"{row['label']}"
    )
  return '\n'.join(lines) + '\n'


def report_dict(
    logits: np.ndarray, labels: Sequence[str], k: int = TOP_K, **extra
) -> Dict[str, object]:
  """The report as JSON-ready data, with any extra fields merged in."""
  logits = np.asarray(logits, np.float32)
  top = [
      {
          **row,
          'probability': float(row['probability']),
          'logit': float(row['logit']),
      }
      for row in top_classes(logits, labels, k)
  ]
  return {
      **extra,
      'norm_of_logits': float(np.linalg.norm(logits)),
      'top_classes': top,
  }


def save_bar_chart(
    path: str,
    logits: np.ndarray,
    labels: Sequence[str],
    k: int = 10,
    title: str = '',
) -> None:
  """Saves a horizontal bar chart of the top-k class probabilities as PNG."""
  import matplotlib  # Imported here: only charting needs it.

  matplotlib.use('Agg')
  from matplotlib import pyplot as plt

  rows = top_classes(logits, labels, k)
  fig, ax = plt.subplots(figsize=(8, 0.4 * len(rows) + 1.2))
  names = [r['label'] for r in rows][::-1]
  probs = [float(r['probability']) for r in rows][::-1]
  bars = ax.barh(names, probs, color='#3b6ea8')
  for bar, p in zip(bars, probs):
    ax.text(
        min(p + 0.01, 0.9),
        bar.get_y() + bar.get_height() / 2,
        f'{p:.3g}',
        va='center',
        fontsize=8,
    )
  ax.set_xlim(0, 1)
  ax.set_xlabel('probability')
  ax.set_title(title or f'Top {len(rows)} classes')
  fig.tight_layout()
  try:
    fileio.write_with(path, lambda f: fig.savefig(f, format='png', dpi=100))
  finally:
    plt.close(fig)
