r"""extract_features.py as an Apache Beam pipeline: same flags, same outputs.

  python extract_features_beam.py --inputs=clips/ --output_dir=out/features

takes every flag of extract_features.py (--inputs, --output_dir, --streams,
--endpoint, --window, --stride, --batch_size, --imagenet_pretrained,
--checkpoint_dir, --flow_workers) and writes the same
files; anything it does not know (--runner=..., --project=...) goes to
Beam's PipelineOptions. Without --runner it uses the DirectRunner in
multi-processing mode with --num_workers processes (default: one per core).
Failed videos are listed in --failures (`path<TAB>reason` lines). Exit code:
0 if every video is done, 1 if any failed (or checkpoints are missing), 2 for
bad flags. Needs apache-beam: `pip install -r requirements-beam.txt` (or
`bash setup_beam_env.sh`, which makes .venv-beam). Remote runners: see the
README, "Feature extraction on Apache Beam".
"""

from __future__ import annotations

import runtime  # pylint: disable=g-bad-import-order

runtime.setup()  # Before TensorFlow loads: its oneDNN kernels on.

import os
import sys
from typing import Sequence

from absl import app
from absl import flags

import assets
import cli
import extract_features  # noqa: F401  (defines the flags used here)
import features

_ROOT = os.path.dirname(os.path.abspath(__file__))
FLAGS = flags.FLAGS

_FAILURES = flags.DEFINE_string(
    'failures',
    None,
    'File listing the failed videos, one `path<TAB>reason` line each (empty '
    'if none failed); default <output_dir>/failures.txt.',
)
_NUM_WORKERS = flags.DEFINE_integer(
    'num_workers',
    None,
    'DirectRunner worker processes; default: one per core. Each gets '
    'cores / num_workers TensorFlow threads. Ignored by other runners.',
    lower_bound=1,
)

_INSTALL = (
    'install it with `pip install -r requirements-beam.txt` (it needs '
    'older protobuf and pillow than requirements.txt, so `bash '
    'setup_beam_env.sh` makes a separate .venv-beam), then run '
    '`.venv-beam/bin/python extract_features_beam.py ...`'
)


def _usage(message: str) -> app.UsageError:
  return app.UsageError(message, exitcode=cli.USAGE_EXIT)


def main(argv: Sequence[str]) -> int:
  beam_args = list(argv[1:])
  stray = [a for a in beam_args if not a.startswith('-')]
  if stray:
    raise _usage(
        f'Unexpected positional arguments {stray}. Pass the videos as '
        "--inputs=FOLDER, --inputs='GLOB' or --inputs=@LIST."
    )
  for name in ('inputs', 'output_dir'):
    if not FLAGS[name].value:
      raise _usage(f'--{name} is required.')
  try:
    import apache_beam as beam  # pylint: disable=g-import-not-at-top
    from apache_beam.options import pipeline_options  # pylint: disable=g-import-not-at-top

    import beam_features  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise cli.Failure(
        f'apache-beam is not installed ({e}); {_INSTALL}.'
    ) from None

  try:
    features.check_window(FLAGS.window, FLAGS.stride, FLAGS.endpoint)
    videos = beam_features.find_videos(FLAGS.inputs)
  except ValueError as e:
    raise cli.usage_error(e, ('window', 'stride', 'inputs')) from e

  prefixes = assets.resolve(
      FLAGS.streams, FLAGS.imagenet_pretrained, FLAGS.checkpoint_dir
  ).prefixes
  if not beam_features.is_remote(FLAGS.checkpoint_dir):
    missing = assets.missing_message(assets.restore_files(prefixes))
    if missing:
      raise cli.Failure(
          f'{missing}\nPass another folder with --checkpoint_dir.'
      )

  if not any(
      a.startswith('--default_sdk_harness_log_level') for a in beam_args
  ):
    beam_args.append('--default_sdk_harness_log_level=WARNING')
  options = pipeline_options.PipelineOptions(beam_args)
  runner = options.view_as(pipeline_options.StandardOptions).runner
  num_threads = None
  if runner in (None, 'DirectRunner'):
    cores = len(os.sched_getaffinity(0))
    workers = _NUM_WORKERS.value or cores
    direct = options.view_as(pipeline_options.DirectOptions)
    direct.direct_running_mode = 'multi_processing'
    direct.direct_num_workers = workers
    num_threads = max(1, cores // workers)
    # The worker processes import this folder's modules.
    path = os.environ.get('PYTHONPATH')
    os.environ['PYTHONPATH'] = _ROOT + (os.pathsep + path if path else '')
  settings = beam_features.Settings(
      checkpoint_prefixes=prefixes,
      endpoint=FLAGS.endpoint,
      window=FLAGS.window,
      stride=FLAGS.stride,
      batch_size=FLAGS.batch_size,
      flow_workers=FLAGS.flow_workers,
      num_threads=num_threads,
  )
  output_dir = FLAGS.output_dir
  failures_path = _FAILURES.value or (
      output_dir.rstrip('/') + '/' + beam_features.FAILURES_FILE
  )
  print(
      f'extract_features_beam: {len(videos)} videos on '
      f'{runner or "DirectRunner"}; one line per video on stderr.',
      file=sys.stderr,
  )
  with beam.Pipeline(options=options) as pipeline:
    beam_features.build(pipeline, videos, settings, output_dir, failures_path)
  counts = beam_features.counters(pipeline.result)
  failed = beam_features.read_failures(failures_path)
  print(
      f'{len(videos)} videos: {counts["videos_done"]} extracted, '
      f'{counts["videos_skipped"]} already done, {len(failed)} failed; '
      f'{counts["frames"]} frames. Outputs in {output_dir}'
  )
  if failed:
    print(f'Failed (listed in {failures_path}):')
    for path, reason in failed:
      print(f'  {path}: {reason}')
    return 1
  return 0


if __name__ == '__main__':
  cli.run(main, known_only=True)
