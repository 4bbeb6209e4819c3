"""Helpers shared by the tests: temporary folders, videos, checkpoints.

Not a test module itself (pytest collects only *_test.py), and no test
module imports another: what two tests share lives here.
"""

from __future__ import annotations

from fractions import Fraction
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence
from unittest import mock

import cv2
import numpy as np

import assets
import checkpoints
import recipe
import synthetic_videos

# (codec, pixel format, codec options, lossless?) per container extension.
FORMATS = {
    'mkv': ('ffv1', 'bgr0', None, True),
    'mp4': ('libx264rgb', 'rgb24', {'qp': '0'}, True),
    'avi': ('mjpeg', 'yuvj444p', {'q:v': '2'}, False),
    'webm': ('libvpx-vp9', 'yuv444p', {'lossless': '1'}, False),
}


LEVEL_STEP = 8  # Frame i of a "level" video is a uniform gray of 8 * i.


def level_frames(count: int, height: int = 48, width: int = 64) -> np.ndarray:
  """Frame i is a uniform gray of LEVEL_STEP * i, so content tells the index."""
  return np.stack(
      [
          np.full((height, width, 3), LEVEL_STEP * i, np.uint8)
          for i in range(count)
      ]
  )


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


def shifted_frames(
    count: int, dx: int, dy: int, height: int = 48, width: int = 64
) -> np.ndarray:
  """RGB frames of a texture whose content moves by (dx, dy) per frame."""
  margin = 4 * (abs(dx) + abs(dy)) * count + 8
  big = texture(height + 2 * margin, width + 2 * margin)
  frames = []
  for t in range(count):
    # Content moving right by dx = the window moving left by dx.
    top, left = margin - t * dy, margin - t * dx
    gray = big[top : top + height, left : left + width]
    frames.append(np.repeat(gray[..., np.newaxis], 3, axis=-1))
  return np.stack(frames)


ROOT = os.path.dirname(os.path.abspath(__file__))


def run_python(
    args: Sequence[str], env: Optional[Dict[str, str]] = None
) -> subprocess.CompletedProcess:
  """`python *args` in a fresh process in the repository root.

  Entry points run this way, never imported: their flags would clash.
  `env` defaults to this one with TF_CPP_MIN_LOG_LEVEL=3 (quiet);
  `user_env()` gives a new user's.
  """
  return subprocess.run(
      [sys.executable, *args],
      capture_output=True,
      text=True,
      check=False,
      cwd=ROOT,
      env=env or dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'),
  )


# The variables runtime.setup() sets; a new user has none of them.
_RUNTIME_VARS = (
    'TF_CPP_MIN_LOG_LEVEL',
    'TF_ENABLE_ONEDNN_OPTS',
    'TF_ENABLED_DEVICE_TYPES',
)
# A line of TensorFlow's C++ logging ("I0000 00:00:1795661829.704459  657
# port.cc:153] oneDNN custom operations are on ..."), absl's notice that
# comes before such lines, or the second line of the CPU-feature note.
_CPP_LOG_LINE = re.compile(
    r'^[IWEF]\d{4} [\d:.]+ +\d+ [\w.]+\.cc:\d+\]|absl::InitializeLog'
    r'|rebuild TensorFlow with the appropriate compiler flags'
)


def user_env(**changes: str) -> Dict[str, str]:
  """os.environ as a new user has it: none of the variables runtime sets.

  For tests of what a command prints in the default environment (pytest's
  own process has run runtime.setup(), and run_tests.sh sets
  TF_CPP_MIN_LOG_LEVEL=3).
  """
  env = {k: v for k, v in os.environ.items() if k not in _RUNTIME_VARS}
  env.update(changes)
  return env


def tensorflow_noise(stderr: str) -> List[str]:
  """The lines of TensorFlow's C++ logging in `stderr`, to assert none."""
  return [line for line in stderr.splitlines() if _CPP_LOG_LINE.search(line)]


class TempDirMixin:
  """One temporary folder per test class, `cls.tmp`, removed at the end."""

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
    """<tmp>/<name>."""
    return os.path.join(cls.tmp, name)


