"""Model registry: `create_model(name, conv, num_classes)`."""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.linen as nn

from acnet_jax.layers import ConvKind, ConvSwitch
from acnet_jax.models.resnet_cifar import ResNetCifar
from acnet_jax.models.wrn_cifar import WideResNetCifar

MODELS: dict[str, Callable[..., nn.Module]] = {
    'rc20': functools.partial(ResNetCifar, blocks_per_stage=3),
    'rc56': functools.partial(ResNetCifar, blocks_per_stage=9),
    'rc110': functools.partial(ResNetCifar, blocks_per_stage=18),
    'wrnc16': functools.partial(WideResNetCifar, blocks_per_stage=2, widen=8),
}


def create_model(name: str, conv: ConvKind | ConvSwitch = 'normal', num_classes: int = 10,
                 **acb_options) -> nn.Module:
  """`conv` is a kind ('normal', 'acnet', 'deploy') or a ConvSwitch; `acb_options`
  (gamma_init, use_affine, branches) go to the ConvSwitch."""
  if name not in MODELS:
    raise ValueError(f'unknown model {name!r}; valid models: {", ".join(sorted(MODELS))}')
  if not isinstance(conv, ConvSwitch):
    conv = ConvSwitch(conv, **acb_options)
  elif acb_options:
    raise ValueError('pass ACB options either in the ConvSwitch or as keywords, not both')
  return MODELS[name](num_classes=num_classes, conv=conv)
