r"""Trains or fine-tunes I3D from a config (training_configs.py).

  python train.py --config=ucf101_finetune --workdir=runs/ucf101 \
      --set=data_root=/data/UCF-101 --set=steps=2000

Runs config.steps steps, resuming from the newest checkpoint in --workdir
(run the same command again after a crash or Ctrl-C), then writes the model
with the release's names and its label map to <workdir>/export/ for
classify_video.py, evaluate_sample.py, extract_features.py
(--rgb_checkpoint=<workdir>/export/model.ckpt --label_map=<workdir>/export/
label_map.txt) and export_saved_model.py (--rgb_checkpoint=...).

On several machines, set TF_CONFIG on each and pass
--set=strategy=multi_worker; see the README's "Training on a cluster".
Exit status: 0 on success, 1 for bad data or checkpoints, 2 for bad flags.
"""

from __future__ import annotations

import runtime  # pylint: disable=g-bad-import-order

runtime.setup()  # Before TensorFlow loads: its oneDNN kernels on.

import sys
from typing import Sequence

from absl import flags

import checkpoints
import cli
import datasets
import training
import training_configs

_CONFIG = flags.DEFINE_enum(
    'config',
    'ucf101_finetune',
    list(training_configs.CONFIGS),
    'The config to start from; see training_configs.py.',
)
_SET = flags.DEFINE_multi_string(
    'set',
    [],
    'Override one config field, field=value (repeatable; tuples '
    'comma-separated), e.g. --set=steps=2000 --set=lr_values=0.01,0.001.',
)
_WORKDIR = flags.DEFINE_string(
    'workdir',
    None,
    'Folder for checkpoints, TensorBoard events and the '
    'exported model; an existing run there is resumed.',
)
_PROGRESS = flags.DEFINE_boolean(
    'progress', True, 'Show a progress bar on stderr.'
)
flags.mark_flag_as_required('workdir')


def _error(message: str, code: int) -> int:
  print(f'train: error: {message}', file=sys.stderr)
  return code


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    return _error(
        f'unexpected arguments {argv[1:]}; flags take their value '
        'after "=", e.g. --set=steps=2000',
        2,
    )
  try:
    config = training_configs.get_config(_CONFIG.value, _SET.value)
  except ValueError as e:
    return _error(f"{str(e).rstrip('.')}; fix --config or --set", 2)
  try:
    options = (
        {'fold': config.data_fold}
        if config.data_kind in ('ucf101', 'hmdb51')
        else {}
    )
    data = datasets.load(
        config.data_kind, config.data_root, config.data_split or None, **options
    )
    if len(data.class_names) != config.num_classes:
      return _error(
          f'the {config.data_kind} split at {config.data_root!r} has '
          f'{len(data.class_names)} classes but the config has num_classes='
          f'{config.num_classes}; pass --set=num_classes='
          f'{len(data.class_names)}',
          1,
      )
    trainer = training.Trainer(config, _WORKDIR.value)

    make_dataset = training.make_dataset_fn(config, data)
    trainer.fit(make_dataset, progress=_PROGRESS.value)
    if int(trainer.step.numpy()) < config.steps:
      print(
          f'Stopped at step {int(trainer.step.numpy())} of {config.steps};'
          ' run the same command to resume.',
          file=sys.stderr,
      )
      return 1
    prefix = trainer.export(list(data.class_names))
  except (ValueError, OSError, checkpoints.CheckpointError) as e:
    return _error(
        f"{str(e).rstrip('.')}; fix the data, --workdir or the checkpoint", 1
    )
  print(
      f'Exported {prefix} and its label map; classify with: python '
      f'classify_video.py --eval_type={config.stream} '
      f'--{config.stream}_checkpoint={prefix} '
      f'--label_map={prefix[:-len("model.ckpt")]}label_map.txt '
      '--video=...'
  )
  return 0


if __name__ == '__main__':
  cli.run(main)
