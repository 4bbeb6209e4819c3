"""I3D as a SavedModel: the folded fast path behind a serving signature.

The exported model takes float32 clips in [-1, 1], [batch, frames, 224, 224,
channels] with batch free and frames free (at least 9) or fixed at export,
and returns under the 'serving_default' signature:

  logits         [batch, num_classes]  averaged over time; for 'joint' the
                                       sum of the RGB and Flow logits.
  probabilities  [batch, num_classes]  softmax of the logits.
  features       [batch, 1024]         with_features only: Mixed_5c averaged
                                       over time and space ('joint':
                                       rgb_features and flow_features).

Inputs are named by stream: `rgb` ([..., 3]), `flow` ([..., 2]), or both for
'joint'. Like evaluate_sample.py, the signature refuses (InvalidArgumentError,
naming the input) clips of fewer than 9 frames, a joint request whose `rgb`
and `flow` differ in batch size or frames, NaN or Inf, and values far outside
[-1, 1] (beyond +-1.5, e.g. [0, 255] pixels) unless exported with
allow_out_of_range=True. These checks are assertions in the graph; the ONNX
and OpenVINO conversions (exporters.py) drop them. BatchNorm is folded into the convolutions (inference.FoldedI3D), so
the SavedModel is inference-only and matches the Sonnet module to float32
round-off.

Usage:

  models = serving.load_models('joint', {'rgb': rgb_prefix,
                                         'flow': flow_prefix})
  serving.export(models, '/tmp/i3d_joint', with_features=True)
  loaded = tf.saved_model.load('/tmp/i3d_joint')
  out = loaded.signatures['serving_default'](rgb=rgb, flow=flow)
"""

from __future__ import annotations

import os
from typing import Dict, Mapping, Optional

import runtime  # pylint: disable=g-bad-import-order

runtime.setup()  # Before TensorFlow loads: its oneDNN kernels on.
import tensorflow as tf

import assets
import checkpoints
import classification
import fileio
import i3d
import inference

STREAMS = assets.STREAM_CHOICES
CHANNELS = checkpoints.STREAM_CHANNELS
CLIP_SIZE = 224
SIGNATURE_KEY = 'serving_default'


def stream_parts(streams: str):
  """The models a `streams` value needs: ['rgb'], ['flow'] or both."""
  return list(assets.streams_of(streams))


