"""The models, one family a module, each building its convs through a ConvSwitch;
`create_model(name, conv, num_classes, acb=..., repvgg=..., online=..., dtype=...)` is the
registry (`MODELS`).

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

from acnet_jax.blocks.acb import ACBOptions
from acnet_jax.blocks.repvgg import RepVGGOptions
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


def create_model(
  name: str,
  conv: ConvKind | ConvSwitch = 'normal',
  num_classes: int = 10,
  *,
  acb: ACBOptions | None = None,
  repvgg: RepVGGOptions | None = None,
  online: bool | None = None,
  dtype: DTypeLike | None = None,
) -> nn.Module:
  """`conv` is a kind ('normal', 'acnet', 'dbb', 'repvgg', 'deploy') or a ConvSwitch.
  `acb`, `repvgg`, `online` and `dtype` are the ConvSwitch's options of those
  names (an ACBOptions; a RepVGGOptions; the online form of every
  re-parameterized kind; the computation dtype, 'float32', the default, or
  'bfloat16': parameters stay float32, logits are float32), given here for a
  kind or in the ConvSwitch, not both."""
  if name not in MODELS:
    raise InputError(f'unknown model {name!r}; valid models: {", ".join(sorted(MODELS))}')
  options = {
    key: value
    for key, value in dict(acb=acb, repvgg=repvgg, online=online, dtype=dtype).items()
    if value is not None
  }
  if not isinstance(conv, ConvSwitch):
    conv = ConvSwitch(conv, **options)
  elif options:
    raise InputError(
      'pass acb, repvgg, online and dtype either in the ConvSwitch or as keywords, not both'
    )
  return MODELS[name](num_classes=num_classes, conv=conv)
