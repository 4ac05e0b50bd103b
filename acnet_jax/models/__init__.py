"""Model registry: `create_model(name, conv, num_classes)`."""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.linen as nn

from acnet_jax.errors import InputError
from acnet_jax.layers import ConvKind, ConvSwitch
from acnet_jax.models.cifar_quick import CifarQuick
from acnet_jax.models.densenet_cifar import DenseNetCifar
from acnet_jax.models.resnet_cifar import ResNetCifar
from acnet_jax.models.vgg_cifar import VGGCifar
from acnet_jax.models.wrn_cifar import WideResNetCifar

MODELS: dict[str, Callable[..., nn.Module]] = {
    'cfqkbnc': CifarQuick,
    'vc': VGGCifar,
    'densenet40': functools.partial(DenseNetCifar, layers_per_block=12, growth=12),
    'rc8': functools.partial(ResNetCifar, blocks_per_stage=1),
    'rc20': functools.partial(ResNetCifar, blocks_per_stage=3),
    'rc56': functools.partial(ResNetCifar, blocks_per_stage=9),
    'rc110': functools.partial(ResNetCifar, blocks_per_stage=18),
    'wrnc16': functools.partial(WideResNetCifar, blocks_per_stage=2, widen=8),
}


def create_model(name: str, conv: ConvKind | ConvSwitch = 'normal', num_classes: int = 10,
                 **acb_options) -> nn.Module:
  """`conv` is a kind ('normal', 'acnet', 'deploy') or a ConvSwitch; `acb_options`
  (gamma_init, use_affine, branches, acb_impl) go to the ConvSwitch."""
  if name not in MODELS:
    raise InputError(f'unknown model {name!r}; valid models: {", ".join(sorted(MODELS))}')
  if not isinstance(conv, ConvSwitch):
    conv = ConvSwitch(conv, **acb_options)
  elif acb_options:
    raise InputError('pass ACB options either in the ConvSwitch or as keywords, not both')
  return MODELS[name](num_classes=num_classes, conv=conv)
