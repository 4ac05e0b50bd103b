"""Cifar-quick with BN (`cfqkbnc`), as in the ACNet paper: three 5x5 conv-BN-ReLU
stages with pooling, then two dense layers. 117,034 parameters (10 classes)."""

from __future__ import annotations

import flax.linen as nn
import jax

from acnet_jax.blocks.switch import ConvSwitch
from acnet_jax.models.common import dense, logits
from acnet_jax.xla_cpu.dispatch import avg_pool, max_pool, relu


class CifarQuick(nn.Module):
  """conv5x5(32) maxpool3/2, conv5x5(32) avgpool3/2, conv5x5(64) avgpool3/2,
  dense 64, dense classes. Pools unpadded, floor mode: 32 -> 15 -> 7 -> 3."""

  num_classes: int
  conv: ConvSwitch

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = relu(self.conv(32, 5, name='conv1')(x, train))
    x = max_pool(x, (3, 3), (2, 2))
    x = relu(self.conv(32, 5, name='conv2')(x, train))
    x = avg_pool(x, (3, 3), (2, 2))
    x = relu(self.conv(64, 5, name='conv3')(x, train))
    x = avg_pool(x, (3, 3), (2, 2))
    x = x.reshape(x.shape[0], -1)
    x = relu(dense(64, 'fc1', self.conv.dtype)(x))
    return logits(x, self.num_classes, self.conv.dtype, name='fc2')
