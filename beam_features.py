"""features.py's extraction as an Apache Beam pipeline, for many machines.

The pipeline (`build`):

  video paths -> Reshuffle -> ExtractDoFn (per video) -+-> names done
                                                       +-> 'failed' side
                                                           output -> one
                                                           failures file

`ExtractDoFn.setup()` restores the models once per worker; `process()` runs
one video through `features.Extractor.run`, the single-machine code itself:
the same recipe, windows, network, outputs, atomic writes (.npy files, then
the JSON) and the same test of what is finished. A rerun, or a bundle that
Beam retries, therefore skips finished videos and never leaves a file that
looks finished but is not. Videos that fail go to the 'failed' output,
written as `path<TAB>reason` lines to the failures file (empty when none
failed).

Paths with a scheme (gs://, s3://, ...) go through Beam's FileSystems: a
remote video is copied to a local temporary file, a remote video's outputs
are computed in a local staging folder (holding copies of any earlier
outputs, so finished ones are still skipped) and uploaded each to a
temporary name and renamed, .npy files first, JSON last. Remote checkpoints
are copied to a local folder of the same checkpoint names once per worker.

Counters (namespace `i3d`): videos_done, videos_skipped, videos_failed,
frames (frames decoded for the videos done).

apache-beam is optional: see requirements-beam.txt.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter

import features
import fileio
import inference

FAILED = 'failed'
COUNTER_NAMESPACE = 'i3d'
COUNTERS = ('videos_done', 'videos_skipped', 'videos_failed', 'frames')
FAILURES_FILE = 'failures.txt'

_COPY_CHUNK = 16 << 20


@dataclasses.dataclass(frozen=True)
class Settings:
  """What every worker needs to build its Extractor.

  Attributes:
    checkpoint_prefixes: stream -> checkpoint prefix (local or remote).
    endpoint: Feature endpoint, one of i3d.VALID_ENDPOINTS.
    window: Frames per window.
    stride: Frames between window starts.
    batch_size: Windows per forward pass.
    flow_workers: Processes for TV-L1 per worker; None = all cores.
    num_threads: TensorFlow intra-op threads per worker; None = all cores.
  """

  checkpoint_prefixes: Mapping[str, str]
  endpoint: str = features.DEFAULT_ENDPOINT
  window: int = features.DEFAULT_WINDOW
  stride: int = features.DEFAULT_STRIDE
  batch_size: int = features.DEFAULT_BATCH_SIZE
  flow_workers: Optional[int] = None
  num_threads: Optional[int] = None


def is_remote(path: str) -> bool:
  """Whether `path` has a scheme (gs://, s3://, ...) other than a local one."""
  return FileSystems.get_scheme(path) not in (None, 'file')


# --------------------------------------------------------------------------
# Files through Beam's FileSystems.


def _copy_down(source: str, destination: str) -> None:
  """Copies `source` (any FileSystems path) to a local file, atomically."""

  def write(f):
    with FileSystems.open(source, compression_type='uncompressed') as src:
      shutil.copyfileobj(src, f, _COPY_CHUNK)

  fileio.write_with(destination, write)


def _upload(source: str, destination: str) -> None:
  """Copies a local file to a remote temporary name, renamed into place."""
  folder, base = destination.rsplit('/', 1)
  temp = f'{folder}/.{base}.{secrets.token_hex(4)}{fileio.TEMP_SUFFIX}'
  with open(source, 'rb') as src, FileSystems.create(temp) as f:
    shutil.copyfileobj(src, f, _COPY_CHUNK)
  FileSystems.rename([temp], [destination])


def _join(folder: str, *parts: str) -> str:
  return (
      FileSystems.join(folder, *parts)
      if is_remote(folder)
      else (os.path.join(folder, *parts))
  )


def find_videos(inputs: str) -> List[features.VideoInput]:
  """features.find_videos, and for remote inputs a folder or a glob.

  Args:
    inputs: What features.find_videos takes; or a remote folder (ending in
      '/', searched recursively for features.VIDEO_EXTENSIONS) or glob.

  Returns:
    VideoInput per video; remote names are paths relative to the folder (or
    the glob's fixed part), without the extension.

  Raises:
    features.InputError: if nothing matches.
  """
  if not is_remote(inputs):
    return features.find_videos(inputs)
  folder_given = inputs.endswith('/')
  pattern = inputs + '**' if folder_given else inputs
  matched = FileSystems.match([pattern])[0].metadata_list
  paths = sorted(m.path for m in matched)
  if folder_given:
    paths = [
        p
        for p in paths
        if os.path.splitext(p)[1].lower() in features.VIDEO_EXTENSIONS
    ]
  if not paths:
    raise features.InputError(
        f'{inputs!r} matches no video; pass a folder ending in "/" or a glob.'
    )
  root = inputs if folder_given else os.path.commonprefix(paths)
  root = root[: root.rfind('/') + 1]
  relative = [p[len(root) :] for p in paths]
  stems = [os.path.splitext(r)[0] for r in relative]
  return [
      features.VideoInput(p, s if stems.count(s) == 1 else r)
      for p, r, s in zip(paths, relative, stems)
  ]


def stage_checkpoints(
    prefixes: Mapping[str, str], folder: str
) -> Dict[str, str]:
  """Local copies of remote checkpoints; local prefixes are kept as they are.

  A remote <dir>/<name>/model.ckpt becomes <folder>/<name>/model.ckpt (the
  folder name is the checkpoint name that the JSON records and resuming
  compares).

  Returns:
    stream -> a local prefix.
  """
  local = {}
  for stream, prefix in prefixes.items():
    if not is_remote(prefix):
      local[stream] = prefix
      continue
    name = prefix.rstrip('/').split('/')[-2]
    target = os.path.join(folder, name, os.path.basename(prefix))
    for match in FileSystems.match([prefix + '.*'])[0].metadata_list:
      suffix = match.path[len(prefix) :]
      if not os.path.exists(target + suffix):
        _copy_down(match.path, target + suffix)
    local[stream] = target
  return local


# --------------------------------------------------------------------------
# The pipeline.


class ExtractDoFn(beam.DoFn):
  """One video -> its feature files; the Extractor is built once per worker.

  Outputs the video's name when it was extracted, nothing when it was
  already finished, and (path, reason) to the FAILED output when it failed.
  """

  def __init__(self, settings: Settings, output_dir: str):
    super().__init__()
    self._settings = settings
    self._output_dir = output_dir
    self._counters = {
        name: Metrics.counter(COUNTER_NAMESPACE, name) for name in COUNTERS
    }
    self._extractor: Optional[features.Extractor] = None
    self._scratch: Optional[str] = None

  def setup(self) -> None:
    s = self._settings
    inference.configure_threads(s.num_threads)
    self._scratch = tempfile.mkdtemp(prefix='i3d_beam_')
    prefixes = stage_checkpoints(
        s.checkpoint_prefixes, os.path.join(self._scratch, 'checkpoints')
    )
    head = s.endpoint in inference.HEAD_ENDPOINTS
    predictors = inference.load_predictors(
        prefixes,
        final_endpoint='Logits' if head else s.endpoint,
    )
    self._extractor = features.Extractor(
        predictors,
        prefixes,  # Local: the JSON records them (name = folder name).
        endpoint=s.endpoint,
        window=s.window,
        stride=s.stride,
        batch_size=s.batch_size,
        flow_workers=s.flow_workers,
    )

  def teardown(self) -> None:
    if self._scratch:
      shutil.rmtree(self._scratch, ignore_errors=True)

  def process(self, item: features.VideoInput) -> Iterator:
    started = time.monotonic()
    if is_remote(self._output_dir) or is_remote(item.path):
      summary, frames = self._run_staged(item)
    else:
      summary, frames = self._run(item, self._output_dir)
    if summary.skipped:
      status = 'skipped'
    elif summary.extracted:
      status = 'done'
      self._counters['frames'].inc(frames)
      yield item.name
    else:
      status = 'failed'
      (reason,) = [message for _, message in summary.failed]
      yield beam.pvalue.TaggedOutput(FAILED, (item.path, reason))
    self._counters[f'videos_{status}'].inc()
    # One line per video: the DirectRunner's progress.
    print(
        f'i3d-beam: {status} {item.name} ({frames} frames, '
        f'{time.monotonic() - started:.1f} s)',
        file=sys.stderr,
        flush=True,
    )

  def _run(
      self, item: features.VideoInput, output_dir: str
  ) -> Tuple[features.Summary, int]:
    summary = self._extractor.run(
        [item], output_dir, progress=False, log=_quiet
    )
    frames = 0
    if summary.extracted:
      json_path, _ = features.output_paths(
          output_dir, item.name, self._extractor.streams
      )
      with open(json_path, encoding='utf-8') as f:
        frames = int(json.load(f)['num_frames'])
    return summary, frames

  def _run_staged(
      self, item: features.VideoInput
  ) -> Tuple[features.Summary, int]:
    """_run in a local folder, with remote inputs and outputs copied."""
    streams = self._extractor.streams
    remote_out = is_remote(self._output_dir)
    with tempfile.TemporaryDirectory(dir=self._scratch) as staging:
      out = os.path.join(staging, 'out') if remote_out else self._output_dir
      local_json, local_npys = features.output_paths(out, item.name, streams)
      remote_json, remote_npys = features.output_paths('', item.name, streams)
      pairs = [
          (local_npys[s], _join(self._output_dir, remote_npys[s]))
          for s in streams
      ] + [(local_json, _join(self._output_dir, remote_json))]
      if remote_out:
        for local, remote in pairs:
          if FileSystems.exists(remote):
            _copy_down(remote, local)
      local_item = item
      if is_remote(item.path):
        local_path = os.path.join(staging, os.path.basename(item.path))
        try:
          _copy_down(item.path, local_path)
        except Exception as e:  # pylint: disable=broad-except
          summary = features.Summary()
          summary.failed.append((item, features.describe_error(e)))
          return summary, 0
        local_item = features.VideoInput(local_path, item.name)
      summary, frames = self._run(local_item, out)
      if summary.extracted:
        summary.extracted = [item]
        with open(local_json, encoding='utf-8') as f:
          record = json.load(f)
        record['source'] = item.path
        fileio.write_json(local_json, record)
        if remote_out:
          for local, remote in pairs:  # JSON last.
            if os.path.exists(local):
              _upload(local, remote)
      return summary, frames


def _quiet(line: str) -> None:
  del line  # Failures are reported through the FAILED output.


def write_failures(failures: Sequence[Tuple[str, str]], path: str) -> None:
  """Writes `path<TAB>reason` lines, sorted, to `path` (atomically)."""
  text = ''.join(
      f'{p}\t{" ".join(r.split())}\n' for p, r in sorted(failures)
  ).encode('utf-8')
  if is_remote(path):
    with tempfile.TemporaryDirectory() as folder:
      local = os.path.join(folder, 'failures')
      fileio.write_bytes(local, text)
      _upload(local, path)
  else:
    fileio.write_bytes(path, text)


def read_failures(path: str) -> List[Tuple[str, str]]:
  """The (path, reason) pairs of a failures file."""
  with FileSystems.open(path, compression_type='uncompressed') as f:
    lines = f.read().decode('utf-8').splitlines()
  return [tuple(line.split('\t', 1)) for line in lines if line]


def build(
    pipeline: beam.Pipeline,
    videos: Sequence[features.VideoInput],
    settings: Settings,
    output_dir: str,
    failures_path: str,
) -> beam.pvalue.PCollection:
  """Adds the extraction to `pipeline`.

  Args:
    pipeline: The pipeline.
    videos: From `find_videos`.
    settings: The Extractor's settings.
    output_dir: Root of the outputs (features.py's layout), local or remote.
    failures_path: Where the failures file goes.

  Returns:
    The names of the videos extracted in this run.
  """
  results = (
      pipeline
      | 'Videos' >> beam.Create(list(videos))
      | 'Reshuffle' >> beam.Reshuffle()
      | 'Extract'
      >> beam.ParDo(ExtractDoFn(settings, output_dir)).with_outputs(
          FAILED, main='done'
      )
  )
  _ = (
      results[FAILED]
      | 'CollectFailures' >> beam.combiners.ToList()
      | 'WriteFailures' >> beam.Map(write_failures, failures_path)
  )
  return results['done']


def counters(result: beam.runners.runner.PipelineResult) -> Dict[str, int]:
  """The pipeline's counters (committed where the runner has them)."""
  found = dict.fromkeys(COUNTERS, 0)
  query = result.metrics().query(
      MetricsFilter().with_namespace(COUNTER_NAMESPACE)
  )
  for counter in query['counters']:
    name = counter.key.metric.name
    value = counter.committed
    if value is None:
      value = counter.attempted
    found[name] = found.get(name, 0) + int(value or 0)
  return found
