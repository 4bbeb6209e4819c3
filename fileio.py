"""Atomic writes of files and folders, written once for the whole project.

Every output is written under a hidden temporary name beside its
destination and renamed into place only when complete, so a reader (or a
resumed run) never sees a half-written file, and a failure leaves nothing
behind but, at worst, a hidden `.*.tmp` entry. Files and folders get the
permissions a plain `open` or `os.makedirs` would give (0666 or 0777 less
the umask), not the private 0600/0700 of `tempfile.mkstemp`/`mkdtemp`.

Usage:

  fileio.write_bytes('out/report.txt', text.encode())
  fileio.write_with('out/clip.gif', lambda f: image.save(f, format='GIF'))
  fileio.write_npy('out/clip_rgb.npy', array)
  fileio.write_json('out/clip.json', {'frames': 79})
  with fileio.temp_path('out/chart.png') as tmp:  # For writers that take paths.
    figure.savefig(tmp)
  with fileio.atomic_folder('export/1') as tmp:   # A folder, renamed at once.
    tf.saved_model.save(module, tmp)
  with fileio.atomic_files('ckpt', last='model.ckpt.index') as tmp:
    write_checkpoint(os.path.join(tmp, 'model.ckpt'))  # Several files, index last.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from typing import BinaryIO, Callable, Iterator, Union

import numpy as np

PathLike = Union[str, os.PathLike]

TEMP_SUFFIX = '.tmp'


class OutputError(OSError):
  """An output path cannot be written (checked before any work starts)."""


def check_writable(path: PathLike, folder: bool = False) -> str:
  """Checks, before any work, that `path` can be written; writes nothing.

  The nearest existing folder on the way to `path` must be a folder in
  which a file can be created: a hidden probe file is created there and
  removed at once (permission bits alone say nothing for root or for
  read-only and virtual file systems such as /proc).

  Args:
    path: The file (or, with `folder`, the folder) to be written; it and its
      parents may not exist yet.
    folder: Whether `path` is a folder (an existing file there is an error)
      or a file (an existing folder there is an error).

  Returns:
    The absolute path.

  Raises:
    OutputError: naming the path and why it cannot be written.
  """
  path = os.path.abspath(os.fspath(path))
  kind = 'folder' if folder else 'file'
  if os.path.exists(path):
    if folder and not os.path.isdir(path):
      raise OutputError(f'{path!r} is a file, not a folder')
    if not folder and os.path.isdir(path):
      raise OutputError(f'{path!r} is a folder, not a file')
  where = path if folder and os.path.isdir(path) else os.path.dirname(path)
  while not os.path.exists(where):
    where = os.path.dirname(where)
  if not os.path.isdir(where):
    raise OutputError(
        f'cannot create the {kind} {path!r}: {where!r} is a file, not a folder'
    )
  probe = _temp_name(os.path.join(where, 'write_probe'))
  try:
    os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
  except OSError as e:
    raise OutputError(
        f'cannot write the {kind} {path!r}: cannot create files in {where!r} '
        f'({e.strerror})'
    ) from None
  os.remove(probe)
  return path


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def _temp_name(path: str) -> str:
  head, tail = os.path.split(os.path.abspath(path))
  return os.path.join(head, f'.{tail}.{secrets.token_hex(4)}{TEMP_SUFFIX}')


def _remove(path: str) -> None:
  if os.path.isdir(path) and not os.path.islink(path):
    shutil.rmtree(path, ignore_errors=True)
  else:
    with contextlib.suppress(FileNotFoundError):
      os.remove(path)


@contextlib.contextmanager
def temp_path(path: PathLike) -> Iterator[str]:
  """A fresh temporary path beside `path`, renamed to `path` on success.

  For writers that take a file name rather than a stream. Nothing exists at
  the temporary path when the block starts; the block must create a file
  there. On an exception the temporary file is removed and `path` is left as
  it was. The destination's folder is created if needed.

  Args:
    path: The destination.

  Yields:
    The temporary path.
  """
  path = os.fspath(path)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  temp = _temp_name(path)
  try:
    yield temp
    os.chmod(temp, 0o666 & ~_umask())
    os.replace(temp, path)
  finally:
    _remove(temp)


def write_with(path: PathLike, write: Callable[[BinaryIO], object]) -> None:
  """Writes `path` through `write(stream)`, atomically, synced to disk.

  Args:
    path: The destination; its folder is created if needed.
    write: Called once with a binary stream open for writing.
  """
  path = os.fspath(path)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  while True:
    temp = _temp_name(path)
    try:
      fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
      break
    except FileExistsError:
      continue
  try:
    with os.fdopen(fd, 'wb') as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(temp, path)
  finally:
    _remove(temp)


def write_bytes(path: PathLike, data: bytes) -> None:
  """Writes `data` to `path` atomically."""
  write_with(path, lambda f: f.write(data))


def write_npy(path: PathLike, array: np.ndarray) -> None:
  """np.save to exactly `path` (no '.npy' added), atomically."""
  array = np.asarray(array)
  write_with(path, lambda f: np.save(f, array, allow_pickle=False))


def write_json(path: PathLike, value: object) -> None:
  """Writes `value` as indented JSON with a final newline, atomically."""
  write_bytes(path, (json.dumps(value, indent=2) + '\n').encode('utf-8'))


@contextlib.contextmanager
def atomic_folder(path: PathLike, overwrite: bool = False) -> Iterator[str]:
  """A temporary folder beside `path`, renamed to `path` when complete.

  Args:
    path: The folder to create.
    overwrite: Replace an existing `path` (the old folder is moved aside
      and removed only after the new one is in place).

  Yields:
    The temporary folder (empty, with the normal 0777 & ~umask mode).

  Raises:
    FileExistsError: if `path` exists and `overwrite` is False (checked
      before and after the block).
  """
  path = os.path.abspath(os.fspath(path))
  if os.path.exists(path) and not overwrite:
    raise FileExistsError(f'{path} already exists.')
  os.makedirs(os.path.dirname(path), exist_ok=True)
  temp = _temp_name(path)
  os.mkdir(temp, 0o777)  # The umask applies, as for os.makedirs.
  try:
    yield temp
    if os.path.exists(path):
      if not overwrite:
        raise FileExistsError(f'{path} already exists.')
      old = _temp_name(path)
      os.replace(path, old)
      os.replace(temp, path)
      _remove(old)
    else:
      os.replace(temp, path)
  finally:
    if os.path.exists(temp):
      _remove(temp)


@contextlib.contextmanager
def atomic_files(folder: PathLike, last: str) -> Iterator[str]:
  """A temporary folder whose files are renamed into `folder` on success.

  For a set of files that is only whole when all are there, such as a
  checkpoint's data and index: the block writes them into the temporary
  folder, and each file in it is then renamed to the same name in `folder`,
  `last` after all the others, so a reader that looks for `last` never sees
  a partial set. On an exception nothing is renamed and the temporary
  folder is removed.

  Args:
    folder: The destination folder; created if needed.
    last: The name of the file renamed last; the block must write it.

  Yields:
    The temporary folder, inside `folder`.

  Raises:
    FileNotFoundError: if the block did not write `last`.
  """
  folder = os.path.abspath(os.fspath(folder))
  os.makedirs(folder, exist_ok=True)
  temp = _temp_name(os.path.join(folder, last))
  os.mkdir(temp, 0o777)
  try:
    yield temp
    names = sorted(os.listdir(temp))
    if last not in names:
      raise FileNotFoundError(
          f'`last` {last!r} was not written; got {names} in the temporary '
          'folder.'
      )
    for name in sorted(names, key=lambda n: n == last):
      os.replace(os.path.join(temp, name), os.path.join(folder, name))
  finally:
    _remove(temp)
