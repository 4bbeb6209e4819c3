"""Tests for video.py: decoding, resampling, geometry, flow, errors, saving.

Every video is written by the tests themselves with PyAV, tiny and short.
Lossless codecs (FFV1 in mkv, libx264rgb with qp=0) keep pixel values exact;
lossy ones are checked with tolerances.
"""

import contextlib
import fractions
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Optional, Sequence
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import av
import cv2
import numpy as np
from PIL import Image

import synthetic_videos
import video

Fraction = fractions.Fraction
HERE = os.path.dirname(os.path.abspath(__file__))

# (extension, codec, pixel format, codec options, exact?) per container.
FORMATS = {
    'mkv': ('mkv', 'ffv1', 'bgr0', None, True),
    'mp4': ('mp4', 'libx264rgb', 'rgb24', {'qp': '0'}, True),
    'avi': ('avi', 'mjpeg', 'yuvj444p', {'q:v': '2'}, False),
    'webm': ('webm', 'libvpx-vp9', 'yuv444p', {'lossless': '1'}, False),
}
LEVEL_STEP = 8  # Frame i of a "level" video is a uniform gray of 8 * i.


def write_video(path: str,
                frames: Sequence[np.ndarray],
                rate: int = 30,
                pts: Optional[Sequence[int]] = None,
                time_base: Optional[Fraction] = None,
                fmt: str = 'mkv',
                rotation: Optional[int] = None) -> str:
  """Encodes uint8 RGB frames in one of FORMATS; pts in `time_base` units."""
  _, codec, pix_fmt, options, _ = FORMATS[fmt]
  return synthetic_videos.write_video(
      path, frames, rate=rate, codec=codec, pix_fmt=pix_fmt, options=options,
      pts=pts, time_base=time_base, rotation=rotation)


def level_frames(count: int, height: int = 48,
                 width: int = 64) -> np.ndarray:
  """Frame i is a uniform gray of LEVEL_STEP * i, so content tells the index."""
  return np.stack([np.full((height, width, 3), LEVEL_STEP * i, np.uint8)
                   for i in range(count)])


def frame_indices(frames: np.ndarray) -> np.ndarray:
  """Inverse of level_frames: the source index each frame shows."""
  means = frames.reshape(len(frames), -1).mean(axis=1)
  return np.round(means / LEVEL_STEP).astype(int)


def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
  """A smooth random uint8 gray texture, good for optical flow."""
  noise = np.random.default_rng(seed).random((height, width), np.float32)
  smooth = cv2.GaussianBlur(noise, (0, 0), 2.0)
  smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
  return np.round(smooth * 255).astype(np.uint8)


def shifted_frames(count: int, dx: int, dy: int, height: int = 48,
                   width: int = 64) -> np.ndarray:
  """RGB frames of a texture whose content moves by (dx, dy) per frame."""
  margin = 4 * (abs(dx) + abs(dy)) * count + 8
  big = texture(height + 2 * margin, width + 2 * margin)
  frames = []
  for t in range(count):
    # Content moving right by dx = the window moving left by dx.
    top, left = margin - t * dy, margin - t * dx
    gray = big[top:top + height, left:left + width]
    frames.append(np.repeat(gray[..., np.newaxis], 3, axis=-1))
  return np.stack(frames)


