"""Labelled video datasets: split readers for UCF-101, HMDB-51, Kinetics and more.

Every reader returns a `Dataset`: a list of `Example`s (video path, integer
label, optional start/end seconds) and the ordered class names, where
`examples[i].label` indexes `class_names`. `load(kind, root, split, ...)`
picks the reader by name:

  'ucf101'   <root>/<Class>/v_X_gGG_cCC.avi, split files in
             <root>/ucfTrainTestlist/ (or `splits_dir`): classInd.txt
             "<1-based index> <Class>", trainlistNN.txt
             "Class/v_X_gGG_cCC.avi <1-based label>", testlistNN.txt
             "Class/v_X_gGG_cCC.avi" (the class comes from the folder).
  'hmdb51'   <root>/<class>/<video>.avi, split files
             <class>_test_split{1,2,3}.txt in <root>/testTrainMulti_7030_splits/
             (or `splits_dir`), lines "<video>.avi <n>": 1 train, 2 test,
             0 unused. Classes are the split files' class names, sorted.
  'csv'      a CSV of path,label[,start,end] (header optional), paths relative
             to `root`; labels are class names (label_type='name') or 0-based
             indices into `class_names` (label_type='index').
  'folder'   <root>/<split>/<class>/<video> (or <root>/<class>/<video> with
             split=None); classes are the subfolder names, sorted.
  'kinetics' the official annotation CSV (label,youtube_id,time_start,
             time_end,split[,is_cc]) and downloaded videos; see
             `read_kinetics` for the file naming.

Bad data raises a `DatasetError` that names the file and line: unknown
classes, malformed lines, missing videos (or `missing='skip'` logs and drops
them, e.g. for Kinetics videos gone from YouTube), empty splits.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from absl import logging

import report

# The kinds `load` accepts.
KINDS = ('ucf101', 'hmdb51', 'csv', 'folder', 'kinetics')
SPLITS = ('train', 'test')
FOLDS = (1, 2, 3)
LABEL_TYPES = ('name', 'index')
MISSING = ('error', 'skip')

# File extensions the 'folder' reader takes as videos.
VIDEO_EXTENSIONS = ('.avi', '.mkv', '.mov', '.mp4', '.webm')

# The Kinetics clip naming used by the common downloaders (e.g. ActivityNet's
# download.py): <youtube_id>_<start:06d>_<end:06d>.mp4, whole seconds.
KINETICS_CLIP_NAME = '{youtube_id}_{start:06d}_{end:06d}.mp4'
# Full (untrimmed) YouTube videos, clipped at read time.
KINETICS_FULL_NAME = '{youtube_id}.mp4'

UCF101_SPLITS_DIR = 'ucfTrainTestlist'
HMDB51_SPLITS_DIR = 'testTrainMulti_7030_splits'
_HMDB51_CODES = {'train': '1', 'test': '2'}

ClassNames = Union[None, str, Sequence[str]]


class DatasetError(ValueError):
  """A split file, annotation or video of a dataset is missing or malformed."""


@dataclasses.dataclass(frozen=True)
class Example:
  """One labelled video.

  Attributes:
    path: The video file.
    label: Index into the dataset's class names.
    start: Clip start in seconds, or None for the start of the file.
    end: Clip end in seconds, or None for its end.
    source: Where it was listed, 'file:line', for error messages.
  """

  path: str
  label: int
  start: Optional[float] = None
  end: Optional[float] = None
  source: str = ''


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Examples and the ordered class names their labels index."""

  examples: List[Example]
  class_names: List[str]

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def __len__(self) -> int:
    return len(self.examples)


def _check_choice(name: str, value, valid: Sequence) -> None:
  if value not in valid:
    raise ValueError(f'`{name}` must be one of {tuple(valid)}; got {value!r}.')


def _lines(path: str) -> List[Tuple[int, str]]:
  """(1-based line number, stripped text) of the non-blank lines of a file."""
  if not os.path.isfile(path):
    raise DatasetError(f'Split file {path!r} does not exist.')
  with open(path, encoding='utf-8-sig') as f:
    return [(n, line.strip()) for n, line in enumerate(f, 1) if line.strip()]


def _class_names(class_names: ClassNames) -> Optional[List[str]]:
  """A list of names, a label-map file (one per line) or None."""
  if class_names is None:
    return None
  if isinstance(class_names, (str, os.PathLike)):
    try:
      return report.load_labels(os.fspath(class_names))
    except report.LabelError as e:
      raise DatasetError(str(e)) from e
  names = [str(n) for n in class_names]
  if len(set(names)) != len(names):
    raise DatasetError('`class_names` has duplicate names.')
  return names


