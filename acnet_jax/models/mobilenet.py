"""MobileNet v1 (Howard et al. 2017, Table 1) as in the authors' DBB code: `mobilenet_v1`.

4,231,976 parameters in `normal` for 1000 classes. In `acnet` the stem and
every depthwise 3x3 become ACBs (depthwise ACBs keep feature_group_count);
the pointwise 1x1 convs stay normal.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from acnet_jax.blocks.switch import ConvSwitch
from acnet_jax.models.common import pooled_logits
from acnet_jax.xla_cpu.dispatch import relu

# (pointwise width, stride of the depthwise conv) of the 13 blocks.
MOBILENET_V1_BLOCKS = (
  (64, 1),
  (128, 2),
  (128, 1),
  (256, 2),
  (256, 1),
  (512, 2),
  *((512, 1),) * 5,
  (1024, 2),
  (1024, 1),
)


class DepthwiseSeparable(nn.Module):
  """Depthwise conv3x3-BN-ReLU (one filter per channel), pointwise conv1x1-BN-ReLU."""

  features: int
  strides: int
  conv: ConvSwitch

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    channels = x.shape[-1]
    x = relu(
      self.conv(channels, 3, strides=self.strides, feature_group_count=channels, name='depthwise')(
        x, train
      )
    )
    return relu(self.conv(self.features, 1, name='pointwise')(x, train))


class MobileNetV1(nn.Module):
  """3x3/2 stem conv(32), 13 depthwise separable blocks, global average pool, dense."""

  num_classes: int
  conv: ConvSwitch
  blocks: tuple[tuple[int, int], ...] = MOBILENET_V1_BLOCKS

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = relu(self.conv(32, 3, strides=2, name='stem')(x, train))
    for i, (width, strides) in enumerate(self.blocks):
      x = DepthwiseSeparable(width, strides, self.conv, name=f'block{i + 1}')(x, train)
    return pooled_logits(x, self.num_classes, self.conv.dtype)
