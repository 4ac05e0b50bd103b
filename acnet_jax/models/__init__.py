"""The models, one family a module, each building its convs through a ConvSwitch;
`create_model(name, conv, num_classes, dtype=...)` is the registry (`MODELS`).

    cifar_quick      Cifar-quick with BN (cfqkbnc)
    vgg_cifar        VGG-16 with BN (vc)
    resnet_cifar     ResNets for CIFAR (rc8, rc20, rc56, rc110)
    wrn_cifar        WRN-16-8 (wrnc16)
    densenet_cifar   DenseNet-40 (densenet40)
    resnet_imagenet  ResNet-18/34/50 in torchvision's layout
    mobilenet        MobileNet v1
    alexnet          the authors' AlexNet with BN
    common           what they share: dense layers, the classifier head
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.linen as nn
from jax.typing import DTypeLike

from acnet_jax.blocks.switch import ConvKind, ConvSwitch
from acnet_jax.errors import InputError
from acnet_jax.models.alexnet import AlexNet
from acnet_jax.models.cifar_quick import CifarQuick
from acnet_jax.models.densenet_cifar import DenseNetCifar
from acnet_jax.models.mobilenet import MobileNetV1
from acnet_jax.models.resnet_cifar import BasicBlock, ResNetCifar
from acnet_jax.models.resnet_imagenet import Bottleneck, ResNetImageNet
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
    'resnet18': functools.partial(ResNetImageNet, block=BasicBlock, blocks_per_stage=(2, 2, 2, 2)),
    'resnet34': functools.partial(ResNetImageNet, block=BasicBlock, blocks_per_stage=(3, 4, 6, 3)),
    'resnet50': functools.partial(ResNetImageNet, block=Bottleneck, blocks_per_stage=(3, 4, 6, 3)),
    'mobilenet_v1': MobileNetV1,
    'alexnet': AlexNet,
}


def create_model(name: str, conv: ConvKind | ConvSwitch = 'normal', num_classes: int = 10,
                 dtype: DTypeLike | None = None, **acb_options) -> nn.Module:
  """`conv` is a kind ('normal', 'acnet', 'dbb', 'repvgg', 'deploy') or a ConvSwitch; `dtype`
  ('float32', the default, or 'bfloat16': the computation dtype; parameters
  stay float32, logits are float32) and `acb_options` (gamma_init, use_affine,
  branches, acb_impl, branch_bn, and online for every kind) go to the ConvSwitch."""
  if name not in MODELS:
    raise InputError(f'unknown model {name!r}; valid models: {", ".join(sorted(MODELS))}')
  options = acb_options if dtype is None else {**acb_options, 'dtype': dtype}
  if not isinstance(conv, ConvSwitch):
    conv = ConvSwitch(conv, **options)
  elif options:
    raise InputError('pass ACB options and dtype either in the ConvSwitch or as keywords, '
                     'not both')
  return MODELS[name](num_classes=num_classes, conv=conv)