def _finish(
    examples: List[Example], class_names: List[str], what: str, missing: str
) -> Dataset:
  """Checks the files exist (or drops missing ones) and the split is not empty."""
  _check_choice('missing', missing, MISSING)
  present = []
  absent = []
  for example in examples:
    (present if os.path.isfile(example.path) else absent).append(example)
  if absent:
    if missing == 'error':
      first = absent[0]
      raise DatasetError(
          f'{first.source}: video {first.path!r} does not exist ({len(absent)} '
          f'of {len(examples)} listed videos are missing). Put the videos '
          f'where the split lists them, or skip missing ones '
          f"(missing='skip')."
      )
    logging.warning(
        '%s: %d of %d listed videos are missing and skipped, ' 'e.g. %s (%s).',
        what,
        len(absent),
        len(examples),
        absent[0].path,
        absent[0].source,
    )
  if not present:
    raise DatasetError(
        f'{what}: the split is empty: no video listed there '
        f'exists{" (all were missing)" if absent else ""}.'
    )
  return Dataset(present, list(class_names))


# --------------------------------------------------------------------------
# UCF-101.


def _official_splits(
    root: str, split: str, fold: int, splits_dir: Optional[str], default: str
) -> str:
  """Checks split and fold; the folder of the split files."""
  _check_choice('split', split, SPLITS)
  _check_choice('fold', fold, FOLDS)
  if splits_dir is not None:
    return splits_dir
  splits_dir = os.path.join(root, default)
  return splits_dir if os.path.isdir(splits_dir) else root


def read_ucf101(
    root: str,
    split: str,
    fold: int = 1,
    splits_dir: Optional[str] = None,
    missing: str = 'error',
) -> Dataset:
  """UCF-101 train or test list of one fold.

  Args:
    root: Folder holding <Class>/v_X_gGG_cCC.avi.
    split: 'train' or 'test'.
    fold: 1, 2 or 3 (trainlist0N.txt / testlist0N.txt).
    splits_dir: Folder of classInd.txt and the lists; default
      <root>/ucfTrainTestlist, else `root`.
    missing: 'error' or 'skip' for listed videos that are not there.

  Returns:
    The Dataset, classes in classInd.txt order (label = index - 1).

  Raises:
    DatasetError: naming the file and line of a malformed or inconsistent
      entry, a missing video, or an empty split.
  """
  splits_dir = _official_splits(
      root, split, fold, splits_dir, UCF101_SPLITS_DIR
  )
  class_file = os.path.join(splits_dir, 'classInd.txt')
  names: List[str] = []
  for n, line in _lines(class_file):
    parts = line.split()
    if len(parts) != 2 or not parts[0].isdigit():
      raise DatasetError(
          f'{class_file}:{n}: expected "<index> <Class>"; got ' f'{line!r}.'
      )
    if int(parts[0]) != len(names) + 1:
      raise DatasetError(
          f'{class_file}:{n}: class indices must run 1, 2, 3, ... in order; '
          f'expected {len(names) + 1}, got {parts[0]}.'
      )
    names.append(parts[1])
  index = {name: i for i, name in enumerate(names)}
  list_file = os.path.join(splits_dir, f'{split}list{fold:02d}.txt')
  examples = []
  for n, line in _lines(list_file):
    where = f'{list_file}:{n}'
    parts = line.split()
    if len(parts) not in (1, 2) or (split == 'test') != (len(parts) == 1):
      want = (
          '"Class/video.avi <label>"'
          if split == 'train'
          else '"Class/video.avi"'
      )
      raise DatasetError(f'{where}: expected {want}; got {line!r}.')
    relative = parts[0]
    folder = relative.split('/')[0] if '/' in relative else None
    if folder not in index:
      raise DatasetError(
          f'{where}: unknown class {folder!r} (the folder of {relative!r}); '
          f'{class_file} lists {len(names)} classes.'
      )
    label = index[folder]
    if len(parts) == 2:
      if not parts[1].isdigit() or not 1 <= int(parts[1]) <= len(names):
        raise DatasetError(
            f'{where}: label {parts[1]!r} is not a class index '
            f'1..{len(names)} of {class_file}.'
        )
      if int(parts[1]) - 1 != label:
        raise DatasetError(
            f'{where}: label {parts[1]} is {names[int(parts[1]) - 1]!r} but '
            f'the video is in folder {folder!r}.'
        )
    examples.append(Example(os.path.join(root, relative), label, source=where))
  return _finish(examples, names, list_file, missing)


