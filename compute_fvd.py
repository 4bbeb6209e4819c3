r"""Computes the Fréchet Video Distance between two sets of videos.

  python compute_fvd.py --real=real.npy --generated=fake.npy
  python compute_fvd.py --real=videos/real/ --generated='fake/*.mp4' \
      --protocol=stylegan_v --json_out=out/fvd.json
  python compute_fvd.py --real=@real_list.txt --stats_out=out/real_stats.npz
  python compute_fvd.py --stats_in=out/real_stats.npz --generated=fake.npz

A set is a .npy or .npz array [N, T, H, W, 3] with values in 0..255 (any
dtype; a .npy is memory-mapped), or videos: a folder (searched recursively
for .avi .mkv .mov .mp4 .webm), a quoted glob, one file, or @LIST (a text
file of video paths, one per line). Videos are decoded with video.py at
--fps frames per second, at their own size.

--protocol=reference reproduces google-research's frechet_video_distance
(TF1 resize_bilinear to 224, 2x/255 - 1, rgb_scratch's time-averaged logits,
TF-GAN's distance with the unbiased covariance and a symmetric square root;
every frame of each video). --protocol=stylegan_v is StyleGAN-V's
fvd2048_16f (one 16-frame clip per video, the first 2048 long-enough videos,
shorter ones skipped, real clips at a seeded random offset, half-pixel
resize, biased covariance, scipy sqrtm). The README compares them.

--stats_out saves the real set's statistics (.npz: mean, covariance, count,
protocol); --stats_in reuses them instead of --real, and is refused if they
were made with other settings. Memory is set by --batch_size (and, with
whole videos, their length), not by the number of videos.

Prints the FVD; --json_out also writes it with the settings and counts.
Exit code: 0 on success, 1 on bad input, 2 on bad flags.
"""

from __future__ import annotations

import runtime  # pylint: disable=g-bad-import-order

runtime.setup()  # Before TensorFlow loads: its oneDNN kernels on.

import dataclasses
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

from absl import app
from absl import flags
import tqdm

import checkpoints
import cli
import fileio
import fvd
import inference
import video

_ROOT = os.path.dirname(os.path.abspath(__file__))

_REAL = flags.DEFINE_string(
    'real',
    None,
    'The real set: a .npy/.npz array [N,T,H,W,3] in 0..255, a folder, a '
    'quoted glob, a video file, or @LIST of video paths.',
)
_GENERATED = flags.DEFINE_string(
    'generated', None, 'The generated set, in the same forms as --real.'
)
_PROTOCOL = flags.DEFINE_enum(
    'protocol',
    'reference',
    list(fvd.PROTOCOLS),
    'reference: google-research frechet_video_distance; stylegan_v: '
    'StyleGAN-V fvd2048_16f (16-frame clips, 2048 per set).',
)
_NUM_CLIPS = flags.DEFINE_integer(
    'num_clips',
    None,
    'Clips per set (the first that qualify); 0 takes all. Default: the '
    "protocol's (all for reference, 2048 for stylegan_v).",
    lower_bound=0,
)
_CLIP_FRAMES = flags.DEFINE_integer(
    'clip_frames',
    None,
    'Frames per clip (at least 9); 0 takes every frame of each video. '
    "Default: the protocol's (0 for reference, 16 for stylegan_v).",
    lower_bound=0,
)
_SEED = flags.DEFINE_integer(
    'seed', fvd.DEFAULT_SEED, 'Seed of the random clip offsets.'
)
_BATCH_SIZE = flags.DEFINE_integer(
    'batch_size',
    fvd.DEFAULT_BATCH_SIZE,
    'Clips per forward pass; memory grows with it.',
    lower_bound=1,
)
_FPS = flags.DEFINE_float(
    'fps', video.FPS, 'Frame rate that video files are decoded at.'
)
_SQRT = flags.DEFINE_enum(
    'sqrt',
    None,
    list(fvd.SQRT_METHODS),
    "Matrix square-root route: symmetric (TF-GAN's) or sqrtm (scipy's "
    "sqrtm(S1 S2)). Default: the protocol's.",
)
_CHECKPOINT = flags.DEFINE_string(
    'checkpoint',
    os.path.join(_ROOT, fvd.DEFAULT_CHECKPOINT),
    'The rgb_scratch checkpoint prefix (400-class RGB I3D).',
)
_STATS_IN = flags.DEFINE_string(
    'stats_in',
    None,
    'Statistics of the real set saved by --stats_out; replaces --real.',
)
_STATS_OUT = flags.DEFINE_string(
    'stats_out', None, "Save the real set's statistics to this .npz."
)
_JSON_OUT = flags.DEFINE_string(
    'json_out', None, 'Also write the result as JSON to this file.'
)
_PROGRESS = flags.DEFINE_boolean(
    'progress', True, 'Show a progress bar over the clips on stderr.'
)


