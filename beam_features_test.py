"""Tests for beam_features.py and extract_features_beam.py (DirectRunner).

apache-beam lives in .venv-beam (see requirements-beam.txt). Run from .venv,
this file checks that the entry point says how to install Beam and reruns
itself in .venv-beam in a subprocess (skipped, saying so, if .venv-beam is
missing: `bash setup_beam_env.sh` makes it). Tiny generated videos, a
synthetic rgb_imagenet checkpoint, endpoint Mixed_4f, 16-frame windows.
"""

import json
import os
import signal
import subprocess
import sys
import time

from absl.testing import absltest
import numpy as np
import tensorflow as tf

import assets
import features
import inference
import testing

try:
  import apache_beam as beam
  from apache_beam.options import pipeline_options

  import beam_features
except ImportError:
  beam = None

_ROOT = os.path.dirname(os.path.abspath(__file__))
_BEAM_PYTHON = os.path.join(_ROOT, '.venv-beam', 'bin', 'python')
_SETTINGS = dict(endpoint='Mixed_4f', window=16, stride=16, batch_size=2)


def _env() -> dict:
  path = os.environ.get('PYTHONPATH')
  return {
      **os.environ,
      'PYTHONPATH': _ROOT + (os.pathsep + path if path else ''),
      'TF_CPP_MIN_LOG_LEVEL': '3',
  }


@absltest.skipIf(beam is not None, 'apache-beam is installed here.')
class WithoutBeamTest(absltest.TestCase):

  def test_entry_point_says_how_to_install_beam(self):
    run = subprocess.run(
        [sys.executable, 'extract_features_beam.py', '--inputs=x',
         '--output_dir=y'],
        cwd=_ROOT, env=_env(), capture_output=True, text=True, check=False,
    )  # fmt: skip
    self.assertEqual(run.returncode, 1, run.stderr)
    self.assertRegex(
        run.stderr,
        r'extract_features_beam: error: apache-beam is not installed .*'
        r'pip install -r requirements-beam.txt',
    )

  def test_beam_tests_pass_in_beam_venv(self):
    if not os.path.exists(_BEAM_PYTHON):
      self.skipTest('.venv-beam is missing; `bash setup_beam_env.sh` makes it.')
    run = subprocess.run(
        [_BEAM_PYTHON, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
         os.path.abspath(__file__)],
        cwd=_ROOT, env=_env(), capture_output=True, text=True, check=False,
    )  # fmt: skip
    self.assertEqual(run.returncode, 0, run.stdout[-6000:] + run.stderr[-3000:])
    self.assertRegex(run.stdout, r'\b2 passed')