# --------------------------------------------------------------------------
# HMDB-51.


def read_hmdb51(
    root: str,
    split: str,
    fold: int = 1,
    splits_dir: Optional[str] = None,
    missing: str = 'error',
) -> Dataset:
  """HMDB-51 train or test videos of one fold.

  Args:
    root: Folder holding <class>/<video>.avi.
    split: 'train' (code 1) or 'test' (code 2); code 0 is unused.
    fold: 1, 2 or 3 (<class>_test_split<fold>.txt).
    splits_dir: Folder of the split files; default
      <root>/testTrainMulti_7030_splits, else `root`.
    missing: 'error' or 'skip' for listed videos that are not there.

  Returns:
    The Dataset, classes sorted by name.

  Raises:
    DatasetError: as read_ucf101.
  """
  splits_dir = _official_splits(
      root, split, fold, splits_dir, HMDB51_SPLITS_DIR
  )
  suffix = f'_test_split{fold}.txt'
  files = sorted(glob.glob(os.path.join(glob.escape(splits_dir), '*' + suffix)))
  if not files:
    raise DatasetError(f'No HMDB-51 split files *{suffix} in {splits_dir!r}.')
  names = [os.path.basename(f)[: -len(suffix)] for f in files]
  examples = []
  for label, (name, path) in enumerate(zip(names, files)):
    for n, line in _lines(path):
      parts = line.rsplit(maxsplit=1)
      if len(parts) != 2 or parts[1] not in ('0', '1', '2'):
        raise DatasetError(
            f'{path}:{n}: expected "<video>.avi <0|1|2>"; got ' f'{line!r}.'
        )
      if parts[1] == _HMDB51_CODES[split]:
        examples.append(
            Example(
                os.path.join(root, name, parts[0]), label, source=f'{path}:{n}'
            )
        )
  return _finish(
      examples, names, os.path.join(splits_dir, '*' + suffix), missing
  )


# --------------------------------------------------------------------------
# Generic CSV.


def _float_or_none(
    value: Optional[str], where: str, column: str
) -> Optional[float]:
  if value is None or not value.strip():
    return None
  try:
    return float(value)
  except ValueError:
    raise DatasetError(
        f'{where}: {column} {value!r} is not a number of ' 'seconds.'
    ) from None


def _label_lookup(
    class_names: Optional[List[str]], label_type: str, path: str
) -> Callable[[str, str], int]:
  """A function (label text, where) -> index, for a fixed class list."""
  if label_type == 'index':
    if class_names is None:
      raise DatasetError(
          f'{path}: labels are indices, so the class names '
          'must be given (`class_names`).'
      )

    def by_index(text: str, where: str) -> int:
      if not text.strip().isdigit() or int(text) >= len(class_names):
        raise DatasetError(
            f'{where}: label {text!r} is not a class index '
            f'0..{len(class_names) - 1}.'
        )
      return int(text)

    return by_index
  index = {n: i for i, n in enumerate(class_names)}

  def by_name(text: str, where: str) -> int:
    if text not in index:
      raise DatasetError(
          f'{where}: unknown class {text!r}; the {len(index)} '
          'known classes come from `class_names`.'
      )
    return index[text]

  return by_name


def _csv_rows(
    path: str, required: Sequence[str]
) -> List[Tuple[str, Dict[str, str]]]:
  """(file:line, row) of a CSV; the header is optional when its first column
  is not one of `required`, in which case the columns are `required` in order.
  """
  if not os.path.isfile(path):
    raise DatasetError(f'CSV file {path!r} does not exist.')
  with open(path, newline='', encoding='utf-8-sig') as f:
    rows = list(csv.reader(f))
  numbered = [
      (n, r) for n, r in enumerate(rows, 1) if r and any(c.strip() for c in r)
  ]
  if not numbered:
    raise DatasetError(f'{path}: the split is empty: the file has no rows.')
  first = [c.strip() for c in numbered[0][1]]
  if required[0] in first:
    header, numbered = first, numbered[1:]
  else:
    header = list(required)
  missing = [c for c in required if c not in header]
  if missing:
    raise DatasetError(
        f'{path}:{numbered[0][0] - 1 if numbered else 1}: '
        f'header lacks column(s) {missing}; got {header}.'
    )
  out = []
  for n, row in numbered:
    if len(row) < len(header):
      row = row + [''] * (len(header) - len(row))
    if len(row) > len(header):
      raise DatasetError(
          f'{path}:{n}: {len(row)} fields but the header has '
          f'{len(header)}: {row}.'
      )
    out.append((f'{path}:{n}', dict(zip(header, (c.strip() for c in row)))))
  return out


