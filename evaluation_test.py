"""Tests for evaluation.py and evaluate_split.py.

Metrics on constructed cases with known answers; the whole-split evaluation
on three tiny generated videos with synthetic checkpoints (the release's
names), in process and as a command.
"""

import csv
import json
import os

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import assets
import checkpoints
import datasets
import evaluation
import inference
import recipe
import testing
import video

_ROOT = os.path.dirname(os.path.abspath(__file__))
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


class MetricsTest(parameterized.TestCase):

  # Four videos, four classes. True classes 0, 1, 2, 3; the true class ranks
  # 1st, 2nd, 3rd (tied with another) and 4th.
  LOGITS = np.array(
      [
          [9.0, 1.0, 2.0, 3.0],
          [5.0, 4.0, 1.0, 0.0],
          [3.0, 3.0, 2.0, 7.0],
          [4.0, 3.0, 2.0, 1.0],
      ]
  )
  LABELS = np.array([0, 1, 2, 3])

  @parameterized.parameters(
      (1, [1, 0, 0, 0]), (2, [1, 1, 0, 0]), (3, [1, 1, 0, 0]), (4, [1, 1, 1, 1])
  )
  def test_top_k(self, k, expected):
    got = evaluation.top_k_correct(self.LOGITS, self.LABELS, k)
    np.testing.assert_array_equal(got, np.array(expected, bool))

  def test_confusion_and_per_class_accuracy(self):
    labels = np.array([0, 0, 0, 1, 1, 3])
    predictions = np.array([0, 1, 0, 1, 1, 0])
    matrix = evaluation.confusion_matrix(labels, predictions, 4)
    np.testing.assert_array_equal(
        matrix, [[2, 1, 0, 0], [0, 2, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]]
    )
    got = evaluation.per_class_accuracy(matrix)
    np.testing.assert_allclose(got[[0, 1, 3]], [2 / 3, 1.0, 0.0])
    self.assertTrue(np.isnan(got[2]))

  def test_summarize(self):
    got = evaluation.summarize(self.LOGITS, self.LABELS, list('abcd'))
    self.assertEqual(got['num_videos'], 4)
    self.assertEqual(got['top1'], 0.25)
    self.assertEqual(got['top5'], 1.0)
    self.assertEqual(got['mean_class_accuracy'], 0.25)
    self.assertEqual(
        got['per_class'][0], {'class': 'a', 'videos': 1, 'accuracy': 1.0}
    )

  def test_mean_class_accuracy_weights_classes_not_videos(self):
    logits = np.eye(3)[[0, 0, 0, 1, 2]] * 5
    labels = np.array([0, 0, 0, 2, 2])  # Class 0: 3/3; class 2: 1/2.
    got = evaluation.summarize(logits, labels, ['x', 'y', 'z'])
    self.assertAlmostEqual(got['top1'], 4 / 5)
    self.assertAlmostEqual(got['mean_class_accuracy'], 0.75)
    self.assertEqual(got['classes_with_videos'], 2)

  def test_labels_out_of_range(self):
    with self.assertRaisesRegex(
        ValueError, r'class indices 0\.\.3; got ' r'values 0\.\.4'
    ):
      evaluation.top_k_correct(self.LOGITS, np.array([0, 1, 2, 4]), 1)

  def test_class_mapping_names_the_missing_class(self):
    with self.assertRaisesRegex(
        datasets.DatasetError, r"not in the model's label map.*'swim'"
    ):
      evaluation.class_mapping(['run', 'swim'], ['jump', 'run'])


class CentreWindowTest(testing.TempDirMixin, parameterized.TestCase):

  def test_given_times(self):
    example = datasets.Example('unused.mp4', 0, start=2.0, end=12.0)
    got = evaluation.centre_window(example, 79)
    self.assertAlmostEqual(got.end - got.start, 79 / 25)
    # 250 frames, 171 left over: the window starts at frame floor(85.5).
    self.assertAlmostEqual(got.start, 2.0 + 85 / 25)
    self.assertIs(evaluation.centre_window(example, 300), example)

  def test_times_from_the_file(self):
    path = testing.write_moving_video(self.path('v.mp4'), 30)  # 1.2 s.
    got = evaluation.centre_window(datasets.Example(path, 0), 10)
    self.assertAlmostEqual(got.start, 0.4)
    self.assertAlmostEqual(got.end, 0.8)
    self.assertLen(list(video.iter_frames(path, got.start, got.end)), 10)


