"""Tests of fileio.py: atomic files and folders with normal permissions."""

import json
import os
import stat
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

import fileio
import testing


def _mode(path: str) -> int:
  return stat.S_IMODE(os.stat(path).st_mode)


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


class FileTest(testing.TempDirMixin, parameterized.TestCase):

  def folder(self, name: str) -> str:
    path = self.path(name)
    os.makedirs(path)
    return path

  def test_write_npy_writes_exactly_the_path(self):
    folder = self.folder('npy')
    path = os.path.join(folder, 'sample_rgb')  # np.save would add '.npy'.
    array = np.linspace(-1, 1, 24, dtype=np.float32).reshape(1, 2, 2, 2, 3)
    fileio.write_npy(path, array)
    np.testing.assert_array_equal(np.load(path), array)
    self.assertEqual(os.listdir(folder), ['sample_rgb'])

  def test_failure_keeps_the_old_file(self):
    folder = self.folder('keep')
    path = os.path.join(folder, 'keep.npy')
    fileio.write_npy(path, np.zeros(3))
    with mock.patch.object(np, 'save', side_effect=OSError('disk full')):
      with self.assertRaisesRegex(OSError, 'disk full'):
        fileio.write_npy(path, np.ones(3))
    np.testing.assert_array_equal(np.load(path), np.zeros(3))
    self.assertEqual(os.listdir(folder), ['keep.npy'])

  @parameterized.parameters(0o022, 0o002, 0o077)
  def test_files_get_the_umask_mode_not_0600(self, umask):
    folder = self.folder(f'mode_{umask:o}')
    old = os.umask(umask)
    try:
      fileio.write_bytes(os.path.join(folder, 'a.txt'), b'a')
      with fileio.temp_path(os.path.join(folder, 'b.png')) as temp:
        with open(temp, 'wb') as f:
          f.write(b'b')
    finally:
      os.umask(old)
    for name in ('a.txt', 'b.png'):
      self.assertEqual(_mode(os.path.join(folder, name)), 0o666 & ~umask)

  def test_json_with_a_new_folder(self):
    path = self.path('deep/er/out.json')
    fileio.write_json(path, {'frames': 79, 'streams': ['rgb']})
    with open(path) as f:
      text = f.read()
    self.assertTrue(text.endswith('}\n'))
    self.assertEqual(json.loads(text), {'frames': 79, 'streams': ['rgb']})

  def test_temp_path_failure_leaves_nothing(self):
    folder = self.folder('temp_fail')
    with self.assertRaisesRegex(ValueError, 'no chart'):
      with fileio.temp_path(os.path.join(folder, 'c.png')) as temp:
        with open(temp, 'wb') as f:
          f.write(b'partial')
        raise ValueError('no chart')
    self.assertEqual(os.listdir(folder), [])


class FolderTest(testing.TempDirMixin, parameterized.TestCase):

  def test_folder_appears_whole_with_the_umask_mode(self):
    out = self.path('export/1')
    with fileio.atomic_folder(out) as temp:
      self.assertFalse(os.path.exists(out))
      with open(os.path.join(temp, 'saved_model.pb'), 'wb') as f:
        f.write(b'x')
    self.assertEqual(os.listdir(out), ['saved_model.pb'])
    self.assertEqual(os.listdir(self.path('export')), ['1'])
    self.assertEqual(_mode(out), 0o777 & ~_umask())

  def test_existing_folder_needs_overwrite(self):
    out = self.path('exists')
    os.makedirs(out)
    with self.assertRaisesRegex(FileExistsError, 'already exists'):
      with fileio.atomic_folder(out):
        pass

  def test_overwrite_replaces_and_failure_keeps_the_old(self):
    out = self.path('replace')
    os.makedirs(out)
    with open(os.path.join(out, 'old.txt'), 'w') as f:
      f.write('old')
    with self.assertRaisesRegex(RuntimeError, 'export failed'):
      with fileio.atomic_folder(out, overwrite=True) as temp:
        open(os.path.join(temp, 'new.txt'), 'w').close()
        raise RuntimeError('export failed')
    self.assertEqual(os.listdir(out), ['old.txt'])
    with fileio.atomic_folder(out, overwrite=True) as temp:
      open(os.path.join(temp, 'new.txt'), 'w').close()
    self.assertEqual(os.listdir(out), ['new.txt'])
    self.assertEqual([f for f in os.listdir(self.tmp) if f.startswith('.')], [])

  def test_atomic_files_renames_last_after_the_others(self):
    out = self.path('ckpt')
    renamed = []
    real_replace = os.replace

    def replace(src, dst):
      renamed.append(os.path.basename(dst))
      real_replace(src, dst)

    with mock.patch.object(os, 'replace', replace):
      with fileio.atomic_files(out, last='m.index') as temp:
        for name in ('m.index', 'm.data-0', 'z.data-1'):
          with open(os.path.join(temp, name), 'w') as f:
            f.write(name)
    self.assertEqual(renamed, ['m.data-0', 'z.data-1', 'm.index'])
    self.assertEqual(
        sorted(os.listdir(out)), ['m.data-0', 'm.index', 'z.data-1']
    )
    with open(os.path.join(out, 'z.data-1')) as f:
      self.assertEqual(f.read(), 'z.data-1')

  def test_atomic_files_failure_renames_nothing(self):
    out = self.path('failed')
    with self.assertRaisesRegex(RuntimeError, 'write failed'):
      with fileio.atomic_files(out, last='m.index') as temp:
        open(os.path.join(temp, 'm.data-0'), 'w').close()
        raise RuntimeError('write failed')
    self.assertEqual(os.listdir(out), [])

  def test_atomic_files_without_last(self):
    out = self.path('nolast')
    with self.assertRaisesRegex(FileNotFoundError, r"`last` 'm.index'.*m.data"):
      with fileio.atomic_files(out, last='m.index') as temp:
        open(os.path.join(temp, 'm.data-0'), 'w').close()
    self.assertEqual(os.listdir(out), [])


if __name__ == '__main__':
  absltest.main()
