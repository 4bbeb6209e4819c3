r"""The bfloat16 opt-in against float32: speed and logits error, in one run.

Builds two fast-path Predictors of one checkpoint, float32 (the default) and
bfloat16 (`inference.make_predictor(..., precision='bfloat16')`), and on one
clip:

  * times them in turn, `--rounds` rounds of `--iters` calls each after a
    warm-up, alternating which goes first, so both see the same load;
  * compares the logits: max and mean absolute difference, and whether the
    top-1 class and the top-5 classes (in order) agree.

The clip is `--video` (a float32 .npy of [1, T, 224, 224, 3] in [-1, 1], e.g.
the release's cricket sample, see the README's "Real-weight figures"), or a
random one of `--frames` frames. Run it alone on the machine:

  python benchmark_bf16.py \
      --checkpoint=data/checkpoints/rgb_scratch/model.ckpt \
      --video=/tmp/cricket_rgb.npy --json_out=benchmarks/benchmark_bf16.json
"""

from __future__ import annotations

import runtime  # pylint: disable=g-bad-import-order

runtime.setup()  # Before TensorFlow loads: its oneDNN kernels on.

import os
import statistics
import time
from typing import Sequence

from absl import flags
import numpy as np

import checkpoints
import cli
import fileio
import inference
import timing

_ROOT = os.path.dirname(os.path.abspath(__file__))

_CHECKPOINT = flags.DEFINE_string(
    'checkpoint',
    os.path.join(_ROOT, 'data', 'checkpoints', 'rgb_scratch', 'model.ckpt'),
    'An RGB checkpoint prefix in the release format.',
)
_VIDEO = flags.DEFINE_string(
    'video',
    None,
    'A float32 .npy clip [1, T, 224, 224, 3] in [-1, 1]; a random clip of '
    '--frames frames when unset.',
)
_FRAMES = flags.DEFINE_integer(
    'frames', 79, 'Frames of the random clip.', lower_bound=9
)
_ROUNDS = flags.DEFINE_integer(
    'rounds', 2, 'Rounds of timing, alternating the order.', lower_bound=1
)
_ITERS = flags.DEFINE_integer(
    'iters', 3, 'Timed calls per precision and round.', lower_bound=1
)
_JSON_OUT = flags.DEFINE_string(
    'json_out', None, 'Also write the results to this JSON file.'
)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise cli.Failure(f'unexpected arguments {argv[1:]}; pass flags only')
  if _VIDEO.value:
    try:
      video = np.load(_VIDEO.value).astype(np.float32)
    except (OSError, ValueError) as e:
      raise cli.Failure(
          f'--video {_VIDEO.value!r} is not a readable .npy ({e}); pass a '
          'float32 [1, T, 224, 224, 3] array'
      ) from e
  else:
    video = (
        np.random.default_rng(0)
        .uniform(-1, 1, [1, _FRAMES.value, 224, 224, 3])
        .astype(np.float32)
    )
  threads = inference.configure_threads()
  try:
    model = checkpoints.load_model(_CHECKPOINT.value)
  except checkpoints.CheckpointError as e:
    raise cli.Failure(f'{e}; pass an RGB checkpoint with --checkpoint') from e
  predictors = {
      p: inference.make_predictor(model, precision=p)
      for p in inference.PRECISIONS
  }
  try:
    logits = {p: predictors[p].logits(video)[0] for p in predictors}
  except ValueError as e:
    raise cli.Failure(f'{e}; pass a clip that fits the model') from e
  cpu = runtime.cpu_info()
  print(
      f'CPU: {cpu["model"]}, {cpu["cores"]} cores; '
      f'{", ".join(cpu["isa"])}. oneDNN: {runtime.onednn_active()}. '
      f'Threads {threads}. Clip {video.shape}.'
  )
  loads = [os.getloadavg()]
  times = {p: [] for p in predictors}
  for r in range(_ROUNDS.value):
    order = list(predictors) if r % 2 == 0 else list(predictors)[::-1]
    for p in order:
      times[p] += timing.time_calls(
          lambda p=p: predictors[p].logits(video), 1, _ITERS.value
      )
    loads.append(os.getloadavg())
  ref, low = logits['float32'], logits['bfloat16']
  diff = np.abs(low.astype(np.float64) - ref)
  top5 = {p: np.argsort(-logits[p])[:5].tolist() for p in logits}
  medians = {p: statistics.median(t) for p, t in times.items()}
  result = {
      'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
      'cpu': cpu,
      'checkpoint': _CHECKPOINT.value,
      'video': _VIDEO.value or f'random, {_FRAMES.value} frames',
      'frames': int(video.shape[1]),
      'times_s': times,
      'median_s': medians,
      'bf16_speedup': medians['float32'] / medians['bfloat16'],
      'max_abs_diff': float(diff.max()),
      'mean_abs_diff': float(diff.mean()),
      'max_abs_logit_float32': float(np.abs(ref).max()),
      'top5': top5,
      'top1_agree': top5['float32'][0] == top5['bfloat16'][0],
      'top5_agree': top5['float32'] == top5['bfloat16'],
      'loads': loads,
  }
  for p in predictors:
    print(
        f'{p:9s} median {medians[p]:.3f} s ({1 / medians[p]:.3f} clips/s) '
        f'over {len(times[p])} calls; top-5 {top5[p]}'
    )
  print(
      f'bfloat16 is {result["bf16_speedup"]:.2f}x float32. Logits: max abs '
      f'diff {result["max_abs_diff"]:.4g}, mean {result["mean_abs_diff"]:.4g}'
      f' (largest |logit| {result["max_abs_logit_float32"]:.3g}); top-1 '
      f'{"agrees" if result["top1_agree"] else "differs"}, top-5 '
      f'{"agree" if result["top5_agree"] else "differ"}.'
  )
  print(
      'Load average: '
      + ' -> '.join(f'{x[0]:.2f}' for x in loads)
      + ' (1 min, before and after each round).'
  )
  if _JSON_OUT.value:
    fileio.write_json(_JSON_OUT.value, result)
    print(f'Wrote {_JSON_OUT.value}')


if __name__ == '__main__':
  cli.run(main)
