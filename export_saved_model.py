r"""Exports the RGB, Flow or joint I3D model: SavedModel, OpenVINO or ONNX.

The SavedModel's 'serving_default' signature takes float32 clips in [-1, 1],
[batch, frames, 224, 224, channels] (batch free; frames free, >= 9, or fixed
with --frames), as `rgb`, `flow` or both, and returns `logits` and
`probabilities` (plus the 1024-d Mixed_5c `features` with --with_features);
see serving.py. --format=openvino writes the same model as an OpenVINO IR
(`model.xml`, `model.bin`) and --format=onnx as `model.onnx`, with the same
inputs and outputs (exporters.py); both need `pip install -r
requirements-export.txt`.

  python fetch_assets.py     # once: the release checkpoints into data/
  python export_saved_model.py --streams=joint --output_dir=/tmp/i3d_joint
  python export_saved_model.py --streams=rgb --with_features \
      --output_dir=/tmp/i3d_rgb
  python export_saved_model.py --format=openvino --streams=rgb \
      --output_dir=/tmp/i3d_rgb_ir
  python export_saved_model.py --format=onnx --streams=joint --frames=79 \
      --output_dir=/tmp/i3d_joint_onnx
  saved_model_cli show --dir /tmp/i3d_joint --all

The export is written to a temporary folder and renamed into place.
"""

from __future__ import annotations

import runtime  # pylint: disable=g-bad-import-order

runtime.setup()  # Before TensorFlow loads: its oneDNN kernels on.
runtime.import_tensorflow_quietly()  # Without its C++ start-up lines.

import os
import sys
from typing import Sequence

from absl import app
from absl import flags

import checkpoints
import cli
import exporters
import fileio
import inference
import serving

_ROOT = os.path.dirname(os.path.abspath(__file__))
_CHECKPOINTS = os.path.join(_ROOT, 'data', 'checkpoints')

_STREAMS = flags.DEFINE_enum(
    'streams',
    'joint',
    list(serving.STREAMS),
    'Which model: rgb, flow, or joint (both; logits summed).',
)
_FORMAT = flags.DEFINE_enum(
    'format',
    'saved_model',
    list(exporters.FORMATS),
    'saved_model; openvino (an IR: model.xml and model.bin); or onnx '
    '(model.onnx).',
)
_OUTPUT_DIR = flags.DEFINE_string(
    'output_dir',
    None,
    'The folder to create: the SavedModel, or the folder of the OpenVINO or '
    'ONNX files.',
)
_FRAMES = flags.DEFINE_integer(
    'frames',
    None,
    "Fix the clips' frame count (>= 9) in the exported model; any count >= 9 "
    'when unset.',
)
_RGB_CHECKPOINT = flags.DEFINE_string(
    'rgb_checkpoint',
    os.path.join(_CHECKPOINTS, 'rgb_imagenet', 'model.ckpt'),
    'Prefix of the RGB checkpoint (release format), for rgb and joint.',
)
_FLOW_CHECKPOINT = flags.DEFINE_string(
    'flow_checkpoint',
    os.path.join(_CHECKPOINTS, 'flow_imagenet', 'model.ckpt'),
    'Prefix of the Flow checkpoint (release format), for flow and joint.',
)
_WITH_FEATURES = flags.DEFINE_boolean(
    'with_features',
    False,
    'Also output the 1024-d Mixed_5c features averaged over time and space '
    '(`features`; for joint `rgb_features` and `flow_features`).',
)
_ALLOW_OUT_OF_RANGE = flags.DEFINE_boolean(
    'allow_out_of_range',
    False,
    'Let the SavedModel serve inputs far outside [-1, 1] (beyond +-1.5, e.g. '
    '[0, 255] pixels); by default it refuses them, as evaluate_sample.py '
    'does.',
)
_OVERWRITE = flags.DEFINE_boolean(
    'overwrite', False, 'Replace --output_dir if it exists.'
)
_SYNTHETIC = flags.DEFINE_boolean(
    'synthetic',
    False,
    'Export random release-shaped weights instead of checkpoints, to try the '
    'export without downloading anything. The outputs are meaningless.',
)

flags.mark_flag_as_required('output_dir')


def _models(streams: str):
  if not _SYNTHETIC.value:
    return serving.load_models(
        streams, {'rgb': _RGB_CHECKPOINT.value, 'flow': _FLOW_CHECKPOINT.value}
    )
  import i3d  # pylint: disable=g-import-not-at-top

  models = {}
  for seed, part in enumerate(serving.stream_parts(streams)):
    model = i3d.InceptionI3d(400, final_endpoint='Logits')
    checkpoints.assign_synthetic(model, part, seed=seed)
    models[part] = model
  return models


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(
        f'Unexpected arguments {argv[1:]}; flags take ' 'their value after "=".'
    )
  if os.path.exists(_OUTPUT_DIR.value) and not _OVERWRITE.value:
    print(
        f'export_saved_model: error: --output_dir={_OUTPUT_DIR.value} '
        'already exists; pass --overwrite to replace it, or another '
        '--output_dir.',
        file=sys.stderr,
    )
    return 1
  try:
    fileio.check_writable(_OUTPUT_DIR.value, folder=True)
  except fileio.OutputError as e:
    raise cli.Failure(f'{e}; pass another --output_dir') from None
  inference.configure_threads()
  try:
    # Before loading weights: a missing package is known at once.
    exporters.check_installed(_FORMAT.value)
    models = _models(_STREAMS.value)
    path = exporters.export(
        models,
        _OUTPUT_DIR.value,
        _FORMAT.value,
        _FRAMES.value,
        _WITH_FEATURES.value,
        _OVERWRITE.value,
        _ALLOW_OUT_OF_RANGE.value,
    )
  except (
      checkpoints.CheckpointError,
      FileExistsError,
      ValueError,
      exporters.MissingDependencyError,
  ) as e:
    print(f'export_saved_model: error: {e}', file=sys.stderr)
    return 1
  files = {
      'openvino': f' ({exporters.OPENVINO_FILE}, model.bin)',
      'onnx': f' ({exporters.ONNX_FILE})',
  }.get(_FORMAT.value, '')
  print(f'Exported the {_STREAMS.value} model to {path}{files}')
  return 0


if __name__ == '__main__':
  cli.run(main)
