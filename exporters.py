"""I3D as an OpenVINO IR or an ONNX model, and runners for both.

Both are converted from the serving signature (serving.ServingModule), so
they have its inputs and outputs: float32 clips in [-1, 1] named `rgb`
([batch, frames, 224, 224, 3]) and/or `flow` ([..., 2]), and `logits`,
`probabilities` and, with features, `features` (or `rgb_features` and
`flow_features`). Batch is always free; frames are free (at least 9) or
fixed at export.

  openvino  `model.xml` and `model.bin`, converted with
            `openvino.convert_model` from the signature's tf.function and
            saved with float32 weights (no fp16 compression).
  onnx      `model.onnx`, converted with tf2onnx (opset ONNX_OPSET); free
            dimensions are named `batch` and `frames` (`rgb_frames` and
            `flow_frames` for joint).

openvino, onnx, tf2onnx and onnxruntime are optional (requirements-export.txt);
without them these functions raise MissingDependencyError, which says how to
install them.

Usage:

  models = serving.load_models('rgb', {'rgb': prefix})
  exporters.export(models, '/tmp/i3d_rgb_ir', 'openvino')
  runner = exporters.OpenVINORunner('/tmp/i3d_rgb_ir/model.xml')
  logits = runner(rgb=clip)['logits']
"""

from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

import fileio
import i3d
import runtime
import serving

FORMATS = ('saved_model', 'openvino', 'onnx')
OPENVINO_FILE = 'model.xml'  # Its weights go to model.bin beside it.
ONNX_FILE = 'model.onnx'
ONNX_OPSET = 17
INSTALL_HINT = 'pip install -r requirements-export.txt'
# Precisions the OpenVINO CPU runner may compute in. Only 'f32' matches the
# module to 1e-4; 'default' is the plugin's own choice, which is bf16 on CPUs
# with AVX512-BF16 or AMX and f32 elsewhere.
OPENVINO_PRECISIONS = ('f32', 'bf16', 'default')

# What each optional package is needed for, for MissingDependencyError.
_PURPOSE = {
    'openvino': 'OpenVINO export and runtime',
    'tf2onnx': 'ONNX export',
    'onnx': 'ONNX export',
    'onnxruntime': 'the ONNX runtime',
}
# The packages that export to each format.
_CONVERTERS = {
    'saved_model': (),
    'openvino': ('openvino',),
    'onnx': ('tf2onnx', 'onnx'),
}


class MissingDependencyError(ImportError):
  """An optional export package is not installed."""


def require(package: str) -> ModuleType:
  """Imports an optional package, or says how to install it.

  Raises:
    MissingDependencyError: if `package` cannot be imported.
  """
  try:
    return importlib.import_module(package)
  except ImportError as e:
    raise MissingDependencyError(
        f'{_PURPOSE.get(package, "Export")} needs the Python package '
        f'`{package}`, which is not installed ({e}); install the export '
        f'extras with `{INSTALL_HINT}`.'
    ) from e


def missing(packages: Sequence[str]) -> List[str]:
  """The packages of `packages` that cannot be imported."""
  out = []
  for package in packages:
    try:
      importlib.import_module(package)
    except ImportError:
      out.append(package)
  return out


def check_installed(fmt: str) -> None:
  """Checks that the packages exporting to `fmt` are installed.

  Raises:
    ValueError: if `fmt` is not one of FORMATS.
    MissingDependencyError: if a package is missing.
  """
  if fmt not in FORMATS:
    raise ValueError(
        f'Unknown `fmt` {fmt!r}; valid values are: ' f'{", ".join(FORMATS)}.'
    )
  for package in _CONVERTERS[fmt]:
    require(package)


# --------------------------------------------------------------------------
# Conversion.


def openvino_model(module: serving.ServingModule):
  """The serving signature of `module` as an in-memory `openvino.Model`."""
  ov = require('openvino')
  return ov.convert_model(module.serve.get_concrete_function())


def onnx_model(module: serving.ServingModule):
  """The serving signature of `module` as an `onnx.ModelProto`."""
  tf2onnx = require('tf2onnx')
  require('onnx')
  # tf2onnx logs every graph rewrite at INFO; keep its warnings only.
  logger = logging.getLogger('tf2onnx')
  level = logger.level
  logger.setLevel(max(level, logging.WARNING))
  try:
    # Its Grappler pass starts TensorFlow's CUDA platform: without a GPU,
    # a `failed call to cuInit` error line, held back here.
    with runtime.quiet_stderr():
      proto, _ = tf2onnx.convert.from_function(
          module.serve,
          input_signature=module.serve.input_signature,
          opset=ONNX_OPSET,
      )
  finally:
    logger.setLevel(level)
  _name_free_dims(proto, module.parts)
  return proto


def _name_free_dims(proto, parts: Sequence[str]) -> None:
  """Renames tf2onnx's `unk__N` dimension symbols to batch and frames."""
  names = {}
  for value in proto.graph.input:
    dims = value.type.tensor_type.shape.dim
    names[dims[0].dim_param] = 'batch'
    names[dims[1].dim_param] = (
        'frames' if len(parts) == 1 else f'{value.name}_frames'
    )
  for value in proto.graph.output:
    names[value.type.tensor_type.shape.dim[0].dim_param] = 'batch'
  names.pop('', None)  # A fixed dimension has no symbol.
  for value in [
      *proto.graph.input,
      *proto.graph.output,
      *proto.graph.value_info,
  ]:
    for dim in value.type.tensor_type.shape.dim:
      if dim.dim_param in names:
        dim.dim_param = names[dim.dim_param]


