"""Wide ResNet for CIFAR (Zagoruyko & Komodakis 2016) as in the ACNet code: `wrnc16` (WRN-16-8).

Pre-activation blocks: each conv is preceded by its own BN-ReLU and is not
followed by a BN, so it is a plain conv with bias in `normal` (`with_bn=False`).
"""

from __future__ import annotations

import flax.linen as nn
import jax

from acnet_jax.blocks.primitives import batch_norm, bn_relu
from acnet_jax.blocks.switch import ConvSwitch
from acnet_jax.models.common import pooled_logits


class PreActBlock(nn.Module):
  """BN-ReLU-conv3x3, BN-ReLU-conv3x3, + shortcut (BN-ReLU-conv1x1 on a stage's first block)."""

  features: int
  strides: int
  project: bool
  conv: ConvSwitch

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    conv = lambda k, name, strides=1: self.conv(
      self.features, k, strides=strides, with_bn=False, name=name
    )
    dtype = self.conv.dtype
    y = conv(3, 'conv1', self.strides)(bn_relu(x, train, 'bn1', dtype), train)
    y = conv(3, 'conv2')(bn_relu(y, train, 'bn2', dtype), train)
    if self.project:
      x = conv(1, 'proj', self.strides)(bn_relu(x, train, 'proj_bn', dtype), train)
    return x + y


class WideResNetCifar(nn.Module):
  """Stem conv(16), three stages of widths (16, 32, 64) x widen, final BN, pool, dense.

  As in the original code the final BN is not followed by a ReLU.
  """

  blocks_per_stage: int
  widen: int
  num_classes: int
  conv: ConvSwitch

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = self.conv(16, 3, with_bn=False, name='stem')(x, train)
    for stage, width in enumerate((16 * self.widen, 32 * self.widen, 64 * self.widen)):
      for block in range(self.blocks_per_stage):
        x = PreActBlock(
          width,
          strides=2 if stage > 0 and block == 0 else 1,
          project=block == 0,
          conv=self.conv,
          name=f'stage{stage + 1}_block{block + 1}',
        )(x, train)
    x = batch_norm('final_bn', dtype=self.conv.dtype)(x, use_running_average=not train)
    return pooled_logits(x, self.num_classes, self.conv.dtype)
