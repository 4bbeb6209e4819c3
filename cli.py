"""What every entry point does the same way: errors, usage errors, Ctrl-C.

Each command prints bad input as one line, `<command>: error: <what was
wrong>; <what to do>`, with no traceback and a non-zero exit code:

  * a bad flag or a usage error (`app.UsageError`): the message and a
    one-line hint to `--helpshort`, exit code 2 for a bad flag and the
    error's `exitcode` otherwise (absl would print the whole `--help`
    first);
  * `Failure(message)` raised from `main`: the message, exit code 1;
  * Ctrl-C (SIGINT): `<command>: interrupted; rerun to resume`, exit code 130
    (the outputs are written atomically, so nothing partial is left).

Usage, in a verb-named script:

  def main(argv):
    ...
    raise cli.Failure(f'{path!r} is not a video; pass a video file')

  if __name__ == '__main__':
    cli.run(main)
"""

from __future__ import annotations

import dataclasses
import functools
import multiprocessing
import os
import sys
from typing import Callable, List, Optional, Sequence

from absl import app
from absl import flags

import assets

USAGE_EXIT = 2
INTERRUPT_EXIT = 130


class Failure(Exception):
  """Bad input found by an entry point; printed as one error line."""


def command_name() -> str:
  """The running script's name without '.py', e.g. 'evaluate_sample'."""
  return os.path.splitext(os.path.basename(sys.argv[0]))[0] or 'python'


def error(message: object, command: Optional[str] = None) -> None:
  """Prints `<command>: error: <message>` on stderr."""
  print(f'{command or command_name()}: error: {message}', file=sys.stderr)


def _usage_exit(message: object, exitcode: int = USAGE_EXIT) -> None:
  command = command_name()
  text = ' '.join(str(message).split()).rstrip('.')
  error(f'{text}; run `python {command}.py --helpshort` for the flags', command)
  sys.exit(exitcode)


def parse_flags(argv: List[str], known_only: bool = False) -> List[str]:
  """absl's flags_parser: a bad flag is one error line and exit code 2.

  Args:
    argv: The command line, the script's name first.
    known_only: Return the flags this program does not define with the
      positional arguments (for a command that passes them on, e.g. to
      Beam's PipelineOptions) instead of refusing them.

  Returns:
    The script's name and the arguments left over.
  """
  try:
    return flags.FLAGS(argv, known_only=known_only)
  except flags.Error as e:
    _usage_exit(e)
    raise  # Not reached.


def usage_error(error: Exception, names: Sequence[str]) -> app.UsageError:
  """A library's error about its arguments, as a usage error naming flags.

  Library errors name an argument in backticks, alone (`window`) or before
  its value (`inputs` 'x'); for a command whose flags have those names, the
  message says --window and --inputs='x' instead.

  Args:
    error: The library's error.
    names: The arguments that are flags of the same name.
  """
  text = str(error)
  for name in names:
    text = text.replace(f"`{name}` '", f"--{name}='")
    text = text.replace(f'`{name}`', f'--{name}')
  return app.UsageError(text, exitcode=USAGE_EXIT)


def wrap(
    main: Callable[[Sequence[str]], Optional[int]],
) -> Callable[[Sequence[str]], Optional[int]]:
  """`main` with usage errors, Failures and Ctrl-C turned into one line."""

  def wrapped(argv: Sequence[str]) -> Optional[int]:
    try:
      return main(argv)
    except app.UsageError as e:
      _usage_exit(e, e.exitcode)
    except Failure as e:
      error(e)
      sys.exit(1)
    except KeyboardInterrupt:
      _interrupted()
    return None

  return wrapped


def _interrupted() -> None:
  # Worker processes (TV-L1) would finish their current task before the
  # interpreter could exit; their results are not wanted any more.
  for child in multiprocessing.active_children():
    child.terminate()
  print(f'{command_name()}: interrupted; rerun to resume', file=sys.stderr)
  sys.exit(INTERRUPT_EXIT)


def run(
    main: Callable[[Sequence[str]], Optional[int]], known_only: bool = False
) -> None:
  """app.run(main) with one-line usage errors, failures and interrupts.

  Args:
    main: The command's main(argv).
    known_only: Pass unknown flags on to `main` in argv (see parse_flags).
  """
  parser = functools.partial(parse_flags, known_only=known_only)
  try:
    app.run(wrap(main), flags_parser=parser)
  except KeyboardInterrupt:  # During start-up or absl's own handling.
    _interrupted()


def synthetic_marker(*paths: Optional[str]) -> Optional[str]:
  """The assets.SYNTHETIC_MARKER file in or above any of `paths`, or None.

  Looks in each path's folder and up to two folders above it, so a
  checkpoint prefix `data/synthetic/checkpoints/rgb_imagenet/model.ckpt`, a
  checkpoint folder and a sample file under `data/synthetic/` all find
  `data/synthetic/NOT_THE_RELEASE.txt`.
  """
  for path in paths:
    if not path:
      continue
    folder = os.path.abspath(path)
    if not os.path.isdir(folder):
      folder = os.path.dirname(folder)
    for _ in range(4):
      marker = os.path.join(folder, assets.SYNTHETIC_MARKER)
      if os.path.isfile(marker):
        return marker
      folder = os.path.dirname(folder)
  return None


def warn_if_synthetic(*paths: Optional[str]) -> bool:
  """Prints a loud banner on stderr when any input is marked synthetic."""
  marker = synthetic_marker(*paths)
  if marker is None:
    return False
  line = '!' * 72
  print(
      f'{line}\n!! RANDOM WEIGHTS: these inputs come from {os.path.dirname(marker)}'
      f'\n!! (see {os.path.basename(marker)}), written by `python '
      'fetch_assets.py --synthetic`.\n!! They are NOT the release: every '
      f'class and number below is meaningless.\n{line}',
      file=sys.stderr,
  )
  return True


# Flags this module defines for a command belong to that command: its
# --helpshort lists them.
flags.disclaim_key_flags()


@dataclasses.dataclass(frozen=True)
class FlowFlags:
  """The flags of every command that preprocesses video for the flow stream."""

  workers: flags.FlagHolder
  backend: flags.FlagHolder
  recipe: flags.FlagHolder


def define_flow_flags() -> FlowFlags:
  """Defines --flow_workers, --flow_backend and --recipe, one way everywhere."""
  import recipe  # pylint: disable=g-import-not-at-top  # Only these commands.

  def usable(backend: str) -> bool:
    # At parsing, before any work: e.g. 'cuda' needs a GPU.
    try:
      recipe.check_backend(backend)
    except ValueError as e:
      raise flags.ValidationError(str(e)) from None
    return True

  holders = FlowFlags(
      workers=flags.DEFINE_integer(
          'flow_workers',
          None,
          'TV-L1 workers: threads (numba) or processes (opencv); default: '
          'all cores.',
          lower_bound=1,
      ),
      backend=flags.DEFINE_enum(
          'flow_backend',
          recipe.DEFAULT_FLOW_BACKEND,
          recipe.FLOW_BACKENDS,
          'TV-L1 implementation, the same flow: numba (tvl1.py, threads), '
          'opencv (OpenCV DualTVL1, processes) or cuda (tvl1_cuda.py, an '
          'NVIDIA GPU).',
      ),
      recipe=flags.DEFINE_enum(
          'recipe', recipe.DEFAULT_RECIPE, recipe.RECIPES, recipe.RECIPE_HELP
      ),
  )
  flags.register_validator('flow_backend', usable)
  return holders
