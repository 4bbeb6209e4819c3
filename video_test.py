"""Tests for video.py: decoding, resampling, geometry, flow, errors, saving.

Every video is written by the tests themselves with PyAV, tiny and short.
Lossless codecs (FFV1 in mkv, libx264rgb with qp=0) keep pixel values exact;
lossy ones are checked with tolerances.
"""

import fractions
import os
import re
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import av
import numpy as np

import recipe
import synthetic_videos
import testing
import video

Fraction = fractions.Fraction
HERE = os.path.dirname(os.path.abspath(__file__))


class ProbeTest(testing.TempDirMixin, parameterized.TestCase):

  @parameterized.parameters('mkv', 'mp4', 'avi', 'webm')
  def test_probe_reads_each_container(self, fmt):
    path = testing.write_video(
        self.path(f'probe.{fmt}'), testing.level_frames(15), rate=30, fmt=fmt
    )
    info = video.probe(path)
    self.assertEqual((info.width, info.height), (64, 48))
    self.assertAlmostEqual(info.fps, 30.0)
    self.assertAlmostEqual(info.duration, 0.5, delta=0.02)
    self.assertEqual(
        info.codec,
        testing.FORMATS[fmt][0]
        .replace('libx264rgb', 'h264')
        .replace('libvpx-vp9', 'vp9'),
    )
    self.assertEqual(info.rotation, 0)

  def test_rotation_tag_is_applied(self):
    frames = np.zeros((3, 48, 64, 3), np.uint8)
    frames[:, :8, :8] = 255  # A marker in the top-left corner.
    path = testing.write_video(
        self.path('rotated.mkv'), frames, rate=25, rotation=90
    )
    info = video.probe(path)
    self.assertEqual((info.width, info.height, info.rotation), (48, 64, 90))
    images, _ = video.load_frames(path, short_side=None)
    self.assertEqual(images.shape, (3, 64, 48, 3))
    # Turned a quarter counter-clockwise: the corner is now bottom-left.
    self.assertTrue(np.all(images[0, -8:, :8] == 255))
    self.assertEqual(int((images[0, ..., 0] > 128).sum()), 64)


