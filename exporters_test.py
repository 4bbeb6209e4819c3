"""Tests for exporters: OpenVINO and ONNX outputs equal the module's.

The converters and runtimes are optional (requirements-export.txt, which
run_tests.sh installs); the classes that need them are skipped with a
message when they are absent. Each class converts once.
"""

from __future__ import annotations

import os
import sys
from typing import Dict, Mapping
import unittest
from unittest import mock

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import checkpoints
import exporters
import i3d
import serving
import testing

_ROOT = os.path.dirname(os.path.abspath(__file__))
_REAL_RGB = os.path.join(
    _ROOT, 'data', 'checkpoints', 'rgb_scratch', 'model.ckpt'
)
_TOL = 1e-4


def _skip_without(*packages: str):
  absent = exporters.missing(packages)
  return unittest.skipIf(
      bool(absent),
      f'{", ".join(absent)} not installed; '
      f'{exporters.INSTALL_HINT} to run these tests.',
  )


def _synthetic(parts) -> Dict[str, i3d.InceptionI3d]:
  models = {}
  for seed, part in enumerate(parts):
    model = i3d.InceptionI3d(400, final_endpoint='Logits')
    checkpoints.assign_synthetic(model, part, seed=seed)
    models[part] = model
  return models


def _clips(
    parts, batch: int, frames: int, seed: int = 0
) -> Dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  return {
      p: rng.uniform(
          -1,
          1,
          [
              batch,
              frames,
              serving.CLIP_SIZE,
              serving.CLIP_SIZE,
              serving.CHANNELS[p],
          ],
      ).astype(np.float32)
      for p in parts
  }


def _module_outputs(
    models: Mapping[str, i3d.InceptionI3d], clips: Mapping[str, np.ndarray]
) -> Dict[str, np.ndarray]:
  """The serving outputs, computed with the plain Sonnet modules."""
  out = {'logits': 0}
  for part, model in models.items():
    logits, end_points = model(clips[part], is_training=False)
    out['logits'] += logits.numpy()
    key = 'features' if len(models) == 1 else f'{part}_features'
    out[key] = end_points['Mixed_5c'].numpy().mean(axis=(1, 2, 3))
  out['probabilities'] = tf.nn.softmax(out['logits']).numpy()
  return out


class _ExportCase(
    testing.TempDirMixin, tf.test.TestCase, parameterized.TestCase
):
  """A class-wide temporary folder and, with `fmt`, one joint export in it.

  The joint export has synthetic weights and features; `runner` runs it.
  """

  fmt = None
  runner_class = None

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    if cls.fmt:
      cls.models = _synthetic(['rgb', 'flow'])
      cls.export_dir = exporters.export(
          cls.models,
          os.path.join(cls.tmp, 'joint'),
          cls.fmt,
          with_features=True,
      )
      cls.runner = cls.runner_class(cls.export_dir)

  def assertMatchesModule(self, runner, models, clips, with_features=True):
    out = runner(**clips)
    want = _module_outputs(models, clips)
    if not with_features:
      want = {k: v for k, v in want.items() if 'features' not in k}
    self.assertEqual(sorted(out), sorted(want))
    for key, value in want.items():
      self.assertEqual(out[key].shape, value.shape, key)
      self.assertAllClose(out[key], value, atol=_TOL, rtol=0, msg=key)


@_skip_without('openvino')
class OpenVINOTest(_ExportCase):
  fmt = 'openvino'
  runner_class = exporters.OpenVINORunner

  def test_files(self):
    self.assertEqual(
        sorted(os.listdir(self.export_dir)), ['model.bin', 'model.xml']
    )
    self.assertEqual(os.listdir(self.tmp), ['joint'])  # No temporary left.
    self.assertEqual(self.runner.input_names, ['rgb', 'flow'])
    self.assertEqual(self.runner.precision, 'f32')

  @parameterized.parameters((2, 9), (1, 12))
  def test_joint_matches_module(self, batch, frames):
    self.assertMatchesModule(
        self.runner, self.models, _clips(['rgb', 'flow'], batch, frames)
    )

  def test_rgb_fixed_frames_matches_module(self):
    import openvino as ov  # pylint: disable=g-import-not-at-top

    models = {'rgb': self.models['rgb']}
    path = exporters.export(
        models, os.path.join(self.tmp, 'rgb10'), 'openvino', frames=10
    )
    model = ov.Core().read_model(os.path.join(path, exporters.OPENVINO_FILE))
    self.assertEqual(
        str(model.input('rgb').get_partial_shape()), '[?,10,224,224,3]'
    )
    self.assertMatchesModule(
        exporters.OpenVINORunner(model),
        models,
        _clips(['rgb'], 1, 10, seed=1),
        with_features=False,
    )

  def test_runner_missing_model(self):
    with self.assertRaisesRegex(
        FileNotFoundError,
        r'No exported model at '
        r'.*nowhere; give a \.xml file or a folder '
        r'holding model\.xml',
    ):
      exporters.OpenVINORunner(os.path.join(self.tmp, 'nowhere'))