def export(
    models: Mapping[str, i3d.InceptionI3d],
    output_dir: str,
    fmt: str,
    frames: Optional[int] = None,
    with_features: bool = False,
    overwrite: bool = False,
    allow_out_of_range: bool = False,
) -> str:
  """Writes the serving model in format `fmt` to `output_dir`, atomically.

  Args:
    models: as for serving.ServingModule.
    output_dir: the folder to create: a SavedModel, or one holding
      OPENVINO_FILE and model.bin, or ONNX_FILE.
    fmt: one of FORMATS.
    frames: the clips' fixed frame count, or None for any count >= 9.
    with_features: also output the averaged Mixed_5c features.
    overwrite: replace an existing `output_dir`.
    allow_out_of_range: as for serving.ServingModule (only the SavedModel
      keeps the input checks).

  Returns:
    The absolute output folder.

  Raises:
    ValueError: on a bad `fmt`, `frames` or models.
    FileExistsError: if `output_dir` exists and `overwrite` is False.
    MissingDependencyError: if the format's packages are not installed.
  """
  check_installed(fmt)
  if fmt == 'saved_model':
    return serving.export(
        models, output_dir, with_features, overwrite, frames, allow_out_of_range
    )
  module = serving.ServingModule(
      models, with_features, frames, allow_out_of_range=allow_out_of_range
  )
  with fileio.atomic_folder(output_dir, overwrite=overwrite) as tmp:
    if fmt == 'openvino':
      require('openvino').save_model(
          openvino_model(module),
          os.path.join(tmp, OPENVINO_FILE),
          compress_to_fp16=False,
      )
    else:
      require('onnx').save(onnx_model(module), os.path.join(tmp, ONNX_FILE))
  return os.path.abspath(output_dir)


# --------------------------------------------------------------------------
# Runtimes.


def _model_path(model: str, file_name: str) -> str:
  """`model`, or `model`/`file_name` when `model` is an export folder."""
  path = os.path.join(model, file_name) if os.path.isdir(model) else model
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f'No exported model at {path}; give a {os.path.splitext(file_name)[1]}'
        f' file or a folder holding {file_name}, made by exporters.export.'
    )
  return path


class OpenVINORunner:
  """Runs an OpenVINO I3D on the CPU: runner(rgb=...) -> {name: array}."""

  def __init__(
      self, model, precision: str = 'f32', num_threads: Optional[int] = None
  ):
    """Compiles the model for the CPU.

    Args:
      model: an `openvino.Model`, the path of a `.xml` file, or an export
        folder holding OPENVINO_FILE.
      precision: one of OPENVINO_PRECISIONS; only 'f32' is exact to 1e-4.
      num_threads: CPU threads; OpenVINO's choice (every core) when None.

    Raises:
      ValueError: on a bad `precision`.
      FileNotFoundError: if there is no model at the path.
      MissingDependencyError: if openvino is not installed.
    """
    if precision not in OPENVINO_PRECISIONS:
      raise ValueError(
          f'Unknown `precision` {precision!r}; valid values '
          f'are: {", ".join(OPENVINO_PRECISIONS)}.'
      )
    ov = require('openvino')
    core = ov.Core()
    if isinstance(model, (str, os.PathLike)):
      model = core.read_model(_model_path(os.fspath(model), OPENVINO_FILE))
    config = {'PERFORMANCE_HINT': 'LATENCY'}
    if precision != 'default':
      config['INFERENCE_PRECISION_HINT'] = precision
    if num_threads:
      config['INFERENCE_NUM_THREADS'] = num_threads
    self._compiled = core.compile_model(model, 'CPU', config)
    self.input_names = [i.get_any_name() for i in self._compiled.inputs]
    self.output_names = [o.get_any_name() for o in self._compiled.outputs]
    self.precision = self._compiled.get_property(
        'INFERENCE_PRECISION_HINT'
    ).to_string()

  def __call__(self, **inputs: np.ndarray) -> Dict[str, np.ndarray]:
    result = self._compiled(_feed(inputs, self.input_names))
    return {
        o.get_any_name(): np.asarray(result[o]) for o in self._compiled.outputs
    }


class ONNXRunner:
  """Runs an ONNX I3D with onnxruntime: runner(rgb=...) -> {name: array}."""

  def __init__(self, model, num_threads: Optional[int] = None):
    """Opens an onnxruntime CPU session.

    Args:
      model: an `onnx.ModelProto`, the path of a `.onnx` file, or an export
        folder holding ONNX_FILE.
      num_threads: intra-op threads; onnxruntime's choice (every core) when
        None.

    Raises:
      FileNotFoundError: if there is no model at the path.
      MissingDependencyError: if onnxruntime is not installed.
    """
    ort = require('onnxruntime')
    options = ort.SessionOptions()
    if num_threads:
      options.intra_op_num_threads = num_threads
    if isinstance(model, (str, os.PathLike)):
      source = _model_path(os.fspath(model), ONNX_FILE)
    else:
      source = model.SerializeToString()
    self._session = ort.InferenceSession(
        source, options, providers=['CPUExecutionProvider']
    )
    self.input_names = [i.name for i in self._session.get_inputs()]
    self.output_names = [o.name for o in self._session.get_outputs()]

  def __call__(self, **inputs: np.ndarray) -> Dict[str, np.ndarray]:
    outputs = self._session.run(None, _feed(inputs, self.input_names))
    return dict(zip(self.output_names, outputs))


def _feed(
    inputs: Mapping[str, np.ndarray], names: Sequence[str]
) -> Dict[str, np.ndarray]:
  if sorted(inputs) != sorted(names):
    raise ValueError(
        f'The model takes the inputs {", ".join(names)}; got '
        f'{", ".join(sorted(inputs)) or "none"}.'
    )
  return {k: np.asarray(v, np.float32) for k, v in inputs.items()}