class EvaluateSplitTest(testing.TempDirMixin, tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    inference.configure_threads()
    cls.ckpt = testing.write_checkpoints(
        cls.path('ckpt'), names=('rgb_imagenet',)
    )
    cls.label_map = cls.path('label_map.txt')
    with open(cls.label_map, 'w') as f:
      f.write(''.join(f'class {i}\n' for i in range(400)))
    for name, count in (
        ('class 3/a.mp4', 12),
        ('class 3/b.mp4', 10),
        ('class 7/c.mp4', 11),
    ):
      testing.write_moving_video(
          cls.path(os.path.join('videos', name)), count, seed=count
      )

  _runs = {}

  def run_command(self, case: str):
    """evaluate_split's command-line cases, all run in one process (cached)."""
    if not self._runs:
      prefix = self.path('tuned/model.ckpt')
      checkpoints.write_synthetic(prefix, 'rgb', seed=4, num_classes=2)
      label_map = self.path('tuned/label_map.txt')
      with open(label_map, 'w') as f:
        f.write('class 7\nclass 3\n')
      cases = {
          'tuned': [
              '--dataset=folder',
              f'--root={self.path("videos")}',
              '--split=',
              f'--checkpoint={prefix}',
              f'--label_map={label_map}',
              f'--output_dir={self.path("tuned_out")}',
              '--noprogress',
          ],
          'bad_split': [
              '--dataset=ucf101',
              f'--root={self.path("videos")}',
              '--split=test',
              f'--checkpoint_dir={self.ckpt}',
              f'--label_map={self.label_map}',
              f'--output_dir={self.path("bad_out")}',
          ],
      }
      results = testing.entry_cases(
          'evaluate_split', list(cases.values()), cwd=self.tmp
      )
      self._runs.update(zip(cases, results))
    return self._runs[case]

  def test_matches_per_video_logits_and_resumes(self):
    dataset = datasets.load('folder', self.path('videos'))
    predictors = inference.load_predictors(
        {'rgb': assets.checkpoint_prefix(self.ckpt, 'rgb_imagenet')}
    )
    labels = [f'class {i}' for i in range(400)]
    out = self.path('in_process')
    got = evaluation.evaluate_split(
        dataset, predictors, labels, out, {'model': 'synthetic'}, progress=False
    )
    logits = np.stack(
        [
            predictors['rgb'].logits(
                recipe.preprocess(e.path, ('rgb',))['rgb']
            )[0]
            for e in dataset.examples
        ]
    )
    want = evaluation.summarize(logits, np.array([3, 3, 7]), labels)
    self.assertEqual(got.metrics['num_videos'], 3)
    for key in ('top1', 'top5', 'mean_class_accuracy'):
      self.assertAlmostEqual(got.metrics[key], want[key])
    self.assertEqual(got.reused, 0)
    again = evaluation.evaluate_split(
        dataset, predictors, labels, out, {'model': 'synthetic'}, progress=False
    )
    self.assertEqual(again.reused, 3)
    self.assertEqual(again.metrics['top5'], got.metrics['top5'])
    other = evaluation.evaluate_split(
        dataset, predictors, labels, out, {'model': 'another'}, progress=False
    )
    self.assertEqual(other.reused, 0)

  def test_fine_tuned_checkpoint_with_its_own_classes(self):
    out = self.path('tuned_out')
    result = self.run_command('tuned')
    self.assertEqual(result['code'], 0, result['stderr'])
    self.assertRegex(
        result['stdout'],
        r'videos: 3\ntop1: \d+\.\d\d%\ntop5: '
        r'100\.00%\nmean per-class accuracy: ',
    )
    with open(os.path.join(out, 'metrics.json')) as f:
      metrics = json.load(f)
    self.assertEqual(metrics['num_videos'], 3)
    self.assertEqual(metrics['top5'], 1.0)  # Two classes.
    with open(os.path.join(out, 'predictions.csv')) as f:
      rows = list(csv.DictReader(f))
    self.assertEqual(
        [r['label'] for r in rows], ['class 3', 'class 3', 'class 7']
    )
    self.assertEqual(
        sum(int(r['correct']) for r in rows), round(3 * metrics['top1'])
    )
    with open(os.path.join(out, 'confusion.png'), 'rb') as f:
      self.assertEqual(f.read(8), _PNG_SIGNATURE)
    self.assertEmpty([f for f in os.listdir(out) if f.endswith('.tmp')])

  def test_bad_split_is_one_line(self):
    result = self.run_command('bad_split')
    self.assertEqual(result['code'], 1)
    self.assertRegex(
        result['stderr'],
        r'evaluate_split: error: Split file '
        r"'.*classInd\.txt' does not exist; check --dataset, "
        r'--root, --split and --fold\.\n$',
    )
    self.assertNotIn('Traceback', result['stderr'])


if __name__ == '__main__':
  tf.test.main()