def read_csv(
    root: str,
    split: str,
    class_names: ClassNames = None,
    label_type: str = 'name',
    missing: str = 'error',
) -> Dataset:
  """A CSV of path,label[,start,end] rows.

  The header row is optional; without one the columns are path,label. Video
  paths are relative to `root` (absolute ones are kept).

  Args:
    root: Folder the paths are relative to.
    split: The CSV file: a path (absolute or relative to `root`), or a name
      such that <root>/<split>.csv exists.
    class_names: The ordered class names: a list or a label-map file (one
      name per line). Required with label_type='index'; with 'name', None
      takes the sorted set of names in this CSV (give the list to make train
      and test agree when a split lacks a class).
    label_type: 'name' (labels are class names) or 'index' (0-based indices
      into `class_names`).
    missing: 'error' or 'skip' for listed videos that are not there.

  Returns:
    The Dataset.

  Raises:
    DatasetError: naming the file and line of a bad row, an unknown class, a
      missing video or an empty split.
  """
  _check_choice('label_type', label_type, LABEL_TYPES)
  path = split if os.path.isabs(split) else os.path.join(root, split)
  if not os.path.isfile(path) and os.path.isfile(path + '.csv'):
    path += '.csv'
  rows = _csv_rows(path, ('path', 'label'))
  names = _class_names(class_names)
  if names is None:
    names = sorted({row['label'] for _, row in rows if row['label']})
  lookup = _label_lookup(names, label_type, path)
  examples = []
  for where, row in rows:
    if not row['path'] or not row['label']:
      raise DatasetError(
          f'{where}: expected "path,label"; got an empty ' 'field.'
      )
    examples.append(
        Example(
            os.path.join(root, row['path']),
            lookup(row['label'], where),
            _float_or_none(row.get('start'), where, 'start'),
            _float_or_none(row.get('end'), where, 'end'),
            where,
        )
    )
  return _finish(examples, names, path, missing)


# --------------------------------------------------------------------------
# A folder of class subfolders.


def read_folder(
    root: str, split: Optional[str] = None, class_names: ClassNames = None
) -> Dataset:
  """Videos in class subfolders: <root>[/<split>]/<class>/<video>.

  Args:
    root: The dataset folder.
    split: A subfolder of `root` (e.g. 'train', 'val'), or None for `root`.
    class_names: The ordered classes (list or label-map file); default the
      sorted subfolder names. Give it to make splits agree.

  Returns:
    The Dataset; videos (by VIDEO_EXTENSIONS, searched recursively within
    each class folder) in sorted order.

  Raises:
    DatasetError: for a missing folder, a subfolder that is not a known
      class, or no videos.
  """
  folder = os.path.join(root, split) if split else root
  if not os.path.isdir(folder):
    raise DatasetError(f'Dataset folder {folder!r} does not exist.')
  subfolders = sorted(
      d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d))
  )
  names = _class_names(class_names) or subfolders
  index = {n: i for i, n in enumerate(names)}
  examples = []
  for sub in subfolders:
    if sub not in index:
      raise DatasetError(
          f'{os.path.join(folder, sub)}: unknown class {sub!r}; '
          f'the {len(names)} classes come from `class_names`.'
      )
    for directory, _, files in sorted(os.walk(os.path.join(folder, sub))):
      for name in sorted(files):
        if name.lower().endswith(VIDEO_EXTENSIONS):
          path = os.path.join(directory, name)
          examples.append(Example(path, index[sub], source=path))
  if not examples:
    raise DatasetError(
        f'{folder}: the split is empty: no {"/".join(VIDEO_EXTENSIONS)} '
        'files in its class subfolders.'
    )
  return Dataset(examples, names)


# --------------------------------------------------------------------------
# Kinetics.


