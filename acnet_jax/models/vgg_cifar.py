"""VGG-16 with BN for CIFAR (`vc`): thirteen conv3x3-BN-ReLU, five 2x2 max-pools,
dense 512, dense classes."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from acnet_jax.layers import ConvSwitch
from acnet_jax.primitives import torch_default_init

POOL = 'M'
VGG16_WIDTHS = (64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL,
                512, 512, 512, POOL, 512, 512, 512, POOL)


class VGGCifar(nn.Module):
  num_classes: int
  conv: ConvSwitch
  widths: tuple[int | str, ...] = VGG16_WIDTHS

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    convs = 0
    for width in self.widths:
      if width == POOL:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
      else:
        convs += 1
        x = nn.relu(self.conv(width, 3, name=f'conv{convs}')(x, train))
    x = x.reshape(x.shape[0], -1)
    dtype = self.conv.dtype
    x = nn.relu(nn.Dense(512, kernel_init=torch_default_init, dtype=dtype, name='fc1')(x))
    x = nn.Dense(self.num_classes, kernel_init=torch_default_init, dtype=dtype, name='fc2')(x)
    return x.astype(jnp.float32)
