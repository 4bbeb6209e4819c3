"""End-to-end tests of classify_video.py and extract_features.py.

The videos are written by the tests (testing.write_moving_video) and the
checkpoints are synthetic ones with the release's names, so nothing is
fetched. `classify` is checked in-process against a whole-clip pass over
recipe.preprocess; a few subprocess runs check the commands as a user runs
them: the printed report, JSON, chart, looping note, errors and exit codes.
"""

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from absl.testing import parameterized
import numpy as np
from PIL import Image
import tensorflow as tf

import assets
import checkpoints
import classification
import inference
import recipe
import report
import testing
import video

_ROOT = os.path.dirname(os.path.abspath(__file__))
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
# The long video: more than a 16-frame chunk and not a multiple of 4 (so
# streaming must be told the length), over 1.2 s (for --start/--end), and
# three 16-frame windows (0, 16 and 18, the last aligned to the end).
_LONG_FRAMES = 34


def _report_pattern(rows: int = 20) -> str:
  row = r'\S+ \S+ synthetic class \d+\n'
  return (
      r'Norm of logits: \d+\.\d{6}\n\nTop classes and probabilities\n'
      f'(?:{row}){{{rows}}}'
  )


class ClassifyVideoTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    inference.configure_threads()
    cls.tmp = tempfile.mkdtemp(prefix='ClassifyVideoTest_')
    cls.ckpt = testing.write_checkpoints(os.path.join(cls.tmp, 'ckpt'))
    cls.labels = os.path.join(cls.tmp, 'label_map.txt')
    with open(cls.labels, 'w') as f:
      f.write(''.join(f'synthetic class {i}\n' for i in range(400)))
    videos = os.path.join(cls.tmp, 'videos')
    cls.long = testing.write_moving_video(
        os.path.join(videos, 'long.mp4'), _LONG_FRAMES, seed=1
    )
    cls.short = testing.write_moving_video(
        os.path.join(videos, 'short.mp4'), 6, seed=2
    )
    cls.bad = os.path.join(videos, 'bad.mp4')
    with open(cls.bad, 'wb') as f:
      f.write(b'not a video at all\n' * 50)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.tmp, ignore_errors=True)
    super().tearDownClass()

  def classify(self, path, eval_type='rgb', **kwargs):
    return classification.classify_video(
        path,
        eval_type,
        True,
        self.ckpt,
        label_maps={'kinetics400': self.labels, 'kinetics600': self.labels},
        **kwargs,
    )

  def run_command(self, script, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
    return subprocess.run(
        [sys.executable, os.path.join(_ROOT, script), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=self.tmp,
        timeout=300,
    )

  # ---- in process ----------------------------------------------------------

  def streamed(self):
    """classify(long, chunk_frames=16) without progress, run once: (result,
    what it printed on stderr)."""
    cls = type(self)
    if not hasattr(cls, '_streamed'):
      quiet = io.StringIO()
      with contextlib.redirect_stderr(quiet):
        got = self.classify(self.long, chunk_frames=16, progress=False)
      cls._streamed = (got, quiet.getvalue())
    return cls._streamed

  def test_streamed_clip_equals_a_whole_clip_pass(self):
    # 34 frames in chunks of 16: streamed, 34 mod 4 != 0, counted first.
    got = self.streamed()[0]
    self.assertTrue(got.details['streamed'])
    self.assertFalse(got.details['looped'])
    self.assertEqual(got.details['frames'], _LONG_FRAMES)
    rgb = recipe.preprocess(self.long, streams=('rgb',))['rgb']
    model = checkpoints.load_model(
        assets.checkpoint_prefix(self.ckpt, 'rgb_imagenet')
    )
    whole = model(tf.constant(rgb), is_training=False)[0].numpy()[0]
    self.assertAllClose(got.logits, whole, atol=1e-4, rtol=0)

  def test_streamed_clip_shows_progress(self):
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
      self.classify(self.long, chunk_frames=16, progress=True)
    self.assertRegex(stderr.getvalue(), r'rgb long\S* .*34/34 \[')
    self.assertNotIn('34/34', self.streamed()[1])

  def test_clip_times(self):
    got = self.classify(self.long, start=0.4, end=1.2)
    self.assertEqual(got.details['frames'], 20)
    rgb = recipe.preprocess(self.long, streams=('rgb',), start=0.4, end=1.2)[
        'rgb'
    ]
    predictor = inference.load_predictors(
        {'rgb': assets.checkpoint_prefix(self.ckpt, 'rgb_imagenet')}
    )['rgb']
    self.assertAllClose(got.logits, predictor.logits(rgb)[0], atol=1e-4, rtol=0)

  def test_missing_checkpoint_says_what_to_pass(self):
    with self.assertRaisesRegex(
        FileNotFoundError,
        r'(?s)Missing input files:.*flow checkpoint index.*'
        r'given by their paths',
    ):
      classification.classify_video(
          self.long,
          'joint',
          False,
          self.ckpt,
          label_maps={'kinetics400': self.labels, 'kinetics600': self.labels},
      )

  def test_bad_file_fails_before_loading_models(self):
    with self.assertRaisesRegex(
        video.VideoError, 'Cannot read ' + re.escape(repr(self.bad))
    ):
      self.classify(self.bad)

  # ---- the commands --------------------------------------------------------

  def test_classify_rgb_report_json_and_chart(self):
    json_out = os.path.join(self.tmp, 'out', 'long.json')
    chart_out = os.path.join(self.tmp, 'out', 'long.png')
    done = self.run_command(
        'classify_video.py',
        f'--video={self.long}',
        '--eval_type=rgb',
        f'--checkpoint_dir={self.ckpt}',
        f'--label_map={self.labels}',
        f'--json_out={json_out}',
        f'--chart_out={chart_out}',
        '--top_k=5',
    )
    self.assertEqual(done.returncode, 0, done.stderr)
    self.assertRegex(done.stdout, '^' + _report_pattern() + '$')
    self.assertNotIn('Looped', done.stderr)
    # The same numbers as in process, in the release's format.
    expected = self.classify(self.long)
    rows = [line.split(' ', 2) for line in done.stdout.split('\n')[3:23]]
    top = report.top_classes(expected.logits, expected.labels)
    self.assertEqual(
        [label for _, _, label in rows], [row['label'] for row in top]
    )
    self.assertAllClose(
        [float(logit) for _, logit, _ in rows],
        [row['logit'] for row in top],
        atol=1e-4,
        rtol=0,
    )
    norm = float(re.match(r'Norm of logits: (\S+)', done.stdout)[1])
    self.assertAllClose(norm, np.linalg.norm(expected.logits), atol=1e-3)
    with open(json_out) as f:
      record = json.load(f)
    self.assertEqual(record['video'], self.long)
    self.assertEqual(
        (record['frames'], record['fps'], record['duration_s']),
        (_LONG_FRAMES, 25.0, 1.36),
    )
    self.assertEqual(record['streams'], ['rgb'])
    self.assertEqual(record['checkpoints'], {'rgb': 'rgb_imagenet'})
    self.assertFalse(record['looped'])
    self.assertLen(record['top_classes'], 20)
    self.assertAllClose(
        [r['logit'] for r in record['top_classes']],
        [float(line.split(' ')[1]) for line in done.stdout.split('\n')[3:23]],
        atol=1e-5,
    )
    with open(chart_out, 'rb') as f:
      self.assertEqual(f.read(8), _PNG_SIGNATURE)
    with Image.open(chart_out) as image:
      self.assertGreater(image.width * image.height, 100 * 100)

  def test_classify_joint_loops_a_short_clip(self):
    json_out = os.path.join(self.tmp, 'out', 'short.json')
    done = self.run_command(
        'classify_video.py',
        f'--video={self.short}',
        '--eval_type=joint',
        f'--checkpoint_dir={self.ckpt}',
        f'--label_map={self.labels}',
        f'--json_out={json_out}',
    )
    self.assertEqual(done.returncode, 0, done.stderr)
    self.assertRegex(done.stdout, '^' + _report_pattern() + '$')
    self.assertRegex(
        done.stderr,
        r'Looped: the clip has 6 frames, fewer ' r'than the 9 .* to 9 frames',
    )
    with open(json_out) as f:
      record = json.load(f)
    self.assertEqual(record['streams'], ['rgb', 'flow'])
    self.assertEqual(
        record['checkpoints'], {'rgb': 'rgb_imagenet', 'flow': 'flow_imagenet'}
    )
    self.assertEqual(
        (record['looped'], record['frames'], record['frames_used']),
        (True, 6, 9),
    )

  def test_extract_features_command(self):
    out = os.path.join(self.tmp, 'features')
    args = [
        'extract_features.py',
        f'--inputs={os.path.dirname(self.long)}',
        f'--output_dir={out}',
        f'--checkpoint_dir={self.ckpt}',
        '--endpoint=Mixed_4f',
        '--window=16',
        '--stride=16',
    ]
    done = self.run_command(*args)
    self.assertEqual(done.returncode, 1, done.stderr)  # bad.mp4 fails.
    self.assertIn(
        '3 videos: 2 extracted, 0 already done, 1 failed.', done.stdout
    )
    self.assertRegex(
        done.stdout, 'Failed:\n  ' + re.escape(self.bad) + ': Cannot read'
    )
    self.assertIn('videos: 100%', done.stderr)  # The progress bar.
    self.assertEqual(np.load(os.path.join(out, 'long_rgb.npy')).shape, (3, 832))
    self.assertEqual(
        np.load(os.path.join(out, 'short_rgb.npy')).shape, (1, 832)
    )
    mtime = os.stat(os.path.join(out, 'long_rgb.npy')).st_mtime_ns
    os.remove(self.bad)
    try:
      done = self.run_command(*args, '--noprogress')
    finally:
      with open(self.bad, 'wb') as f:
        f.write(b'not a video at all\n' * 50)
    self.assertEqual(done.returncode, 0, done.stderr)
    self.assertIn(
        '2 videos: 0 extracted, 2 already done, 0 failed.', done.stdout
    )
    self.assertEqual(
        os.stat(os.path.join(out, 'long_rgb.npy')).st_mtime_ns, mtime
    )


if __name__ == '__main__':
  tf.test.main()