class BadFileTest(testing.TempDirMixin, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    good = testing.write_video(
        cls.path('good.mp4'), testing.level_frames(20), fmt='mp4'
    )
    with open(good, 'rb') as f:
      cls.good_bytes = f.read()

  def _write(self, name: str, data: bytes) -> str:
    path = self.path(name)
    with open(path, 'wb') as f:
      f.write(data)
    return path

  @parameterized.parameters(video.probe, video.load_frames)
  def test_missing_file(self, function):
    path = self.path('missing.mp4')
    with self.assertRaisesRegex(
        video.VideoError, re.escape(repr(path)) + ' does not exist'
    ):
      function(path)

  def test_directory(self):
    with self.assertRaisesRegex(video.VideoError, 'is a directory'):
      video.probe(self.tmp)

  @parameterized.parameters(video.probe, video.load_frames)
  def test_empty_file(self, function):
    path = self._write('empty.mp4', b'')
    with self.assertRaisesRegex(
        video.VideoError, re.escape(repr(path)) + r' is empty \(0 bytes'
    ):
      function(path)

  @parameterized.parameters(video.probe, video.load_frames)
  def test_text_file_named_mp4(self, function):
    path = self._write('notes.mp4', b'These are notes, not a video.\n' * 20)
    with self.assertRaisesRegex(
        video.VideoError, 'Cannot read ' + re.escape(repr(path)) + ' as a video'
    ):
      function(path)

  @parameterized.parameters(video.probe, video.load_frames)
  def test_truncated_mp4(self, function):
    path = self._write(
        'truncated.mp4', self.good_bytes[: len(self.good_bytes) // 2]
    )
    with self.assertRaisesRegex(
        video.VideoError,
        'Cannot read ' + re.escape(repr(path)) + '.*corrupt, truncated',
    ):
      function(path)

  def test_corrupt_stream_fails_while_decoding(self):
    source = testing.write_video(
        self.path('whole.avi'), testing.level_frames(20), fmt='avi'
    )
    with open(source, 'rb') as f:
      data = f.read()
    path = self._write('cut.avi', data[: len(data) // 3])
    with self.assertRaisesRegex(
        video.VideoError,
        'Decoding ' + re.escape(repr(path)) + r' failed after \d+ frame',
    ):
      video.load_frames(path)

  def test_audio_only_file(self):
    path = self.path('audio.m4a')
    with av.open(path, 'w') as container:
      stream = container.add_stream('aac', rate=16000)
      for i in range(4):
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), np.float32), format='fltp', layout='mono'
        )
        frame.sample_rate, frame.pts = 16000, i * 1024
        for packet in stream.encode(frame):
          container.mux(packet)
      for packet in stream.encode():
        container.mux(packet)
    with self.assertRaisesRegex(
        video.VideoError,
        re.escape(repr(path)) + r' has no video stream \(its streams: audio\)',
    ):
      video.probe(path)


class FrameRateTest(testing.TempDirMixin, parameterized.TestCase):
  """Which source frame each 25 fps output frame shows."""

  @parameterized.parameters('mkv', 'mp4', 'avi', 'webm')
  def test_30_fps_to_25_fps(self, fmt):
    path = testing.write_video(
        self.path(f'30fps.{fmt}'), testing.level_frames(30), rate=30, fmt=fmt
    )
    frames, times = video.load_frames(path, short_side=None)
    self.assertEqual(frames.dtype, np.uint8)
    self.assertEqual(frames.shape, (25, 48, 64, 3))
    np.testing.assert_allclose(times, np.arange(25) / 25)
    # Source frame i is shown during [i/30, (i+1)/30); t_k = k/25.
    np.testing.assert_array_equal(
        testing.frame_indices(frames), np.floor(np.arange(25) * 30 / 25)
    )

  def test_20_fps_to_25_fps_repeats_frames(self):
    path = testing.write_video(
        self.path('20fps.mkv'), testing.level_frames(10), rate=20
    )
    frames, _ = video.load_frames(path, short_side=None)
    # 0.5 s: t_k = k / 25 < 0.5 for k = 0..12.
    self.assertEqual(frames.shape, (13, 48, 64, 3))
    np.testing.assert_array_equal(
        testing.frame_indices(frames), [0, 0, 1, 2, 3, 4, 4, 5, 6, 7, 8, 8, 9]
    )

  def test_variable_frame_rate(self):
    # Millisecond timestamps with uneven gaps, as phones write.
    stamps = [0, 10, 50, 60, 200, 210, 300, 400, 410, 420, 700]
    path = testing.write_video(
        self.path('vfr.mkv'),
        testing.level_frames(len(stamps)),
        rate=100,
        pts=stamps,
        time_base=Fraction(1, 1000),
    )
    frames = list(video.iter_frames(path, short_side=None))
    # The last frame lasts 10 ms, so the video ends at 0.71 s.
    self.assertLen(frames, 18)
    got = testing.frame_indices(np.stack([f.image for f in frames]))
    # Latest frame with stamp <= t_k = 40 k ms.
    expected = [
        max(i for i, s in enumerate(stamps) if s <= 40 * k) for k in range(18)
    ]
    np.testing.assert_array_equal(got, expected)
    for k, frame in enumerate(frames):
      self.assertEqual(frame.index, k)
      self.assertAlmostEqual(frame.time, k / 25)
      self.assertAlmostEqual(frame.source_time, stamps[expected[k]] / 1000)
      self.assertFalse(frame.image.flags.writeable)

  def test_iter_chunks_matches_load_frames(self):
    path = testing.write_video(
        self.path('chunks.mkv'), testing.level_frames(30)
    )
    whole, times = video.load_frames(path, short_side=None)
    chunks = list(video.iter_chunks(path, 10, short_side=None))
    self.assertEqual([len(c) for c, _ in chunks], [10, 10, 5])
    np.testing.assert_array_equal(np.concatenate([c for c, _ in chunks]), whole)
    np.testing.assert_array_equal(np.concatenate([t for _, t in chunks]), times)

  def test_seeking_gives_the_same_frames(self):
    # 30 frames with a keyframe every 5: seeking to the keyframe before
    # `start` must pick exactly the frames of decoding from the beginning.
    path = self.path('seek.mp4')
    synthetic_videos.write_video(
        path,
        testing.level_frames(30),
        rate=30,
        codec='libx264rgb',
        pix_fmt='rgb24',
        options={'qp': '0', 'g': '5'},
    )
    plain, _ = video.load_frames(path, start=0.5, end=0.9, short_side=None)
    with mock.patch.object(video, '_SEEK_MIN_S', 0.0):
      seeked, times = video.load_frames(
          path, start=0.5, end=0.9, short_side=None
      )
    np.testing.assert_array_equal(seeked, plain)
    np.testing.assert_allclose(times, 0.5 + np.arange(10) / 25)
    np.testing.assert_array_equal(
        testing.frame_indices(seeked), np.floor((0.5 + np.arange(10) / 25) * 30)
    )

  @parameterized.parameters(0, -1.5, 'fast')
  def test_bad_fps(self, fps):
    with self.assertRaisesRegex(ValueError, '`fps` must be a positive number'):
      video.iter_frames(self.path('any.mkv'), fps=fps)


class ClipTest(testing.TempDirMixin, parameterized.TestCase):
  """start/end in seconds, as Kinetics clips are given."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.video = testing.write_video(
        cls.path('clip.mkv'), testing.level_frames(30), rate=30
    )

  @parameterized.named_parameters(
      ('start_only', 0.5, None, 13),
      ('start_and_end', 0.5, 0.7, 5),
      ('end_only', None, 0.2, 5),
      ('end_within_one_frame_of_the_end', None, 1.02, 26),
  )
  def test_clip(self, start, end, count):
    frames, times = video.load_frames(
        self.video, start=start, end=end, short_side=None
    )
    self.assertEqual(len(frames), count)
    np.testing.assert_allclose(times, (start or 0) + np.arange(count) / 25)
    expected = np.minimum(np.floor(times * 30 + 1e-9), 29)
    np.testing.assert_array_equal(testing.frame_indices(frames), expected)

  def test_end_not_after_start(self):
    with self.assertRaisesRegex(
        video.VideoError,
        r'`end`=0.3 must be greater than `start`=0.5 for '
        + re.escape(repr(self.video)),
    ):
      video.iter_frames(self.video, start=0.5, end=0.3)

  def test_start_past_the_end(self):
    with self.assertRaisesRegex(
        video.VideoError,
        r'`start`=1.5 is at or past the end of '
        + re.escape(repr(self.video))
        + r', which lasts 1.000 s',
    ):
      video.iter_frames(self.video, start=1.5)

  def test_end_past_the_end(self):
    with self.assertRaisesRegex(
        video.VideoError,
        r'`end`=3 is past the end of '
        + re.escape(repr(self.video))
        + r', which lasts 1.000 s',
    ):
      video.iter_frames(self.video, end=3)

  def test_negative_start(self):
    with self.assertRaisesRegex(
        video.VideoError, r'`start`=-1 for .* is negative'
    ):
      video.iter_frames(self.video, start=-1)

  def test_end_past_the_frames_found_while_decoding(self):
    # A header that overstates the duration: caught once decoding ends.
    with mock.patch.object(video, '_stream_duration', return_value=None):
      with self.assertRaisesRegex(
          video.VideoError,
          r'`end`=2 is past the end of .*, whose frames end ' r'at 1.000 s',
      ):
        list(video.iter_frames(self.video, end=2))


class ColourAndGeometryTest(testing.TempDirMixin, parameterized.TestCase):

  def test_red_stays_red(self):
    # Ordinary lossy H.264 4:2:0, as most downloads are.
    path = self.path('red.mp4')
    red = np.zeros((48, 64, 3), np.uint8)
    red[..., 0] = 255
    synthetic_videos.write_video(path, [red] * 3, rate=25)
    frames, _ = video.load_frames(path)
    mean = frames.reshape(-1, 3).mean(axis=0)
    self.assertGreater(mean[0], 235)
    self.assertLess(mean[1], 20)
    self.assertLess(mean[2], 20)

  @parameterized.named_parameters(
      ('landscape', 48, 64, (256, 341)),
      ('portrait', 64, 48, (341, 256)),
      ('square', 50, 50, (256, 256)),
      ('kinetics_340x256', 256, 340, (256, 340)),
      ('hd', 720, 1280, (256, 455)),
      ('rounds_half_up', 2, 3, (256, 384)),
      ('rounds_down', 3, 4, (256, 341)),
  )
  def test_resized_shape(self, height, width, expected):
    self.assertEqual(video.resized_shape(height, width), expected)

  @parameterized.named_parameters(
      ('landscape', 96, 128, False),
      ('portrait', 128, 96, True),
  )
  def test_colour_bars_through_resize_and_crop(self, height, width, portrait):
    # Four bars of 32 pixels across the long side: red, green, blue, white.
    colours = np.array(
        [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]], np.uint8
    )
    bars = np.repeat(colours, 32, axis=0)  # [128, 3]
    image = np.broadcast_to(bars[np.newaxis], (96, 128, 3))
    if portrait:
      image = image.transpose(1, 0, 2)
    path = testing.write_video(
        self.path(f'bars_{height}x{width}.mkv'), [image] * 2, rate=25
    )
    frames, _ = video.load_frames(path)
    self.assertEqual(frames.shape[1:3], (341, 256) if portrait else (256, 341))
    crop = recipe.crop_at(
        frames, *recipe.center_crop_offsets(*frames.shape[1:3])
    )
    self.assertEqual(crop.shape, (2, 224, 224, 3))
    # Bar edges at 85.33, 170.67, 256 in the resized frame; the crop starts
    # at (341 - 224) // 2 = 58, so in the crop at 27.33, 112.67 and 198.
    line = crop[0, 100] if not portrait else crop[0, :, 100]
    for lo, hi, colour in (
        (0, 24, 0),
        (31, 109, 1),
        (116, 195, 2),
        (201, 224, 3),
    ):
      np.testing.assert_array_equal(
          line[lo:hi], np.broadcast_to(colours[colour], (hi - lo, 3))
      )
    # The other axis is uniform.
    other = crop[0, :, 10] if not portrait else crop[0, 10]
    np.testing.assert_array_equal(other, np.broadcast_to(colours[0], (224, 3)))

  @parameterized.named_parameters(
      ('even_margins', 256, 340, (16, 58)),
      ('odd_margin_extra_pixel_right', 256, 341, (16, 58)),
      ('odd_margin_extra_pixel_bottom', 341, 256, (58, 16)),
      ('exact', 224, 224, (0, 0)),
  )
  def test_center_crop_offsets(self, height, width, expected):
    self.assertEqual(recipe.center_crop_offsets(height, width), expected)
    rows, cols = np.mgrid[:height, :width]
    frames = np.stack([rows, cols, rows * 0], axis=-1)[np.newaxis]
    crop = recipe.crop_at(
        frames, *recipe.center_crop_offsets(*frames.shape[1:3])
    )
    self.assertEqual(tuple(crop[0, 0, 0, :2]), expected)
    self.assertEqual(crop.shape, (1, 224, 224, 3))

  def test_crop_too_large(self):
    with self.assertRaisesRegex(
        ValueError, r'Crop `size`=224 does not fit frames of ' r'200x300'
    ):
      recipe.center_crop_offsets(200, 300)

  def test_random_crop_is_seeded_and_in_range(self):
    rows, cols = np.mgrid[:256, :341]
    frames = np.stack([rows, cols, rows * 0], axis=-1)[np.newaxis]
    first = recipe.crop_at(
        frames,
        *recipe.random_crop_offsets(
            256, 341, 224, rng=np.random.default_rng(3)
        ),
    )
    again = recipe.crop_at(
        frames, *recipe.random_crop_offsets(256, 341, 224, rng=3)
    )
    np.testing.assert_array_equal(first, again)
    offsets = {
        recipe.random_crop_offsets(256, 341, 224, rng) for rng in range(40)
    }
    self.assertGreater(len(offsets), 30)
    for top, left in offsets:
      self.assertBetween(top, 0, 32)
      self.assertBetween(left, 0, 117)

  def test_bad_rng(self):
    with self.assertRaisesRegex(
        ValueError, r'`rng` must be a numpy.random.Generator'
    ):
      recipe.random_crop_offsets(256, 341, 224, rng='seven')

  def test_flip_rgb(self):
    frames = np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3)
    np.testing.assert_array_equal(
        recipe.flip_left_right(frames), frames[:, :, ::-1]
    )

  def test_flip_flow_negates_x_only(self):
    flow = np.zeros((1, 2, 3, 2), np.float32)
    flow[0, :, 0] = (1.5, -2.0)  # Left column moves right and up.
    flipped = recipe.flip_left_right(flow)
    np.testing.assert_array_equal(flipped[0, :, 2], [[-1.5, -2.0]] * 2)
    np.testing.assert_array_equal(flipped[0, :, :2], 0)
    np.testing.assert_array_equal(recipe.flip_left_right(flipped), flow)

  def test_flip_needs_rgb_or_flow(self):
    with self.assertRaisesRegex(
        ValueError, r'must have 3 channels \(RGB\) or ' r'2 \(flow x, y\)'
    ):
      recipe.flip_left_right(np.zeros((2, 4, 4, 1)))


if __name__ == '__main__':
  absltest.main()
