"""The fused deploy model as files that run without this package.

`write_export` writes, into one folder:
- `model.jax_exported`: `jax.export`'s serialized StableHLO of the logits
  function; `jax.export.deserialize(bytearray(data)).call(images)` runs it.
- `saved_model/`: a TensorFlow SavedModel of the same function (jax2tf),
  signature `serving_default(images) -> {'logits'}`.
- `model.json`: what the function expects and where it came from.
- `torchvision.safetensors` (ResNets only, not by default): the fused
  ResNet as torchvision's (`torchvision_format`).
- `model.onnx` (not by default; the `onnx` extra): the same function as ONNX
  (`onnx_format`), `images [batch, H, W, 3] -> logits`.
- `model_int8.onnx` and `eval_int8.json` (`onnx-int8`, which brings `onnx`):
  that model quantized to int8, and both models' test top-1 (`int8`);
  with `Int8Data.per_layer` also `int8_layers.json`, each conv and dense
  layer quantized alone (`int8_layers`).

The function is the `deploy` model in eval mode, in float32 whatever dtype the
run trained in, with the fused variables baked in as constants. It takes
NORMALISED images, NHWC float32 of any batch size: (pixel / 255 - mean) / std
per RGB channel, with model.json's mean and std; and returns float32 logits.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from acnet_jax import models
from acnet_jax.deploy import int8, int8_layers
from acnet_jax.deploy.onnx_format import ONNX_FILE, OPSET, save_onnx
from acnet_jax.deploy.torchvision_format import (
  TORCHVISION_FILE,
  TORCHVISION_MODELS,
  save_torchvision,
)
from acnet_jax.errors import InputError

FORMATS = ('stablehlo', 'savedmodel', 'torchvision', 'onnx', 'onnx-int8')
DEFAULT_FORMATS = ('stablehlo', 'savedmodel')  # Those of every model.
EXPORT_DIR = 'export'  # In a run's workdir.
STABLEHLO_FILE = 'model.jax_exported'
SAVEDMODEL_DIR = 'saved_model'
CARD_FILE = 'model.json'
FILES = {
  'stablehlo': STABLEHLO_FILE,
  'savedmodel': SAVEDMODEL_DIR,
  'torchvision': TORCHVISION_FILE,
  'onnx': ONNX_FILE,
  'onnx-int8': int8.INT8_FILE,
}
# The exported code runs on each of these: jax.export lowers for all of them
# on any machine (a conv net lowers to the same StableHLO everywhere, so the
# file is hardly larger than for one).
PLATFORMS = ('cpu', 'cuda', 'tpu')
INPUT_NOTE = (
  'NHWC float32 images, normalised: (pixel / 255 - pixel_mean) / pixel_std per '
  'RGB channel; any batch size'
)

Logits = Callable[[jax.Array], jax.Array]


def parse_formats(formats: str | Sequence[str], model: str | None = None) -> tuple[str, ...]:
  """'stablehlo,savedmodel' (or a sequence of names) -> the names, checked
  (against `model` too, where given: torchvision is for the ResNets);
  onnx-int8 brings onnx, the model it quantizes and compares with."""
  names = (
    tuple(f.strip() for f in formats.split(',')) if isinstance(formats, str) else tuple(formats)
  )
  names = tuple(name for name in names if name)
  for name in names:
    if name not in FORMATS:
      raise InputError(
        f'unknown export format {name!r}; valid: {", ".join(FORMATS)} (comma-separated)'
      )
  if 'torchvision' in names and model is not None and model not in TORCHVISION_MODELS:
    raise InputError(
      f'the torchvision format is for {", ".join(TORCHVISION_MODELS)}, not '
      f'{model}; export it as {", ".join(DEFAULT_FORMATS)}'
    )
  if any(name.startswith('onnx') for name in names) and not all(
    importlib.util.find_spec(package) for package in ('jax2onnx', 'onnxruntime')
  ):
    raise InputError(
      'the onnx and onnx-int8 formats need the onnx extra (jax2onnx, onnx, '
      "onnxruntime): pip install -e '.[onnx]'"
    )
  if 'onnx-int8' in names and 'onnx' not in names:
    names = (*names[: names.index('onnx-int8')], 'onnx', *names[names.index('onnx-int8') :])
  return names


def deploy_logits(config: ml_collections.ConfigDict, params: Any, batch_stats: Any) -> Logits:
  """images -> logits of the deploy model with these fused variables, as host
  float32 constants (so the exported code carries them and takes images only)."""
  model = models.create_model(config.model, 'deploy', config.num_classes, dtype='float32')
  variables = jax.tree.map(
    lambda leaf: np.asarray(leaf, np.float32), {'params': params, 'batch_stats': batch_stats}
  )
  return jax.jit(lambda images: model.apply(variables, images, train=False))


def export_stablehlo(logits: Logits, image_shape: tuple[int, int, int]) -> bytes:
  """The serialized `jax.export.Exported`, with a symbolic batch dimension."""
  height, width, channels = image_shape
  images = jax.ShapeDtypeStruct(
    jax.export.symbolic_shape(f'batch, {height}, {width}, {channels}'), jnp.float32
  )
  return bytes(jax.export.export(logits, platforms=PLATFORMS)(images).serialize())


def save_savedmodel(logits: Logits, image_shape: tuple[int, int, int], path: str) -> None:
  """A SavedModel whose one signature runs the same function through jax2tf.

  The variables stay constants inside the serialized StableHLO, as in the
  jax.export file, rather than becoming tf.Variables: nothing here retrains
  in TensorFlow, and it keeps one function for both formats. (A SavedModel's
  graph must stay under protobuf's 2 GiB; ResNet-50's weights are 100 MB.)
  """
  import tensorflow as tf  # Slow to import; only for this format.
  from jax.experimental import jax2tf

  height, width, channels = image_shape
  converted = jax2tf.convert(
    logits,
    polymorphic_shapes=[f'(batch, {height}, {width}, {channels})'],
    with_gradient=False,
    native_serialization_platforms=PLATFORMS,
  )
  module = tf.Module()
  module.serve = tf.function(
    lambda images: {'logits': converted(images)},
    autograph=False,
    input_signature=[tf.TensorSpec([None, height, width, channels], tf.float32, name='images')],
  )
  tf.saved_model.save(module, path, signatures={'serving_default': module.serve})


def model_card(
  config: ml_collections.ConfigDict,
  image_shape: tuple[int, int, int],
  step: int,
  test_top1: float | None,
  formats: Sequence[str],
  class_names: Sequence[str] | None,
) -> dict[str, Any]:
  """model.json: `test_top1` is the fused model's test top-1 of the exported
  step, or None where the run has no evaluation of that step; `class_names`
  in label order, None where the run did not record them."""
  return {
    'model': config.model,
    'conv': config.conv,
    'exported_conv': 'deploy',
    'num_classes': config.num_classes,
    'class_names': None if class_names is None else list(class_names),
    'input_shape': [None, *image_shape],
    'input_dtype': 'float32',
    'input': INPUT_NOTE,
    'pixel_mean': list(config.pixel_mean),
    'pixel_std': list(config.pixel_std),
    'output': 'float32 logits, [batch, num_classes]',
    'step': step,
    'test_top1': test_top1,
    'platforms': list(PLATFORMS),
    'jax_version': jax.__version__,
    'files': {name: FILES[name] for name in formats},
    **({'onnx_opset': OPSET} if 'onnx' in formats else {}),
  }


def write_export(
  directory: str,
  config: ml_collections.ConfigDict,
  params: Any,
  batch_stats: Any,
  image_shape: tuple[int, int, int],
  step: int,
  test_top1: float | None,
  formats: Sequence[str],
  class_names: Sequence[str] | None,
  int8_data: int8.Int8Data | None = None,
) -> dict[str, Any]:
  """Writes the formats and model.json into `directory` and returns model.json's
  content; `int8_data` (the run's images) is needed for onnx-int8. What an
  earlier export left there is replaced only once all is written: the folder
  never mixes two exports, and a failed export leaves the previous one whole."""
  logits = deploy_logits(config, params, batch_stats)
  staging = f'{directory.rstrip(os.sep)}.partial'
  shutil.rmtree(staging, ignore_errors=True)
  os.makedirs(staging)
  if 'stablehlo' in formats:
    with open(os.path.join(staging, STABLEHLO_FILE), 'wb') as f:
      f.write(export_stablehlo(logits, image_shape))
  if 'savedmodel' in formats:
    save_savedmodel(logits, image_shape, os.path.join(staging, SAVEDMODEL_DIR))
  if 'torchvision' in formats:
    save_torchvision(os.path.join(staging, TORCHVISION_FILE), config.model, params)
  if 'onnx' in formats:
    save_onnx(logits, image_shape, os.path.join(staging, ONNX_FILE))
  if 'onnx-int8' in formats:
    int8.quantize_and_evaluate(staging, ONNX_FILE, int8_data)
    if int8_data.per_layer:
      int8_layers.evaluate_layers(staging, ONNX_FILE, int8_data)
  card = model_card(config, image_shape, step, test_top1, formats, class_names)
  with open(os.path.join(staging, CARD_FILE), 'w') as f:
    json.dump(card, f, indent=2)
  shutil.rmtree(directory, ignore_errors=True)
  os.replace(staging, directory)
  return card
