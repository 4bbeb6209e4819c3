"""The release's TF1 checkpoint names <-> the Sonnet 2 module's variables.

The release holds five checkpoints in two layouts:

  * 'rgb' and 'flow': names under `RGB/inception_i3d/` or `Flow/inception_i3d/`
    (the variable scope evaluate_sample.py used), BatchNorm tensors shaped [C].
    rgb_imagenet, rgb_scratch, flow_imagenet and flow_scratch.
  * 'kinetics600': unprefixed names, BatchNorm tensors shaped [1,1,1,1,C], and
    a `/Momentum` optimizer slot beside each trainable tensor, which inference
    ignores. rgb_scratch_kin600, 600 classes.

Every Unit3D at release path P (e.g. 'Mixed_3b/Branch_1/Conv3d_0b_3x3') owns:

  P/conv_3d/w                  [kt, kh, kw, in, out]
  P/conv_3d/b                  [out]              (Logits/Conv3d_0c_1x1 only)
  P/batch_norm/beta            [out]  or [1,1,1,1,out]   (offset; no scale)
  P/batch_norm/moving_mean     [out]  or [1,1,1,1,out]
  P/batch_norm/moving_variance [out]  or [1,1,1,1,out]

Restoring is strict: every expected tensor must be present with its exact
shape, and nothing else may be in the checkpoint but tensors of layers past
the model's final endpoint and optimizer slots. Saving writes the same names
and shapes, so a saved checkpoint reads back like a released one.
"""

from __future__ import annotations

import dataclasses
import os
from typing import (
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
)

import runtime  # pylint: disable=g-bad-import-order

runtime.setup()  # Before TensorFlow loads: its oneDNN kernels on.
from absl import logging
import numpy as np
import sonnet as snt
import tensorflow as tf

import assets
import fileio
import i3d


@dataclasses.dataclass(frozen=True)
class Layout:
  """How one family of checkpoints names and shapes its tensors."""

  name: str
  prefix: str  # Prepended to every release path.
  in_channels: int  # 3 for RGB, 2 for flow.
  num_classes: int
  bn_rank5: bool  # BatchNorm tensors are [1,1,1,1,C] rather than [C].
  has_momentum: bool  # The release file carries `/Momentum` slots.


_RGB, _FLOW = assets.STREAM_CHANNELS['rgb'], assets.STREAM_CHANNELS['flow']
LAYOUTS: Dict[str, Layout] = {
    'rgb': Layout('rgb', 'RGB/inception_i3d/', _RGB, 400, False, False),
    'flow': Layout('flow', 'Flow/inception_i3d/', _FLOW, 400, False, False),
    'kinetics600': Layout('kinetics600', '', _RGB, 600, True, True),
}

# Input channels of each stream: RGB frames and TV-L1 flow (x, y).
STREAM_CHANNELS: Dict[str, int] = assets.STREAM_CHANNELS

# The five released checkpoints and their layouts (assets.RELEASES).
RELEASE_CHECKPOINTS: Dict[str, str] = {
    name: release.layout for name, release in assets.RELEASES.items()
}

MOMENTUM_SUFFIX = '/Momentum'

# Sonnet 2 keeps each moving statistic as a zero-debiased EMA: `hidden` is the
# raw average, `counter` the number of updates, and the value read at test time
# is `average` = hidden / (1 - decay**counter). A restored statistic is stored
# as all three with a counter past which decay**counter is 0 in float32, so
# average == hidden and further training updates continue from the restored
# value, exactly like Sonnet 1's plain moving average.
RESTORED_EMA_COUNTER = 1_000_000


class CheckpointError(ValueError):
  """A checkpoint cannot be read, or does not match the model."""


def get_layout(layout: str) -> Layout:
  if layout not in LAYOUTS:
    raise ValueError(
        f'Unknown `layout` {layout!r}; valid values are '
        f'{", ".join(LAYOUTS)}.'
    )
  return LAYOUTS[layout]


