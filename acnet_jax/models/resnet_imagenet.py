"""ResNet for ImageNet (He et al. 2016) in torchvision's layout: `resnet18`, `resnet34`, `resnet50`.

Parameter counts in `normal` equal torchvision's (11,689,512 / 21,797,672 /
25,557,032 for 1000 classes); the 7x7 stem and the 1x1 convs stay normal in
`acnet`, as in the authors' builder, so only the 3x3 convs become ACBs.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from acnet_jax.blocks.switch import ConvSwitch
from acnet_jax.models.common import pooled_logits

# The same basic block as the CIFAR ResNets: conv3x3-BN-ReLU, conv3x3-BN, + shortcut.
from acnet_jax.models.resnet_cifar import BasicBlock
from acnet_jax.xla_cpu.dispatch import max_pool, relu

BOTTLENECK_EXPANSION = 4


class Bottleneck(nn.Module):
  """conv1x1-BN-ReLU, conv3x3-BN-ReLU, conv1x1(4x)-BN, + shortcut, ReLU.

  The stride sits on the 3x3 conv (torchvision's v1.5), not on the first 1x1.
  """

  features: int
  strides: int
  conv: ConvSwitch

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    out = self.features * BOTTLENECK_EXPANSION
    y = relu(self.conv(self.features, 1, name='conv1')(x, train))
    y = relu(self.conv(self.features, 3, strides=self.strides, name='conv2')(y, train))
    y = self.conv(out, 1, name='conv3')(y, train)
    if self.strides != 1 or x.shape[-1] != out:
      x = self.conv(out, 1, strides=self.strides, name='shortcut')(x, train)
    return relu(x + y)


class ResNetImageNet(nn.Module):
  """7x7/2 stem conv(64), 3x3/2 max-pool, four stages (64/128/256/512 x
  expansion, stride 2 from the second), global average pool, dense."""

  block: type[BasicBlock] | type[Bottleneck]
  blocks_per_stage: tuple[int, int, int, int]
  num_classes: int
  conv: ConvSwitch
  widths: tuple[int, int, int, int] = (64, 128, 256, 512)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = relu(self.conv(self.widths[0], 7, strides=2, name='stem')(x, train))
    # Padding 1 as torch's MaxPool2d: padded with -inf, as torch does.
    x = max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    for stage, (width, blocks) in enumerate(zip(self.widths, self.blocks_per_stage)):
      for block in range(blocks):
        strides = 2 if stage > 0 and block == 0 else 1
        x = self.block(width, strides, self.conv, name=f'stage{stage + 1}_block{block + 1}')(
          x, train
        )
    return pooled_logits(x, self.num_classes, self.conv.dtype)
