"""Tests of report.py: label maps, the release's report, JSON, charts."""

import json
import os

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

import fileio
import report
import testing

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def _labels(n: int):
  return [f'class {i}' for i in range(n)]


class LabelsTest(testing.TempDirMixin, parameterized.TestCase):

  def test_reads_one_name_per_line(self):
    path = self.path('labels.txt')
    with open(path, 'w') as f:
      f.write('abseiling\n\nair drumming\n')
    self.assertEqual(report.load_labels(path, 2), ['abseiling', 'air drumming'])

  def test_missing_file(self):
    with self.assertRaisesRegex(report.LabelError, 'does not exist'):
      report.load_labels(self.path('nope.txt'))

  def test_wrong_class_count_says_which_map(self):
    path = self.path('three.txt')
    with open(path, 'w') as f:
      f.write('a\nb\nc\n')
    with self.assertRaisesRegex(
        report.LabelError,
        'has 3 classes but the model has 400.*' 'label_map.txt for 400',
    ):
      report.load_labels(path, 400)


class ReportTest(testing.TempDirMixin, parameterized.TestCase):

  def test_softmax_sums_to_one_and_keeps_order(self):
    logits = np.array([3.0, 1.0, 2.0], np.float32)
    probs = report.softmax(logits)
    self.assertEqual(probs.dtype, np.float32)
    self.assertAlmostEqual(float(probs.sum()), 1.0, places=6)
    self.assertEqual(list(np.argsort(probs)), [1, 2, 0])
    e = np.exp(logits - 3.0)
    np.testing.assert_allclose(probs, e / e.sum(), rtol=1e-6)

  def test_format_matches_the_release(self):
    logits = np.zeros(400, np.float32)
    logits[7], logits[3] = 2.5, 1.25
    text = report.format_report(logits, _labels(400))
    lines = text.split('\n')
    self.assertEqual(lines[0], 'Norm of logits: 2.795085')
    self.assertEqual(lines[1:3], ['', 'Top classes and probabilities'])
    self.assertLen(lines, 3 + report.TOP_K + 1)
    self.assertEqual(lines[-1], '')
    prob, logit, label = lines[3].split(' ', 2)
    self.assertEqual((logit, label), ('2.5', 'class 7'))
    self.assertEqual(prob, str(report.softmax(logits)[7]))
    self.assertTrue(lines[4].endswith(' 1.25 class 3'))

  def test_release_output_round_trips(self):
    # out/imagenet_rgb.txt is the release's own report: its logits, fed
    # back in the printed order, give the same top lines.
    with open(
        os.path.join(os.path.dirname(__file__), 'out', 'imagenet_rgb.txt')
    ) as f:
      lines = f.read().split('\n')
    rows = [line.split(' ', 2) for line in lines[3:23]]
    logits = np.full(len(rows) + 1, -100.0, np.float32)
    logits[: len(rows)] = [float(logit) for _, logit, _ in rows]
    labels = [label for _, _, label in rows] + ['rest']
    text = report.format_report(logits, labels)
    got = [line.split(' ', 2)[1:] for line in text.split('\n')[3:23]]
    self.assertEqual(got, [row[1:] for row in rows])

  def test_report_dict_and_json(self):
    logits = np.arange(5, dtype=np.float32)
    record = report.report_dict(logits, _labels(5), k=2, video='v.mp4')
    self.assertEqual(record['video'], 'v.mp4')
    self.assertEqual(
        [r['label'] for r in record['top_classes']], ['class 4', 'class 3']
    )
    self.assertAlmostEqual(
        record['norm_of_logits'], float(np.sqrt(30)), places=5
    )
    path = self.path('sub/report.json')
    fileio.write_json(path, record)
    with open(path) as f:
      self.assertEqual(json.load(f), record)

  def test_bar_chart_is_a_png(self):
    path = self.path('chart.png')
    report.save_bar_chart(
        path, np.arange(20, dtype=np.float32), _labels(20), k=5
    )
    with open(path, 'rb') as f:
      self.assertEqual(f.read(8), _PNG_SIGNATURE)
    self.assertEqual([f for f in os.listdir(self.tmp) if f.startswith('.')], [])


if __name__ == '__main__':
  absltest.main()