class TempDirMixin:
  """One temporary folder per test class, for the videos it writes."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp(prefix=f'{cls.__name__}_')

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.tmp, ignore_errors=True)
    super().tearDownClass()

  @classmethod
  def path(cls, name: str) -> str:
    return os.path.join(cls.tmp, name)


class ProbeTest(TempDirMixin, parameterized.TestCase):

  @parameterized.parameters('mkv', 'mp4', 'avi', 'webm')
  def test_probe_reads_each_container(self, fmt):
    path = write_video(self.path(f'probe.{fmt}'), level_frames(15), rate=30,
                       fmt=fmt)
    info = video.probe(path)
    self.assertEqual((info.width, info.height), (64, 48))
    self.assertAlmostEqual(info.fps, 30.0)
    self.assertAlmostEqual(info.duration, 0.5, delta=0.02)
    self.assertEqual(info.codec, FORMATS[fmt][1].replace('libx264rgb', 'h264')
                     .replace('libvpx-vp9', 'vp9'))
    self.assertEqual(info.rotation, 0)

  def test_rotation_tag_is_applied(self):
    frames = np.zeros((3, 48, 64, 3), np.uint8)
    frames[:, :8, :8] = 255  # A marker in the top-left corner.
    path = write_video(self.path('rotated.mkv'), frames, rate=25, rotation=90)
    info = video.probe(path)
    self.assertEqual((info.width, info.height, info.rotation), (48, 64, 90))
    images, _ = video.load_frames(path, short_side=None)
    self.assertEqual(images.shape, (3, 64, 48, 3))
    # Turned a quarter counter-clockwise: the corner is now bottom-left.
    self.assertTrue(np.all(images[0, -8:, :8] == 255))
    self.assertEqual(int((images[0, ..., 0] > 128).sum()), 64)


class BadFileTest(TempDirMixin, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    good = write_video(cls.path('good.mp4'), level_frames(20), fmt='mp4')
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
    with self.assertRaisesRegex(video.VideoError,
                                re.escape(repr(path)) + ' does not exist'):
      function(path)

  def test_directory(self):
    with self.assertRaisesRegex(video.VideoError, 'is a directory'):
      video.probe(self.tmp)

  @parameterized.parameters(video.probe, video.load_frames)
  def test_empty_file(self, function):
    path = self._write('empty.mp4', b'')
    with self.assertRaisesRegex(video.VideoError,
                                re.escape(repr(path)) + r' is empty \(0 bytes'):
      function(path)

  @parameterized.parameters(video.probe, video.load_frames)
  def test_text_file_named_mp4(self, function):
    path = self._write('notes.mp4', b'These are notes, not a video.\n' * 20)
    with self.assertRaisesRegex(
        video.VideoError, 'Cannot read ' + re.escape(repr(path)) +
        ' as a video'):
      function(path)

  @parameterized.parameters(video.probe, video.load_frames)
  def test_truncated_mp4(self, function):
    path = self._write('truncated.mp4',
                       self.good_bytes[:len(self.good_bytes) // 2])
    with self.assertRaisesRegex(
        video.VideoError, 'Cannot read ' + re.escape(repr(path)) +
        '.*corrupt, truncated'):
      function(path)

  def test_corrupt_stream_fails_while_decoding(self):
    source = write_video(self.path('whole.avi'), level_frames(20), fmt='avi')
    with open(source, 'rb') as f:
      data = f.read()
    path = self._write('cut.avi', data[:len(data) // 3])
    with self.assertRaisesRegex(
        video.VideoError, 'Decoding ' + re.escape(repr(path)) +
        r' failed after \d+ frame'):
      video.load_frames(path)

  def test_audio_only_file(self):
    path = self.path('audio.m4a')
    with av.open(path, 'w') as container:
      stream = container.add_stream('aac', rate=16000)
      for i in range(4):
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), np.float32), format='fltp', layout='mono')
        frame.sample_rate, frame.pts = 16000, i * 1024
        for packet in stream.encode(frame):
          container.mux(packet)
      for packet in stream.encode():
        container.mux(packet)
    with self.assertRaisesRegex(
        video.VideoError, re.escape(repr(path)) +
        r' has no video stream \(its streams: audio\)'):
      video.probe(path)


class FrameRateTest(TempDirMixin, parameterized.TestCase):
  """Which source frame each 25 fps output frame shows."""

  @parameterized.parameters('mkv', 'mp4', 'avi', 'webm')
  def test_30_fps_to_25_fps(self, fmt):
    path = write_video(self.path(f'30fps.{fmt}'), level_frames(30), rate=30,
                       fmt=fmt)
    frames, times = video.load_frames(path, short_side=None)
    self.assertEqual(frames.dtype, np.uint8)
    self.assertEqual(frames.shape, (25, 48, 64, 3))
    np.testing.assert_allclose(times, np.arange(25) / 25)
    # Source frame i is shown during [i/30, (i+1)/30); t_k = k/25.
    np.testing.assert_array_equal(frame_indices(frames),
                                  np.floor(np.arange(25) * 30 / 25))

  def test_20_fps_to_25_fps_repeats_frames(self):
    path = write_video(self.path('20fps.mkv'), level_frames(10), rate=20)
    frames, _ = video.load_frames(path, short_side=None)
    # 0.5 s: t_k = k / 25 < 0.5 for k = 0..12.
    self.assertEqual(frames.shape, (13, 48, 64, 3))
    np.testing.assert_array_equal(frame_indices(frames),
                                  [0, 0, 1, 2, 3, 4, 4, 5, 6, 7, 8, 8, 9])

  def test_variable_frame_rate(self):
    # Millisecond timestamps with uneven gaps, as phones write.
    stamps = [0, 10, 50, 60, 200, 210, 300, 400, 410, 420, 700]
    path = write_video(self.path('vfr.mkv'), level_frames(len(stamps)),
                       rate=100, pts=stamps, time_base=Fraction(1, 1000))
    frames = list(video.iter_frames(path, short_side=None))
    # The last frame lasts 10 ms, so the video ends at 0.71 s.
    self.assertLen(frames, 18)
    got = frame_indices(np.stack([f.image for f in frames]))
    # Latest frame with stamp <= t_k = 40 k ms.
    expected = [max(i for i, s in enumerate(stamps) if s <= 40 * k)
                for k in range(18)]
    np.testing.assert_array_equal(got, expected)
    for k, frame in enumerate(frames):
      self.assertEqual(frame.index, k)
      self.assertAlmostEqual(frame.time, k / 25)
      self.assertAlmostEqual(frame.source_time, stamps[expected[k]] / 1000)
      self.assertFalse(frame.image.flags.writeable)

  def test_iter_chunks_matches_load_frames(self):
    path = write_video(self.path('chunks.mkv'), level_frames(30))
    whole, times = video.load_frames(path, short_side=None)
    chunks = list(video.iter_chunks(path, 10, short_side=None))
    self.assertEqual([len(c) for c, _ in chunks], [10, 10, 5])
    np.testing.assert_array_equal(np.concatenate([c for c, _ in chunks]),
                                  whole)
    np.testing.assert_array_equal(np.concatenate([t for _, t in chunks]),
                                  times)

  def test_seeking_gives_the_same_frames(self):
    # 30 frames with a keyframe every 5: seeking to the keyframe before
    # `start` must pick exactly the frames of decoding from the beginning.
    path = self.path('seek.mp4')
    synthetic_videos.write_video(path, level_frames(30), rate=30,
                                 codec='libx264rgb', pix_fmt='rgb24',
                                 options={'qp': '0', 'g': '5'})
    plain, _ = video.load_frames(path, start=0.5, end=0.9, short_side=None)
    with mock.patch.object(video, '_SEEK_MIN_S', 0.0):
      seeked, times = video.load_frames(path, start=0.5, end=0.9,
                                        short_side=None)
    np.testing.assert_array_equal(seeked, plain)
    np.testing.assert_allclose(times, 0.5 + np.arange(10) / 25)
    np.testing.assert_array_equal(frame_indices(seeked),
                                  np.floor((0.5 + np.arange(10) / 25) * 30))

  @parameterized.parameters(0, -1.5, 'fast')
  def test_bad_fps(self, fps):
    with self.assertRaisesRegex(ValueError, '`fps` must be a positive number'):
      video.iter_frames(self.path('any.mkv'), fps=fps)


class ClipTest(TempDirMixin, parameterized.TestCase):
  """start/end in seconds, as Kinetics clips are given."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.video = write_video(cls.path('clip.mkv'), level_frames(30), rate=30)

  @parameterized.named_parameters(
      ('start_only', 0.5, None, 13),
      ('start_and_end', 0.5, 0.7, 5),
      ('end_only', None, 0.2, 5),
      ('end_within_one_frame_of_the_end', None, 1.02, 26),
  )
  def test_clip(self, start, end, count):
    frames, times = video.load_frames(self.video, start=start, end=end,
                                      short_side=None)
    self.assertEqual(len(frames), count)
    np.testing.assert_allclose(times, (start or 0) + np.arange(count) / 25)
    expected = np.minimum(np.floor(times * 30 + 1e-9), 29)
    np.testing.assert_array_equal(frame_indices(frames), expected)

  def test_end_not_after_start(self):
    with self.assertRaisesRegex(
        video.VideoError, r'`end`=0.3 must be greater than `start`=0.5 for ' +
        re.escape(repr(self.video))):
      video.iter_frames(self.video, start=0.5, end=0.3)

  def test_start_past_the_end(self):
    with self.assertRaisesRegex(
        video.VideoError, r'`start`=1.5 is at or past the end of ' +
        re.escape(repr(self.video)) + r', which lasts 1.000 s'):
      video.iter_frames(self.video, start=1.5)

  def test_end_past_the_end(self):
    with self.assertRaisesRegex(
        video.VideoError, r'`end`=3 is past the end of ' +
        re.escape(repr(self.video)) + r', which lasts 1.000 s'):
      video.iter_frames(self.video, end=3)

  def test_negative_start(self):
    with self.assertRaisesRegex(video.VideoError,
                                r'`start`=-1 for .* is negative'):
      video.iter_frames(self.video, start=-1)

  def test_end_past_the_frames_found_while_decoding(self):
    # A header that overstates the duration: caught once decoding ends.
    with mock.patch.object(video, '_stream_duration', return_value=None):
      with self.assertRaisesRegex(
          video.VideoError, r'`end`=2 is past the end of .*, whose frames end '
          r'at 1.000 s'):
        list(video.iter_frames(self.video, end=2))