def read_tree(folder: str) -> Dict[str, bytes]:
  """Relative path -> bytes of every file below `folder` (hidden ones too)."""
  files = {}
  for parent, _, names in os.walk(folder):
    for name in names:
      path = os.path.join(parent, name)
      with open(path, 'rb') as f:
        files[os.path.relpath(path, folder)] = f.read()
  return files


def write_video(
    path: str,
    frames: Iterable[np.ndarray],
    rate: int = 30,
    pts: Optional[Sequence[int]] = None,
    time_base: Optional[Fraction] = None,
    fmt: str = 'mkv',
    rotation: Optional[int] = None,
) -> str:
  """Encodes uint8 RGB frames with the codec of one of FORMATS.

  Args:
    path: The file; its folder is created if needed.
    frames: uint8 RGB [H, W, 3] frames.
    rate: The nominal frame rate.
    pts: Each frame's timestamp in `time_base` units; 0, 1, 2... if None.
    time_base: The timestamps' unit; 1/rate if None.
    fmt: A key of FORMATS: the container and its codec.
    rotation: A display rotation tag in degrees.

  Returns:
    `path`.
  """
  codec, pix_fmt, options, _ = FORMATS[fmt]
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  return synthetic_videos.write_video(
      path,
      frames,
      rate=rate,
      codec=codec,
      pix_fmt=pix_fmt,
      options=options,
      pts=pts,
      time_base=time_base,
      rotation=rotation,
  )