@absltest.skipIf(beam is None, 'apache-beam is not installed here.')
class PipelineTest(testing.TempDirMixin, tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    ckpt = testing.write_checkpoints(cls.path('ckpt'), ('rgb_imagenet',))
    cls.ckpt = ckpt
    cls.prefixes = {'rgb': assets.checkpoint_prefix(ckpt, 'rgb_imagenet')}
    videos = cls.path('videos')
    testing.write_moving_video(os.path.join(videos, 'long.mp4'), 42, seed=1)
    testing.write_moving_video(
        os.path.join(videos, 'sub', 'short.mp4'), 6, seed=2
    )
    testing.write_moving_video(
        os.path.join(videos, 'sub', 'other.mp4'), 20, seed=3
    )
    with open(os.path.join(videos, 'bad.mp4'), 'wb') as f:
      f.write(b'not a video at all')
    cls.videos_dir = videos
    cls.videos = features.find_videos(videos)
    # The single-machine extractor's outputs.
    cls.reference = cls.path('reference')
    predictors = inference.load_predictors(cls.prefixes, 'Mixed_4f')
    summary = features.Extractor(
        predictors, cls.prefixes, flow_workers=1, **_SETTINGS
    ).run(cls.videos, cls.reference, progress=False)
    assert len(summary.extracted) == 3 and len(summary.failed) == 1, summary

  def _run(self, out: str, mode: str, workers: int = 1):
    options = pipeline_options.PipelineOptions(
        direct_running_mode=mode, direct_num_workers=workers
    )
    settings = beam_features.Settings(
        self.prefixes, flow_workers=1, num_threads=1, **_SETTINGS
    )
    failures = os.path.join(out, beam_features.FAILURES_FILE)
    with beam.Pipeline(options=options) as pipeline:
      beam_features.build(pipeline, self.videos, settings, out, failures)
    return beam_features.counters(pipeline.result), failures

  def assert_same_as_reference(self, out: str):
    got, want = testing.read_tree(out), testing.read_tree(self.reference)
    got.pop(beam_features.FAILURES_FILE, None)
    self.assertEqual(sorted(got), sorted(want))
    self.assertLen(want, 6)  # 3 videos: .npy + .json.
    for name, data in want.items():
      if name.endswith('.npy'):
        self.assertAllClose(
            np.load(os.path.join(out, name)),
            np.load(os.path.join(self.reference, name)),
            atol=1e-6,
            rtol=0,
        )
      else:
        self.assertEqual(json.loads(got[name]), json.loads(data), name)

  def assert_failures(self, path: str):
    failures = beam_features.read_failures(path)
    self.assertEqual([p for p, _ in failures], [self.videos[0].path])
    self.assertEqual(self.videos[0].name, 'bad')
    self.assertNotEqual(failures[0][1].strip(), '')

  def test_outputs_equal_single_machine_then_rerun_skips(self):
    out = self.path('multi')
    counts, failures = self._run(out, 'multi_processing', workers=2)
    self.assertEqual(
        counts,
        {
            'videos_done': 3,
            'videos_skipped': 0,
            'videos_failed': 1,
            'frames': 42 + 6 + 20,
        },
    )
    self.assert_same_as_reference(out)
    self.assert_failures(failures)

    before = {
        name: os.stat(os.path.join(out, name)).st_mtime_ns
        for name in testing.read_tree(out)
    }
    contents = testing.read_tree(out)
    counts, failures = self._run(out, 'in_memory')
    self.assertEqual(
        counts,
        {
            'videos_done': 0,
            'videos_skipped': 3,
            'videos_failed': 1,
            'frames': 0,
        },
    )
    self.assertEqual(testing.read_tree(out), contents)
    for name, mtime in before.items():
      if name != beam_features.FAILURES_FILE:
        self.assertEqual(os.stat(os.path.join(out, name)).st_mtime_ns, mtime)

  def _entry_point(self, out: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, 'extract_features_beam.py',
         f'--inputs={self.videos_dir}', f'--output_dir={out}',
         f'--checkpoint_dir={self.ckpt}', '--num_workers=1',
         '--endpoint=Mixed_4f', '--window=16', '--stride=16',
         '--batch_size=2', '--flow_workers=1'],
        cwd=_ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip

  def test_killed_run_restarted_gives_complete_outputs(self):
    out = self.path('killed')
    run = self._entry_point(out)
    deadline = time.monotonic() + 240
    first = None
    while time.monotonic() < deadline and run.poll() is None:
      done = (
          [n for n in testing.read_tree(out) if n.endswith('.json')]
          if (os.path.isdir(out))
          else []
      )
      if done:
        first = done
        break
      time.sleep(0.05)
    self.assertIsNotNone(first, 'no video finished before the deadline')
    os.killpg(run.pid, signal.SIGKILL)  # The runner and its workers.
    run.communicate()
    killed = testing.read_tree(out)
    self.assertLess(
        len([n for n in killed if n.endswith('.json')]), 3, sorted(killed)
    )
    self.assertNotIn(beam_features.FAILURES_FILE, killed)

    run = self._entry_point(out)
    stdout, stderr = run.communicate(timeout=300)
    self.assertEqual(run.returncode, 1, stderr[-3000:])  # bad.mp4 failed.
    self.assertRegex(stdout, r'4 videos: [0-3] extracted, [0-3] already done')
    self.assertIn('i3d-beam: failed bad', stderr)
    finished = {n for n in killed if n.endswith('.json')}
    for name in finished:
      self.assertIn(f'i3d-beam: skipped {name[: -len(".json")]}', stderr)
    self.assert_failures(os.path.join(out, beam_features.FAILURES_FILE))
    stray = [n for n in testing.read_tree(out) if n.endswith('.tmp')]
    for name in stray:
      os.remove(os.path.join(out, name))
    self.assert_same_as_reference(out)


if __name__ == '__main__':
  absltest.main()
