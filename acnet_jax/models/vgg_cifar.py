"""VGG-16 with BN for CIFAR (`vc`): thirteen conv3x3-BN-ReLU, five 2x2 max-pools,
dense 512, dense classes."""

from __future__ import annotations

import flax.linen as nn
import jax

from acnet_jax.blocks.switch import ConvSwitch
from acnet_jax.models.common import dense, logits
from acnet_jax.xla_cpu.dispatch import max_pool, relu

POOL = 'M'
VGG16_WIDTHS = (
  64,
  64,
  POOL,
  128,
  128,
  POOL,
  256,
  256,
  256,
  POOL,
  512,
  512,
  512,
  POOL,
  512,
  512,
  512,
  POOL,
)


class VGGCifar(nn.Module):
  num_classes: int
  conv: ConvSwitch
  widths: tuple[int | str, ...] = VGG16_WIDTHS

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    convs = 0
    for width in self.widths:
      if width == POOL:
        x = max_pool(x, (2, 2), (2, 2))
      else:
        convs += 1
        x = relu(self.conv(width, 3, name=f'conv{convs}')(x, train))
    x = x.reshape(x.shape[0], -1)
    x = relu(dense(512, 'fc1', self.conv.dtype)(x))
    return logits(x, self.num_classes, self.conv.dtype, name='fc2')