def _unit_tensors(
    path: str,
    out_channels: int,
    in_channels: int,
    kernel: Tuple[int, int, int],
    layout: Layout,
    bias: bool = False,
    batch_norm: bool = True,
):
  """Yields (release name, shape, role) for one Unit3D."""
  p = layout.prefix + path
  yield f'{p}/conv_3d/w', (*kernel, in_channels, out_channels), 'w'
  if bias:
    yield f'{p}/conv_3d/b', (out_channels,), 'b'
  if batch_norm:
    bn_shape = (
        (1, 1, 1, 1, out_channels) if layout.bn_rank5 else (out_channels,)
    )
    yield f'{p}/batch_norm/beta', bn_shape, 'beta'
    yield f'{p}/batch_norm/moving_mean', bn_shape, 'moving_mean'
    yield f'{p}/batch_norm/moving_variance', bn_shape, 'moving_variance'


def unit_inventory(
    layout: str,
    num_classes: Optional[int] = None,
    final_endpoint: str = 'Logits',
):
  """Yields (unit path, release name, shape, role) up to `final_endpoint`.

  Computed from i3d.LAYER_SPECS alone, without building a model.
  """
  lay = get_layout(layout)
  num_classes = lay.num_classes if num_classes is None else num_classes
  last = i3d.VALID_ENDPOINTS.index(final_endpoint)
  channels = lay.in_channels
  for spec in i3d.LAYER_SPECS:
    if i3d.VALID_ENDPOINTS.index(spec.name) > last:
      return
    if isinstance(spec, i3d.ConvSpec):
      for name, shape, role in _unit_tensors(
          spec.name, spec.channels, channels, spec.kernel, lay
      ):
        yield spec.name, name, shape, role
      channels = spec.channels
    elif isinstance(spec, i3d.MixedSpec):
      for path, out, kernel in i3d.mixed_branches(spec):
        # 1x1x1 convs read the block input; each 3x3x3 reads its reduction.
        branch = path.split('/')[0]
        if kernel == (1, 1, 1):
          cin = channels
        else:
          cin = {'Branch_1': spec.b1[0], 'Branch_2': spec.b2[0]}[branch]
        full = f'{spec.name}/{path}'
        for name, shape, role in _unit_tensors(full, out, cin, kernel, lay):
          yield full, name, shape, role
      channels = spec.out_channels
  if last >= i3d.VALID_ENDPOINTS.index('Logits'):
    for name, shape, role in _unit_tensors(
        i3d.LOGITS_UNIT,
        num_classes,
        i3d.FEATURE_CHANNELS,
        (1, 1, 1),
        lay,
        bias=True,
        batch_norm=False,
    ):
      yield i3d.LOGITS_UNIT, name, shape, role


def release_inventory(
    layout: str,
    num_classes: Optional[int] = None,
    final_endpoint: str = 'Logits',
    with_momentum: bool = False,
) -> Dict[str, Tuple[int, ...]]:
  """Release name -> shape of every tensor a checkpoint of `layout` holds.

  Args:
    layout: one of LAYOUTS.
    num_classes: defaults to the layout's (400, or 600 for kinetics600).
    final_endpoint: only the layers up to this endpoint.
    with_momentum: also list the `/Momentum` optimizer slots that the
      kinetics600 release carries for each trainable tensor.
  """
  lay = get_layout(layout)
  out = {}
  for _, name, shape, role in unit_inventory(
      layout, num_classes, final_endpoint
  ):
    out[name] = shape
    if with_momentum and lay.has_momentum and role in ('w', 'b', 'beta'):
      out[name + MOMENTUM_SUFFIX] = shape
  return out


def _variable_for(unit: i3d.Unit3D, role: str) -> tf.Variable:
  if role == 'w':
    return unit.conv_3d.w
  if role == 'b':
    return unit.conv_3d.b
  bn = unit.batch_norm
  if role == 'beta':
    return bn.offset
  if role == 'moving_mean':
    return bn.moving_mean.average
  return bn.moving_variance.average


def variable_map(
    model: i3d.InceptionI3d, layout: str
) -> Dict[str, Tuple[tf.Variable, Tuple[int, ...]]]:
  """Release name -> (model variable, release shape) for a built model.

  Raises:
    CheckpointError: if the model's variables have not been created yet.
  """
  if model.in_channels is None:
    raise CheckpointError(
        'The model has no variables yet: call '
        '`model.create_variables(in_channels)` or run it once first.'
    )
  out = {}
  for unit_path, name, shape, role in unit_inventory(
      layout, model.num_classes, model.final_endpoint
  ):
    unit = model.units[unit_path]
    variable = _variable_for(unit, role)
    # The first conv's input channels come from the model, not the layout.
    if role == 'w' and unit_path == 'Conv3d_1a_7x7':
      shape = tuple(variable.shape)
    out[name] = (variable, shape)
  return out