def read_kinetics(
    root: str,
    split: str,
    class_names: ClassNames = None,
    clipped: bool = True,
    videos_dir: Optional[str] = None,
    missing: str = 'error',
) -> Dataset:
  """Kinetics-style annotations: label,youtube_id,time_start,time_end,split.

  The CSV is `split` itself (a path, absolute or relative to `root`) or
  <root>/<split>.csv, e.g. the official `validate.csv`. Videos are looked up
  under `videos_dir` (default <root>/<split name>, else `root`) as
  <label>/<file> first, then <file>, where <file> is

    clipped=True:  KINETICS_CLIP_NAME, <youtube_id>_<start:06d>_<end:06d>.mp4
                   (already trimmed to the annotated 10 s; start/end None);
    clipped=False: KINETICS_FULL_NAME, <youtube_id>.mp4 (the whole YouTube
                   video), with Example.start/end = time_start/time_end, so
                   the recipe clips it when decoding.

  Args:
    root: Dataset folder.
    split: The annotation CSV, or its name without '.csv'.
    class_names: Ordered classes (list or label map, e.g.
      data/label_map.txt); default the sorted labels of this CSV.
    clipped: See above.
    videos_dir: Where the videos are.
    missing: 'error' or 'skip' (Kinetics videos disappear from YouTube;
      'skip' logs how many are missing).

  Returns:
    The Dataset.

  Raises:
    DatasetError: naming the file and line of a bad row, a row without a
      label (the official test CSV has none), an unknown class, a missing
      video or an empty split.
  """
  path = split if os.path.isabs(split) else os.path.join(root, split)
  if not os.path.isfile(path) and os.path.isfile(path + '.csv'):
    path += '.csv'
  rows = _csv_rows(path, ('label', 'youtube_id', 'time_start', 'time_end'))
  names = _class_names(class_names)
  if names is None:
    names = sorted({row['label'] for _, row in rows if row['label']})
  lookup = _label_lookup(names, 'name', path)
  if videos_dir is None:
    stem = os.path.splitext(os.path.basename(path))[0]
    videos_dir = os.path.join(root, stem)
    if not os.path.isdir(videos_dir):
      videos_dir = root
  examples = []
  for where, row in rows:
    if not row['label']:
      raise DatasetError(
          f'{where}: the row has no label; a labelled split '
          'is needed (the official test CSV has no labels).'
      )
    label = lookup(row['label'], where)
    start = _float_or_none(row['time_start'], where, 'time_start')
    end = _float_or_none(row['time_end'], where, 'time_end')
    if start is None or end is None or not 0 <= start < end:
      raise DatasetError(
          f'{where}: time_start {row["time_start"]!r} and '
          f'time_end {row["time_end"]!r} must be seconds with '
          '0 <= start < end.'
      )
    if clipped:
      name = KINETICS_CLIP_NAME.format(
          youtube_id=row['youtube_id'], start=int(start), end=int(end)
      )
    else:
      name = KINETICS_FULL_NAME.format(youtube_id=row['youtube_id'])
    video = os.path.join(videos_dir, row['label'], name)
    if not os.path.isfile(video):
      flat = os.path.join(videos_dir, name)
      video = flat if os.path.isfile(flat) else video
    examples.append(
        Example(
            video,
            label,
            None if clipped else start,
            None if clipped else end,
            where,
        )
    )
  return _finish(examples, names, path, missing)


# --------------------------------------------------------------------------
# Dispatch.

_READERS = {
    'ucf101': read_ucf101,
    'hmdb51': read_hmdb51,
    'csv': read_csv,
    'folder': read_folder,
    'kinetics': read_kinetics,
}


def load(
    kind: str, root: str, split: Optional[str] = None, **options
) -> Dataset:
  """Reads one split of a dataset with the reader for `kind`.

  Args:
    kind: One of KINDS.
    root: The dataset folder.
    split: See the reader: 'train'/'test' (ucf101, hmdb51), a CSV file
      (csv, kinetics), a subfolder or None (folder).
    **options: Passed to the reader (read_ucf101, read_hmdb51, read_csv,
      read_folder, read_kinetics), e.g. fold=2, class_names=..., clipped=False.

  Returns:
    The Dataset.

  Raises:
    ValueError: for an unknown `kind` or option, or a bad option value.
    DatasetError: for bad data (see the readers).
  """
  _check_choice('kind', kind, KINDS)
  if split is None and kind != 'folder':
    raise ValueError(f'`split` is required for kind {kind!r}.')
  reader = _READERS[kind]
  try:
    return reader(root, split, **options)
  except TypeError as e:
    if 'unexpected keyword' not in str(e):
      raise
    raise ValueError(f'Unknown option for kind {kind!r}: {e}') from None
