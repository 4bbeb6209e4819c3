"""Tests for runtime.py: oneDNN on in every entry point, CPU facts, FMA probe."""

import ast
import glob
import os
import re
import subprocess
import sys
import tempfile
from unittest import mock

from absl.testing import parameterized
import tensorflow as tf

import runtime

_ROOT = os.path.dirname(os.path.abspath(__file__))


def _entry_points():
  """Every verb-named script: the .py files that run main through absl."""
  names = []
  for path in sorted(glob.glob(os.path.join(_ROOT, '*.py'))):
    if path.endswith('_test.py'):
      continue
    with open(path) as f:
      text = f.read()
    if re.search(r"^if __name__ == '__main__':", text, re.M) and (
        'app.run(main' in text or 'cli.run(main' in text
    ):
      names.append(os.path.basename(path))
  return names


def _python(code: str, **env_changes):
  """Runs `code` in a fresh interpreter; returns (stdout lines, stderr)."""
  env = {
      k: v
      for k, v in os.environ.items()
      if k not in (runtime.ONEDNN_VAR, runtime.LOG_LEVEL_VAR)
  }
  env.update(env_changes)
  proc = subprocess.run(
      [sys.executable, '-c', code],
      cwd=_ROOT,
      env=env,
      capture_output=True,
      text=True,
      timeout=300,
      check=False,
  )
  if proc.returncode:
    raise AssertionError(f'{code!r} failed:\n{proc.stderr[-3000:]}')
  return proc.stdout.split(), proc.stderr


_REPORT = (
    'import os, runtime; '
    'print(os.environ.get("TF_ENABLE_ONEDNN_OPTS"), '
    'runtime.onednn_active())'
)


class EntryPointTest(parameterized.TestCase):

  def test_every_entry_point_sets_up_runtime_first(self):
    entry_points = _entry_points()
    self.assertContainsSubset(
        [
            'evaluate_sample.py',
            'classify_video.py',
            'extract_features.py',
            'export_saved_model.py',
            'preprocess_video.py',
            'benchmark.py',
        ],
        entry_points,
    )
    for name in entry_points:
      with open(os.path.join(_ROOT, name)) as f:
        body = ast.parse(f.read()).body
      statements = [
          s
          for s in body
          if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
          and not (isinstance(s, ast.ImportFrom) and s.module == '__future__')
      ]
      first, second = statements[:2]
      self.assertIsInstance(first, ast.Import, name)
      self.assertEqual([a.name for a in first.names], ['runtime'], name)
      self.assertEqual(ast.unparse(second), 'runtime.setup()', name)

  def test_importing_an_entry_point_turns_onednn_on(self):
    out, _ = _python(f'import evaluate_sample; {_REPORT}')
    self.assertEqual(out, ['1', 'True'])

  def test_library_turns_onednn_on(self):
    out, _ = _python(f'import i3d; {_REPORT}')
    self.assertEqual(out, ['1', 'True'])

  def test_user_setting_is_kept(self):
    out, err = _python(
        f'import evaluate_sample; {_REPORT}', TF_ENABLE_ONEDNN_OPTS='0'
    )
    self.assertEqual(out, ['0', 'False'])
    self.assertNotIn('oneDNN CPU kernels off', err)

  def test_warns_when_tensorflow_came_first_with_onednn_off(self):
    # Imported with oneDNN off, then the user's choice forgotten: warn once.
    out, err = _python(
        'import os, tensorflow, runtime; print(runtime.setup()); '
        'del os.environ["TF_ENABLE_ONEDNN_OPTS"]; print(runtime.setup()); '
        'print(runtime.setup())',
        TF_ENABLE_ONEDNN_OPTS='0',
    )
    self.assertEqual(out, ['False', 'False', 'False'])
    self.assertEqual(err.count('oneDNN CPU kernels off'), 1)
    self.assertIn('TF_ENABLE_ONEDNN_OPTS=1', err)


class RuntimeTest(parameterized.TestCase):

  def test_tests_run_with_onednn(self):
    # conftest.py calls runtime.setup() before the tests import TensorFlow.
    self.assertIn('tensorflow', sys.modules)
    self.assertIs(
        runtime.onednn_active(), os.environ.get(runtime.ONEDNN_VAR) != '0'
    )
    self.assertIsNotNone(tf.__version__)

  def test_cpu_info_reads_model_and_extensions(self):
    with tempfile.NamedTemporaryFile('w', suffix='cpuinfo') as f:
      f.write(
          'processor\t: 0\nmodel name\t: Test CPU 9000\n'
          'flags\t\t: fpu sse avx avx2 fma avx512f avx512_bf16\n'
          'processor\t: 1\nmodel name\t: other\nflags\t\t: fpu\n'
      )
      f.flush()
      info = runtime.cpu_info(f.name)
    self.assertEqual(info['model'], 'Test CPU 9000')
    self.assertEqual(info['isa'], ['AVX2', 'FMA', 'AVX-512', 'AVX512_BF16'])
    self.assertGreaterEqual(info['cores'], 1)

  def test_cpu_info_without_file(self):
    info = runtime.cpu_info('/nonexistent/cpuinfo')
    self.assertEqual((info['model'], info['isa']), ('unknown', []))

  def test_fma_peak_measures_a_rate(self):
    if 'avx2' not in runtime.cpu_info()['flags']:
      self.skipTest('The FMA probe needs AVX2 and FMA.')
    if not any(map(runtime.shutil.which, ('cc', 'gcc', 'clang'))):
      self.skipTest('No C compiler.')
    peak = runtime.fma_peak(threads=1, seconds=0.02, repeats=1)
    self.assertGreater(peak['gflops'], 1.0)
    self.assertEqual(peak['gflops'], max(peak['by_isa'].values()))

  def test_fma_peak_without_compiler(self):
    with mock.patch.object(runtime.shutil, 'which', return_value=None):
      self.assertIsNone(runtime.fma_peak(threads=1, seconds=0.01))

  def test_describe_names_cpu_and_onednn(self):
    lines = runtime.describe()
    self.assertStartsWith(lines[0], 'CPU: ')
    self.assertRegex(lines[1], r'^oneDNN: (on|off) ')


if __name__ == '__main__':
  tf.test.main()