def detect_layout(names: Iterable[str]) -> str:
  """Guesses a checkpoint's layout from its tensor names."""
  names = list(names)
  if any(n.startswith('RGB/') for n in names):
    return 'rgb'
  if any(n.startswith('Flow/') for n in names):
    return 'flow'
  if any(n.startswith('Conv3d_1a_7x7/') for n in names):
    return 'kinetics600'
  raise CheckpointError(
      'Cannot tell the checkpoint layout: no tensor starts with RGB/, Flow/ '
      f'or Conv3d_1a_7x7/ (first names: {sorted(names)[:5]}).'
  )


def open_checkpoint(
    prefix: str, fetch_command: str = 'python fetch_assets.py'
) -> tf.train.CheckpointReader:
  """Opens a TF checkpoint by prefix, with a clear error when it can't.

  Args:
    prefix: the checkpoint prefix, e.g. data/checkpoints/rgb_imagenet/model.ckpt
      (the files are <prefix>.index and <prefix>.data-00000-of-00001), or a
      TF1 V1 checkpoint's single file (TF-slim's ImageNet releases).
    fetch_command: the command that gets the checkpoint, named in errors.

  Raises:
    CheckpointError: naming the file when it is missing, truncated or corrupt.
  """
  index = prefix + '.index'
  v1_file = os.path.isfile(prefix)
  if not os.path.exists(index) and not v1_file:
    if os.path.isdir(prefix):
      hint = f' (that is a folder; pass {os.path.join(prefix, "model.ckpt")})'
    else:
      hint = ''
    raise CheckpointError(
        f'No checkpoint at {prefix!r}: {index} does not exist{hint}. Run '
        f'`{fetch_command}` to download it.'
    )
  try:
    return tf.train.load_checkpoint(prefix)
  except (tf.errors.OpError, ValueError, IndexError, RuntimeError) as e:
    raise CheckpointError(
        f'Cannot read checkpoint {prefix if v1_file else index}: it is '
        f'truncated or corrupt ({type(e).__name__}: {_first_line(e)}). Delete '
        f'it and run `{fetch_command}` again.'
    ) from e


def _first_line(e: Exception) -> str:
  text = getattr(e, 'message', None) or str(e)
  return text.strip().splitlines()[0] if text.strip() else repr(e)


def read_tensor(
    reader: tf.train.CheckpointReader, prefix: str, name: str
) -> np.ndarray:
  try:
    return reader.get_tensor(name)
  except (tf.errors.OpError, ValueError, IndexError, RuntimeError) as e:
    raise CheckpointError(
        f'Cannot read tensor {name!r} from {prefix}.data-*: the data file is '
        f'truncated or corrupt ({type(e).__name__}: {_first_line(e)}). Delete '
        'the checkpoint and run `python fetch_assets.py` again.'
    ) from e


def compare_shapes(
    expected: Mapping[str, Tuple[int, ...]],
    shapes: Mapping[str, List[int]],
    ignore: Callable[[str], bool] = lambda name: False,
):
  """Missing, unexpected and mismatched names of a checkpoint's name->shape map.

  Args:
    expected: name -> shape the model needs.
    shapes: name -> shape the checkpoint holds.
    ignore: names of the checkpoint that may be there without being expected.

  Returns:
    (missing names, unexpected names, [(name, checkpoint shape, model shape)]),
    each sorted.
  """
  missing = sorted(n for n in expected if n not in shapes)
  unexpected = sorted(n for n in shapes if n not in expected and not ignore(n))
  mismatched = sorted(
      (n, tuple(shapes[n]), tuple(want))
      for n, want in expected.items()
      if n in shapes and tuple(shapes[n]) != tuple(want)
  )
  return missing, unexpected, mismatched


def mismatch_lines(
    missing: Sequence[str],
    unexpected: Sequence[str],
    mismatched: Sequence[Tuple[str, Tuple[int, ...], Tuple[int, ...]]],
) -> List[str]:
  """The indented lines that list compare_shapes' findings."""
  lines = []
  if missing:
    lines.append(f'  {len(missing)} missing from the checkpoint:')
    lines += [f'    {n}' for n in missing]
  if unexpected:
    lines.append(
        f'  {len(unexpected)} in the checkpoint but not in the ' 'model:'
    )
    lines += [f'    {n}' for n in unexpected]
  if mismatched:
    lines.append(f'  {len(mismatched)} with the wrong shape:')
    lines += [
        f'    {n}: checkpoint {list(g)}, model {list(w)}'
        for n, g, w in mismatched
    ]
  return lines


