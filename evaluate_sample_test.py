"""End-to-end tests of evaluate_sample.py and multi_evaluate.sh.

They run on synthetic checkpoints that carry exactly the release's names and
shapes, written by the project itself, and compare the printed logits with
the independent NumPy implementation.
"""

import os
import shutil
import subprocess
import sys
import tempfile

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import assets
import checkpoints
import classification
import numpy_reference
import report
import testing

_ROOT = os.path.dirname(os.path.abspath(__file__))
_SCOPES = {
    'rgb': 'RGB/inception_i3d/',
    'flow': 'Flow/inception_i3d/',
    'kinetics600': '',
}


def _flags(data):
  return [
      f'--checkpoint_dir={data}/checkpoints',
      f'--rgb_sample={data}/v_CricketShot_g04_c01_rgb.npy',
      f'--flow_sample={data}/v_CricketShot_g04_c01_flow.npy',
      f'--label_map={data}/label_map.txt',
      f'--label_map_600={data}/label_map_600.txt',
  ]


class EvaluateSampleTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp()
    cls.data = testing.make_release(cls.tmp)
    cls.reference_logits = {}
    cls.reports = {}

  def _reference(self, name):
    """Independent NumPy logits of one synthetic checkpoint on its sample."""
    if name not in self.reference_logits:
      layout = checkpoints.RELEASE_CHECKPOINTS[name]
      stream = 'flow' if layout == 'flow' else 'rgb'
      model = numpy_reference.NumpyI3D.from_checkpoint(
          os.path.join(self.data, 'checkpoints', name, 'model.ckpt'),
          _SCOPES[layout],
      )
      sample = np.load(
          os.path.join(self.data, f'v_CricketShot_g04_c01_{stream}.npy')
      )
      self.reference_logits[name] = model.logits(sample)[0]
    return self.reference_logits[name]

  def _evaluate(self, eval_type, imagenet_pretrained, mode='fast'):
    """The report of one evaluation, computed once per class."""
    key = (eval_type, imagenet_pretrained, mode)
    if key not in self.reports:
      self.reports[key] = self._classify(eval_type, imagenet_pretrained, mode)
    return self.reports[key]

  def _classify(self, eval_type, imagenet_pretrained, mode):
    d = self.data
    result = classification.classify_arrays(
        eval_type,
        imagenet_pretrained,
        os.path.join(d, 'checkpoints'),
        samples={
            s: os.path.join(d, f'v_CricketShot_g04_c01_{s}.npy')
            for s in ('rgb', 'flow')
        },
        label_maps={
            'kinetics400': os.path.join(d, 'label_map.txt'),
            'kinetics600': os.path.join(d, 'label_map_600.txt'),
        },
        inference_mode=mode,
    )
    return report.format_report(result.logits, result.labels)

  @parameterized.parameters(
      ('rgb', True),
      ('flow', True),
      ('joint', True),
      ('rgb', False),
      ('flow', False),
      ('joint', False),
      ('rgb600', True),
      ('rgb600', False),
  )
  def test_logits_equal_independent_numpy(self, eval_type, imagenet):
    text = self._evaluate(eval_type, imagenet)
    names = assets.checkpoint_names(eval_type, imagenet)
    expect = sum(self._reference(n) for n in names.values())
    norm, rows = testing.parse_report(text)
    self.assertAllClose(norm, np.linalg.norm(expect), atol=1e-3)
    order = np.argsort(expect)[::-1][:20]
    probs = report.softmax(expect.astype(np.float32))
    for (prob, logit, label), i in zip(rows, order):
      self.assertEqual(label, f'synthetic class {i}')
      self.assertAllClose(logit, expect[i], atol=2e-4)
      self.assertAllClose(prob, probs[i], atol=1e-5, rtol=1e-3)

  def test_imagenet_and_scratch_use_different_checkpoints(self):
    self.assertNotEqual(
        self._evaluate('joint', True), self._evaluate('joint', False)
    )

  def test_plain_and_fast_modes_agree(self):
    fast = testing.parse_report(self._evaluate('rgb', True, 'fast'))
    plain = testing.parse_report(self._evaluate('rgb', True, 'plain'))
    self.assertAllClose(fast[0], plain[0], atol=1e-3)
    self.assertEqual([r[2] for r in fast[1]], [r[2] for r in plain[1]])
    self.assertAllClose(
        [r[1] for r in fast[1]], [r[1] for r in plain[1]], atol=1e-4
    )

  def test_output_format_is_the_releases(self):
    text = self._evaluate('joint', True)
    lines = text.split('\n')
    self.assertRegex(lines[0], r'^Norm of logits: \d+\.\d{6}$')
    self.assertEqual(lines[1:3], ['', 'Top classes and probabilities'])
    self.assertLen(lines, 24)  # 20 rows and a final newline.
    self.assertEqual(lines[-1], '')
    # Same shape as the release's golden output, line by line.
    with open(os.path.join(_ROOT, 'out', 'imagenet_joint.txt')) as f:
      golden = f.read().split('\n')
    self.assertEqual(len(golden), len(lines))
    row = r'^\S+ -?\d+\.?\d*(e-?\d+)? .+$'
    for ours, theirs in zip(lines[3:23], golden[3:23]):
      self.assertRegex(ours, row)
      self.assertRegex(theirs, row)
      # Numbers are float32's shortest round-trip form, as in the release.
      for field in ours.split(' ')[:2] + theirs.split(' ')[:2]:
        self.assertEqual(field, str(np.float32(field)))

  def test_bad_sample_shape(self):
    bad = os.path.join(self.tmp, 'bad_rgb.npy')
    np.save(bad, np.zeros([1, 9, 100, 100, 3], np.float32))
    with self.assertRaisesRegex(
        classification.InputError,
        r'rgb sample .*bad_rgb.npy.*\[batch, frames, 224, 224, 3\]; got '
        r'\[1, 9, 100, 100, 3\]',
    ):
      classification.load_sample(bad, 'rgb')