class ColourAndGeometryTest(TempDirMixin, parameterized.TestCase):

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
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255],
                        [255, 255, 255]], np.uint8)
    bars = np.repeat(colours, 32, axis=0)  # [128, 3]
    image = np.broadcast_to(bars[np.newaxis], (96, 128, 3))
    if portrait:
      image = image.transpose(1, 0, 2)
    path = write_video(self.path(f'bars_{height}x{width}.mkv'),
                       [image] * 2, rate=25)
    frames, _ = video.load_frames(path)
    self.assertEqual(frames.shape[1:3], (341, 256) if portrait else (256, 341))
    crop = video.center_crop(frames)
    self.assertEqual(crop.shape, (2, 224, 224, 3))
    # Bar edges at 85.33, 170.67, 256 in the resized frame; the crop starts
    # at (341 - 224) // 2 = 58, so in the crop at 27.33, 112.67 and 198.
    line = crop[0, 100] if not portrait else crop[0, :, 100]
    for lo, hi, colour in ((0, 24, 0), (31, 109, 1), (116, 195, 2),
                           (201, 224, 3)):
      np.testing.assert_array_equal(
          line[lo:hi], np.broadcast_to(colours[colour], (hi - lo, 3)))
    # The other axis is uniform.
    other = crop[0, :, 10] if not portrait else crop[0, 10]
    np.testing.assert_array_equal(other, np.broadcast_to(colours[0],
                                                         (224, 3)))

  @parameterized.named_parameters(
      ('even_margins', 256, 340, (16, 58)),
      ('odd_margin_extra_pixel_right', 256, 341, (16, 58)),
      ('odd_margin_extra_pixel_bottom', 341, 256, (58, 16)),
      ('exact', 224, 224, (0, 0)),
  )
  def test_center_crop_offsets(self, height, width, expected):
    self.assertEqual(video.center_crop_offsets(height, width), expected)
    rows, cols = np.mgrid[:height, :width]
    frames = np.stack([rows, cols, rows * 0], axis=-1)[np.newaxis]
    crop = video.center_crop(frames)
    self.assertEqual(tuple(crop[0, 0, 0, :2]), expected)
    self.assertEqual(crop.shape, (1, 224, 224, 3))

  def test_crop_too_large(self):
    with self.assertRaisesRegex(ValueError,
                                r'Crop `size`=224 does not fit frames of '
                                r'200x300'):
      video.center_crop(np.zeros((1, 200, 300, 3), np.uint8))

  def test_random_crop_is_seeded_and_in_range(self):
    rows, cols = np.mgrid[:256, :341]
    frames = np.stack([rows, cols, rows * 0], axis=-1)[np.newaxis]
    first = video.random_crop(frames, 224, rng=np.random.default_rng(3))
    again = video.random_crop(frames, 224, rng=3)
    np.testing.assert_array_equal(first, again)
    offsets = {video.random_crop_offsets(256, 341, 224, rng)
               for rng in range(40)}
    self.assertGreater(len(offsets), 30)
    for top, left in offsets:
      self.assertBetween(top, 0, 32)
      self.assertBetween(left, 0, 117)

  def test_bad_rng(self):
    with self.assertRaisesRegex(ValueError,
                                r'`rng` must be a numpy.random.Generator'):
      video.random_crop_offsets(256, 341, 224, rng='seven')

  def test_flip_rgb(self):
    frames = np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3)
    np.testing.assert_array_equal(video.flip_left_right(frames),
                                  frames[:, :, ::-1])

  def test_flip_flow_negates_x_only(self):
    flow = np.zeros((1, 2, 3, 2), np.float32)
    flow[0, :, 0] = (1.5, -2.0)  # Left column moves right and up.
    flipped = video.flip_left_right(flow)
    np.testing.assert_array_equal(flipped[0, :, 2], [[-1.5, -2.0]] * 2)
    np.testing.assert_array_equal(flipped[0, :, :2], 0)
    np.testing.assert_array_equal(video.flip_left_right(flipped), flow)

  def test_flip_needs_rgb_or_flow(self):
    with self.assertRaisesRegex(ValueError, r'must have 3 channels \(RGB\) or '
                                r'2 \(flow x, y\)'):
      video.flip_left_right(np.zeros((2, 4, 4, 1)))