def check_compatible(
    model: i3d.InceptionI3d,
    shapes: Mapping[str, List[int]],
    layout: str,
    source: str,
) -> None:
  """Raises one CheckpointError listing every missing, unexpected or
  mismatched tensor between `model` and a checkpoint's name->shape map."""
  expected = {n: shape for n, (_, shape) in variable_map(model, layout).items()}
  full = release_inventory(layout, num_classes=model.num_classes)
  missing, unexpected, mismatched = compare_shapes(
      expected,
      shapes,
      ignore=lambda n: n.endswith(MOMENTUM_SUFFIX) or n in full,
  )
  if not (missing or unexpected or mismatched):
    return
  lines = [
      f'Checkpoint {source} (layout {layout!r}) does not match the model '
      f'(num_classes={model.num_classes}, in_channels='
      f'{model.in_channels}, final_endpoint={model.final_endpoint!r}):'
  ]
  logits_w = get_layout(layout).prefix + i3d.LOGITS_UNIT + '/conv_3d/w'
  for name, got, want in mismatched:
    if name == logits_w:
      lines.append(
          f'  the checkpoint has {got[-1]} classes but the model has '
          f'{want[-1]}: build the model with num_classes={got[-1]}.'
      )
  conv1 = get_layout(layout).prefix + 'Conv3d_1a_7x7/conv_3d/w'
  for name, got, want in mismatched:
    if name == conv1:
      lines.append(
          f'  the checkpoint takes {got[3]} input channels but the '
          f'model was built for {want[3]}: use an RGB checkpoint for '
          '3-channel input and a flow checkpoint for 2 channels.'
      )
  lines += mismatch_lines(missing, unexpected, mismatched)
  raise CheckpointError('\n'.join(lines))


def assign(
    model: i3d.InceptionI3d,
    tensors: Mapping[str, np.ndarray],
    layout: str,
    source: str = 'the given tensors',
) -> None:
  """Assigns release-named arrays to a built model, strictly.

  Moving statistics are written to the Sonnet 2 EMA's `average` and `hidden`
  with a large `counter` (see RESTORED_EMA_COUNTER) so that inference uses
  them and training continues from them.
  """
  shapes = {n: list(np.shape(v)) for n, v in tensors.items()}
  check_compatible(model, shapes, layout, source)
  for name, (variable, _) in variable_map(model, layout).items():
    value = np.reshape(tensors[name], variable.shape).astype(
        variable.dtype.as_numpy_dtype
    )
    variable.assign(value)
  for unit in model.units.values():
    if unit.batch_norm is not None:
      sync_restored_statistics(unit.batch_norm)


def sync_restored_statistics(batch_norm: snt.BatchNorm) -> None:
  """Makes a BatchNorm's EMAs continue from their just-assigned `average`."""
  for ema in (batch_norm.moving_mean, batch_norm.moving_variance):
    # Sonnet 2's EMA keeps these two private; see RESTORED_EMA_COUNTER.
    ema._hidden.assign(ema.average)  # pylint: disable=protected-access
    ema._counter.assign(RESTORED_EMA_COUNTER)  # pylint: disable=protected-access


def restore(
    model: i3d.InceptionI3d, prefix: str, layout: Optional[str] = None
) -> str:
  """Restores a release-format checkpoint into `model`, strictly.

  Builds the model's variables first if needed (with the layout's input
  channels).

  Args:
    model: the module to fill.
    prefix: checkpoint prefix, e.g. 'data/checkpoints/rgb_imagenet/model.ckpt'.
    layout: one of LAYOUTS; detected from the tensor names when None.

  Returns:
    The layout used.

  Raises:
    CheckpointError: the checkpoint is missing, unreadable or does not match.
  """
  reader = open_checkpoint(prefix)
  shapes = reader.get_variable_to_shape_map()
  layout = layout or detect_layout(shapes)
  lay = get_layout(layout)
  if model.in_channels is None:
    conv1 = shapes.get(lay.prefix + 'Conv3d_1a_7x7/conv_3d/w')
    model.create_variables(conv1[3] if conv1 else lay.in_channels)
  check_compatible(model, shapes, layout, prefix)
  if lay.has_momentum:
    logging.info(
        '%s: ignoring the /Momentum optimizer slots of the %s ' 'layout.',
        prefix,
        layout,
    )
  if lay.bn_rank5:
    logging.info(
        '%s: reshaping the [1,1,1,1,C] BatchNorm tensors of the %s '
        'layout to [C].',
        prefix,
        layout,
    )
  tensors = {
      name: read_tensor(reader, prefix, name)
      for name in variable_map(model, layout)
  }
  assign(model, tensors, layout, source=prefix)
  return layout