class CommandLineTest(tf.test.TestCase):
  """The script as a user runs it."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp()
    cls.data = testing.make_release(cls.tmp)

  def _run(self, *args, env=None):
    return subprocess.run(
        [sys.executable, os.path.join(_ROOT, 'evaluate_sample.py'), *args],
        capture_output=True,
        text=True,
        cwd=self.tmp,
        timeout=300,
        env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3', **(env or {})},
    )

  def test_missing_release_assets_say_what_to_run(self):
    # Default paths inside a copy of the code without data/, as in a fresh
    # clone. (Copies, not links: Python resolves a linked script's folder.)
    empty = tempfile.mkdtemp()
    for f in os.listdir(_ROOT):
      if f.endswith('.py'):
        shutil.copy(os.path.join(_ROOT, f), os.path.join(empty, f))
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(empty, 'evaluate_sample.py'),
            '--eval_type=rgb',
        ],
        capture_output=True,
        text=True,
        cwd=empty,
        timeout=300,
        env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3'},
    )
    self.assertEqual(result.returncode, 1)
    self.assertNotIn('Traceback', result.stderr)
    self.assertIn('Missing input files:', result.stderr)
    self.assertIn('fetch_assets.py', result.stderr)
    self.assertIn(
        'data/checkpoints/rgb_imagenet/model.ckpt.index', result.stderr
    )

  def test_multi_evaluate_writes_all_seven(self):
    out_dir = os.path.join(self.tmp, 'out')
    result = subprocess.run(
        ['bash', os.path.join(_ROOT, 'multi_evaluate.sh'), *_flags(self.data)],
        capture_output=True,
        text=True,
        timeout=900,
        env={
            **os.environ,
            'OUT_DIR': out_dir,
            'PYTHON': sys.executable,
            'TF_CPP_MIN_LOG_LEVEL': '3',
        },
    )
    self.assertEqual(result.returncode, 0, result.stderr)
    expect = [
        'imagenet_flow.txt',
        'imagenet_joint.txt',
        'imagenet_rgb.txt',
        'no_imagenet_flow.txt',
        'no_imagenet_joint.txt',
        'no_imagenet_rgb.txt',
        'rgb600.txt',
    ]
    self.assertEqual(sorted(os.listdir(out_dir)), expect)
    texts = {}
    for name in expect:
      with open(os.path.join(out_dir, name)) as f:
        texts[name] = f.read()
      testing.parse_report(texts[name])
    # The imagenet and no_imagenet reports come from different checkpoints.
    for stream in ('rgb', 'flow', 'joint'):
      self.assertNotEqual(
          texts[f'imagenet_{stream}.txt'], texts[f'no_imagenet_{stream}.txt']
      )
    # Joint is the sum of the two streams: its norm differs from both.
    self.assertNotEqual(
        texts['imagenet_joint.txt'].split('\n')[0],
        texts['imagenet_rgb.txt'].split('\n')[0],
    )


class GoldenTest(tf.test.TestCase):

  def test_committed_goldens_are_the_release_files(self):
    for name in ('imagenet_rgb.txt', 'imagenet_flow.txt', 'imagenet_joint.txt'):
      path = os.path.join(_ROOT, 'out', name)
      self.assertEqual(
          assets.git_blob_id(path), assets.RELEASE_BLOBS[f'out/{name}'], name
      )

  def test_golden_joint_top_line(self):
    with open(os.path.join(_ROOT, 'out', 'imagenet_joint.txt')) as f:
      norm, rows = testing.parse_report(f.read())
    self.assertEqual(norm, 138.468658)
    self.assertEqual(rows[0], (1.0, 41.813675, 'playing cricket'))

  def test_report_reproduces_the_golden_number_formatting(self):
    # Fed the golden logits, the formatter writes them back identically.
    with open(os.path.join(_ROOT, 'out', 'imagenet_joint.txt')) as f:
      golden = f.read().split('\n')
    logits = np.full([400], -100.0, np.float32)
    labels = [f'c{i}' for i in range(400)]
    for i, line in enumerate(golden[3:23]):
      _, logit, label = line.split(' ', 2)
      logits[i] = np.float32(logit)
      labels[i] = label
    text = report.format_report(logits, labels).split('\n')
    for ours, theirs in zip(text[3:23], golden[3:23]):
      self.assertEqual(ours.split(' ', 2)[1:], theirs.split(' ', 2)[1:])
    self.assertEqual(text[3].split(' ')[0], '1.0')


if __name__ == '__main__':
  tf.test.main()