class InputScalingTest(parameterized.TestCase):

  def test_rgb_to_input(self):
    frames = np.array([0, 51, 127, 128, 255], np.uint8)[:, None, None, None]
    out = video.rgb_to_input(np.repeat(frames, 3, axis=-1))
    self.assertEqual(out.dtype, np.float32)
    np.testing.assert_allclose(out[:, 0, 0, 0],
                               [-1.0, -0.6, -0.00392157, 0.00392157, 1.0],
                               atol=1e-6)

  def test_rgb_to_input_needs_uint8(self):
    with self.assertRaisesRegex(ValueError,
                                r'`frames` must be uint8 RGB .* got dtype '
                                r'float32'):
      video.rgb_to_input(np.zeros((1, 2, 2, 3), np.float32))

  def test_flow_to_input_clips_at_20_pixels(self):
    flow = np.array([-35.0, -20.0, -10.0, 0.0, 5.0, 20.0, 21.0, 400.0],
                    np.float64).reshape(4, 1, 1, 2)
    out = video.flow_to_input(flow)
    self.assertEqual(out.dtype, np.float32)
    np.testing.assert_allclose(
        out.reshape(-1), [-1.0, -1.0, -0.5, 0.0, 0.25, 1.0, 1.0, 1.0])

  def test_flow_to_input_needs_two_channels(self):
    with self.assertRaisesRegex(ValueError,
                                r'`flow` must have 2 channels \(x, y\)'):
      video.flow_to_input(np.zeros((2, 4, 4, 3)))

  @parameterized.named_parameters(
      ('short', 3, 9, [0, 1, 2, 0, 1, 2, 0, 1, 2], True),
      ('uneven', 4, 9, [0, 1, 2, 3, 0, 1, 2, 3, 0], True),
      ('one_frame', 1, 3, [0, 0, 0], True),
      ('long_enough', 9, 9, list(range(9)), False),
      ('longer', 12, 9, list(range(12)), False),
  )
  def test_loop_to_min_frames(self, count, min_frames, expected, looped):
    clip = np.arange(count)[:, None] * np.ones((1, 2), int)
    out, did_loop = video.loop_to_min_frames(clip, min_frames)
    np.testing.assert_array_equal(out[:, 0], expected)
    self.assertEqual(did_loop, looped)

  def test_loop_empty_clip(self):
    with self.assertRaisesRegex(ValueError, 'Cannot loop an empty clip'):
      video.loop_to_min_frames(np.zeros((0, 2, 2, 3)), 9)


class FlowTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ('right', 2, 0),
      ('left', -2, 0),
      ('down', 0, 2),
      ('up_right', 1, -2),
  )
  def test_translation_sign_and_channels(self, dx, dy):
    frames = shifted_frames(3, dx, dy)
    flow = video.compute_flow(frames, workers=1)
    self.assertEqual(flow.shape, (3, 48, 64, 2))
    self.assertEqual(flow.dtype, np.float32)
    # Channel 0 = x (positive = right), channel 1 = y (positive = down).
    inner = flow[:2, 10:-10, 10:-10]
    np.testing.assert_allclose(np.median(inner, axis=(1, 2)),
                               [[dx, dy], [dx, dy]], atol=0.2)

  def test_last_flow_repeats_the_previous_one(self):
    frames = shifted_frames(4, 1, 0)
    flow = video.compute_flow(frames, workers=1)
    self.assertLen(flow, 4)
    np.testing.assert_array_equal(flow[3], flow[2])
    self.assertFalse(np.array_equal(flow[2], flow[1]))

  def test_single_frame_has_zero_flow(self):
    flow = video.compute_flow(shifted_frames(1, 1, 0), workers=1)
    np.testing.assert_array_equal(flow, np.zeros((1, 48, 64, 2)))

  def test_workers_and_streaming_agree(self):
    frames = shifted_frames(12, 1, 1, height=32, width=40)
    serial = video.compute_flow(frames, workers=1)
    parallel = video.compute_flow(frames, workers=2)
    pulled = []

    def source():
      for i, frame in enumerate(frames):
        pulled.append(i)
        yield frame

    stream = video.iter_flow(source(), workers=2, chunk_size=2)
    streamed = [next(stream)]
    # Lookahead is bounded: 2 * workers chunks of 2 pairs, plus one frame.
    self.assertLen(pulled, 9)
    streamed.extend(stream)
    np.testing.assert_array_equal(parallel, serial)
    np.testing.assert_array_equal(np.stack(streamed), serial)

  def test_frame_size_must_not_change(self):
    frames = [np.zeros((8, 8), np.uint8), np.zeros((8, 9), np.uint8)]
    with self.assertRaisesRegex(ValueError,
                                r'must all have one size; the first was '
                                r'\(8, 8\) and a later one \(8, 9\)'):
      list(video.iter_flow(frames, workers=1))

  def test_gray_input_matches_rgb(self):
    frames = shifted_frames(2, 1, 0)
    np.testing.assert_array_equal(
        video.compute_flow(frames[..., 0], workers=1),
        video.compute_flow(frames, workers=1))

  def test_frames_must_be_uint8(self):
    with self.assertRaisesRegex(ValueError,
                                r'`frames` must be uint8 \[T, H, W, 3\] RGB'):
      video.compute_flow(np.zeros((2, 8, 8, 3), np.float32))

  def test_bad_workers(self):
    with self.assertRaisesRegex(ValueError,
                                r'`workers` must be a positive integer'):
      video.compute_flow(np.zeros((2, 8, 8, 3), np.uint8), workers=0)


