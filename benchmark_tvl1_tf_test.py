"""Tests for benchmark_tvl1_tf.py: its TensorFlow iteration is tvl1.py's.

The timings mean something only if the TensorFlow loop computes the same
iteration as tvl1.py; a few iterations on a small batch must agree to the
last bits (XLA and the border's order of additions may differ there).
"""

import json
import os

from absl.testing import absltest

import testing


class BenchmarkTvl1TfTest(testing.TempDirMixin, absltest.TestCase):

  def test_tensorflow_iterations_follow_tvl1(self):
    out = os.path.join(self.tmp, 'tf.json')
    (result,) = testing.entry_cases(
        'benchmark_tvl1_tf',
        [
            [
                '--size=20x24',
                '--pairs=2',
                '--iterations=3',
                '--repeats=1',
                f'--json_out={out}',
            ]
        ],
    )
    self.assertEqual(result['code'], 0, result['stderr'][-2000:])
    with open(out) as f:
      report = json.load(f)
    variants = report['variants']
    self.assertLen(variants, 3)
    for name, row in variants.items():
      self.assertEqual(row['iterations'], 3, name)
      self.assertGreater(row['ns_per_pixel_iteration'], 0, name)
    for name in ('tf.function', 'tf.function + XLA'):
      drift = variants[name]['max_abs_flow_difference_vs_tvl1']
      self.assertLess(drift, 1e-4, name)


if __name__ == '__main__':
  absltest.main()
