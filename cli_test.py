"""Bad input at the command line: one error line, early, nothing written.

Each entry point runs once, in one subprocess, over all its cases
(testing.entry_cases), since importing TensorFlow costs seconds
(fetch_assets.py, which starts without it, runs once per case). Every
case asserts the message, the exit code, that there is no traceback and
that nothing was written. BAD_INPUT.md lists the same cases.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time

from absl.testing import absltest
import numpy as np

import assets
import checkpoints
import cli
import features
import testing
import tvl1_cuda

_ROOT = os.path.dirname(os.path.abspath(__file__))
# The environment of a new user: TensorFlow's start-up must be quiet in it.
_ENV = testing.user_env(PYTHONPATH=_ROOT)


class CommandTestCase(testing.TempDirMixin, absltest.TestCase):

  def assert_error(self, result, command: str, pattern: str, code: int = 1):
    """One error line matching `pattern`, the exit code, no report."""
    stderr = result['stderr']
    self.assertEqual(result['code'], code, stderr)
    self.assertNotIn('Traceback', stderr)
    lines = [
        line for line in stderr.splitlines() if f'{command}: error:' in line
    ]
    self.assertLen(lines, 1, stderr)
    self.assertRegex(lines[0], f'^{command}: error: .*{pattern}')
    self.assertEqual(result['stdout'], '')

  @classmethod
  def write_data(cls, names, samples=()) -> None:
    """cls.data: synthetic `names` and rgb_scratch_kin600 (9-frame samples);
    cls.slot600: a checkpoint folder whose rgb_imagenet is the 600-class one.
    """
    cls.data = cls.path('synthetic')
    checkpoints.write_synthetic_release(
        cls.data,
        names=(*names, 'rgb_scratch_kin600'),
        samples=samples,
        frames=9,
    )
    cls.slot600 = cls.path('slot600')
    shutil.copytree(
        os.path.join(cls.data, 'checkpoints', 'rgb_scratch_kin600'),
        os.path.join(cls.slot600, 'rgb_imagenet'),
    )

  def assert_nothing_written(self, folder: str, before=()):
    self.assertCountEqual(os.listdir(folder), before)


class EvaluateSampleTest(CommandTestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.write_data(('rgb_imagenet', 'flow_imagenet'), ('rgb', 'flow'))
    rng = np.random.default_rng(0)
    arrays = {
        'five': rng.uniform(-1, 1, [1, 5, 224, 224, 3]).astype(np.float32),
        'nan': np.full([1, 9, 224, 224, 3], np.nan, np.float32),
        'pixels': rng.uniform(0, 255, [1, 9, 224, 224, 3]).astype(np.float32),
        'uint8': rng.integers(0, 256, [1, 9, 224, 224, 3], np.uint8),
        'float64': rng.uniform(-1, 1, [1, 9, 224, 224, 3]),
        'flow10': rng.uniform(-1, 1, [1, 10, 224, 224, 2]).astype(np.float32),
    }
    cls.inputs = cls.path('inputs')
    os.makedirs(cls.inputs)
    for name, array in arrays.items():
      np.save(os.path.join(cls.inputs, f'{name}.npy'), array)
    # A copy of rgb_imagenet whose index is cut short.
    cls.corrupt = cls.path('corrupt')
    shutil.copytree(
        os.path.join(cls.data, 'checkpoints', 'rgb_imagenet'),
        os.path.join(cls.corrupt, 'rgb_imagenet'),
    )
    with open(
        os.path.join(cls.corrupt, 'rgb_imagenet', 'model.ckpt.index'), 'r+b'
    ) as f:
      f.truncate(50)
    open(os.path.join(cls.inputs, 'empty.npy'), 'wb').close()
    with open(os.path.join(cls.inputs, 'garbage.npy'), 'wb') as f:
      f.write(os.urandom(4096))
    rgb = lambda name: f'--rgb_sample={cls.inputs}/{name}.npy'
    cases = {
        'five': ['--eval_type=rgb', rgb('five')],
        'empty': ['--eval_type=rgb', rgb('empty')],
        'garbage': ['--eval_type=rgb', rgb('garbage')],
        'nan': ['--eval_type=rgb', rgb('nan')],
        'pixels': ['--eval_type=rgb', rgb('pixels')],
        'pixels_allowed': [
            '--eval_type=rgb',
            rgb('pixels'),
            '--allow_out_of_range',
        ],
        'uint8': ['--eval_type=rgb', rgb('uint8')],
        'float64': ['--eval_type=rgb', rgb('float64')],
        'joint_lengths': [f'--flow_sample={cls.inputs}/flow10.npy'],
        'slot600': ['--eval_type=rgb', f'--checkpoint_dir={cls.slot600}'],
        'corrupt': ['--eval_type=rgb', f'--checkpoint_dir={cls.corrupt}'],
        'missing_flow': [
            '--eval_type=flow',
            f'--flow_sample={cls.inputs}/nope.npy',
        ],
        'bad_flag': ['--eval_type=rgb800'],
        'positional': ['--imagenet_pretrained', 'false'],
        'synthetic': [],  # The default: joint.
    }
    base = [f'--data_dir={cls.data}']
    results = testing.entry_cases(
        'evaluate_sample',
        [base + c for c in cases.values()],
        as_new_user=True,
    )
    cls.results = dict(zip(cases, results))

  def error(self, case: str, pattern: str, code: int = 1):
    self.assert_error(self.results[case], 'evaluate_sample', pattern, code)

  def test_five_frames(self):
    self.error('five', r'has 5 frames .*needs at least 9 frames')

  def test_empty_file(self):
    self.error('empty', r"empty.npy' is empty \(0 bytes\)")

  def test_garbage_bytes(self):
    self.error('garbage', r"garbage.npy' is not a valid .npy file")
    self.assertNotIn('pickled', self.results['garbage']['stderr'])

  def test_nan(self):
    self.error('nan', r'holds 1354752 NaN or Inf values')

  def test_pixel_range_is_refused_unless_allowed(self):
    self.error(
        'pixels',
        r'far outside the \[-1, 1\] the model expects .*x / 127.5 - 1.*'
        r'with --allow_out_of_range$',
    )
    allowed = self.results['pixels_allowed']
    self.assertEqual(allowed['code'], 0, allowed['stderr'])
    self.assertIn('Norm of logits:', allowed['stdout'])

  def test_uint8(self):
    self.error('uint8', r'must be float32 in \[-1, 1\]; got dtype uint8: scale')

  def test_float64(self):
    self.error('float64', r'must be float32 .*got dtype float64: convert it')

  def test_joint_of_different_lengths(self):
    self.error(
        'joint_lengths',
        r'same batch size and number of frames .*rgb \[1, 9\], flow \[1, 10\]',
    )

  def test_600_classes_in_a_400_class_slot(self):
    self.error(
        'slot600',
        r"slot600/rgb_imagenet/model.ckpt' has 600 classes, but 400 are "
        r'expected',
    )
    self.assertNotIn('label map', self.results['slot600']['stderr'])

  def test_corrupt_checkpoint(self):
    self.error(
        'corrupt', r'rgb_imagenet/model.ckpt.index: it is truncated or corrupt'
    )

  def test_missing_custom_file_names_the_flag(self):
    stderr = self.results['missing_flow']['stderr']
    self.error('missing_flow', r'Missing input files:')
    self.assertIn(f'flow sample: {self.inputs}/nope.npy', stderr)
    self.assertIn('--flow_sample', stderr)

  def test_bad_flag_is_one_line_without_help(self):
    self.error(
        'bad_flag',
        r'rgb800.*; run `python evaluate_sample.py '
        r'--helpshort` for the flags$',
        code=2,
    )
    self.assertLen(self.results['bad_flag']['stderr'].splitlines(), 1)
    self.assertIn(
        'rgb800: value should be one of <rgb|rgb600|flow|joint>',
        self.results['bad_flag']['stderr'],
    )

  def test_positional_argument_is_one_line_without_help(self):
    self.error('positional', r"Unexpected positional arguments \['false'\]")
    self.assertLen(self.results['positional']['stderr'].splitlines(), 1)
    self.assertIn(
        '--imagenet_pretrained=false', self.results['positional']['stderr']
    )

  def test_synthetic_weights_say_so(self):
    result = self.results['synthetic']
    self.assertEqual(result['code'], 0, result['stderr'])
    self.assertIn('RANDOM WEIGHTS', result['stderr'])
    self.assertIn('NOT the release', result['stderr'])
    self.assertIn('synthetic class', result['stdout'])
    # The default eval type (joint) prints the whole report.
    norm, rows = testing.parse_report(result['stdout'])
    self.assertGreater(norm, 0)
    self.assertLen(rows, 20)


class ClassifyVideoTest(CommandTestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.write_data(('rgb_imagenet',))
    cls.video = testing.write_moving_video(cls.path('clip.mp4'), 10)
    cls.bad = cls.path('bad.mp4')
    with open(cls.bad, 'wb') as f:
      f.write(b'not a video at all\n' * 50)
    cls.out = cls.path('out')
    os.makedirs(cls.out)
    base = [f'--data_dir={cls.data}', '--noprogress']
    video = f'--video={cls.video}'
    cases = {
        'json_proc': [video, '--json_out=/proc/x.json'],
        'chart_proc': [video, '--chart_out=/proc/x.png'],
        'chart_folder': [video, f'--chart_out={cls.out}'],
        'slot600': [video, f'--checkpoint_dir={cls.slot600}'],
        'bad_video': [f'--video={cls.bad}'],
        'outputs': [
            video,
            f'--json_out={cls.out}/clip.json',
            f'--chart_out={cls.out}/clip.png',
        ],
    }
    old_umask = os.umask(0o022)
    try:
      results = testing.entry_cases(
          'classify_video',
          [base + c for c in cases.values()],
          as_new_user=True,
      )
    finally:
      os.umask(old_umask)
    cls.results = dict(zip(cases, results))

  def error(self, case: str, pattern: str):
    self.assert_error(self.results[case], 'classify_video', pattern)

  def test_unwritable_json_out(self):
    self.error('json_proc', r"cannot write the file '/proc/x.json'.*--json_out")

  def test_unwritable_chart_out(self):
    self.error('chart_proc', r"cannot write the file '/proc/x.png'")

  def test_chart_out_is_a_folder(self):
    self.error(
        'chart_folder', r'is a folder, not a file; pass another ' r'--chart_out'
    )

  def test_600_classes_in_a_400_class_slot(self):
    self.error('slot600', r'has 600 classes, but 400 are expected')

  def test_not_a_video(self):
    self.error(
        'bad_video', 'Cannot read ' + re.escape(repr(self.bad)) + ' as a video'
    )

  def test_outputs_have_normal_permissions_and_the_banner(self):
    result = self.results['outputs']
    self.assertEqual(result['code'], 0, result['stderr'])
    self.assertIn('RANDOM WEIGHTS', result['stderr'])
    for name in ('clip.json', 'clip.png'):
      mode = stat.S_IMODE(os.stat(os.path.join(self.out, name)).st_mode)
      self.assertEqual(mode, 0o644, name)
    self.assertEqual(sorted(os.listdir(self.out)), ['clip.json', 'clip.png'])


class ExtractFeaturesTest(CommandTestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.write_data(())
    cls.videos = cls.path('videos')
    testing.write_moving_video(os.path.join(cls.videos, 'a.mp4'), 10)
    cls.a_file = cls.path('a_file')
    open(cls.a_file, 'w').close()
    base = [f'--inputs={cls.videos}', '--noprogress']
    cases = {
        'proc': ['--output_dir=/proc/x', f'--checkpoint_dir={cls.slot600}'],
        'file': [f'--output_dir={cls.a_file}'],
        'slot600': [
            f'--output_dir={cls.path("features")}',
            f'--checkpoint_dir={cls.slot600}',
            '--endpoint=Logits',
            '--window=9',
        ],
        'bad_flag': ['--output_dir=x', '--window=0'],
        'short_window': [
            f'--output_dir={cls.path("unused")}',
            '--endpoint=Logits',
            '--window=8',
        ],
    }
    results = testing.entry_cases(
        'extract_features',
        [base + c for c in cases.values()],
        as_new_user=True,
    )
    cls.results = dict(zip(cases, results))

  def error(self, case: str, pattern: str, code: int = 1):
    self.assert_error(self.results[case], 'extract_features', pattern, code)

  def test_unwritable_output_dir(self):
    self.error('proc', r"cannot write the folder '/proc/x'.*--output_dir")

  def test_output_dir_is_a_file(self):
    self.error('file', r"a_file' is a file, not a folder")
    self.assertEqual(os.path.getsize(self.a_file), 0)

  def test_600_classes_in_a_400_class_slot_is_refused(self):
    self.error('slot600', r'has 600 classes, but 400 are expected')
    self.assertFalse(os.path.exists(self.path('features')))

  def test_bad_flag_is_one_line(self):
    self.error('bad_flag', r'window.*--helpshort', code=2)
    self.assertLen(self.results['bad_flag']['stderr'].splitlines(), 1)

  def test_window_too_short_for_the_endpoint(self):
    self.error(
        'short_window',
        re.escape(
            '--window must be an int of at least 9 frames for endpoint '
            "'Logits'; got 8"
        ),
        code=2,
    )
    self.assertFalse(os.path.exists(self.path('unused')))


class SmallCommandsTest(CommandTestCase):
  """preprocess_video, export_saved_model and fetch_assets."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.video = testing.write_moving_video(cls.path('clip.mp4'), 10)
    cls.a_file = cls.path('a_file')
    open(cls.a_file, 'w').close()
    cls.work = cls.path('work')  # The current folder of the runs.
    os.makedirs(cls.work)
    video = f'--video={cls.video}'
    cases = {
        'proc': [video, '--output_dir=/proc/x'],
        'file': [video, f'--output_dir={cls.a_file}'],
        'default': [video, '--streams=rgb', '--nogif', '--noprogress'],
        'cuda': [video, '--flow_backend=cuda', f'--output_dir={cls.path("g")}'],
    }
    cls.preprocess = dict(
        zip(
            cases,
            testing.entry_cases(
                'preprocess_video',
                list(cases.values()),
                cls.work,
                as_new_user=True,
            ),
        )
    )
    cls.export = testing.entry_cases(
        'export_saved_model',
        [['--output_dir=/proc/x/1', '--synthetic']],
        as_new_user=True,
    )[0]
    cls.dest = cls.path('dest')
    os.makedirs(cls.dest)
    cls.fresh = cls.path('fresh')  # A clone's root, for the default folder.
    os.makedirs(cls.fresh)
    small = ['--checkpoints=rgb_imagenet', '--samples=rgb']
    cases = {
        'nope': [f'--source_dir={cls.path("nope")}', f'--dest_root={cls.dest}'],
        'synthetic_proc': [
            '--synthetic',
            '--synthetic_dir=/proc/x',
            f'--dest_root={cls.dest}',
        ],
        'synthetic_default': [
            '--synthetic',
            *small,
            '--synthetic_frames=9',
            f'--dest_root={cls.fresh}',
        ],
    }
    # fetch_assets.py starts without TensorFlow: a process per case is
    # quicker than one that imports testing.py.
    cls.fetch = {}
    for name, args in cases.items():
      done = testing.run_python(['fetch_assets.py', *args])
      cls.fetch[name] = {
          'code': done.returncode,
          'stdout': done.stdout,
          'stderr': done.stderr,
      }

  def test_preprocess_unwritable_output_dir(self):
    self.assert_error(self.preprocess['proc'], 'preprocess_video', r"'/proc/x'")

  def test_preprocess_cuda_backend_without_a_gpu(self):
    if tvl1_cuda.available():
      self.skipTest('a CUDA GPU is available here')
    self.assert_error(
        self.preprocess['cuda'],
        'preprocess_video',
        r'--flow_backend=cuda: .*cannot run here: .*use backend numba',
        code=2,
    )
    self.assertFalse(os.path.exists(self.path('g')))

  def test_preprocess_output_dir_is_a_file(self):
    self.assert_error(
        self.preprocess['file'], 'preprocess_video', r'is a file, not a folder'
    )
    self.assertEqual(os.path.getsize(self.a_file), 0)

  def test_preprocess_default_output_dir_is_not_out(self):
    result = self.preprocess['default']
    self.assertEqual(result['code'], 0, result['stderr'])
    self.assertEqual(os.listdir(self.work), ['preprocessed'])
    self.assertEqual(
        os.listdir(os.path.join(self.work, 'preprocessed')), ['clip_rgb.npy']
    )

  def test_export_unwritable_output_dir_once(self):
    self.assert_error(
        self.export,
        'export_saved_model',
        r"cannot write the folder '/proc/x/1'",
    )
    self.assertEqual(self.export['stderr'].count('/proc/x/1'), 1)

  def test_fetch_missing_source_dir(self):
    result = self.fetch['nope']
    self.assert_error(result, 'fetch_assets', r'nope does not exist')
    self.assertLen(result['stderr'].splitlines(), 1)
    self.assert_nothing_written(self.dest)

  def test_fetch_synthetic_goes_to_its_own_marked_folder(self):
    result = self.fetch['synthetic_default']
    self.assertEqual(result['code'], 0, result['stderr'])
    self.assertIn('RANDOM files (NOT the release)', result['stdout'])
    # Only data/synthetic/, never the release's data/ files.
    self.assertEqual(os.listdir(self.fresh), ['data'])
    self.assertEqual(
        os.listdir(os.path.join(self.fresh, 'data')), ['synthetic']
    )
    written = os.listdir(os.path.join(self.fresh, 'data', 'synthetic'))
    self.assertIn(assets.SYNTHETIC_MARKER, written)
    self.assertIn('checkpoints', written)

  def test_fetch_synthetic_unwritable(self):
    self.assert_error(
        self.fetch['synthetic_proc'], 'fetch_assets', r"'/proc/x'.*--synthetic"
    )
    self.assert_nothing_written(self.dest)


