"""The fused deploy ResNet as a torchvision ResNet's state dict: `torchvision.safetensors`.

A fused ResNet-18/34/50 is torchvision's `resnet18/34/50` layer for layer
(same stem, max-pool, basic or v1.5 bottleneck blocks, 1x1 projections, pool
and `fc`). torchvision's convs have no bias and each is followed by a BN, so
each fused bias goes into that BN: weight 1, bias the fused bias, running mean
0 and running variance 1 - eps, which adds the bias and nothing else.
safetensors writes the file without torch; in PyTorch:

    model = torchvision.models.resnet50(num_classes=N)
    model.load_state_dict(safetensors.torch.load_file(path), strict=True)

The model takes NCHW float32 images, normalised as model.json says.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from acnet_jax.blocks.primitives import BN_EPSILON
from acnet_jax.errors import InputError

TORCHVISION_MODELS = ('resnet18', 'resnet34', 'resnet50')
TORCHVISION_FILE = 'torchvision.safetensors'


def torchvision_names(block: str, conv: str) -> tuple[str, str]:
  """(conv, BN) names in torchvision of our deploy conv `block/conv`."""
  if block == 'stem':
    return 'conv1', 'bn1'
  stage, index = block.removeprefix('stage').split('_block')
  prefix = f'layer{stage}.{int(index) - 1}'
  if conv == 'shortcut':
    return f'{prefix}.downsample.0', f'{prefix}.downsample.1'
  return f'{prefix}.{conv}', f'{prefix}.bn{conv.removeprefix("conv")}'


def torchvision_state_dict(model: str, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """The deploy params of our `model` (stem, stage*_block*, linear) as torchvision's keys."""
  if model not in TORCHVISION_MODELS:
    raise InputError(
      f'the torchvision format is for {", ".join(TORCHVISION_MODELS)} (a fused '
      f"ResNet is torchvision's); {model} has no torchvision counterpart"
    )
  params = jax.tree.map(lambda leaf: np.asarray(leaf, np.float32), dict(params))
  state = {'fc.weight': params['linear']['kernel'].T, 'fc.bias': params['linear']['bias']}
  for block, children in params.items():
    if block == 'linear':
      continue
    convs = {'conv': children} if block == 'stem' else children
    for conv, variables in convs.items():
      conv_name, bn_name = torchvision_names(block, conv)
      kernel, bias = variables['conv']['kernel'], variables['conv']['bias']
      state[f'{conv_name}.weight'] = kernel.transpose(3, 2, 0, 1)  # HWIO -> OIHW.
      state.update(
        {
          f'{bn_name}.weight': np.ones_like(bias),
          f'{bn_name}.bias': bias,
          f'{bn_name}.running_mean': np.zeros_like(bias),
          f'{bn_name}.running_var': np.full_like(bias, 1.0 - BN_EPSILON),
          f'{bn_name}.num_batches_tracked': np.zeros((), np.int64),
        }
      )
  return {key: np.asarray(value, order='C') for key, value in state.items()}


def save_torchvision(path: str, model: str, params: Mapping[str, Any]) -> None:
  from safetensors.numpy import save_file  # noqa: PLC0415  (only this format needs it)

  save_file(torchvision_state_dict(model, params), path)
