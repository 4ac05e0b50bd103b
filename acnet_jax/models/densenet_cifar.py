"""DenseNet-40 (growth 12) for CIFAR (Huang et al. 2017; `densenet40`).

Every conv is pre-activation (BN-ReLU-conv) and not followed by its own BN, so
in `normal` it is a plain conv with bias, in `acnet` the 3x3 ones are ACBs
whose fused conv carries the bias.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from acnet_jax.blocks.primitives import bn_relu
from acnet_jax.blocks.switch import ConvSwitch
from acnet_jax.models.common import pooled_logits
from acnet_jax.xla_cpu.dispatch import avg_pool


class DenseNetCifar(nn.Module):
  """3x3 stem conv (16); three dense blocks of BN-ReLU-conv3x3(growth) layers,
  each layer's output concatenated to its input; between blocks a transition
  BN-ReLU-conv1x1 (same width) and 2x2 average pool; BN-ReLU, pool, dense."""

  layers_per_block: int
  growth: int
  num_classes: int
  conv: ConvSwitch

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = self.conv(16, 3, with_bn=False, name='stem')(x, train)
    for block in range(1, 4):
      for layer in range(1, self.layers_per_block + 1):
        name = f'block{block}_layer{layer}'
        y = self.conv(self.growth, 3, with_bn=False, name=name)(
          bn_relu(x, train, f'{name}_bn', self.conv.dtype), train
        )
        x = jnp.concatenate([x, y], axis=-1)
      if block < 3:
        name = f'transition{block}'
        x = self.conv(x.shape[-1], 1, with_bn=False, name=name)(
          bn_relu(x, train, f'{name}_bn', self.conv.dtype), train
        )
        x = avg_pool(x, (2, 2), (2, 2))
    return pooled_logits(
      bn_relu(x, train, 'final_bn', self.conv.dtype), self.num_classes, self.conv.dtype
    )
