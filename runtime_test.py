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
import testing

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
  env = testing.user_env(**env_changes)
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


# Runs a script as `python script.py ...` would, then one TensorFlow op
# (which starts its devices); prints whether TensorFlow was loaded.
_RUN_AND_TOUCH_TENSORFLOW = """
import runpy, sys
sys.argv = sys.argv[1:]
try:
  runpy.run_path(sys.argv[0], run_name='__main__')
except SystemExit:
  pass
loaded = 'tensorflow' in sys.modules
if loaded:
  import tensorflow as tf
  tf.constant(1.0) + 1.0
print('tensorflow loaded:', loaded)
"""


class QuietStartTest(parameterized.TestCase):
  """TensorFlow's C++ start-up lines never reach a command's stderr."""

  def test_tensorflow_loading_commands_start_quietly(self):
    # cli_test.py runs the first-contact commands in the default environment
    # and checks the same. These load TensorFlow at import, so --helpshort
    # loads it: the Beam commands in .venv-beam where it exists, else
    # train.py. Beside them ('control'), TensorFlow imported without runtime
    # must show the noise, even at log level 2, or this test proves nothing.
    beam_python = os.path.join(_ROOT, '.venv-beam', 'bin', 'python')
    if os.path.exists(beam_python):
      scripts = {
          'benchmark_beam.py': beam_python,
          'extract_features_beam.py': beam_python,
      }
    else:
      scripts = {'train.py': sys.executable}
    commands = {
        script: [python, '-c', _RUN_AND_TOUCH_TENSORFLOW, script, '--helpshort']
        for script, python in scripts.items()
    }
    commands['control'] = [
        sys.executable,
        '-c',
        'import tensorflow as tf; tf.constant(1) + 1',
    ]
    processes = {
        name: subprocess.Popen(
            command,
            cwd=_ROOT,
            env=testing.user_env(
                **({'TF_CPP_MIN_LOG_LEVEL': '2'} if name == 'control' else {})
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, command in commands.items()
    }
    for name, process in processes.items():
      out, err = process.communicate(timeout=300)
      self.assertEqual(process.returncode, 0, err[-2000:])
      if name == 'control':
        self.assertNotEmpty(testing.tensorflow_noise(err))
      else:
        self.assertIn('tensorflow loaded: True', out, name)
        self.assertEqual(testing.tensorflow_noise(err), [], name)

  def test_quiet_stderr_keeps_what_is_not_start_up_noise(self):
    code = (
        'import os, runtime\n'
        'with runtime.quiet_stderr():\n'
        '  os.write(2, b"I0000 00:00:17.9  657 port.cc:153] oneDNN custom '
        'operations are on.\\nreal problem\\n")\n'
    )
    _, err = _python(code)
    self.assertEqual(err, 'real problem\n')

  @parameterized.named_parameters(
      ('no_driver', False, None, 'CPU'),
      ('driver', True, None, 'None'),
      ('user_choice', False, 'CPU,GPU', 'CPU,GPU'),
  )
  def test_cpu_only_devices_without_a_gpu_driver(self, driver, user, want):
    code = (
        'import os, runtime\n'
        'from unittest import mock\n'
        f'with mock.patch.object(os.path, "exists", return_value={driver}):\n'
        '  runtime.setup()\n'
        'print(os.environ.get(runtime.DEVICE_TYPES_VAR))\n'
    )
    changes = {runtime.DEVICE_TYPES_VAR: user} if user else {}
    out, _ = _python(code, **changes)
    self.assertEqual(out, [want])


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
