"""The baseline's conv site and the deploy form of every block.

    ConvBN     KxK conv (no bias) -> BN      `conv`, `bn`
    ConvBias   KxK conv with bias            `conv` (kernel and bias)

`ConvBias` is also the plain conv of a pre-activation (BN-ReLU-conv) site in
the baseline, where no BN follows the conv.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from acnet_jax.blocks.algebra import Conv
from acnet_jax.blocks.kinds import BlockKind, BlockVariables
from acnet_jax.blocks.primitives import ConvSiteModule, batch_norm, conv2d


class ConvBN(ConvSiteModule):
  """The baseline block: KxK conv without bias, then BatchNorm."""

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    k = self.kernel_size
    y = conv2d(
      self.features,
      (k, k),
      self.strides,
      self.feature_group_count,
      use_bias=False,
      name='conv',
      dtype=self.dtype,
    )(x)
    return batch_norm('bn', dtype=self.dtype)(y, use_running_average=not train)


def conv_bn_to_conv(block: BlockVariables) -> Conv:
  return block.conv_bn('conv', 'bn')


CONV_BN_KIND = BlockKind(
  'ConvBN', skeleton='conv', names=frozenset({'conv', 'bn'}), to_conv=conv_bn_to_conv
)


class ConvBias(ConvSiteModule):
  """One KxK conv with bias: the deploy form of every block."""

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    del train  # No batch statistics; the argument keeps every block alike.
    k = self.kernel_size
    return conv2d(
      self.features,
      (k, k),
      self.strides,
      self.feature_group_count,
      use_bias=True,
      name='conv',
      dtype=self.dtype,
    )(x)