class ServingModule(tf.Module):
  """Folded I3D nets and the signature function that serves them."""

  def __init__(
      self,
      models: Mapping[str, i3d.InceptionI3d],
      with_features: bool = False,
      frames: Optional[int] = None,
      name: str = 'i3d_serving',
      allow_out_of_range: bool = False,
  ):
    """Folds the models' weights.

    Args:
      models: stream ('rgb' and/or 'flow') -> built, weight-loaded model with
        final endpoint 'Logits' or 'Predictions', spatially squeezed.
      with_features: also output the averaged Mixed_5c features.
      frames: the clips' fixed frame count, or None for any count >= 9.
      name: module name.
      allow_out_of_range: serve finite values beyond [-1.5, 1.5] instead of
        refusing them.

    Raises:
      ValueError: on an unknown stream, a model that does not fit its stream
        or the others, no model, or a bad `frames`.
    """
    super().__init__(name=name)
    min_frames, _ = i3d.min_input_size('Logits')
    if frames is not None and (
        not isinstance(frames, int) or frames < min_frames
    ):
      raise ValueError(
          f'`frames` must be None (any count) or an int >= {min_frames}; got '
          f'{frames!r}.'
      )
    parts = sorted(
        models, key=lambda s: ('rgb', 'flow').index(s) if s in CHANNELS else -1
    )
    if parts not in (['rgb'], ['flow'], ['rgb', 'flow']):
      raise ValueError(
          f'`models` must hold the streams rgb, flow, or both; got '
          f'{sorted(models)}.'
      )
    classes = set()
    for part in parts:
      model = models[part]
      if model.in_channels != CHANNELS[part]:
        raise ValueError(
            f'The {part} model takes {model.in_channels} input channels; '
            f'valid for {part} is {CHANNELS[part]}.'
        )
      if model.final_endpoint not in inference.HEAD_ENDPOINTS:
        raise ValueError(
            f'The {part} model stops at {model.final_endpoint!r}; exporting '
            f'needs final_endpoint Logits or Predictions.'
        )
      if not model.spatial_squeeze:
        raise ValueError(f'The {part} model must have spatial_squeeze=True.')
      classes.add(model.num_classes)
    if len(classes) != 1:
      raise ValueError(
          f"The streams' models must have the same num_classes;"
          f' got {sorted(classes)}.'
      )
    self.parts = parts
    self.num_classes = classes.pop()
    self.with_features = with_features
    self.frames = frames
    self.allow_out_of_range = allow_out_of_range
    self.nets = {
        part: inference.FoldedI3D(models[part], name=f'{part}_net')
        for part in parts
    }
    specs = [
        tf.TensorSpec(
            [None, frames, CLIP_SIZE, CLIP_SIZE, CHANNELS[p]],
            tf.float32,
            name=p,
        )
        for p in parts
    ]
    if parts == ['rgb', 'flow']:

      def serve(rgb, flow):
        return self._serve({'rgb': rgb, 'flow': flow})

    elif parts == ['rgb']:

      def serve(rgb):
        return self._serve({'rgb': rgb})

    else:

      def serve(flow):
        return self._serve({'flow': flow})

    self.serve = tf.function(serve, input_signature=specs)

  def _serve(self, clips: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    min_frames, _ = i3d.min_input_size('Logits')
    outputs = {}
    logits = None
    batch = frames = None
    for part in self.parts:
      clip = clips[part]
      shape = tf.shape(clip)
      checks = [
          tf.debugging.assert_greater_equal(
              shape[1],
              min_frames,
              message=f'`{part}` needs at least {min_frames} frames.',
          )
      ]
      if batch is not None:
        checks.append(
            tf.debugging.assert_equal(
                shape[0],
                batch,
                message='`rgb` and `flow` must have the same ' 'batch size.',
            )
        )
        # flow[t] is the flow from frame t to t + 1 of the same clip, so a
        # joint request whose streams differ in length is a mistake.
        checks.append(
            tf.debugging.assert_equal(
                shape[1],
                frames,
                message='`rgb` and `flow` must have the same number of '
                'frames (flow[t] is frame t -> t + 1 of the same clip).',
            )
        )
      checks.append(
          tf.debugging.assert_equal(
              tf.reduce_all(tf.math.is_finite(clip)),
              True,
              message=f'`{part}` holds NaN or Inf values; the model needs '
              'finite float32 values in [-1, 1].',
          )
      )
      if not self.allow_out_of_range:
        # After the finite check, which names NaN better than this would.
        with tf.control_dependencies(checks[-1:]):
          checks.append(
              tf.debugging.assert_less_equal(
                  tf.reduce_max(tf.abs(clip)),
                  classification.INPUT_RANGE[1] + classification.RANGE_SLACK,
                  message=f'`{part}` holds values far outside the [-1, 1] '
                  f'the model expects ({classification.INPUT_SCALING}); '
                  'rescale it, or export with allow_out_of_range. Max |x|:',
              )
          )
      batch, frames = shape[0], shape[1]
      with tf.control_dependencies(checks):
        clip = tf.identity(clip)
      mixed_5c = self.nets[part].trunk(clip, 'Mixed_5c')
      part_logits = self.nets[part].head(mixed_5c)
      logits = part_logits if logits is None else logits + part_logits
      if self.with_features:
        key = 'features' if len(self.parts) == 1 else f'{part}_features'
        outputs[key] = tf.reduce_mean(mixed_5c, [1, 2, 3])
    outputs['logits'] = logits
    outputs['probabilities'] = tf.nn.softmax(logits)
    return outputs


def load_models(
    streams: str, prefixes: Mapping[str, str]
) -> Dict[str, i3d.InceptionI3d]:
  """Restores the models of `streams` from release-format checkpoints.

  Args:
    streams: one of STREAMS.
    prefixes: stream -> checkpoint prefix, for each stream `streams` needs.

  Raises:
    ValueError: on a bad `streams` or a missing prefix.
    checkpoints.CheckpointError: on a missing or mismatched checkpoint.
  """
  parts = stream_parts(streams)
  for part in parts:
    if not prefixes.get(part):
      raise ValueError(
          f'`prefixes` needs a {part} checkpoint for streams '
          f'{streams!r}; got {dict(prefixes)}.'
      )
  return {part: checkpoints.load_model(prefixes[part]) for part in parts}


def export(
    models: Mapping[str, i3d.InceptionI3d],
    output_dir: str,
    with_features: bool = False,
    overwrite: bool = False,
    frames: Optional[int] = None,
    allow_out_of_range: bool = False,
) -> str:
  """Writes the SavedModel to `output_dir`, atomically.

  It is written to a temporary folder beside `output_dir` and renamed into
  place, so `output_dir` never holds a partial export.

  Args:
    models: as for ServingModule.
    output_dir: the SavedModel folder to create.
    with_features: also output the averaged Mixed_5c features.
    overwrite: replace an existing `output_dir`.
    frames: as for ServingModule.
    allow_out_of_range: as for ServingModule.

  Returns:
    The absolute output folder.

  Raises:
    FileExistsError: if `output_dir` exists and `overwrite` is False.
    ValueError: on models or `frames` ServingModule rejects.
  """
  output_dir = os.path.abspath(output_dir)
  if os.path.exists(output_dir) and not overwrite:
    raise FileExistsError(
        f'`output_dir` {output_dir} already exists; pass overwrite=True to '
        'replace it.'
    )
  module = ServingModule(
      models, with_features, frames, allow_out_of_range=allow_out_of_range
  )
  with fileio.atomic_folder(output_dir, overwrite=overwrite) as tmp:
    tf.saved_model.save(
        module,
        tmp,
        signatures={SIGNATURE_KEY: module.serve.get_concrete_function()},
    )
  return output_dir
