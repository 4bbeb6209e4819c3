"""Inflating a 2D ImageNet Inception-v1 into I3D (the paper's section 2.2).

Every 2D conv kernel W of shape [k,k,Cin,Cout] becomes a 3D kernel of shape
[t,k,k,Cin,Cout] that holds W/t at each of its t time steps. t is I3D's own
temporal size for that layer, read from i3d.LAYER_SPECS: 7 for
Conv3d_1a_7x7, 3 for the 3x3 convs, 1 for the 1x1 convs. The BatchNorm offset
and moving statistics are copied. The max pools need nothing.

The boring-video fixed point. On a video that repeats one image, every
temporal window of a conv sees t copies of the same 2D input, so the
inflated conv sums t copies of W/t and returns exactly the 2D response;
BatchNorm and ReLU act per position, and a max pool over equal values returns
that value. So each frame of I3D's features equals the 2D network's features
on the image, and so do the pooled features and the logits (inflation_test.py
checks all three to float32 round-off).

Except near the ends of the clip: I3D's convs pad time with zeros ('SAME'),
so a window that hangs over the first or last frame sums fewer than t copies
and the response changes. (The max pools pad with -inf, which leaves a
constant signal unchanged, but they pass on what the convs changed.) Only
positions whose whole temporal receptive field lies inside the clip are
exact; exact_positions() lists them. At Mixed_5c that field is 99 frames wide
and positions are 8 frames apart, so a clip needs 99 + 8(n-1) frames, give or
take the SAME padding's alignment, for n exact positions: frames_for_exact()
computes it.

The flow stream's first conv takes 2 channels (x, y) instead of 3 (RGB). Its
kernel comes from the RGB one in one of FLOW_INITS ways; the default is TSN's
cross-modality initialisation (Wang et al., ECCV 2016: average the kernel
over the RGB channels and replicate it for each flow channel), scaled by 3/2
so that the kernel's sum over input channels is kept, as inflation keeps its
sum over time. Then a flow clip whose two channels both equal a gray image
gives the 2D network's response on that gray image.

The 1001-class ImageNet head is dropped by default and a new head for
`num_classes` classes is created in its place, with zero weights and biases
(HEAD_INITS): a fresh head then predicts the uniform distribution and the
first fine-tuning steps move only along the gradient of the data. Asked to,
the ImageNet head is inflated like the other 1x1 convs instead; that is what
the fixed-point test uses to compare logits.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, Mapping, Optional

import numpy as np

import checkpoints
import i3d
import inception_v1

STREAMS = ('rgb', 'flow')

FLOW_INITS = {
    'average': 'average over RGB, times 3/2, for each flow channel (TSN, '
    'sum kept)',
    'tsn': 'average over RGB for each flow channel, unscaled (as TSN did)',
    'first_two': 'the R and G channels of the RGB kernel',
    'random': 'He-normal random weights',
}
HEADS = {
    'new': 'a new head for num_classes classes (HEAD_INITS)',
    'imagenet': 'the 1001-class ImageNet head, inflated',
}
HEAD_INITS = {
    'zeros': 'zero weights and biases: uniform predictions at first',
    'normal': "weights ~ N(0, 0.01^2) (slim's logits initialiser), zero "
    'biases',
}
NEW_HEAD_STDDEV = 0.01


def _check_choice(arg: str, value: str, valid) -> None:
  if value not in valid:
    raise ValueError(
        f'Unknown `{arg}` {value!r}; valid values are ' f'{", ".join(valid)}.'
    )


def inflate_kernel(kernel: np.ndarray, time: int) -> np.ndarray:
  """[k,k,Cin,Cout] -> [time,k,k,Cin,Cout]: `time` copies of kernel / time."""
  kernel = np.asarray(kernel, np.float32)
  if kernel.ndim != 4:
    raise ValueError(
        f'`kernel` must be a 2D conv kernel [k, k, in, out]; got '
        f'shape {kernel.shape}.'
    )
  if time < 1:
    raise ValueError(f'`time` must be >= 1; got {time}.')
  return np.repeat(kernel[np.newaxis] / np.float32(time), time, axis=0)


def flow_kernel(
    rgb_kernel: np.ndarray,
    flow_init: str = 'average',
    rng: Optional[np.random.Generator] = None,
) -> np.ndarray:
  """The first conv's kernel for 2-channel flow from the 3-channel RGB one.

  Args:
    rgb_kernel: [..., 3, Cout]; the input channels are the second-to-last axis.
    flow_init: one of FLOW_INITS.
    rng: random generator for 'random'.

  Returns:
    [..., 2, Cout].
  """
  _check_choice('flow_init', flow_init, FLOW_INITS)
  rgb_kernel = np.asarray(rgb_kernel, np.float32)
  if rgb_kernel.shape[-2] != inception_v1.IN_CHANNELS:
    raise ValueError(
        f'`rgb_kernel` must take 3 input channels (RGB); got '
        f'shape {rgb_kernel.shape}.'
    )
  flow_shape = (*rgb_kernel.shape[:-2], 2, rgb_kernel.shape[-1])
  if flow_init == 'first_two':
    return rgb_kernel[..., :2, :].copy()
  if flow_init == 'random':
    rng = rng or np.random.default_rng(0)
    return checkpoints.random_tensor('w', flow_shape, rng)
  mean = rgb_kernel.mean(axis=-2, keepdims=True)
  if flow_init == 'average':
    mean = mean * np.float32(3 / 2)
  return np.broadcast_to(mean, flow_shape).astype(np.float32)


def inflate_tensors(
    slim: Mapping[str, np.ndarray],
    stream: str = 'rgb',
    head: str = 'new',
    num_classes: int = 400,
    flow_init: str = 'average',
    head_init: str = 'zeros',
    seed: int = 0,
) -> Dict[str, np.ndarray]:
  """Release-named I3D tensors from slim-named Inception-v1 tensors.

  Args:
    slim: slim name -> array of a whole Inception-v1 (inception_v1.read_tensors
      checks one strictly).
    stream: 'rgb' or 'flow': the release layout, `RGB/inception_i3d/...` or
      `Flow/inception_i3d/...`, and the first conv's input channels.
    head: one of HEADS.
    num_classes: classes of the new head (head='new').
    flow_init: one of FLOW_INITS (stream='flow').
    head_init: one of HEAD_INITS (head='new').
    seed: for the random choices.

  Returns:
    Release name -> float32 array, exactly checkpoints.release_inventory's.

  Raises:
    ValueError: an unknown option.
    CheckpointError: `slim` is not a whole Inception-v1.
  """
  _check_choice('stream', stream, STREAMS)
  _check_choice('head', head, HEADS)
  _check_choice('head_init', head_init, HEAD_INITS)
  _check_choice('flow_init', flow_init, FLOW_INITS)
  if not isinstance(num_classes, int) or num_classes < 1:
    raise ValueError(
        f'`num_classes` must be a positive int; got {num_classes!r}.'
    )
  logits_b = inception_v1.slim_name(i3d.LOGITS_UNIT, 'b')
  slim_classes = (
      np.shape(slim[logits_b])[0]
      if logits_b in slim
      else inception_v1.IMAGENET_CLASSES
  )
  inception_v1.check_inventory(
      {n: np.shape(v) for n, v in slim.items()},
      'the given 2D tensors',
      slim_classes,
  )
  classes = slim_classes if head == 'imagenet' else num_classes
  rng = np.random.default_rng(seed)
  out = {}
  for path, name, shape, role in checkpoints.unit_inventory(stream, classes):
    if path == i3d.LOGITS_UNIT and head == 'new':
      if role == 'w' and head_init == 'normal':
        out[name] = rng.normal(0, NEW_HEAD_STDDEV, shape).astype(np.float32)
      else:
        out[name] = np.zeros(shape, np.float32)
      continue
    value = np.asarray(slim[inception_v1.slim_name(path, role)], np.float32)
    if role == 'w':
      if value.shape[2] != shape[3]:  # The flow stream's first conv.
        value = flow_kernel(value, flow_init, rng)
      value = inflate_kernel(value, shape[0])
    out[name] = value
  return out


def inflate_model(
    slim: Mapping[str, np.ndarray],
    stream: str = 'rgb',
    head: str = 'new',
    num_classes: int = 400,
    flow_init: str = 'average',
    head_init: str = 'zeros',
    seed: int = 0,
    final_endpoint: str = 'Logits',
) -> i3d.InceptionI3d:
  """An InceptionI3d holding the inflated weights; see inflate_tensors."""
  tensors = inflate_tensors(
      slim, stream, head, num_classes, flow_init, head_init, seed
  )
  logits_w = tensors[
      checkpoints.get_layout(stream).prefix + i3d.LOGITS_UNIT + '/conv_3d/w'
  ]
  model = i3d.InceptionI3d(
      num_classes=logits_w.shape[-1], final_endpoint=final_endpoint
  )
  model.create_variables(checkpoints.STREAM_CHANNELS[stream])
  checkpoints.assign(model, tensors, stream, source='the inflated tensors')
  return model


@dataclasses.dataclass
class Summary:
  """What inflate_checkpoint did."""

  source: str
  output: str
  stream: str
  num_classes: int
  head: str
  kernels_by_time: Dict[int, int]  # t -> trunk kernels inflated to t.

  def line(self) -> str:
    counts = ', '.join(
        f'{n} to t={t}' for t, n in sorted(self.kernels_by_time.items())
    )
    return (
        f'Inflated {self.source} -> {self.output} ({self.stream} stream, '
        f'release names; trunk kernels: {counts}; head: {self.head}, '
        f'{self.num_classes} classes).'
    )


def inflate_checkpoint(
    source: str,
    output: str,
    stream: str = 'rgb',
    head: str = 'new',
    num_classes: int = 400,
    flow_init: str = 'average',
    head_init: str = 'zeros',
    seed: int = 0,
    overwrite: bool = False,
) -> Summary:
  """Inflates a slim Inception-v1 checkpoint into a release-format I3D one.

  Args:
    source: slim's `inception_v1.ckpt` (V1 file) or a V2 prefix.
    output: prefix of the I3D checkpoint to write, e.g.
      'data/checkpoints/rgb_inflated/model.ckpt'. It is written atomically
      (checkpoints.save) and reads back with checkpoints.load_model.
    stream, head, num_classes, flow_init, head_init, seed: see
      inflate_tensors.
    overwrite: replace an existing checkpoint at `output`.

  Returns:
    A Summary; Summary.line() says what was done.

  Raises:
    FileExistsError: `output` exists and `overwrite` is False.
    CheckpointError: `source` is missing, unreadable or not an Inception-v1.
    ValueError: an unknown option.
  """
  if os.path.exists(output + '.index') and not overwrite:
    raise FileExistsError(
        f'A checkpoint already exists at {output!r} and overwriting is off'
    )
  slim = inception_v1.read_tensors(source)
  model = inflate_model(
      slim, stream, head, num_classes, flow_init, head_init, seed
  )
  checkpoints.save(model, output, stream)
  by_time = {}
  for path, _, shape, role in checkpoints.unit_inventory(
      stream, model.num_classes
  ):
    if role == 'w' and path != i3d.LOGITS_UNIT:
      by_time[shape[0]] = by_time.get(shape[0], 0) + 1
  return Summary(source, output, stream, model.num_classes, head, by_time)


def _temporal_layers(endpoint: str):
  """(kernel, stride) in time of each layer up to `endpoint`.

  A Mixed block counts as one kernel-3 stride-1 layer: its widest temporal
  windows, the 3x3x3 convs and the Branch_3 pool, are 3 frames.
  """
  last = i3d.VALID_ENDPOINTS.index(endpoint)
  for spec in i3d.LAYER_SPECS:
    if i3d.VALID_ENDPOINTS.index(spec.name) > last:
      return
    if isinstance(spec, i3d.MixedSpec):
      yield 3, 1
    else:
      yield spec.kernel[0], spec.stride[0]


def exact_positions(num_frames: int, endpoint: str = 'Mixed_5c') -> range:
  """Time positions of `endpoint` that see no temporal padding.

  On a boring video these equal the 2D network's features exactly. A
  position's receptive field is followed back through every layer with
  'SAME' padding (pad before = total pad // 2); it is exact if the field lies
  inside [0, num_frames). This counts the max pools' padding too, which is
  harmless, so the range is a safe subset.

  Args:
    num_frames: frames of the input clip.
    endpoint: an I3D trunk endpoint, Conv3d_1a_7x7 to Mixed_5c.

  Returns:
    The exact positions (possibly empty), as indices into the endpoint's time
    axis.
  """
  if endpoint not in i3d.VALID_ENDPOINTS[: i3d.VALID_ENDPOINTS.index('Logits')]:
    raise ValueError(
        f'Unknown `endpoint` {endpoint!r}; valid values are the '
        'trunk endpoints, Conv3d_1a_7x7 to Mixed_5c.'
    )
  length, jump, start, field = num_frames, 1, 0, 1
  for kernel, stride in _temporal_layers(endpoint):
    out = -(-length // stride)
    pad_before = max((out - 1) * stride + kernel - length, 0) // 2
    start -= pad_before * jump
    field += (kernel - 1) * jump
    jump *= stride
    length = out
  first = max(0, -(-(-start) // jump))  # start + i * jump >= 0
  last = (num_frames - field - start) // jump  # start + i*jump + field <= n
  return range(first, min(last, length - 1) + 1)


def frames_for_exact(count: int, endpoint: str = 'Mixed_5c') -> int:
  """The fewest input frames that give `count` exact positions at `endpoint`."""
  frames = 1
  while len(exact_positions(frames, endpoint)) < count:
    frames += 1
  return frames