def export_tensors(
    model: i3d.InceptionI3d, layout: str
) -> Dict[str, np.ndarray]:
  """Release name -> array, shaped as the release stores it."""
  return {
      name: np.reshape(variable.numpy(), shape)
      for name, (variable, shape) in variable_map(model, layout).items()
  }


def write_tensors(prefix: str, tensors: Mapping[str, np.ndarray]) -> None:
  """Writes a TF V2 checkpoint with exactly these names, atomically.

  The files are written under a temporary name in the destination folder and
  renamed into place, the index last, so an interrupted save leaves no file
  that looks finished.
  """
  folder, base = os.path.split(os.path.abspath(prefix))
  names = sorted(tensors)
  with fileio.atomic_files(folder, last=base + '.index') as tmp:
    tf.raw_ops.SaveV2(
        prefix=os.path.join(tmp, base),
        tensor_names=names,
        shape_and_slices=[''] * len(names),
        tensors=[tf.constant(tensors[n]) for n in names],
    )


def save(model: i3d.InceptionI3d, prefix: str, layout: str) -> None:
  """Saves `model` with the release's names and shapes for `layout`."""
  write_tensors(prefix, export_tensors(model, layout))


def random_tensor(
    role: str, shape: Sequence[int], rng: np.random.Generator
) -> np.ndarray:
  """A random float32 tensor for one role ('w', 'b', 'beta', 'moving_mean',
  'moving_variance'): He-scaled weights, moderate BatchNorm statistics."""
  if role == 'w':
    fan_in = int(np.prod(shape[:-1]))
    value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
  elif role in ('b', 'beta', 'moving_mean'):
    value = rng.normal(0.0, 0.1, shape)
  else:
    value = rng.uniform(0.5, 1.5, shape)
  return value.astype(np.float32)


def synthetic_tensors(
    layout: str,
    seed: int = 0,
    num_classes: Optional[int] = None,
    with_momentum: bool = True,
) -> Dict[str, np.ndarray]:
  """Random tensors with exactly a release checkpoint's names and shapes.

  The weights are He-scaled and the BatchNorm statistics are moderate, so
  activations keep a sane scale through the 58 layers and the logits are
  neither all equal nor overflowing. The kinetics600 layout also gets its
  `/Momentum` slots, as in the release file.
  """
  rng = np.random.default_rng(seed)
  out = {}
  for _, name, shape, role in unit_inventory(layout, num_classes):
    out[name] = random_tensor(role, shape, rng)
  if with_momentum and get_layout(layout).has_momentum:
    for name, value in list(out.items()):
      if name.endswith(('/w', '/b', '/beta')):
        out[name + MOMENTUM_SUFFIX] = (0.01 * value).astype(np.float32)
  return out


def write_synthetic(
    prefix: str, layout: str, seed: int = 0, num_classes: Optional[int] = None
) -> None:
  """Writes a synthetic checkpoint with the release's exact inventory."""
  write_tensors(prefix, synthetic_tensors(layout, seed, num_classes))