def moving_frames(
    count: int, height: int = 64, width: int = 80, seed: int = 0
) -> np.ndarray:
  """uint8 RGB frames of a smooth texture drifting right and down."""
  rng = np.random.default_rng(seed)
  margin = 2 * count + 8
  big = cv2.GaussianBlur(
      rng.random((height + margin, width + margin, 3), np.float32), (0, 0), 3.0
  )
  big = np.round(255 * (big - big.min()) / (big.max() - big.min()))
  big = big.astype(np.uint8)
  return np.stack(
      [
          big[t // 2 : t // 2 + height, 2 * t : 2 * t + width]
          for t in range(count)
      ]
  )


def write_moving_video(
    path: str, count: int, seed: int = 0, height: int = 64, width: int = 80
) -> str:
  """A lossless 25 fps mp4 of `moving_frames`; returns `path`."""
  return write_video(
      path, moving_frames(count, height, width, seed), rate=25, fmt='mp4'
  )


def write_checkpoints(
    root: str, names: Sequence[str] = ('rgb_imagenet', 'flow_imagenet')
) -> str:
  """Synthetic release checkpoints as <root>/<name>/model.ckpt; returns root.

  Each gets the release's exact variable names and shapes and its own seed.
  """
  for seed, name in enumerate(names, 1):
    checkpoints.write_synthetic(
        assets.checkpoint_prefix(root, name),
        checkpoints.RELEASE_CHECKPOINTS[name],
        seed,
    )
  return root


def make_release(root: str, frames: int = 10) -> str:
  """A release-shaped <root>/data folder with synthetic contents.

  checkpoints.write_synthetic_release with seed 1: all five checkpoints
  (seeds 1 to 5 in checkpoints.RELEASE_CHECKPOINTS order), both sample
  arrays ([1, frames, 224, 224, C] uniform in [-1, 1]), both label maps
  ('synthetic class <i>') and the random-weights marker.

  Returns:
    The data folder.
  """
  data = os.path.join(root, 'data')
  checkpoints.write_synthetic_release(data, frames=frames, seed=1)
  return data


def fake_iter_flow(
    frames: Iterable[np.ndarray],
    workers=None,
    chunk_size: int = 4,
    backend: str = 'numba',
) -> Iterator[np.ndarray]:
  """A cheap stand-in for recipe.iter_flow with its conventions.

  flow[t] depends on frames t and t + 1 (one frame of lookahead) and the last
  repeats the one before.
  """
  del workers, chunk_size, backend
  previous = last = None
  for frame in frames:
    gray = frame.mean(axis=-1, dtype=np.float32)
    if previous is not None:
      diff = gray - previous
      last = np.stack([diff * 0.3, -diff * 0.2], axis=-1)
      yield last
    previous = gray
  if previous is not None:
    yield (
        last
        if last is not None
        else np.zeros(previous.shape + (2,), np.float32)
    ).copy()


class FakeFlowMixin:
  """Replaces recipe.iter_flow by `fake_iter_flow` for a whole test class."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls._fake_flow = mock.patch.object(recipe, 'iter_flow', fake_iter_flow)
    cls._fake_flow.start()

  @classmethod
  def tearDownClass(cls):
    cls._fake_flow.stop()
    super().tearDownClass()


def parse_report(text: str):
  """A release-format report -> (norm of logits, [(prob, logit, label)])."""
  lines = text.split('\n')
  norm = float(re.fullmatch(r'Norm of logits: (\d+\.\d{6})', lines[0])[1])
  rows = []
  for line in lines[3:23]:
    prob, logit, label = line.split(' ', 2)
    rows.append((float(prob), float(logit), label))
  return norm, rows


def entry_cases(
    module: str,
    cases: Sequence[Sequence[str]],
    cwd: str = ROOT,
    as_new_user: bool = False,
) -> List[Dict[str, Any]]:
  """Each case's {'args', 'code', 'stdout', 'stderr'}, from one subprocess.

  Runs `run_entry_cases` (below) in a fresh process in `cwd`, with this
  folder on PYTHONPATH; fails if that process itself fails or shows a
  traceback.

  Args:
    module: The entry point's module name, e.g. 'compute_fvd'.
    cases: Argument lists, without the script name; run in order.
    cwd: The current folder of the runs.
    as_new_user: run in a new user's environment (`user_env`) and fail if
      TensorFlow's C++ start-up lines show.
  """
  path = os.environ.get('PYTHONPATH')
  pythonpath = ROOT + (os.pathsep + path if path else '')
  if as_new_user:
    env = user_env(PYTHONPATH=pythonpath)
  else:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', PYTHONPATH=pythonpath)
  done = subprocess.run(
      [
          sys.executable,
          '-c',
          'import testing; testing.run_entry_cases()',
          module,
          json.dumps(cases),
      ],
      capture_output=True,
      text=True,
      check=False,
      cwd=cwd,
      env=env,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  assert 'Traceback' not in done.stderr, done.stderr[-3000:]
  if as_new_user:
    assert not tensorflow_noise(done.stderr), done.stderr[-3000:]
  return json.loads(done.stdout)


def run_entry_cases() -> None:
  """Runs one entry point's main on many argument lists in one process.

  For the command-line tests: importing TensorFlow costs seconds, so a test
  runs `python -c 'import testing; testing.run_entry_cases()' MODULE JSON`
  once, where JSON is a list of argument lists (without the script name),
  and reads back, as JSON on stdout, each case's exit code, stdout and
  stderr, as the command (`cli.run`) would have printed them.
  """
  import contextlib  # pylint: disable=g-import-not-at-top
  import importlib  # pylint: disable=g-import-not-at-top
  import io  # pylint: disable=g-import-not-at-top

  from absl import flags  # pylint: disable=g-import-not-at-top

  import cli  # pylint: disable=g-import-not-at-top

  module_name, cases = sys.argv[1], json.loads(sys.argv[2])
  sys.argv = [f'{module_name}.py']
  module = importlib.import_module(module_name)
  results = []
  real_stdout = sys.stdout
  for args in cases:
    flags.FLAGS.unparse_flags()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
      try:
        rest = cli.parse_flags([f'{module_name}.py', *args])
        code = cli.wrap(module.main)(rest) or 0
      except SystemExit as e:
        code = e.code
      except BaseException as e:  # pylint: disable=broad-except
        import traceback  # pylint: disable=g-import-not-at-top

        traceback.print_exc()
        code = f'raised {type(e).__name__}'
    results.append(
        {
            'args': args,
            'code': code,
            'stdout': out.getvalue(),
            'stderr': err.getvalue(),
        }
    )
  real_stdout.write(json.dumps(results))
