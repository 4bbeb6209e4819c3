"""Tests of timing.py: the analytic FLOP count (the timings are not tested)."""

from absl.testing import absltest

import timing


class ConvFlopsTest(absltest.TestCase):

  def test_conv_flops(self):
    flops = timing.conv_flops(79)
    self.assertEqual(flops['Conv3d_1a_7x7'], 2 * 40 * 112 * 112 * 64 * 7**3 * 3)
    self.assertEqual(flops['MaxPool3d_2a_3x3'], 0)
    # The figure usually quoted for I3D on a 79-frame 224x224 clip is ~279.
    self.assertAlmostEqual(sum(flops.values()) / 1e9, 277.9, delta=0.1)
    self.assertLen(timing.conv_flops(16, final_endpoint='Mixed_3b'), 6)

  def test_unknown_endpoint(self):
    with self.assertRaisesRegex(
        ValueError, "Unknown `final_endpoint` 'Mixed_9z'"
    ):
      timing.conv_flops(16, final_endpoint='Mixed_9z')


if __name__ == '__main__':
  absltest.main()