class InterruptTest(testing.TempDirMixin, absltest.TestCase):
  """Ctrl-C: one line, exit code 130, no partial output."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    # Long enough that TV-L1 is still running when SIGINT comes.
    cls.video = testing.write_moving_video(cls.path('videos/long.mp4'), 60)

  def interrupt(self, args, ready: str, command: str):
    """Runs the command, sends SIGINT once `ready` is on stderr."""
    process = subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=_ROOT,
        env=_ENV,
    )
    seen = threading.Event()
    stderr = []

    def read():
      for chunk in iter(lambda: process.stderr.read(1), ''):
        stderr.append(chunk)
        if ready in ''.join(stderr[-200:]):
          seen.set()
      seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    self.assertTrue(seen.wait(120), 'the command never got going')
    time.sleep(1.0)
    self.assertIsNone(process.poll(), ''.join(stderr))
    process.send_signal(signal.SIGINT)
    process.wait(60)
    reader.join(10)
    text = ''.join(stderr)
    self.assertEqual(process.returncode, cli.INTERRUPT_EXIT, text)
    self.assertNotIn('Traceback', text)
    self.assertEqual(testing.tensorflow_noise(text), [])
    self.assertEqual(
        text.splitlines()[-1], f'{command}: interrupted; rerun to resume'
    )

  def test_preprocess_video(self):
    out = self.path('preprocessed')
    self.interrupt(
        [
            'preprocess_video.py',
            f'--video={self.video}',
            f'--output_dir={out}',
            '--streams=flow',
            '--flow_workers=2',
        ],
        'long.mp4',
        'preprocess_video',
    )
    self.assertFalse(os.path.exists(out))

  def test_extract_features(self):
    data = self.path('synthetic')
    checkpoints.write_synthetic_release(
        data, names=('flow_imagenet',), samples=(), frames=9
    )
    out = self.path('features')
    self.interrupt(
        [
            'extract_features.py',
            f'--inputs={self.path("videos")}',
            f'--output_dir={out}',
            f'--checkpoint_dir={data}/checkpoints',
            '--streams=flow',
            '--endpoint=Conv3d_1a_7x7',
            '--window=16',
            '--batch_size=1',
            '--flow_workers=2',
        ],
        'videos',
        'extract_features',
    )
    self.assertFalse(os.path.exists(out) and os.listdir(out))


class ReadmeCommandsTest(testing.TempDirMixin, absltest.TestCase):
  """The README's commands, typed as it writes them, in its environment."""

  def test_documented_commands_run_in_the_activated_environment(self):
    with open(os.path.join(_ROOT, 'README.md')) as f:
      readme = f.read()
    # The commands of a first contact: the sections before "## Speed" (each
    # TensorFlow start costs seconds; the later sections' scripts are run
    # by their own tests).
    first = readme[: readme.index('\n## Speed')]
    scripts = sorted(set(re.findall(r'^python (\w+\.py)', first, re.M)))
    # Every script those sections document is run below; the first-contact
    # ones must be among them.
    for name in (
        'classify_video.py',
        'evaluate_sample.py',
        'extract_features.py',
        'fetch_assets.py',
        'preprocess_video.py',
    ):
      self.assertIn(name, scripts)
    self.assertIn('source .venv/bin/activate', readme)
    self.assertIn('bash multi_evaluate.sh', readme)
    data = self.path('synthetic')
    # --help of every documented script, side by side; then the offline
    # start, as the README writes it (smaller); then multi_evaluate.sh
    # without activation, which must still find the environment's Python.
    helps = ' '.join(
        f'(python {s} --helpshort > {self.path(s)}.help 2>&1; '
        f'echo $? >> {self.path(s)}.help) &'
        for s in scripts
        if s not in ('fetch_assets.py', 'evaluate_sample.py')
    )
    script = (
        'set -e\n'
        'source .venv/bin/activate\n'
        f'{helps} \n'
        f'python fetch_assets.py --synthetic --synthetic_dir={data} '
        '--checkpoints=rgb_imagenet --samples=rgb --synthetic_frames=9\n'
        f'python evaluate_sample.py --data_dir={data} --eval_type=rgb\n'
        'wait\n'
        'deactivate\n'
        f'OUT_DIR={self.path("out")} bash multi_evaluate.sh --nosuchflag '
        f'> {self.path("multi")} 2>&1 || true\n'
    )
    env = {k: v for k, v in _ENV.items() if k not in ('PYTHONPATH',)}
    done = subprocess.run(
        ['bash', '-c', script],
        capture_output=True,
        text=True,
        check=False,
        cwd=_ROOT,
        env=env,
    )
    self.assertEqual(done.returncode, 0, done.stderr[-2000:])
    self.assertIn('RANDOM WEIGHTS', done.stderr)
    self.assertEqual(testing.tensorflow_noise(done.stderr), [])
    self.assertIn('Norm of logits:', done.stdout)
    for s in scripts:
      if s in ('fetch_assets.py', 'evaluate_sample.py'):
        continue
      with open(f'{self.path(s)}.help') as f:
        text = f.read()
      self.assertNotIn('ModuleNotFoundError', text, s)
      self.assertNotIn('Traceback', text, s)
      self.assertEqual(testing.tensorflow_noise(text), [], s)
      self.assertIn('flags:', text, s)
    with open(self.path('multi')) as f:
      multi = f.read()
    self.assertNotIn('ModuleNotFoundError', multi)
    self.assertIn("Unknown command line flag 'nosuchflag'", multi)