@_skip_without('onnx', 'tf2onnx', 'onnxruntime')
class ONNXTest(_ExportCase):
  fmt = 'onnx'
  runner_class = exporters.ONNXRunner

  @parameterized.parameters((2, 9), (1, 12))
  def test_joint_matches_module(self, batch, frames):
    self.assertMatchesModule(
        self.runner, self.models, _clips(['rgb', 'flow'], batch, frames)
    )

  def test_free_dimensions_named(self):
    import onnx  # pylint: disable=g-import-not-at-top

    proto = onnx.load(os.path.join(self.export_dir, exporters.ONNX_FILE))
    dims = {
        v.name: [
            d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim
        ]
        for v in [*proto.graph.input, *proto.graph.output]
    }
    self.assertEqual(
        dims,
        {
            'rgb': ['batch', 'rgb_frames', 224, 224, 3],
            'flow': ['batch', 'flow_frames', 224, 224, 2],
            'logits': ['batch', 400],
            'probabilities': ['batch', 400],
            'rgb_features': ['batch', 1024],
            'flow_features': ['batch', 1024],
        },
    )

  def test_runner_wrong_inputs(self):
    with self.assertRaisesRegex(
        ValueError, r'takes the inputs rgb, flow; got rgb\.'
    ):
      self.runner(**_clips(['rgb'], 1, 9))

  def test_rgb_entry_point_fixed_frames(self):
    out_dir = os.path.join(self.tmp, 'rgb9')
    # In a subprocess: its flags would clash with other entry points'.
    run = testing.run_python(
        [
            'export_saved_model.py',
            '--format=onnx',
            '--streams=rgb',
            '--frames=9',
            '--synthetic',
            f'--output_dir={out_dir}',
        ],
        env=testing.user_env(),
    )
    self.assertEqual(run.returncode, 0, run.stderr[-2000:])
    self.assertIn(
        f'Exported the rgb model to {out_dir} (model.onnx)', run.stdout
    )
    # No `failed call to cuInit` from tf2onnx's Grappler pass.
    self.assertEqual(testing.tensorflow_noise(run.stderr), [])
    runner = exporters.ONNXRunner(os.path.join(out_dir, 'model.onnx'))
    # The entry point's synthetic rgb weights are those of seed 0.
    self.assertMatchesModule(
        runner,
        {'rgb': self.models['rgb']},
        _clips(['rgb'], 2, 9, seed=1),
        with_features=False,
    )
    with self.assertRaisesRegex(Exception, r'(?i)dimension|shape'):
      runner(**_clips(['rgb'], 1, 10))


@_skip_without('openvino', 'onnx', 'tf2onnx', 'onnxruntime')
@unittest.skipUnless(
    os.path.exists(_REAL_RGB + '.index'),
    f'the real rgb_scratch checkpoint is not at {_REAL_RGB}',
)
class RealWeightsTest(_ExportCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.models = {'rgb': checkpoints.load_model(_REAL_RGB)}
    cls.clips = _clips(['rgb'], 1, 16, seed=2)
    cls.want = _module_outputs(cls.models, cls.clips)

  @parameterized.parameters(
      ('openvino', exporters.OpenVINORunner), ('onnx', exporters.ONNXRunner)
  )
  def test_rgb_scratch_matches_module(self, fmt, runner_class):
    path = exporters.export(
        self.models, os.path.join(self.tmp, fmt), fmt, with_features=True
    )
    self.assertMatchesModule(runner_class(path), self.models, self.clips)


class ErrorsTest(tf.test.TestCase):

  def test_missing_openvino(self):
    with mock.patch.dict(sys.modules, {'openvino': None}):
      with self.assertRaisesRegex(
          exporters.MissingDependencyError,
          r'OpenVINO export and runtime needs the Python package `openvino`'
          r', which is not installed .*; install the export extras with '
          r'`pip install -r requirements-export.txt`',
      ):
        exporters.export({}, os.path.join(self.get_temp_dir(), 'x'), 'openvino')

  def test_missing_onnxruntime(self):
    with mock.patch.dict(sys.modules, {'onnxruntime': None}):
      with self.assertRaisesRegex(
          exporters.MissingDependencyError,
          r'the ONNX runtime needs the Python package `onnxruntime`',
      ):
        exporters.ONNXRunner('model.onnx')

  def test_bad_format(self):
    with self.assertRaisesRegex(
        ValueError,
        r"Unknown `fmt` 'tflite'; valid "
        r'values are: saved_model, openvino, onnx',
    ):
      exporters.check_installed('tflite')

  def test_bad_precision(self):
    with self.assertRaisesRegex(
        ValueError,
        r"Unknown `precision` 'int8'; " r'valid values are: f32, bf16, default',
    ):
      exporters.OpenVINORunner('model.xml', precision='int8')

  def test_bad_frames(self):
    with self.assertRaisesRegex(
        ValueError,
        r'`frames` must be None \(any count\) or an int >= 9; got 4',
    ):
      serving.ServingModule({}, frames=4)

  def test_entry_point_missing_package(self):
    # The entry point run as a script, with tf2onnx made unimportable.
    code = (
        'import runpy, sys; sys.modules["tf2onnx"] = None; '
        'sys.argv = ["export_saved_model.py", "--format=onnx", '
        '"--synthetic", "--output_dir=unused"]; '
        'runpy.run_path("export_saved_model.py", run_name="__main__")'
    )
    run = testing.run_python(['-c', code])
    self.assertEqual(run.returncode, 1, run.stderr[-2000:])
    self.assertRegex(
        run.stderr,
        r'(?m)^export_saved_model: error: ONNX '
        r'export needs the Python package `tf2onnx`.*'
        r'`pip install -r requirements-export.txt`\.$',
    )
    self.assertNotIn('Traceback', run.stderr)
    self.assertFalse(os.path.exists(os.path.join(_ROOT, 'unused')))


if __name__ == '__main__':
  tf.test.main()