def _usage(message: str) -> app.UsageError:
  return app.UsageError(message, exitcode=cli.USAGE_EXIT)


def _failure(message: str) -> cli.Failure:
  return cli.Failure(' '.join(message.split()))


def _set_stats(
    spec: str, role: str, protocol: fvd.Protocol, embedder: fvd.Embedder
) -> fvd.SetStats:
  videos = fvd.open_set(spec)
  skipped: List[str] = []
  bar = tqdm.tqdm(
      total=fvd.expected_clips(videos, protocol),
      unit='clip',
      desc=role,
      file=sys.stderr,
      disable=not _PROGRESS.value,
  )
  with bar:
    clips = fvd.iter_clips(
        videos,
        protocol,
        role,
        fps=_FPS.value,
        on_skip=lambda name, why: skipped.append(name),
    )
    stats = fvd.compute_stats(
        clips, embedder, protocol, _BATCH_SIZE.value, progress=bar.update
    )
  stats.skipped = len(skipped)
  if skipped:
    print(
        f'{role}: skipped {len(skipped)} videos too short for a '
        f'{protocol.clip_frames}-frame clip.',
        file=sys.stderr,
    )
  return stats


def _describe(stats: fvd.SetStats, source: str) -> Dict[str, Any]:
  return {'source': source, 'clips': stats.count, 'skipped': stats.skipped}


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise _usage(
        f'unexpected arguments {argv[1:]}; pass the sets as '
        '--real=... and --generated=...'
    )
  if bool(_REAL.value) == bool(_STATS_IN.value):
    raise _usage(
        'give exactly one of --real and --stats_in; --real names '
        'videos, --stats_in statistics saved by --stats_out'
    )
  if not _GENERATED.value and not _STATS_OUT.value:
    raise _usage(
        '--generated is required (or --stats_out to only save the '
        "real set's statistics)"
    )
  if _STATS_OUT.value and not _REAL.value:
    raise _usage('--stats_out saves the statistics of --real; pass --real')
  try:
    nonzero = lambda v: v or None  # 0 means "all", set below.
    protocol = fvd.get_protocol(
        _PROTOCOL.value,
        num_clips=nonzero(_NUM_CLIPS.value),
        clip_frames=nonzero(_CLIP_FRAMES.value),
        seed=_SEED.value,
        sqrt=_SQRT.value,
    )
    if _NUM_CLIPS.value == 0:
      protocol = dataclasses.replace(protocol, num_clips=None)
    if _CLIP_FRAMES.value == 0:
      protocol = dataclasses.replace(protocol, clip_frames=None)
    real = (
        fvd.load_stats(_STATS_IN.value, protocol) if _STATS_IN.value else None
    )
    inference.configure_threads()
    embedder = fvd.load_embedder(_CHECKPOINT.value, protocol.resize)
    start = time.perf_counter()
    if real is None:
      real = _set_stats(_REAL.value, 'real', protocol, embedder)
      if _STATS_OUT.value:
        fvd.save_stats(_STATS_OUT.value, real)
        print(
            f"Saved the real set's statistics ({real.count} clips) to "
            f'{_STATS_OUT.value}'
        )
    generated: Optional[fvd.SetStats] = None
    if _GENERATED.value:
      generated = _set_stats(_GENERATED.value, 'generated', protocol, embedder)
    seconds = time.perf_counter() - start
    if generated is None:
      return 0
    distance = fvd.fvd_from_stats(real, generated, protocol.sqrt)
  except (fvd.FVDError, video.VideoError, checkpoints.CheckpointError) as e:
    raise _failure(str(e).rstrip('.') + '.') from None
  except OSError as e:
    raise _failure(f'{e}; check the path and its permissions.') from None

  print(
      f'FVD ({protocol.name}): {distance:.4f}  '
      f'({real.count} real clips, {generated.count} generated clips)'
  )
  if _JSON_OUT.value:
    result = {
        'fvd': distance,
        'protocol': {**protocol.settings(), 'sqrt': protocol.sqrt},
        'real': _describe(real, _STATS_IN.value or _REAL.value),
        'generated': _describe(generated, _GENERATED.value),
        'checkpoint': _CHECKPOINT.value,
        'batch_size': _BATCH_SIZE.value,
        'seconds': round(seconds, 3),
    }
    try:
      fileio.write_json(_JSON_OUT.value, result)
    except OSError as e:
      raise _failure(
          f'cannot write {_JSON_OUT.value!r}: {e}; check the '
          'folder exists and is writable.'
      ) from None
  return 0


if __name__ == '__main__':
  cli.run(main)