class PreprocessTest(TempDirMixin, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    # A texture moving right by one pixel per frame at 25 fps: 6 frames.
    cls.moving = write_video(cls.path('moving.mkv'), shifted_frames(6, 1, 0),
                             rate=25)
    cls.levels = write_video(cls.path('levels.mkv'), level_frames(12),
                             rate=25)

  def test_progress_bar_counts_the_frames(self):
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
      video.preprocess(self.levels, streams=('rgb',), progress=True)
    self.assertRegex(stderr.getvalue(), r'levels\.mkv: 100%.*12/12 \[')

  def test_release_layout_and_flow_end_to_end(self):
    out = video.preprocess(self.moving, workers=2)
    self.assertEqual(out['rgb'].shape, (1, 9, 224, 224, 3))
    self.assertEqual(out['flow'].shape, (1, 9, 224, 224, 2))
    self.assertEqual(out['rgb'].dtype, np.float32)
    self.assertEqual(out['flow'].dtype, np.float32)
    self.assertBetween(float(out['rgb'].min()), -1.0, 1.0)
    self.assertBetween(float(out['rgb'].max()), -1.0, 1.0)
    self.assertBetween(float(np.abs(out['flow']).max()), 0.0, 1.0)
    self.assertTrue(out['looped'])
    self.assertEqual(out['num_frames'], 6)
    self.assertEqual(out['frame_size'], (256, 341))
    self.assertEqual(out['crop_offset'], (16, 58))
    np.testing.assert_allclose(out['timestamps'],
                               np.arange(9) % 6 / 25)
    # Looping repeats frames 0, 1, 2 for RGB and flow alike.
    np.testing.assert_array_equal(out['rgb'][0, 6:], out['rgb'][0, :3])
    np.testing.assert_array_equal(out['flow'][0, 6:], out['flow'][0, :3])
    # One pixel per frame to the right, times 256 / 48 for the resize, over
    # 20 for the scaling; no vertical motion.
    inner = out['flow'][0, :6, 32:-32, 32:-32]
    np.testing.assert_allclose(np.median(inner, axis=(1, 2)),
                               [[256 / 48 / 20, 0.0]] * 6, atol=0.02)

  def test_rgb_only_without_looping(self):
    out = video.preprocess(self.levels, streams=('rgb',), min_frames=1)
    self.assertNotIn('flow', out)
    self.assertEqual(out['rgb'].shape, (1, 12, 224, 224, 3))
    self.assertFalse(out['looped'])
    np.testing.assert_allclose(out['rgb'][0, :, 0, 0, 0],
                               np.arange(12) * LEVEL_STEP / 127.5 - 1,
                               atol=1e-6)

  def test_random_crop_and_flip_are_seeded(self):
    first = video.preprocess(self.levels, streams='rgb', crop='random',
                             flip=True, rng=5, end=0.2)
    again = video.preprocess(self.levels, streams='rgb', crop='random',
                             flip=True, rng=np.random.default_rng(5), end=0.2)
    self.assertEqual(first['crop_offset'], again['crop_offset'])
    self.assertEqual(first['flipped'], again['flipped'])
    np.testing.assert_array_equal(first['rgb'], again['rgb'])
    self.assertTrue(first['looped'])
    offsets = {video.preprocess(self.levels, streams='rgb', crop='random',
                                rng=seed, end=0.1)['crop_offset']
               for seed in range(4)}
    self.assertGreater(len(offsets), 1)

  def test_bad_streams(self):
    with self.assertRaisesRegex(
        ValueError,
        re.escape("`streams` must be a non-empty subset of ('rgb', 'flow')")):
      video.preprocess(self.levels, streams=('depth',))

  def test_bad_crop(self):
    with self.assertRaisesRegex(
        ValueError, re.escape("`crop` must be one of ('center', 'random')")):
      video.preprocess(self.levels, crop='corner')


class SavingTest(TempDirMixin, parameterized.TestCase):

  def test_save_npy_writes_exactly_the_path(self):
    folder = tempfile.mkdtemp(dir=self.tmp)
    path = os.path.join(folder, 'sample_rgb')  # np.save would add '.npy'.
    array = np.linspace(-1, 1, 24, dtype=np.float32).reshape(1, 2, 2, 2, 3)
    video.save_npy(path, array)
    np.testing.assert_array_equal(np.load(path), array)
    self.assertEqual(os.listdir(folder), ['sample_rgb'])

  def test_save_npy_failure_keeps_the_old_file(self):
    folder = tempfile.mkdtemp(dir=self.tmp)
    path = os.path.join(folder, 'keep.npy')
    video.save_npy(path, np.zeros(3))
    with mock.patch.object(np, 'save', side_effect=OSError('disk full')):
      with self.assertRaisesRegex(OSError, 'disk full'):
        video.save_npy(path, np.ones(3))
    np.testing.assert_array_equal(np.load(path), np.zeros(3))
    self.assertEqual(os.listdir(folder), ['keep.npy'])

  def test_rgb_gif_uses_the_release_convention(self):
    rgb = np.full((1, 3, 8, 8, 3), -1.0, np.float32)
    rgb[0, 1] = 1.0
    rgb[0, 2, ..., 0] = 1.0  # Red.
    path = self.path('clip_rgb.gif')
    video.write_gif(path, rgb)
    with Image.open(path) as gif:
      self.assertEqual((gif.n_frames, gif.size), (3, (8, 8)))
      colours = []
      for i in range(3):
        gif.seek(i)
        colours.append(tuple(np.asarray(gif.convert('RGB'))[4, 4]))
    self.assertEqual(colours, [(0, 0, 0), (255, 255, 255), (255, 0, 0)])

  def test_flow_gif_uses_the_release_convention(self):
    flow = np.zeros((2, 8, 8, 2), np.float32)
    flow[1, ..., 0], flow[1, ..., 1] = 0.5, -0.5
    np.testing.assert_array_equal(video.gif_frames(flow)[:, 0, 0],
                                  [[128, 128, 128], [255, 0, 128]])
    path = self.path('clip_flow.gif')
    video.write_gif(path, flow[np.newaxis])
    with Image.open(path) as gif:
      gif.seek(1)
      np.testing.assert_allclose(np.asarray(gif.convert('RGB'))[4, 4],
                                 [255, 0, 128], atol=2)

  def test_gif_needs_one_clip(self):
    with self.assertRaisesRegex(ValueError, r'`array` must hold one clip'):
      video.gif_frames(np.zeros((2, 3, 8, 8, 3)))


class PreprocessVideoMainTest(TempDirMixin, parameterized.TestCase):
  """preprocess_video.py as a user runs it."""

  def _run(self, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
    return subprocess.run(
        [sys.executable, os.path.join(HERE, 'preprocess_video.py'), *args],
        capture_output=True, text=True, env=env, timeout=120, check=False)

  def test_writes_arrays_and_gifs(self):
    source = write_video(self.path('tiny.mkv'), shifted_frames(3, 1, 0),
                         rate=25)
    out_dir = self.path('out')
    result = self._run(f'--video={source}', f'--out_dir={out_dir}',
                       '--workers=2')
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertIn('frames: 3 at 25 fps', result.stdout)
    self.assertIn('looped: yes, 3 -> 9 frames', result.stdout)
    self.assertIn('rgb: (1, 9, 224, 224, 3) float32', result.stdout)
    self.assertIn('flow: (1, 9, 224, 224, 2) float32', result.stdout)
    self.assertCountEqual(os.listdir(out_dir),
                          ['tiny_rgb.npy', 'tiny_flow.npy', 'tiny_rgb.gif',
                           'tiny_flow.gif'])
    rgb = np.load(os.path.join(out_dir, 'tiny_rgb.npy'))
    flow = np.load(os.path.join(out_dir, 'tiny_flow.npy'))
    self.assertEqual((rgb.shape, rgb.dtype), ((1, 9, 224, 224, 3), np.float32))
    self.assertEqual((flow.shape, flow.dtype),
                     ((1, 9, 224, 224, 2), np.float32))

  def test_bad_file_is_one_line_error(self):
    path = self.path('notes.mp4')
    with open(path, 'w') as f:
      f.write('not a video\n' * 10)
    result = self._run(f'--video={path}', f'--out_dir={self.path("bad")}')
    self.assertEqual(result.returncode, 1)
    self.assertNotIn('Traceback', result.stderr)
    lines = result.stderr.strip().splitlines()
    self.assertLen(lines, 1)
    self.assertRegex(lines[0], r'^preprocess_video: error: Cannot read .*'
                     r'notes\.mp4')

  def test_stray_argument_is_a_usage_error(self):
    result = self._run('--video=x.mp4', 'extra.mp4')
    self.assertNotEqual(result.returncode, 0)
    self.assertIn('Unexpected arguments: extra.mp4', result.stderr)


if __name__ == '__main__':
  absltest.main()
