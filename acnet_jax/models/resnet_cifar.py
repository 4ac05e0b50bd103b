"""ResNet for CIFAR (He et al. 2016) as in the ACNet code: `rc56`; also `rc8`, `rc20`, `rc110`."""

from __future__ import annotations

import flax.linen as nn
import jax

from acnet_jax.blocks.switch import ConvSwitch
from acnet_jax.models.common import pooled_logits
from acnet_jax.xla_cpu.dispatch import relu


class BasicBlock(nn.Module):
  """conv3x3-BN-ReLU, conv3x3-BN, + shortcut (1x1 conv+BN when shapes change), ReLU."""

  features: int
  strides: int
  conv: ConvSwitch

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    y = relu(self.conv(self.features, 3, strides=self.strides, name='conv1')(x, train))
    y = self.conv(self.features, 3, name='conv2')(y, train)
    if self.strides != 1 or x.shape[-1] != self.features:
      x = self.conv(self.features, 1, strides=self.strides, name='shortcut')(x, train)
    return relu(x + y)


class ResNetCifar(nn.Module):
  """Stem conv(16), three stages of basic blocks (16/32/64), pool, dense."""

  blocks_per_stage: int
  num_classes: int
  conv: ConvSwitch
  widths: tuple[int, int, int] = (16, 32, 64)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = relu(self.conv(self.widths[0], 3, name='stem')(x, train))
    for stage, width in enumerate(self.widths):
      for block in range(self.blocks_per_stage):
        strides = 2 if stage > 0 and block == 0 else 1
        name = f'stage{stage + 1}_block{block + 1}'
        x = BasicBlock(width, strides, self.conv, name=name)(x, train)
    return pooled_logits(x, self.num_classes, self.conv.dtype)