class WorkerTest(absltest.TestCase):

  def test_tvl1_workers_do_not_import_tensorflow(self):
    # Every command's script imports TensorFlow; forkserver and spawn workers
    # would import the script again. A script importing `synthetic_videos`
    # (cheap, and imported by neither recipe nor its imports) stands in for
    # it: neither it nor TensorFlow may appear in a worker.
    script = (
        'import synthetic_videos, recipe\n'
        "if __name__ == '__main__':\n"
        '  pool = recipe._executor(1)\n'
        '  print(sorted(pool.submit(recipe._worker_modules).result()))\n'
        '  pool.shutdown()\n'
    )
    path = os.path.join(tempfile.mkdtemp(), 'script.py')
    with open(path, 'w') as f:
      f.write(script)
    done = subprocess.run(
        [sys.executable, path],
        capture_output=True,
        text=True,
        check=True,
        env=_ENV,
    )
    modules = eval(done.stdout)  # pylint: disable=eval-used
    self.assertIn('recipe', modules)
    self.assertNotIn('synthetic_videos', modules)
    self.assertNotIn('tensorflow', modules)


class FolderScanTest(testing.TempDirMixin, absltest.TestCase):

  def test_every_container_and_a_note_for_other_files(self):
    folder = self.path('mixed')
    frames = testing.moving_frames(4, 48, 64)
    testing.write_video(os.path.join(folder, 'a.mkv'), frames)
    # An .mp4 named .mpg and one with an unknown extension: probed.
    testing.write_video(os.path.join(folder, 'b.mpg'), frames, fmt='mp4')
    testing.write_video(os.path.join(folder, 'c.mp4'), frames, fmt='mp4')
    os.rename(os.path.join(folder, 'c.mp4'), os.path.join(folder, 'c.clip'))
    for name, data in (('notes.txt', b'hi'), ('d.bin', b'\0' * 100)):
      with open(os.path.join(folder, name), 'wb') as f:
        f.write(data)
    with self.assertLogs(level='WARNING') as logs:
      found = features.find_videos(folder)
    self.assertEqual([v.name for v in found], ['a', 'b', 'c'])
    self.assertRegex(
        '\n'.join(logs.output), r'Skipped 2 files .* not videos: d.bin, notes'
    )

  def test_broad_extension_list(self):
    for ext in ('.mpg', '.m4v', '.flv', '.wmv', '.mpeg', '.3gp', '.ts'):
      self.assertIn(ext, features.VIDEO_EXTENSIONS)


if __name__ == '__main__':
  absltest.main()