def write_synthetic_release(
    folder: str,
    names: Sequence[str] = assets.CHECKPOINT_NAMES,
    samples: Sequence[str] = assets.STREAMS,
    frames: int = assets.SYNTHETIC_FRAMES,
    seed: int = 0,
) -> List[str]:
  """Writes random files shaped like the release's data/ into `folder`.

  `folder` gets the SYNTHETIC_MARKER file first (so the commands can tell,
  and say, that the weights are random), then checkpoints/<name>/model.ckpt
  with each release checkpoint's exact tensor names and shapes, both label
  maps (`synthetic class <i>` lines) and the sample inputs
  v_CricketShot_g04_c01_{rgb,flow}.npy, float32 [1, frames, 224, 224, C] in
  [-1, 1]. Each file is written atomically.

  Args:
    folder: Where to write; created if missing. Never the release's data/
      unless the caller means it.
    names: Release checkpoint names to write.
    samples: Streams whose sample input to write.
    frames: Frames of the sample inputs (at least 9).
    seed: Seed of the random values.

  Returns:
    The paths written, relative to `folder`.

  Raises:
    ValueError: an unknown checkpoint or stream, or too few frames.
  """
  unknown = sorted(set(names) - set(assets.CHECKPOINT_NAMES)) + sorted(
      set(samples) - set(assets.STREAMS)
  )
  if unknown:
    raise ValueError(
        f'Unknown checkpoints or streams {unknown}; valid: '
        f'{assets.CHECKPOINT_NAMES} and {assets.STREAMS}.'
    )
  if frames < 9:
    raise ValueError(f'`frames` must be at least 9; got {frames}.')
  written = [assets.SYNTHETIC_MARKER]
  fileio.write_bytes(
      os.path.join(folder, assets.SYNTHETIC_MARKER),
      (
          'NOT THE RELEASE. Everything in this folder is random, written by '
          '`python fetch_assets.py --synthetic`\nwith the shapes and names of '
          "the kinetics-i3d release's data/ files, so that every command can\n"
          'be tried offline. Any class or number computed from it is '
          'meaningless.\n'
      ).encode(),
  )
  for seed_offset, name in enumerate(names):
    release = assets.RELEASES[name]
    relative = assets.checkpoint_prefix('checkpoints', name)
    prefix = os.path.join(folder, relative)
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    write_synthetic(prefix, release.layout, seed=seed + seed_offset)
    written += [
        os.path.join(os.path.dirname(relative), f)
        for f in assets.CHECKPOINT_FILES
    ]
  for num_classes, release_path in assets.LABEL_MAP_FILES.items():
    name = os.path.basename(release_path)
    lines = ''.join(f'synthetic class {i}\n' for i in range(num_classes))
    fileio.write_bytes(os.path.join(folder, name), lines.encode())
    written.append(name)
  rng = np.random.default_rng(seed)
  for stream in samples:
    name = os.path.basename(assets.sample_files(stream)[0])
    shape = (1, frames, 224, 224, assets.STREAM_CHANNELS[stream])
    array = rng.uniform(-1.0, 1.0, shape).astype(np.float32)
    fileio.write_npy(os.path.join(folder, name), array)
    written.append(name)
  return written


def assign_synthetic(
    model: i3d.InceptionI3d, layout: str = 'rgb', seed: int = 0
) -> None:
  """Fills `model` with synthetic release-shaped weights (for tests/benchmarks).

  Builds the model's variables first if needed.
  """
  lay = get_layout(layout)
  if model.in_channels is None:
    model.create_variables(lay.in_channels)
  tensors = synthetic_tensors(
      layout, seed, num_classes=model.num_classes, with_momentum=False
  )
  full = set(variable_map(model, layout))
  assign(
      model,
      {n: v for n, v in tensors.items() if n in full},
      layout,
      source=f'synthetic {layout} weights (seed {seed})',
  )


def load_model(
    prefix: str,
    final_endpoint: str = 'Logits',
    layout: Optional[str] = None,
    compute_dtype: Optional[tf.DType] = None,
) -> i3d.InceptionI3d:
  """Builds an InceptionI3d shaped like a checkpoint and restores it.

  The number of classes and input channels come from the checkpoint itself.

  Args:
    prefix: checkpoint prefix, e.g. 'data/checkpoints/rgb_imagenet/model.ckpt'.
    final_endpoint: the last endpoint the model computes.
    layout: one of LAYOUTS; detected from the tensor names when None.
    compute_dtype: the model's mixed-precision compute dtype (None: float32).

  Raises:
    CheckpointError: the checkpoint is missing, unreadable or inconsistent.
  """
  reader = open_checkpoint(prefix)
  shapes = reader.get_variable_to_shape_map()
  layout = layout or detect_layout(shapes)
  lay = get_layout(layout)
  logits_w = shapes.get(lay.prefix + i3d.LOGITS_UNIT + '/conv_3d/w')
  num_classes = logits_w[-1] if logits_w else lay.num_classes
  model = i3d.InceptionI3d(
      num_classes=num_classes,
      final_endpoint=final_endpoint,
      compute_dtype=compute_dtype,
  )
  restore(model, prefix, layout)
  return model
